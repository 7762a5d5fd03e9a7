"""The protocol's scorers on a hand-made batch, against values computed here independently."""
import math

import numpy as np
import pytest
import torch

from spectron_kit.evaluation.scorers import (AsrPerplexity, AsrWer, PredictedMos, ScoringBatch, SpeakerSimilarity,
                                             aggregate_scores)

SR = 16000
CONDS = ("reference", "generated")


class CountingTranscriber:
    """Says a fixed text per waveform length; counts its calls."""

    def __init__(self, texts):
        self.texts, self.calls = texts, 0

    def transcribe(self, wavs, sample_rate):
        self.calls += 1
        return [self.texts[len(w)] for w in wavs]


class TokenLM:
    """NLL = 2 per word, one token per word plus the end token."""

    def score(self, texts):
        return [{"nll": 2.0 * len(t.split()), "n_tokens": len(t.split()) + 1} for t in texts]


class LengthVoice:
    """A 2-d "voice print" from the waveform's first sample and its length."""

    def embed(self, wavs, sample_rate):
        return np.array([[float(w[0]), len(w) / 1e4] for w in wavs])


def make_batch(speakers=("a", "b")):
    lengths = {"reference": (2000, 3000), "generated": (4000, 1000)}  # the last generation is too short (< 0.1 s)
    audio = {c: [np.full(n, 0.1 * (i + 1), np.float32) for i, n in enumerate(lengths[c])] for c in CONDS}
    texts = {"reference": [["the", "cat", "sat"], ["a", "dog"]], "generated": [["the", "cat"], ["hello"]]}
    rows = [{"id": f"u{i}", "speaker": s} for i, s in enumerate(speakers)]
    prompts = [np.full(1600, 0.5, np.float32), np.full(1600, -0.5, np.float32)]
    return ScoringBatch(sample_rate=SR, conditions=CONDS, audio=audio, frames={},
                        reference_frames=[torch.zeros(1, 1)] * 2, prompts=prompts, texts=texts, rows=rows,
                        model_text=["x", "y"])


def test_wer_and_perplexity_share_one_transcription_and_match_hand_values():
    transcriber = CountingTranscriber({2000: "the cat sat", 3000: "a cat", 4000: "the", 1000: ""})
    batch = make_batch()
    wer, ppl = AsrWer(transcriber), AsrPerplexity(transcriber, TokenLM())
    w, p = wer.score(batch), ppl.score(batch)
    assert transcriber.calls == len(CONDS)  # once per condition, not once per scorer
    assert w[0]["reference"]["wer"] == 0.0 and w[1]["reference"]["wer"] == 0.5  # "a dog" heard as "a cat"
    assert w[0]["generated"]["wer_edits"] == 1 and w[1]["generated"]["asr"] == ""
    assert p[0]["reference"]["perplexity"] == pytest.approx(math.exp(6.0 / 4))
    records = [{"speech": {c: {**w[i][c], **p[i][c]} for c in CONDS}} for i in range(2)]
    agg = aggregate_scores(records, [wer, ppl], CONDS, n_resamples=200)
    assert agg["reference"]["wer"]["value"] == pytest.approx(1 / 5)  # (0 + 1) edits / (3 + 2) words
    # the empty transcript (nothing heard) has no perplexity: left out of the corpus value, counted in its note
    assert p[1]["generated"] == {"perplexity": None, "lm_nll": 0.0, "lm_tokens": 0, "empty_transcript": True}
    assert agg["generated"]["perplexity"]["value"] == pytest.approx(math.exp(2.0 / 2))
    assert agg["generated"]["perplexity"]["n"] == 1
    assert "1 with no words in the ASR transcript left out" in agg["generated"]["perplexity"]["note"]
    assert agg["generated"]["wer"]["low"] <= agg["generated"]["wer"]["value"] <= agg["generated"]["wer"]["high"]


def test_speaker_similarity_with_the_other_speaker_floor_and_a_fresh_start():
    scorer = SpeakerSimilarity(LengthVoice())
    voice = LengthVoice()

    def cos(a, b):
        return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))

    for _ in range(2):  # a second run with the same scorer starts afresh
        scorer.start()
        batch = make_batch()
        got = scorer.score(batch)
        prompt = voice.embed(batch.prompts, SR)
        ref = voice.embed(batch.audio["reference"], SR)
        assert got[0]["reference"] == pytest.approx(cos(prompt[0], ref[0]))
        assert got[1]["generated"] is None  # 1000 samples: too short to embed
        floor = scorer.finish(seed=0)
        assert floor[0]["other_speaker"]["other_id"] == "u1"
        assert floor[0]["other_speaker"]["speaker_sim"] == pytest.approx(cos(prompt[0], ref[1]))
        assert floor[1]["other_speaker"]["speaker_sim"] == pytest.approx(cos(prompt[1], ref[0]))
    scorer.start()
    scorer.score(make_batch(speakers=("a", "a")))
    assert scorer.finish(seed=0) == [{}, {}]  # nobody else spoke: no floor, left out


def test_mos_label_always_says_predicted_and_short_audio_is_left_out():
    class Predictor:
        label = "DNSMOS OVRL"

        def predict(self, wavs, sample_rate):
            return [float(len(w)) for w in wavs]

    scorer = PredictedMos(Predictor())
    assert scorer.label == "predicted MOS (DNSMOS OVRL)"
    got = scorer.score(make_batch())
    assert got[0]["generated"] == 4000.0 and got[1]["generated"] is None
