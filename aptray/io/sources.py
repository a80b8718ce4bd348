"""The source registry: one :class:`SourceSpec` per :class:`~aptray.config.Source`, imported directly.

A spec holds everything the pipeline needs to know about a trace format: its batch reader (Ray Data), its
online request parser (the same parser and join plan, on one request), the file endings a folder listing
keeps, the canonical columns it fills, the process contexts it can build and whether its events are ordered
(windowed detectors need that), and how to recognise its files. Every list of sources in the package (CLI
choices, Serve formats, score file listing) derives from :data:`SOURCES`.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from aptray.config import Aspect, IngestConfig, Source
from aptray.io import adapt, auditd, beth, cdm
from aptray.io.fs import InputFile, Selection, open_binary
from aptray.schema import CONTEXT_COLUMNS, LINEAGE_FIELDS

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs
    import ray.data

    from aptray.io.request import Request


class Reader(Protocol):
    """A batch reader: an input (URI or listed files) -> a lazy dataset in the canonical event schema."""

    def __call__(self, uri: str | Selection, cfg: IngestConfig) -> ray.data.Dataset: ...


class RequestParser(Protocol):
    """An online parser: one request's items -> canonical rows (quarantined ones flagged), lines kept."""

    def __call__(self, request: Request, cfg: IngestConfig) -> pa.Table: ...


def _per_file(f: InputFile) -> str:
    return f.rel


def _per_folder(f: InputFile) -> str:
    return posixpath.dirname(f.rel)


_LINEAGE = frozenset(f.name for f in LINEAGE_FIELDS)
_CONTEXT = frozenset({"aspect", *CONTEXT_COLUMNS.values()})


@dataclass(frozen=True)
class SourceSpec:
    """One trace format.

    Attributes:
        source: the source.
        title: how messages name its files ("BETH CSV").
        reader: the batch reader.
        parse_request: the online parser (Serve).
        suffixes: file endings kept when a folder or glob is listed.
        columns: the canonical columns its rows can fill (lineage included).
        aspects: the process contexts it builds (``--aspect``); empty for none.
        events: whether it gives single events (no aspect).
        ordered: whether its single events come in event order within a file (windowed detectors).
        looks_like: whether the first non-blank lines of a file are of this format.
        unit: files that must be read together map to one value (ADAPT: a system folder).
        family: the file format (SYNTHETIC files are BETH CSV): artifacts trained on one source score the others
            of its family.
        merges: whether its records are single lines that do not depend on each other, so that online requests
            held at once can be parsed as one stream (:class:`aptray.io.request.Requests`); not ADAPT (a UUID
            seen twice in a stream is quarantined), CDM or auditd (records are joined within the stream).
    """

    source: Source
    title: str
    reader: Reader
    parse_request: RequestParser
    suffixes: tuple[str, ...]
    columns: frozenset[str]
    aspects: tuple[Aspect, ...]
    events: bool
    ordered: bool
    looks_like: Callable[[list[str]], bool]
    unit: Callable[[InputFile], str] = _per_file
    family: Source | None = None
    merges: bool = False

    @property
    def format(self) -> Source:
        """The file format family (the source itself unless :attr:`family` says otherwise)."""
        return self.family or self.source

    def check_aspect(self, aspect: Aspect | None) -> None:
        """Refuse an ``aspect`` this source cannot build (None: single events).

        Raises:
            ConfigError: naming the contexts it builds (a user's ``--aspect``, found before Ray starts).
        """
        if aspect is None and not self.events:
            return  # ADAPT: no aspect means All
        if aspect is not None and aspect not in self.aspects:
            from aptray.errors import ConfigError

            can = [a.value for a in self.aspects]
            builds = (f"the {', '.join(can)} context(s)" if can else "no process context") + (
                ", or single events without --aspect" if self.events else "")
            raise ConfigError(f"{self.source.value} does not build the {aspect.value} context: it builds {builds}")

    def windows_possible(self, aspect: Aspect | None) -> bool:
        """Whether rows of ``aspect`` are ordered single events (so windowed detectors apply)."""
        return self.ordered and aspect is None


_EVENT_COLUMNS = frozenset({"host", "timestamp", "pid", "ppid", "tid", "uid", "process_name", "exe", "parent_exe",
                            "action", "object_path", "object_addr", "args", "return_value", "malicious", "extras"})
_ALL_ASPECTS = tuple(Aspect)

_BETH = SourceSpec(
    source=Source.BETH, title="BETH CSV", reader=beth.read, parse_request=beth.parse_request, suffixes=beth.SUFFIXES,
    columns=_LINEAGE | (_EVENT_COLUMNS - {"exe", "parent_exe"}) | {"sus"}, aspects=(), events=True, ordered=True,
    looks_like=beth.looks_like, merges=True,
)

#: Every source. SYNTHETIC is the generator's BETH-format CSV (same reader and parser).
SOURCES: dict[Source, SourceSpec] = {s.source: s for s in (
    SourceSpec(
        source=Source.ADAPT, title="ADAPT process-context CSV", reader=adapt.read, parse_request=adapt.parse_request,
        suffixes=adapt.SUFFIXES, columns=_LINEAGE | _CONTEXT | {"malicious", "extras"}, aspects=_ALL_ASPECTS,
        events=False, ordered=False, looks_like=adapt.looks_like, unit=_per_folder,
    ),
    _BETH,
    SourceSpec(
        source=Source.CDM, title="DARPA TC CDM (JSON or Avro)", reader=cdm.read, parse_request=cdm.parse_request,
        suffixes=cdm.SUFFIXES, columns=_LINEAGE | _EVENT_COLUMNS | _CONTEXT, aspects=_ALL_ASPECTS, events=True,
        ordered=True, looks_like=cdm.looks_like,
    ),
    SourceSpec(
        source=Source.AUDITD, title="Linux audit.log", reader=auditd.read, parse_request=auditd.parse_request,
        suffixes=auditd.SUFFIXES, columns=_LINEAGE | (_EVENT_COLUMNS - {"tid"}) | _CONTEXT, aspects=_ALL_ASPECTS,
        events=True, ordered=True, looks_like=auditd.looks_like,
    ),
    SourceSpec(
        source=Source.SYNTHETIC, title="synthetic BETH CSV", reader=beth.read, parse_request=beth.parse_request,
        suffixes=beth.SUFFIXES, columns=_BETH.columns, aspects=(), events=True, ordered=True,
        looks_like=beth.looks_like, family=Source.BETH, merges=True,
    ),
)}


def source_spec(source: Source | str) -> SourceSpec:
    """The spec of ``source``.

    Raises:
        ValueError: an unknown source name (listing the known ones).
    """
    try:
        return SOURCES[Source(source)]
    except ValueError:
        raise ValueError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}") from None


def read(source: Source | str, uri: str | Selection, cfg: IngestConfig | None = None) -> ray.data.Dataset:
    """Read ``uri`` (file, folder, glob; local or ``s3://``; or listed files) of ``source`` into the canonical
    event table. Rows that could not be parsed are kept, flagged by ``quarantine_reason``."""
    spec = source_spec(source)
    cfg = (cfg or IngestConfig()).model_copy(update={"source": spec.source})
    spec.check_aspect(cfg.aspect)
    return spec.reader(uri, cfg)


#: Lines :func:`sniff` reads from the top of a file.
SNIFF_LINES = 5


def head_lines(fs: pafs.FileSystem, path: str, n: int = SNIFF_LINES, max_bytes: int = 1 << 16) -> list[str]:
    """The first ``n`` non-blank lines of a file (at most ``max_bytes`` read; ``.gz`` unpacked)."""
    out: list[str] = []
    read = 0
    with open_binary(fs, path) as stream:
        for raw in stream:
            read += len(raw)
            text = raw.decode("utf-8", errors="replace").strip()
            if text:
                out.append(text)
            if len(out) >= n or read >= max_bytes:
                break
    return out


def sniff(lines: list[str]) -> list[Source]:
    """The sources whose files start like ``lines`` (SYNTHETIC is reported as BETH)."""
    return [s for s, spec in SOURCES.items() if s is not Source.SYNTHETIC and spec.looks_like(lines)]
