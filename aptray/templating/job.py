"""The templatize job: read a trace, quarantine bad rows, write sentences as Parquet with counts."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from aptray.config import AptrayConfig, Aspect, Source, TemplateConfig
from aptray.io.files import check_lines, line_counts, settle_lines
from aptray.io.fs import Selection, check_output, join, resolve
from aptray.io.quarantine import QuarantineSplit, count_rows, quarantine_reasons
from aptray.schema import EVENT_SCHEMA
from aptray.templating.base import SENTENCE_FIELDS, TEMPLATE_VERSION, templatize

log = logging.getLogger(__name__)

DROP_COLUMNS = ("quarantine_reason", "raw")
#: Columns of a templatize output's ``sentences/``.
SENTENCES_SCHEMA = pa.schema([*(f for f in EVENT_SCHEMA if f.name not in DROP_COLUMNS), *SENTENCE_FIELDS])


class Templatize:
    """``map_batches`` UDF: good event rows -> rows with ``sentence``, ``sentence_hash``, ``template_version``."""

    def __init__(self, cfg: TemplateConfig) -> None:
        self.cfg = cfg

    def __call__(self, batch: pa.Table) -> pa.Table:
        return templatize(batch.drop_columns(list(DROP_COLUMNS)), self.cfg)


def sentences_dataset(
    source: Source | str, uri: str | Selection, cfg: AptrayConfig, quarantine_dir: str | None
) -> Any:
    """Lazy dataset of templated good rows; bad rows are written to ``quarantine_dir`` on the way."""
    from aptray.io.sources import read

    ingest = cfg.ingest.model_copy(update={"source": Source(source)})
    ds = read(source, uri, ingest)
    ds = ds.map_batches(QuarantineSplit(quarantine_dir, ingest.strict), batch_format="pyarrow", batch_size=None)
    return ds.map_batches(Templatize(cfg.template), batch_format="pyarrow", batch_size=None)  # type: ignore[arg-type]


def run_templatize(source: Source | str, uri: str, out: str, cfg: AptrayConfig | None = None) -> dict[str, Any]:
    """Templatize ``uri`` into ``out/sentences`` (Parquet) and ``out/quarantine``; return the counts.

    The counts are also written to ``out/manifest.json`` with the template version.
    """
    from aptray.io.files import list_input
    from aptray.io.sources import source_spec
    from aptray.runtime import init_ray

    check_output(out)  # a missing s3 bucket: refused before any work
    cfg = cfg or AptrayConfig()
    aspect = effective_aspect(Source(source), cfg.ingest.aspect, uri)  # one ProcessParent.csv reads as Parent
    cfg = cfg.model_copy(update={"ingest": cfg.ingest.model_copy(update={"aspect": aspect})})
    fs_in, files = list_input(uri, source_spec(Source(source)).suffixes, cfg.ingest)  # a missing input: before Ray
    selection = Selection(fs_in, tuple(files), uri)
    init_ray(cfg.ray)
    start = time.perf_counter()
    fs, root = resolve(out)
    fs.create_dir(root, recursive=True)
    sentences_uri, quarantine_uri, lines_uri = join(out, "sentences"), join(out, "quarantine"), join(out, "_lines")
    for d in (sentences_uri, quarantine_uri, lines_uri):  # a rerun replaces the outputs and counts its own input
        clear_dir(d)
    cfg = cfg.model_copy(update={"ingest": cfg.ingest.model_copy(update={"counts_dir": lines_uri})})
    ds = sentences_dataset(source, selection, cfg, quarantine_uri)
    ds.write_parquet(join(root, "sentences"), filesystem=fs)
    ensure_parquet(sentences_uri, SENTENCES_SCHEMA)  # an input that keeps no row gives an empty, typed output
    counts = sentence_counts(sentences_uri)
    counts["quarantined"] = count_rows(quarantine_uri)
    counts["rows_read"] = counts["rows"] + counts["quarantined"]
    counts["lines"] = settle_lines(line_counts(lines_uri), counts["quarantined"])
    counts["quarantine_reasons"] = quarantine_reasons(quarantine_uri)
    counts["seconds"] = round(time.perf_counter() - start, 3)
    manifest = {"source": str(Source(source)), "input": uri, "aspect": aspect.value if aspect else None,
                "template_version": TEMPLATE_VERSION, "template": cfg.template.model_dump(mode="json"),
                "counts": counts}
    with fs.open_output_stream(join(root, "manifest.json")) as fh:
        fh.write(json.dumps(manifest, indent=2).encode())
    check_lines(counts["lines"], f"templatize {uri}")
    return counts


def clear_dir(uri: str) -> None:
    """Delete the folder ``uri`` (local or ``s3://``) when it exists."""
    import pyarrow.fs as pafs

    fs, path = resolve(uri)
    if fs.get_file_info(path).type == pafs.FileType.Directory:
        fs.delete_dir(path)


def ensure_parquet(uri: str, schema: pa.Schema) -> None:
    """Write an empty Parquet file of ``schema`` at ``uri`` when no file was written there (no rows)."""
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    fs, path = resolve(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.Directory and any(
            i.path.endswith(".parquet") for i in fs.get_file_info(pafs.FileSelector(path, recursive=True))):
        return
    fs.create_dir(path, recursive=True)
    pq.write_table(schema.empty_table(), join(path, "part-empty.parquet"), filesystem=fs)


def effective_aspect(source: Source, aspect: Aspect | None, uri: str | None = None) -> Aspect | None:
    """The context a read builds: ``aspect``; for a source of process contexts only (ADAPT) without one, the
    aspect a single ``Process<Aspect>.csv`` input ``uri`` names, else All."""
    from aptray.io.sources import source_spec

    if aspect is not None or source_spec(source).events:
        return aspect
    from aptray.io.adapt import file_aspect

    return (file_aspect(uri) if uri else None) or Aspect.ALL


def sentence_counts(uri: str) -> dict[str, Any]:
    """Rows, malicious rows and distinct sentences of a templatize output (streamed, two columns only)."""
    fs, path = resolve(uri)
    dataset = pads.dataset(path, filesystem=fs, format="parquet")
    rows = malicious = 0
    distinct: set[str] = set()
    for batch in dataset.to_batches(columns=["malicious", "sentence_hash"]):
        rows += batch.num_rows
        malicious += int(pc.sum(pc.fill_null(batch.column("malicious"), 0)).as_py() or 0)
        distinct.update(batch.column("sentence_hash").to_pylist())
    return {"rows": rows, "malicious": malicious, "distinct_sentences": len(distinct)}
