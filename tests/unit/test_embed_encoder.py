"""SentenceEncoder and the Embedder UDF: equal to a plain sentence-transformers encode, each sentence once."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pytest

from aptray.embed.encoder import SentenceEncoder, torch_dtype
from aptray.embed.registry import ModelSpec, resolve

SENTENCES = [
    "process sshd executed /usr/sbin/sshd as user root",
    "process bash read file /etc/passwd",
    "process curl connected to <ip>:<port>",
    "process bash read file /etc/passwd",
    "process cron wrote file /var/log/cron.log",
    "process sshd executed /usr/sbin/sshd as user root",
]


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    return resolve("minilm")


@pytest.fixture(scope="module")
def reference(spec: ModelSpec) -> Iterator[np.ndarray]:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(spec.path, device="cpu", local_files_only=True)
    yield np.asarray(model.encode(SENTENCES, batch_size=32, show_progress_bar=False))


@pytest.fixture(scope="module")
def encoder(spec: ModelSpec) -> SentenceEncoder:
    return SentenceEncoder(spec, device="cpu", batch_size=4, lru_size=3)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_encode_matches_plain_sentence_transformers(encoder: SentenceEncoder, reference: np.ndarray) -> None:
    out = encoder.encode(SENTENCES)
    assert out.dtype == np.float32 and out.shape == (len(SENTENCES), 384)
    assert _cosine(out, reference).min() >= 0.999
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-4)
    assert encoder.dim == 384 and encoder.model_id == "sentence-transformers/all-MiniLM-L6-v2"


def test_each_distinct_sentence_is_encoded_once(spec: ModelSpec) -> None:
    enc = SentenceEncoder(spec, batch_size=8, lru_size=100)
    first = enc.encode(SENTENCES)
    assert enc.encoded == len(set(SENTENCES))
    np.testing.assert_array_equal(first[1], first[3])
    again = enc.encode(list(reversed(SENTENCES)))
    assert enc.encoded == len(set(SENTENCES))  # all from the LRU
    np.testing.assert_array_equal(again[::-1], first)


def test_lru_evicts_beyond_its_size(encoder: SentenceEncoder) -> None:
    encoder.encode(SENTENCES)
    assert len(encoder._lru) <= 3
    before = encoder.encoded
    encoder.encode(["a sentence never seen before"])
    assert encoder.encoded == before + 1


def test_empty_input(encoder: SentenceEncoder) -> None:
    assert encoder.encode([]).shape == (0, 384)


def test_dtype_choice() -> None:
    import torch

    assert torch_dtype("auto", "cpu") == torch.float32
    assert torch_dtype("auto", "cuda") == torch.bfloat16
    with pytest.raises(ValueError, match="dtype"):
        torch_dtype("int8", "cpu")


def test_embedder_adds_fixed_size_float32_column(spec: ModelSpec, reference: np.ndarray) -> None:
    from aptray.config import EmbedConfig
    from aptray.embed.job import Embedder

    udf = Embedder(spec, EmbedConfig(torch_threads=1))
    batch = pa.table({"sentence_hash": [str(i) for i in range(len(SENTENCES))], "sentence": SENTENCES})
    out = udf(batch)
    assert out.column_names == ["sentence_hash", "sentence", "embedding"]
    assert out.schema.field("embedding").type == pa.list_(pa.float32(), 384)
    got = np.stack(out.column("embedding").to_numpy(zero_copy_only=False))
    assert _cosine(got, reference).min() >= 0.999
    assert udf.encoder.encoded == len(set(SENTENCES))


@pytest.mark.gpu
@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs a CUDA device")
def test_cuda_bf16_matches_cpu(spec: ModelSpec, reference: np.ndarray) -> None:
    enc = SentenceEncoder(spec, device="cuda", dtype="auto")
    out = enc.encode(SENTENCES)
    assert out.dtype == np.float32
    assert _cosine(out, reference).min() >= 0.99


def test_composed_encoder_lays_the_clauses_plain_vectors_side_by_side(encoder: SentenceEncoder) -> None:
    from aptray.config import Compose
    from aptray.embed.compose import SLOTS

    composed = SentenceEncoder(resolve("minilm", compose=Compose.ASPECTS), device="cpu", batch_size=4)
    sentence = "The process performed read and write. It ran /bin/bash. It was started by /usr/sbin/sshd."
    (vector,) = composed.encode([sentence])
    dim = encoder.dim
    assert vector.shape == (len(SLOTS) * dim,)
    clauses = ["The process performed read and write.", "The process ran /bin/bash.",
               "The process was started by /usr/sbin/sshd."]
    plain = encoder.encode(clauses)
    for slot, expected in enumerate(plain):
        assert np.allclose(vector[slot * dim:(slot + 1) * dim], expected, atol=1e-5)
    assert not vector[3 * dim:].any()  # no network clause, not another kind of sentence
