"""Decoder LMs: any Hugging Face causal LM fed with input embeddings, plus tokenizers.

The LM sees ``[speech prefix][<sos> y_1 .. y_n][pre-net frames]`` as input
embeddings, so the only requirements are ``inputs_embeds``, an attention mask,
position ids and a KV cache (a ``DynamicCache``).

A model trained here (sentencepiece tokenizer + small causal LM) and a hub
model load the same way: ``HFCausalLM(source="path/or/hub-id")``.
"""
import contextlib
import json
import logging
import os
import shutil
from pathlib import Path

import torch
from torch import nn

from spectron_kit.errors import source_error
from spectron_kit.freezing import Freezable
from spectron_kit.freezing import freeze as freeze_module
from spectron_kit.hookspecs import hookimpl

logger = logging.getLogger(__name__)

SP_MODEL_FILE = "tokenizer.model"
SP_CONFIG_FILE = "spectron_tokenizer.json"


def growing_cache(config):
    """A transformers ``DynamicCache`` whose full-attention layers append in place.

    ``DynamicLayer.update`` concatenates the whole cache with each step's keys and values, so a step copies
    everything cached before it: at batch 16 that copying is a fifth or more of a cached step. Here each
    layer keeps its keys and values in a buffer with room to spare (doubled when full) and hands attention
    a view of the filled part; the attention results are the same numbers (``tests/unit/test_lm.py``).
    Layers of other kinds (sliding windows, ...) stay transformers' own.
    """
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        buffers = None  # (keys, values) [B, heads, capacity, head_dim], or None before the first step

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            filled, new = self.get_seq_length(), key_states.shape[-2]
            room = self.buffers[0] if self.buffers is not None else None
            if (room is None or filled + new > room.shape[-2] or room.shape[:2] != key_states.shape[:2]
                    or (filled and self.keys.data_ptr() != room.data_ptr())):  # reordered or selected: rebuffer
                shape = (*key_states.shape[:-2], max(64, 2 * (filled + new)), key_states.shape[-1])
                self.buffers = key_states.new_empty(shape), value_states.new_empty(shape)
                if filled:
                    self.buffers[0][..., :filled, :] = self.keys
                    self.buffers[1][..., :filled, :] = self.values
            keys, values = self.buffers
            keys[..., filled: filled + new, :] = key_states
            values[..., filled: filled + new, :] = value_states
            self.keys, self.values = keys[..., : filled + new, :], values[..., : filled + new, :]
            return self.keys, self.values

        def reset(self):
            self.buffers = None
            super().reset()

    cache = DynamicCache(config=config)
    cache.layers = [GrowingLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


class SentencePieceTokenizer:
    """A sentencepiece model with the few methods Spectron needs.

    Arguments:
        model_file: path to a trained ``.model`` file. Its bos/eos ids must be
            defined (train with ``bos_id``/``eos_id`` >= 0).
    """

    def __init__(self, model_file):
        import sentencepiece as spm

        self.model_file = str(model_file)
        self.sp = spm.SentencePieceProcessor(model_file=self.model_file)
        self.bos_token_id = self.sp.bos_id() if self.sp.bos_id() >= 0 else None
        self.eos_token_id = self.sp.eos_id() if self.sp.eos_id() >= 0 else None
        self.pad_token_id = self.sp.pad_id() if self.sp.pad_id() >= 0 else None
        if self.eos_token_id is None:
            raise ValueError(f"sentencepiece model {model_file} has no eos id; retrain it with eos_id >= 0")

    def __len__(self):
        return self.sp.get_piece_size()

    @property
    def vocab_size(self):
        return len(self)

    def encode(self, text):
        return self.sp.encode(text)

    def decode(self, ids):
        special = {self.bos_token_id, self.eos_token_id, self.pad_token_id}
        return self.sp.decode([int(i) for i in ids if int(i) not in special])

    def save_pretrained(self, directory):
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if Path(self.model_file).resolve() != (directory / SP_MODEL_FILE).resolve():
            shutil.copyfile(self.model_file, directory / SP_MODEL_FILE)
        with open(directory / SP_CONFIG_FILE, "w") as f:
            json.dump({"type": "sentencepiece", "model_file": SP_MODEL_FILE}, f)

    @classmethod
    def from_pretrained(cls, directory):
        return cls(Path(directory) / SP_MODEL_FILE)


class HFTokenizer:
    """Adapter giving a transformers tokenizer the same small interface."""

    def __init__(self, tokenizer):
        self.hf = tokenizer
        self.bos_token_id = tokenizer.bos_token_id
        self.eos_token_id = tokenizer.eos_token_id
        self.pad_token_id = tokenizer.pad_token_id
        if self.eos_token_id is None:
            raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has no eos token; "
                             "pass eos_token=... to the lm")

    def __len__(self):
        return len(self.hf)

    @property
    def vocab_size(self):
        return len(self.hf)

    def encode(self, text):
        return self.hf.encode(text, add_special_tokens=False)

    def decode(self, ids):
        return self.hf.decode([int(i) for i in ids], skip_special_tokens=True)

    def save_pretrained(self, directory):
        self.hf.save_pretrained(directory)


#: files that mark a folder as holding a transformers tokenizer (not our sentencepiece one)
HF_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json")


def load_tokenizer(source, local_files_only=False):
    """Load a tokenizer from a directory or hub id: the one tokenizer loader of the package.

    A ``.model`` file, or a directory written by
    ``SentencePieceTokenizer.save_pretrained`` (or holding a sentencepiece
    ``tokenizer.model`` and no transformers tokenizer files), gives a
    SentencePieceTokenizer; anything else goes through ``AutoTokenizer``.
    Both have ``encode`` (no special tokens), ``decode``, ``bos_token_id``,
    ``eos_token_id`` and ``pad_token_id``.
    """
    path = Path(str(source))
    if path.is_file() and path.suffix == ".model":
        return SentencePieceTokenizer(path)
    if (path / SP_CONFIG_FILE).is_file() or ((path / SP_MODEL_FILE).is_file()
                                            and not any((path / f).is_file() for f in HF_TOKENIZER_FILES)):
        return SentencePieceTokenizer.from_pretrained(path)
    from transformers import AutoTokenizer

    return HFTokenizer(AutoTokenizer.from_pretrained(str(source), local_files_only=local_files_only))


#: name under which the attention function that records probabilities is registered in transformers
RECORDING_ATTENTION = "spectron_kit_recording"


def _recording_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """Attention for transformers' ``AttentionInterface``: SDPA, except in layers asked to record.

    A layer whose attention module carries a ``_spectron_record`` list computes
    softmax attention explicitly and appends its probabilities
    ``[B, heads, Q, K]`` (float32, before dropout) to that list. ``attention_mask``
    is the additive float mask of transformers' eager implementation.
    """
    record = getattr(module, "_spectron_record", None)
    if record is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    groups = query.shape[1] // key.shape[1]  # grouped-query attention: repeat the key/value heads
    key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)).float() * scale
    if attention_mask is not None:
        scores = scores + attention_mask[:, :, :, : key.shape[-2]].float()
    probs = scores.softmax(dim=-1)
    record.append(probs)
    weights = nn.functional.dropout(probs, p=dropout, training=module.training).to(value.dtype)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), probs


def _register_recording_attention():
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

    AttentionInterface.register(RECORDING_ATTENTION, _recording_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(RECORDING_ATTENTION, eager_mask)


class HFCausalLM(Freezable, nn.Module):
    """A Hugging Face ``AutoModelForCausalLM`` used as Spectron's decoder.

    Arguments:
        source: hub id or directory with a saved model and tokenizer
            (pre-trained weights are loaded).
        config: dict with ``model_type`` and config fields: a randomly
            initialised model ("no pre-trained LM" ablation, tests).
        config_dir: directory with a saved config and tokenizer: the
            architecture without weights (used by inference bundles).
        tokenizer: tokenizer directory/id/``.model`` file; defaults to the
            model's own (``source`` or ``config_dir``); False for none.
        sos_token, eos_token: ids of the start/end tokens; default to the
            tokenizer's bos (or eos when there is no bos, as in GPT-2) and eos.
        freeze: keep LM weights fixed.
        torch_dtype: e.g. "bfloat16" to load a large LM in half precision.

    Example:
        >>> lm = HFCausalLM(config={"model_type": "gpt2", "n_embd": 32, "n_layer": 1,
        ...                          "n_head": 2}, tokenizer=None, vocab_size=40)
        >>> lm.d_model, lm.vocab_size
        (32, 40)
    """

    def __init__(self, source=None, config=None, config_dir=None, tokenizer=None, sos_token=None,
                 eos_token=None, freeze=False, torch_dtype=None, vocab_size=None,
                 attn_implementation="sdpa"):
        super().__init__()
        from transformers import AutoConfig, AutoModelForCausalLM

        given = [n for n, v in (("source", source), ("config", config), ("config_dir", config_dir)) if v]
        if len(given) != 1:
            raise ValueError(f"give exactly one of source=, config=, config_dir= to the lm (got {given or 'none'}); "
                             "e.g. source='gpt2' or source='results/text_lm'")
        dtype = getattr(torch, torch_dtype) if isinstance(torch_dtype, str) else torch_dtype
        if source:
            source = str(source)
            try:
                self.model = AutoModelForCausalLM.from_pretrained(
                    source, dtype=dtype, attn_implementation=attn_implementation)
            except (OSError, ValueError) as err:  # offline hub id, misspelt folder, not a causal LM
                raise source_error("decoder LM", source, "--lm_source", err) from err
            tok_source = tokenizer or source
        else:
            if config:
                config = dict(config)
                model_type = config.pop("model_type", None)
                if not model_type:
                    raise ValueError("lm config needs a 'model_type' (e.g. 'gpt2', 'llama')")
                hf_config = AutoConfig.for_model(model_type, **config)
                tok_source = tokenizer
            else:
                hf_config = AutoConfig.from_pretrained(str(config_dir))
                tok_source = config_dir if tokenizer is None else tokenizer
            hf_config._attn_implementation = attn_implementation
            self.tokenizer = load_tokenizer(tok_source) if tok_source else None
            if vocab_size is None and self.tokenizer is not None and config:
                vocab_size = len(self.tokenizer)
            if vocab_size is not None and hf_config.vocab_size != vocab_size:
                hf_config.vocab_size = vocab_size
            self._align_special_tokens(hf_config)
            self.model = AutoModelForCausalLM.from_config(hf_config, dtype=dtype)
        if source:
            self.tokenizer = load_tokenizer(tok_source) if tokenizer is not False else None
        if self.tokenizer is not None and len(self.tokenizer) > self.model.config.vocab_size:
            raise ValueError(f"tokenizer has {len(self.tokenizer)} tokens but the LM vocabulary has "
                             f"{self.model.config.vocab_size}; use the LM's own tokenizer")
        tok = self.tokenizer
        self.sos_id = sos_token if sos_token is not None else (
            tok.bos_token_id if tok is not None and tok.bos_token_id is not None else
            (tok.eos_token_id if tok is not None else 0))
        self.eos_id = eos_token if eos_token is not None else (tok.eos_token_id if tok is not None else 1)
        self.d_model = self.model.config.hidden_size
        self.vocab_size = self.model.config.vocab_size
        self.max_positions = _learned_positions(self.model)
        self.frozen = bool(freeze)
        if self.frozen:
            freeze_module(self.model)

    def _align_special_tokens(self, hf_config):
        tok = self.tokenizer
        if tok is None:  # drop ids that do not exist in this vocabulary (e.g. GPT-2's 50256)
            for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
                value = getattr(hf_config, name, None)
                if isinstance(value, int) and value >= hf_config.vocab_size:
                    setattr(hf_config, name, None)
            return
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            value = getattr(tok, name, None)
            if hasattr(hf_config, name) or value is not None:
                setattr(hf_config, name, value)

    # -- the interface SpectronModel uses ---------------------------------
    def embed(self, token_ids):
        """Token ids [B, N] -> input embeddings [B, N, d_model]."""
        return self.model.get_input_embeddings()(token_ids)

    def forward(self, inputs_embeds, attention_mask, position_ids, past_key_values=None, use_cache=False):
        """Run the decoder; returns (last hidden states [B, L, d_model], cache)."""
        if self.max_positions is not None and position_ids.numel() and int(position_ids.max()) >= self.max_positions:
            raise ValueError(
                f"the sequence needs {int(position_ids.max()) + 1} positions but the LM has {self.max_positions} "
                "learned positions; shorten it: --prompt_seconds, --max_continuation_seconds or --max_text_tokens "
                "(or an encoder with fewer frames per second, a larger --reduction_factor)")
        if (past_key_values is not None and inputs_embeds.shape[1] == 1 and self.fast_step_mask
                and attention_mask is not None and attention_mask.shape[-1] == past_key_values.get_seq_length() + 1):
            attention_mask = self._step_mask(attention_mask, inputs_embeds.dtype)
        out = self.model.base_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                    position_ids=position_ids, past_key_values=past_key_values,
                                    use_cache=use_cache)
        return out.last_hidden_state, out.past_key_values

    #: one cached decoding step builds its [B, 1, 1, K] attention mask itself (a padding mask: one query
    #: sees every earlier key it may), which transformers takes as given instead of running its mask
    #: builder each step; False: transformers builds it (the tests compare the two)
    fast_step_mask = True

    def _step_mask(self, attention_mask, dtype):
        """The 4-D mask of one cached step from its 2-D padding mask [B, K] (K: the cached keys and the new
        one), in the form the attention implementation reads (SDPA: True = attend; eager: 0 or the dtype's
        minimum, added to the scores); other implementations (and masks of another length, which transformers
        pads) get the 2-D mask back."""
        implementation = getattr(self.model.config, "_attn_implementation", None)
        if attention_mask.dim() != 2 or implementation not in ("sdpa", "eager"):
            return attention_mask
        keep = attention_mask.bool()[:, None, None, :]
        if implementation == "sdpa":
            return keep
        return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(~keep, torch.finfo(dtype).min)

    def attention_layers(self):
        """The decoder's self-attention modules, in layer order."""
        found = {}
        for module in self.model.modules():
            index = getattr(module, "layer_idx", None)
            if isinstance(index, int) and "attention" in type(module).__name__.lower() and index not in found:
                found[index] = module
        return [found[i] for i in sorted(found)]

    @contextlib.contextmanager
    def record_attention(self, layers):
        """Inside the block, forward passes record the attention probabilities of ``layers``.

        Yields a dict ``{layer: [probabilities [B, heads, Q, K], ...]}`` (one
        tensor per forward pass, with gradients) that fills as the model
        runs. Other layers keep the fast SDPA kernel. Works for transformers
        models whose attention goes through ``AttentionInterface`` (Llama,
        GPT-NeoX/Pythia, GPT-2, Qwen, Mistral, ...).

        Arguments:
            layers: decoder layer indices (0-based).
        """
        modules = self.attention_layers()
        bad = [i for i in layers if not 0 <= int(i) < len(modules)]
        if bad:
            raise ValueError(f"attention layers {bad} do not exist; this LM has {len(modules)} layers "
                             f"(0..{len(modules) - 1})")
        if not getattr(self.model, "_supports_attention_backend", False):
            raise ValueError(f"{type(self.model).__name__} does not route attention through transformers' "
                             "AttentionInterface, so its attention cannot be recorded; use another LM "
                             "or switch the attention loss off")
        _register_recording_attention()
        config = self.model.config
        previous = config._attn_implementation
        records = {int(i): [] for i in layers}
        for i, record in records.items():
            modules[i]._spectron_record = record
        config._attn_implementation = RECORDING_ATTENTION
        try:
            yield records
        finally:
            config._attn_implementation = previous
            for i in records:
                modules[i]._spectron_record = None

    def logits(self, hidden):
        """Hidden states -> vocabulary logits."""
        return self.model.get_output_embeddings()(hidden)

    def new_cache(self):
        """An empty KV cache for cached decoding (a ``DynamicCache`` that appends in place: :func:`growing_cache`)."""
        return growing_cache(self.model.config)

    def encode(self, text):
        if self.tokenizer is None:
            raise ValueError("this lm has no tokenizer; pass tokenizer=<dir or .model file>")
        return self.tokenizer.encode(text)

    def decode(self, ids):
        if self.tokenizer is None:
            raise ValueError("this lm has no tokenizer; pass tokenizer=<dir or .model file>")
        return self.tokenizer.decode(ids)

    # -- saving -------------------------------------------------------------
    def save_pretrained(self, directory):
        """Write model weights, config and tokenizer: ``HFCausalLM(source=directory)`` reloads it."""
        os.makedirs(directory, exist_ok=True)
        self.model.save_pretrained(directory)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(directory)

    def bundle_kwargs(self, directory):
        """Save config + tokenizer for an inference bundle; weights travel in its state dict."""
        os.makedirs(directory, exist_ok=True)
        self.model.config.save_pretrained(directory)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(directory)
        return {"config_dir": str(directory), "tokenizer": None if self.tokenizer is not None else False,
                "sos_token": self.sos_id, "eos_token": self.eos_id, "freeze": self.frozen}


@hookimpl
def register_lms(register):
    register("hf", HFCausalLM, description="any transformers AutoModelForCausalLM (hub id, dir or config)")


def _learned_positions(model):
    """How many positions a decoder with a learned position table has (GPT-2's ``wpe``, OPT's
    ``embed_positions``); None for rotary or relative positions, which have no table to run past."""
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if isinstance(module, nn.Embedding) and (leaf == "wpe" or "position" in leaf):
            return module.num_embeddings
    return None
