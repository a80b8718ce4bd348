"""Alerts grouped into incidents by process lineage and time, ranked, summarised."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from aptray.triage.incidents import group_incidents, items_to_full_recall


def _alerts() -> pa.Table:
    rows = [  # record, host, pid, ppid, time, score, malicious, sentence
        ("a", "h1", 10, 1, 100.0, 5.0, 1, "bash ran curl"),
        ("b", "h1", 11, 10, 130.0, 9.0, 1, "curl connected to 1.2.3.4"),  # child of pid 10: same lineage
        ("c", "h1", 10, 1, 9000.0, 2.0, 0, "bash read a file"),  # same process, hours later: a new incident
        ("d", "h2", 10, 1, 120.0, 3.0, 0, "bash ran ls"),  # the same pid on another host: not linked
        ("e", None, None, None, None, 4.0, 1, "The process performed read."),  # a process context: alone
    ]
    cols = ("record_id", "host", "pid", "ppid", "timestamp", "score", "malicious", "sentence")
    table = pa.table({c: [r[i] for r in rows] for i, c in enumerate(cols)})
    return table.append_column("tier", pa.array(["high", "high", "low", "low", "medium"]))


def test_lineage_and_time_window_make_the_incidents() -> None:
    incidents, of = group_incidents(_alerts(), window_s=3600)
    ids = dict(zip("abcde", of.to_pylist(), strict=True))
    assert ids["a"] == ids["b"] and len(set(ids.values())) == 4
    rows = incidents.to_pylist()
    assert [r["alerts"] for r in rows] == [2, 1, 1, 1]  # ranked by top score: 9 (a+b), 4 (e), 3 (d), 2 (c)
    assert [r["top_score"] for r in rows] == [9.0, 4.0, 3.0, 2.0]
    top = rows[0]
    assert (top["first_time"], top["last_time"], top["hosts"], top["top_tier"]) == (100.0, 130.0, ["h1"], "high")
    assert top["summary"].startswith("2 alerts on h1 between t=100 s and t=130 s (30 s)")  # a boot clock (BETH)
    assert "Most unusual: curl connected to 1.2.3.4 Also: bash ran curl" in top["summary"]
    # incidents read to reach all 3 malicious alerts: 2 of 4 (the raw alerts would need 3 of 5: b, a, e)
    assert items_to_full_recall(incidents, 3) == {"incidents_read": 2, "malicious_alerts": 3}
    # a window longer than the gap joins c to a and b
    wide, _ = group_incidents(_alerts(), window_s=10_000)
    assert wide.column("alerts").to_pylist()[0] == 3


def test_no_alerts_no_incidents() -> None:
    incidents, of = group_incidents(_alerts().slice(0, 0))
    assert incidents.num_rows == 0 and len(of) == 0


def test_summaries_read_as_english() -> None:
    """Epoch seconds were printed raw ("between 1642746582 and 1642746582 (0 s)"), the count of further behaviours
    came after the full stop with a wrong plural, and process names nested brackets."""
    from aptray.triage.incidents import summarize

    text = summarize(["a.", "b.", "c.", "d."], [4.0, 3.0, 2.0, 1.0], ["h1"], ["sshd (22)"], 1642746582.1,
                     1642746582.3)
    assert text.startswith("4 alerts on h1 at 2022-01-21 06:29:42 UTC from 1 process: sshd (22). Most unusual: a.")
    assert text.endswith("Also: b. / c. And 1 other distinct behaviour.")
    assert " between 2022-01-21 06:29:42 UTC and 2022-01-21 06:30:12 UTC (30 s)" in summarize(
        ["a."], [1.0], [], [], 1642746582.0, 1642746612.0)


def test_each_alert_file_gets_its_own_rows_incidents(tmp_path: object) -> None:
    """CDM UUIDs repeat across replayed trace files: the incident ids, looked up by record id, put one file's alert
    under another file's incident (the parquet held 7 alerts for an incident of 6)."""
    from pathlib import Path

    import pyarrow.parquet as pq

    from aptray.score import write_incidents

    out = Path(str(tmp_path))
    for group, host in (("a", "h1"), ("b", "h2")):  # the same record id on two hosts, in two files
        (out / "alerts" / f"group={group}").mkdir(parents=True)
        pq.write_table(pa.table({"record_id": ["uuid-1", f"uuid-{group}"], "score": [2.0, 1.0], "host": [host] * 2,
                                 "pid": [1, 1], "ppid": [0, 0], "timestamp": [1.0, 2.0],
                                 "sentence": ["x.", "y."], "tier": ["high", "low"]}),
                       out / "alerts" / f"group={group}" / "part-0.parquet")
    assert write_incidents(str(out), 3600.0) == 2
    incidents = pq.read_table(out / "incidents" / "incidents.parquet").to_pylist()
    for group, host in (("a", "h1"), ("b", "h2")):
        ids = pq.read_table(out / "alerts" / f"group={group}" / "part-0.parquet").column("incident_id").to_pylist()
        (mine,) = [i for i in incidents if i["hosts"] == [host]]
        assert ids == [mine["incident_id"]] * 2


def test_alerts_without_a_pid_that_say_the_same_are_one_incident() -> None:
    """On bovia/cadets 15 attack processes of one sentence filled incident ranks 14 to 28 one by one; in CDM five
    subject-less add_object_attribute events of one second were five incidents."""
    alerts = pa.table({"record_id": ["a", "b", "c", "d"], "score": [3.0, 3.0, 1.0, 2.0],
                       "host": [None, None, None, "h"], "pid": [None, None, None, None],
                       "sentence": ["The process ran x.", "The process ran x.", "The process ran y.",
                                    "The process ran x."]})
    incidents, of = group_incidents(alerts)
    ids = of.to_pylist()
    assert ids[0] == ids[1] and len(set(ids)) == 3  # the same sentence on another host is another incident
    assert incidents.column("alerts").to_pylist() == [2, 1, 1]


def test_auditd_alerts_of_one_login_session_are_one_incident(shared_data: Path) -> None:
    """AIT-LDS russellmitchell's escalation (lines 1860-1868): www-data runs ``su`` to jhall (pid 27950), then
    ``sudo cat /etc/shadow`` (pid 27966) on the same terminal; neither is the other's parent, and auditd's session
    number is unset in that web shell, so lineage alone made two incidents. The terminal links them; a numbered
    session links alerts across terminals and wins over a shared terminal."""
    from aptray.config import IngestConfig, Source
    from aptray.io.auditd import parse_request
    from aptray.io.request import Request
    from aptray.triage.incidents import session_key

    path = shared_data / "auditd" / "ait_lds_v2_russellmitchell" / "intranet_server_audit.log"
    lines = path.read_text().splitlines()
    events = parse_request(Request(lines[1855:1869]), IngestConfig(source=Source.AUDITD))
    events = events.filter(pc.is_null(events.column("quarantine_reason")))
    pids = events.column("pid").to_pylist()
    assert {27950, 27966} <= set(pids) and 27933 in pids  # su, sudo, and cron's session 308 before them
    alerts = events.append_column("score", pa.array([float(i) for i in range(events.num_rows)]))
    alerts = alerts.append_column("sentence", pa.array([f"s{i}" for i in range(events.num_rows)]))
    _, of = group_incidents(alerts)
    incident = dict(zip(pids, of.to_pylist(), strict=True))
    assert incident[27950] == incident[27966]  # su and sudo on /dev/pts/1 (USER_CMD says pts/1)
    assert incident[27933] != incident[27950]  # cron's root session: another session, no terminal
    keys = [session_key("auditd", e) for e in events.column("extras").to_pylist()]
    assert ("ses", "308") in keys and ("tty", "pts1") in keys
    assert session_key("auditd", '{"ses": "7", "tty": "pts1"}') == ("ses", "7")  # the session number first
    assert session_key("auditd", '{"ses": "4294967295", "terminal": "ssh"}') is None  # no session, no terminal
    assert session_key("beth", '{"ses": "7"}') is None  # an extras column of another source means nothing here
