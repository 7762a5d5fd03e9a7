"""Pre-net and post-net."""
import pytest
import torch

from spectron_kit.nets import PostNet, PreNet


def test_prenet_input_drop_replaces_frames_by_their_running_mean_in_training_only():
    torch.manual_seed(0)
    net = PreNet(in_dim=4, out_dim=8, bottleneck=6, dropout=0.0, input_drop=0.3)
    frames = torch.randn(64, 50, 4) + 5.0
    net.train()
    for _ in range(800):  # the running mean (momentum 0.01) settles on the frames' mean
        net(frames)
    torch.testing.assert_close(net.input_mean, frames.reshape(-1, 4).mean(0), atol=0.05, rtol=0.0)
    seen = []
    net.fc1.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    net(frames)
    replaced = (seen[-1] - net.input_mean).abs().amax(-1) < 1e-6
    assert 0.25 < replaced.float().mean() < 0.35
    net.eval()
    net(frames)
    assert not ((seen[-1] - net.input_mean).abs().amax(-1) < 1e-6).any()
    assert "input_mean" not in net.state_dict()  # training state only: bundles stay loadable
    with pytest.raises(ValueError, match="input_drop=1.0"):
        PreNet(in_dim=4, out_dim=8, input_drop=1.0)


def test_prenet_and_postnet_shapes_and_errors():
    prenet, postnet = PreNet(in_dim=12, out_dim=16, bottleneck=8), PostNet(in_dim=16, out_dim=12, hidden=32)
    assert postnet(prenet(torch.zeros(3, 5, 12))).shape == (3, 5, 12)
    with pytest.raises(ValueError, match="expects 12 values per step"):
        prenet(torch.zeros(3, 5, 10))
