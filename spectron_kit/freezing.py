"""The one freeze helper: a frozen component has no gradients and stays in eval mode.

Example:
    >>> import torch
    >>> class Encoder(Freezable, torch.nn.Linear):
    ...     pass
    >>> enc = Encoder(2, 2)
    >>> enc.frozen = True
    >>> _ = freeze(enc)
    >>> enc.train().training, any(p.requires_grad for p in enc.parameters())
    (False, False)
"""
from torch import nn


class Freezable:
    """Mixin for an ``nn.Module``: while ``self.frozen`` is True, ``train()`` keeps it in eval mode
    (dropout off, normalisation statistics fixed), whatever the trainer asks."""

    frozen = False

    def train(self, mode=True):  # noqa: D102 - nn.Module API
        return super().train(False if self.frozen else mode)


def freeze(module: nn.Module) -> nn.Module:
    """No gradients for any parameter of ``module`` and eval mode; returns it."""
    module.requires_grad_(False)
    module.eval()
    return module
