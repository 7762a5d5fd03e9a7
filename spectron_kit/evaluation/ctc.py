"""Transcriber backed by the mini setup's own CTC model (encoder pre-training step)."""
import numpy as np
import torch

from spectron_kit.hookspecs import hookimpl


class CTCTranscriber:
    """Greedy character CTC recogniser saved by ``spectron_kit.pretrain.pretrain_ctc_encoder``.

    Arguments:
        source: the folder written by the encoder pre-training step.
        batch_size: utterances per forward pass.
    """

    def __init__(self, source, batch_size=8):
        from spectron_kit.ctc import CTCSpeechRecognizer

        self.model = CTCSpeechRecognizer.from_pretrained(source)
        self.sample_rate = self.model.frontend.spec.sample_rate
        self.batch_size = batch_size

    def transcribe(self, wavs, sample_rate):
        from spectron_kit.audio import resample

        out = []
        for start in range(0, len(wavs), self.batch_size):
            chunk = [resample(np.asarray(w, dtype=np.float32).reshape(-1), sample_rate, self.sample_rate)
                     for w in wavs[start:start + self.batch_size]]
            lens = torch.tensor([len(w) for w in chunk])
            padded = torch.nn.utils.rnn.pad_sequence(chunk, batch_first=True)
            out += self.model.transcribe_batch(padded, lens)
        return out


@hookimpl
def register_transcribers(register):
    register("ctc", CTCTranscriber, description="the mini setup's own character CTC model (offline)")
