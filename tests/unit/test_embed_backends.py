"""Encoder backends: config choices, variant identity (revision, cache key, pool key), the export marker, and
the parity rule that keeps a detector from scoring another backend's embeddings."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import ValidationError

from aptray.config import Backend, EmbedConfig, Quantize, load_config
from aptray.embed import export
from aptray.embed.cache import EmbeddingCache
from aptray.embed.encoder import load_kwargs
from aptray.embed.parity import MIN_COSINE, PARITY_FILE, ParityError, check_variant, embedder_record, proven
from aptray.embed.pool import pool_key
from aptray.embed.registry import ModelNotFoundError, ModelSpec, recorded_variant

BASE = ModelSpec(model_id="sentence-transformers/all-MiniLM-L6-v2", path="/models/minilm", dim=384,
                 revision="53aa51172d142c89", base_path="/models/minilm")


def _variant(tmp_path: Path, backend: Backend = Backend.ONNX, quantize: Quantize = Quantize.NONE) -> ModelSpec:
    """A variant folder with a marker, as :func:`export.ensure_export` leaves it (without exporting)."""
    target = export.export_dir(BASE, backend, quantize)
    rel = export.file_name(backend, quantize)
    (target / rel).parent.mkdir(parents=True)
    (target / rel).write_bytes(b"graph")
    info = {"revision": f"{BASE.revision}-{export.variant_name(backend, quantize)}", "backend": backend.value,
            "quantize": quantize.value, "file_name": rel, "sha256": "ab" * 32,
            "files": {rel: {"bytes": 5, "sha256": "cd" * 32}}}
    (target / export.MARKER).write_text(json.dumps(info))
    spec = export.ensure_export(BASE, backend, quantize)
    return spec


@pytest.fixture(autouse=True)
def _model_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APTRAY_MODEL_CACHE", str(tmp_path / "models"))


def test_config_defaults_and_supported_pairs() -> None:
    cfg = EmbedConfig()
    assert (cfg.backend, cfg.quantize) == (Backend.TORCH, Quantize.NONE)
    loaded = load_config(None, {"embed.backend": "onnx", "embed.quantize": "int8"})
    assert (loaded.embed.backend, loaded.embed.quantize) == (Backend.ONNX, Quantize.INT8)
    for backend, quantize in (("openvino", "int8"), ("torch", "int8"), ("torch", "o4")):
        with pytest.raises(ValidationError, match="not supported"):
            EmbedConfig(backend=backend, quantize=quantize)
    with pytest.raises(ValidationError):
        EmbedConfig(backend="tensorrt")


def test_variant_names_files_and_folder() -> None:
    assert export.variant_name(Backend.ONNX, Quantize.NONE) == "onnx"
    assert export.variant_name(Backend.ONNX, Quantize.INT8) == f"onnx-int8-{export.int8_config()}"
    assert export.file_name(Backend.OPENVINO, Quantize.NONE) == "openvino/openvino_model.xml"
    assert export.file_name(Backend.ONNX, Quantize.O4) == "onnx/model_O4.onnx"
    folder = export.export_dir(BASE, Backend.ONNX, Quantize.INT8)
    assert BASE.revision in folder.name and folder.name.endswith(export.variant_name(Backend.ONNX, Quantize.INT8))


def test_marker_gives_variant_spec_and_detects_changed_files(tmp_path: Path) -> None:
    spec = _variant(tmp_path, Backend.ONNX, Quantize.INT8)
    assert spec.backend is Backend.ONNX and spec.quantize is Quantize.INT8
    assert spec.revision == f"{BASE.revision}-onnx-int8-{export.int8_config()}"
    assert spec.path != BASE.path and spec.base_path == BASE.path and spec.export_sha256 == "ab" * 32
    assert spec.dim == BASE.dim and spec.model_id == BASE.model_id
    (Path(spec.path) / spec.file_name).write_bytes(b"another graph")  # type: ignore[operator]
    with pytest.raises(ModelNotFoundError, match="changed since it was exported"):
        export.ensure_export(BASE, Backend.ONNX, Quantize.INT8)


def test_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export, "available", lambda backend: False)
    with pytest.raises(export.BackendUnavailableError, match=r"aptray\[embed-fast\]"):
        export.ensure_export(BASE, Backend.OPENVINO, Quantize.NONE)


def test_variants_never_share_cache_folder_or_warm_actors(tmp_path: Path) -> None:
    spec = _variant(tmp_path)
    assert EmbeddingCache(str(tmp_path / "c"), spec).uri != EmbeddingCache(str(tmp_path / "c"), BASE).uri
    assert pool_key(spec, EmbedConfig()) != pool_key(BASE, EmbedConfig())


def test_load_kwargs_name_the_exported_file() -> None:
    assert load_kwargs(BASE, "cpu") == {}
    spec = replace(BASE, backend=Backend.ONNX, quantize=Quantize.INT8, file_name="onnx/model_quint8_avx2.onnx")
    kw = load_kwargs(spec, "cpu")
    assert kw["backend"] == "onnx"
    assert kw["model_kwargs"] == {"file_name": "onnx/model_quint8_avx2.onnx", "export": False,
                                  "provider": "CPUExecutionProvider"}
    assert load_kwargs(spec, "cuda")["model_kwargs"]["provider"] == "CUDAExecutionProvider"


def _prove(spec: ModelSpec, min_cosine: float, sha: str | None = None) -> None:
    doc = {"min_cosine": min_cosine, "mean_cosine": 0.999, "export_sha256": sha or spec.export_sha256}
    (Path(spec.path) / PARITY_FILE).write_text(json.dumps(doc))


def test_parity_rule(tmp_path: Path) -> None:
    spec = _variant(tmp_path)
    torch_record = embedder_record(BASE)
    assert torch_record["backend"] == "torch" and recorded_variant(torch_record) == (Backend.TORCH, Quantize.NONE)
    assert recorded_variant({"model_id": BASE.model_id}) == (Backend.TORCH, Quantize.NONE)  # older records
    check_variant(torch_record, BASE)  # same variant: nothing to prove
    with pytest.raises(ParityError, match="not proven for onnx/none"):
        check_variant(torch_record, spec)
    _prove(spec, MIN_COSINE - 0.005)
    assert proven(spec) is None
    with pytest.raises(ParityError):
        check_variant(torch_record, spec)
    _prove(spec, 0.995, sha="ee" * 32)  # measured on another export
    assert proven(spec) is None
    _prove(spec, 0.995)
    assert proven(spec) is not None
    check_variant(torch_record, spec)
    # a detector trained on the variant records its proof; torch embeddings are then accepted, and not without it
    onnx_record = embedder_record(spec)
    assert onnx_record["backend"] == "onnx" and onnx_record["parity"]["min_cosine"] == 0.995
    check_variant(onnx_record, BASE)
    with pytest.raises(ParityError, match="not proven for onnx/none"):
        check_variant({**onnx_record, "parity": None}, BASE)
