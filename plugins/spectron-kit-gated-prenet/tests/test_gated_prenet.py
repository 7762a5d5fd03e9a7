"""The plugin registers through its hook, keeps the pre-net contract and is causal per frame."""
import sys
from pathlib import Path

import pytest
import torch

from spectron_kit import build
from spectron_kit.registry import get_registry, reset_registry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import spectron_kit_gated_prenet  # noqa: E402


@pytest.fixture
def built():
    """Register the module as a plugin (as its entry point would) and build the component by name."""
    reset_registry()
    registry = get_registry()
    registry.register_plugin(spectron_kit_gated_prenet, name="spectron-kit-gated-prenet",
                             distribution="spectron-kit-gated-prenet")
    assert registry.get("prenet", "gated_prenet").provider == "spectron-kit-gated-prenet"
    return lambda **kwargs: build("prenet", "gated_prenet", **kwargs)


def test_contract(built):
    prenet = built(in_dim=80, out_dim=48, bottleneck=32, dropout=0.0)
    frames = torch.randn(2, 7, 80)
    out = prenet(frames)
    assert out.shape == (2, 7, 48) and prenet.in_dim == 80 and prenet.out_dim == 48
    # frame by frame: changing frame 5 changes only output 5 (cached decoding feeds one frame at a time)
    changed = frames.clone()
    changed[:, 5] += 1.0
    diff = (prenet(changed) - out).abs().sum(-1)
    assert diff[:, 5].min() > 0 and diff[:, :5].max() == 0 and diff[:, 6:].max() == 0
    out.sum().backward()
    assert all(p.grad is not None for p in prenet.parameters())


def test_dropout_stays_on_at_inference_when_asked(built):
    on = built(in_dim=8, out_dim=4, bottleneck=64, dropout=0.5, dropout_at_inference=True).eval()
    off = built(in_dim=8, out_dim=4, bottleneck=64, dropout=0.5, dropout_at_inference=False).eval()
    x = torch.randn(1, 3, 8)
    assert not torch.equal(on(x), on(x))
    assert torch.equal(off(x), off(x))
