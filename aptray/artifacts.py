"""Detector artifacts: a directory of ``model.safetensors`` + ``config.json`` that describes itself.

``config.json`` records the detector kind and hyperparameters, learned scalars, thresholds and tiers, the
embedder (model id, revision, dimension), the TEMPLATE_VERSION and template settings the embeddings were
made under, training metrics, library versions, and the sha256 of every other file. An optional
``benign.safetensors`` holds the distinct benign training sentences for explanations
(:mod:`aptray.triage.explain`). Loading verifies the hashes and refuses an artifact made for another embedder
or template version. Every detector's learned state is a set of named arrays, so nothing is ever unpickled.
Paths are local or ``s3://``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
from importlib import metadata
from typing import TYPE_CHECKING, Any

import numpy as np

from aptray.config import Aspect, DetectorName, Source
from aptray.detectors.base import Detector
from aptray.errors import AptrayError, FormatMismatchError
from aptray.io.fs import join, resolve

if TYPE_CHECKING:
    from aptray.triage.explain import BenignReference

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


class ArtifactError(AptrayError, ValueError):
    """An artifact is corrupt, tampered with, or made for other embeddings."""


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a detector's numbers."""
    out = {"python": platform.python_version()}
    for lib in ("aptray", "torch", "numpy", "scikit-learn", "safetensors", "ray", "sentence-transformers"):
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            continue
    return out


def _write(uri: str, data: bytes) -> None:
    fs, path = resolve(uri)
    with fs.open_output_stream(path) as fh:
        fh.write(data)


def _read(uri: str) -> bytes:
    fs, path = resolve(uri)
    try:
        with fs.open_input_stream(path) as fh:
            return bytes(fh.read())
    except FileNotFoundError as exc:
        folder = uri.rsplit("/", 1)[0] if "/" in uri else "."
        raise ArtifactError(f"{folder} is not a complete aptray artifact ({uri.rsplit('/', 1)[-1]} is missing): "
                            "pass the --out folder of `aptray train` or the model/ folder of `aptray run`") from exc


def save_detector(detector: Detector, out_dir: str, meta: dict[str, Any] | None = None,
                  benign: BenignReference | None = None) -> str:
    """Write ``detector`` to ``out_dir`` (local or ``s3://``).

    Args:
        detector: a fitted detector.
        out_dir: artifact directory (created).
        meta: provenance to record: ``embedder`` (``{"model_id", "revision", "dim"}``), ``template_version``,
            ``template`` (settings), ``training`` (metrics), anything else JSON-serialisable.
        benign: the benign training sentences for explanations (``benign.safetensors``, hash recorded).

    Returns:
        ``out_dir``.
    """
    from safetensors.numpy import save

    meta = dict(meta or {})
    fs, root = resolve(out_dir)
    fs.create_dir(root, recursive=True)
    arrays = {k: np.ascontiguousarray(v) for k, v in detector.state().items()}
    weights = save(arrays)
    _write(join(out_dir, WEIGHTS), weights)
    files = {WEIGHTS: hashlib.sha256(weights).hexdigest()}
    if benign is not None:
        from aptray.triage.explain import BENIGN_FILE

        data = save(benign.to_arrays())
        _write(join(out_dir, BENIGN_FILE), data)
        files[BENIGN_FILE] = hashlib.sha256(data).hexdigest()
    config = {
        "format_version": FORMAT_VERSION,
        "kind": detector.name,
        "params": detector.get_params(),
        "learned": detector.learned(),
        "thresholds": detector.thresholds(),
        "embedder": meta.pop("embedder", None),
        "template_version": meta.pop("template_version", None),
        "template": meta.pop("template", None),
        "data": meta.pop("data", None),
        "training": meta.pop("training", None),
        "meta": meta,
        "libraries": library_versions(),
        "files": files,
        "explanations": benign.describe() if benign is not None else {},
    }
    _write(join(out_dir, CONFIG), json.dumps(config, indent=2, sort_keys=True, default=_json_default).encode())
    log.info("saved %s detector to %s", detector.name, out_dir)
    return out_dir


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_config(path: str) -> dict[str, Any]:
    """The parsed ``config.json`` of an artifact directory."""
    try:
        config = json.loads(_read(join(path, CONFIG)))
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: config.json is not valid JSON") from exc
    if not isinstance(config, dict) or config.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: not an aptray detector artifact (format_version {FORMAT_VERSION})")
    return config


def load_detector(
    path: str,
    expect_embedder: str | None = None,
    expect_template_version: str | None = None,
    trusted: bool = False,
) -> Detector:
    """Load an artifact written by :func:`save_detector`, checking integrity and provenance.

    Args:
        path: artifact directory, local or ``s3://``.
        expect_embedder: the embedder model id the caller will score with; a different recorded one is refused.
        expect_template_version: the caller's TEMPLATE_VERSION; a different recorded one is refused.
        trusted: accept files that have no recorded hash (hand-made artifacts). A recorded hash that does not
            match is refused regardless; no file is ever unpickled.

    Returns:
        The detector, ready to score, with the whole config as ``meta_``.

    Raises:
        ArtifactError: tampered or missing file, unknown format, or mismatched embedder/template version.
    """
    from safetensors.numpy import load

    from aptray.detectors import detector_class
    from aptray.runtime import preload_torch

    preload_torch()  # before the first S3 read, or torch cannot load afterwards
    config = read_config(path)
    config_sha256 = hashlib.sha256(_read(join(path, CONFIG))).hexdigest()
    hashes: dict[str, str] = config.get("files") or {}
    if WEIGHTS not in hashes and not trusted:
        raise ArtifactError(f"{path}: no sha256 recorded for {WEIGHTS}; pass trusted=True to load it anyway")
    weights = _read(join(path, WEIGHTS))
    files: dict[str, bytes] = {}
    for name, digest in hashes.items():
        data = files[name] = weights if name == WEIGHTS else _read(join(path, name))
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise ArtifactError(f"{path}/{name}: sha256 mismatch (recorded {digest[:12]}..., found {actual[:12]}...); "
                                "the file was modified or corrupted")
    embedder = (config.get("embedder") or {}).get("model_id")
    if expect_embedder is not None and embedder != expect_embedder:
        raise ArtifactError(f"{path}: detector was trained on embeddings of {embedder!r}, "
                            f"but the caller embeds with {expect_embedder!r}; retrain or use the matching embedder")
    recorded_tv = config.get("template_version")
    if expect_template_version is not None and recorded_tv != expect_template_version:
        raise ArtifactError(f"{path}: detector was trained on sentences of TEMPLATE_VERSION {recorded_tv!r}, "
                            f"but the caller uses {expect_template_version!r}; re-embed and retrain")
    det = detector_class(config["kind"])(**config["params"])
    det.restore(load(weights), config.get("learned") or {}, config["thresholds"])
    det.meta_ = {**config, "config_sha256": config_sha256}  # type: ignore[attr-defined]
    from aptray.triage.explain import BENIGN_FILE, BenignReference

    if BENIGN_FILE in files:  # verified above with the other files
        det.benign_ = BenignReference.from_arrays(load(files[BENIGN_FILE]))  # type: ignore[attr-defined]
    return det


def recorded_format(config: dict[str, Any]) -> tuple[Source | None, Aspect | None]:
    """The source and process context an artifact was trained on (None where it does not record them)."""
    data = config.get("data") or {}
    source = data.get("source")
    aspect = data.get("aspect")
    return (Source(source) if source else None), (Aspect(aspect) if aspect else None)


def describe_format(source: Source | None, aspect: Aspect | None) -> str:
    """``auditd events`` / ``adapt Event process contexts``: how messages name what a model saw."""
    if source is None:
        return "an unrecorded source"
    return f"{source.value} {aspect.value} process contexts" if aspect else f"{source.value} events"


_UNRECORDED_WARNED: set[int] = set()


def check_format(config: dict[str, Any], source: Source, aspect: Aspect | None, allow: bool = False,
                 where: str = "the input", remedy: str = "") -> None:
    """Refuse to score ``source`` rows of ``aspect`` with an artifact trained on another format or context.

    Sources of one file format (BETH and the synthetic BETH) match. Artifacts that record no source (made
    before this check) are accepted with a warning.

    Raises:
        FormatMismatchError: the formats differ and ``allow`` is False.
    """
    from aptray.io.sources import source_spec

    trained_source, trained_aspect = recorded_format(config)
    if trained_source is None:
        if id(config) not in _UNRECORDED_WARNED:  # once per loaded artifact, not once per request
            _UNRECORDED_WARNED.add(id(config))
            log.warning("the artifact records no training source; cannot check that %s fits it",
                        describe_format(source, aspect))
        return
    same = source_spec(trained_source).format is source_spec(source).format and trained_aspect == aspect
    if same:
        return
    message = (f"the artifact was trained on {describe_format(trained_source, trained_aspect)}, but {where} holds "
               f"{describe_format(source, aspect)}: its scores would mean nothing" + (f"; {remedy}" if remedy else ""))
    if allow:
        log.warning("%s (scoring anyway: format mismatch allowed)", message)
        return
    raise FormatMismatchError(message)


def window_of(config: dict[str, Any]) -> int | None:
    """Events per window of a windowed detector's artifact (None for detectors of single rows)."""
    from aptray.detectors.registry import detector_spec

    model = (config.get("params") or {}).get("model")
    if config.get("kind") != "reconstruction" or model is None or not detector_spec(DetectorName(model)).windowed:
        return None
    extra = (config.get("params") or {}).get("extra") or {}
    training = config.get("training") or {}
    return int(extra.get("window") or training.get("window") or 8)
