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


#: the components a model's parameters are grouped by (``parameter_groups`` in a recipe); "heads" is every
#: other trainable part (stop, gate and phoneme heads, phoneme and position embeddings)
COMPONENT_GROUPS = ("encoder", "projection", "lm", "prenet", "postnet", "heads")
_NOT_TRAINED = ("frontend", "vocoder")  # fixed feature extraction; the vocoder is trained on its own


def check_group_settings(settings):
    """``parameter_groups`` as a recipe gives it: a mapping of known group names to ``lr_scale`` (a number of
    at least 0) and/or ``weight_decay``. Returns it as a dict; a ValueError (one line naming the value and
    the fix) otherwise. Needs no model, so a recipe checks it before anything is written."""
    settings = {} if settings is None else settings
    if not isinstance(settings, dict):
        raise ValueError(f"parameter_groups={settings!r}: give a mapping, e.g. "
                         '"{lm: {lr_scale: 0.1}, encoder: {lr_scale: 0}}"')
    for name, setting in settings.items():
        if name not in COMPONENT_GROUPS:
            raise ValueError(f"parameter_groups: no group {name!r}; the groups are " + ", ".join(COMPONENT_GROUPS))
        if not isinstance(setting, dict) or set(setting) - {"lr_scale", "weight_decay"}:
            raise ValueError(f"parameter_groups: {name}={setting!r}; give lr_scale and/or weight_decay, "
                             f'e.g. "{{{name}: {{lr_scale: 0.1}}}}"')
        scale = setting.get("lr_scale", 1.0)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale < 0:
            raise ValueError(f"parameter_groups: {name}.lr_scale={scale!r}; use 0 (frozen) or a positive number")
    return dict(settings)


def component_groups(model, lr, settings=None, weight_decay=None):
    """The optimiser's parameter groups of a model, one per component, each with its learning-rate scale and
    weight decay; a scale of 0 freezes the component (``requires_grad`` off, left out of the optimiser).

    Arguments:
        model: a module whose top-level children are named as in :data:`COMPONENT_GROUPS` (a SpectronModel).
        lr: the base learning rate.
        settings: ``{group: {"lr_scale": float, "weight_decay": float}}`` for the groups that differ (others:
            scale 1, the optimiser's weight decay).
        weight_decay: the optimiser's weight decay (reported for groups that do not set their own).

    Returns:
        ``(groups for torch.optim, report rows [(group, parameters, trainable, lr, weight decay)])``.

    Raises:
        ValueError: settings :func:`check_group_settings` refuses, or a group with no parameters in this model
            (one line naming it and the fix).

    Example:
        >>> import torch
        >>> model = torch.nn.Module()
        >>> model.lm, model.prenet = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)
        >>> groups, rows = component_groups(model, 1e-3, {"lm": {"lr_scale": 0}})
        >>> [g["name"] for g in groups], model.lm.weight.requires_grad, rows[0]
        (['prenet'], False, ('lm', 6, 0, 0.0, None))
    """
    settings = check_group_settings(settings)
    members = {name: [] for name in COMPONENT_GROUPS}
    for child, module in model.named_children():
        if child in _NOT_TRAINED:
            continue
        members[child if child in members else "heads"] += list(module.parameters(recurse=True))
    for name, param in model.named_parameters(recurse=False):  # parameters held by the model itself
        members["heads"].append(param)
    groups, rows = [], []
    for name in COMPONENT_GROUPS:
        params, wanted = members[name], settings.get(name) or {}
        if name in settings and not params:
            raise ValueError(f"parameter_groups.{name}: this model has no {name} parameters; drop the entry")
        scale = float(wanted.get("lr_scale", 1.0))
        if scale == 0:
            for param in params:
                param.requires_grad_(False)
        trainable = [p for p in params if p.requires_grad]
        decay = wanted.get("weight_decay", weight_decay)
        if params:
            rows.append((name, sum(p.numel() for p in params), sum(p.numel() for p in trainable), lr * scale, decay))
        if trainable:
            group = {"name": name, "params": trainable, "lr": lr * scale}
            if "weight_decay" in wanted:
                group["weight_decay"] = float(wanted["weight_decay"])
            groups.append(group)
    return groups, rows
