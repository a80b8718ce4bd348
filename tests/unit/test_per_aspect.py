"""Per-aspect fusion: one split of a folder's processes shared by its aspects, and the fusion of their scores."""

from __future__ import annotations

import numpy as np

from aptray.evaluate.metrics import auc_roc
from aptray.evaluate.per_aspect import PER_ASPECT, Member, aligned_splits, per_aspect_runs


def _ids(n: int) -> list[str]:
    return [f"p{i:04d}" for i in range(n)]


def test_a_process_is_in_the_same_split_in_every_aspect() -> None:
    ids = _ids(300)
    y = np.zeros(300, np.int8)
    y[[5, 50, 120, 200, 260, 299]] = 1
    exec_ids = ids[::2] + [ids[i] for i in (5, 299)]  # a subset, in another order
    universe = aligned_splits([(ids, y), (exec_ids, y[[ids.index(r) for r in exec_ids]])], seeds=3,
                              test_fraction=0.3, val_fraction=0.2)
    assert universe.record_ids == sorted(ids) and int(universe.y.sum()) == 6
    for seed, (whole, part) in enumerate(zip(universe.restrict(ids, y) or [], universe.restrict(
            exec_ids, y[[ids.index(r) for r in exec_ids]]) or [], strict=True)):
        role = {}
        for name, idx in (("train", whole.train), ("val", whole.val), ("test", whole.test)):
            role.update({ids[i]: name for i in idx})
        for name, idx in (("train", part.train), ("val", part.val), ("test", part.test)):
            assert all(role[exec_ids[i]] == name for i in idx), (seed, name)
        assert len(part.train) + len(part.val) + len(part.test) == len(exec_ids)
        assert not y[whole.train].any()  # malicious processes never train


def test_a_target_that_would_lose_its_test_attacks_keeps_its_own_split() -> None:
    ids = _ids(100)
    y = np.zeros(100, np.int8)
    y[[10, 20, 30, 40]] = 1
    universe = aligned_splits([(ids, y)], seeds=1, test_fraction=0.3, val_fraction=0.2)
    val_only = [ids[i] for i in universe.splits[0].val if y[i]]  # malicious processes all in validation
    assert val_only
    assert universe.restrict(val_only, np.ones(len(val_only), np.int8)) is None


def test_aspects_that_see_different_attacks_fuse_above_each() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    ids = _ids(n)
    y = np.zeros(n, np.int8)
    attacks = rng.choice(n, 40, replace=False)
    y[attacks] = 1
    first, second = attacks[:20], attacks[20:]  # each aspect sees half of the attacks
    universe = aligned_splits([(ids, y)], seeds=1, test_fraction=0.3, val_fraction=0.2)
    split = universe.splits[0]
    members = {}
    for aspect, seen, present in (("Exec", first, np.arange(n)),
                                  ("Parent", second, np.setdiff1d(np.arange(n), rng.choice(n, 300, replace=False)))):
        present = np.union1d(present, attacks)  # every attack has both views; some benign processes lack Parent
        local_ids = [ids[i] for i in present]
        at = universe.rows_of(local_ids)
        s = rng.normal(size=len(present))
        s[np.isin(present, seen)] += 4.0
        (local,) = universe.restrict(local_ids, y[present]) or []
        members[aspect] = Member(at, [local], {("minilm", 0): {"ae": (s[local.val], s[local.test])}})
    runs, scores = per_aspect_runs("bovia/x", universe, members, fusion_size=3, top_k=10, percentile=99.0)
    (run,) = runs
    assert (run["aspect"], run["detector"], run["embedder"]) == (PER_ASPECT, "fusion", "minilm")
    assert set(run["members"]) == {"Exec:ae", "Parent:ae"}
    assert run["rows"]["test"] == len(split.test) and run["test"]["rows"] == len(split.test)
    fused = scores.to_pandas()
    test = fused[fused["split"] == "test"].sort_values("row")
    assert len(test) == len(split.test) and np.isfinite(test["score"]).all()  # processes without Parent scored too
    yt = universe.y[test["row"].to_numpy()]
    single = []
    for aspect in ("Exec", "Parent"):
        m = members[aspect]
        single.append(auc_roc(universe.y[m.at[m.splits[0].test]], m.candidates[("minilm", 0)]["ae"][1]))
    assert run["test"]["auc_roc"] == auc_roc(yt, test["score"].to_numpy()) > max(single) + 0.1
