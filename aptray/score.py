"""Batch scoring of archived traces: raw files -> sentences -> embeddings -> detector scores, tiers, alerts.

The job is resumable and never writes an event twice. Input files are processed in *groups* (up to
``score.group_bytes`` each); a group's outputs go to ``<out>/{scores,alerts,quarantine}/group=<id>/`` and
only when all of them are written is a marker ``<out>/_done/<file-key>.json`` written for each of its files
(with size, etag/mtime and counts). A re-run skips files that have a marker and first removes group folders
that no marker names (left by a crashed run), so nothing is counted twice.

Accounting per file and in total: rows read = rows scored + rows quarantined.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from aptray.config import AptrayConfig, Aspect, EmbedConfig, Source
from aptray.embed.cache import embedding_matrix
from aptray.errors import AptrayError, FormatMismatchError
from aptray.io.files import check_lines, list_input
from aptray.io.fs import InputFile, Selection, check_output, join, resolve
from aptray.io.quarantine import count_rows, quarantine_reasons

if TYPE_CHECKING:
    import pyarrow.fs as pafs
    import ray.data

    from aptray.embed.pool import EncoderPool
    from aptray.embed.registry import ModelSpec

log = logging.getLogger(__name__)

#: Columns of the scores dataset.
SCORE_COLUMNS = ("record_id", "source_file", "line", "score", "tier", "is_anomaly", "sentence_hash", "malicious")
#: Columns of the alerts dataset (rows above the threshold, with their sentence and source fields).
ALERT_COLUMNS = (
    "record_id", "source", "source_file", "line", "host", "timestamp", "pid", "ppid", "process_name", "exe", "action",
    "object_path", "object_addr", "sentence", "sentence_hash", "score", "tier", "malicious", "nearest_benign",
    "nearest_similarity",
    # what the attribution pass re-templates (:mod:`aptray.triage.attribute`): the event's other fields, its context
    "uid", "parent_exe", "args", "return_value", "extras", "aspect", "ctx_events", "ctx_execs", "ctx_parents",
    "ctx_netflows",
)
#: Nearest benign training sentences named per alert (artifacts that keep them, :mod:`aptray.triage.explain`).
EXPLAIN_K = 3


class Scorer:
    """Loads the detector once (per worker process in the score job, see :func:`_score_block`), scores embedded
    rows.

    A windowed detector (LSTM-AE) scores each row's window of its process's events (:mod:`aptray.windows`):
    its blocks must hold whole processes (the score job hash-partitions them so). Rows above the threshold are
    also written to ``alerts_dir`` (file named by a digest of their record ids, so a retried task rewrites
    rather than duplicates).
    """

    def __init__(self, artifact: str, alerts_dir: str | None, trusted: bool = False) -> None:
        from aptray.artifacts import load_detector, window_of

        self.detector = load_detector(artifact, trusted=trusted)
        self.window = window_of(self.detector.meta_)  # type: ignore[attr-defined]
        self.alerts_dir = alerts_dir
        self._dirs: dict[str, tuple[pafs.FileSystem, str]] = {}

    def __call__(self, batch: pa.Table, alerts_dir: str | None = None) -> pa.Table:
        """Scores of ``batch`` (rows with ``embedding``); alerts go to ``alerts_dir`` (default: the constructor's)."""
        from aptray.detectors.thresholds import assign_tiers
        from aptray.windows import window_index, window_keys

        X = rows = embedding_matrix(batch.column("embedding"))
        if self.window is not None:
            X = X[window_index(window_keys(batch), batch.column("line").to_pylist(), self.window)]
        scores = np.asarray(self.detector.decision_function(X), dtype=np.float64) if batch.num_rows else np.zeros(0)
        tiers = assign_tiers(scores, self.detector.tiers_)
        flags = scores >= float(self.detector.threshold_)  # the same rule as Detector.predict
        out = (
            batch.drop_columns(["embedding"])
            .append_column("score", pa.array(scores, pa.float64()))
            .append_column("tier", pa.array(tiers, pa.string()))
            .append_column("is_anomaly", pa.array(flags, pa.bool_()))
        )
        target = alerts_dir or self.alerts_dir
        if target and flags.any():
            alerts = out.filter(pa.array(flags))
            benign = getattr(self.detector, "benign_", None)
            if benign is not None:  # explanations for alerts only: the nearest benign training sentences
                names, sims = benign.explain(rows[flags], EXPLAIN_K)
                alerts = alerts.append_column("nearest_benign", pa.array(names, pa.list_(pa.string())))
                alerts = alerts.append_column("nearest_similarity", pa.array(sims, pa.list_(pa.float64())))
            self._write_alerts(alerts, target)
        return out.select([c for c in SCORE_COLUMNS if c in out.column_names])

    def _write_alerts(self, alerts: pa.Table, target: str) -> None:
        if target not in self._dirs:  # one cached scorer serves many jobs: local and s3:// targets alike
            self._dirs = {target: resolve(target)}
        fs, root = self._dirs[target]
        fs.create_dir(root, recursive=True)  # each time: a resumed job deletes and rewrites a group's folder
        digest = hashlib.sha256("\n".join(alerts.column("record_id").to_pylist()).encode()).hexdigest()[:24]
        cols = [c for c in ALERT_COLUMNS if c in alerts.column_names]
        pq.write_table(alerts.select(cols), join(root, f"part-{digest}.parquet"), filesystem=fs)


#: Detectors loaded by this worker process, by (artifact, its config's sha256, trusted): a score task loads an
#: artifact once per process (as an actor would) without an actor to start per job; a retrained artifact at the
#: same path has another config hash, so it is never scored with the old weights.
_SCORERS: dict[tuple[str, str, bool], Scorer] = {}


def _score_block(batch: pa.Table, artifact: str, config_sha256: str, trusted: bool, alerts_dir: str | None
                 ) -> pa.Table:
    """Block function of the score job: the cached :class:`Scorer` of the artifact on one block."""
    key = (artifact, config_sha256, trusted)
    if key not in _SCORERS:
        if len(_SCORERS) >= 8:
            _SCORERS.clear()
        _SCORERS[key] = Scorer(artifact, None, trusted)
    return _SCORERS[key](batch, alerts_dir)


#: Helper column of windowed scoring: the process of a row (blocks are hash-partitioned on it).
_WINDOW_KEY = "_window_key"


def _with_window_key(batch: pa.Table) -> pa.Table:
    from aptray.windows import window_keys

    return batch.append_column(_WINDOW_KEY, pa.array(window_keys(batch), pa.string()))


def score_dataset(
    ds: ray.data.Dataset, cfg: AptrayConfig, spec: ModelSpec, artifact: str, alerts_dir: str | None,
    pool: EncoderPool | None = None, windowed: bool = False, config_sha256: str = "",
) -> tuple[ray.data.Dataset, dict[str, int]]:
    """Embed templated rows with the artifact's embedder ``spec`` and score them.

    The rows are embedded as the embed job embeds them (:func:`aptray.embed.job.embed_rows`): each distinct
    sentence once, through the embedding cache when ``cfg.embed.cache`` is set (read and appended). A windowed
    detector's rows are hash-partitioned by process first, so every window is whole in one block.

    Returns:
        The lazy scored dataset (:data:`SCORE_COLUMNS`) and the embedding counts (``distinct_sentences``,
        ``encoded``).
    """

    from aptray.embed.job import embed_rows, partitions

    rows = ds.materialize()  # read once: the distinct pass and the join-back both read it
    n_rows = rows.count()
    if n_rows == 0:
        return rows, {"distinct_sentences": 0, "encoded": 0}
    parts = partitions(cfg.embed, n_rows)
    embedded, n_distinct, n_encoded = embed_rows(rows, spec, cfg.embed, parts, pool, keep_sentence=True)
    if windowed and partitions(cfg.embed, n_rows, minimum=1) > 1:
        embedded = embedded.map_batches(_with_window_key, batch_format="pyarrow", batch_size=None).repartition(
            parts, keys=[_WINDOW_KEY])
    elif windowed:  # one partition's worth of rows: one block holds every process, no hash shuffle needed
        embedded = embedded.repartition(1)
    scored = embedded.map_batches(
        _score_block,  # type: ignore[arg-type]
        fn_kwargs={"artifact": artifact, "config_sha256": config_sha256, "trusted": cfg.score.trusted,
                   "alerts_dir": alerts_dir},
        batch_format="pyarrow",
        batch_size=None if windowed else 4096,
        num_cpus=cfg.score.scorer_cpus,
    )
    return scored, {"distinct_sentences": n_distinct, "encoded": n_encoded}


def scores_schema() -> pa.Schema:
    """The Arrow schema of the scores dataset (:data:`SCORE_COLUMNS`)."""
    from aptray.templating.job import SENTENCES_SCHEMA

    own = {"score": pa.float64(), "tier": pa.string(), "is_anomaly": pa.bool_()}
    return pa.schema([pa.field(c, own[c]) if c in own else SENTENCES_SCHEMA.field(c) for c in SCORE_COLUMNS])


def file_key(f: InputFile) -> str:
    """Marker name of an input file: digest of its relative path."""
    return hashlib.sha256(f.rel.encode()).hexdigest()[:32]


def file_version(fs: pafs.FileSystem, f: InputFile) -> str:
    """An etag for S3 objects (via s3fs), else size and mtime: a changed file is not taken as done."""
    import pyarrow.fs as pafs_

    if isinstance(fs, pafs_.S3FileSystem):
        try:
            import s3fs

            info = s3fs.S3FileSystem(
                client_kwargs=_s3_client_kwargs(), skip_instance_cache=True
            ).info(f.path)
            return str(info.get("ETag", "")).strip('"') or f"size:{f.size}"
        except Exception as exc:  # the etag is best effort; size still guards
            log.debug("no etag for %s: %s", f.rel, exc)
            return f"size:{f.size}"
    info = fs.get_file_info(f.path)
    return f"size:{f.size}:mtime:{info.mtime_ns}"


def _s3_client_kwargs() -> dict[str, str]:
    import os

    endpoint = os.environ.get("APTRAY_S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL")
    return {"endpoint_url": endpoint} if endpoint else {}


def plan_groups(files: list[InputFile], group_bytes: int,
                unit: Callable[[InputFile], str] | None = None) -> list[list[InputFile]]:
    """Cut the sorted file list into groups of at most ``group_bytes`` (a larger unit is a group alone).

    Files with one ``unit`` value (an ADAPT system folder: its aspect files and ground truth) stay in one group.
    """
    units: dict[str, list[InputFile]] = {}
    for f in files:
        units.setdefault(unit(f) if unit else f.rel, []).append(f)
    groups: list[list[InputFile]] = []
    current: list[InputFile] = []
    size = 0
    for members in units.values():
        bytes_ = sum(f.size for f in members)
        if current and size + bytes_ > group_bytes:
            groups.append(current)
            current, size = [], 0
        current.extend(members)
        size += bytes_
    if current:
        groups.append(current)
    return groups


def _read_json(fs: pafs.FileSystem, path: str) -> dict[str, Any]:
    with fs.open_input_stream(path) as fh:
        return json.loads(fh.read().decode())  # type: ignore[no-any-return]


def _write_json(fs: pafs.FileSystem, path: str, obj: Any) -> None:
    with fs.open_output_stream(path) as fh:
        fh.write(json.dumps(obj, indent=2, default=str).encode())


def _done_markers(fs: pafs.FileSystem, root: str) -> dict[str, dict[str, Any]]:
    import pyarrow.fs as pafs_

    done_dir = join(root, "_done")
    if fs.get_file_info(done_dir).type == pafs_.FileType.NotFound:
        return {}
    markers = {}
    for info in fs.get_file_info(pafs_.FileSelector(done_dir)):
        if info.path.endswith(".json"):
            markers[info.base_name[: -len(".json")]] = _read_json(fs, info.path)
    return markers


def _remove_orphans(fs: pafs.FileSystem, root: str, live_groups: set[str]) -> int:
    import pyarrow.fs as pafs_

    removed = 0
    for part in ("scores", "alerts", "quarantine", "lines"):
        d = join(root, part)
        if fs.get_file_info(d).type == pafs_.FileType.NotFound:
            continue
        for info in fs.get_file_info(pafs_.FileSelector(d)):
            name = info.base_name
            if name.startswith("group=") and name[len("group="):] not in live_groups:
                fs.delete_dir(info.path)
                removed += 1
    return removed


def run_score(input_uri: str, out_uri: str, cfg: AptrayConfig) -> dict[str, Any]:
    """Score every file under ``input_uri`` with the artifact ``cfg.score.artifact``; resumable.

    The source and process context default to the artifact's (``cfg.ingest.source`` / ``cfg.ingest.aspect``
    when set); events of another format than the artifact was trained on are refused unless
    ``cfg.score.allow_format_mismatch``.

    Returns:
        ``rows_read``, ``rows_scored``, ``rows_quarantined``, ``alerts``, ``files`` (listed, each resumed on its
        own), ``files_read`` (parsed: an ADAPT folder's ground truth and other contexts are listed, not read),
        ``files_skipped``, ``source``, ``aspect``, ``distinct_sentences``, ``encoded`` (this run),
        ``quarantine_reasons`` (the most frequent kinds), ``attributed_alerts`` (this run), ``incidents``,
        ``seconds``, ``outputs`` (what the output folder holds) — the row counts are totals over every file the
        output folder holds, including those done by earlier runs (of this input or, into the same folder, another:
        ``files_in_output``).
    """
    import pyarrow.fs as pafs_

    from aptray.artifacts import check_format, describe_format, load_detector, window_of
    from aptray.embed.job import early_pool
    from aptray.embed.registry import resolve_recorded
    from aptray.io.sources import source_spec
    from aptray.runtime import check_gpus, init_ray
    from aptray.templating.base import TEMPLATE_VERSION
    from aptray.templating.job import ensure_parquet, sentences_dataset

    check_output(out_uri, cfg.embed.cache)  # a missing s3 bucket: refused before any work
    if not cfg.score.artifact:
        from aptray.errors import ConfigError

        raise ConfigError("score.artifact is required: a detector artifact folder, local or s3:// (aptray score "
                          "--artifact DIR; a job: --set score.artifact=DIR)")
    start = time.perf_counter()
    artifact = cfg.score.artifact
    detector = load_detector(artifact, expect_template_version=TEMPLATE_VERSION, trusted=cfg.score.trusted)
    meta: dict[str, Any] = getattr(detector, "meta_", {})
    source, aspect = input_format(cfg, meta, input_uri)
    spec = source_spec(source)
    spec.check_aspect(aspect)
    aspect_asked = cfg.ingest.aspect is not None
    check_format(meta, source, aspect, cfg.score.allow_format_mismatch, where=f"{input_uri} (read as {spec.title})",
                 remedy="score it with the artifact's --source/--aspect, or pass --allow-format-mismatch")
    window = window_of(meta)
    if window is not None and not spec.windows_possible(aspect):
        raise FormatMismatchError(f"the artifact is a windowed detector; {describe_format(source, aspect)} have no "
                                  "event order to window")
    cfg = _align_template(cfg, meta)
    cfg = cfg.model_copy(update={"ingest": cfg.ingest.model_copy(update={"source": source, "aspect": aspect})})
    asked = {"backend", "quantize"} & cfg.embed.model_fields_set  # a backend asked for, else the recorded one
    model = resolve_recorded(meta.get("embedder"), (cfg.embed.backend, cfg.embed.quantize) if asked else None)
    fs_in, files = list_input(input_uri, spec.suffixes, cfg.ingest)  # a missing input fails before Ray starts
    if aspect is not None and not spec.events:  # an ADAPT folder lists every context file and reads one
        name = f"Process{aspect.value}.csv"
        read = name if any(posixpath.basename(f.rel) == name for f in files) else (
            "joined from the folder's Process<Aspect>.csv files" if aspect is Aspect.ALL else f"{name}, not found")
        log.info("reading the %s context (%s)%s", aspect.value, read,
                 ", as --aspect asks" if aspect_asked else "; --aspect reads another")
    init_ray(cfg.ray)
    check_gpus(cfg.embed.gpus_per_actor, "embed.gpus_per_actor", "set embed.gpus_per_actor=0 to encode on CPU")

    fs, root = resolve(out_uri)
    fs.create_dir(join(root, "_done"), recursive=True)
    markers = _done_markers(fs, root)
    hashes = artifact_hashes(meta)
    check_markers(markers, hashes, out_uri)
    live_groups = {m["group"] for m in markers.values()}
    removed = _remove_orphans(fs, root, live_groups)
    if removed:
        log.info("removed %d partial group folder(s) left by an interrupted run", removed)
    pending = []
    for f in files:
        m = markers.get(file_key(f))
        if m is None or m.get("version") != file_version(fs_in, f):
            pending.append(f)
    skipped = len(files) - len(pending)
    log.info("%d file(s) listed under the input: %d done earlier, %d this run%s", len(files), skipped, len(pending),
             " (ground truth and other contexts are listed, not read)" if source is Source.ADAPT else "")

    embedded = {"distinct_sentences": 0, "encoded": 0}
    pool = early_pool(model, cfg.embed) if pending else None  # one set of encoder actors for every group
    explained = 0
    try:
        for group in plan_groups(pending, cfg.score.group_bytes, spec.unit):
            gid = hashlib.sha256("\n".join(f"{f.rel}\0{f.size}" for f in group).encode()).hexdigest()[:16]
            dirs = {p: join(root, p, f"group={gid}") for p in ("scores", "alerts", "quarantine", "lines")}
            for d in dirs.values():
                if fs.get_file_info(d).type == pafs_.FileType.Directory:
                    fs.delete_dir(d)
            selection = Selection(fs_in, tuple(group), input_uri)
            gcfg = cfg.model_copy(update={"ingest": cfg.ingest.model_copy(
                update={"counts_dir": join(out_uri, "lines", f"group={gid}")})})
            ds = sentences_dataset(source, selection, gcfg, join(out_uri, "quarantine", f"group={gid}"))
            alerts_dir = join(out_uri, "alerts", f"group={gid}") if cfg.score.write_alerts else None
            scored, counts = score_dataset(ds, cfg, model, artifact, alerts_dir, pool, windowed=window is not None,
                                           config_sha256=str(meta.get("config_sha256", "")))
            for k in embedded:
                embedded[k] += counts[k]
            scored.write_parquet(dirs["scores"], filesystem=fs)
            # a group that keeps no row: an empty, typed file (by URI: ``dirs`` are paths inside ``fs``)
            ensure_parquet(join(out_uri, "scores", f"group={gid}"), scores_schema())
            group_counts = _group_counts(out_uri, gid)
            for f in group:
                _write_json(fs, join(root, "_done", f"{file_key(f)}.json"),
                            {"file": f.rel, "size": f.size, "version": file_version(fs_in, f), "group": gid,
                             "group_counts": group_counts, "artifact": artifact,
                             "artifact_sha256": hashes, "finished": time.time()})
            log.info("group %s: %d file(s) read of %d, %d rows read, %d scored, %d quarantined, %d alert(s)", gid,
                     group_counts["files_read"], len(group), group_counts["rows_read"], group_counts["rows_scored"],
                     group_counts["rows_quarantined"], group_counts["alerts"])
        if cfg.score.write_alerts and cfg.score.attribute_alerts and window is None:
            explained, pool = attribute_alerts(out_uri, cfg, detector, model, pool)
    finally:
        if pool is not None:
            pool.close()

    totals = _totals(fs, root, out_uri)
    totals["quarantine_reasons"] = quarantine_reasons(join(out_uri, "quarantine"))
    totals["attributed_alerts"] = explained
    totals["incidents"] = write_incidents(out_uri, cfg.score.incident_window_s) if cfg.score.write_alerts else 0
    result = {
        **totals,
        "files": len(files),
        "files_skipped": skipped,
        "source": source.value,
        "aspect": aspect.value if aspect else None,
        "expected_alert_rate": detector.expected_alert_rate(),
        **embedded,
        "seconds": round(time.perf_counter() - start, 3),
    }
    manifest = {
        "input": input_uri,
        "files": [{"file": f.rel, "size": f.size} for f in files],
        "artifact": artifact,
        "artifact_sha256": hashes,
        "source": source.value,
        "aspect": aspect.value if aspect else None,
        "template_version": TEMPLATE_VERSION,
        "embedder": model.record(),
        "cache": cfg.embed.cache,
        "counts": result,
    }
    _write_json(fs, join(root, "manifest.json"), manifest)
    check_lines(result["lines"], f"score {input_uri}")
    # what the output folder holds (no alerts/ where nothing alerted, no quarantine/ where no row was quarantined)
    from aptray.evaluate.score_output import OUTPUTS

    result["outputs"] = [f"{name}/" if info.type == pafs_.FileType.Directory else name
                         for name in OUTPUTS
                         if (info := fs.get_file_info(join(root, name))).type != pafs_.FileType.NotFound]
    return result


def _alert_files(out_uri: str) -> tuple[pafs.FileSystem, list[str]]:
    import pyarrow.fs as pafs_

    fs, root = resolve(join(out_uri, "alerts"))
    files = [f.path for f in fs.get_file_info(pafs_.FileSelector(root, recursive=True, allow_not_found=True))
             if f.type == pafs_.FileType.File and f.path.endswith(".parquet")]
    return fs, sorted(files)


def embed_sentences(sentences: list[str], spec: ModelSpec, ecfg: EmbedConfig, pool: EncoderPool | None
                    ) -> tuple[np.ndarray, EncoderPool | None, int]:
    """Embeddings of distinct ``sentences`` as the score job embeds them: cached ones read from the embedding
    cache (``ecfg.cache``), the others encoded by ``pool`` (started here when None and something is missing) and
    appended to the cache. Returns the embeddings (in order), the pool and the number encoded."""
    from aptray.embed.cache import EMBEDDING, HASH, EmbeddingCache
    from aptray.embed.pool import EncoderPool
    from aptray.templating.base import sentence_hash

    hashes = sentence_hash(sentences).to_pylist()
    cache = EmbeddingCache(ecfg.cache, spec) if ecfg.cache else None
    found = cache.lookup(hashes) if cache is not None else {}
    missing = [(h, s) for h, s in zip(hashes, sentences, strict=True) if h not in found]
    if missing:
        pool = pool or EncoderPool(spec, ecfg)
        encoded = pool.encode(pa.table({HASH: [h for h, _ in missing], "sentence": [s for _, s in missing]}))
        if cache is not None:
            cache.append(encoded)
        found.update(zip(encoded.column(HASH).to_pylist(), embedding_matrix(encoded.column(EMBEDDING)), strict=True))
    X = np.stack([found[h] for h in hashes]) if hashes else np.zeros((0, spec.dim), np.float32)
    return X, pool, len(missing)


def attribute_alerts(out_uri: str, cfg: AptrayConfig, detector: Any, spec: ModelSpec, pool: EncoderPool | None
                     ) -> tuple[int, EncoderPool | None]:
    """The attribution pass over the alerts (:mod:`aptray.triage.attribute`), on the driver: each alert file
    under ``OUT/alerts`` that has no attribution yet gets its columns (a resumed job attributes only the new
    groups). Variants are embedded through the embedding cache and ``pool`` (:func:`embed_sentences`) and
    scored by ``detector``. Returns the alerts attributed and the pool (started here if it was needed)."""
    from aptray.triage.attribute import ATTRIBUTION_FIELDS, attribute

    t0 = time.perf_counter()
    fs, files = _alert_files(out_uri)
    todo = [(p, t) for p in files if "attribution_part" not in (t := pq.read_table(p, filesystem=fs)).column_names]
    if not todo:
        return 0, pool
    alerts = pa.concat_tables([t for _, t in todo], promote_options="permissive")
    encoded = 0

    def embed(sentences: list[str]) -> np.ndarray:
        nonlocal pool, encoded
        X, pool, encoded = embed_sentences(sentences, spec, cfg.embed, pool)
        return X

    benign = getattr(detector, "benign_", None)
    extra = attribute(alerts, embed, detector.decision_function, cfg.template,
                      benign.vocabulary if benign is not None else None, benign.values if benign is not None else None)
    start = 0
    for path, part in todo:
        piece = extra.slice(start, part.num_rows)
        start += part.num_rows
        for f in ATTRIBUTION_FIELDS:
            part = part.append_column(f, piece.column(f.name))
        pq.write_table(part, path, filesystem=fs)
    log.info("attributed %d alert(s) in %.1f s (%d variant sentence(s) encoded)", alerts.num_rows,
             time.perf_counter() - t0, encoded)
    return alerts.num_rows, pool


def write_incidents(out_uri: str, window_s: float) -> int:
    """Group every alert under ``OUT/alerts`` into ranked incidents (:mod:`aptray.triage.incidents`), write them to
    ``OUT/incidents/incidents.parquet``, add each alert's ``incident_id`` to its alert file and write
    ``OUT/report.md`` / ``report.html`` (the top incidents with their alerts explained); the incident count.

    Run at the end of every score job over all alerts so far (a resumed job regroups earlier groups' alerts too).
    """
    import pyarrow.compute as pc

    from aptray.triage.incidents import alerts_in_incidents, group_incidents

    fs, files = _alert_files(out_uri)
    parts = [pq.read_table(p, filesystem=fs) for p in files]
    parts = [t.drop_columns(["incident_id"]) if "incident_id" in t.column_names else t for t in parts]
    alerts = pa.concat_tables(parts, promote_options="permissive") if parts else pa.table({"record_id": [],
                                                                                          "score": []})
    incidents, incident_of = group_incidents(alerts, window_s)
    start = 0  # each file's alerts are its rows of the concatenation, in order (a record id may repeat across
    for path, part in zip(files, parts, strict=True):  # files: CDM UUIDs of replayed traces; a lookup by id mixed them)
        ids = incident_of.slice(start, part.num_rows)
        start += part.num_rows
        pq.write_table(part.append_column("incident_id", ids), path, filesystem=fs)
    ifs, iroot = resolve(join(out_uri, "incidents"))
    ifs.create_dir(iroot, recursive=True)
    pq.write_table(incidents, join(iroot, "incidents.parquet"), filesystem=ifs)
    from aptray.evaluate.report import write_score_report

    write_score_report(out_uri, incidents, alerts.append_column("incident_id", incident_of))
    if incidents.num_rows:
        log.info("%s; the largest holds %d", alerts_in_incidents(alerts.num_rows, incidents.num_rows),
                 int(pc.max(incidents.column("alerts")).as_py() or 0))
    else:
        log.info("no alerts: every scored row is below the threshold")
    return int(incidents.num_rows)


class ScoreConflictError(AptrayError, ValueError):
    """The output folder holds scores made with another detector artifact."""


def check_markers(markers: dict[str, dict[str, Any]], hashes: dict[str, str], out_uri: str) -> None:
    """Refuse to add scores to an output whose files were scored with another artifact (a retrained or another
    model): one output holds one model's scores. Markers written before the hashes were recorded pass.

    Raises:
        ScoreConflictError: naming the output, how many files and the artifact they were scored with.
    """
    other = [m for m in markers.values() if m.get("artifact_sha256") not in (None, hashes)]
    if other:
        raise ScoreConflictError(f"{out_uri} holds scores of {len(other)} file(s) made with another detector artifact "
                                 f"({other[0].get('artifact')}, other files or config): score into another --out, "
                                 "or delete that folder first")


def artifact_hashes(meta: dict[str, Any]) -> dict[str, str]:
    """The sha256 of every file of the artifact that was scored with (its config's included)."""
    hashes = dict(meta.get("files") or {})
    if meta.get("config_sha256"):
        hashes["config.json"] = str(meta["config_sha256"])
    return hashes


def input_format(cfg: AptrayConfig, meta: dict[str, Any], input_uri: str | None = None
                 ) -> tuple[Source, Aspect | None]:
    """The source and process context to read: the config's where set, else the artifact's (else BETH); an ADAPT
    input without an aspect reads as the one its ``Process<Aspect>.csv`` name says, else All."""
    from aptray.artifacts import recorded_format
    from aptray.templating.job import effective_aspect

    trained_source, trained_aspect = recorded_format(meta)
    given = cfg.ingest.model_fields_set
    source = cfg.ingest.source if "source" in given or trained_source is None else trained_source
    if "aspect" in given or trained_source is None or source is not trained_source:
        aspect = cfg.ingest.aspect
    else:
        aspect = trained_aspect
    return source, effective_aspect(source, aspect, input_uri)


def _align_template(cfg: AptrayConfig, meta: dict[str, Any]) -> AptrayConfig:
    """Template as the detector's training sentences were: its masking and process style (the embedder comes
    from the artifact too)."""
    from aptray.config import TemplateConfig

    template = meta.get("template")
    if isinstance(template, dict):
        return cfg.model_copy(update={"template": TemplateConfig.model_validate(template)})
    return cfg


def _group_counts(out_uri: str, gid: str) -> dict[str, Any]:
    from aptray.io.files import file_line_counts, settle_lines, sum_line_counts

    scored = count_rows(join(out_uri, "scores", f"group={gid}"))
    quarantined = count_rows(join(out_uri, "quarantine", f"group={gid}"))
    alerts = count_rows(join(out_uri, "alerts", f"group={gid}"))
    per_file = file_line_counts(join(out_uri, "lines", f"group={gid}"))
    return {"rows_read": scored + quarantined, "rows_scored": scored, "rows_quarantined": quarantined,
            "alerts": alerts, "files_read": len(per_file),
            "lines": settle_lines(sum_line_counts(per_file), quarantined)}


def _totals(fs: pafs.FileSystem, root: str, out_uri: str) -> dict[str, Any]:
    markers = _done_markers(fs, root)
    groups = {m["group"] for m in markers.values()}
    totals: dict[str, Any] = {"rows_read": 0, "rows_scored": 0, "rows_quarantined": 0, "alerts": 0, "files_read": 0,
                              "files_in_output": len(markers)}
    lines: dict[str, int] = {}
    for gid in sorted(groups):
        for k, v in _group_counts(out_uri, gid).items():
            if k == "lines":
                for c, n in v.items():
                    lines[c] = lines.get(c, 0) + n
            else:
                totals[k] += v
    totals["lines"] = lines
    return totals

