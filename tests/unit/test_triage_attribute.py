"""Attribution without Ray or a model: the variants templating builds with one part replaced by its benign
counterfactual or removed, the top part chosen by re-scoring, the benign values of event fields and the benign
attribute vocabulary of process contexts (stored in the artifact, no pickle)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from aptray.artifacts import load_detector, save_detector
from aptray.config import TemplateConfig, ThresholdConfig, TrainConfig
from aptray.detectors import make_detector
from aptray.schema import EVENT_SCHEMA
from aptray.templating.base import templatize
from aptray.triage.attribute import attribute, variants
from aptray.triage.explain import BenignReference, explanations_of
from aptray.triage.vocabulary import AttributeVocabulary, BenignValues


def _rows(rows: list[dict[str, object]]) -> pa.Table:
    names = [f.name for f in EVENT_SCHEMA if f.name not in ("quarantine_reason", "raw")]
    schema = pa.schema([EVENT_SCHEMA.field(n) for n in names])
    table = pa.Table.from_pylist([{n: r.get(n) for n in names} for r in rows], schema=schema)
    return templatize(table, TemplateConfig())


def _saved_with(tmp_path: Path, values: BenignValues) -> Any:
    """A PCA artifact keeping ``values`` beside 10 benign sentences, saved and loaded back."""
    X = np.random.default_rng(0).normal(size=(30, 5)).astype(np.float32)
    det = make_detector("pca", TrainConfig(model="pca"), ThresholdConfig()).fit(X)
    save_detector(det, str(tmp_path / "a"), {}, benign=BenignReference.build(
        [f"s{i}" for i in range(30)], X, np.ones(30), 10, values=values))
    return load_detector(str(tmp_path / "a"))


SHELL = {"pid": 4242, "ppid": 900, "uid": 33, "process_name": "bash", "action": "connect",
         "object_addr": "203.0.113.9:4444", "args": json.dumps({"sockfd": 3, "addrlen": 16}), "return_value": 0}
CONTEXT = {"aspect": "All", "ctx_events": ["EVENT_READ", "EVENT_CONNECT"], "ctx_execs": ["/tmp/.x"],
           "ctx_parents": ["/usr/sbin/sshd"], "ctx_netflows": None}


def test_without_benign_values_variants_remove_one_field_or_aspect_through_the_template() -> None:
    rows = _rows([SHELL, CONTEXT])
    assert rows.column("sentence").to_pylist() == [
        "Process <pid> (bash), child of process <pid>, as user 33, connected to 203.0.113.9:4444.",
        "The process performed connect and read. It ran /tmp/.x. It was started by /usr/sbin/sshd."]
    plan = variants(rows, TemplateConfig())
    got = {(r, p): (v, s) for r, p, v, s in zip(plan.row, plan.part, plan.value, plan.sentence, strict=True)}
    # args hold only skipped arguments and the return value is not negative: neither changes the sentence
    assert sorted(p for r, p in got if r == 0) == ["action", "object_addr", "ppid", "process_name", "uid"]
    assert got[(0, "object_addr")] == ("203.0.113.9:4444",
                                       "Process <pid> (bash), child of process <pid>, as user 33, connected a socket.")
    assert got[(0, "process_name")][1] == "Process <pid>, child of process <pid>, as user 33, connected to " \
                                          "203.0.113.9:4444."
    assert sorted(p for r, p in got if r == 1) == ["events", "execs", "parents"]  # netflows were not observed
    assert got[(1, "execs")] == ("/tmp/.x", "The process performed connect and read. It was started by "
                                            "/usr/sbin/sshd.")


def test_variants_keep_what_extras_say_and_the_command_line_where_the_sentence_puts_it() -> None:
    """An auditd event's account, login user and working directory (``extras``) are in every variant: only the part
    tried changes, never the rest of the sentence."""
    event = {"source": "auditd",
             "pid": 5, "uid": 0, "exe": "/usr/sbin/sshd", "process_name": "sshd", "action": "USER_LOGIN",
             "object_addr": "10.0.0.9", "args": json.dumps(["sshd: root [priv]"]),
             "extras": json.dumps({"acct": "root", "auid": "1000", "cwd": "/", "res": "success"})}
    rows = _rows([event])
    assert rows.column("sentence").to_pylist() == [
        'Process <pid> (/usr/sbin/sshd), running "sshd: root [priv]", as user 0, logged in as user 1000, working '
        "in /, called user_login on 10.0.0.9 for the account root."]
    plan = variants(rows, TemplateConfig())
    got = dict(zip(plan.part, plan.sentence, strict=True))
    assert got["args"] == ("Process <pid> (/usr/sbin/sshd), as user 0, logged in as user 1000, working in /, called "
                           "user_login on 10.0.0.9 for the account root.")
    assert all(s.endswith("for the account root.") and "logged in as user 1000, working in /," in s
               for s in plan.sentence)


def _bag(sentences: list[str], calls: list[list[str]]) -> np.ndarray:
    """A toy embedding: one dimension per word of a fixed vocabulary."""
    calls.append(list(sentences))
    words = ["203.0.113.9:4444", "bash", "/tmp/.x", "connect", "user"]
    return np.asarray([[float(w in s) for w in words] for s in sentences], np.float32)


def test_the_top_part_is_the_one_whose_removal_lowers_the_score_most() -> None:
    rows = _rows([SHELL, CONTEXT, {**SHELL, "pid": 7}])  # the third alert repeats the first's variants
    weights = np.asarray([5.0, 1.0, 3.0, 0.5, 0.1])
    calls: list[list[str]] = []
    out = attribute(rows, lambda s: _bag(s, calls), lambda X: X @ weights, TemplateConfig())
    assert out.column("attribution_part").to_pylist() == ["object_addr", "execs", "object_addr"]
    assert out.column("attribution_value").to_pylist() == ["203.0.113.9:4444", "/tmp/.x", "203.0.113.9:4444"]
    # without the address the first sentence ("... as user 33, connected a socket.") keeps bash, connect and user
    assert out.column("attribution_score_without").to_pylist()[0] == 1.6
    assert len(calls) == 1 and len(calls[0]) == len(set(calls[0])) == 8  # distinct variants, embedded in one call
    assert out.column("unseen_attributes").to_pylist() == [None, None, None]  # no vocabulary given


def test_unseen_attributes_and_the_vocabulary_in_the_artifact(tmp_path: Path) -> None:
    benign = _rows([
        {"aspect": "All", "ctx_events": ["EVENT_READ"], "ctx_execs": ["/bin/ls", " /bin/sh "], "ctx_parents": ["init"]},
        {"aspect": "All", "ctx_events": ["EVENT_READ", "EVENT_WRITE"], "ctx_execs": ["/bin/ls"], "ctx_parents": None},
    ])
    vocab = AttributeVocabulary.build(benign, limit=1)
    assert vocab is not None and vocab.values == {"events": ["EVENT_READ"], "execs": ["/bin/ls"], "parents": ["init"]}
    assert vocab.truncated == ["events", "execs"]  # two values each, one kept
    vocab = AttributeVocabulary.build(benign, limit=10)
    assert vocab is not None and vocab.values["execs"] == ["/bin/ls", "/bin/sh"] and not vocab.truncated
    alerts = _rows([CONTEXT, SHELL])
    assert vocab.unseen(alerts) == [["events: EVENT_CONNECT", "execs: /tmp/.x", "parents: /usr/sbin/sshd"], None]

    X = np.random.default_rng(0).normal(size=(30, 5)).astype(np.float32)
    det = make_detector("pca", TrainConfig(model="pca"), ThresholdConfig()).fit(X)
    ref = BenignReference.build([f"s{i}" for i in range(30)], X, np.ones(30), 10, vocab)
    save_detector(det, str(tmp_path / "a"), {}, benign=ref)
    back = load_detector(str(tmp_path / "a"))
    assert back.meta_["explanations"] == {  # type: ignore[attr-defined]
        "nearest_benign": 10, "unseen_attributes": {"values": {"events": 2, "execs": 2, "parents": 1},
                                                    "truncated": []}}
    loaded = back.benign_.vocabulary  # type: ignore[attr-defined]
    assert loaded.values == vocab.values and loaded.unseen(alerts) == vocab.unseen(alerts)
    assert explanations_of(back, windowed=False) == ["nearest_benign", "attribution", "unseen_attributes"]
    assert explanations_of(back, windowed=True) == ["nearest_benign", "unseen_attributes"]


def test_benign_vocabulary_reads_the_training_rows_of_the_templatize_output(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from aptray.triage.vocabulary import benign_vocabulary

    rows = _rows([
        {"aspect": "Exec", "ctx_execs": ["/bin/ls"], "malicious": 0},
        {"aspect": "Exec", "ctx_execs": ["/bin/sh"], "malicious": None},  # unlabelled counts as benign
        {"aspect": "Exec", "ctx_execs": ["/tmp/.x"], "malicious": 1},  # malicious: never in the vocabulary
        {"aspect": "Exec", "ctx_execs": ["/bin/cat"], "malicious": 0},  # its sentence is not a training one
    ])
    (tmp_path / "templatized" / "sentences").mkdir(parents=True)
    pq.write_table(rows, tmp_path / "templatized" / "sentences" / "part-0.parquet")
    train = set(rows.column("sentence").to_pylist()[:3])
    manifest = {"aspect": "Exec", "input": str(tmp_path / "templatized")}  # embedded from a templatize output
    vocab = benign_vocabulary(str(tmp_path / "emb"), manifest, train, limit=100)
    assert vocab is not None and vocab.values == {"execs": ["/bin/ls", "/bin/sh"]}
    assert benign_vocabulary(str(tmp_path / "emb"), {**manifest, "aspect": None}, train, 100) is None  # events
    assert benign_vocabulary(str(tmp_path / "emb"), manifest, train, 0) is None


#: Benign training events: systemd-resolve on its journal socket (twice), curl fetching from a mirror, a login shell.
RESOLVED = {"ppid": 1, "uid": 101, "process_name": "systemd-resolve", "action": "connect",
            "object_addr": "/run/systemd/journal/socket", "args": json.dumps({"sockfd": 15, "addrlen": 29}),
            "return_value": 0}
BENIGN_EVENTS = [
    {"pid": 380, **RESOLVED},
    {"pid": 381, **RESOLVED},
    {"pid": 5000, "ppid": 650, "uid": 0, "process_name": "curl", "action": "connect", "object_addr": "192.0.2.10:80",
     "args": json.dumps({"sockfd": 3, "addrlen": 16}), "return_value": 0},
    {"pid": 6000, "ppid": 720, "uid": 1000, "process_name": "bash", "action": "execve", "object_path": "/bin/bash",
     "args": json.dumps({"pathname": "/bin/bash", "argv": ["-bash"]}), "return_value": 0},
]


def test_benign_values_are_the_most_frequent_value_given_the_action() -> None:
    values = BenignValues.build(_rows(BENIGN_EVENTS), limit=10)
    assert values is not None
    assert values.given["object_addr"] == {"connect": '"/run/systemd/journal/socket"'}  # two rows against one
    assert values.given["object_path"] == {"execve": '"/bin/bash"'}
    assert values.given["return_value"] == {"connect": "0", "execve": "0"}
    assert "exe" not in values.given  # no benign event had an exe
    assert not {"process_name", "uid", "ppid", "action"} & set(values.given)  # the actor and action: removed
    top = BenignValues.build(_rows(BENIGN_EVENTS), limit=1)  # the action with the most rows only
    assert top is not None and top.given["return_value"] == {"connect": "0"} and list(top.given["args"]) == ["connect"]
    assert BenignValues.build(_rows([CONTEXT]), limit=10) is None  # process contexts have no event fields


def test_variants_replace_a_value_by_its_benign_value_and_remove_the_actor_and_action() -> None:
    values = BenignValues.build(_rows(BENIGN_EVENTS), limit=10)
    unlink = {"pid": 4243, "ppid": 4242, "uid": 33, "process_name": "bash", "action": "unlink",
              "object_path": "/tmp/.x", "return_value": 0}
    head = "Process <pid> (bash), child of process <pid>, as user 33,"
    removed = {  # who acted and how: removed under either rule
        0: {"process_name": "Process <pid>, child of process <pid>, as user 33, connected to 203.0.113.9:4444.",
            "ppid": "Process <pid> (bash), as user 33, connected to 203.0.113.9:4444.",
            "uid": "Process <pid> (bash), child of process <pid>, connected to 203.0.113.9:4444.",
            "action": f"{head} called an unknown action on 203.0.113.9:4444."},
        1: {"process_name": "Process <pid>, child of process <pid>, as user 33, deleted /tmp/.x.",
            "ppid": "Process <pid> (bash), as user 33, deleted /tmp/.x.",
            "uid": "Process <pid> (bash), child of process <pid>, deleted /tmp/.x.",
            "action": f"{head} called an unknown action on /tmp/.x."}}
    replaced = f"{head} connected to /run/systemd/journal/socket."  # the benign address of a connect
    for rule, address in (("replace", {replaced}), ("lower", {replaced, f"{head} connected a socket."})):
        plan = variants(_rows([SHELL, unlink]), TemplateConfig(), values, rule)
        got: dict[int, dict[str, set[str]]] = {0: {}, 1: {}}
        for r, p, v, s in zip(plan.row, plan.part, plan.value, plan.sentence, strict=True):
            got[r].setdefault(p, set()).add(s)
            if p == "object_addr":
                assert v == "203.0.113.9:4444"  # the value reported is the alert's own
        # ppid is masked, the args shown are none and the return value is not negative: unchanged, not tried
        assert got[0] == {**{p: {s} for p, s in removed[0].items()}, "object_addr": address}, rule
        # no benign event deletes a file: its path is removed, once under either rule
        assert got[1] == {**{p: {s} for p, s in removed[1].items()}, "object_path": {f"{head} deleted a file."}}


def test_the_counterfactual_names_the_part_removal_misses() -> None:
    """Deleting the address makes the sentence more unusual ("connected a socket", never said in benign training)
    and deleting the process name makes it more usual whatever the event did: removal names the process, the
    benign counterfactual the address."""
    features = ["203.0.113.9", "connected a socket", "(bash)", "as user 33"]
    weights = np.asarray([3.0, 5.0, 1.0, 0.5])

    def embed(sentences: list[str]) -> np.ndarray:
        return np.asarray([[float(f in s) for f in features] for s in sentences], np.float32)

    rows = _rows([SHELL])
    removed = attribute(rows, embed, lambda X: X @ weights, TemplateConfig())
    assert removed.column("attribution_part").to_pylist() == ["process_name"]
    assert removed.column("attribution_score_without").to_pylist() == [3.5]
    values = BenignValues.build(_rows(BENIGN_EVENTS), limit=10)
    replaced = attribute(rows, embed, lambda X: X @ weights, TemplateConfig(), benign=values)
    assert replaced.column("attribution_part").to_pylist() == ["object_addr"]
    assert replaced.column("attribution_value").to_pylist() == ["203.0.113.9:4444"]
    assert replaced.column("attribution_score_without").to_pylist() == [1.5]  # bash as user 33, a benign address


def test_benign_values_in_the_artifact_and_from_the_templatize_output(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from aptray.triage.vocabulary import benign_values

    values = BenignValues.build(_rows(BENIGN_EVENTS), limit=10)
    assert values is not None
    back = _saved_with(tmp_path, values)
    assert back.meta_["explanations"]["benign_values"] == {  # type: ignore[attr-defined]
        "args": 2, "object_addr": 1, "object_path": 1, "return_value": 2}
    assert back.benign_.values.given == values.given  # type: ignore[attr-defined]
    assert back.benign_.vocabulary is None  # type: ignore[attr-defined]

    rows = _rows([*BENIGN_EVENTS, {**SHELL, "malicious": 1}])  # the malicious row never gives a benign value
    (tmp_path / "emb" / "sentences").mkdir(parents=True)  # the embed job templated the raw trace itself
    pq.write_table(rows, tmp_path / "emb" / "sentences" / "part-0.parquet")
    train = set(rows.column("sentence").to_pylist())
    got = benign_values(str(tmp_path / "emb"), {"aspect": None}, train, limit=10)
    assert got is not None and got.given == values.given
    assert benign_values(str(tmp_path / "emb"), {"aspect": "All"}, train, 10) is None  # process contexts
    assert benign_values(str(tmp_path / "emb"), {"aspect": None}, train, 0) is None


def test_parts_benign_training_never_had_beside_their_condition_are_named_and_tried_first(tmp_path: Path) -> None:
    """The program on its own, the action beside the program, a value beside the action, as the sentence shows it
    (masked): an unseen part is named and attribution picks among the unseen parts before the score rule."""
    import dataclasses

    proc = {"pid": 5001, "ppid": 650, "uid": 0, "process_name": "curl", "action": "openat",
            "object_path": "/proc/5001/stat", "return_value": 3}
    values = BenignValues.build(_rows([*BENIGN_EVENTS, proc]), limit=10, mask_kinds=["uuid", "hex", "pid"])
    assert values is not None and values.mask == ["uuid", "hex", "pid"] and not values.truncated
    nc = {"pid": 7000, "ppid": 1, "uid": 0, "process_name": "nc", "action": "connect", "object_addr": "192.0.2.10:80"}
    unlink = {"pid": 4243, "ppid": 4242, "uid": 33, "process_name": "bash", "action": "unlink",
              "object_path": "/tmp/.x"}
    other_pid = {**proc, "pid": 6111, "object_path": "/proc/6111/stat", "return_value": 4}  # masked alike
    alerts = _rows([SHELL, nc, unlink, other_pid])
    assert [[t for _, t in u] for u in values.unseen(alerts)] == [
        ["action: connect (never with process_name bash)", "object_addr: 203.0.113.9:4444 (never with action connect)"],
        ["process_name: nc"],  # nc's action is not judged: benign training never saw nc; its address is curl's
        ["action: unlink (never with process_name bash)"],  # no benign unlink: its path is not judged
        [],  # the same /proc/<pid>/stat; a return value that is not negative is not in the sentence
    ]
    assert BenignValues.build(_rows([*BENIGN_EVENTS, proc]), limit=2).truncated == [  # type: ignore[union-attr]
        "process_name", "action"]  # 3 programs, 4 (program, action) pairs; 2 kept

    features = ["203.0.113.9", "connected a socket", "(bash)", "as user 33"]
    weights = np.asarray([3.0, 5.0, 4.0, 0.5])  # removing bash lowers the score most (3.5, the benign address 4.5)

    def embed(sentences: list[str]) -> np.ndarray:
        return np.asarray([[float(f in s) for f in features] for s in sentences], np.float32)

    rows = _rows([SHELL])
    plain = attribute(rows, embed, lambda X: X @ weights, TemplateConfig(),
                      benign=dataclasses.replace(values, seen={}, known={}))
    assert plain.column("attribution_part").to_pylist() == ["process_name"]
    assert plain.column("unseen_attributes").to_pylist() == [None]
    novel = attribute(rows, embed, lambda X: X @ weights, TemplateConfig(), benign=values)
    assert novel.column("attribution_part").to_pylist() == ["object_addr"]  # unseen: before process_name
    assert novel.column("attribution_score_without").to_pylist() == [4.5]  # not the action's removal (7.5)
    assert novel.column("unseen_attributes").to_pylist()[0][1].startswith("object_addr: 203.0.113.9:4444")

    back = _saved_with(tmp_path, values)
    assert back.meta_["explanations"]["novelty"] == {  # type: ignore[attr-defined]
        "pairs": {"process_name": 3, "action": 4, "object_path": 2, "object_addr": 2, "args": 1},
        "truncated": []}  # no negative return value: nothing judged of it
    loaded = back.benign_.values  # type: ignore[attr-defined]
    assert loaded.mask == values.mask and loaded.unseen(alerts) == values.unseen(alerts)
    assert explanations_of(back, windowed=False) == ["nearest_benign", "attribution", "unseen_attributes"]


def test_score_without_keeps_six_significant_digits_of_small_scores() -> None:
    """Autoencoder scores are about 1e-3: rounded to six decimals, "score_without" kept two to four digits."""
    rows = _rows([SHELL])
    weights = np.asarray([5.0, 1.0, 3.0, 0.5, 0.1]) * 1.23456789e-4
    out = attribute(rows, lambda s: _bag(s, []), lambda X: X @ weights, TemplateConfig())
    assert out.column("attribution_score_without").to_pylist()[0] == pytest.approx(1.6 * 1.23456789e-4, rel=1e-5)


def test_a_process_contexts_unseen_aspect_is_its_top_part() -> None:
    """On bovia/cadets an attack with an event type benign training never had (EVENT_BIND) was attributed to its
    ordinary parent set: the unseen-first rule held for single events only."""
    from aptray.triage.attribute import choose, unseen_of

    benign = _rows([{**CONTEXT, "ctx_events": ["EVENT_READ", "EVENT_CONNECT"]}])
    vocab = AttributeVocabulary.build(benign, limit=10)
    alert = _rows([{**CONTEXT, "ctx_events": ["EVENT_READ", "EVENT_BIND"], "ctx_execs": ["/tmp/.x"]}])
    parts, texts = unseen_of(alert, vocab, None)
    assert parts == [{"events"}] and texts == [["events: EVENT_BIND"]]
    plan = variants(alert, TemplateConfig())
    lowest = {s: (0.0 if p == "parents" else 5.0) for s, p in zip(plan.sentence, plan.part, strict=True)}
    part, _, _ = choose(plan, lowest, 1, parts)  # the parents' removal lowers the score most, yet events come first
    assert part == ["events"]


def test_attributed_values_read_as_the_sentence_shows_them() -> None:
    """Values were shown raw: ``["apparmor_parser", "-r", ...]`` and ``EVENT_ADD_OBJECT_ATTRIBUTE``."""
    from aptray.triage.attribute import value_text

    assert value_text('["apparmor_parser", "-r", "-T"]') == "apparmor_parser -r -T"
    assert value_text("EVENT_ADD_OBJECT_ATTRIBUTE") == "add_object_attribute"
    assert value_text(["/bin/sh", "/bin/ls"]) == "/bin/sh, /bin/ls" and value_text("[x") == "[x"
