"""Self-attention over chunks of an embedding: the attention front of the ``*-attn`` autoencoders (APT-LLM)."""

from __future__ import annotations

import torch
from torch import nn


class ChunkAttention(nn.Module):
    """Split a ``dim`` vector into ``chunks`` tokens, run one self-attention block, map back to ``dim``.

    The output has the input's shape, so it can precede any encoder. A residual connection keeps the
    block close to the identity at initialisation.

    Args:
        dim: embedding dimension (padded up to a multiple of ``chunks`` internally).
        chunks: number of tokens the embedding is cut into.
        d_model: token width after projection.
        heads: attention heads (must divide ``d_model``).
        dropout: attention dropout.
    """

    def __init__(self, dim: int, chunks: int = 8, d_model: int = 64, heads: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.dim = dim
        self.chunks = chunks
        self.chunk_size = -(-dim // chunks)
        self.pad = self.chunk_size * chunks - dim
        self.proj_in = nn.Linear(self.chunk_size, d_model)
        self.pos = nn.Parameter(torch.zeros(1, chunks, d_model))
        self.attn = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(d_model)
        self.proj_out = nn.Linear(d_model, self.chunk_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, dim) -> (batch, dim)``."""
        if self.pad:
            x = nn.functional.pad(x, (0, self.pad))
        tokens = x.view(x.shape[0], self.chunks, self.chunk_size)
        h = self.proj_in(tokens) + self.pos
        a, _ = self.attn(h, h, h, need_weights=False)
        h = self.norm(h + a)
        out = tokens + self.proj_out(h)
        return out.reshape(x.shape[0], -1)[:, : self.dim]
