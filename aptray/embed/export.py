"""Exported encoder variants (ONNX, int8 ONNX, O4 ONNX, OpenVINO), built once, offline, beside the packaged model.

Everything goes through sentence-transformers' own backend API: ``SentenceTransformer(path, backend=...)``
exports the transformer (Optimum) and ``save_pretrained`` writes it; ``export_dynamic_quantized_onnx_model``
and ``export_optimized_onnx_model`` derive the int8 and O4 graphs. Pooling and normalisation stay the
model's own modules. A variant lives in ``$APTRAY_MODEL_CACHE/<model>--<revision>-<variant>/``::

    modules.json, tokenizer, pooling config ...          copied from the packaged model
    onnx/model_quint8_avx2_attn.onnx (or openvino/...)   the backend's files
    .aptray-export.json                                  what was built, from what, and the sha256 of each file

It is built in a temporary sibling folder under a file lock and renamed into place, so concurrent actors
build it once and nobody sees half a folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from aptray.config import Backend, Quantize
from aptray.embed.registry import ModelNotFoundError, ModelSpec, file_sha256, model_cache_dir, slug

log = logging.getLogger(__name__)

MARKER = ".aptray-export.json"
#: The extra that holds the exporters (pyproject ``[project.optional-dependencies]``).
EXTRA_HINT = "pip install 'aptray[embed-fast]'"
_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
#: Modules each backend needs, to tell "extra not installed" from a failed export.
_BACKEND_MODULES = {Backend.ONNX: ("onnxruntime", "optimum.onnxruntime"),
                    Backend.OPENVINO: ("openvino", "optimum.intel")}


class BackendUnavailableError(ModelNotFoundError):
    """The libraries of a backend are not installed (the message says which extra to install)."""


def _int8_preset() -> str:
    """Optimum's dynamic-quantisation preset for this CPU family: ``avx2`` on every x86-64 machine (avx512
    machines run it too, so nodes of one cluster build the same graph), ``arm64`` on ARM."""
    return "arm64" if platform.machine().lower() in ("arm64", "aarch64") else "avx2"


def int8_scheme() -> str:
    """``avx2-attn`` (or ``arm64-attn``): the int8 scheme of :func:`int8_config`, part of the variant's name,
    revision and file, so an export made with another scheme (the whole-graph preset, which fails parity) is
    never reused."""
    return f"{_int8_preset()}-attn"


def int8_config(onnx_model: str | Path) -> Any:
    """The dynamic int8 ``optimum`` ``QuantizationConfig`` for the float32 graph ``onnx_model``: the CPU preset
    (per-channel weights, full range) applied to the attention projections only (:func:`attention_projections`).

    Dynamic quantisation gives each activation one scale per tensor, at run time. The feed-forward MatMuls
    (reading LayerNorm outputs with outlier channels, or GELU outputs) and the activation x activation
    attention MatMuls lose too much that way: the whole-graph ``avx2`` preset measured min cosine 0.980
    (MiniLM) and 0.742 (mpnet) against fp32 torch on 1,739 real sentences, and neither ``reduce_range`` nor
    MatMul-only reached 0.99; with the projections alone both pass (min 0.9976 and 0.9935, ``bench/parity.py``).

    Raises:
        ModelNotFoundError: the graph has no attention projection (nothing would be quantised as meant).
    """
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    nodes = attention_projections(onnx_model)
    if not nodes:  # an empty list means "every node" to the quantiser
        raise ModelNotFoundError(f"{onnx_model} has no hidden x hidden MatMul to quantise")
    return getattr(AutoQuantizationConfig, _int8_preset())(is_static=False, per_channel=True,
                                                            operators_to_quantize=["MatMul"], nodes_to_quantize=nodes)


def attention_projections(onnx_model: str | Path) -> list[str]:
    """Names of the MatMul nodes of ``onnx_model`` whose weight is a square initializer (hidden x hidden: the
    query, key, value and attention-output projections of a BERT/MPNet encoder; the feed-forward weights are
    hidden x 4*hidden and the attention score MatMuls have no weight)."""
    import onnx

    graph = onnx.load(str(onnx_model), load_external_data=False).graph
    square = {t.name for t in graph.initializer if len(t.dims) == 2 and t.dims[0] == t.dims[1]}
    return [n.name for n in graph.node if n.op_type == "MatMul" and len(n.input) > 1 and n.input[1] in square]


def _int8_suffix() -> str:
    """The file suffix, named as sentence-transformers names its presets' files (``<weights dtype>_<preset>``)."""
    preset = _int8_preset()
    return f"{'qint8' if preset == 'arm64' else 'quint8'}_{int8_scheme().replace('-', '_')}"


def variant_name(backend: Backend, quantize: Quantize) -> str:
    """``onnx``, ``onnx-int8-avx2-attn``, ``onnx-o4`` or ``openvino``: the suffix of the folder and revision."""
    name = backend.value
    if quantize is Quantize.INT8:
        name += f"-int8-{int8_scheme()}"
    elif quantize is Quantize.O4:
        name += "-o4"
    return name


def file_name(backend: Backend, quantize: Quantize) -> str:
    """The backend file sentence-transformers writes for a variant (``model_kwargs={"file_name": ...}``)."""
    if backend is Backend.OPENVINO:
        return "openvino/openvino_model.xml"
    if quantize is Quantize.INT8:
        return f"onnx/model_{_int8_suffix()}.onnx"
    if quantize is Quantize.O4:
        return "onnx/model_O4.onnx"
    return "onnx/model.onnx"


def export_dir(base: ModelSpec, backend: Backend, quantize: Quantize) -> Path:
    """Where the variant of ``base`` lives (a sibling of the assembled models)."""
    return model_cache_dir() / f"{slug(base.model_id)}--{base.revision}-{variant_name(backend, quantize)}"


def available(backend: Backend) -> bool:
    """Whether the libraries of ``backend`` are importable here (torch always is)."""
    import importlib.util

    modules = _BACKEND_MODULES.get(backend, ())
    try:
        return all(importlib.util.find_spec(m) is not None for m in modules)
    except ModuleNotFoundError:  # a parent package (optimum) is missing
        return False


def ensure_export(base: ModelSpec, backend: Backend, quantize: Quantize) -> ModelSpec:
    """The exported variant of ``base``, built on first use (once per machine; later calls read its marker).

    Args:
        base: the packaged torch model (:func:`aptray.embed.registry.resolve` with the torch backend).
        backend: onnx or openvino.
        quantize: none, int8 (onnx) or o4 (onnx, needs CUDA to build).

    Raises:
        BackendUnavailableError: the backend's libraries are not installed.
        ModelNotFoundError: a marker names files that are gone or changed size (delete the folder to rebuild).
    """
    target = export_dir(base, backend, quantize)
    spec = _read_marker(base, target)
    if spec is not None:
        return spec
    if not available(backend):
        raise BackendUnavailableError(f"embed.backend {backend.value} needs its libraries: {EXTRA_HINT}")
    with _lock(target):
        spec = _read_marker(base, target)  # another process built it while this one waited
        if spec is None:
            _build(base, backend, quantize, target)
            spec = _read_marker(base, target)
    if spec is None:
        raise ModelNotFoundError(f"export of {base.model_id} to {variant_name(backend, quantize)} left no marker")
    return spec


def _read_marker(base: ModelSpec, target: Path) -> ModelSpec | None:
    marker = target / MARKER
    if not marker.is_file():
        return None
    info = json.loads(marker.read_text())
    for rel, meta in info["files"].items():
        f = target / rel
        if not f.is_file() or f.stat().st_size != meta["bytes"]:
            raise ModelNotFoundError(f"{f} is missing or changed since it was exported; delete {target} to rebuild")
    return replace(base, path=str(target), revision=info["revision"], backend=Backend(info["backend"]),
                   quantize=Quantize(info["quantize"]), file_name=info["file_name"], export_sha256=info["sha256"],
                   base_path=base.path)


@contextlib.contextmanager
def _lock(target: Path) -> Iterator[None]:
    """An exclusive lock on ``<target>.lock`` (POSIX ``flock``), held while a variant is built."""
    import fcntl

    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{target.name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _build(base: ModelSpec, backend: Backend, quantize: Quantize, target: Path) -> None:
    """Export through sentence-transformers into a temporary sibling folder, then rename it to ``target``."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer

    start = time.perf_counter()
    log.info("exporting %s to %s (once) into %s", base.model_id, variant_name(backend, quantize), target)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as tmp:
        work = Path(tmp) / "model"
        _stage(Path(base.path), work)
        kwargs: dict[str, Any] = {"export": True}
        if quantize is Quantize.O4:
            kwargs["provider"] = "CUDAExecutionProvider"  # O4's fp16 fusions are built for (and on) the GPU
        model = SentenceTransformer(str(work), backend=backend.value, device="cpu", local_files_only=True,
                                    model_kwargs=kwargs)
        model.save_pretrained(str(work))
        if quantize is Quantize.INT8:
            from sentence_transformers import export_dynamic_quantized_onnx_model

            export_dynamic_quantized_onnx_model(model, int8_config(work / file_name(backend, Quantize.NONE)),
                                                str(work), file_suffix=_int8_suffix())
        elif quantize is Quantize.O4:
            from sentence_transformers import export_optimized_onnx_model

            export_optimized_onnx_model(model, "O4", str(work))
        wanted = file_name(backend, quantize)
        if not (work / wanted).is_file():
            raise ModelNotFoundError(f"sentence-transformers wrote no {wanted} for {base.model_id}")
        folder = work / Path(wanted).parts[0]
        keep = {wanted, str(Path(wanted).with_suffix(".bin"))}
        for f in list(folder.rglob("*")):  # the float32 graph an int8/O4 one was derived from
            if f.is_file() and f.relative_to(work).as_posix() not in keep and f.suffix in (".onnx", ".xml", ".bin"):
                f.unlink()
        for name in _WEIGHTS:  # the torch weights were links for the exporter; the variant does not need them
            (work / name).unlink(missing_ok=True)
        files = {f.relative_to(work).as_posix(): {"bytes": f.stat().st_size, "sha256": file_sha256(f)}
                 for f in sorted(folder.rglob("*")) if f.is_file()}
        digest = hashlib.sha256("".join(f"{k}:{v['sha256']}\n" for k, v in files.items()).encode()).hexdigest()
        info = {"model_id": base.model_id, "base_revision": base.revision, "base_path": base.path,
                "revision": f"{base.revision}-{variant_name(backend, quantize)}", "backend": backend.value,
                "quantize": quantize.value, "file_name": wanted, "files": files, "sha256": digest,
                "libraries": _versions(), "seconds": round(time.perf_counter() - start, 1)}
        (work / MARKER).write_text(json.dumps(info, indent=2) + "\n")
        if target.exists():  # a folder without a marker: a build that died before its rename
            shutil.rmtree(target)
        os.replace(work, target)
    log.info("exported %s in %.1f s", target.name, time.perf_counter() - start)


def _stage(src: Path, dst: Path) -> None:
    """A working copy of the packaged model: small files copied, the weights linked (the exporter reads them)."""
    def copy(s: str, d: str) -> Any:
        return os.symlink(s, d) if Path(s).name in _WEIGHTS else shutil.copy2(s, d)

    shutil.copytree(src, dst, copy_function=copy, ignore=shutil.ignore_patterns("onnx", "openvino", ".aptray-*"))


def _versions() -> dict[str, str]:
    from importlib import metadata

    out: dict[str, str] = {}
    for lib in ("sentence-transformers", "transformers", "torch", "optimum", "optimum-onnx", "onnxruntime",
                "onnxruntime-gpu", "optimum-intel", "openvino"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[lib] = metadata.version(lib)
    return out
