"""``SpectronConfig``: every setting of a ``SpectronModel`` in one dataclass, saved whole in bundles.

A new model setting is one field here (with its YAML key when the recipe
names it differently) plus one line in the recipe YAML; the recipe fills the
config from its hyperparameters with :meth:`SpectronConfig.from_hparams`, the
model reads ``self.config``, ``save_pretrained`` writes ``asdict`` and
``from_pretrained`` reads it back (missing fields of older bundles take their
defaults; unknown ones are an error naming them).
"""
import dataclasses
from typing import List, Optional


def _yaml(key):
    """Field metadata: the recipe YAML names this setting ``key``."""
    return {"yaml": key}


@dataclasses.dataclass
class SpectronConfig:
    """The model's settings (the components are built separately).

    Attributes:
        reduction_factor: r frames per decoder step.
        prompt_seconds: prompt length used by ``split`` helpers and evaluation.
        stop_head: add a learned stop gate (Tacotron-style) on frame steps.
        stop: default stop rule for generation, "budget" or "stop_head" (YAML ``stop_rule``).
        stop_threshold: stop probability that ends an item ("stop_head" rule).
        max_seconds: default frame budget (seconds) when none is given (YAML ``max_generate_seconds``).
        max_text_tokens: default text budget for generation.
        frame_positions: add a learned projection of a sinusoidal encoding of
            the frame step to each frame input (an addition; it starts at zero,
            so the model starts as without).
        self_feeding: in training, the fraction of frame inputs that are the
            model's own teacher-forced predictions instead of the true frames
            (an addition against exposure bias; one extra forward pass per step).
        intermediate_text: False decodes frames right after the prompt's prefix,
            with no transcript or text continuation in between (the ablation of
            the paper's "intermediate text" claim).
        normalize_frames: the decoder reads and writes frames normalised per mel
            bin (statistics of the training set, saved in the bundle; generation
            returns the front end's units). An addition.
        interleave_phonemes: the speech section interleaves each phoneme's token
            before its frame groups, with a gate choosing the next group or the
            next phoneme (``spectron_kit.phonemes``; an addition that needs
            phoneme timings in training).
        phonemes: the phoneme names of the vocabulary (with ``interleave_phonemes``;
            the recipe reads them from the training manifests).
        max_phone_groups: in generation, the most frame groups one phoneme may own.
        phone_context: every frame step's input also carries the embedding of the
            phoneme being spoken and of the step's index within it (an addition).
        phoneme_list: the LM first writes the continuation's phonemes after its
            text (prefix -> words -> phonemes -> frames), and the speech section
            speaks that list in order (an addition).
        gate_rule: how the gate ends a phoneme in generation, "median" or "threshold".
        lm_adapter: an adapter the LM trains instead of its own weights, ``{"name": "lora", **its
            arguments}`` (a registered ``adapter``; ``spectron_kit.adapters``), or None (the paper: the LM
            is fine-tuned whole). An addition.
        merge_adapter: bundles fold the adapter into the LM's weights (a plain bundle) instead of keeping it
            separate (the bundle then re-applies it when loaded).
    """

    reduction_factor: int = 1
    prompt_seconds: float = 3.0
    stop_head: bool = False
    stop: str = dataclasses.field(default="budget", metadata=_yaml("stop_rule"))
    stop_threshold: float = 0.5
    max_seconds: float = dataclasses.field(default=10.0, metadata=_yaml("max_generate_seconds"))
    max_text_tokens: int = 128
    frame_positions: bool = False
    self_feeding: float = 0.0
    intermediate_text: bool = True
    normalize_frames: bool = False
    interleave_phonemes: bool = False
    phonemes: Optional[List[str]] = None
    max_phone_groups: int = 48
    phone_context: bool = False
    phoneme_list: bool = False
    gate_rule: str = "median"
    lm_adapter: Optional[dict] = None
    merge_adapter: bool = True

    def __post_init__(self):
        self.reduction_factor = int(self.reduction_factor)
        for name in ("prompt_seconds", "stop_threshold", "max_seconds", "self_feeding"):
            setattr(self, name, float(getattr(self, name)))
        for name in ("stop_head", "frame_positions", "intermediate_text", "normalize_frames",
                     "interleave_phonemes", "phone_context", "phoneme_list"):
            setattr(self, name, bool(getattr(self, name)))
        self.max_text_tokens, self.max_phone_groups = int(self.max_text_tokens), int(self.max_phone_groups)
        self.phonemes = list(self.phonemes) if self.phonemes is not None else None
        self.lm_adapter = dict(self.lm_adapter) if self.lm_adapter else None
        self.merge_adapter = bool(self.merge_adapter)
        self.check()

    def check(self):
        """One ``ValueError`` naming the setting and the fix for a combination that cannot work."""
        if self.reduction_factor < 1:
            raise ValueError(f"reduction_factor={self.reduction_factor}; use an integer >= 1")
        if self.stop not in ("budget", "stop_head"):
            raise ValueError(f"stop={self.stop!r}; use 'budget' or 'stop_head'")
        if self.stop == "stop_head" and not self.stop_head:
            raise ValueError("stop='stop_head' needs stop_head=True")
        if not 0.0 <= self.self_feeding <= 1.0:
            raise ValueError(f"self_feeding={self.self_feeding}; use a fraction in [0, 1]")
        if self.gate_rule not in ("median", "threshold"):
            raise ValueError(f"gate_rule={self.gate_rule!r}; use 'median' or 'threshold'")
        if self.interleave_phonemes:
            if not self.phonemes:
                raise ValueError("interleave_phonemes needs the phoneme vocabulary (phonemes=[...]): the recipe "
                                 "reads it from the training manifests' phone_times")
            if not self.intermediate_text:
                raise ValueError("interleave_phonemes needs the intermediate text (intermediate_text=True)")
        if self.lm_adapter is not None and not self.lm_adapter.get("name"):
            raise ValueError(f"lm_adapter={self.lm_adapter!r}; name the adapter, e.g. {{name: lora, r: 8}}")
        for name in ("phone_context", "phoneme_list"):
            if getattr(self, name) and not self.interleave_phonemes:
                raise ValueError(f"{name} needs interleave_phonemes=True")

    @classmethod
    def fields(cls):
        """``{field name: YAML key}`` of every setting."""
        return {f.name: f.metadata.get("yaml", f.name) for f in dataclasses.fields(cls)}

    @classmethod
    def from_dict(cls, values, what="model settings"):
        """A config from saved settings (a bundle's ``"model"`` entry); absent fields take their defaults.

        Raises:
            TypeError: naming the settings this version does not know.
        """
        unknown = sorted(set(values) - set(cls.fields()))
        if unknown:
            raise TypeError(f"{what} has settings this spectron-kit version does not know: {', '.join(unknown)}; "
                            "upgrade spectron-kit or drop them")
        return cls(**values)

    @classmethod
    def from_hparams(cls, hparams, **values):
        """A config from a recipe's hyperparameters: each field from its YAML key when the YAML has it
        (else its default); ``values`` (e.g. ``phonemes``) win."""
        found = {name: hparams[key] for name, key in cls.fields().items() if key in hparams}
        return cls(**{**found, **values})

    def to_dict(self):
        """Plain values (what a bundle stores)."""
        return dataclasses.asdict(self)
