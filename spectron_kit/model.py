"""SpectronModel: speech prefix -> one LM pass writing text, then spectrogram frames.

Layout for one utterance (SPECTRON.md section 1), with G = ceil(T / r) groups of
r frames (r = reduction factor; r = 1 is the paper):

    LM input : [ P_1 .. P_Tp ][ <sos> y_1 .. y_n   ][ pre(go) pre(g_1) .. pre(g_{G-1}) ]
    target   : [      -       ][ y_1 .. y_n <eos>  ][ g_1     g_2      ..  g_G         ]
    heads    :                  LM head (CE)          post-net (+ optional stop head)

P = projection(encoder(prompt)). Items of a batch are packed one after the
other and right-padded; in generation the prefix is left-padded so every item
starts decoding at the same step, and each item then moves through its own
phase (text, frames, done) with a shared KV cache.
"""
import contextlib
import dataclasses
import logging
import math
import time

import torch
from torch import nn

from spectron_kit.audio import to_samples
from spectron_kit.bundle import (BUNDLE_MARK, COMPONENTS, CONFIG_FILE, FEATURE_SPEC_FILE,  # noqa: F401
                                  WEIGHTS_FILE, check_bundle_source, load_bundle, save_bundle)
from spectron_kit.model_config import SpectronConfig
from spectron_kit.vocoder_stream import finish_stream, open_stream

logger = logging.getLogger(__name__)



@dataclasses.dataclass
class SpectronOutput:
    """What ``SpectronModel.generate`` returns (lists have one entry per batch item)."""

    text: list            # decoded text: prompt transcript followed by its continuation
    token_ids: list       # generated token ids (without <eos>)
    frames: list          # Tensor [T_i, F] per item (normalised log-mel, like the frontend)
    waveforms: list       # Tensor [S_i] per item, or None without a vocoder
    sample_rate: int
    timing: dict          # seconds per phase, counts, frames/s, real-time factor
    stopped_by: list      # "stop_head", "budget" or "end" (the <end> phoneme) per item
    phonemes: list = dataclasses.field(default_factory=list)  # interleaved phonemes written, per item
    listed: list = dataclasses.field(default_factory=list)    # the phoneme list written (phoneme_list), per item


TEXT, FRAMES, DONE, LIST = 0, 1, 2, 3  # the phase of an item in decoding: text, speech, finished, phoneme list


def _next_listed(sequence, spoken):
    """The sequence's next phoneme; the last one again when it runs out."""
    return sequence[len(spoken)] if len(spoken) < len(sequence) else (spoken[-1] if spoken else 1)


@dataclasses.dataclass
class StreamEvent:
    """One event of :meth:`SpectronModel.stream`: ``kind`` is "text", "speech", "audio" or "end"."""

    kind: str
    text: str = ""
    frames: torch.Tensor = None
    audio: torch.Tensor = None
    output: object = None


@dataclasses.dataclass
class _Decoding:
    """The state of one batched decoding pass of ``SpectronModel.generate``: per item, its phase and what it
    has written so far; for the LM, the next step's input, the attention mask and the cache."""

    batch_size: int
    dtype: torch.dtype
    width: int                      # the LM's input width
    budget: torch.Tensor            # frames per item
    budget_groups: list             # frame groups (steps) per item, as Python ints (read every step)
    stop: str
    max_text_tokens: int
    sampling: tuple                 # (do_sample, temperature, top_k, top_p)
    use_cache: bool
    forced_text: object
    forced_phonemes: object
    cache: object
    all_embeds: torch.Tensor
    all_mask: torch.Tensor
    step_input: torch.Tensor
    step_pos: torch.Tensor
    times: dict
    n_steps: int = 0
    next_embeds: torch.Tensor = None
    active: torch.Tensor = None

    def __post_init__(self):
        n = self.batch_size
        self.phase = [TEXT] * n
        self.tokens = [[] for _ in range(n)]
        self.listed = [[] for _ in range(n)]       # the phoneme list written (phoneme_list)
        self.groups = [[] for _ in range(n)]
        self.phones = [[] for _ in range(n)]       # interleaved phonemes written so far
        self.speech_steps = [0] * n                # speech-section steps taken (go = step 0)
        self.since_phone = [0] * n                 # groups since the last phoneme token
        self.survival = [1.0] * n                  # probability that the phoneme goes on (the gate)
        self.stopped_by = ["budget"] * n


def _component(value, kind, **dims):
    """Accept a built module, or a partial/callable taking the dims (YAML ``!name:``)."""
    if isinstance(value, nn.Module) or value is None:
        return value
    if callable(value):
        return value(**dims)
    raise TypeError(f"{kind} must be a module or a callable building one, got {type(value).__name__}")


class _Setting:
    """A model attribute that is a field of ``model.config`` (read and written there), so the config
    saved in a bundle is always what the model runs with."""

    def __init__(self, field):
        self.field = field

    def __get__(self, model, owner=None):
        return self if model is None else getattr(model.config, self.field)

    def __set__(self, model, value):
        setattr(model.config, self.field, value)


class SpectronModel(nn.Module):
    """The Spectron model: encoder, projection, LM, pre-net, post-net, stop head.

    Arguments:
        frontend: waveform -> log-mel module with a ``spec`` (FeatureSpec).
        encoder: speech encoder (``input_kind``, ``output_size``, ``frame_rate``).
        lm: decoder LM (see ``spectron_kit.lm.HFCausalLM``).
        prenet, postnet: modules, or callables taking ``in_dim``/``out_dim``
            (YAML ``!name:spectron_kit.build``) so sizes follow the LM and r.
        vocoder: optional vocoder; its feature spec must equal the frontend's.
        config: a :class:`~spectron_kit.model_config.SpectronConfig` (every
            setting; saved whole in bundles). Default: its defaults.
        prompt_augment: module applied to prompt features in training
            (e.g. SpecAugment), called as ``augment(feats, lengths)``.
        **settings: fields of ``SpectronConfig`` that replace ``config``'s
            (``reduction_factor=2``, ``stop_head=True``, ...).

    The settings are read through ``self.config``; the common ones are also
    attributes (``self.r``, ``self.prompt_seconds``, ...: see ``_Setting``).
    """

    #: the settings' dataclass (a subclass may extend it: its new fields are saved and loaded too)
    config_class = SpectronConfig

    r = _Setting("reduction_factor")
    prompt_seconds = _Setting("prompt_seconds")
    stop = _Setting("stop")
    stop_threshold = _Setting("stop_threshold")
    max_seconds = _Setting("max_seconds")
    max_text_tokens = _Setting("max_text_tokens")
    self_feeding = _Setting("self_feeding")
    intermediate_text = _Setting("intermediate_text")
    normalize_frames = _Setting("normalize_frames")
    interleave_phonemes = _Setting("interleave_phonemes")
    max_phone_groups = _Setting("max_phone_groups")
    phone_context = _Setting("phone_context")
    phoneme_list = _Setting("phoneme_list")
    gate_rule = _Setting("gate_rule")

    def __init__(self, frontend, encoder, lm, prenet, postnet, vocoder=None, config=None, prompt_augment=None,
                 **settings):
        super().__init__()
        fields = self.config_class.fields()
        unknown = sorted(set(settings) - set(fields))
        if unknown:
            raise TypeError(f"{type(self).__name__} got unknown settings {', '.join(unknown)}; the settings are "
                            f"the fields of {self.config_class.__name__}: {', '.join(fields)}")
        self.config = dataclasses.replace(config or self.config_class(), **settings)  # replace() re-checks it
        c = self.config
        if vocoder is not None:
            frontend.spec.check_matches(vocoder.spec, "frontend", "vocoder")
        _check_encoder_features(frontend.spec, encoder)
        self.frontend = frontend
        self.encoder = encoder
        self.lm = lm
        self.n_mels = frontend.spec.n_mels
        step_dim = self.n_mels * self.r
        self.prenet = _component(prenet, "prenet", in_dim=step_dim, out_dim=lm.d_model)
        self.postnet = _component(postnet, "postnet", in_dim=lm.d_model, out_dim=step_dim)
        if self.prenet.out_dim != lm.d_model or self.prenet.in_dim != step_dim:
            raise ValueError(f"prenet maps {self.prenet.in_dim}->{self.prenet.out_dim} but needs "
                             f"{step_dim} (n_mels*r) -> {lm.d_model} (LM width)")
        if self.postnet.in_dim != lm.d_model or self.postnet.out_dim != step_dim:
            raise ValueError(f"postnet maps {self.postnet.in_dim}->{self.postnet.out_dim} but needs "
                             f"{lm.d_model} (LM width) -> {step_dim} (n_mels*r)")
        if callable(getattr(self.prenet, "match_scale", None)):  # frames enter at the scale of the LM's text
            weight = lm.model.get_input_embeddings().weight if hasattr(lm, "model") else None
            if weight is not None:
                self.prenet.match_scale(weight.detach().float().pow(2).mean().sqrt())
        self.projection = nn.Linear(encoder.output_size, lm.d_model)
        self.stop_head = nn.Linear(lm.d_model, 1) if c.stop_head else None
        self.vocoder = vocoder
        self.prompt_augment = prompt_augment
        self.frame_positions = nn.Linear(lm.d_model, lm.d_model) if c.frame_positions else None
        if self.frame_positions is not None:
            nn.init.zeros_(self.frame_positions.weight)
            nn.init.zeros_(self.frame_positions.bias)
        if c.normalize_frames:  # per-bin statistics of the training frames (identity until set)
            self.register_buffer("frame_mean", torch.zeros(self.n_mels))
            self.register_buffer("frame_std", torch.ones(self.n_mels))
        self.phone_vocab = None
        if c.interleave_phonemes:
            from spectron_kit.phonemes import PhonemeVocabulary

            self.phone_vocab = PhonemeVocabulary(c.phonemes)
            self.phone_embedding = nn.Embedding(len(self.phone_vocab), lm.d_model)
            self.phone_head = nn.Linear(lm.d_model, len(self.phone_vocab))
            self.gate_head = nn.Linear(lm.d_model, 1)
        if c.phoneme_list:  # the input that starts the list (its output writes the first phoneme)
            self.phone_list_start = nn.Parameter(torch.randn(lm.d_model))
        if c.phone_context:  # index of a step within its phoneme (the last index is shared by longer ones)
            self.within_phone = nn.Embedding(c.max_phone_groups + 1, lm.d_model)
            nn.init.normal_(self.within_phone.weight, std=0.1)
        self.adapter = None
        if c.lm_adapter:  # the LM trains an adapter instead of its own weights (spectron_kit.adapters)
            from spectron_kit.registry import build

            options = dict(c.lm_adapter)
            self.adapter = build("adapter", options.pop("name"), **options)
            self.adapter.apply(lm)

    def for_bundle(self):
        """What a bundle saves: this model, or with ``merge_adapter`` a copy whose adapter is folded into the
        LM's weights (a plain model, ``lm_adapter`` None)."""
        if self.adapter is None or not self.config.merge_adapter:
            return self
        import copy

        merged = copy.deepcopy(self)
        merged.adapter.merge(merged.lm)
        merged.adapter = None
        merged.config = dataclasses.replace(merged.config, lm_adapter=None)
        return merged

    def check_objective(self, objective):
        """Refuse an objective (``SpectronLoss``) this model cannot feed: the attention of decoder layers
        it does not have, or guided attention beside interleaved phonemes."""
        layers = list(getattr(objective, "attention_layers", None) or ())
        if not layers:
            return
        n_layers = len(self.lm.attention_layers())
        missing = [i for i in layers if not 0 <= i < n_layers]
        if missing:
            raise ValueError(f"the loss needs the attention of decoder layers {missing}, but the LM has "
                             f"{n_layers} layer(s) (0..{n_layers - 1}); choose guided-attention layers "
                             "that exist (YAML: guided_attention_layers)")
        if self.interleave_phonemes:
            raise ValueError("guided attention and interleave_phonemes do not combine (the phoneme token "
                             "before each frame step is its alignment); set w_guided_attention: 0")

    # ------------------------------------------------------------------ helpers
    @property
    def frame_rate(self):
        return self.frontend.spec.frame_rate

    @property
    def device(self):
        return self.projection.weight.device

    @property
    def encoder_is_fixed(self):
        """True when the encoder output depends only on the prompt: frozen and no prompt augmentation in use."""
        frozen = not any(p.requires_grad for p in self.encoder.parameters())
        augment = self.prompt_augment is not None and getattr(self.prompt_augment, "active", True)
        return frozen and not augment

    def encode_prompt(self, prompt_wav=None, prompt_lens=None, prompt_feats=None, prompt_feat_lens=None,
                      prompt_encoded=None, prompt_encoded_lens=None):
        """Prompt -> speech prefix P [B, Tp, d_lm] and its lengths [B].

        ``prompt_encoded`` [B, T', D] / ``prompt_encoded_lens`` are encoder outputs
        computed earlier (a fixed encoder gives the same every epoch): only the
        projection runs then.
        """
        if prompt_encoded is not None:
            hidden = prompt_encoded.to(self.device)
            lens = prompt_encoded_lens if prompt_encoded_lens is not None else torch.full(
                (hidden.shape[0],), hidden.shape[1], dtype=torch.long)
        else:
            hidden, lens = self.encode_speech(prompt_wav, prompt_lens, prompt_feats, prompt_feat_lens)
        prefix = self.projection(hidden.to(self.projection.weight.dtype))
        return prefix, lens.to(prefix.device)

    def encode_speech(self, prompt_wav=None, prompt_lens=None, prompt_feats=None, prompt_feat_lens=None):
        """Prompt -> encoder output [B, T', D] and its lengths [B] (front end, prompt augmentation in
        training, encoder; no projection): what ``prompt_encoded`` caches for a fixed encoder."""
        if self.encoder.input_kind == "waveform":
            if prompt_wav is None:
                raise ValueError(f"encoder {type(self.encoder).__name__} reads waveforms: pass prompt_wav")
            x, lens = prompt_wav, prompt_lens
        else:
            if prompt_feats is None:
                if prompt_wav is None:
                    raise ValueError("pass prompt_wav or prompt_feats")
                prompt_feats, prompt_feat_lens = self.frontend(prompt_wav, prompt_lens)
            x, lens = prompt_feats, prompt_feat_lens
            if self.training and self.prompt_augment is not None:
                x = self.prompt_augment(x, lens)
        if lens is None:
            lens = torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=x.device)
        return self.encoder(x, lens.to(x.device))

    def frame_step_embedding(self, steps):
        """What ``frame_positions`` adds to the input of frame step(s) ``steps`` ([N, d]; 0 when off).

        Example:
            the input of frame step j is ``prenet(previous frames) + frame_step_embedding(j)``.
        """
        steps = torch.as_tensor(steps, device=self.device).reshape(-1)
        if self.frame_positions is None:
            return torch.zeros(len(steps), self.lm.d_model, device=self.device, dtype=self.projection.weight.dtype)
        half = self.lm.d_model // 2
        rates = torch.exp(-math.log(10000.0) * torch.arange(half, device=self.device) / max(half, 1))
        angles = steps.float()[:, None] * rates[None]
        encoding = torch.cat([angles.sin(), angles.cos()], dim=-1)
        if encoding.shape[-1] < self.lm.d_model:
            encoding = nn.functional.pad(encoding, (0, self.lm.d_model - encoding.shape[-1]))
        return self.frame_positions(encoding.to(self.frame_positions.weight.dtype))

    def set_frame_stats(self, mean, std):
        """Set the per-bin statistics of ``normalize_frames`` (training frames' mean and standard deviation)."""
        if not self.normalize_frames:
            raise ValueError("this model does not normalise frames (normalize_frames=False)")
        mean, std = torch.as_tensor(mean).float().reshape(-1), torch.as_tensor(std).float().reshape(-1)
        if mean.numel() != self.n_mels or std.numel() != self.n_mels:
            raise ValueError(f"frame statistics need {self.n_mels} values per bin, got {mean.numel()} and {std.numel()}")
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
            raise ValueError("frame statistics must be finite with std > 0")
        self.frame_mean.copy_(mean)
        self.frame_std.copy_(std)

    def to_decoder_units(self, frames):
        """Front-end frames [..., F] -> what the decoder reads and writes (normalised when ``normalize_frames``)."""
        if not self.normalize_frames:
            return frames
        return (frames - self.frame_mean.to(frames.dtype)) / self.frame_std.to(frames.dtype)

    def from_decoder_units(self, frames):
        """Decoder frames [..., F] -> front-end units (the inverse of :meth:`to_decoder_units`)."""
        if not self.normalize_frames:
            return frames
        return frames * self.frame_std.to(frames.dtype) + self.frame_mean.to(frames.dtype)

    def group_frames(self, frames):
        """[B, T, F] -> [B, ceil(T/r), F*r] (zero-padded at the end)."""
        batch, time_steps, n_bins = frames.shape
        groups = math.ceil(time_steps / self.r)
        frames = nn.functional.pad(frames, (0, 0, 0, groups * self.r - time_steps))
        return frames.reshape(batch, groups, n_bins * self.r)

    def ungroup_frames(self, grouped):
        """[B, G, F*r] -> [B, G*r, F]."""
        return grouped.reshape(grouped.shape[0], -1, self.n_mels)

    # ------------------------------------------------------------------ training
    def forward(self, batch, attention_layers=()):
        """Teacher-forced pass. Returns the predictions (outputs dict) that the objective
        (``spectron_kit.losses.SpectronLoss``, applied by the recipe) scores.

        ``batch`` keys: ``prompt_wav``/``prompt_lens`` (or ``prompt_feats``/
        ``prompt_feat_lens``, or encoder outputs ``prompt_encoded``/
        ``prompt_encoded_lens``), ``tokens``/``token_lens`` (transcript ids, no
        sos/eos), ``cont_wav``/``cont_lens`` (or ``cont_feats``/``cont_feat_lens``);
        for interleaved phonemes ``phones``/``phone_groups``/``phone_lens``/``phone_ends``.
        ``attention_layers``: decoder layers whose attention probabilities are
        recorded in ``outputs["attention"]`` (``SpectronLoss.attention_layers``).
        """
        prefix, prefix_lens = self.encode_prompt(
            batch.get("prompt_wav"), batch.get("prompt_lens"), batch.get("prompt_feats"),
            batch.get("prompt_feat_lens"), batch.get("prompt_encoded"), batch.get("prompt_encoded_lens"))
        target, target_lens = self._target_frames(batch)          # [B, T, F] in decoder units
        tokens, token_lens = batch["tokens"].to(self.device), batch["token_lens"].to(self.device)
        if not self.intermediate_text:  # frames right after <sos>: no text is read or written
            token_lens = torch.zeros_like(token_lens)
        grouped = self.group_frames(target)                     # [B, G, F*r]
        group_lens = torch.div(target_lens + self.r - 1, self.r, rounding_mode="floor")
        embeds, mask, layout, speech = self._teacher_forced_sequence(batch, prefix, prefix_lens, tokens, token_lens,
                                                                     grouped, group_lens)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        record = list(attention_layers or ())
        recording = self.lm.record_attention(record) if record else contextlib.nullcontext({})
        with recording as attention:
            hidden, _ = self.lm(embeds, mask, positions)
        out = self._teacher_forced_outputs(hidden, layout, speech, tokens, grouped, group_lens)
        if batch.get("rehearsal_tokens") is not None:  # text-only batches: the LM's own language modelling
            out.update(self.rehearsal_outputs(batch["rehearsal_tokens"], batch["rehearsal_lens"]))
        pred, coarse = out.pop("pred"), out.pop("coarse")
        out.update({"pred_frames": pred[:, : target.shape[1]],
                    "coarse_frames": coarse[:, : target.shape[1]] if coarse is not None else None,
                    "target_frames": target, "frame_lens": target_lens,
                    "attention": {layer: probs[0] for layer, probs in attention.items() if probs}})
        return out

    def rehearsal_outputs(self, tokens, lengths):
        """The LM alone on text: ``[<sos>] + tokens`` in, ``tokens + [<eos>]`` as targets (-100 on padding).
        Returns ``{"rehearsal_logits": [B, N + 1, V], "rehearsal_targets": [B, N + 1]}``."""
        tokens, lengths = tokens.to(self.device).long(), lengths.to(self.device).long()
        batch_size, width = tokens.shape
        sos = torch.full((batch_size, 1), self.lm.sos_id, dtype=torch.long, device=self.device)
        inputs = torch.cat([sos, tokens.clamp(min=0)], dim=1)
        mask = (torch.arange(width + 1, device=self.device)[None] <= lengths[:, None]).long()
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        hidden, _ = self.lm(self.lm.embed(inputs), mask, positions)
        targets = torch.full((batch_size, width + 1), -100, dtype=torch.long, device=self.device)
        for i, n in enumerate(lengths.tolist()):
            targets[i, :n] = tokens[i, :n]
            targets[i, n] = self.lm.eos_id
        return {"rehearsal_logits": self.lm.logits(hidden), "rehearsal_targets": targets}

    def _target_frames(self, batch):
        """The continuation's frames in decoder units and their lengths (from ``cont_feats`` or the audio)."""
        if batch.get("cont_feats") is not None:
            target, target_lens = batch["cont_feats"].to(self.device), batch["cont_feat_lens"].to(self.device)
        else:
            with torch.no_grad():
                target, target_lens = self.frontend(batch["cont_wav"].to(self.device),
                                                    batch["cont_lens"].to(self.device))
        return self.to_decoder_units(target.float()), target_lens

    def _teacher_forced_sequence(self, batch, prefix, prefix_lens, tokens, token_lens, grouped, group_lens):
        """Each item's LM input: [prefix][<sos> tokens][speech section], padded. Returns ``(embeds [B, L, d],
        mask [B, L], layout [(prefix, tokens, speech steps)], interleaved sections or [])``."""
        device, batch_size = self.device, tokens.shape[0]
        go = torch.zeros_like(grouped[:, :1])
        fed = grouped
        if self.training and self.self_feeding:
            fed = self._fed_frames(batch, grouped)
        # frame_inputs[:, j] = pre-net of the group before step j (j = 0: the go frame)   [B, G + 1, d]
        frame_inputs = self.prenet(torch.cat([go, fed], dim=1).to(prefix.dtype))
        frame_inputs = frame_inputs + self.frame_step_embedding(torch.arange(frame_inputs.shape[1], device=device))
        sos = torch.full((batch_size, 1), self.lm.sos_id, dtype=torch.long, device=device)
        text_inputs = self.lm.embed(torch.cat([sos, tokens], dim=1)).to(prefix.dtype)  # [B, N+1, d]
        pieces, layout, speech = [], [], []
        for i in range(batch_size):
            p, n, g = int(prefix_lens[i]), int(token_lens[i]), int(group_lens[i])
            if self.interleave_phonemes:  # [go][ph][g][g][ph][g]...: see spectron_kit.phonemes
                section = self._interleaved_section(batch, i, g, frame_inputs[i])
                speech.append(section)
                speech_inputs = section["inputs"]
            else:                         # [go][g_1]..[g_{G-1}]: the paper
                speech_inputs = frame_inputs[i, :g]
            pieces.append(torch.cat([prefix[i, :p], text_inputs[i, : n + 1], speech_inputs]))
            layout.append((p, n, len(speech_inputs)))
        embeds = nn.utils.rnn.pad_sequence(pieces, batch_first=True)   # [B, L, d]
        lengths = torch.tensor([len(x) for x in pieces], device=device)
        mask = (torch.arange(embeds.shape[1], device=device)[None] < lengths[:, None]).long()
        return embeds, mask, layout, speech

    def _teacher_forced_outputs(self, hidden, layout, speech, tokens, grouped, group_lens):
        """The predictions read off the LM's hidden states: text logits and targets, frame groups through the
        post-net (``pred``, and ``coarse`` before a refining post-net, both ungrouped), stop logits, layout,
        and the interleaved phonemes' outputs."""
        batch_size, device = tokens.shape[0], self.device
        max_n, max_g = tokens.shape[1] + 1, grouped.shape[1]
        text_hidden = hidden.new_zeros(batch_size, max_n, hidden.shape[-1])
        frame_hidden = hidden.new_zeros(batch_size, max_g, hidden.shape[-1])
        text_targets = torch.full((batch_size, max_n), -100, dtype=torch.long, device=device)
        for i, (p, n, m) in enumerate(layout):
            text_hidden[i, : n + 1] = hidden[i, p: p + n + 1]
            if self.interleave_phonemes:   # the steps whose target is a group, in group order
                g = len(speech[i]["group_steps"])
                frame_hidden[i, :g] = hidden[i, p + n + 1 + speech[i]["group_steps"]]
            else:
                frame_hidden[i, :m] = hidden[i, p + n + 1: p + n + 1 + m]
            text_targets[i, :n] = tokens[i, :n]
            text_targets[i, n] = self.lm.eos_id
        text_logits = self.lm.logits(text_hidden)
        groups_out = self.postnet(frame_hidden)                       # [B, G, F*r]
        coarse = None
        if callable(getattr(self.postnet, "refine", None)):  # a post-net that refines the whole sequence
            coarse = self.ungroup_frames(groups_out)
            groups_out = self.postnet.refine(groups_out, group_lens)
        stop_logits = self.stop_head(frame_hidden).squeeze(-1) if self.stop_head is not None else None
        out = {"pred": self.ungroup_frames(groups_out), "coarse": coarse,
               "text_logits": text_logits, "text_targets": text_targets,
               "stop_logits": stop_logits, "stop_lengths": group_lens if stop_logits is not None else None,
               "layout": torch.tensor(layout, dtype=torch.long, device=device)}
        if self.interleave_phonemes:
            out.update(self._interleaved_outputs(hidden, layout, speech))
        return out

    def _interleaved_section(self, batch, i, n_groups, frame_inputs):
        """Inputs and targets of item ``i``'s interleaved speech section (``spectron_kit.phonemes``).

        ``frame_inputs`` [G + 1, d]: the go frame's and every group's pre-net
        output. Events are the phoneme tokens and groups in speaking order
        (``<end>`` last when the speech ends in the window); the section's
        inputs are [go, event_1 .. event_{M-1}] and step m's target is event_{m+1}.

        Returns a dict: ``inputs`` [M, d], ``group_steps`` [G] (the step whose
        target is each group), ``gate`` [M] (1: a phoneme comes next),
        ``phones`` [M] (its id, -100 where a group comes next).
        """
        if batch.get("phones") is None:
            raise ValueError("this model interleaves phonemes: the batch needs phones, phone_groups, phone_lens "
                             "and phone_ends (spectron_kit.phonemes.phone_events of each utterance's phone_times)")
        device = frame_inputs.device
        k = int(batch["phone_lens"][i])
        ids = [int(x) for x in batch["phones"][i, :k]]
        counts = _fit_counts([int(x) for x in batch["phone_groups"][i, :k]], n_groups)
        if not ids:  # no phoneme timings for this item: one unknown phoneme owns every group
            ids, counts = [1], [n_groups]
        kinds, values = [], []   # 0: phoneme (value = id), 1: group (value = group index)
        group_phone, group_within = [], []  # per group: its phoneme and its index within it
        group = 0
        for phone, count in zip(ids, counts):
            kinds.append(0)
            values.append(phone)
            for k in range(count):
                kinds.append(1)
                values.append(group)
                group_phone.append(phone)
                group_within.append(k)
                group += 1
        if bool(batch["phone_ends"][i]):
            kinds.append(0)
            values.append(0)  # <end>
        kinds_t = torch.tensor(kinds, device=device)
        values_t = torch.tensor(values, device=device)
        fed_kinds, fed_values = kinds_t[:-1], values_t[:-1]
        inputs = frame_inputs.new_zeros(len(kinds), frame_inputs.shape[-1])
        inputs[0] = frame_inputs[0]                                          # go
        is_phone = fed_kinds == 0
        inputs[1:][is_phone] = self.phone_embedding(fed_values[is_phone]).to(inputs.dtype)
        fed_groups = fed_values[~is_phone]
        group_inputs = frame_inputs[fed_groups + 1]                            # pre-net of group j
        if self.phone_context:
            group_inputs = group_inputs + self.phone_step_context(
                torch.tensor(group_phone, device=device)[fed_groups],
                torch.tensor(group_within, device=device)[fed_groups]).to(group_inputs.dtype)
        inputs[1:][~is_phone] = group_inputs
        gate = (kinds_t == 0).long()
        phones = torch.where(kinds_t == 0, values_t, torch.full_like(values_t, -100))
        group_steps = torch.nonzero(kinds_t == 1).squeeze(-1)
        if self.phoneme_list:  # [start ph_1 .. ph_K] -> [ph_1 .. ph_K <end>], then the speech that reads it
            listed = torch.tensor(ids + [0], device=device)
            list_inputs = torch.cat([self.phone_list_start[None].to(inputs.dtype),
                                     self.phone_embedding(listed[:-1]).to(inputs.dtype)])
            inputs = torch.cat([list_inputs, inputs])
            gate = torch.cat([torch.full_like(listed, -1), gate])
            phones = torch.cat([listed, torch.full_like(phones, -100)])  # the speech's phonemes come from the list
            group_steps = group_steps + len(listed)
        return {"inputs": inputs, "group_steps": group_steps, "gate": gate, "phones": phones}

    def phone_step_context(self, phones, within):
        """What ``phone_context`` adds to a frame step's input: its phoneme's and its index's embeddings [N, d]."""
        within = within.clamp(max=self.max_phone_groups)
        return self.phone_embedding(phones) + self.within_phone(within)

    def _interleaved_outputs(self, hidden, layout, speech):
        """Gate and phoneme logits of every interleaved speech step, padded: -1 / -100 targets where none."""
        batch_size, width = len(layout), max(m for _, _, m in layout)
        steps = hidden.new_zeros(batch_size, width, hidden.shape[-1])
        gate_targets = torch.full((batch_size, width), -1, dtype=torch.long, device=hidden.device)
        phone_targets = torch.full((batch_size, width), -100, dtype=torch.long, device=hidden.device)
        for i, (p, n, m) in enumerate(layout):
            steps[i, :m] = hidden[i, p + n + 1: p + n + 1 + m]
            gate_targets[i, :m] = speech[i]["gate"]
            phone_targets[i, :m] = speech[i]["phones"]
        return {"gate_logits": self.gate_head(steps).squeeze(-1), "gate_targets": gate_targets,
                "phone_logits": self.phone_head(steps), "phone_targets": phone_targets}

    @torch.no_grad()
    def _fed_frames(self, batch, grouped):
        """Frame inputs for self-feeding: each step's input is, with probability ``self_feeding``, the
        model's own teacher-forced prediction of that group instead of the true one."""
        was = self.self_feeding
        self.self_feeding = 0.0
        try:
            out = self.forward(batch)  # what generation feeds back: the step-by-step frames
            own = self.group_frames((out["coarse_frames"] if out["coarse_frames"] is not None
                                     else out["pred_frames"]).detach())
        finally:
            self.self_feeding = was
        own = own[:, : grouped.shape[1]].to(grouped.dtype)
        use_own = torch.rand(grouped.shape[:2], device=grouped.device) < self.self_feeding
        return torch.where(use_own[..., None], own, grouped)

    @torch.no_grad()
    def teacher_forced_frames(self, prompt_wav, prompt_lens, texts, cont_wav, cont_lens, phone_times=None):
        """Frames the model predicts when fed the true transcript and the true previous frames.

        With pre-net dropout kept on at inference (as in ``generate``), this is
        what the model would say if it never drifted from the reference: set
        against ``generate``'s free-running frames it separates alignment
        from exposure bias.

        Arguments:
            prompt_wav [B, S], prompt_lens [B]: prompts.
            texts: the whole transcript of each utterance (prompt and continuation),
                as strings or as lists of token ids.
            cont_wav [B, S'], cont_lens [B]: the reference continuations.
            phone_times: for a model that interleaves phonemes, each utterance's
                phoneme timings (``[(phoneme, start_s, end_s), ...]`` from the
                start of the prompt, or the ``phone_times`` manifest text).
        Returns:
            list of [T_i, F] predicted frames (T_i = the reference's frame count),
            in the front end's units.
        """
        was_training = self.training
        self.eval()
        try:
            device = self.device
            ids = [torch.tensor(self.lm.encode(t) if isinstance(t, str) else list(t), dtype=torch.long)
                   for t in texts]
            batch = {"prompt_wav": prompt_wav.to(device), "prompt_lens": prompt_lens.to(device),
                     "cont_wav": cont_wav.to(device), "cont_lens": cont_lens.to(device),
                     "tokens": nn.utils.rnn.pad_sequence(ids, batch_first=True).to(device) if ids else None,
                     "token_lens": torch.tensor([len(i) for i in ids], device=device)}
            if self.interleave_phonemes:
                batch.update(self.phone_batch(phone_times, prompt_lens, cont_lens))
            out = self.forward(batch)
            frames = self.from_decoder_units(out["pred_frames"].float())
            return [frames[i, : int(n)].cpu() for i, n in enumerate(out["frame_lens"])]
        finally:
            self.train(was_training)

    def phone_batch(self, phone_times, prompt_lens, cont_lens):
        """The interleaved speech sections' batch keys from phoneme timings (``spectron_kit.phonemes``).

        Arguments:
            phone_times: per item, ``[(phoneme, start_s, end_s), ...]`` or the ``phone_times``
                manifest text, timed from the start of the prompt.
            prompt_lens, cont_lens: prompt and continuation lengths in samples [B].
        """
        from spectron_kit.data.manifest import parse_phone_times
        from spectron_kit.phonemes import continuation_events, pad_events

        if phone_times is None:
            raise ValueError("this model interleaves phonemes: teacher forcing needs each utterance's phoneme "
                             "timings (phone_times)")
        spec = self.frontend.spec
        events = [continuation_events(parse_phone_times(timing) if isinstance(timing, str) else timing,
                                      self.phone_vocab, spec, self.r, int(prompt_lens[i]) / spec.sample_rate,
                                      cont_lens[i])
                  for i, timing in enumerate(phone_times)]
        return pad_events(events, self.device)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def generate(self, prompt_wav=None, prompt_lens=None, prompt_feats=None, prompt_feat_lens=None,
                 num_frames=None, max_seconds=None, stop=None, max_text_tokens=None,
                 do_sample=False, temperature=1.0, top_k=0, top_p=1.0, use_cache=True, vocode=True,
                 forced_text=None, forced_phonemes=None):
        """One decoding pass: text until <eos>, then frames until the stop rule fires.

        Arguments:
            prompt_wav [B, S] or [S] (+ prompt_lens), or prompt_feats [B, T, F].
            num_frames: frame budget per item (int or [B]); e.g. the reference
                length for evaluation. Default: ``max_seconds`` of frames.
            stop: "budget" (exactly the budget) or "stop_head" (learned gate,
                capped by the budget). Default: the model's ``stop``.
            max_text_tokens: text budget (tokens) before frames are forced.
            do_sample, temperature, top_k, top_p: text sampling (greedy by default).
            use_cache: KV cache (a step costs the same at frame 10 and 500);
                False recomputes the whole sequence every step (for checks).
            vocode: run the vocoder on the frames when the model has one.
            forced_text: optional list of token-id lists used instead of
                decoding text (ablations and teacher-forced evaluation).
            forced_phonemes: for a model that interleaves phonemes, optional
                lists of phoneme names (or ids) spoken instead of the ones it
                would write (durations and frames stay the model's).
        Returns:
            SpectronOutput.
        """
        was_training = self.training
        self.eval()
        try:
            return self._generate(prompt_wav, prompt_lens, prompt_feats, prompt_feat_lens, num_frames,
                                  max_seconds, stop or self.stop, max_text_tokens or self.max_text_tokens,
                                  do_sample, temperature, top_k, top_p, use_cache, vocode, forced_text,
                                  forced_phonemes)
        finally:
            self.train(was_training)

    def _generate(self, prompt_wav, prompt_lens, prompt_feats, prompt_feat_lens, num_frames, max_seconds,
                  stop, max_text_tokens, do_sample, temperature, top_k, top_p, use_cache, vocode, forced_text,
                  forced_phonemes=None):
        state = self._start_decoding(prompt_wav, prompt_lens, prompt_feats, prompt_feat_lens, num_frames,
                                     max_seconds, stop, max_text_tokens, (do_sample, temperature, top_k, top_p),
                                     use_cache, forced_text, forced_phonemes)
        while self._decode_step(state):
            pass
        return self._finish_decoding(state, vocode)

    def stream(self, prompt_wav, prompt_lens=None, num_frames=None, max_seconds=None, stop=None,
               max_text_tokens=None, do_sample=False, temperature=1.0, top_k=0, top_p=1.0, chunk_frames=16,
               max_chunk_frames=64, vocoder_stream=None):
        """Generate one continuation as events, as they happen (the KV cache throughout).

        Yields :class:`StreamEvent`: ``"text"`` for every text token written (``text``: the piece it adds),
        ``"speech"`` when the text is done and the speech starts, ``"audio"`` after ``chunk_frames`` new
        frames, then twice as many each time up to ``max_chunk_frames`` (``frames`` [T, F] and ``audio``:
        their waveform, from the vocoder's stream, see :mod:`spectron_kit.vocoder_stream`), and ``"end"``
        with the whole :class:`SpectronOutput`
        (its waveform is the streamed audio joined). The frames are those of :meth:`generate` with the same
        arguments and seed: a refining post-net's frames are sent once the groups it reads after them exist
        (``postnet.lookahead_groups``).

        Arguments:
            prompt_wav: one prompt [S] (or [1, S]); the other arguments as for :meth:`generate`.
            chunk_frames: frames of the first audio event (fewer: earlier first audio).
            max_chunk_frames: the most frames per later event (more: fewer vocoder calls, less overhead).
            vocoder_stream: a stream object (``push`` / ``flush``); default ``open_stream(self.vocoder)``.
        """
        wav = torch.as_tensor(prompt_wav)
        if wav.dim() == 1:
            wav = wav[None]
        if wav.shape[0] != 1:
            raise ValueError(f"stream() continues one prompt at a time, got a batch of {wav.shape[0]}; "
                             "use generate() for batches")
        if self.vocoder is None:
            raise ValueError("stream() needs a vocoder; load the model with vocoder=build('vocoder', ...)")
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                yield from self._stream(wav, prompt_lens, num_frames, max_seconds, stop or self.stop,
                                        max_text_tokens or self.max_text_tokens, (do_sample, temperature, top_k,
                                                                                  top_p), int(chunk_frames),
                                        max(int(max_chunk_frames), int(chunk_frames)), vocoder_stream)
        finally:
            self.train(was_training)

    def _stream(self, wav, prompt_lens, num_frames, max_seconds, stop, max_text_tokens, sampling, chunk_frames,
                max_chunk_frames, vocoder_stream):
        state = self._start_decoding(wav, prompt_lens, None, None, num_frames, max_seconds, stop, max_text_tokens,
                                     sampling, True, None, None)
        voice = vocoder_stream or open_stream(self.vocoder, self.frontend.spec.hop_length)
        lookahead = int(getattr(self.postnet, "lookahead_groups", 0)) if callable(
            getattr(self.postnet, "refine", None)) else 0
        written, sent, audio, in_text, ended = "", 0, [], True, False
        going = True
        while going:
            going = self._decode_step(state)
            if in_text:
                text = self.lm.decode(state.tokens[0]) if self.lm.tokenizer is not None else ""
                if len(text) > len(written):
                    yield StreamEvent("text", text=text[len(written):])
                    written = text
                if state.phase[0] != TEXT:
                    in_text = False
                    yield StreamEvent("speech", text=text)
            if going:
                ready = (len(state.groups[0]) - lookahead) * self.r
                if ready - sent < chunk_frames:
                    continue
                frames = self._streamed_frames(state, ready)
            else:  # the whole output once: its frames are the last chunk's
                out = self._finish_decoding(state, vocode=False)
                frames = out.frames[0]
            if frames is not None and len(frames) > sent:
                new = frames[sent:]
                chunk = voice.push(new.float()) if going else finish_stream(voice, new.float())
                ended = not going
                sent = len(frames)
                chunk_frames = min(2 * chunk_frames, max_chunk_frames)  # the first soon, then fewer vocoder calls
                audio.append(chunk)
                yield StreamEvent("audio", frames=new, audio=chunk)
        tail = torch.zeros(0) if ended else voice.flush()
        if len(tail):
            audio.append(tail)
            yield StreamEvent("audio", frames=torch.zeros(0, self.n_mels), audio=tail)
        out.waveforms = [torch.cat(audio) if audio else torch.zeros(0)]
        yield StreamEvent("end", output=out)

    def _streamed_frames(self, state, ready):
        """Item 0's first ``ready`` frames so far, in the front end's units; None when there are none yet."""
        if not state.groups[0] or ready <= 0:
            return None
        return self._item_frames(state, 0)[:ready]

    def _item_frames(self, state, i):
        """Item ``i``'s frames so far: its groups refined by a refining post-net (it reads both sides), in the
        front end's units, cut to the budget when the budget ended it."""
        if not state.groups[i]:
            return torch.zeros(0, self.n_mels, device=self.device)
        stacked = torch.stack(state.groups[i])[None]                 # [1, G, F*r]
        refine = getattr(self.postnet, "refine", None)
        if callable(refine):
            stacked = refine(stacked.to(state.dtype)).float()
        item = self.from_decoder_units(self.ungroup_frames(stacked)[0])
        return item[: int(state.budget[i])] if state.stopped_by[i] == "budget" else item

    # -- one decoding pass in steps: start, step (text / phoneme list / phonemes / frames), finish ------------
    def _start_decoding(self, prompt_wav, prompt_lens, prompt_feats, prompt_feat_lens, num_frames, max_seconds,
                        stop, max_text_tokens, sampling, use_cache, forced_text, forced_phonemes):
        """Check the request, encode the prompts and lay out the first LM input: ``[prefix][<sos>]`` per item,
        left-padded so all items reach ``<sos>`` at the same position. Returns the ``_Decoding`` state."""
        device = self.device
        if stop not in ("budget", "stop_head"):
            raise ValueError(f"stop={stop!r}; use 'budget' or 'stop_head'")
        if stop == "stop_head" and self.stop_head is None:
            raise ValueError("stop='stop_head' but this model has no stop head; use stop='budget'")
        if prompt_wav is not None:
            prompt_wav = prompt_wav.to(device)
            if prompt_wav.dim() == 1:
                prompt_wav = prompt_wav[None]
            prompt_lens = prompt_lens.to(device) if prompt_lens is not None else None
        if prompt_feats is not None:
            prompt_feats = prompt_feats.to(device)
            if prompt_feats.dim() == 2:
                prompt_feats = prompt_feats[None]
            prompt_feat_lens = prompt_feat_lens.to(device) if prompt_feat_lens is not None else None
        started = time.perf_counter()
        prefix, prefix_lens = self.encode_prompt(prompt_wav, prompt_lens, prompt_feats, prompt_feat_lens)
        batch_size, width = prefix.shape[0], prefix.shape[1]
        if not self.intermediate_text and forced_text is None:  # trained without text: frames at once
            forced_text = [[] for _ in range(batch_size)]
        budget = self._frame_budget(num_frames, max_seconds, batch_size)
        if forced_phonemes is not None:
            if self.phone_vocab is None:
                raise ValueError("forced_phonemes needs a model that interleaves phonemes (interleave_phonemes=True)")
            forced_phonemes = [[int(p) for p in (self.phone_vocab.ids(item) if item and isinstance(item[0], str)
                                                 else item)] for item in forced_phonemes]
        embeds = prefix.new_zeros(batch_size, width + 1, prefix.shape[-1])
        mask = torch.zeros(batch_size, width + 1, dtype=torch.long, device=device)
        for i in range(batch_size):
            p = int(prefix_lens[i])
            embeds[i, width - p: width] = prefix[i, :p]
            mask[i, width - p:] = 1
        sos = torch.full((batch_size, 1), self.lm.sos_id, dtype=torch.long, device=device)
        embeds[:, width:] = self.lm.embed(sos).to(prefix.dtype)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return _Decoding(
            batch_size=batch_size, dtype=prefix.dtype, width=prefix.shape[-1], budget=budget,
            budget_groups=torch.div(budget + self.r - 1, self.r, rounding_mode="floor").tolist(), stop=stop,
            max_text_tokens=max_text_tokens, sampling=sampling, use_cache=use_cache, forced_text=forced_text,
            forced_phonemes=forced_phonemes, cache=self.lm.new_cache() if use_cache else None, all_embeds=embeds,
            all_mask=mask, step_input=embeds, step_pos=positions,
            times={"started": started, "encode_s": time.perf_counter() - started, "decoding": time.perf_counter()})

    def _decode_step(self, state):
        """One LM step for every item still decoding: each writes a token, a phoneme of its list, a phoneme of
        its speech or a frame group, by its phase. Returns False once every item is done."""
        if state.use_cache:
            hidden, state.cache = self.lm(state.step_input, state.all_mask, state.step_pos,
                                          past_key_values=state.cache, use_cache=True)
        else:
            full_pos = (state.all_mask.cumsum(-1) - 1).clamp(min=0)
            hidden, _ = self.lm(state.all_embeds, state.all_mask, full_pos)
        last = hidden[:, -1]                                          # [B, d]
        state.n_steps += 1
        state.next_embeds = last.new_zeros(state.batch_size, state.width).to(state.dtype)
        state.active = torch.zeros(state.batch_size, dtype=torch.long, device=last.device)
        rows = {phase: [i for i in range(state.batch_size) if state.phase[i] == phase]
                for phase in (TEXT, LIST, FRAMES)}
        if rows[TEXT]:
            self._text_step(state, last, rows[TEXT])
        if rows[LIST]:
            self._list_step(state, last, rows[LIST])
        frame_rows = rows[FRAMES]
        if frame_rows and self.interleave_phonemes:
            frame_rows = self._phoneme_step(state, last, frame_rows)
        if frame_rows:
            self._frame_step(state, last, frame_rows)
        if "text_done" not in state.times and all(p != TEXT for p in state.phase):
            state.times["text_done"] = time.perf_counter()
        if all(p == DONE for p in state.phase):
            return False
        state.step_input = state.next_embeds[:, None]
        state.all_mask = torch.cat([state.all_mask, state.active[:, None]], dim=1)
        state.step_pos = (state.all_mask.sum(-1, keepdim=True) - 1).clamp(min=0)
        if not state.use_cache:
            state.all_embeds = torch.cat([state.all_embeds, state.step_input], dim=1)
        return True

    def _feed(self, state, row, embedding):
        """``embedding`` is item ``row``'s next LM input (``row`` a list: one embedding per row, one write)."""
        state.next_embeds[row] = embedding.to(state.dtype)
        state.active[row] = 1

    def _speech_start(self, state):
        """The go frame's input (a call each: the pre-net may keep dropout at inference)."""
        go = state.next_embeds.new_zeros(1, self.n_mels * self.r)
        return self.prenet(go)[0] + self.frame_step_embedding(0)[0]

    def _feed_phones(self, state, phones):
        """``{row: phoneme id}``: each row's next input is its phoneme's embedding (one lookup for all)."""
        if phones:
            rows = list(phones)
            ids = torch.tensor([phones[row] for row in rows], device=state.active.device)
            self._feed(state, rows, self.phone_embedding(ids))

    def _text_step(self, state, last, rows):
        """Text rows write a token (or the forced one); ``<eos>`` or the text budget starts the phoneme list
        (``phoneme_list``) or the speech."""
        logits = self.lm.logits(last[rows]).float()
        chosen = self._pick_tokens(logits, *state.sampling)
        written = {}  # row -> token: their embeddings are looked up in one call
        for row, token in zip(rows, chosen.tolist()):
            if state.forced_text is not None:
                step = len(state.tokens[row])
                token = state.forced_text[row][step] if step < len(state.forced_text[row]) else self.lm.eos_id
            if token == self.lm.eos_id or len(state.tokens[row]) >= state.max_text_tokens:
                state.phase[row] = (LIST if self.phoneme_list else FRAMES) if state.budget_groups[row] > 0 else DONE
                if state.phase[row] == LIST:
                    self._feed(state, row, self.phone_list_start)
                elif state.phase[row] == FRAMES:
                    self._feed(state, row, self._speech_start(state))
            else:
                state.tokens[row].append(token)
                written[row] = token
        if written:
            feed = list(written)
            ids = torch.tensor([written[row] for row in feed], device=last.device)
            self._feed(state, feed, self.lm.embed(ids))

    def _list_step(self, state, last, rows):
        """Phoneme-list rows write the next phoneme, until ``<end>`` (or as many phonemes as frame groups)."""
        logits = self.phone_head(last[rows]).float()
        logits[:, 1] = float("-inf")
        listed = {}
        for row, phone in zip(rows, logits.argmax(-1).tolist()):
            if state.forced_phonemes is not None:
                k = len(state.listed[row])
                phone = state.forced_phonemes[row][k] if k < len(state.forced_phonemes[row]) else 0
            if phone == 0 or len(state.listed[row]) >= int(state.budget_groups[row]):
                state.phase[row] = FRAMES
                self._feed(state, row, self._speech_start(state))
            else:
                state.listed[row].append(phone)
                listed[row] = phone
        self._feed_phones(state, listed)

    def _phoneme_step(self, state, last, rows):
        """Speech rows about to start a phoneme write its token (interleaved phonemes). Returns the rows that
        write a frame group instead."""
        must = {row for row in rows  # the first speech step, or a phoneme that lasted too long
                if state.speech_steps[row] == 0 or state.since_phone[row] >= self.max_phone_groups}
        may = {row for row in rows  # phoneme tokens are capped so the budget is always reached
               if state.speech_steps[row] - len(state.groups[row]) < state.budget_groups[row] + 8}
        if self.phoneme_list:  # the next phoneme is the list's next; a finished list only adds groups
            may = {row for row in may if len(state.phones[row]) < len(state.listed[row])}
        phone_rows = self._phoneme_steps(last, rows, must, may, state.stop, state.survival)
        sequence = state.listed if self.phoneme_list else state.forced_phonemes  # decided before the speech
        if sequence is not None:
            phone_rows = {row: _next_listed(sequence[row], state.phones[row]) for row in phone_rows}
        spoken = {}
        for row, phone in phone_rows.items():
            state.speech_steps[row] += 1
            if phone == 0:  # <end>: the speech is over
                state.phase[row], state.stopped_by[row] = DONE, "end"
                continue
            state.phones[row].append(phone)
            state.since_phone[row] = 0
            state.survival[row] = 1.0
            spoken[row] = phone
        self._feed_phones(state, spoken)
        return [row for row in rows if row not in phone_rows]

    def _frame_step(self, state, last, rows):
        """Speech rows write a frame group; the budget or the stop head ends an item, else the group (through
        the pre-net) is its next input."""
        frame_hidden = last[rows]
        new_groups = self.postnet(frame_hidden).float()          # [b, F*r]
        stop_prob = (torch.sigmoid(self.stop_head(frame_hidden).float()).squeeze(-1).tolist()
                     if self.stop_head is not None and state.stop == "stop_head" else None)
        going = []  # (k, row) of the rows whose group is their next input
        for k, row in enumerate(rows):
            state.groups[row].append(new_groups[k])
            state.speech_steps[row] += 1
            state.since_phone[row] += 1
            if len(state.groups[row]) >= state.budget_groups[row]:
                state.phase[row] = DONE
            elif state.stop == "stop_head" and stop_prob[k] > self.stop_threshold:
                state.phase[row], state.stopped_by[row] = DONE, "stop_head"
            else:
                going.append((k, row))
        if not going:
            return
        device = last.device
        ks, feed = [k for k, _ in going], [row for _, row in going]  # one batched call each, not one per row
        embedding = (self.prenet(new_groups[ks].to(state.dtype))
                     + self.frame_step_embedding([len(state.groups[row]) for row in feed]))
        if self.phone_context:
            embedding = embedding + self.phone_step_context(
                torch.tensor([state.phones[row][-1] for row in feed], device=device),
                torch.tensor([state.since_phone[row] - 1 for row in feed], device=device)).to(state.dtype)
        self._feed(state, feed, embedding)

    def _finish_decoding(self, state, vocode):
        """Frames of every item (refined by a refining post-net, in the front end's units, cut to the budget),
        audio, timing: the ``SpectronOutput``."""
        decoded = time.perf_counter()
        text_done = state.times.get("text_done", decoded)
        frames = [self._item_frames(state, i) for i in range(state.batch_size)]
        waveforms, t_vocoder = None, 0.0
        if vocode and self.vocoder is not None:
            started = time.perf_counter()
            waveforms = self.vocode(frames)
            t_vocoder = time.perf_counter() - started
        n_frames = sum(len(f) for f in frames)
        total = state.times["encode_s"] + (decoded - state.times["decoding"]) + t_vocoder
        audio_seconds = n_frames / self.frame_rate
        timing = {"encode_s": state.times["encode_s"], "text_s": text_done - state.times["decoding"],
                  "frames_s": decoded - text_done, "vocoder_s": t_vocoder, "total_s": total,
                  "decoder_steps": state.n_steps, "text_tokens": sum(len(t) for t in state.tokens),
                  "frames": n_frames, "frames_per_second": n_frames / max(decoded - text_done, 1e-9),
                  "real_time_factor": total / audio_seconds if audio_seconds else float("nan")}
        text = [self.lm.decode(t) if self.lm.tokenizer is not None else "" for t in state.tokens]
        sample_rate = self.vocoder.sample_rate if self.vocoder is not None else self.frontend.spec.sample_rate
        written = [self.phone_vocab.names(p) for p in state.phones] if self.phone_vocab is not None else []
        listed = [self.phone_vocab.names(p) for p in state.listed] if self.phoneme_list else []
        return SpectronOutput(text, state.tokens, frames, waveforms, sample_rate, timing, state.stopped_by, written,
                              listed)

    def _phoneme_steps(self, last, rows, must, may, stop, survival):
        """Rows whose next speech step is a phoneme token, and that token: ``{row: phoneme id}``.

        A row in ``must`` writes a phoneme; one in ``may`` writes one when its
        gate says so. The gate is a hazard: the probability that the phoneme
        ends at this step. Under ``gate_rule="median"`` a phoneme ends once the
        probability that it lasts longer (``survival[row]``, the product of
        ``1 - gate`` since it started) falls below one half, the median of the
        duration the gate predicts; ``"threshold"`` ends it at the first step
        whose gate exceeds one half (which lengthens phonemes whose ending is
        spread over several steps). ``<end>`` (id 0) ends the speech, except
        under the "budget" rule (exactly the budget is spoken); ``<unk>`` is
        never written.
        """
        hidden = last[rows]
        gate = torch.sigmoid(self.gate_head(hidden).float()).squeeze(-1).tolist()
        logits = self.phone_head(hidden).float()
        logits[:, 1] = float("-inf")
        if stop == "budget":
            logits[:, 0] = float("-inf")
        chosen = logits.argmax(-1).tolist()
        out = {}
        for k, row in enumerate(rows):
            if row in must:
                out[row] = int(chosen[k])
            elif row in may:
                survival[row] *= 1.0 - gate[k]
                if (survival[row] < 0.5) if self.gate_rule == "median" else (gate[k] > 0.5):
                    out[row] = int(chosen[k])
        return out

    def _frame_budget(self, num_frames, max_seconds, batch_size):
        device = self.device
        if num_frames is None:
            seconds = self.max_seconds if max_seconds is None else float(max_seconds)
            num_frames = to_samples(seconds, self.frame_rate)
        budget = torch.as_tensor(num_frames, dtype=torch.long, device=device).reshape(-1)
        if budget.numel() == 1:
            budget = budget.expand(batch_size).clone()
        if budget.numel() != batch_size or (budget < 0).any():
            raise ValueError(f"num_frames must be one non-negative count or one per item "
                             f"({batch_size}), got {num_frames!r}")
        return budget

    @staticmethod
    def _pick_tokens(logits, do_sample, temperature, top_k, top_p):
        if not do_sample:
            return logits.argmax(-1)
        logits = logits / max(float(temperature), 1e-5)
        if top_k and top_k > 0:
            kth = torch.topk(logits, min(int(top_k), logits.shape[-1]), dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if top_p < 1.0:
            sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
            cumulative = sorted_logits.softmax(-1).cumsum(-1)
            remove = cumulative - sorted_logits.softmax(-1) > top_p
            sorted_logits = sorted_logits.masked_fill(remove, float("-inf"))
            logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
        return torch.multinomial(logits.softmax(-1), 1).squeeze(-1)

    @torch.no_grad()
    def vocode(self, frames):
        """List of [T_i, F] frames -> list of waveforms [S_i] via the model's vocoder."""
        if self.vocoder is None:
            raise ValueError("this model has no vocoder; build it with vocoder=... or pass one to from_pretrained")
        lengths = torch.tensor([len(f) for f in frames])
        if lengths.max() == 0:
            return [torch.zeros(0) for _ in frames]
        # frames may come back on the CPU (teacher_forced_frames); the vocoder is a submodule, on the model's device
        padded = nn.utils.rnn.pad_sequence([f.float().to(self.device) for f in frames], batch_first=True)
        wav, wav_lens = self.vocoder(padded, lengths)
        return [wav[i, : int(wav_lens[i])].cpu() for i in range(len(frames))]

    # ------------------------------------------------------------------ bundles
    def save_pretrained(self, directory):
        """Write a self-contained inference bundle: config, weights, tokenizer, feature spec
        (``spectron_kit.bundle``). Returns the folder."""
        return save_bundle(self, directory)

    @classmethod
    def from_pretrained(cls, source, map_location="cpu", **overrides):
        """Load a bundle from a directory (or a hub repo id) written by ``save_pretrained``.

        ``overrides`` replace components (``vocoder=...``) or model settings
        (``stop="budget"``) after loading.
        """
        return load_bundle(cls, source, map_location, overrides)

    def num_parameters(self, trainable_only=False):
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


def _fit_counts(counts, total):
    """Groups per phoneme adjusted to add up to ``total`` (the last phonemes give or take the difference)."""
    counts = [max(int(c), 0) for c in counts]
    diff = total - sum(counts)
    if counts and diff > 0:
        counts[-1] += diff
    k = len(counts) - 1
    while diff < 0 and k >= 0:
        take = min(counts[k], -diff)
        counts[k] -= take
        diff += take
        k -= 1
    return counts


def _check_encoder_features(spec, encoder):
    """Refuse, when the model is assembled, an encoder built for other features than the front end's.

    Checks the encoders that declare what they read (their ``spec``, or
    ``n_mels`` and ``hop_seconds`` in their ``config``) and names the
    mismatching fields; a waveform encoder must read the front end's sample rate.
    """
    if getattr(encoder, "input_kind", "features") == "waveform":  # reads the audio itself: the rate must agree
        rate = getattr(encoder, "sample_rate", None)
        if rate is not None and int(rate) != int(spec.sample_rate):
            raise ValueError(f"frontend and encoder use different audio (sample_rate: frontend={spec.sample_rate} "
                             f"vs encoder={rate}); use the encoder's rate in the feature spec")
        return
    if getattr(encoder, "input_kind", "features") != "features":
        return
    declared = getattr(encoder, "spec", None)
    if declared is not None:  # an encoder that keeps its FeatureSpec: every field is compared
        spec.check_matches(declared, "frontend", "encoder")
        return
    problems = []
    n_mels = getattr(encoder, "n_mels", None)
    if n_mels is not None and int(n_mels) != int(spec.n_mels):
        problems.append(f"n_mels: frontend={spec.n_mels} vs encoder={n_mels}")
    config = getattr(encoder, "config", None)
    hop = config.get("hop_seconds") if isinstance(config, dict) else None
    if hop is not None and abs(float(hop) - spec.hop_seconds) > 1e-9:
        problems.append(f"hop_seconds: frontend={spec.hop_seconds:g} vs encoder={float(hop):g}")
    if problems:
        raise ValueError(f"frontend and encoder use different features ({'; '.join(problems)}); build the encoder "
                         "for the frontend's feature spec (or pre-train one for it)")
