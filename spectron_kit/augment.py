"""SpecAugment for prompt features (frequency and time masking).

Example:
    >>> import torch
    >>> aug = SpecAugment(freq_masks=1, freq_width=4, time_masks=1, time_width=0.2)
    >>> feats = torch.zeros(2, 50, 16)
    >>> aug(feats, torch.tensor([50, 30])).shape
    torch.Size([2, 50, 16])
"""
import torch
from torch import nn


class SpecAugment(nn.Module):
    """Masks random frequency bands and time spans of valid frames (training only).

    Arguments:
        freq_masks: number of frequency masks. freq_width: max bins per mask.
        time_masks: number of time masks. time_width: max fraction of an
            item's valid frames per mask.
        fill: "mean" (the item's mean value) or a number.
    """

    def __init__(self, freq_masks=2, freq_width=15, time_masks=2, time_width=0.05, fill="mean"):
        super().__init__()
        self.freq_masks, self.freq_width = int(freq_masks), int(freq_width)
        self.time_masks, self.time_width = int(time_masks), float(time_width)
        self.fill = fill

    @property
    def active(self):
        """False when it has no mask to apply (it then leaves features unchanged)."""
        return bool(self.freq_masks or self.time_masks)

    def forward(self, feats, lengths=None):
        if not self.training:
            return feats
        batch, steps, bins = feats.shape
        if lengths is None:
            lengths = torch.full((batch,), steps, device=feats.device)
        out = feats.clone()
        for i in range(batch):
            n = int(lengths[i])
            value = out[i, :n].mean() if self.fill == "mean" else float(self.fill)
            for _ in range(self.freq_masks):
                width = int(torch.randint(0, self.freq_width + 1, ()))
                start = int(torch.randint(0, max(bins - width, 0) + 1, ()))
                out[i, :n, start:start + width] = value
            max_t = int(self.time_width * n)
            for _ in range(self.time_masks):
                width = int(torch.randint(0, max_t + 1, ()))
                start = int(torch.randint(0, max(n - width, 0) + 1, ()))
                out[i, start:start + width] = value
        return out
