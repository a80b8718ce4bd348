"""Source name -> reader. Each reader module exposes ``read(uri, cfg) -> ray.data.Dataset``."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from aptray.config import IngestConfig, Source
from aptray.io.fs import Selection

if TYPE_CHECKING:
    import ray.data

_MODULES: dict[Source, str] = {
    Source.ADAPT: "aptray.io.adapt",
    Source.BETH: "aptray.io.beth",
    Source.CDM: "aptray.io.cdm",
    Source.AUDITD: "aptray.io.auditd",
    Source.SYNTHETIC: "aptray.io.beth",  # the synthetic generator writes BETH-format CSV
}


def read(source: Source | str, uri: str | Selection, cfg: IngestConfig | None = None) -> ray.data.Dataset:
    """Read ``uri`` (file, folder, glob; local or ``s3://``) of ``source`` into the canonical event table.

    Rows that could not be parsed are kept, flagged by ``quarantine_reason``.
    """
    src = Source(source)
    module = importlib.import_module(_MODULES[src])
    return module.read(uri, cfg or IngestConfig(source=src))  # type: ignore[no-any-return]
