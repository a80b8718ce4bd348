"""Distributed training of the torch detectors with Ray Train's TorchTrainer (DDP; gloo on CPU, NCCL on GPU).

Each worker reads its shard of the ``train`` and ``val`` Ray Datasets, runs the generic loop of
:mod:`aptray.train.loop`, all-reduces the validation loss (so early stopping is decided identically on every
worker), reports metrics every epoch and, from rank 0, a checkpoint holding the weights, the optimiser, the
best weights so far and the history. After a worker failure Ray Train restarts the group (FailureConfig)
and every worker resumes from the latest checkpoint.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch import nn

    from aptray.config import TrainConfig

log = logging.getLogger(__name__)

_STATE = "state.pt"


@dataclass
class DDPResult:
    """What a distributed fit returns: the best network, its history and run facts."""

    network: nn.Module
    history: dict[str, Any]
    seconds: float
    rows_per_worker_epoch: float
    checkpoint_path: str | None


def _maybe_fail(config: dict[str, Any], epoch: int, rank: int) -> None:
    """Test hook: kill this worker process once, at ``fail_at_epoch``, if ``fail_marker`` does not exist yet."""
    marker = config.get("fail_marker")
    hit = bool(marker) and epoch == config.get("fail_at_epoch") and rank == config.get("fail_rank", 0)
    if hit and marker and not os.path.exists(marker):
        with open(marker, "w") as fh:
            fh.write(f"killed worker rank {rank} at epoch {epoch}\n")
        os._exit(1)


def worker_loop(config: dict[str, Any]) -> None:
    """The per-worker training function run by TorchTrainer (see module docstring)."""
    import copy

    import ray.train
    import torch
    import torch.distributed as dist
    from ray.train import Checkpoint
    from ray.train.torch import get_device, prepare_model

    from aptray.models import build_model
    from aptray.train.loop import EarlyStopping, LossModule, train_epoch

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(config["seed"] + rank)
    net = build_model(config["model"], config["dim"], config["hidden"], **config["extra"])
    stopper = EarlyStopping(config["patience"])
    history: dict[str, list[float]] = {"train_loss": [], "val_loss": []}
    start, opt_state, best_state = 0, None, None
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            saved = torch.load(os.path.join(d, _STATE), weights_only=True)
        net.load_state_dict(saved["model"])
        opt_state, best_state = saved["optimizer"], saved["best"]
        start, history = saved["epoch"] + 1, saved["history"]
        stopper.best, stopper.bad_epochs = saved["best_loss"], saved["bad_epochs"]
        stopper.best_epoch = saved["best_epoch"]
        if rank == 0:
            log.info("resuming from checkpoint after epoch %d", saved["epoch"])
    step = prepare_model(LossModule(net))
    opt = torch.optim.Adam(step.parameters(), lr=config["lr"])
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    device = get_device()
    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val")
    bs = config["batch_size"]
    weighted = bool(config.get("weighted"))
    if weighted:  # distinct rows with their counts: the worker's shard is small, held as tensors
        from aptray.train.loop import sampled_batches

        # every worker holds all distinct rows and its own share of their counts (weight_<rank>): a random
        # split of the rows, as a row-level shard would be, whatever the distinct rows' order
        x_own, w_own = _shard_tensors(train_shard, device, f"weight_{rank}")
        x_val, w_val = _shard_tensors(val_shard, device, "weight")
        gen = torch.Generator().manual_seed(config["seed"] + rank)
    for epoch in range(start, config["epochs"]):
        _maybe_fail(config, epoch, rank)
        t0 = time.perf_counter()
        if weighted:
            # the same number of samples on every worker: DDP needs as many steps on each
            batches: Any = iter(sampled_batches(x_own, w_own.cpu(), config["samples_per_worker"], bs, gen))
        else:
            it = train_shard.iter_torch_batches(batch_size=bs, dtypes=torch.float32, device=device)
            batches = (b["data"] for b in it)
        rows_box = [0]

        def counted(it: Any, box: list[int] = rows_box) -> Any:
            for x in it:
                box[0] += x.shape[0]
                yield x

        tl = train_epoch(step, counted(batches), opt)
        train_s = time.perf_counter() - t0
        net.eval()
        vsum = torch.zeros(3, dtype=torch.float64)
        with torch.no_grad():
            if weighted:
                for i in range(0, len(x_val), bs):
                    x, w = x_val[i : i + bs], w_val[i : i + bs]
                    vsum[0] += float(net.loss(x, w)) * float(w.sum())  # type: ignore[operator]
                    vsum[1] += float(w.sum())
            else:
                for b in val_shard.iter_torch_batches(batch_size=bs, dtypes=torch.float32, device=device):
                    x = b["data"]
                    vsum[0] += float(net.loss(x)) * x.shape[0]  # type: ignore[operator]
                    vsum[1] += x.shape[0]
        vsum[2] = tl * rows_box[0]
        if world > 1 and dist.is_initialized():
            dist.all_reduce(vsum)  # gloo/NCCL: identical sums on every worker -> identical early stopping
        train_rows = float(rows_box[0]) * world
        tl_all = float(vsum[2] / max(train_rows, 1.0))
        vl = float(vsum[0] / vsum[1]) if vsum[1] > 0 else tl_all
        history["train_loss"].append(tl_all)
        history["val_loss"].append(vl)
        previous_best = stopper.best
        stop = stopper.update(vl, epoch)
        if stopper.best < previous_best or best_state is None:
            best_state = copy.deepcopy(net.state_dict())
        metrics = {"epoch": epoch, "train_loss": tl_all, "val_loss": vl, "train_seconds": train_s,
                   "rows_per_worker": rows_box[0], "samples_per_s": train_rows / max(train_s, 1e-9),
                   "stopped": stop}
        if rank == 0:
            with tempfile.TemporaryDirectory() as tmp:
                torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "best": best_state,
                            "epoch": epoch, "history": history, "best_loss": stopper.best,
                            "bad_epochs": stopper.bad_epochs, "best_epoch": stopper.best_epoch},
                           os.path.join(tmp, _STATE))
                ray.train.report(metrics, checkpoint=Checkpoint.from_directory(tmp))
        else:
            ray.train.report(metrics)
        if stop:
            break


def _shard_tensors(shard: Any, device: Any, weight: str) -> tuple[Any, Any]:
    """A worker's whole dataset of distinct rows as ``(data, <weight column>)`` tensors."""
    import torch

    xs, ws = [], []
    for b in shard.iter_torch_batches(batch_size=8192, dtypes=torch.float32, device=device):
        xs.append(b["data"])
        ws.append(b[weight])
    if not xs:
        return torch.zeros(0, device=device), torch.zeros(0, device=device)
    return torch.cat(xs), torch.cat(ws)


def _dataset(x: np.ndarray, weights: dict[str, np.ndarray] | None) -> Any:
    """A Ray Dataset of the rows (``data``), with the given weight columns."""
    import pyarrow as pa
    import ray.data

    data = np.ascontiguousarray(x, dtype=np.float32)
    if weights is None:
        return ray.data.from_numpy(data)
    from ray.data.extensions import ArrowTensorArray

    columns = {name: pa.array(np.asarray(w, dtype=np.float32)) for name, w in weights.items()}
    return ray.data.from_arrow(pa.table({"data": ArrowTensorArray.from_numpy(data), **columns}))


def worker_shares(weights: np.ndarray, workers: int, seed: int) -> np.ndarray:
    """Each distinct row's count split at random between ``workers`` (``(rows, workers)``, rows sum to the
    counts): every worker's share stands for a random part of the rows, as a row-level shard does."""
    counts = np.asarray(weights, dtype=np.int64)
    return np.random.default_rng(seed).multinomial(counts, np.full(workers, 1.0 / workers))


def train_ddp(
    model: str,
    x_train: np.ndarray,
    x_val: np.ndarray,
    cfg: TrainConfig,
    *,
    weights: np.ndarray | None = None,
    val_weights: np.ndarray | None = None,
    storage_path: str | None = None,
    run_name: str | None = None,
    test_hooks: dict[str, Any] | None = None,
) -> DDPResult:
    """Train network ``model`` on benign ``x_train`` with ``cfg.workers`` DDP workers; returns the best weights.

    Args:
        model: a name of :data:`aptray.detectors.registry.TORCH_DETECTORS`.
        x_train: benign training rows (``(n, dim)`` or windows ``(n, T, F)``).
        x_val: benign validation rows (loss and early stopping).
        cfg: workers, CPUs/GPUs per worker, epochs, batch size, lr, patience, seed, failures, extra.
        storage_path: where Ray Train keeps checkpoints (default ``cfg.storage_path`` or a temp folder).
        run_name: Ray Train run name (unique per call by default).
        test_hooks: ``{"fail_marker": path, "fail_at_epoch": n, "fail_rank": r}`` kills one worker once.
        weights, val_weights: row counts of distinct ``x_train`` / ``x_val`` rows: each worker then draws its
            minibatches from its shard with probability proportional to the counts (one pass over its distinct
            rows per epoch) and weights the validation loss by them.
    """
    import ray
    import torch
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from aptray.models import build_model
    from aptray.runtime import check_gpus
    from aptray.train.loop import epoch_rows

    check_gpus(float(cfg.workers) if cfg.use_gpu else 0.0, "train.use_gpu (one GPU per worker)",
               "set train.use_gpu=false to train on CPU")
    gpus = ray.cluster_resources().get("GPU", 0) if cfg.use_gpu else 0
    if cfg.use_gpu and gpus < cfg.workers:  # Ray Train waits for them, silently
        log.warning("train.use_gpu asks %d GPU worker(s) but the cluster has %g GPU(s) now: training waits until an "
                    "autoscaling GPU pool adds them; on a CPU-only cluster set train.use_gpu=false", cfg.workers, gpus)
    dim = int(x_train.shape[-1])
    storage = storage_path or cfg.storage_path or os.path.join(tempfile.gettempdir(), "aptray-train")
    os.makedirs(storage, exist_ok=True) if "://" not in storage else None
    name = run_name or f"{model}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    loop_cfg: dict[str, Any] = {
        "model": model, "dim": dim, "hidden": cfg.hidden, "extra": dict(cfg.extra), "epochs": cfg.epochs,
        "batch_size": cfg.batch_size, "lr": cfg.lr, "patience": cfg.patience, "seed": cfg.seed,
        "weighted": weights is not None,
        "samples_per_worker": -(-epoch_rows(len(x_train), weights, cfg.distinct_epoch_rows) // max(cfg.workers, 1)),
        **(test_hooks or {}),
    }
    workers = cfg.workers
    if not len(x_val):
        x_val, val_weights = x_train[:1], (None if weights is None else np.ones(1))
    elif weights is not None and val_weights is None:
        val_weights = np.ones(len(x_val))
    if weights is None:
        datasets: dict[str, Any] = {"train": _dataset(x_train, None).repartition(max(workers, 1)),
                                    "val": _dataset(x_val, None)}
        data_config = DataConfig()
    else:  # distinct rows: small, read whole by every worker, which draws by its own share of the counts
        shares = worker_shares(weights, workers, cfg.seed)
        datasets = {"train": _dataset(x_train, {f"weight_{r}": shares[:, r] for r in range(workers)}),
                    "val": _dataset(x_val, {"weight": np.asarray(val_weights)})}
        data_config = DataConfig(datasets_to_split=[])
    resources = {"CPU": cfg.cpus_per_worker}
    if cfg.use_gpu:
        resources["GPU"] = 1.0
    trainer = TorchTrainer(
        worker_loop,
        train_loop_config=loop_cfg,
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=cfg.use_gpu, resources_per_worker=resources),
        run_config=RunConfig(
            name=name,
            storage_path=storage,
            failure_config=FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
        datasets=datasets,
        dataset_config=data_config,
    )
    t0 = time.perf_counter()
    result = trainer.fit()
    seconds = time.perf_counter() - t0
    if result.error is not None:
        raise RuntimeError(f"distributed training failed: {result.error}") from result.error
    if result.checkpoint is None:
        raise RuntimeError("distributed training finished without a checkpoint")
    with result.checkpoint.as_directory() as d:
        saved = torch.load(os.path.join(d, _STATE), weights_only=True)
    net = build_model(model, dim, cfg.hidden, **cfg.extra)
    net.load_state_dict(saved["best"])
    hist = saved["history"]
    metrics = dict(result.metrics or {})
    history = {
        "epochs": len(hist["train_loss"]), "train_loss": hist["train_loss"], "val_loss": hist["val_loss"],
        "final_train_loss": hist["train_loss"][-1], "final_val_loss": hist["val_loss"][-1],
        "best_epoch": saved["best_epoch"], "stopped_early": bool(metrics.get("stopped", False)),
        "workers": workers, "samples_per_s_last_epoch": metrics.get("samples_per_s"),
    }
    return DDPResult(net.eval(), history, seconds, float(metrics.get("rows_per_worker", 0)), result.checkpoint.path)
