"""Attribution without Ray or a model: the variants templating builds with one part removed, the top part chosen
by re-scoring, and the benign attribute vocabulary of process contexts (stored in the artifact, no pickle)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from aptray.artifacts import load_detector, save_detector
from aptray.config import TemplateConfig, ThresholdConfig, TrainConfig
from aptray.detectors import make_detector
from aptray.schema import EVENT_SCHEMA
from aptray.templating.base import templatize
from aptray.triage.attribute import AttributeVocabulary, attribute, variants
from aptray.triage.explain import BenignReference, explanations_of


def _rows(rows: list[dict[str, object]]) -> pa.Table:
    names = [f.name for f in EVENT_SCHEMA if f.name not in ("quarantine_reason", "raw")]
    schema = pa.schema([EVENT_SCHEMA.field(n) for n in names])
    table = pa.Table.from_pylist([{n: r.get(n) for n in names} for r in rows], schema=schema)
    return templatize(table, TemplateConfig())


SHELL = {"pid": 4242, "ppid": 900, "uid": 33, "process_name": "bash", "action": "connect",
         "object_addr": "203.0.113.9:4444", "args": json.dumps({"sockfd": 3, "addrlen": 16}), "return_value": 0}
CONTEXT = {"aspect": "All", "ctx_events": ["EVENT_READ", "EVENT_CONNECT"], "ctx_execs": ["/tmp/.x"],
           "ctx_parents": ["/usr/sbin/sshd"], "ctx_netflows": None}


def test_variants_remove_one_field_or_aspect_through_the_template() -> None:
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

    from aptray.triage.attribute import benign_vocabulary

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
