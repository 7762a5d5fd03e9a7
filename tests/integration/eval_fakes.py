"""Fast stand-ins for the evaluation components (same interfaces as docs/COMPONENTS.md).

The real PocketSphinx, Resemblyzer and DNSMOS take about 1-5 s per clip on a
busy CPU, too slow for a test that runs the whole recipe; these compute
simple, deterministic functions of the audio so the numbers still move with
it. The recipe takes them through YAML overrides such as
``--transcriber=!new:eval_fakes.FakeTranscriber`` (this folder on PYTHONPATH).
"""
import numpy as np

#: words the fake transcriber writes (all in the test tokenizer's vocabulary)
WORDS = ("the", "cat", "sat", "on", "a", "mat", "and", "then", "went", "home")


def _frames(wav, size=320):
    wav = np.asarray(wav, dtype=np.float32)
    n = len(wav) // size
    return wav[: n * size].reshape(n, size) if n else np.zeros((0, size), np.float32)


class FakeTranscriber:
    """One word per 0.3 s of audio with energy, cycling through :data:`WORDS`."""

    def __init__(self, **kwargs):
        pass

    def transcribe(self, wavs, sample_rate):
        out = []
        for wav in wavs:
            active = (np.sqrt((_frames(wav) ** 2).mean(axis=1)) > 0.01).sum() if len(wav) else 0
            n = int(active * 320 / sample_rate / 0.3)
            out.append(" ".join(WORDS[i % len(WORDS)] for i in range(n)))
        return out


class FakeSpeakerEncoder:
    """A 16-band log-spectrum "voice print" (mean removed, unit length)."""

    def __init__(self, **kwargs):
        pass

    def embed(self, wavs, sample_rate):
        embs = []
        for wav in wavs:
            frames = _frames(wav, 512)
            if not len(frames):
                embs.append(np.zeros(16, np.float32))
                continue
            power = (np.abs(np.fft.rfft(frames * np.hanning(512), axis=1)) ** 2).mean(axis=0)
            bands = np.log(np.array([b.sum() for b in np.array_split(power[1:], 16)]) + 1e-8)
            bands -= bands.mean()
            embs.append(bands / max(np.linalg.norm(bands), 1e-8))
        return np.stack(embs).astype(np.float32)


class FakeMOSPredictor:
    """1 + 4 x the fraction of 20 ms frames with energy."""

    label = "predicted MOS (test stand-in)"

    def __init__(self, **kwargs):
        pass

    def predict(self, wavs, sample_rate):
        out = []
        for wav in wavs:
            frames = _frames(wav)
            active = float((np.sqrt((frames ** 2).mean(axis=1)) > 0.01).mean()) if len(frames) else 0.0
            out.append(1.0 + 4.0 * active)
        return out
