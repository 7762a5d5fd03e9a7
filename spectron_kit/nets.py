"""Pre-net (frames -> LM embedding) and post-net (LM hidden -> frames).

Both are the paper's 2-layer MLPs. With a reduction factor r, a "frame" is a
group of r consecutive spectrogram frames flattened to F*r values.

Example:
    >>> import torch
    >>> prenet = PreNet(in_dim=128, out_dim=64, bottleneck=32)
    >>> postnet = PostNet(in_dim=64, out_dim=128)
    >>> tuple(postnet(prenet(torch.zeros(2, 5, 128))).shape)
    (2, 5, 128)
"""
import torch
from torch import nn

from spectron_kit.hookspecs import hookimpl

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


def _activation(name):
    if name not in ACTIVATIONS:
        raise ValueError(f"activation={name!r} is not known; use one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class PreNet(nn.Module):
    """Spectrogram frame(s) -> bottleneck -> LM embedding width.

    Arguments:
        in_dim: F * r (frame size times reduction factor).
        out_dim: LM embedding width.
        bottleneck: hidden width; small values stop the LM from copying the
            previous frame. ``None`` means no bottleneck (hidden = out_dim).
        activation: "relu", "gelu", "silu" or "tanh".
        dropout: dropout after each layer.
        dropout_at_inference: keep dropout on in eval mode (Tacotron style).
        input_drop: in training, the fraction of input frames replaced by the
            running mean of the inputs (an addition to the paper: the decoder
            cannot lean on always having the previous frame, without the
            noise dropout adds to every frame; 0 = off).
    """

    def __init__(self, in_dim, out_dim, bottleneck=256, activation="relu", dropout=0.5,
                 dropout_at_inference=True, input_drop=0.0):
        super().__init__()
        hidden = bottleneck or out_dim
        self.in_dim, self.out_dim, self.bottleneck = in_dim, out_dim, hidden
        self.fc1 = nn.Linear(in_dim, hidden)
        self.fc2 = nn.Linear(hidden, out_dim)
        self.act = _activation(activation)
        self.dropout = dropout
        self.dropout_at_inference = dropout_at_inference
        if not 0.0 <= float(input_drop) < 1.0:
            raise ValueError(f"input_drop={input_drop}; use a fraction in [0, 1)")
        self.input_drop = float(input_drop)
        self.register_buffer("input_mean", torch.zeros(in_dim), persistent=False)  # training only

    def _drop(self, x):
        active = self.training or self.dropout_at_inference
        return nn.functional.dropout(x, self.dropout, training=active) if self.dropout else x

    def forward(self, frames):
        if frames.shape[-1] != self.in_dim:
            raise ValueError(f"pre-net expects {self.in_dim} values per step (n_mels * r), "
                             f"got {frames.shape[-1]}")
        if self.training and self.input_drop:
            with torch.no_grad():  # running mean of the frames seen (the go frame included)
                self.input_mean.lerp_(frames.detach().reshape(-1, self.in_dim).float().mean(0), 0.01)
            dropped = torch.rand(frames.shape[:-1], device=frames.device) < self.input_drop
            frames = torch.where(dropped[..., None], self.input_mean.to(frames.dtype), frames)
        hidden = self._drop(self.act(self.fc1(frames)))
        return self._drop(self.fc2(hidden))


class PostNet(nn.Module):
    """LM hidden state -> spectrogram frame(s) (2-layer MLP).

    Arguments:
        in_dim: LM hidden width. out_dim: F * r.
        hidden: width of the hidden layer (None = in_dim).
        activation: as for PreNet. dropout: dropout on the hidden layer (training only).
    """

    def __init__(self, in_dim, out_dim, hidden=None, activation="relu", dropout=0.0):
        super().__init__()
        hidden = hidden or in_dim
        self.in_dim, self.out_dim = in_dim, out_dim
        self.fc1 = nn.Linear(in_dim, hidden)
        self.fc2 = nn.Linear(hidden, out_dim)
        self.act = _activation(activation)
        self.drop = nn.Dropout(dropout)

    def forward(self, hidden):
        return self.fc2(self.drop(self.act(self.fc1(hidden))))


@hookimpl
def register_prenets(register):
    register("mlp", PreNet, description="2-layer MLP with a bottleneck and inference-time dropout")


@hookimpl
def register_postnets(register):
    register("mlp", PostNet, description="2-layer MLP from LM hidden state to frame(s)")
