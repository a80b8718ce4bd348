"""Online parsing: a request's raw events give the same rows and sentences as the batch reader on the file."""

from __future__ import annotations

import ast
import csv
import io
import json
from pathlib import Path

from aptray.config import IngestConfig, Source, TemplateConfig
from aptray.io.beth import COLUMNS as BETH_COLUMNS
from aptray.io.fs import InputFile
from aptray.serve.parse import prepare
from aptray.serve.schemas import EventFormat

BETH = "beth/head_samples_BethSecure"


def batch_sentences(path: Path, parse, source: Source) -> dict[int, str]:  # type: ignore[no-untyped-def]
    """line -> sentence as the batch path makes them (reader's parser on the file, then templatize)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from aptray.templating.base import templatize

    data = path.read_bytes()
    tables = list(parse(io.BytesIO(data), InputFile(str(path), path.name, len(data)), IngestConfig(source=source)))
    table = pa.concat_tables(tables)
    good = table.filter(pc.is_null(table.column("quarantine_reason"))).drop_columns(["quarantine_reason", "raw"])
    done = templatize(good, TemplateConfig())
    return dict(zip(done.column("line").to_pylist(), done.column("sentence").to_pylist(), strict=True))


def test_beth_lines_parse_like_the_batch_reader(shared_data: Path) -> None:
    from aptray.io.beth import parse

    path = shared_data / BETH / "labelled_training_data.csv"
    expected = batch_sentences(path, parse, Source.BETH)
    lines = path.read_text().splitlines()
    with_header = prepare(EventFormat.BETH, lines, TemplateConfig())
    assert with_header.rejected == []
    assert dict(zip([i + 1 for i in with_header.index], with_header.sentences, strict=True)) == expected
    headerless = prepare(EventFormat.BETH, lines[1:], TemplateConfig())  # default header: the 16 BETH columns
    assert headerless.sentences == with_header.sentences
    assert headerless.index == [i - 1 for i in with_header.index]


def test_beth_json_objects_equal_csv_lines(shared_data: Path) -> None:
    lines = (shared_data / BETH / "labelled_training_data.csv").read_text().splitlines()
    rows = list(csv.DictReader(lines))[:10]
    objects = [{**r, "args": ast.literal_eval(r["args"]), "processId": int(r["processId"]), "sus": bool(int(r["sus"]))}
               for r in rows]
    as_json = prepare(EventFormat.BETH, objects, TemplateConfig())
    as_csv = prepare(EventFormat.BETH, lines[1:11], TemplateConfig())
    assert as_json.sentences == as_csv.sentences and len(as_json.sentences) == 10


def test_bad_items_are_rejected_with_reasons(shared_data: Path) -> None:
    good = (shared_data / BETH / "labelled_training_data.csv").read_text().splitlines()[1]
    out = prepare(EventFormat.BETH, [good, "1,2,3", "", "a\nb", {"nope": 1}, good], TemplateConfig())
    assert out.index == [0, 5]
    assert dict(out.rejected) == {
        1: "wrong column count: 3, expected 16",
        2: "no event in this item (blank line)",
        3: "a BETH event must be one CSV line",
        4: 'no BETH column among its keys ("nope")',
    }


def test_beth_json_keys_beyond_its_columns_are_ignored(shared_data: Path) -> None:
    """A BETH object with a key BETH does not have (a newer export's column, a client's note) was refused with
    'unknown BETH column(s)'; it reads as the object without it, alone or in a merged parse. A missing required
    field is still a per-item reason."""
    from aptray.serve.parse import Job, prepare_many

    lines = (shared_data / BETH / "labelled_training_data.csv").read_text().splitlines()
    rows = list(csv.DictReader(lines))[:4]
    plain = prepare(EventFormat.BETH, rows, TemplateConfig())
    extra = [{**rows[0], "note": "seen by the SOC"}, {"exportVersion": 2, **rows[1]}, rows[2],
             {k: v for k, v in rows[3].items() if k != "eventName"} | {"eventNameV2": "close"}]
    out = prepare(EventFormat.BETH, extra, TemplateConfig())
    assert out.index == [0, 1, 2] and out.sentences == plain.sentences[:3]
    assert out.record_ids == plain.record_ids[:3]
    assert out.rejected == [(3, "missing required field eventName")]
    template = TemplateConfig()
    merged = prepare_many([Job(EventFormat.BETH, extra, template), Job(EventFormat.BETH, rows, template)])
    assert not isinstance(merged[0], Exception) and merged[0].sentences == out.sentences
    assert merged[0].rejected == out.rejected


def test_custom_header_for_headerless_lines(shared_data: Path) -> None:
    lines = (shared_data / BETH / "labelled_training_data.csv").read_text().splitlines()
    order = list(reversed(BETH_COLUMNS))
    index = {c: i for i, c in enumerate(BETH_COLUMNS)}
    swapped = []
    for line in lines[1:4]:
        fields = next(csv.reader([line]))
        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow([fields[index[c]] for c in order])
        swapped.append(buf.getvalue())
    assert prepare(EventFormat.BETH, swapped, TemplateConfig(), header=order).sentences == prepare(
        EventFormat.BETH, lines[1:4], TemplateConfig()).sentences


def test_auditd_records_grouped_into_events(shared_data: Path) -> None:
    """One event per serial, reported at its first record's item (equality with the Ray Data reader is checked
    in tests/integration/test_serve.py)."""
    import re

    path = shared_data / "auditd" / "go-libaudit" / "testdata__normal.log"
    lines = path.read_text().splitlines()
    out = prepare(EventFormat.AUDITD, lines, TemplateConfig())
    serial = re.compile(r"msg=audit\(([\d.]+:\d+)\)")
    serials = [m.group(1) for ln in lines if (m := serial.search(ln))]
    assert len(lines) == len(serials)  # every line of this file is an audit record
    first_item = {s: i for i, s in reversed(list(enumerate(serials)))}
    assert len(out.sentences) + len(out.rejected) == len(first_item) > 0
    assert sorted(out.index + [i for i, _ in out.rejected]) == sorted(first_item.values())
    assert len(set(out.record_ids)) == len(out.record_ids)


def test_sentences_pass_through_and_empty_ones_are_rejected() -> None:
    out = prepare(EventFormat.SENTENCE, ["Process <pid> (sshd) opened /etc/shadow.", "  ", {"a": 1}],
                  TemplateConfig())
    assert out.sentences == ["Process <pid> (sshd) opened /etc/shadow."]
    assert [i for i, _ in out.rejected] == [1, 2]


CDM_FIXTURE = Path(__file__).resolve().parent.parent / "data" / "cdm" / "late_subject.json"


def test_cdm_events_are_joined_within_the_request() -> None:
    """Events come before their subject in the fixture; a corrupt line is rejected; objects resolve paths."""
    lines = CDM_FIXTURE.read_text().splitlines()
    out = prepare(EventFormat.CDM, lines, TemplateConfig())
    assert out.sentences, "the fixture's events give sentences"
    assert len(set(out.record_ids)) == len(out.record_ids)
    broken = [i for i, line in enumerate(lines) if '"uuid": "broken' in line]
    assert [i for i, _ in out.rejected] == broken
    assert all("JSON" in reason for _, reason in out.rejected)
    # the subject record arrives after its events, yet its executable reaches their sentences
    by_id = dict(zip(out.record_ids, out.sentences, strict=True))
    assert by_id["11111111-0000-0000-0000-000000000001"] == (
        "Process <pid> (/usr/bin/wget), child of process <pid> (/bin/bash), as user 1001, read /etc/passwd.")
    assert by_id["11111111-0000-0000-0000-000000000002"].endswith("connected to 203.0.113.9:443.")
    # non-event records (subject, objects) are context: neither scored nor rejected
    events = [i for i, line in enumerate(lines) if ".Event" in line and i not in broken]
    assert sorted(out.index) == events


def test_cdm_json_objects_equal_json_text() -> None:
    lines = [line for line in CDM_FIXTURE.read_text().splitlines() if '"uuid": "broken' not in line]
    as_text = prepare(EventFormat.CDM, lines, TemplateConfig())
    as_objects = prepare(EventFormat.CDM, [json.loads(line) for line in lines], TemplateConfig())
    assert as_objects.sentences == as_text.sentences and as_objects.record_ids == as_text.record_ids
    assert not as_objects.rejected


def test_not_a_cdm_datum_is_rejected_by_item() -> None:
    out = prepare(EventFormat.CDM, ["{}", '{"datum": {"Event": {"type": "EVENT_READ"}}}'], TemplateConfig())
    assert not out.sentences
    assert [i for i, _ in out.rejected] == [0, 1]
    assert "not a CDM datum" in out.rejected[0][1] and "uuid" in out.rejected[1][1]


def test_lines_split_at_newlines_only() -> None:
    """A JSON string may hold U+2028 or \\x85 (THEIA paths do): the item stays one record."""
    lines = [line for line in CDM_FIXTURE.read_text().split("\n") if '"uuid": "broken' not in line and line]
    odd = [line.replace("/etc/passwd", "/tmp/odd\u2028name\x85x") for line in lines]
    out = prepare(EventFormat.CDM, ["\n".join(odd)], TemplateConfig())
    assert not out.rejected
    assert any("/tmp/odd\u2028name\x85x" in s for s in out.sentences)


def _same(alone, merged) -> None:  # type: ignore[no-untyped-def]
    """Two Prepared answers are the same answer (rows included, as attribution reads them)."""
    for name in ("index", "record_ids", "sentences", "rejected", "window_keys", "lines", "items"):
        assert getattr(merged, name) == getattr(alone, name), name
    every = range(len(alone.sentences))
    a, m = alone.rows(every), merged.rows(every)
    assert (a is None) == (m is None) or not alone.sentences
    if a is not None and m is not None:
        assert m.equals(a)


def test_requests_parsed_together_answer_as_if_alone(shared_data: Path) -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from aptray.serve.parse import Job, prepare_many

    lines = (shared_data / BETH / "labelled_training_data.csv").read_text().splitlines()
    header, good = lines[0], lines[1:200]
    bad = ["", "1,2,3", 'a,"b', "a\nb", {"nope": 1}, {"processId": 7, "eventName": "openat", "args": []}, header]
    template, ingest = TemplateConfig(), IngestConfig()
    item = st.one_of(st.sampled_from(good), st.sampled_from(good), st.sampled_from(good), st.sampled_from(bad))
    request = st.tuples(st.booleans(), st.lists(item, max_size=5), st.sampled_from([None, tuple(BETH_COLUMNS)]))
    merges = []

    @settings(max_examples=40, derandomize=True, deadline=None, database=None)
    @given(st.lists(request, min_size=1, max_size=8))
    def check(requests: list[tuple[bool, list[object], tuple[str, ...] | None]]) -> None:
        jobs = [Job(EventFormat.BETH, [header, *items] if first else items, template, hdr, ingest)
                for first, items, hdr in requests]
        answers = prepare_many(jobs)
        for job, answer in zip(jobs, answers, strict=True):
            assert not isinstance(answer, Exception)
            _same(prepare(job.fmt, job.events, template, job.header, ingest), answer)
        tables = {id(a.table) for a in answers if not isinstance(a, Exception) and a.table is not None}
        merges.append(len(tables) < sum(1 for a in answers if not isinstance(a, Exception) and a.table is not None))

    check()
    assert sum(merges) >= 10  # most draws did share one parse (a header-first request with others cannot)


def test_requests_that_cannot_share_a_parse_are_prepared_alone(shared_data: Path) -> None:
    from aptray.serve.parse import Job, prepare_many

    lines = (shared_data / BETH / "labelled_training_data.csv").read_text().splitlines()
    template = TemplateConfig()
    swapped = ",".join(reversed(lines[0].split(",")))  # a header of the same columns in another order
    jobs = [Job(EventFormat.BETH, [lines[0], lines[1]], template), Job(EventFormat.BETH, [swapped, "x"], template),
            Job(EventFormat.SENTENCE, ["a sentence", ""], template), Job(EventFormat.BETH, [lines[2]], template)]
    answers = prepare_many(jobs)
    for job, answer in zip(jobs, answers, strict=True):
        assert not isinstance(answer, Exception)
        _same(prepare(job.fmt, job.events, template, job.header), answer)
    assert [a.index for a in answers if not isinstance(a, Exception)] == [[1], [], [0], [0]]


def test_adapt_lines_of_another_aspect_are_rejected_with_the_aspect_they_are(shared_data: Path) -> None:
    """A ProcessAll model sent ProcessEvent lines (or the reverse) rejects them, naming the aspect they are; before,
    All read every unprefixed column as nothing and scored each process as "no recorded activity"."""
    from aptray.config import Aspect

    folder = shared_data / "darpa_tc_adapt" / "bovia" / "clearscope"
    lines = {a: (folder / f"Process{a}.csv").read_text().splitlines()[:4] for a in ("All", "Event", "Exec")}
    for model, sent, named in (("All", "Event", "read it as Event"), ("Event", "All", "read it as All"),
                               ("Exec", "Event", "read it as Event"), ("Event", "Exec", "Exec, Parent or Netflow")):
        out = prepare(EventFormat.ADAPT, lines[sent], TemplateConfig(),
                      ingest=IngestConfig(source=Source.ADAPT, aspect=Aspect(model)))
        assert out.sentences == [], (model, sent)
        assert [i for i, _ in out.rejected] == [1, 2, 3]
        reason = out.rejected[0][1]
        assert reason.startswith(f"header: its columns ({lines[sent][0].split(',')[1]}, ") and named in reason, reason
        assert f"not of Process{model}.csv" in reason
    for aspect in ("All", "Event", "Exec"):  # each file's own aspect still reads all of it
        out = prepare(EventFormat.ADAPT, lines[aspect], TemplateConfig(),
                      ingest=IngestConfig(source=Source.ADAPT, aspect=Aspect(aspect)))
        assert out.rejected == [] and len(out.sentences) == 3
        assert not any("no recorded activity" in s for s in out.sentences), out.sentences


def test_adapt_rows_sent_as_json_objects_read_as_their_csv_lines(shared_data: Path) -> None:
    """ADAPT lines as JSON objects (csv.DictReader rows) were all rejected with "no ADAPT header: send it as the first
    line or in 'header'", though each object names its columns."""
    from aptray.config import Aspect
    from aptray.serve.parse import Job

    lines = (shared_data / "darpa_tc_adapt" / "bovia" / "clearscope" / "ProcessAll.csv").read_text().splitlines()[:8]
    objects = list(csv.DictReader(io.StringIO("\n".join(lines))))
    ingest = IngestConfig(aspect=Aspect.ALL)
    as_csv = Job(EventFormat.ADAPT, lines, TemplateConfig(), None, ingest).run()
    as_json = Job(EventFormat.ADAPT, objects, TemplateConfig(), None, ingest).run()
    assert not isinstance(as_json, Exception) and not isinstance(as_csv, Exception)
    assert as_json.rejected == [] and len(as_json.sentences) == len(objects) == 7
    assert (as_json.sentences, as_json.record_ids) == (as_csv.sentences, as_csv.record_ids)


def test_adapt_json_objects_may_list_only_the_attributes_set(shared_data: Path) -> None:
    """ADAPT objects naming their own columns: one with an attribute the others lack had those others refused
    ("value other than 0/1 in column 42: ''"), and objects whose UUID key was not first were all misread as
    having their UUID in an attribute column. An attribute not listed is 0; the UUID column goes first; a key
    outside a header the request gives is still refused (every ADAPT column is an attribute)."""
    from aptray.config import Aspect

    lines = (shared_data / "darpa_tc_adapt" / "bovia" / "clearscope" / "ProcessExec.csv").read_text().splitlines()[:6]
    objects = list(csv.DictReader(io.StringIO("\n".join(lines))))
    ingest = IngestConfig(aspect=Aspect.EXEC)
    as_csv = prepare(EventFormat.ADAPT, lines, TemplateConfig(), ingest=ingest)
    assert as_csv.rejected == [] and len(as_csv.sentences) == 5
    uuid = lines[0].split(",")[0]
    sparse = [{k: v for k, v in reversed(o.items()) if v == "1"} | {uuid: o[uuid]} for o in objects]
    assert next(iter(sparse[0])) != uuid  # the UUID key last: columns are not taken in the objects' order
    as_json = prepare(EventFormat.ADAPT, sparse, TemplateConfig(), ingest=ingest)
    assert as_json.rejected == [] and as_json.sentences == as_csv.sentences
    assert as_json.record_ids == as_csv.record_ids
    flags = [{k: (True if v == "1" else v) for k, v in o.items()} for o in sparse]  # JSON true, not "1"
    assert prepare(EventFormat.ADAPT, flags, TemplateConfig(), ingest=ingest).sentences == as_csv.sentences
    falses = [o | {k: False for k in objects[0] if k not in o} for o in flags]  # every attribute, false or true
    assert prepare(EventFormat.ADAPT, falses, TemplateConfig(), ingest=ingest).sentences == as_csv.sentences
    headed = prepare(EventFormat.ADAPT, [lines[0], sparse[0], {**sparse[1], "note": "1"}], TemplateConfig(),
                     ingest=ingest)
    assert headed.sentences == as_csv.sentences[:1]
    assert headed.rejected == [(2, 'unknown ADAPT column(s): "note"')]


def test_record_ids_name_the_request(shared_data: Path) -> None:
    """Events known by their line were '<source>:request:<line>' in every request: two requests' ids collided."""
    from aptray.serve.app import request_id_of

    lines = (shared_data / "auditd" / "go-libaudit" / "testdata__normal.log").read_text().splitlines()
    out = prepare(EventFormat.AUDITD, lines, TemplateConfig())
    before = list(out.record_ids)
    out.named("req-1")
    assert out.record_ids == [r.replace(":request:", ":req-1:") for r in before] and before[0].startswith("auditd:")
    said = prepare(EventFormat.SENTENCE, ["a sentence."], TemplateConfig())
    said.named("req-1")
    assert said.record_ids == ["sentence:req-1:1"]
    assert request_id_of("soc-42") == "soc-42"
    made = request_id_of("a:b")  # not usable inside an id: a new one
    assert made != "a:b" and len(made) == 36 and request_id_of(None) != made
