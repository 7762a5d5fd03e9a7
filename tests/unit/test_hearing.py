"""Counting prompts (spectron_kit.data.counting) and the hearing protocol (spectron_kit.evaluation.hearing)."""
import csv
import wave

import numpy as np
import pytest
import torch

from spectron_kit.data.counting import NUMBER_WORDS, counting_plan, counts_on, write_counting_prompts
from spectron_kit.evaluation.hearing import Prompt, error_counts, measure_hearing


def fake_fsdd(root, speakers=("amy", "bob"), takes=2):
    """An FSDD-shaped folder: 8 kHz WAVs of a tone per digit (0.3-0.5 s) and transcripts.tsv."""
    (root / "recordings").mkdir(parents=True)
    rows = []
    for speaker in speakers:
        for digit in range(10):
            for take in range(takes):
                n = int(8000 * (0.3 + 0.02 * digit))
                tone = (0.3 * np.sin(2 * np.pi * (200 + 30 * digit) * np.arange(n) / 8000) * 32767).astype(np.int16)
                name = f"recordings/{digit}_{speaker}_{take}.wav"
                with wave.open(str(root / name), "wb") as w:
                    w.setnchannels(1)
                    w.setsampwidth(2)
                    w.setframerate(8000)
                    w.writeframes(tone.tobytes())
                rows.append([name, speaker, digit, NUMBER_WORDS[digit], "test"])
    with open(root / "transcripts.tsv", "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["file", "speaker", "digit", "text", "split"])
        writer.writerows(rows)
    return root


def test_counting_plan_counts_within_one_to_nine():
    plan = counting_plan(["a", "b"], per_direction=3, length=5, seed=1)
    assert len(plan) == 12 and [d for _, d, _ in plan].count("down") == 6
    for _, direction, numbers in plan:
        step = 1 if direction == "up" else -1
        assert all(1 <= n <= 9 for n in numbers)
        assert numbers == [numbers[0] + step * k for k in range(5)]


def test_counting_prompts_are_written_at_16_khz_and_fit_the_prompt(tmp_path):
    import soundfile

    rows = write_counting_prompts(fake_fsdd(tmp_path / "fsdd"), tmp_path / "out", per_direction=2, seed=3)
    assert len(rows) == 8
    listed = list(csv.DictReader(open(tmp_path / "out" / "counting.tsv"), delimiter="\t"))
    assert [r["id"] for r in listed] == [r["id"] for r in rows]
    for row in rows:
        audio, rate = soundfile.read(row["path"])
        assert rate == 16000 and len(audio) <= 3 * 16000 and row["seconds"] == pytest.approx(len(audio) / 16000, abs=1e-3)
        words = row["text"].split()
        assert 3 <= len(words) <= 5 and all(w in NUMBER_WORDS for w in words)
        numbers = [NUMBER_WORDS.index(w) for w in words + row["next_words"].split()]
        step = 1 if row["direction"] == "up" else -1
        assert numbers == [numbers[0] + step * k for k in range(len(numbers))]  # the next words go on counting
        assert np.abs(audio).min() < 0.01 and np.abs(audio[:800]).max() > 0      # faint noise, never digital zeros
    with pytest.raises(FileNotFoundError, match="no transcripts.tsv; pass the Free Spoken Digit Dataset folder"):
        write_counting_prompts(tmp_path, tmp_path / "x")


def test_counts_on_and_error_counts():
    assert counts_on(["six", "seven", "and"], "six seven") and not counts_on(["six"], "six seven")
    assert not counts_on(["six"], "")
    assert error_counts("four five six", "four five six") == (0, 3, 0, 13)
    assert error_counts("one two", "") == (2, 2, 7, 7)


class _WritesBack:
    """A stand-in bundle: writes back the words its prompt's length encodes (to test the protocol's arithmetic)."""

    device = torch.device("cpu")
    prompt_seconds = 3.0
    texts = {47000: "four five six seven eight", 46000: "nine eight seven two one go"}

    class frontend:  # noqa: N801 - the attribute path a SpectronModel has
        class spec:  # noqa: N801
            sample_rate = 16000

    def generate(self, wav, lengths, num_frames=0, vocode=False):
        class Out:
            text = [self.texts.get(int(n), "hugo counted the stars") for n in lengths]
        return Out()


class _Transcriber:
    def transcribe(self, wavs, rate):
        return ["four five six", "nine eight seven six"][: len(wavs)]


def test_measure_hearing_scores_the_model_the_ceiling_and_the_floor():
    prompts = [Prompt("a", torch.zeros(47000), "four five six", "s1", "seven eight"),
               Prompt("b", torch.zeros(46000), "nine eight seven six", "s2", "five four")]
    result = measure_hearing(_WritesBack(), prompts, _Transcriber(), seed=0)
    rows, summary = result["rows"], result["summary"]
    assert rows[0]["model_transcript"] == "four five six" and rows[0]["counts_on"] is True
    assert rows[1]["model_transcript"] == "nine eight seven two" and rows[1]["counts_on"] is False
    assert summary["model"]["wer"]["value"] == pytest.approx(1 / 7)
    assert summary["transcriber"]["wer"]["value"] == 0.0
    assert summary["prior_floor"]["wer"]["value"] == pytest.approx(7 / 7)   # "hugo counted the stars": all wrong
    assert summary["model"]["counts_on"] == {"value": 0.5, "n": 2, "heard_right": 1, "given_heard_right": 1.0}
    assert result["prior_text"] == "hugo counted the stars"


def test_split_heard_finds_where_the_phoneme_list_begins():
    from spectron_kit.data.espeak import phoneme_names
    from spectron_kit.phonemes import split_heard

    text = "hugo counted the stars four five six seven eight"
    listed = [p for w in ("seven", "eight") for p in phoneme_names(w)]
    assert split_heard(text, listed) == ("hugo counted the stars four five six", "seven eight")
    # the prompt ends inside "seven": the list starts mid-word, the split stays at the nearest boundary
    assert split_heard(text, listed[2:]) == ("hugo counted the stars four five six", "seven eight")
    assert split_heard(text, []) == (None, None)                 # a model without a phoneme list: no split
    assert split_heard("", listed) == ("", "")
