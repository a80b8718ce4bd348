"""The product's contract, on real data: every source x detector family, through every path a user takes.

For each source (ADAPT Event and All, BETH, CDM18, CDM20, auditd) and each detector family that applies to it
(the seed autoencoder, a baseline, the LSTM-AE where events are ordered) this module runs what a user runs:

    templatize -> embed -> train -> score (batch; BETH read from the S3 server) -> the same events online

and checks at every step that rows in = rows kept + rows quarantined, and that the online endpoint (one real
Ray Serve app holding every artifact, over HTTP) scores each event exactly as the batch job did. The inputs are
small slices of ``../shared/data`` so the whole matrix stays fast. Around the matrix: the registry covers every
source and detector, readers fill only the columns they declare, and the user errors (a wrong ``--source``, an
artifact of another format) are one clear message.

Reading order for a newcomer: :data:`CASES` (what is read), :data:`CELLS` (what is trained on it), then
``test_pipeline``.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aptray.config import Aspect, DetectorName, Source

pytestmark = [pytest.mark.timeout(900), pytest.mark.data]

KEY = "acceptance-key-0123456789"


@dataclass(frozen=True)
class Case:
    """One source as a user meets it.

    Attributes:
        name: the case id.
        source, aspect: how the input is read (aspect None: single events).
        train: the training input, under ``../shared/data``.
        score: what the batch job scores (an ADAPT folder the model never saw; else one file).
        online: the file whose lines are sent online (the events of ``score``, so the scores must agree).
        s3: score from the S3 server instead of the local disk.
    """

    name: str
    source: Source
    aspect: Aspect | None
    train: str
    score: str
    online: str
    s3: bool = False


ADAPT_TRAIN, ADAPT_SCORE = "darpa_tc_adapt/pandex/clearscope", "darpa_tc_adapt/bovia/clearscope"
BETH = "beth/head_samples_BethSecure"
CASES: tuple[Case, ...] = (
    Case("adapt-event", Source.ADAPT, Aspect.EVENT, ADAPT_TRAIN, ADAPT_SCORE, f"{ADAPT_SCORE}/ProcessEvent.csv"),
    Case("adapt-all", Source.ADAPT, Aspect.ALL, ADAPT_TRAIN, ADAPT_SCORE, f"{ADAPT_SCORE}/ProcessAll.csv"),
    Case("beth", Source.BETH, None, f"{BETH}/labelled_training_data.csv", f"{BETH}/labelled_testing_data.csv",
         f"{BETH}/labelled_testing_data.csv", s3=True),
    Case("cdm18", Source.CDM, None, "cdm/cadets_cdm18", "cdm/cadets_cdm18/wget.cdm.json",
         "cdm/cadets_cdm18/wget.cdm.json"),
    Case("cdm20", Source.CDM, None, "cdm/cadets_cdm20", "cdm/cadets_cdm20/direct_pipe.cdm.json",
         "cdm/cadets_cdm20/direct_pipe.cdm.json"),
    Case("auditd", Source.AUDITD, None, "auditd/ait_lds_v2_russellmitchell",
         "auditd/ait_lds_v2_russellmitchell/intranet_server_audit.log",
         "auditd/ait_lds_v2_russellmitchell/intranet_server_audit.log"),
)
#: One detector per family: the seed autoencoder, a baseline, the windowed LSTM-AE.
FAMILIES: tuple[DetectorName, ...] = (DetectorName.AE, DetectorName.PCA, DetectorName.LSTM_AE)


def _applies(case: Case, detector: DetectorName) -> bool:
    from aptray.detectors.registry import detector_spec
    from aptray.io.sources import source_spec

    return not detector_spec(detector).windowed or source_spec(case.source).windows_possible(case.aspect)


#: Every case with each family, and the ensemble (members of the other families in one artifact) on BETH.
CELLS: tuple[tuple[Case, DetectorName], ...] = (
    *((c, d) for c in CASES for d in FAMILIES if _applies(c, d)),
    *((c, DetectorName.ENSEMBLE) for c in CASES if c.source is Source.BETH),
)


def _id(cell: tuple[Case, DetectorName]) -> str:
    return f"{cell[0].name}-{cell[1].value}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- the pipeline, run once per case and cell, shared by the tests ---------------------------------------


class Pipeline:
    """Runs and remembers the stages (each stage of each case or cell runs once per module)."""

    def __init__(self, root: Path, data: Path, s3_bucket: str) -> None:
        import yaml

        from aptray.config import AptrayConfig

        self.root = root
        self.data = data
        self.s3 = s3_bucket
        settings = {
            "ray": {"num_cpus": 2},
            # one warm encoder actor serves every job of the module (and the CLI runs, through config_file)
            "embed": {"actors": 1, "cpus_per_actor": 0.5, "torch_threads": 1, "keep_warm_s": 900},
            "train": {"epochs": 3, "patience": 0, "val_fraction": 0.1, "seed": 0},
        }
        self.cfg = AptrayConfig.model_validate(settings)
        self.config_file = root / "config.yaml"
        self.config_file.write_text(yaml.safe_dump(settings))
        self._templatized: dict[str, dict[str, Any]] = {}
        self._embedded: dict[str, dict[str, Any]] = {}
        self._trained: dict[str, dict[str, Any]] = {}
        self._scored: dict[str, dict[str, Any]] = {}

    def case_cfg(self, case: Case) -> Any:
        cfg = self.cfg.model_copy(deep=True)
        cfg.ingest.source = case.source
        cfg.ingest.aspect = case.aspect
        return cfg

    def templatized(self, case: Case) -> dict[str, Any]:
        from aptray.templating.job import run_templatize

        if case.name not in self._templatized:
            out = self.root / case.name / "templatize"
            counts = run_templatize(case.source, str(self.data / case.train), str(out), self.case_cfg(case))
            self._templatized[case.name] = {"out": out, **counts}
        return self._templatized[case.name]

    def embedded(self, case: Case) -> dict[str, Any]:
        from aptray.embed.job import run_embed

        if case.name not in self._embedded:
            out = self.root / case.name / "embed"
            counts = run_embed(str(self.templatized(case)["out"]), str(out), self.case_cfg(case))
            self._embedded[case.name] = {"out": out, **counts}
        return self._embedded[case.name]

    def trained(self, case: Case, detector: DetectorName) -> dict[str, Any]:
        from aptray.train import run_train

        key = f"{case.name}-{detector.value}"
        if key not in self._trained:
            cfg = self.case_cfg(case)
            cfg.train.model = detector
            out = self.root / case.name / f"artifact-{detector.value}"
            self._trained[key] = run_train(str(self.embedded(case)["out"]), str(out), cfg)
        return self._trained[key]

    def score_input(self, case: Case) -> str:
        if not case.s3:
            return str(self.data / case.score)
        from tests.conftest import upload_dir

        path = self.data / case.score
        uri = upload_dir(path.parent, self.s3, case.name)
        return f"{uri}/{path.name}"

    def scored(self, case: Case, detector: DetectorName) -> dict[str, Any]:
        from aptray.score import run_score

        key = f"{case.name}-{detector.value}"
        if key not in self._scored:
            cfg = self.cfg.model_copy(deep=True)  # no --source / --aspect: both come from the artifact
            cfg.score.artifact = self.trained(case, detector)["artifact"]
            out = self.root / case.name / f"score-{detector.value}"
            result = run_score(self.score_input(case), str(out), cfg)
            self._scored[key] = {"out": out, **result}
        return self._scored[key]


@pytest.fixture(scope="module")
def pipeline(shared_data: Path, ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    pipeline = Pipeline(tmp_path_factory.mktemp("acceptance"), shared_data, "acceptance")
    yield pipeline  # its warm encoder stops with the module (tests/conftest.py)


@pytest.fixture(scope="module")
def server(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Serve app holding every cell's artifact (a request names its model); yields the base URL."""
    from ray import serve

    from aptray.config import ServeConfig
    from aptray.serve.app import run

    models = {_id(cell): str(pipeline.trained(*cell)["artifact"]) for cell in CELLS}
    key_file = tmp_path_factory.mktemp("keys") / "keys.txt"
    key_file.write_text(f"{KEY}\n")
    port = _free_port()
    run(ServeConfig(artifact=models[_id(CELLS[0])], models=models, port=port, api_key_file=str(key_file),
                    num_cpus=0, torch_threads=1, max_events_per_request=4096,
                    max_request_bytes=8 << 20))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()


def _scores(out: Path) -> dict[tuple[str, str], float]:
    """The batch job's verdicts: (source file, record id) -> score (the CDM samples reuse event UUIDs across
    files)."""
    import pyarrow.dataset as pads

    table = pads.dataset(str(out / "scores"), format="parquet").to_table(columns=["record_id", "source_file", "score"])
    return {(f.rsplit("/", 1)[-1], r): s
            for r, f, s in zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True)}


def _post(server: str, body: dict[str, Any]) -> Any:
    import httpx

    return httpx.post(f"{server}/v1/score", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=300)


# ---- the matrix ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", CELLS, ids=_id)
def test_pipeline(cell: tuple[Case, DetectorName], pipeline: Pipeline, server: str) -> None:
    """templatize -> embed -> train -> batch score -> online: rows accounted for at each step, online == batch."""
    case, detector = cell
    tpl = pipeline.templatized(case)
    assert tpl["rows"] > 0
    assert tpl["rows_read"] == tpl["rows"] + tpl["quarantined"]
    emb = pipeline.embedded(case)
    assert emb["rows"] == tpl["rows"] and 0 < emb["encoded"] <= emb["distinct_sentences"] <= emb["rows"]

    trained = pipeline.trained(case, detector)
    assert trained["model"] == detector
    assert trained["benign_rows"] > 0 and trained["trainer"] == "local"
    artifact = json.loads((Path(trained["artifact"]) / "config.json").read_text())
    assert artifact["data"] == {"source": case.source.value, "aspect": case.aspect.value if case.aspect else None}
    # ProcessAll is embedded aspect by aspect (embed.compose auto), every other input whole; online must follow
    composed = "aspects" if case.aspect is Aspect.ALL else "none"
    assert artifact["embedder"]["compose"] == composed

    scored = pipeline.scored(case, detector)
    assert scored["source"] == case.source.value  # taken from the artifact: no --source given
    assert scored["aspect"] == (case.aspect.value if case.aspect else None)
    assert scored["rows_scored"] > 0
    assert scored["rows_read"] == scored["rows_scored"] + scored["rows_quarantined"]
    # the files parsed: an ADAPT folder lists its ground truth and every context file, and reads one of them
    read = 1 if case.source is Source.ADAPT else scored["files"]
    assert (scored["files_read"], scored["files"] > read) == (read, case.source is Source.ADAPT)
    batch = _scores(Path(scored["out"]))
    assert len(batch) == scored["rows_scored"]
    manifest = json.loads((Path(scored["out"]) / "manifest.json").read_text())
    assert manifest["artifact_sha256"]["model.safetensors"] == artifact["files"]["model.safetensors"]

    online_file = pipeline.data / case.online
    lines = online_file.read_text().split("\n")  # "\n" only: CDM strings may hold U+2028
    r = _post(server, {"format": case.source.value, "events": [ln for ln in lines if ln], "model": _id(cell)})
    assert r.status_code == 200, r.text
    body = r.json()
    rel = online_file.name
    # the request is the file: '<source>:<request_id>:<line>' online is '<source>:<file>:<line>' in batch
    online = {res["record_id"].replace(f":{body['request_id']}:", f":{rel}:"): res["score"] for res in body["results"]}
    expected = {rid: score for (f, rid), score in batch.items() if f == rel}
    assert online.keys() == expected.keys(), "online and batch scored different events"
    for rid, score in expected.items():
        assert online[rid] == pytest.approx(score, rel=1e-4, abs=1e-5), rid


# ---- around the matrix ------------------------------------------------------------------------------------


def test_matrix_covers_every_source_and_detector_family() -> None:
    """The registry lists every source and detector, and the matrix exercises each source and family."""
    from aptray.detectors.registry import DETECTORS, detector_spec
    from aptray.io.sources import SOURCES
    from aptray.serve.schemas import EventFormat

    assert set(SOURCES) == set(Source) and set(DETECTORS) == set(DetectorName)
    assert {f.value for f in EventFormat} == {s.value for s in Source if s is not Source.SYNTHETIC} | {"sentence"}
    assert {c.source for c, _ in CELLS} == set(Source) - {Source.SYNTHETIC}  # synthetic: make demo and test_score
    assert {detector_spec(d).family for _, d in CELLS} == {s.family for s in DETECTORS.values()}
    assert {d for _, d in CELLS if detector_spec(d).windowed}, "a windowed detector is in the matrix"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_reader_fills_only_declared_columns(case: Case, pipeline: Pipeline) -> None:
    import pyarrow.dataset as pads

    from aptray.io.sources import source_spec
    from aptray.templating.base import SENTENCE_FIELDS

    table = pads.dataset(str(pipeline.templatized(case)["out"] / "sentences"), format="parquet").to_table()
    filled = {c for c in table.column_names if table.column(c).null_count < table.num_rows}
    filled -= {f.name for f in SENTENCE_FIELDS}
    assert filled <= source_spec(case.source).columns, sorted(filled - source_spec(case.source).columns)
    assert {"record_id", "source", "source_file", "line"} <= filled


def _cli(args: list[str], pipeline: Pipeline, capsys: pytest.CaptureFixture[str],
         monkeypatch: pytest.MonkeyPatch) -> tuple[int, Any]:
    """Run the ``aptray`` console script in this process (the module's settings file given as ``--config``);
    returns its exit code and its JSON line (its stderr if it printed none)."""
    from tests.conftest import run_aptray

    code, line, err = run_aptray([*args, "--config", str(pipeline.config_file)], capsys, monkeypatch)
    return code, (line if line is not None else err)


def test_score_cli_on_an_unseen_adapt_folder(pipeline: Pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The command of the README, on a folder the model never saw: every row read is scored or quarantined."""
    case = CASES[0]
    artifact = pipeline.trained(case, DetectorName.AE)["artifact"]
    code, line = _cli(["score", str(pipeline.data / ADAPT_SCORE), "--source", "adapt", "--aspect", "Event",
                       "--artifact", artifact, "--out", str(tmp_path / "out")], pipeline, capsys, monkeypatch)
    assert code == 0, line
    assert line["rows_read"] == line["rows_scored"] + line["rows_quarantined"] == 69  # bovia/clearscope processes
    assert line["aspect"] == "Event"
    ev = line["evaluation"]  # the folder's ground truth labels it: how the scores rank its 4 attacks, as run says
    assert (ev["scored"], ev["labelled"], ev["malicious"]) == (69, 69, 4) and 0 <= ev["auc_roc"] <= 1


def test_a_mismatched_artifact_is_one_clear_error(pipeline: Pipeline, server: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    beth = CASES[2]
    artifact = pipeline.trained(beth, DetectorName.AE)["artifact"]
    audit = str(pipeline.data / CASES[5].score)
    code, line = _cli(["score", audit, "--source", "auditd", "--artifact", artifact, "--out", str(tmp_path / "a")],
                      pipeline, capsys, monkeypatch)
    assert code == 2 and line["kind"] == "FormatMismatchError"
    assert "trained on beth events" in line["error"] and "auditd events" in line["error"]
    assert not (tmp_path / "a" / "scores").exists()
    code, line = _cli(["score", audit, "--source", "auditd", "--artifact", artifact, "--out", str(tmp_path / "b"),
                       "--allow-format-mismatch"], pipeline, capsys, monkeypatch)
    assert code == 0 and line["rows_scored"] > 0  # allowed explicitly
    # online: the same refusal as a 422 naming the field
    events = (pipeline.data / CASES[5].online).read_text().splitlines()[:20]
    r = _post(server, {"format": "auditd", "events": events, "model": _id((beth, DetectorName.AE))})
    assert r.status_code == 422 and "body.format" in r.json()["message"] and "beth" in r.json()["message"]
    # BETH events sent to an ADAPT ProcessAll model are single events (it said "beth All process contexts")
    lines = (pipeline.data / beth.online).read_text().splitlines()[:3]
    r = _post(server, {"format": "beth", "events": lines, "model": _id((CASES[1], DetectorName.AE))})
    assert r.status_code == 422 and "this request holds beth events" in r.json()["message"], r.json()


def test_a_wrong_source_names_the_likely_one(pipeline: Pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    audit = str(pipeline.data / CASES[5].score)
    code, line = _cli(["templatize", "beth", audit, "--out", str(tmp_path / "t")], pipeline, capsys, monkeypatch)
    assert code == 2 and line["kind"] == "WrongSourceError"
    assert line["error"].startswith("100% of the first 2,316 lines of intranet_server_audit.log are not BETH CSV")
    assert "--source auditd" in line["error"] and "\n" not in line["error"]  # the message, not Ray's advice after it
    # a folder without one BETH file: the BETH artifact's source is the default, and the error says what is there
    artifact = pipeline.trained(CASES[2], DetectorName.AE)["artifact"]
    code, line = _cli(["score", str(Path(audit).parent), "--artifact", artifact, "--out", str(tmp_path / "s")],
                      pipeline, capsys, monkeypatch)
    assert code == 2 and line["kind"] == "WrongSourceError"
    assert "no BETH CSV files" in line["error"]
    assert "intranet_server_audit.log looks like Linux audit.log (--source auditd)" in line["error"]


def test_windowed_scores_do_not_depend_on_file_groups(pipeline: Pipeline, tmp_path: Path) -> None:
    """LSTM-AE windows never span files: the BETH testing file scored in one group with another BETH file, its rows
    hash-partitioned by process (as large groups are), scores exactly as when the matrix scored it alone."""
    from aptray.score import run_score

    alone = _scores(pipeline.scored(CASES[2], DetectorName.LSTM_AE)["out"])
    cfg = pipeline.cfg.model_copy(deep=True)
    cfg.score.artifact = pipeline.trained(CASES[2], DetectorName.LSTM_AE)["artifact"]
    cfg.embed.join_partitions = 2  # the hash-partitioned path of groups above 200k rows
    files = str(pipeline.data / BETH / "labelled_t*_data.csv")  # the training and testing samples
    both = run_score(files, str(tmp_path / "both"), cfg)
    assert both["files"] == 2 and both["rows_scored"] > 150
    together = _scores(tmp_path / "both")
    assert len(together) == both["rows_scored"]
    test_file = {k: v for k, v in together.items() if k[0] == Path(CASES[2].score).name}
    assert test_file.keys() == alone.keys() and len(alone) > 50
    for key, score in alone.items():
        assert test_file[key] == pytest.approx(score, rel=1e-5, abs=1e-6), key


def test_score_reads_and_appends_the_cache_and_trusted_means_unhashed(pipeline: Pipeline, tmp_path: Path) -> None:
    import shutil

    from aptray.artifacts import ArtifactError
    from aptray.score import run_score

    case = CASES[5]
    cfg = pipeline.cfg.model_copy(deep=True)
    cfg.score.artifact = pipeline.trained(case, DetectorName.AE)["artifact"]
    cfg.embed.cache = str(tmp_path / "cache")
    first = run_score(str(pipeline.data / case.score), str(tmp_path / "s1"), cfg)
    assert first["encoded"] == first["distinct_sentences"] > 0
    second = run_score(str(pipeline.data / case.score), str(tmp_path / "s2"), cfg)
    assert second["encoded"] == 0 and second["distinct_sentences"] == first["distinct_sentences"]
    assert _scores(tmp_path / "s1") == _scores(tmp_path / "s2")
    # an artifact without recorded hashes is refused, and scores with --trusted (in the scorer actors too)
    hand_made = tmp_path / "hand-made"
    shutil.copytree(cfg.score.artifact, hand_made)
    config = json.loads((hand_made / "config.json").read_text())
    config["files"] = {}
    (hand_made / "config.json").write_text(json.dumps(config))
    cfg.score.artifact = str(hand_made)
    with pytest.raises(ArtifactError, match="no sha256"):
        run_score(str(pipeline.data / case.score), str(tmp_path / "s3"), cfg)
    cfg.score.trusted = True
    trusted = run_score(str(pipeline.data / case.score), str(tmp_path / "s4"), cfg)
    assert trusted["rows_scored"] == first["rows_scored"]
