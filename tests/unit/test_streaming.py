"""Streaming continuation: events as they happen, the same frames and audio as generate + vocode."""
import numpy as np
import pytest
import soundfile
import torch

from spectron_kit import build
from spectron_kit.audio import ProgressiveWav
from spectron_kit.vocoder_stream import ChunkedVocoderStream, open_stream

from test_model import SPEC, chirp, tiny_model  # noqa: I001  (tests/unit is on sys.path under pytest)


def refining_model():
    """A tiny model whose post-net refines the whole sequence (reads groups after each one)."""
    model = tiny_model(r=2)
    torch.manual_seed(1)
    postnet = build("postnet", "conv_residual", in_dim=48, out_dim=model.n_mels * 2, hidden=64, layers=3,
                    kernel_size=3)
    for conv in postnet.convs:  # non-zero refiner, so the streamed frames must wait for their right context
        torch.nn.init.normal_(conv.weight, std=0.05)
    model.postnet = postnet
    return model.eval()


def stream_all(model, prompt, **kwargs):
    torch.manual_seed(0)
    return list(model.stream(prompt, **kwargs))


@pytest.mark.parametrize("make", [lambda: tiny_model(r=2).eval(), refining_model], ids=["mlp", "conv_residual"])
def test_streamed_frames_and_text_are_those_of_generate_and_events_come_in_order(make):
    model = make()
    prompt = chirp(1.2)
    torch.manual_seed(0)
    whole = model.generate(prompt, torch.tensor([len(prompt)]), max_seconds=0.6)
    events = stream_all(model, prompt, max_seconds=0.6, chunk_frames=8, max_chunk_frames=8)
    kinds = [e.kind for e in events]
    assert kinds[-1] == "end" and kinds.count("speech") == 1 and kinds.count("end") == 1
    assert kinds.index("speech") < kinds.index("audio")        # text first, then speech
    assert all(k == "text" for k in kinds[: kinds.index("speech")])
    out = events[-1].output
    assert out.text == whole.text
    frames = torch.cat([e.frames for e in events if e.kind == "audio"])
    assert frames.shape == whole.frames[0].shape
    torch.testing.assert_close(frames, whole.frames[0], atol=1e-5, rtol=1e-5)
    assert sum(1 for k in kinds if k == "audio") >= 3             # several chunks, not one at the end
    audio = torch.cat([e.audio for e in events if e.kind == "audio"])
    torch.testing.assert_close(audio, out.waveforms[0])
    assert audio.shape == whole.waveforms[0].shape


def test_streamed_griffin_lim_audio_matches_the_whole_within_its_own_error_and_has_no_clicks():
    spec = dict(SPEC)
    vocoder = build("vocoder", "griffin_lim", spec=spec, n_iter=16)
    frontend = build("frontend", "log_mel", spec=spec)
    speech = chirp(2.0, f0=150, f1=600, seed=3)
    frames, _ = frontend(speech[None])
    frames = frames[0]
    whole, _ = vocoder(frames[None], torch.tensor([len(frames)]))
    whole = whole[0]
    stream = vocoder.stream()
    pieces = [stream.push(frames[i:i + 16]) for i in range(0, len(frames), 16)] + [stream.flush()]
    audio = torch.cat(pieces)
    assert audio.shape == whole.shape
    # the streamed audio is as close to the whole-utterance audio as Griffin-Lim is to its own input
    streamed_err = (frontend(audio[None])[0][0] - frontend(whole[None])[0][0]).abs().mean()
    own_err = (frontend(whole[None])[0][0] - frames).abs().mean()
    assert streamed_err < own_err, (float(streamed_err), float(own_err))
    # no click: the sample steps around chunk borders are within the whole audio's largest steps
    borders = np.cumsum([len(p) for p in pieces])[:-1]
    steps = audio.diff().abs()
    near = torch.cat([steps[max(0, int(b) - 3): int(b) + 3] for b in borders if 3 < b < len(steps) - 3])
    assert near.max() <= whole.diff().abs().max()


def test_a_vocoder_that_implements_nothing_is_streamed_exactly_when_it_reads_no_context():
    class PerFrame(torch.nn.Module):  # a third-party vocoder without stream(): each frame -> hop samples
        def forward(self, feats, lengths):
            wav = feats.mean(-1).repeat_interleave(160, dim=1)[:, : (feats.shape[1] - 1) * 160]
            return wav, (lengths - 1) * 160

    vocoder = PerFrame()
    stream = open_stream(vocoder, 160)
    assert isinstance(stream, ChunkedVocoderStream)
    frames = torch.randn(57, 8, generator=torch.Generator().manual_seed(0))
    cuts = [0, 5, 6, 20, 21, 40, 57]
    audio = torch.cat([stream.push(frames[a:b]) for a, b in zip(cuts[:-1], cuts[1:])] + [stream.flush()])
    torch.testing.assert_close(audio, vocoder(frames[None], torch.tensor([57]))[0][0])
    with pytest.raises(ValueError, match="lookahead_frames=0"):
        ChunkedVocoderStream(vocoder, 160, lookahead_frames=0)


def test_stream_refuses_batches_and_models_without_a_vocoder():
    model = tiny_model(r=2)
    with pytest.raises(ValueError, match="one prompt at a time, got a batch of 2"):
        next(model.stream(torch.zeros(2, 16000)))
    with pytest.raises(ValueError, match="needs a vocoder"):
        next(tiny_model(vocoder=False).stream(torch.zeros(16000)))


def test_a_progressive_wav_is_a_valid_file_after_every_chunk(tmp_path):
    path = tmp_path / "grow.wav"
    with ProgressiveWav(path, 16000) as out:
        for n in (1, 800, 3200):
            out.write(np.full(n, 0.25, dtype=np.float32))
            audio, rate = soundfile.read(path)
            assert rate == 16000 and len(audio) == out.samples
    assert soundfile.info(path).frames == 4001
