"""The experiment driver: every dataset x aspect x embedder x detector x seed -> DIR/metrics.json and a report.

Per dataset x aspect (a *target*): templatize (:func:`aptray.templating.job.run_templatize`), embed with each
embedder through the shared cache (:func:`aptray.embed.job.run_embed`), draw one split per seed
(:mod:`aptray.evaluate.splits`), then fan out one Ray task per embedder x detector x seed
(:func:`aptray.evaluate.runs.fit_and_score`). AVF, the ADAPT papers' baseline, runs on the raw 0/1
attributes of the process context (embedder ``raw``) when the rows have them. The targets of one ADAPT folder
share one split of the folder's processes, and their scores are also fused per process across aspects (the
target :data:`aptray.evaluate.per_aspect.PER_ASPECT`; :mod:`aptray.evaluate.per_aspect`).

``DIR/metrics.json`` (strict JSON; a metric that is undefined, e.g. AUC on a split without malicious rows, is
``null``), ``schema_version`` 1:

* ``input``, ``source``, ``created``, ``config`` (the experiment section), ``versions``, ``template`` (the
  template version and settings every sentence was made with);
* ``targets``: one per dataset x aspect: ``dataset``, ``aspect``, ``uri`` (what was read), ``rows``, ``malicious``,
  ``distinct_sentences``, ``embedders`` (representation -> its ``embedder`` record (model id, revision, dim,
  backend, composition), the ``embedder`` name it was asked as, the template style, embed counts; or ``skipped``),
  ``skipped`` (reason or null), and where it ran ``malicious_with_benign_twin`` / ``twin_sentences`` (malicious
  rows whose exact sentence a benign row also has) and ``sentence_ceiling`` (metric -> {mean, ...} over seeds:
  the best test AUC-ROC / PR-AUC any score of the sentence alone can reach; :func:`label_conflicts`);
* ``runs``: one per dataset x aspect x embedder x detector x seed (``embedder`` names the representation:
  ``minilm``, ``minilm+aspects`` where ProcessAll's clauses were embedded one by one (``embed.compose``),
  ``/terse`` for terse sentences): those keys plus ``status`` (ok/error),
  ``error``, ``train_seconds``, ``score_seconds``, ``rows`` (train, train_benign, val, val_malicious, test,
  test_malicious), ``threshold`` (value, method), ``test`` and ``val`` metrics (``auc_roc``, ``pr_auc``,
  ``ndcg``, ``ndcg_at_<k>``, ``mean_rank_malicious``, ``worst_rank_malicious``, ``rows``, ``positives``; test
  adds ``precision``, ``recall``, ``f1``, ``confusion`` {tn, fp, fn, tp}, ``threshold``), ``history`` (torch
  models: per-epoch ``train_loss`` and ``val_loss``);
* ``summary``: one per dataset x aspect x embedder x detector: ``test`` and ``val`` -> metric ->
  {mean, std, min, max, n} over seeds (NaN-aware; ``n`` counts seeds where the metric is defined), and
  ``train_seconds``;
* ``best``: one per dataset x aspect: ``aptray_selected`` (the combination of aptray's own detectors, the torch
  models, kNN and rarity, with the best mean *validation* AUC; null when no validation split holds a malicious
  row), ``aptray_best_on_test`` (the best
  mean test AUC: an optimistic upper bound, labelled as such), ``baselines`` (detector -> the summary of its
  representation with the best mean validation AUC, the rule that chooses aptray's; null without a malicious
  validation row) and ``baseline_best_on_test`` (the baseline and representation with the best mean test AUC);
* ``chosen``: per dataset x context with a choice on validation, the config that trains it and the ``aptray run``
  command (:mod:`aptray.evaluate.deploy`; the configs are ``DIR/chosen/<dataset>-<aspect>.yaml``).

Per target, ``DIR/scores/<dataset>/<aspect>/`` holds ``rows.parquet`` (row, record_id, sentence, malicious, and
the :data:`INCIDENT_COLUMNS` single events have, to group alerts into incidents),
``scores.parquet`` (embedder, detector, seed, split, row, score) and ``tsne.parquet``; the report
(:mod:`aptray.evaluate.report`) is built from these files alone.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import posixpath
import re
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from aptray.config import AptrayConfig, Aspect, Compose, ProcessStyle, Protocol, Source
from aptray.detectors.registry import BASELINE_DETECTORS
from aptray.evaluate.deploy import CHOSEN
from aptray.evaluate.fusion import Candidates
from aptray.evaluate.metrics import aggregate, finite_or_none
from aptray.evaluate.per_aspect import PER_ASPECT, Member, Universe, aligned_splits, per_aspect_runs
from aptray.evaluate.runs import ScoreRows
from aptray.evaluate.splits import Split
from aptray.io.fs import is_s3, join, resolve
from aptray.logs import Progress

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
RAW = "raw"
#: Most raw attributes kept for AVF (the most frequent ones).
MAX_RAW_ATTRIBUTES = 4096
_CTX = ("ctx_events", "ctx_execs", "ctx_parents", "ctx_netflows")
#: Event columns kept in ``rows.parquet`` where a target's rows have them: what the report groups the test split's
#: alerts into incidents by (:mod:`aptray.triage.incidents`; process contexts have none).
INCIDENT_COLUMNS = ("host", "pid", "ppid", "timestamp", "process_name", "exe")


@dataclass(frozen=True)
class Target:
    """One dataset x aspect: ``name`` is the dataset (e.g. ``bovia/clearscope``), ``uri`` what the reader reads."""

    name: str
    uri: str
    aspect: Aspect | None


@dataclass
class Prepared:
    """A target's rows and features, aligned by row."""

    record_ids: list[str]
    sentences: list[str]
    y: np.ndarray
    features: dict[str, np.ndarray] = field(default_factory=dict)  # by representation (or RAW)
    info: dict[str, Any] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)  # representation -> its embedder (registry name)
    events: dict[str, pa.Array] = field(default_factory=dict)  # INCIDENT_COLUMNS the rows have (not all null)


def discover(input_uri: str, source: Source, aspects: list[Aspect] | None) -> list[Target]:
    """The targets of an input: ADAPT system folders (or a root above them) x the aspects present.

    Args:
        input_uri: an ADAPT system folder, a folder above several (e.g. ``darpa_tc_adapt``), one
            ``Process<Aspect>.csv``, or any input of another source (its single events and, where the reader
            builds process contexts (CDM, auditd), their ProcessAll; with ``aspects``, those contexts).
        source: the trace format.
        aspects: aspects to keep; None keeps every aspect that has a file, and ``All`` (every aspect of a process
            joined by the reader) wherever two or more single-aspect files exist. ``All`` is also run when asked
            for and only single-aspect files exist.
    """
    if source is not Source.ADAPT:  # single events, and the per-process contexts where the reader builds them
        from aptray.io.sources import source_spec

        name = posixpath.basename(input_uri.rstrip("/")) or input_uri
        contexts = [a for a in source_spec(source).aspects if (a in aspects if aspects else a is Aspect.ALL)]
        events = [None] if aspects is None else []
        if not events and not contexts:
            raise ValueError(f"{source.value} traces have no process contexts {[a.value for a in aspects or []]}; "
                             f"drop --aspects or choose among {[a.value for a in source_spec(source).aspects]}")
        return [Target(name, input_uri, a) for a in (*events, *contexts)]
    import pyarrow.fs as pafs

    from aptray.io.adapt import file_aspect

    fs, root = resolve(input_uri)
    if any(ch in root for ch in "*?["):  # a glob of system folders or files: each match as if given alone
        from aptray.io.fs import glob_paths

        matches = glob_paths(fs, root)
        if not matches:
            raise FileNotFoundError(f"no input matches {input_uri!r}")
        scheme = input_uri.split("://", 1)[0] + "://" if is_s3(input_uri) else ""
        found = [t for m in matches for t in discover(scheme + m, source, aspects)]
        return list(dict.fromkeys(found))
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"no input at {input_uri!r}")
    if info.type == pafs.FileType.File:
        aspect = file_aspect(root)
        if aspect is None:
            raise ValueError(f"{input_uri!r} is not a Process<Aspect>.csv file")
        return [Target(_dataset_name(posixpath.dirname(root), ""), input_uri, aspect)]
    folders: dict[str, set[Aspect]] = {}
    for f in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        if f.type == pafs.FileType.File and (a := file_aspect(f.path)) is not None:
            folders.setdefault(posixpath.dirname(f.path), set()).add(a)
    targets = []
    for folder in sorted(folders):
        present = folders[folder]
        rel = posixpath.relpath(folder, root) if folder != root else ""
        uri = join(input_uri, *rel.split("/")) if rel else input_uri
        for aspect in Aspect:
            wanted = aspects is None or aspect in aspects
            joinable = len(present - {Aspect.ALL}) >= (1 if aspects is not None else 2)
            available = aspect in present or (aspect is Aspect.ALL and joinable)
            if wanted and available:
                targets.append(Target(_dataset_name(folder, rel), uri, aspect))
    if not targets:
        raise FileNotFoundError(f"no Process<Aspect>.csv for aspects {aspects} under {input_uri!r}")
    return targets


def _dataset_name(folder: str, rel: str) -> str:
    """``scenario/system`` for a system folder given directly, else its path below the input root."""
    return rel or "/".join(folder.rstrip("/").split("/")[-2:])


def _remove(uri: str) -> None:
    import pyarrow.fs as pafs

    fs, path = resolve(uri)
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_dir(path)


def raw_attributes(table: pa.Table) -> np.ndarray | None:
    """Multi-hot matrix of the process-context attributes (``ctx_*`` lists), or None when rows have none."""
    columns = [c for c in _CTX if c in table.column_names]
    rows: list[list[str]] = [[] for _ in range(table.num_rows)]
    for c in columns:
        for i, values in enumerate(table.column(c).to_pylist()):
            if values:
                rows[i].extend(f"{c}:{v}" for v in values)
    counts: dict[str, int] = {}
    for r in rows:
        for tok in set(r):
            counts[tok] = counts.get(tok, 0) + 1
    if not counts:
        return None
    vocab = {tok: j for j, tok in enumerate(sorted(counts, key=lambda t: (-counts[t], t))[:MAX_RAW_ATTRIBUTES])}
    X = np.zeros((len(rows), len(vocab)), dtype=np.float32)
    for i, r in enumerate(rows):
        idx = [vocab[t] for t in r if t in vocab]
        X[i, idx] = 1.0
    return X


def prepare(target: Target, source: Source, cfg: AptrayConfig, work: str) -> Prepared:
    """Templatize and embed one target; load its rows, labels and features (small enough for the driver)."""
    import pyarrow.dataset as pads

    from aptray.embed.cache import embedding_matrix
    from aptray.embed.job import run_embed
    from aptray.embed.registry import resolve as resolve_model
    from aptray.templating.job import run_templatize

    _remove(work)  # a rerun replaces the target's intermediate files
    tcfg = cfg.model_copy(deep=True)
    tcfg.ingest.source = source
    tcfg.ingest.aspect = target.aspect
    sentences_uri = join(work, "templatize")
    counts = run_templatize(source, target.uri, sentences_uri, tcfg)
    fs, path = resolve(join(sentences_uri, "sentences"))
    ds = pads.dataset(path, filesystem=fs, format="parquet")
    cols = [c for c in ("record_id", "sentence", "malicious", *_CTX, *INCIDENT_COLUMNS) if c in ds.schema.names]
    table = ds.to_table(columns=cols).sort_by("record_id")
    ids = table.column("record_id").to_pylist()
    y = np.nan_to_num(table.column("malicious").to_numpy(zero_copy_only=False).astype(np.float64)).astype(np.int8)
    prep = Prepared(ids, table.column("sentence").to_pylist(), (y == 1).astype(np.int8),
                    info={"rows": len(ids), "malicious": int((y == 1).sum()),
                          "distinct_sentences": counts.get("distinct_sentences"),
                          "quarantined": counts.get("quarantined"), "embedders": {}})
    if "pid" in table.column_names and table.column("pid").null_count < table.num_rows:
        prep.events = {c: table.column(c).combine_chunks() for c in INCIDENT_COLUMNS if c in table.column_names}
    raw = raw_attributes(table)
    if raw is not None:
        prep.features[RAW] = raw
        prep.info["embedders"][RAW] = {"dim": int(raw.shape[1])}
    position = {rid: i for i, rid in enumerate(ids)}
    style = cfg.template.process_style
    observed = observed_aspects(prep.sentences)
    for name in cfg.experiment.embedders:
        try:
            resolve_model(name)
        except FileNotFoundError as exc:
            log.warning("embedder %s skipped: %s", name, exc)
            prep.info["embedders"][name] = {"skipped": str(exc)}
            continue
        for compose in compositions(cfg.experiment.compose, target.aspect, style):
            label = representation(name, compose, style)
            if compose.left_out is not None and f"ctx_{compose.left_out}" not in observed:
                why = (f"no process of {target.name} has {compose.left_out}: its vectors would be those of "
                       f"{representation(name, Compose.ASPECTS, style)}")
                log.info("%s skipped: %s", label, why)
                prep.info["embedders"][label] = {"skipped": why}
                continue
            ecfg = cfg.model_copy(deep=True)
            ecfg.embed.model, ecfg.embed.compose = name, compose
            emb_uri = join(work, "embed-" + re.sub(r"[^A-Za-z0-9._-]", "_", label))
            ecounts = run_embed(sentences_uri, emb_uri, ecfg)
            efs, epath = resolve(join(emb_uri, "embeddings"))
            et = pads.dataset(epath, filesystem=efs, format="parquet").to_table(columns=["record_id", "embedding"])
            matrix = embedding_matrix(et.column("embedding"))
            X = np.zeros((len(ids), matrix.shape[1]), dtype=np.float32)
            rows = np.array([position[r] for r in et.column("record_id").to_pylist()], dtype=np.int64)
            X[rows] = matrix
            covered = len(np.unique(rows))
            if covered != len(ids):
                raise RuntimeError(f"{target.name} {target.aspect}: embeddings cover {covered} of {len(ids)} rows")
            prep.features[label] = X
            prep.models[label] = name
            mfs, mpath = resolve(join(emb_uri, "manifest.json"))
            with mfs.open_input_stream(mpath) as fh:
                embedder = json.loads(fh.read())["embedder"]
            prep.info["embedders"][label] = {**embedder, "embedder": name, "template": style.value,
                                             **{k: ecounts.get(k) for k in ("encoded", "cache_hits", "seconds")}}
    return prep


def observed_aspects(sentences: list[str]) -> set[str]:
    """The aspect columns (``ctx_events``...) whose clauses occur in prose process ``sentences``."""
    from aptray.templating.process import aspect_clauses

    found: set[str] = set()
    for sentence in set(sentences):
        found.update(aspect_clauses(sentence) or ())
    return found


def compositions(asked: list[Compose], aspect: Aspect | None, style: ProcessStyle) -> list[Compose]:
    """The compositions (``embed.compose``) an experiment runs on a target of ``aspect``: ``asked`` resolved
    (:func:`aptray.embed.compose.effective`), in order, once each; only ProcessAll targets compose (one clause
    per sentence elsewhere: a composed vector would only pad zeros)."""
    from aptray.embed.compose import effective

    if aspect is not Aspect.ALL or style is not ProcessStyle.PROSE:
        return [Compose.NONE]
    return list(dict.fromkeys(effective(c, aspect, style) for c in asked))


def representation(model: str, compose: Compose, style: ProcessStyle) -> str:
    """The name runs carry as their ``embedder``: the model, ``+aspects`` where composed, ``/terse`` for terse
    sentences (``minilm``, ``minilm+aspects``, ``mpnet/terse``)."""
    return model + ("+" + compose.value if compose.by_aspect else "") + (
        "/" + style.value if style is not ProcessStyle.PROSE else "")


def run_target(prep: Prepared, target: Target, cfg: AptrayConfig, benign_splits: list[Split] | None = None
               ) -> tuple[list[dict[str, Any]], pa.Table, Candidates]:
    """Fan out every protocol x embedder x detector x seed of a prepared target as Ray tasks; gather runs and
    scores, and add each seed's rank fusion (benign-split protocol, :mod:`aptray.evaluate.fusion`). Returns the
    runs, the scores table and the fusion's candidates (aptray's own detectors' validation and test scores).

    ``benign_splits``: the benign-split protocol's split per seed, where the folder's targets share one
    (:func:`aptray.evaluate.per_aspect.aligned_splits`); None draws the target's own."""
    import ray

    from aptray.detectors.registry import APTRAY_DETECTORS, Features, detector_spec
    from aptray.evaluate.runs import ScoreRows, fit_and_score
    from aptray.evaluate.splits import all_rows, split_rows

    exp = cfg.experiment
    remote = ray.remote(fit_and_score).options(num_cpus=exp.task_cpus, max_retries=1)
    y_ref = ray.put(prep.y)
    splits = {Protocol.BENIGN_SPLIT: benign_splits or [split_rows(prep.y, s, exp.test_fraction, exp.val_fraction)
                                                       for s in range(exp.seeds)],
              Protocol.UNSUPERVISED: [all_rows(len(prep.y), s) for s in range(exp.seeds)]}
    x_refs = {name: ray.put(X) for name, X in prep.features.items()}
    embedders = list(prep.models)
    pending: list[tuple[dict[str, Any], Any, Any]] = []  # key: dataset, aspect, protocol, embedder, detector, seed
    for protocol in exp.protocols:
        for det in exp.detectors:
            features = detector_spec(det).features
            if features is Features.WINDOWS:
                log.warning("%s skipped: it needs windows of consecutive events, not process contexts", det)
                continue
            for emb in ([RAW] if features is Features.ATTRIBUTES and RAW in prep.features else embedders):
                for split in splits[protocol]:
                    key = {"dataset": target.name, "aspect": target.aspect.value if target.aspect else None,
                           "protocol": protocol.value, "embedder": emb, "detector": det, "seed": split.seed}
                    unsup = protocol is Protocol.UNSUPERVISED
                    pending.append((key, split, remote.remote(x_refs[emb], y_ref, split, det, cfg, unsup)))
    runs: list[dict[str, Any]] = []
    score_rows = ScoreRows()
    candidates: Candidates = {}
    title = f"{target.name} {target.aspect.value if target.aspect else 'events'}"
    with Progress(len(pending), title, unit="fit") as bar:
        results: list[tuple[dict[str, Any], Any, Any, Exception | None]] = []
        for key, split, ref in pending:  # in submission order; the display advances as each one is gathered
            try:
                results.append((key, split, ray.get(ref), None))
            except Exception as exc:  # a lost worker (e.g. out of memory) fails this run only
                results.append((key, split, None, exc))
            bar.update()
    for key, split, res, error in results:
        if res is None:
            log.warning("%s failed in Ray: %s", key, error)
            runs.append({**key, "rows": split.counts(prep.y), "status": "error", "history": None,
                         "error": f"{type(error).__name__}: {str(error)[:500]}"})
            continue
        test_scores, val_scores = res.pop("test_scores", None), res.pop("val_scores", None)
        unsup = key["protocol"] == Protocol.UNSUPERVISED.value
        parts = (("all" if unsup else "test", split.test, test_scores), ("val", split.val, val_scores))
        for part, idx, scores in parts:
            if scores is not None:
                score_rows.add(key, part, idx, scores)
        if (not unsup and res["status"] == "ok" and key["detector"] in APTRAY_DETECTORS and test_scores is not None
                and val_scores is not None):
            candidates.setdefault((str(key["embedder"]), split.seed), {})[str(key["detector"])] = (
                np.asarray(val_scores), np.asarray(test_scores))
        runs.append({**key, **res})
    if exp.fusion_size:
        runs += _fusion_runs(prep, target, cfg, splits[Protocol.BENIGN_SPLIT], candidates, score_rows)
    return runs, score_rows.table(), candidates


def _fusion_runs(prep: Prepared, target: Target, cfg: AptrayConfig, splits: list[Any], candidates: Candidates,
                 score_rows: ScoreRows) -> list[dict[str, Any]]:
    """One fused run per embedder x seed: members and threshold from validation, then scored on test."""
    from aptray.evaluate.fusion import FUSION, fuse, fused_run

    exp = cfg.experiment
    by_seed = {s.seed: s for s in splits}
    out = []
    for (emb, seed), scored in sorted(candidates.items()):
        split = by_seed[seed]
        fused = fuse(scored, prep.y[split.val], exp.fusion_size, exp.top_k, cfg.threshold.percentile)
        if fused is None:
            continue
        key = {"dataset": target.name, "aspect": target.aspect.value if target.aspect else None,
               "protocol": Protocol.BENIGN_SPLIT.value, "embedder": emb, "detector": FUSION, "seed": seed}
        out.append(fused_run(key, split, prep.y, fused, exp.top_k, score_rows))
    return out


def _by_model(candidates: Candidates, models: dict[str, str]) -> Candidates:
    """A target's fusion candidates keyed by embedder (registry name) instead of representation, so the per-aspect
    fusion meets every aspect's runs of one model; a composed representation's detectors are named
    ``<detector> (<representation>)``."""
    out: Candidates = {}
    for (label, seed), detectors in candidates.items():
        model = models.get(label, label)
        named = {(d if label == model else f"{d} ({label})"): scores for d, scores in detectors.items()}
        out.setdefault((model, seed), {}).update(named)
    return out


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and spread over seeds per dataset x aspect x protocol x embedder x detector."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in runs:
        protocol = r.get("protocol", Protocol.BENIGN_SPLIT.value)
        groups.setdefault((r["dataset"], r["aspect"], protocol, r["embedder"], r["detector"]), []).append(r)
    out = []
    for (dataset, aspect, protocol, emb, det), rs in groups.items():
        ok = [r for r in rs if r["status"] == "ok"]
        out.append({
            "dataset": dataset, "aspect": aspect, "protocol": protocol, "embedder": emb, "detector": det,
            "seeds": len(rs), "errors": len(rs) - len(ok),
            "test": aggregate([r["test"] for r in ok]), "val": aggregate([r["val"] for r in ok]),
            "train_seconds": aggregate([{"s": r["train_seconds"]} for r in ok]).get("s"),
        })
    return out


def _mean(entry: dict[str, Any], part: str, metric: str) -> float:
    value = entry[part].get(metric, {}).get("mean")
    return float(value) if value is not None and np.isfinite(value) else float("nan")


def _brief(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    if entry is None:
        return None
    keys = ("auc_roc", "pr_auc", "ndcg", "f1")
    return {"embedder": entry["embedder"], "detector": entry["detector"],
            "test": {k: entry["test"].get(k) for k in keys}, "val_auc_roc": entry["val"].get("auc_roc")}


def _best_by(entries: list[dict[str, Any]], part: str) -> dict[str, Any] | None:
    """The entry with the best mean AUC-ROC on ``part``: "val" is the one rule that chooses aptray's model and each
    baseline's representation, "test" the optimistic maximum (None where no entry's split holds a malicious row)."""
    return max((e for e in entries if np.isfinite(_mean(e, part, "auc_roc"))),
               key=lambda e: _mean(e, part, "auc_roc"), default=None)


def best(summary: list[dict[str, Any]], candidates: tuple[str, ...]) -> list[dict[str, Any]]:
    """Per dataset x aspect (benign-split protocol): aptray's combination chosen on validation and its best on
    test; each baseline's representation chosen on validation by the same rule (``baselines``), and the best
    baseline combination on test (``baseline_best_on_test``), so chosen figures compare with chosen ones and
    optimistic with optimistic."""
    targets: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for s in summary:
        if s.get("protocol", Protocol.BENIGN_SPLIT.value) == Protocol.BENIGN_SPLIT.value:
            targets.setdefault((s["dataset"], s["aspect"]), []).append(s)
    out = []
    for (dataset, aspect), entries in targets.items():
        ours = [e for e in entries if e["detector"] in candidates]
        theirs: dict[str, list[dict[str, Any]]] = {}
        for e in entries:
            if e["detector"] in BASELINE_DETECTORS:
                theirs.setdefault(e["detector"], []).append(e)
        out.append({"dataset": dataset, "aspect": aspect, "aptray_selected": _brief(_best_by(ours, "val")),
                    "aptray_best_on_test": _brief(_best_by(ours, "test")),
                    "baselines": {name: _brief(_best_by(theirs[name], "val"))
                                  for name in BASELINE_DETECTORS if name in theirs},
                    "baseline_best_on_test": _brief(_best_by([e for g in theirs.values() for e in g], "test"))})
    return out


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("aptray", "ray", "torch", "scikit-learn", "sentence-transformers", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "absent"
    return out


def write_json(uri: str, obj: Any) -> None:
    """Write ``obj`` as strict, indented JSON (NaN -> null) to a local path or ``s3://`` URI."""
    fs, path = resolve(uri)
    fs.create_dir(posixpath.dirname(path), recursive=True)
    with fs.open_output_stream(path) as fh:
        fh.write(json.dumps(finite_or_none(obj), indent=1, allow_nan=False).encode())


def write_parquet(uri: str, table: pa.Table) -> None:
    """Write one Parquet file, local or ``s3://``."""
    import pyarrow.parquet as pq

    fs, path = resolve(uri)
    fs.create_dir(posixpath.dirname(path), recursive=True)
    pq.write_table(table, path, filesystem=fs)


def tsne_table(prep: Prepared, max_points: int, seed: int = 0) -> pa.Table | None:
    """2-D t-SNE of each embedder's vectors on a sample of rows (every malicious row kept)."""
    from sklearn.manifold import TSNE

    names = [n for n in prep.features if n != RAW]
    if max_points <= 0 or not names or len(prep.y) < 5:
        return None
    rng = np.random.default_rng(seed)
    mal = np.flatnonzero(prep.y == 1)
    ben = np.flatnonzero(prep.y != 1)
    keep = np.sort(np.r_[mal, rng.permutation(ben)[: max(0, max_points - len(mal))]])
    cols: dict[str, list[Any]] = {"embedder": [], "row": [], "x": [], "y": [], "malicious": []}
    for name in names:
        X = prep.features[name][keep]
        xy = TSNE(n_components=2, perplexity=min(30.0, (len(keep) - 1) / 3), init="pca",
                  random_state=seed).fit_transform(X)
        cols["embedder"] += [name] * len(keep)
        cols["row"] += keep.tolist()
        cols["x"] += xy[:, 0].tolist()
        cols["y"] += xy[:, 1].tolist()
        cols["malicious"] += prep.y[keep].astype(int).tolist()
    return pa.table(cols)


def label_conflicts(sentences: list[str], y: np.ndarray, scores: pa.Table) -> dict[str, Any]:
    """A target's benign twins (:func:`aptray.evaluate.metrics.benign_twins`) and its ``sentence_ceiling``: the
    best test AUC-ROC / PR-AUC any score of the sentence alone reaches on each seed's benign-split test rows
    (read from ``scores``, so they are the rows the detectors were measured on), aggregated over seeds."""
    import pyarrow.compute as pc

    from aptray.evaluate.metrics import benign_twins, sentence_ceiling

    test = scores.filter(pc.and_(pc.equal(scores.column("protocol"), Protocol.BENIGN_SPLIT.value),
                                 pc.equal(scores.column("split"), "test")))
    seeds, rows = test.column("seed").to_numpy(), test.column("row").to_numpy()
    per_seed = [sentence_ceiling(sentences, y, np.unique(rows[seeds == seed])) for seed in np.unique(seeds)]
    return {**benign_twins(sentences, y), "sentence_ceiling": aggregate(per_seed) if per_seed else None}


def _folders(targets: list[Target], source: Source) -> list[list[Target]]:
    """The targets grouped by ADAPT folder (in order), whose aspects share one split of the folder's processes;
    each target of another source alone."""
    if source is not Source.ADAPT:
        return [[t] for t in targets]
    groups: dict[str, list[Target]] = {}
    for t in targets:
        groups.setdefault(t.name, []).append(t)
    return list(groups.values())


def _write_scores(sdir: str, record_ids: list[str], sentences: list[str], y: np.ndarray, scores: pa.Table,
                  events: dict[str, pa.Array] | None = None) -> None:
    """A target's ``rows.parquet`` and ``scores.parquet`` (the report's input)."""
    write_parquet(join(sdir, "rows.parquet"), pa.table({
        "row": np.arange(len(y)), "record_id": record_ids, "sentence": sentences,
        "malicious": np.asarray(y).astype(np.int8), **(events or {})}))
    write_parquet(join(sdir, "scores.parquet"), scores)


def _per_aspect(doc: dict[str, Any], out_uri: str, dataset: str, universe: Universe, members: dict[str, Member],
                prepared: list[tuple[Target, Prepared]], cfg: AptrayConfig) -> None:
    """Add a folder's per-aspect fusion (:mod:`aptray.evaluate.per_aspect`) to ``doc`` and write its scores; a
    process's sentence there is its ProcessAll sentence where that target ran, else its first aspect's."""
    exp = cfg.experiment
    runs, scores = per_aspect_runs(dataset, universe, members, exp.fusion_size, exp.top_k, cfg.threshold.percentile)
    if not runs:
        return
    doc["runs"].extend(runs)
    sentence: dict[str, str] = {}
    for _, prep in sorted(prepared, key=lambda tp: tp[0].aspect is not Aspect.ALL):
        for r, text in zip(prep.record_ids, prep.sentences, strict=True):
            sentence.setdefault(r, text)
    doc["targets"].append({"dataset": dataset, "aspect": PER_ASPECT, "skipped": None,
                           "rows": len(universe.record_ids), "malicious": int(universe.y.sum()),
                           "distinct_sentences": len(set(sentence.values())), "aspects": sorted(members)})
    _write_scores(join(out_uri, "scores", *dataset.split("/"), PER_ASPECT), universe.record_ids,
                  [sentence[r] for r in universe.record_ids], universe.y, scores)
    log.info("%s: per-aspect fusion of %s", dataset, ", ".join(sorted(members)))


#: What an experiment writes in its output folder; a folder holding anything else is another command's.
OWN_ENTRIES = frozenset({"metrics.json", "report.html", "report.md", "plots", "scores", "work", "cache", CHOSEN})


def _settings(input_uri: str, source: Source, cfg: AptrayConfig) -> str:
    """What decides an experiment's figures, as one digest: the input, the source and every config section but
    where Ray runs and where the embedding cache lies. An earlier run of the same digest in the output folder is
    resumed; of another, replaced."""
    import hashlib

    dump = cfg.model_dump(mode="json", exclude={"ray": True, "embed": {"cache"}})
    text = json.dumps({"input": input_uri, "source": source.value, "config": dump}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _earlier(fs: Any, metrics_path: str, settings: str) -> dict[str, Any] | None:
    """The checkpoint an earlier run of the same settings left at ``metrics_path`` (resumable), or None."""
    try:
        with fs.open_input_stream(metrics_path) as fh:
            doc = json.loads(fh.read())
    except (OSError, ValueError):
        return None
    if doc.get("schema_version") != SCHEMA_VERSION or doc.get("settings") != settings:
        return None
    return doc if isinstance(doc.get("folders_done"), list) else None


def _check_own_folder(fs: Any, root: str, out_uri: str) -> None:
    """Refuse an output folder that holds another command's outputs: a rerun replaces ``plots/`` and ``scores/``,
    which deleted an ``aptray run``'s scores (and its next rerun then failed on them).

    Raises:
        ConfigError: naming the entries that are not an experiment's.
    """
    import pyarrow.fs as pafs

    from aptray.errors import ConfigError

    if fs.get_file_info(root).type != pafs.FileType.Directory:
        return
    others = sorted(i.base_name for i in fs.get_file_info(pafs.FileSelector(root))
                    if i.base_name not in OWN_ENTRIES and not i.base_name.startswith("."))
    if others:
        raise ConfigError(f"{out_uri} holds other outputs than an experiment's ({', '.join(others[:5])}): an "
                          "experiment replaces its scores/; pass an empty folder or an earlier experiment's as --out")


def run_experiment(input_uri: str, out_uri: str, cfg: AptrayConfig, fresh: bool = False) -> dict[str, Any]:
    """Run the whole experiment on ``input_uri`` and write ``out_uri``/metrics.json, report.html and report.md.

    Resumable: ``metrics.json`` is written after every target and records each folder (an ADAPT system's targets,
    which share one split and the per-aspect fusion) once all of it is done. A rerun with the same settings
    (:func:`_settings`) into the same folder keeps those folders' results and runs the rest; other settings, or
    ``fresh``, start over.

    Args:
        input_uri: an ADAPT system folder or a root holding several (or another source's input).
        out_uri: output folder, local or ``s3://``; ``work/`` keeps intermediate files, ``cache/`` the
            embedding cache unless ``cfg.embed.cache`` names one.
        cfg: the config; ``cfg.experiment`` picks embedders, detectors, aspects, seeds and fractions,
            ``cfg.ingest.source`` the trace format.
        fresh: run every folder again, even those an earlier run of the same settings finished.

    Returns:
        A summary: targets run and skipped, runs, errors, seconds (of every run that built the results, resumed
        ones included), folders resumed, and the output paths.
    """
    from aptray.detectors.registry import APTRAY_DETECTORS
    from aptray.embed.registry import resolve as resolve_model
    from aptray.evaluate.deploy import write_chosen
    from aptray.evaluate.fusion import FUSION
    from aptray.evaluate.report import write_report
    from aptray.evaluate.splits import split_rows
    from aptray.io.fs import check_output
    from aptray.runtime import init_ray
    from aptray.templating.base import TEMPLATE_VERSION

    check_output(out_uri, cfg.embed.cache)  # a missing s3 bucket: refused before any work
    if "embedders" in cfg.experiment.model_fields_set:  # named by the user: a model not installed is its install
        for name in cfg.experiment.embedders:           # command now, not a run that skips it and reports nothing
            resolve_model(name)                         # skipped (the default list skips one with a log line)

    start = time.perf_counter()
    cfg = cfg.model_copy(deep=True)
    if cfg.embed.cache is None:
        cfg.embed.cache = join(out_uri, "cache")
    source = Source(cfg.ingest.source)
    exp = cfg.experiment
    targets = discover(input_uri, source, exp.aspects)
    import pyarrow.fs as pafs

    fs, metrics_path = resolve(join(out_uri, "metrics.json"))
    _check_own_folder(fs, metrics_path.rsplit("/", 1)[0], out_uri)
    settings = _settings(input_uri, source, cfg)
    rerun = fs.get_file_info(metrics_path).type == pafs.FileType.File  # a run into the same folder before
    earlier = _earlier(fs, metrics_path, settings) if rerun and not fresh else None
    done = set(earlier["folders_done"]) if earlier else set()
    groups = _folders(targets, source)
    if done:
        unit = "folder(s)" if source is Source.ADAPT else "dataset(s)"  # the groups of _folders
        log.info("resuming %s: %d %s done earlier are kept, %d to run (--fresh runs every one again)",
                 out_uri, len(done), unit, sum(group[0].name not in done for group in groups))
    else:
        if rerun:
            log.info("%s holds an earlier experiment (%s): its metrics, report, plots, scores and chosen configs "
                     "are replaced", out_uri, "--fresh" if fresh else "other settings, or not resumable")
        for stale in ("plots", "scores", CHOSEN):  # an earlier run's targets would stay beside this run's
            _remove(join(out_uri, stale))
    log.info("experiment: %d dataset x context target(s) found, embedders %s, detectors %s, %d seed(s)", len(targets),
             ", ".join(exp.embedders), ", ".join(str(d) for d in exp.detectors), exp.seeds)
    if any(group[0].name not in done for group in groups):  # a finished run re-read needs no cluster
        init_ray(cfg.ray)
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "input": input_uri, "source": source.value,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": exp.model_dump(mode="json"), "versions": _versions(),
        "template": {"version": TEMPLATE_VERSION, **cfg.template.model_dump(mode="json")},
        "settings": settings, "targets": [], "runs": [], "summary": [], "best": [], "folders_done": [],
    }
    before = 0.0
    if earlier and done:  # the finished folders' targets and runs; an unfinished one's run again
        doc["created"] = earlier.get("created", doc["created"])
        doc["targets"] = [t for t in earlier.get("targets", []) if t.get("dataset") in done]
        doc["runs"] = [r for r in earlier.get("runs", []) if r.get("dataset") in done]
        doc["folders_done"] = list(earlier["folders_done"])
        before = float(earlier.get("seconds") or 0.0)

    def refresh() -> None:
        doc["summary"] = summarize(doc["runs"])
        doc["best"] = best(doc["summary"], (*APTRAY_DETECTORS, FUSION))
        doc["seconds"] = round(before + time.perf_counter() - start, 2)

    def checkpoint() -> None:
        refresh()
        write_json(join(out_uri, "metrics.json"), doc)  # after every target: a long run shows progress

    for group in groups:
        if group[0].name in done:
            continue
        prepared: list[tuple[Target, Prepared]] = []
        entries: dict[Target, dict[str, Any]] = {}
        for target in group:
            aspect = target.aspect.value if target.aspect else "-"
            entry: dict[str, Any] = {"dataset": target.name, "aspect": target.aspect.value if target.aspect else None,
                                     "uri": target.uri, "skipped": None}
            doc["targets"].append(entry)
            log.info("target %s %s", target.name, aspect)
            try:
                prep = prepare(target, source, cfg, join(out_uri, "work", *target.name.split("/"), aspect))
            except Exception as exc:  # an unreadable target is reported, the others still run
                log.warning("target %s %s failed to prepare: %s", target.name, aspect, exc)
                entry["skipped"] = f"{type(exc).__name__}: {exc}"
                continue
            entry.update(prep.info)
            if Protocol.BENIGN_SPLIT in exp.protocols:
                train_benign = min(len(split_rows(prep.y, seed, exp.test_fraction, exp.val_fraction).train)
                                   for seed in range(exp.seeds))
                what = "benign training row"
            else:  # the unsupervised protocol alone fits every row
                train_benign, what = len(prep.y), "row"
            if train_benign < exp.min_train_rows:
                entry["skipped"] = (f"only {train_benign} {what}{'' if train_benign == 1 else 's'} "
                                    f"(< min_train_rows {exp.min_train_rows})")
                log.warning("target %s %s skipped: %s", target.name, aspect, entry["skipped"])
                continue
            prepared.append((target, prep))
            entries[target] = entry
        universe = (aligned_splits([(p.record_ids, p.y) for _, p in prepared], exp.seeds, exp.test_fraction,
                                   exp.val_fraction) if len(prepared) > 1 else None)
        fused: dict[str, Member] = {}
        for target, prep in prepared:
            aspect = target.aspect.value if target.aspect else "-"
            own = universe.restrict(prep.record_ids, prep.y) if universe is not None else None
            runs, scores, candidates = run_target(prep, target, cfg, own)
            doc["runs"].extend(runs)
            entries[target].update(label_conflicts(prep.sentences, prep.y, scores))
            if universe is not None and own is not None:
                fused[aspect] = Member(universe.rows_of(prep.record_ids), own, _by_model(candidates, prep.models))
            sdir = join(out_uri, "scores", *target.name.split("/"), aspect)
            _write_scores(sdir, prep.record_ids, prep.sentences, prep.y, scores, prep.events)
            tsne = tsne_table(prep, exp.tsne_points)
            if tsne is not None:
                write_parquet(join(sdir, "tsne.parquet"), tsne)
            checkpoint()
        if universe is not None and len(fused) > 1 and exp.fusion_size:
            _per_aspect(doc, out_uri, group[0].name, universe, fused, prepared, cfg)
        doc["folders_done"].append(group[0].name)
        checkpoint()
    refresh()
    doc["chosen"] = write_chosen(out_uri, doc)
    write_json(join(out_uri, "metrics.json"), doc)
    report = write_report(out_uri)
    errors = sum(r["status"] != "ok" for r in doc["runs"])
    return {
        "targets": len(doc["targets"]), "skipped": sum(t["skipped"] is not None for t in doc["targets"]),
        "runs": len(doc["runs"]), "errors": errors, "seconds": doc["seconds"], "folders_resumed": len(done),
        "metrics": join(out_uri, "metrics.json"), "chosen": doc["chosen"], **report,
    }
