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
        input_noise: in training, the standard deviation of Gaussian noise
            added to the input frames (in the decoder's frame units), so the
            decoder learns to continue from frames as imperfect as its own
            (an addition to the paper, against exposure bias; 0 = off).
        output_norm: scale each output vector to unit RMS times a learnt
            gain; ``SpectronModel`` starts the gain at the RMS of the LM's
            token embeddings, so frame steps enter the decoder at the scale
            of its text (an addition to the paper).
    """

    def __init__(self, in_dim, out_dim, bottleneck=256, activation="relu", dropout=0.5,
                 dropout_at_inference=True, input_drop=0.0, input_noise=0.0, output_norm=False):
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
        if not float(input_noise) >= 0.0:
            raise ValueError(f"input_noise={input_noise}; use a standard deviation >= 0")
        self.input_noise = float(input_noise)
        self.output_norm = bool(output_norm)
        if self.output_norm:
            self.gain = nn.Parameter(torch.ones(()))
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
        if self.training and self.input_noise:
            frames = frames + self.input_noise * torch.randn_like(frames)
        hidden = self._drop(self.act(self.fc1(frames)))
        out = self._drop(self.fc2(hidden))
        if self.output_norm:
            out = out * torch.rsqrt(out.pow(2).mean(-1, keepdim=True) + 1e-6) * self.gain
        return out

    def match_scale(self, rms):
        """Start the output gain at ``rms`` (with ``output_norm``; called by the model with its LM's embedding RMS)."""
        if self.output_norm:
            with torch.no_grad():
                self.gain.fill_(float(rms))


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


class ConvResidualPostNet(PostNet):
    """The paper's MLP post-net, then a Tacotron 2-style convolutional residual refiner over time.

    ``forward`` is the MLP (hidden state -> frame group, step by step: what
    generation feeds back); ``refine(groups, lengths)`` adds a residual from a
    stack of 1-D convolutions over the whole sequence of groups (it sees the
    groups before and after, so it runs on a teacher-forced sequence in
    training and once on the finished sequence in generation). The model
    trains both: the refined frames as ``pred_frames``, the MLP's as
    ``coarse_frames`` (loss term ``spec_coarse``). An addition to the paper.

    Arguments:
        in_dim, out_dim, hidden, activation, dropout: as for :class:`PostNet`.
        channels: width of the convolutions (default: ``hidden``, else 256).
        layers: number of convolutions (at least 2).
        kernel_size: odd kernel width, in groups of r frames.
        conv_dropout: dropout after each convolution (training only).

    Example:
        >>> net = ConvResidualPostNet(in_dim=16, out_dim=8, channels=12, layers=3)
        >>> coarse = net(torch.zeros(2, 5, 16))
        >>> tuple(net.refine(coarse, torch.tensor([5, 3])).shape)
        (2, 5, 8)
    """

    def __init__(self, in_dim, out_dim, hidden=None, activation="relu", dropout=0.0, channels=None, layers=5,
                 kernel_size=5, conv_dropout=0.1):
        super().__init__(in_dim, out_dim, hidden=hidden, activation=activation, dropout=dropout)
        if int(layers) < 2 or int(kernel_size) < 1 or int(kernel_size) % 2 == 0:
            raise ValueError(f"layers={layers}, kernel_size={kernel_size}: use at least 2 layers and an odd kernel")
        channels = int(channels or hidden or 256)
        widths = [out_dim] + [channels] * (int(layers) - 1) + [out_dim]
        self.convs = nn.ModuleList(nn.Conv1d(a, b, int(kernel_size), padding=int(kernel_size) // 2)
                                   for a, b in zip(widths[:-1], widths[1:]))
        self.conv_drop = nn.Dropout(conv_dropout)
        # a refined group depends on this many groups after it (streaming waits for them)
        self.lookahead_groups = len(self.convs) * (int(kernel_size) // 2)
        nn.init.zeros_(self.convs[-1].weight)  # starts as the MLP alone
        nn.init.zeros_(self.convs[-1].bias)

    def refine(self, groups, lengths=None):
        """Frame groups [B, G, out_dim] -> refined groups (padding beyond ``lengths`` [B] is masked out)."""
        mask = None
        if lengths is not None:
            mask = (torch.arange(groups.shape[1], device=groups.device)[None] < lengths.to(groups.device)[:, None])
            mask = mask[:, None].to(groups.dtype)                    # [B, 1, G]
        x = groups.transpose(1, 2)                                   # [B, out_dim, G]
        for i, conv in enumerate(self.convs):
            x = conv(x * mask if mask is not None else x)
            if i < len(self.convs) - 1:
                x = self.conv_drop(torch.tanh(x))
        return groups + x.transpose(1, 2)


@hookimpl
def register_prenets(register):
    register("mlp", PreNet, description="2-layer MLP with a bottleneck and inference-time dropout")


@hookimpl
def register_postnets(register):
    register("mlp", PostNet, description="2-layer MLP from LM hidden state to frame(s)")
    register("conv_residual", ConvResidualPostNet,
             description="the MLP, then a Tacotron 2-style convolutional residual refiner over time (addition)")
