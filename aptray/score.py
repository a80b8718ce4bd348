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
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from aptray.config import AptrayConfig, Source
from aptray.embed.cache import embedding_matrix
from aptray.io.fs import InputFile, Selection, join, list_files, resolve
from aptray.io.quarantine import count_rows

if TYPE_CHECKING:
    import pyarrow.fs as pafs
    import ray.data

    from aptray.embed.registry import ModelSpec

log = logging.getLogger(__name__)

#: Columns of the scores dataset.
SCORE_COLUMNS = ("record_id", "source_file", "line", "score", "tier", "is_anomaly", "sentence_hash", "malicious")
#: Columns of the alerts dataset (rows above the threshold, with their sentence and source fields).
ALERT_COLUMNS = (
    "record_id", "source", "source_file", "line", "host", "timestamp", "pid", "process_name", "exe", "action",
    "object_path", "object_addr", "sentence", "sentence_hash", "score", "tier", "malicious",
)


class Scorer:
    """``map_batches`` callable class: loads the detector once per actor, scores embedded rows.

    Rows above the threshold are also written to ``alerts_dir`` (file named by a digest of their record
    ids, so a retried task rewrites rather than duplicates).
    """

    def __init__(self, artifact: str, alerts_dir: str | None, trusted: bool = False) -> None:
        from aptray.artifacts import load_detector

        self.detector = load_detector(artifact, trusted=trusted)
        self.alerts_dir = alerts_dir
        self._fs: pafs.FileSystem | None = None
        self._root = ""

    def __call__(self, batch: pa.Table) -> pa.Table:
        X = embedding_matrix(batch.column("embedding"))
        scores = np.asarray(self.detector.decision_function(X), dtype=np.float64)
        tiers = self.detector.tier(X) if batch.num_rows else []
        flags = scores >= float(self.detector.threshold_)  # the same rule as Detector.predict
        out = (
            batch.drop_columns(["embedding"])
            .append_column("score", pa.array(scores, pa.float64()))
            .append_column("tier", pa.array(tiers, pa.string()))
            .append_column("is_anomaly", pa.array(flags, pa.bool_()))
        )
        if self.alerts_dir and flags.any():
            self._write_alerts(out.filter(pa.array(flags)))
        return out.select([c for c in SCORE_COLUMNS if c in out.column_names])

    def _write_alerts(self, alerts: pa.Table) -> None:
        if self._fs is None:
            self._fs, self._root = resolve(str(self.alerts_dir))
            self._fs.create_dir(self._root, recursive=True)
        digest = hashlib.sha256("\n".join(alerts.column("record_id").to_pylist()).encode()).hexdigest()[:24]
        cols = [c for c in ALERT_COLUMNS if c in alerts.column_names]
        pq.write_table(alerts.select(cols), join(self._root, f"part-{digest}.parquet"), filesystem=self._fs)


def score_dataset(
    ds: ray.data.Dataset, cfg: AptrayConfig, spec: ModelSpec, artifact: str, alerts_dir: str | None
) -> ray.data.Dataset:
    """Embed templated rows with the artifact's embedder ``spec`` and score them (lazy, streaming).

    Repeated sentences are encoded once per embedding actor (its LRU); the score job streams, so it does
    not make the embed job's global distinct pass over the whole input.
    """
    import ray.data

    from aptray.embed.job import encode_dataset

    ds = encode_dataset(ds, spec, cfg.embed)
    return ds.map_batches(
        Scorer,  # type: ignore[arg-type]
        fn_constructor_kwargs={"artifact": artifact, "alerts_dir": alerts_dir},
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=1),
        num_cpus=cfg.score.scorer_cpus,
    )


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


def plan_groups(files: list[InputFile], group_bytes: int) -> list[list[InputFile]]:
    """Cut the sorted file list into groups of at most ``group_bytes`` (a larger file is a group alone)."""
    groups: list[list[InputFile]] = []
    current: list[InputFile] = []
    size = 0
    for f in files:
        if current and size + f.size > group_bytes:
            groups.append(current)
            current, size = [], 0
        current.append(f)
        size += f.size
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
    for part in ("scores", "alerts", "quarantine"):
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

    Returns:
        ``rows_read``, ``rows_scored``, ``rows_quarantined``, ``alerts``, ``files``, ``files_skipped``,
        ``seconds`` — totals over all files, including those done by earlier runs.
    """
    import pyarrow.fs as pafs_

    from aptray.artifacts import load_detector
    from aptray.embed.registry import resolve_recorded
    from aptray.runtime import init_ray
    from aptray.templating.base import TEMPLATE_VERSION
    from aptray.templating.job import sentences_dataset

    if not cfg.score.artifact:
        raise ValueError("score.artifact is required (a detector artifact folder, local or s3://)")
    start = time.perf_counter()
    init_ray(cfg.ray)
    artifact = cfg.score.artifact
    detector = load_detector(artifact, expect_template_version=TEMPLATE_VERSION, trusted=cfg.score.trusted)
    meta = detector.meta_ if hasattr(detector, "meta_") else {}
    cfg = _align_template(cfg, meta)
    spec = resolve_recorded(meta.get("embedder"))
    source = Source(cfg.ingest.source)

    fs_in, files = list_files(input_uri, _SUFFIXES.get(source))
    fs, root = resolve(out_uri)
    fs.create_dir(join(root, "_done"), recursive=True)
    markers = _done_markers(fs, root)
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
    log.info("%d file(s): %d done earlier, %d to score", len(files), skipped, len(pending))

    for group in plan_groups(pending, cfg.score.group_bytes):
        gid = hashlib.sha256("\n".join(f"{f.rel}\0{f.size}" for f in group).encode()).hexdigest()[:16]
        dirs = {p: join(root, p, f"group={gid}") for p in ("scores", "alerts", "quarantine")}
        for d in dirs.values():
            if fs.get_file_info(d).type == pafs_.FileType.Directory:
                fs.delete_dir(d)
        selection = Selection(fs_in, tuple(group), input_uri)
        ds = sentences_dataset(source, selection, cfg, join(out_uri, "quarantine", f"group={gid}"))
        alerts_dir = join(out_uri, "alerts", f"group={gid}") if cfg.score.write_alerts else None
        ds = score_dataset(ds, cfg, spec, artifact, alerts_dir)
        ds.write_parquet(dirs["scores"], filesystem=fs)
        counts = _group_counts(out_uri, gid)
        for f in group:
            _write_json(fs, join(root, "_done", f"{file_key(f)}.json"),
                        {"file": f.rel, "size": f.size, "version": file_version(fs_in, f), "group": gid,
                         "group_counts": counts, "artifact": artifact, "finished": time.time()})
        log.info("group %s: %d file(s), %s", gid, len(group), counts)

    totals = _totals(fs, root, out_uri)
    result = {
        **totals,
        "files": len(files),
        "files_skipped": skipped,
        "seconds": round(time.perf_counter() - start, 3),
    }
    manifest = {
        "input": input_uri,
        "files": [{"file": f.rel, "size": f.size} for f in files],
        "artifact": artifact,
        "artifact_sha256": meta.get("sha256", {}),
        "template_version": TEMPLATE_VERSION,
        "embedder": {"model_id": spec.model_id, "revision": spec.revision, "dim": spec.dim},
        "counts": result,
    }
    _write_json(fs, join(root, "manifest.json"), manifest)
    return result


_SUFFIXES: dict[Source, tuple[str, ...]] = {
    Source.BETH: (".csv", ".csv.gz"),
    Source.SYNTHETIC: (".csv", ".csv.gz"),
    Source.ADAPT: (".csv",),
    Source.CDM: (".json", ".json.gz", ".jsonl", ".jsonl.gz"),
}


def _align_template(cfg: AptrayConfig, meta: dict[str, Any]) -> AptrayConfig:
    """Template with the masking the detector was trained with (the embedder comes from the artifact too)."""
    template = meta.get("template")
    if isinstance(template, dict) and "mask" in template:
        return cfg.model_copy(update={"template": cfg.template.model_copy(update={"mask": list(template["mask"])})})
    return cfg


def _group_counts(out_uri: str, gid: str) -> dict[str, int]:
    scored = count_rows(join(out_uri, "scores", f"group={gid}"))
    quarantined = count_rows(join(out_uri, "quarantine", f"group={gid}"))
    alerts = count_rows(join(out_uri, "alerts", f"group={gid}"))
    return {"rows_read": scored + quarantined, "rows_scored": scored, "rows_quarantined": quarantined,
            "alerts": alerts}


def _totals(fs: pafs.FileSystem, root: str, out_uri: str) -> dict[str, int]:
    groups = {m["group"] for m in _done_markers(fs, root).values()}
    totals = {"rows_read": 0, "rows_scored": 0, "rows_quarantined": 0, "alerts": 0}
    for gid in sorted(groups):
        for k, v in _group_counts(out_uri, gid).items():
            totals[k] += v
    return totals
