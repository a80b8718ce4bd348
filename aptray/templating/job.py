"""The templatize job: read a trace, quarantine bad rows, write sentences as Parquet with counts."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from aptray.config import AptrayConfig, Source, TemplateConfig
from aptray.io.fs import Selection, join, resolve
from aptray.io.quarantine import QuarantineSplit, count_rows
from aptray.templating.base import TEMPLATE_VERSION, templatize

log = logging.getLogger(__name__)

DROP_COLUMNS = ("quarantine_reason", "raw")


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
    from aptray.io.registry import read

    ingest = cfg.ingest.model_copy(update={"source": Source(source)})
    ds = read(source, uri, ingest)
    ds = ds.map_batches(QuarantineSplit(quarantine_dir, ingest.strict), batch_format="pyarrow", batch_size=None)
    return ds.map_batches(Templatize(cfg.template), batch_format="pyarrow", batch_size=None)  # type: ignore[arg-type]


def run_templatize(source: Source | str, uri: str, out: str, cfg: AptrayConfig | None = None) -> dict[str, Any]:
    """Templatize ``uri`` into ``out/sentences`` (Parquet) and ``out/quarantine``; return the counts.

    The counts are also written to ``out/manifest.json`` with the template version.
    """
    from aptray.runtime import init_ray

    cfg = cfg or AptrayConfig()
    init_ray(cfg.ray)
    start = time.perf_counter()
    fs, root = resolve(out)
    fs.create_dir(root, recursive=True)
    sentences_uri, quarantine_uri = join(out, "sentences"), join(out, "quarantine")
    ds = sentences_dataset(source, uri, cfg, quarantine_uri)
    ds.write_parquet(join(root, "sentences"), filesystem=fs)
    counts = sentence_counts(sentences_uri)
    counts["quarantined"] = count_rows(quarantine_uri)
    counts["rows_read"] = counts["rows"] + counts["quarantined"]
    counts["seconds"] = round(time.perf_counter() - start, 3)
    manifest = {"source": str(Source(source)), "input": uri, "template_version": TEMPLATE_VERSION,
                "template": cfg.template.model_dump(), "counts": counts}
    with fs.open_output_stream(join(root, "manifest.json")) as fh:
        fh.write(json.dumps(manifest, indent=2).encode())
    return counts


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
