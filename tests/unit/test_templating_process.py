"""Golden sentences of the process-context template (aptray.templating.process), per aspect."""

from __future__ import annotations

from typing import Any

import pytest

from aptray.schema import event_table
from aptray.templating.process import MAX_ITEMS, event_name, process_sentences


def _sentence(aspect: str | None = "All", **ctx: Any) -> str:
    table = event_table([{"record_id": "adapt:x", "source": "adapt", "aspect": aspect, **ctx}])
    out = process_sentences(table).to_pylist()
    assert len(out) == 1
    return str(out[0])


@pytest.mark.parametrize(
    ("raw", "readable"),
    [
        ("EVENT_READ", "read"),
        ("EVENT_SENDTO", "send-to"),
        ("EVENT_RECVFROM", "receive-from"),
        ("EVENT_MODIFY_FILE_ATTRIBUTES", "modify-file-attributes"),
        ("EVENT_CHECK_FILE_ATTRIBUTES", "check-file-attributes"),
        ("EVENT_SENDMSG", "send-message"),
        ("execve", "execve"),  # raw syscall names from other sources pass through
    ],
)
def test_event_names_are_readable(raw: str, readable: str) -> None:
    assert event_name(raw) == readable


GOLDEN: list[tuple[str, dict[str, Any], str]] = [
    ("Event", {"ctx_events": ["EVENT_WRITE", "EVENT_SENDTO", "EVENT_READ"]},
     "The process performed read, send-to and write."),
    ("Event", {"ctx_events": ["EVENT_EXIT"]}, "The process performed exit."),
    ("Exec", {"ctx_execs": ["/bin/bash"]}, "The process ran /bin/bash."),
    ("Exec", {"ctx_execs": ["sh", "bash"]}, "The process ran bash and sh."),
    ("Parent", {"ctx_parents": ["/usr/sbin/sshd"]}, "The process was started by /usr/sbin/sshd."),
    ("Netflow", {"ctx_netflows": ["80", "128.55.12.167"]}, "The process communicated with 128.55.12.167 on port 80."),
    ("Netflow", {"ctx_netflows": ["443", "22", "0"]}, "The process communicated on ports 22 and 443."),
    # ADAPT ClearScope: the recorder's unknown peer and its port -1, beside a named one
    ("Netflow", {"ctx_netflows": ["www.cbs.com 216.66.26.25", "-1", "<UNKNOWN>", "31337"]},
     "The process communicated with www.cbs.com 216.66.26.25 and an unknown address on port 31337."),
    ("Netflow", {"ctx_netflows": ["-1", "<UNKNOWN>"]}, "The process communicated with an unknown address."),
    # ADAPT 5dir: a blank address beside port 0
    ("Netflow", {"ctx_netflows": ["", "0", "10.0.50.160", "5672"]},
     "The process communicated with 10.0.50.160 and an unknown address on port 5672."),
    ("Netflow", {"ctx_netflows": ["0"]}, "The process communicated with an unknown address."),
    ("Netflow", {"ctx_netflows": ["127.0.0.1", "0"]}, "The process communicated with 127.0.0.1."),
    # a value that ends its clause keeps its own full stop, not a second one
    ("Exec", {"ctx_execs": ["com.android.", "/system/bin/app_process"]},
     "The process ran /system/bin/app_process and com.android."),
    ("All", {"ctx_execs": ["."], "ctx_parents": ["sh"]}, "The process ran . It was started by sh."),
    ("Netflow", {"ctx_netflows": ["10.0.6.31", "::1"]}, "The process communicated with 10.0.6.31 and ::1."),
    ("All",
     {"ctx_events": ["EVENT_WRITE", "EVENT_READ", "EVENT_SENDTO"], "ctx_execs": ["/bin/bash"],
      "ctx_parents": ["/usr/sbin/sshd"], "ctx_netflows": ["128.55.12.167", "80"]},
     "The process performed read, send-to and write. It ran /bin/bash. It was started by /usr/sbin/sshd. "
     "It communicated with 128.55.12.167 on port 80."),
    ("All", {"ctx_events": [], "ctx_execs": ["com.android.nfc"], "ctx_netflows": []},
     "The process ran com.android.nfc."),
    ("Event", {"ctx_events": []}, "The process showed no recorded event activity."),
    ("Netflow", {"ctx_netflows": []}, "The process showed no recorded netflow activity."),
    ("All", {"ctx_events": [], "ctx_execs": [], "ctx_netflows": []},
     "The process showed no recorded event, exec and netflow activity."),
    ("Parent", {}, "The process showed no recorded parent activity."),
]


@pytest.mark.parametrize(("aspect", "ctx", "expected"), GOLDEN)
def test_golden_sentences(aspect: str, ctx: dict[str, Any], expected: str) -> None:
    assert _sentence(aspect, **ctx) == expected


def test_order_and_duplicates_do_not_change_the_sentence() -> None:
    a = _sentence(ctx_events=["EVENT_READ", "EVENT_WRITE"], ctx_netflows=["80", "10.0.0.1", "22"])
    b = _sentence(ctx_events=["EVENT_WRITE", "EVENT_READ", "EVENT_READ"], ctx_netflows=["22", "10.0.0.1", "80"])
    assert a == b == "The process performed read and write. It communicated with 10.0.0.1 on ports 22 and 80."


def test_long_lists_are_capped() -> None:
    ips = [f"10.0.0.{i}" for i in range(MAX_ITEMS + 7)]
    sentence = _sentence("Netflow", ctx_netflows=[*ips, "443"])
    named = sorted(ips)[:MAX_ITEMS]
    assert sentence == f"The process communicated with {', '.join(named)} and 7 more on port 443."


def test_ports_sort_numerically() -> None:
    assert _sentence("Netflow", ctx_netflows=["8080", "443", "80"]) == (
        "The process communicated on ports 80, 443 and 8080."
    )


def test_batch_keeps_row_order() -> None:
    table = event_table([
        {"aspect": "Exec", "ctx_execs": ["b"]},
        {"aspect": "Exec", "ctx_execs": ["a"]},
        {"aspect": "Exec", "ctx_execs": []},
    ])
    assert process_sentences(table).to_pylist() == [
        "The process ran b.", "The process ran a.", "The process showed no recorded exec activity."
    ]


def test_templatize_routes_process_rows_here() -> None:
    from aptray.config import TemplateConfig
    from aptray.templating.base import templatize

    table = event_table([{"record_id": "adapt:1", "aspect": "Parent", "ctx_parents": ["cron", "sh"]}])
    out = templatize(table, TemplateConfig(mask=[]))
    assert out.column("sentence").to_pylist() == ["The process was started by cron and sh."]


def test_terse_style_names_every_attribute_as_the_papers_did() -> None:
    from aptray.config import ProcessStyle
    from aptray.templating.process import context_sentence

    ips = tuple(f"10.0.0.{i}" for i in range(MAX_ITEMS + 2))
    sentence = context_sentence(("EVENT_WRITE", "EVENT_CHECK_FILE_ATTRIBUTES"), ("/bin/bash",), ("sshd",),
                                ("80", *ips), "All", ProcessStyle.TERSE)
    assert sentence.startswith("Process has event check_file_attributes and event write and exec /bin/bash and "
                               "parent sshd and netflow 10.0.0.0 and ")
    assert all(f"netflow {ip}" in sentence for ip in ips)  # no cap: every attribute is named
    assert context_sentence(None, None, None, None, "All", ProcessStyle.TERSE) == "Process has no recorded attribute"


def test_templatize_uses_the_configured_style() -> None:
    from aptray.config import ProcessStyle, TemplateConfig
    from aptray.templating.base import templatize

    table = event_table([{"record_id": "adapt:x", "source": "adapt", "aspect": "Exec", "ctx_execs": ["/bin/sh"]}])
    prose = templatize(table, TemplateConfig()).column("sentence").to_pylist()
    terse = templatize(table, TemplateConfig(process_style=ProcessStyle.TERSE)).column("sentence").to_pylist()
    assert prose == ["The process ran /bin/sh."] and terse == ["Process has exec /bin/sh"]


@pytest.mark.parametrize(("aspect", "ctx", "expected"), GOLDEN)
def test_clauses_of_a_sentence_are_its_aspects_own_sentences(aspect: str, ctx: dict[str, Any],
                                                              expected: str) -> None:
    """Splitting a prose sentence gives, per aspect it names, exactly the sentence of that aspect alone."""
    from aptray.templating.process import aspect_clauses

    clauses = aspect_clauses(expected)
    named = {c: v for c, v in ctx.items() if v}
    if not named:
        assert clauses is None  # "showed no recorded ... activity": no clause to split
        return
    assert clauses is not None and set(clauses) == set(named)
    for column, values in named.items():
        assert clauses[column] == _sentence(aspect, **{column: values})
    assert " ".join(clauses.values()).replace("The process ", "") == expected.replace("The process ", "").replace(
        "It ", "")


def test_clauses_of_other_sentences_and_of_values_that_mimic_a_clause() -> None:
    from aptray.templating.process import aspect_clauses

    assert aspect_clauses("Process 12 (bash) read /etc/passwd.") is None  # a single event's sentence
    assert aspect_clauses("Process has exec /bin/sh") is None  # terse
    # a value holding ". It was started by " splits where the template would: both texts stay in the vector
    mimic = _sentence(ctx_execs=["evil. It was started by init"], ctx_parents=["cmd.exe"])
    assert aspect_clauses(mimic) == {"ctx_execs": "The process ran evil.",
                                     "ctx_parents": "The process was started by init. The process was started by "
                                                    "cmd.exe."}
