"""Example third-party plugin of another kind: a gated pre-net.

Install with ``pip install -e plugins/spectron-kit-gated-prenet``; then
``spectron-kit plugins`` lists ``prenet / gated_prenet``, and a recipe uses it
with a ``prenet`` block in an ablation YAML (see this folder's README).
It was written from the scaffold (``spectron-kit new-plugin prenet gated_prenet``).
"""
import torch

from spectron_kit import hookimpl


class GatedPrenet(torch.nn.Module):
    """Spectrogram frames [B, T, in_dim] -> LM embeddings [B, T, out_dim] through a gated (GLU) bottleneck.

    Each frame is mapped on its own (no context across frames), as cached
    decoding requires: ``h = W_o (relu(W_a x) * sigmoid(W_g x))``, with dropout
    on ``h``'s bottleneck that can stay on at inference (Tacotron style).

    Arguments:
        in_dim: frame size times the reduction factor (given by the model).
        out_dim: the LM's embedding size (given by the model).
        bottleneck: width of the gated layer.
        dropout: dropout on the bottleneck.
        dropout_at_inference: keep that dropout on in eval mode.
    """

    def __init__(self, in_dim, out_dim, bottleneck=256, dropout=0.5, dropout_at_inference=True):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.dropout, self.dropout_at_inference = float(dropout), bool(dropout_at_inference)
        self.value = torch.nn.Linear(in_dim, bottleneck)
        self.gate = torch.nn.Linear(in_dim, bottleneck)
        self.out = torch.nn.Linear(bottleneck, out_dim)

    def forward(self, frames):
        hidden = torch.relu(self.value(frames)) * torch.sigmoid(self.gate(frames))
        active = self.training or self.dropout_at_inference
        hidden = torch.nn.functional.dropout(hidden, self.dropout, training=active and self.dropout > 0)
        return self.out(hidden)


@hookimpl
def register_prenets(register):
    register("gated_prenet", GatedPrenet, description="gated (GLU) bottleneck pre-net (example plugin)")
