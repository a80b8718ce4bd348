"""Resolving local paths and ``s3://`` URIs to a pyarrow filesystem, and listing input files.

The S3 endpoint comes from the standard ``AWS_ENDPOINT_URL`` (or ``APTRAY_S3_ENDPOINT``) so the same code
reads AWS, a MinIO/Ceph gateway or the loopback test server; credentials come from the usual AWS chain and
are never logged.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, BinaryIO
from urllib.parse import urlparse

import pyarrow.fs as pafs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputFile:
    """One input file: the path its filesystem knows, the path relative to the input root, its size."""

    path: str
    rel: str
    size: int


@dataclass(frozen=True)
class Selection:
    """An already listed set of files, accepted wherever an input URI is (batch jobs read files in groups)."""

    fs: pafs.FileSystem
    files: tuple[InputFile, ...]
    root: str


def is_s3(uri: str) -> bool:
    """True for ``s3://`` (and ``s3a://``) URIs."""
    return uri.startswith(("s3://", "s3a://"))


def s3_filesystem() -> pafs.S3FileSystem:
    """A pyarrow S3 filesystem honouring ``AWS_ENDPOINT_URL`` / ``APTRAY_S3_ENDPOINT``."""
    endpoint = os.environ.get("APTRAY_S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL")
    kwargs: dict[str, object] = {}
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"http://{endpoint}")
        kwargs["endpoint_override"] = parsed.netloc
        kwargs["scheme"] = parsed.scheme or "http"
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
    if region:
        kwargs["region"] = region
    # never creates a bucket: an output under a misspelt bucket name fails (check_output) instead of making one
    return pafs.S3FileSystem(allow_bucket_creation=False, **kwargs)  # type: ignore[arg-type]


def check_output(*uris: str | None) -> None:
    """Refuse outputs (an output folder, an embedding cache) that are no local path or ``s3://`` URI
    (:func:`check_uri`), or name an ``s3://`` bucket that does not exist, before any work.

    Raises:
        UriError: a malformed URI.
        MissingBucketError: naming the bucket and the fix.
    """
    from aptray.errors import MissingBucketError

    for uri in filter(None, uris):
        if not is_s3(uri):
            check_uri(uri)
            continue
        fs, path = resolve(uri)
        bucket = path.split("/", 1)[0]
        if fs.get_file_info(bucket).type == pafs.FileType.NotFound:
            raise MissingBucketError(f"s3 bucket {bucket!r} of {uri} does not exist (or these credentials cannot see "
                                     "it): create it first; aptray does not create buckets")


def check_uri(uri: str) -> None:
    """Refuse what is neither a local path nor ``s3://``: another scheme, a scheme in capitals, or ``s3:/x``
    (one slash), which would otherwise be written to a local folder named ``s3:``.

    Raises:
        UriError: naming the URI and the form to use.
    """
    from aptray.errors import UriError

    m = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):(/*)", uri)
    if m is None or uri.startswith("file://"):
        return
    scheme, slashes = m.group(1), m.group(2)
    if scheme.lower() in ("s3", "s3a"):
        raise UriError(f"{uri!r} is not an S3 URI: write it s3://bucket/key (lower case, two slashes)")
    if slashes == "//":
        raise UriError(f"unsupported URI scheme {scheme!r} in {uri!r}: use a local path or s3://")
    if slashes:  # "gs:/x": a scheme with a slash missing; a local name with a colon has none ("a:b")
        raise UriError(f"{uri!r} looks like a URI with a slash missing: use a local path or s3://bucket/key")


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """Map a local path or ``s3://bucket/key`` to ``(filesystem, path)``."""
    if is_s3(uri):
        return s3_filesystem(), uri.split("://", 1)[1].rstrip("/")
    check_uri(uri)
    path = uri[len("file://") :] if uri.startswith("file://") else uri
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(path))


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a local path or URI."""
    if is_s3(uri):
        return posixpath.join(uri.rstrip("/"), *parts)
    return os.path.join(uri, *parts)


def list_files(
    uri: str | Selection, suffixes: tuple[str, ...] | None = None
) -> tuple[pafs.FileSystem, list[InputFile]]:
    """List the files named by ``uri``: one file, a directory (recursively) or a glob.

    Args:
        uri: local path, directory, glob (``*``, ``?``, ``[``) or the same under ``s3://``; or a
            :class:`Selection`, returned as it is.
        suffixes: keep only names ending in one of these (case-insensitive), for directories and globs.

    Returns:
        The filesystem and the files sorted by path, each with its path relative to the input root.

    Raises:
        FileNotFoundError: nothing matched.
    """
    if isinstance(uri, Selection):
        return uri.fs, list(uri.files)
    fs, path = resolve(uri)
    files: list[InputFile] = []
    has_glob = any(ch in path for ch in "*?[")
    if has_glob:
        root, matches = _glob(fs, path)
        for i in matches:  # a matched folder stands for the files under it ('darpa_tc_adapt/*/clearscope')
            inner = (fs.get_file_info(pafs.FileSelector(i.path, recursive=True)) if i.type == pafs.FileType.Directory
                     else [i])
            files += [InputFile(f.path, _rel(f.path, root), f.size or 0) for f in inner if f.type == pafs.FileType.File]
    else:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            files.append(InputFile(info.path, posixpath.basename(info.path), info.size or 0))
        elif info.type == pafs.FileType.Directory:
            for sub in fs.get_file_info(pafs.FileSelector(path, recursive=True)):
                if sub.type == pafs.FileType.File:
                    files.append(InputFile(sub.path, _rel(sub.path, path), sub.size or 0))
    files = [f for f in files if not posixpath.basename(f.rel).startswith(".")]
    if suffixes is not None and (has_glob or len(files) != 1 or files[0].rel != posixpath.basename(path)):
        kept: list[InputFile] = []
        skipped: list[str] = []
        for f in files:
            if has_suffix(f.rel, suffixes):
                kept.append(f)
            else:
                skipped.append(f.rel)
        files = kept
        if files and skipped and _first_time((str(uri), *skipped)):  # none kept: the caller's error names them
            log.warning("%d file(s) at %s are not read (their names do not end in %s): %s%s", len(skipped),
                        uri, ", ".join(suffixes), ", ".join(skipped[:5]), ", ..." if len(skipped) > 5 else "")
    if not files:
        raise FileNotFoundError(f"no input files found at {uri!r}" + (f" ending in {suffixes}" if suffixes else ""))
    return fs, sorted(files, key=lambda f: f.rel)


_PART = re.compile(r"\.\d+$")
_SAID: set[tuple[str, ...]] = set()


def _first_time(key: tuple[str, ...]) -> bool:
    """Whether this process has not said ``key`` yet (each stage of a run lists its input again)."""
    if key in _SAID:
        return False
    _SAID.add(key)
    return True


def has_suffix(name: str, suffixes: tuple[str, ...]) -> bool:
    """Whether a file name ends in one of ``suffixes`` (case-insensitive), also behind a part or rotation number:
    ``x.json.3`` (DARPA TC E3's parts), ``x.bin.1.gz`` (E5's) and ``audit.log.12`` (logrotate's) match ``.json``,
    ``.bin.gz`` and ``.log``."""
    low, ends = name.lower(), tuple(s.lower() for s in suffixes)
    if low.endswith(ends):
        return True
    gz = low.endswith(".gz")
    base = low[:-3] if gz else low
    stripped = _PART.sub("", base)
    return stripped != base and (stripped + (".gz" if gz else "")).endswith(ends)


def glob_paths(fs: pafs.FileSystem, pattern: str) -> list[str]:
    """Files and folders whose whole path matches the glob ``pattern`` (a path inside ``fs``; ``*`` does not cross
    ``/``), sorted."""
    return sorted(i.path for i in _glob(fs, pattern)[1])


def _glob(fs: pafs.FileSystem, pattern: str) -> tuple[str, list[pafs.FileInfo]]:
    """The fixed folder above a glob ``pattern`` and the entries below it whose whole path matches."""
    parts = pattern.split("/")
    fixed = next(i for i, part in enumerate(parts) if any(ch in part for ch in "*?["))
    root = "/".join(parts[:fixed]) or "/"
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return root, [i for i in infos if _glob_match(i.path, PurePosixPath(pattern))]


def _rel(path: str, root: str) -> str:
    """``path`` relative to ``root`` by plain string arithmetic (no cwd: S3 keys are not local paths)."""
    root = root.rstrip("/")
    if root and path.startswith(root + "/"):
        return path[len(root) + 1 :]
    return posixpath.basename(path)


def _glob_match(path: str, pattern: PurePosixPath) -> bool:
    """Whole-path glob match where ``*`` does not cross ``/`` (``**`` is not supported)."""
    candidate = PurePosixPath(path)
    return len(candidate.parts) == len(pattern.parts) and candidate.match(str(pattern))


def open_binary(fs: pafs.FileSystem, path: str) -> BinaryIO:
    """Open a file for streaming binary reads, transparently gunzipping ``.gz`` files."""
    raw = fs.open_input_stream(path, compression=None)  # gunzip below, never twice (pyarrow detects .gz)
    stream: BinaryIO = io.BufferedReader(raw, buffer_size=1 << 20)  # type: ignore[arg-type]
    if path.endswith(".gz"):
        return gzip.GzipFile(fileobj=stream)  # type: ignore[return-value]
    return stream


def parquet_rows(fs: pafs.FileSystem, path: str) -> int:
    """Rows of one Parquet file, from its footer."""
    import pyarrow.parquet as pq

    with fs.open_input_file(path) as fh:
        return int(pq.ParquetFile(fh).metadata.num_rows)


#: Up to this many files, :func:`read_parquet` reads through Ray Data's V1 Parquet datasource. V2 (the Ray
#: 2.60 default) lists files through a pool of footer-reading actors that it starts, and kills, on every read:
#: new worker processes, about 0.6 s per read measured on a one-file input (0.26 s with V1). The pool pays off
#: only for many files (footers read in parallel from S3).
SMALL_READ_MAX_FILES = 64


def read_parquet(paths: str | list[str], filesystem: pafs.FileSystem, columns: list[str] | None = None) -> Any:
    """A lazy Ray dataset of Parquet files (a folder, read recursively, or a list of files).

    Hidden files and files not ending in ``.parquet`` are skipped. Small inputs (at most
    :data:`SMALL_READ_MAX_FILES` files) skip Ray Data's per-read footer actors.
    """
    import ray.data

    if isinstance(paths, str):
        selector = pafs.FileSelector(paths, recursive=True)
        paths = sorted(i.path for i in filesystem.get_file_info(selector)
                       if i.type == pafs.FileType.File and i.path.endswith(".parquet")
                       and not posixpath.basename(i.path).startswith((".", "_")))
        if not paths:
            raise FileNotFoundError(f"no .parquet files under {selector.base_dir!r}")
    ctx = ray.data.DataContext.get_current()
    before = ctx.use_datasource_v2
    ctx.use_datasource_v2 = before and len(paths) > SMALL_READ_MAX_FILES
    try:
        return ray.data.read_parquet(paths, filesystem=filesystem, columns=columns)
    finally:
        ctx.use_datasource_v2 = before
