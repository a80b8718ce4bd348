"""In-process sentence encoder: one loaded sentence-transformers model, each distinct sentence encoded once.

Used by the Ray Data actors of the embed job, by the online Serve endpoint and by batch scoring. The model
is always loaded from a local directory with the hub switched off, on the backend its
:class:`~aptray.embed.registry.ModelSpec` names (torch, or an exported ONNX/OpenVINO variant).
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np

from aptray.config import Backend

if TYPE_CHECKING:
    from aptray.embed.registry import ModelSpec

log = logging.getLogger(__name__)

_DTYPES = ("auto", "float32", "float16", "bfloat16")


def load_kwargs(spec: ModelSpec, device: str) -> dict[str, Any]:
    """``SentenceTransformer`` keyword arguments that load ``spec`` on its backend without exporting anything."""
    if spec.backend is Backend.TORCH:
        return {}
    model_kwargs: dict[str, Any] = {"file_name": spec.file_name, "export": False}
    if spec.backend is Backend.ONNX:
        model_kwargs["provider"] = "CUDAExecutionProvider" if device.startswith("cuda") else "CPUExecutionProvider"
    return {"backend": spec.backend.value, "model_kwargs": model_kwargs}


def node_threads(sharers: int, configured: int | None = None) -> int:
    """Torch CPU threads of one of ``sharers`` encoders on this node (the embed job's CPU actors, the Serve
    replicas): ``configured`` when set, else the cores this process may run on (its CPU affinity, which container
    CPU sets narrow) shared evenly, at least one. Measured in :class:`aptray.config.ServeConfig`'s
    ``torch_threads``."""
    if configured:
        return configured
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_cpus()
    if quota is not None:  # a pod's CPU limit: the affinity is every core of the host
        cores = min(cores, max(1, int(quota)))
    return max(1, cores // max(1, sharers))


def cgroup_cpus(path: str = "/sys/fs/cgroup/cpu.max") -> float | None:
    """The CPUs this process's cgroup (v2) may use, from ``cpu.max`` (``"700000 100000"``: 7), or None without a
    limit (``"max 100000"``) or without cgroup v2. A Kubernetes CPU limit sets it; the CPU affinity does not show it."""
    try:
        with open(path, encoding="ascii") as fh:
            quota, period = fh.read().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max" or not quota.isdigit() or not period.isdigit() or int(period) == 0:
        return None
    return int(quota) / int(period)


def torch_dtype(dtype: str, device: str) -> Any:
    """The torch dtype for a config value: ``auto`` is float32 on CPU and bfloat16 on CUDA."""
    import torch

    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, not {dtype!r}")
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, dtype)


class SentenceEncoder:
    """A sentence-transformers model with an in-memory LRU keyed by sentence.

    Args:
        spec: the resolved model (:func:`aptray.embed.registry.resolve`).
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        dtype: ``auto`` (float32 on CPU, bfloat16 on CUDA), ``float32``, ``float16`` or ``bfloat16`` (torch
            backend; an exported variant keeps the numerics it was exported with).
        normalize: L2-normalise the embeddings.
        batch_size: sentences per forward pass.
        lru_size: distinct sentences remembered (0 disables the LRU).
        threads: torch intra-op threads on CPU (None leaves torch's setting alone).
    """

    def __init__(
        self,
        spec: ModelSpec,
        device: str = "cpu",
        dtype: str = "auto",
        normalize: bool = True,
        batch_size: int = 32,
        lru_size: int = 100_000,
        threads: int | None = None,
    ) -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        import torch
        from sentence_transformers import SentenceTransformer

        if threads and device == "cpu":
            torch.set_num_threads(threads)
        self.spec = spec
        self.device = device
        self.normalize = normalize
        self.batch_size = batch_size
        self.lru_size = lru_size
        self.torch_dtype = torch_dtype(dtype, device) if spec.backend is Backend.TORCH else torch.float32
        self.model = SentenceTransformer(spec.path, device=device, local_files_only=True,
                                         **load_kwargs(spec, device))
        if self.torch_dtype != torch.float32:
            self.model = self.model.to(self.torch_dtype)
        self.model.eval()
        self._lru: OrderedDict[str, np.ndarray] = OrderedDict()
        self.encoded = 0  # texts that went through the model (LRU misses; a composed sentence's distinct clauses)
        numerics = spec.quantize.value if spec.backend is not Backend.TORCH else self.torch_dtype
        log.info("loaded %s (%s, %d-d) on %s as %s/%s, %d torch threads", spec.model_id, spec.revision, spec.dim,
                 device, spec.backend.value, numerics, torch.get_num_threads())

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return self.spec.dim

    @property
    def model_id(self) -> str:
        """The model's stable identity."""
        return self.spec.model_id

    def encode_distinct(self, sentences: list[str]) -> np.ndarray:
        """Encode sentences that are already distinct, bypassing the LRU; composed where the spec says so
        (:mod:`aptray.embed.compose`).

        Returns:
            float32 array of shape ``(len(sentences), dim)``.
        """
        if self.spec.compose.by_aspect:
            from aptray.embed.compose import compose

            return compose(sentences, self._through_model, self.spec.model_dim, self.spec.compose.left_out)
        return self._through_model(sentences)

    def _through_model(self, sentences: list[str]) -> np.ndarray:
        """One pass of distinct texts through the model: ``(len(sentences), model_dim)`` float32."""
        import torch

        if not sentences:
            return np.zeros((0, self.spec.model_dim), dtype=np.float32)
        with torch.inference_mode():
            out = self.model.encode(
                sentences,
                batch_size=self.batch_size,
                show_progress_bar=False,
                convert_to_tensor=True,
                normalize_embeddings=self.normalize,
            )
        self.encoded += len(sentences)
        return np.ascontiguousarray(out.float().cpu().numpy(), dtype=np.float32)

    def encode(self, sentences: list[str]) -> np.ndarray:
        """Encode ``sentences``; each distinct sentence not in the LRU goes through the model once.

        Returns:
            float32 array of shape ``(len(sentences), dim)``, row ``i`` for ``sentences[i]``.
        """
        if not sentences:
            return np.zeros((0, self.dim), dtype=np.float32)
        distinct = list(dict.fromkeys(sentences))
        vectors: dict[str, np.ndarray] = {}
        missing: list[str] = []
        for s in distinct:
            hit = self._lru.get(s)
            if hit is None:
                missing.append(s)
            else:
                self._lru.move_to_end(s)
                vectors[s] = hit
        if missing:
            fresh = self.encode_distinct(missing)
            for s, v in zip(missing, fresh, strict=True):
                vectors[s] = v
                if self.lru_size:
                    self._lru[s] = v
            while len(self._lru) > self.lru_size:
                self._lru.popitem(last=False)
        return np.stack([vectors[s] for s in sentences]).astype(np.float32, copy=False)
