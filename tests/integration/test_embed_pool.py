"""The encoder pool on real local Ray: warm actors serve later jobs, exit when idle, and are replaced when dead."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from aptray.config import AptrayConfig
from aptray.templating.base import sentence_hash
from tests.integration.test_embed_job import matrix, read_embeddings, write_sentences


def _config(**embed: float) -> AptrayConfig:
    return AptrayConfig.model_validate({"embed": {"model": "minilm", "actors": 1, "batch_size": 8,
                                                  "torch_threads": 1, **embed}})


def _pairs(sentences: list[str]) -> pa.Table:
    return pa.table({"sentence_hash": sentence_hash(sentences), "sentence": sentences})


def _actor(cfg: AptrayConfig) -> object:
    import ray

    from aptray.embed.pool import NAMESPACE, actor_name, pool_key
    from aptray.embed.registry import resolve

    return ray.get_actor(actor_name(pool_key(resolve("minilm"), cfg.embed), 0), namespace=NAMESPACE)


def test_warm_actor_serves_the_next_job(ray_cluster: None, tmp_path: Path) -> None:
    import ray

    from aptray.embed.job import run_embed
    from aptray.embed.pool import stop_warm
    from aptray.embed.registry import resolve

    cfg = _config(keep_warm_s=120)
    first = [f"process p{i} read /etc/file-{i}" for i in range(12)] * 3
    second = [f"process q{i} wrote /tmp/other-{i}" for i in range(7)] * 2
    a = run_embed(str(write_sentences(tmp_path / "a", first)), str(tmp_path / "out-a"), cfg)
    actor = _actor(cfg)
    b = run_embed(str(write_sentences(tmp_path / "b", second)), str(tmp_path / "out-b"), cfg)
    try:
        assert (a["encoded"], b["encoded"]) == (12, 7)
        # one actor, alive across both jobs, put exactly both jobs' distinct sentences through its model
        assert _actor(cfg)._actor_id == actor._actor_id  # type: ignore[attr-defined]
        assert ray.get(actor.encoded.remote()) == 19  # type: ignore[attr-defined]
        assert read_embeddings(str(tmp_path / "out-b" / "embeddings")).num_rows == len(second)
    finally:
        assert stop_warm(resolve("minilm"), cfg.embed) == 1
    with pytest.raises(ValueError):
        _actor(cfg)


def test_warm_actor_exits_after_its_idle_timeout(ray_cluster: None) -> None:
    from aptray.embed.pool import EncoderPool
    from aptray.embed.registry import resolve

    cfg = _config(keep_warm_s=1.0)
    pool = EncoderPool(resolve("minilm"), cfg.embed)
    out = pool.encode(_pairs(["process p1 read /etc/passwd", "process p2 wrote /tmp/x"]))
    pool.close()
    assert out.num_rows == 2
    _actor(cfg)  # still there right after the job
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            _actor(cfg)
        except ValueError:
            return
        time.sleep(0.5)
    pytest.fail("the warm encoder actor was still alive 60 s after its 1 s idle timeout")


def test_dead_actor_is_replaced_and_the_chunk_encoded_again(ray_cluster: None) -> None:
    import ray

    from aptray.embed.pool import EncoderPool, stop_warm
    from aptray.embed.registry import resolve

    cfg = _config(keep_warm_s=120)  # detached actors are not restarted by Ray: the pool's own retry runs
    sentences = [f"process p{i} connected to 10.0.0.{i}:443" for i in range(20)]
    pool = EncoderPool(resolve("minilm"), cfg.embed)
    try:
        before = pool.encode(_pairs(sentences)).sort_by("sentence_hash")
        ray.kill(pool.actors[0], no_restart=True)
        after = pool.encode(_pairs(sentences)).sort_by("sentence_hash")
        assert after.column("sentence_hash").to_pylist() == before.column("sentence_hash").to_pylist()
        np.testing.assert_allclose(matrix(after), matrix(before), atol=1e-5)
        assert ray.get(pool.actors[0].encoded.remote()) == 20  # the replacement did the second encode
    finally:
        pool.close()
        stop_warm(resolve("minilm"), cfg.embed)


def test_idle_warm_actors_of_other_settings_make_room_only_when_needed(ray_cluster: None) -> None:
    import ray

    from aptray.embed.pool import EncoderPool, stop_all_warm, stop_warm
    from aptray.embed.registry import resolve

    spec = resolve("minilm")
    big = _config(keep_warm_s=300, cpus_per_actor=1.5)  # holds 1.5 of the test cluster's 2 CPUs while idle
    pairs = _pairs(["process p1 read /etc/passwd", "process p2 wrote /tmp/x"])
    try:
        first = EncoderPool(spec, big.embed)
        assert first.encode(pairs).num_rows == 2
        first.close()
        time.sleep(1.5)  # idle for longer than the eviction threshold
        small = _config(keep_warm_s=300, cpus_per_actor=0.25).embed
        EncoderPool(spec, small).close()  # fits beside it
        _actor(big)  # not in the way, so still warm
        assert stop_warm(spec, small) == 1
        needy = EncoderPool(spec, _config(cpus_per_actor=1.0).embed)  # cannot be placed beside the 1.5 CPUs
        started = time.monotonic()
        ref = needy.actors[0].encoded.remote()
        assert ray.get(ref, timeout=60) == 0  # placed and loaded: without the eviction it waits 300 s
        assert needy.encode(pairs).num_rows == 2
        needy.close()
        assert time.monotonic() - started < 60
        with pytest.raises(ValueError):
            _actor(big)
    finally:
        stop_all_warm()
