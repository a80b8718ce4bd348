"""``unique_rows``: np.unique(axis=0)'s first indices and counts, in its order, without its field-by-field sort
(the experiment called it once per fit: 9.9 s on bovia/cadets All's 23,225 mpnet rows)."""

from __future__ import annotations

import numpy as np
import pytest

from aptray.detectors.base import unique_rows


def _numpy(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    _, first, counts = np.unique(a, axis=0, return_index=True, return_counts=True)
    return first, counts


@pytest.mark.parametrize("kind", ["embeddings", "attributes", "ints", "one column"])
def test_same_rows_order_and_counts_as_numpy(kind: str) -> None:
    rng = np.random.default_rng(7)
    a = {"embeddings": rng.standard_normal((40, 16)).astype(np.float32)[rng.integers(0, 40, 500)],
         "attributes": rng.integers(0, 2, (800, 6)).astype(np.float64),  # ties decided by the later columns
         "ints": rng.integers(-3, 3, (300, 3)),
         "one column": rng.integers(0, 5, (50, 1)).astype(np.float32)}[kind]
    first, counts = unique_rows(a)
    expected_first, expected_counts = _numpy(a)
    assert np.array_equal(first, expected_first) and np.array_equal(counts, expected_counts)


def test_negative_zero_is_zero_and_empty_input() -> None:
    a = np.array([[0.0, 1.0], [-0.0, 1.0], [0.0, -1.0]])
    first, counts = unique_rows(a)
    assert first.tolist() == [2, 0] and counts.tolist() == [1, 2]  # as np.unique's float compare has it
    assert [x.tolist() for x in unique_rows(np.zeros((0, 4)))] == [[], []]
    with pytest.raises(ValueError, match="2-d"):
        unique_rows(np.zeros(3))
