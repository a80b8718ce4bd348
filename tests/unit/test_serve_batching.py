"""The replica's continuous micro-batcher: coalescing, order, limits and errors (real threads, real loop)."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from aptray.serve.batching import MicroBatcher


class SlowModel:
    """Scores each item by its length; records every batch it was called with; optionally blocks."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[list[str]] = []
        self.delay = delay
        self.release = threading.Event()
        self.release.set()

    def __call__(self, items: list[str]) -> tuple[np.ndarray, list[str]]:
        self.release.wait(10)
        time.sleep(self.delay)
        self.calls.append(list(items))
        if any(i == "boom" for i in items):
            raise RuntimeError("model failed")
        return np.array([len(i) for i in items], dtype=float), [f"t{i}" for i in items]


def test_requests_arriving_while_the_model_is_busy_share_the_next_batch() -> None:
    model = SlowModel()
    pool = ThreadPoolExecutor(1)

    async def main() -> list[tuple[np.ndarray, list[str]]]:
        batcher = MicroBatcher(model, max_batch_size=64, executor=pool)
        model.release.clear()  # the first batch blocks in the model
        first = asyncio.ensure_future(batcher.submit(["a"]))
        await asyncio.sleep(0.05)
        rest = [asyncio.ensure_future(batcher.submit([f"x{i}", "yy" * i])) for i in range(10)]
        await asyncio.sleep(0.05)
        model.release.set()
        out = [await first] + [await r for r in rest]
        assert batcher.stats.batches == 2 and batcher.stats.items == 21 and batcher.stats.largest == 20
        assert 0.09 <= batcher.stats.busy_s < 5  # the first pass was held in the model for 0.1 s
        return out

    out = asyncio.run(main())
    assert model.calls[0] == ["a"]
    assert len(model.calls) == 2 and len(model.calls[1]) == 20  # ten requests, one pass
    # every caller gets its own rows, in order
    assert out[0][0].tolist() == [1.0] and out[0][1] == ["ta"]
    for i, (scores, tiers) in enumerate(out[1:]):
        assert scores.tolist() == [len(f"x{i}"), 2.0 * i]
        assert tiers == [f"tx{i}", f"t{'yy' * i}"]


def test_a_lone_request_does_not_wait_and_batches_respect_the_limit() -> None:
    model = SlowModel()
    pool = ThreadPoolExecutor(1)

    async def main() -> float:
        batcher = MicroBatcher(model, max_batch_size=5, executor=pool, max_wait_s=0.0)
        t0 = time.perf_counter()
        await batcher.submit(["solo"])
        lone = time.perf_counter() - t0
        model.release.clear()
        blocker = asyncio.ensure_future(batcher.submit(["b"]))
        await asyncio.sleep(0.02)
        parts = [asyncio.ensure_future(batcher.submit(["p"] * 3)) for _ in range(4)]
        await asyncio.sleep(0.02)
        model.release.set()
        await blocker
        for p in parts:
            assert (await p)[0].tolist() == [1.0] * 3
        with pytest.raises(ValueError, match="limit is 5"):
            await batcher.submit(["z"] * 6)
        return lone

    lone = asyncio.run(main())
    assert lone < 0.5
    assert all(len(c) <= 5 for c in model.calls)
    assert [len(c) for c in model.calls[2:]] == [3, 3, 3, 3]  # 3+3 > 5: one request per pass


def test_max_wait_gathers_requests_when_the_model_was_idle() -> None:
    model = SlowModel()
    pool = ThreadPoolExecutor(1)

    async def main() -> None:
        batcher = MicroBatcher(model, max_batch_size=64, executor=pool, max_wait_s=0.2)
        tasks = []
        for i in range(5):
            tasks.append(asyncio.ensure_future(batcher.submit([str(i)])))
            await asyncio.sleep(0.01)
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert model.calls == [["0", "1", "2", "3", "4"]]


def test_a_failing_batch_fails_its_callers_and_the_worker_goes_on() -> None:
    model = SlowModel()
    pool = ThreadPoolExecutor(1)

    async def main() -> None:
        batcher = MicroBatcher(model, max_batch_size=64, executor=pool)
        model.release.clear()
        blocker = asyncio.ensure_future(batcher.submit(["ok"]))
        await asyncio.sleep(0.02)
        bad = asyncio.ensure_future(batcher.submit(["boom"]))
        same_batch = asyncio.ensure_future(batcher.submit(["fine"]))
        await asyncio.sleep(0.02)
        model.release.set()
        assert (await blocker)[1] == ["tok"]
        with pytest.raises(RuntimeError, match="model failed"):
            await bad
        with pytest.raises(RuntimeError, match="model failed"):
            await same_batch
        assert (await batcher.submit(["later"]))[1] == ["tlater"]

    asyncio.run(main())


def _closed_loop(clients: int, rounds: int, refill: float) -> tuple[list[int], float]:
    """``clients`` callers that each send one item, wait for its answer and send again; the batch sizes the model
    saw (a 20 ms model) and the seconds it took."""
    model = SlowModel(delay=0.02)
    pool = ThreadPoolExecutor(1)

    async def main() -> None:
        batcher = MicroBatcher(model, max_batch_size=64, executor=pool, refill=refill)

        async def client(c: int) -> None:
            if c:
                await asyncio.sleep(0.005)  # the others arrive while the first client's call runs
            for r in range(rounds):
                scores, _ = await batcher.submit([f"{c}-{r}"])
                assert scores.tolist() == [len(f"{c}-{r}")]

        await asyncio.gather(*(client(c) for c in range(clients)))

    start = time.perf_counter()
    asyncio.run(main())
    return [len(c) for c in model.calls], time.perf_counter() - start


def test_refill_keeps_waiting_clients_in_one_batch_instead_of_two_halves() -> None:
    halves, _ = _closed_loop(clients=8, rounds=6, refill=0.0)
    whole, _ = _closed_loop(clients=8, rounds=6, refill=0.5)
    assert sum(halves) == sum(whole) == 48
    assert halves[:3] == [1, 7, 1]  # without refill the clients take turns in two groups
    assert whole == [1, 8, 8, 8, 8, 8, 7]  # with it every call holds all eight (the first client ends first)
    lone, seconds = _closed_loop(clients=1, rounds=10, refill=1.0)
    assert lone == [1] * 10 and seconds < 10 * 0.02 * 1.5  # a lone client never waits: nothing was queued
