"""Each torch network: output shapes, per-row scores, and one optimiser step lowering the loss."""

from __future__ import annotations

import pytest
import torch

from aptray.detectors.registry import TORCH_DETECTORS
from aptray.models import build_model
from aptray.models.ae import default_hidden

DIM = 48


def _batch(name: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    shape = (16, 8, DIM) if name == "lstm-ae" else (32, DIM)
    return torch.randn(*shape, generator=g)


@pytest.mark.parametrize("name", TORCH_DETECTORS)
def test_shapes_and_scores(name: str) -> None:
    net = build_model(name, DIM)
    x = _batch(name)
    net.eval()
    out = net(x)
    recon = out[0] if isinstance(out, tuple) else out
    # autoencoders reconstruct their input; Deep SVDD maps it into its output space
    assert recon.shape == ((32, default_hidden(DIM)[-1]) if name == "deep-svdd" else x.shape)
    scores = net.score(x)
    assert scores.shape == (x.shape[0],)
    assert torch.all(scores >= 0)


@pytest.mark.parametrize("name", TORCH_DETECTORS)
def test_one_step_lowers_loss(name: str) -> None:
    torch.manual_seed(0)
    net = build_model(name, DIM, **({"dropout": 0.0} if name == "lstm-ae" else {}))
    x = _batch(name)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    net.train()
    torch.manual_seed(1)  # same noise/sample before and after the step (DAE, VAE)
    before = net.loss(x)
    opt.zero_grad()
    before.backward()
    opt.step()
    torch.manual_seed(1)
    after, first = net.loss(x).item(), before.item()
    assert after < first, f"{name}: {first:.5f} -> {after:.5f}"


def test_seed_architecture_sizes() -> None:
    assert default_hidden(768) == [512, 128]
    net = build_model("ae", 768)
    widths = [m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [512, 128, 512, 768]


def test_attention_variant_has_attention_and_keeps_shape() -> None:
    net = build_model("vae-attn", 50, [32, 8])  # 50 is not a multiple of the 8 chunks: padding path
    assert any(isinstance(m, torch.nn.MultiheadAttention) for m in net.modules())
    x = torch.randn(4, 50)
    assert net.attention(x).shape == x.shape


def test_dae_masking_noise_zeroes_values() -> None:
    net = build_model("dae", DIM, noise="mask", mask_prob=0.5)
    x = torch.ones(64, DIM)
    frac = float((net.corrupt(x) == 0).float().mean())
    assert 0.4 < frac < 0.6


def test_unknown_model_is_refused() -> None:
    with pytest.raises(ValueError, match="not a torch detector"):
        build_model("gan", DIM)
