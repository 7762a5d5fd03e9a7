"""Frame-step -> token targets of the guided-attention loss (spectron_kit.alignment)."""
import pytest

from spectron_kit.alignment import diagonal_centres, step_times, token_centres, token_spans


class WordPieces:
    """A tokenizer that splits each word into pieces of at most 3 letters."""

    def encode(self, text):
        ids = []
        for word in text.split():
            ids += [len(word[i:i + 3]) for i in range(0, len(word), 3)]
        return ids


def test_token_spans_follow_the_tokenizer():
    assert token_spans(WordPieces(), ["a", "elephant", "is"]) == [(0, 1), (1, 4), (4, 5)]
    assert token_spans(WordPieces(), []) == []


def test_sentencepiece_spans_cover_the_encoded_text(tmp_path):
    from spectron_kit.pretrain import train_sentencepiece

    sentences = ["the cat sat on the mat", "a dog ran to the park", "the bird sang a song"] * 50
    tok = train_sentencepiece(sentences, tmp_path, vocab_size=25)
    words = "the dog sat on the song".split()
    spans = token_spans(tok, words)
    assert spans[-1][1] == len(tok.encode(" ".join(words)))
    for (a, b), (c, _) in zip(spans, spans[1:]):
        assert a < b == c  # every word owns at least one token, spans tile the sequence


def test_step_times_are_the_middle_of_each_group_of_frames():
    # r = 4 frames of 12.5 ms: the middle of frames 0-3 is 1.5 hops after the continuation start
    assert step_times(2, r=4, hop_seconds=0.0125, start=3.0) == [3.01875, 3.06875]


def test_token_centres_inside_words_pauses_and_after_the_end():
    word_times = [(0.0, 1.0), (1.5, 2.5)]       # a pause from 1.0 to 1.5
    spans = [(0, 2), (2, 3)]                    # word 0 is two tokens
    times = [0.1, 0.6, 1.2, 2.0, 3.0]
    assert token_centres(word_times, spans, times) == [0.0, 1.0, 2.0, 2.0, 2.0]


def test_diagonal_centres_are_a_straight_line_clamped_to_the_text():
    assert diagonal_centres(8, 4.0, [0.0, 2.0, 4.0]) == [0.0, 3.5, 7.0]
    assert diagonal_centres(0, 4.0, [1.0]) == [0.0]


@pytest.mark.parametrize("n_words", [1, 5])
def test_centres_never_leave_the_token_range(n_words):
    word_times = [(i * 0.5, i * 0.5 + 0.4) for i in range(n_words)]
    spans = [(i, i + 1) for i in range(n_words)]
    times = [t / 10 for t in range(0, 60)]
    centres = token_centres(word_times, spans, times)
    assert min(centres) >= 0 and max(centres) <= n_words - 1
    assert centres == sorted(centres)  # monotonic in time
