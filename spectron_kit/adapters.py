"""Adapters for the LM: train a few added weights instead of the whole pre-trained LM (an addition to the
paper, which fine-tunes the LM whole).

An adapter is a registered component of kind ``adapter`` (``register_adapters``; a plugin can add
another): ``apply(lm)`` adds its weights to an LM component in place and freezes the LM's own weights,
``merge(lm)`` folds them into the LM's weights and removes them (the LM is then a plain LM again).
``SpectronModel`` applies the adapter its config names (``lm_adapter: {name: lora, r: 8, ...}``), so a
bundle written with the adapter kept separate loads back with it; one written merged
(``merge_adapter: True``) is a plain bundle.

The built-in ``lora`` uses the ``peft`` library (LoRA, Hu et al. 2021): low-rank updates ``B A`` beside
the LM's linear layers.

Example:
    >>> adapter = LoraAdapter(r=4)  # doctest: +SKIP
    >>> adapter.apply(model.lm)     # doctest: +SKIP
"""
import torch

from spectron_kit.hookspecs import hookimpl

__all__ = ["LoraAdapter"]


class LoraAdapter:
    """LoRA on the LM's linear layers through ``peft``.

    Arguments:
        r: rank of each update.
        alpha: scaling numerator (the update is ``alpha / r * B A``).
        dropout: dropout on the adapter's input (training only).
        target_modules: the layers to adapt (names or a peft pattern); default ``"all-linear"`` (every linear
            layer of the transformer blocks, not the output head).
    """

    def __init__(self, r=8, alpha=16, dropout=0.0, target_modules="all-linear"):
        if int(r) < 1:
            raise ValueError(f"lora r={r}: use a rank of at least 1")
        try:
            import peft  # noqa: F401
        except ImportError:
            raise ImportError("the lora adapter needs peft: pip install 'spectron-kit[adapters]'") from None
        self.r, self.alpha, self.dropout = int(r), float(alpha), float(dropout)
        self.target_modules = target_modules

    def apply(self, lm):
        """Add LoRA layers to ``lm.model`` (the HF causal LM) in place; only they stay trainable."""
        from peft import LoraConfig, inject_adapter_in_model

        config = LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                            target_modules=self.target_modules, bias="none")
        for param in lm.model.parameters():
            param.requires_grad_(False)
        inject_adapter_in_model(config, lm.model)
        added = [n for n, p in lm.model.named_parameters() if "lora_" in n]
        if not added:
            raise ValueError(f"lora target_modules={self.target_modules!r} matched no layer of the LM; name "
                             "its linear layers (e.g. ['q_proj', 'v_proj'])")
        for name, param in lm.model.named_parameters():
            param.requires_grad_("lora_" in name)
        return lm

    @torch.no_grad()
    def merge(self, lm):
        """Fold every LoRA update into its base layer's weight and put the base layer back in its place."""
        from peft.tuners.lora import LoraLayer

        for name, module in list(lm.model.named_modules()):
            if isinstance(module, LoraLayer):
                module.merge()
                parent = lm.model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else lm.model
                setattr(parent, name.rsplit(".", 1)[-1], module.get_base_layer())
        return lm


@hookimpl
def register_adapters(register):
    register("lora", LoraAdapter, description="LoRA low-rank updates beside the LM's linear layers (peft)")
