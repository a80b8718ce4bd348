"""Encoder backends: config choices, variant identity (revision, cache key, pool key), the export marker, and
the parity rule that keeps a detector from scoring another backend's embeddings."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
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
    assert export.variant_name(Backend.ONNX, Quantize.INT8) == f"onnx-int8-{export.int8_scheme()}"
    assert export.int8_scheme().endswith("-attn")  # never the whole-graph preset's name (it fails parity)
    int8 = export.file_name(Backend.ONNX, Quantize.INT8)
    assert int8.startswith("onnx/model_q") and int8.endswith(f"_{export.int8_scheme().replace('-', '_')}.onnx")
    assert export.file_name(Backend.OPENVINO, Quantize.NONE) == "openvino/openvino_model.xml"
    assert export.file_name(Backend.ONNX, Quantize.O4) == "onnx/model_O4.onnx"
    folder = export.export_dir(BASE, Backend.ONNX, Quantize.INT8)
    assert BASE.revision in folder.name and folder.name.endswith(export.variant_name(Backend.ONNX, Quantize.INT8))


def test_marker_gives_variant_spec_and_detects_changed_files(tmp_path: Path) -> None:
    spec = _variant(tmp_path, Backend.ONNX, Quantize.INT8)
    assert spec.backend is Backend.ONNX and spec.quantize is Quantize.INT8
    assert spec.revision == f"{BASE.revision}-onnx-int8-{export.int8_scheme()}"
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
    spec = replace(BASE, backend=Backend.ONNX, quantize=Quantize.INT8, file_name="onnx/model_quint8_avx2_attn.onnx")
    kw = load_kwargs(spec, "cpu")
    assert kw["backend"] == "onnx"
    assert kw["model_kwargs"] == {"file_name": "onnx/model_quint8_avx2_attn.onnx", "export": False,
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


def _graph(tmp_path: Path, square: bool = True) -> Path:
    """A float32 graph shaped like one encoder layer: a hidden x hidden projection (when ``square``), a
    feed-forward up-projection and an activation x activation MatMul."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    def weight(name: str, rows: int, cols: int) -> Any:
        return numpy_helper.from_array(np.ones((rows, cols), dtype=np.float32), name)

    nodes = [helper.make_node("MatMul", ["x", "w_up"], ["up"], name="/layer.0/intermediate/dense/MatMul"),
             helper.make_node("MatMul", ["x", "xt"], ["scores"], name="/layer.0/attention/self/MatMul"),
             helper.make_node("Transpose", ["x"], ["xt"], name="t")]
    inits = [weight("w_up", 4, 16)]
    if square:
        nodes.append(helper.make_node("MatMul", ["x", "w_q"], ["q"], name="/layer.0/attention/self/query/MatMul"))
        inits.append(weight("w_q", 4, 4))
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("up", "scores", "q")[:2 + square]]
    graph = helper.make_graph(nodes, "layer", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4])],
                              outputs, inits)
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_int8_quantises_the_attention_projections_only(tmp_path: Path) -> None:
    graph = _graph(tmp_path)
    assert export.attention_projections(graph) == ["/layer.0/attention/self/query/MatMul"]
    pytest.importorskip("optimum.onnxruntime")
    cfg = export.int8_config(graph)
    assert cfg.nodes_to_quantize == ["/layer.0/attention/self/query/MatMul"] and cfg.operators_to_quantize == ["MatMul"]
    assert cfg.per_channel and not cfg.is_static
    (tmp_path / "other").mkdir()
    with pytest.raises(ModelNotFoundError, match="no hidden x hidden MatMul"):  # [] would mean "every node"
        export.int8_config(_graph(tmp_path / "other", square=False))
