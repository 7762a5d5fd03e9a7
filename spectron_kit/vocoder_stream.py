"""Streaming vocoding: frames in as they are generated, audio out chunk by chunk.

The streaming contract of the ``vocoder`` kind (docs/PLUGINS.md): a vocoder
may define ``stream()`` returning an object with ``push(frames) -> audio``
and ``flush() -> audio`` (1-D float tensors, possibly empty), whose
concatenated output is the audio of every frame pushed (``finish(frames)``,
the last push and the flush in one call, is optional). A vocoder that
defines nothing is streamed by :class:`ChunkedVocoderStream`: each chunk is
vocoded together with ``context_frames`` already-spoken frames before it,
the last ``lookahead_frames`` wait for the frames after them (a vocoder reads
both sides of a frame), and consecutive chunks meet in a short linear
cross-fade, so chunk borders make no click.

Example:
    >>> import torch
    >>> class Repeat(torch.nn.Module):  # a toy "vocoder": each frame's first bin, hop samples per frame
    ...     hop = 4
    ...     def forward(self, frames, lengths):
    ...         wav = frames[..., 0].repeat_interleave(self.hop, dim=1)[:, : (frames.shape[1] - 1) * self.hop]
    ...         return wav, (lengths - 1) * self.hop
    >>> stream = ChunkedVocoderStream(Repeat(), hop_length=4, context_frames=2, lookahead_frames=1,
    ...                               crossfade_frames=1)
    >>> frames = torch.arange(10.0)[:, None]
    >>> audio = torch.cat([stream.push(frames[:4]), stream.push(frames[4:]), stream.flush()])
    >>> audio.shape[0] == 9 * 4, torch.equal(audio, Repeat()(frames[None], torch.tensor([10]))[0][0])
    (True, True)
"""
from __future__ import annotations

import torch

__all__ = ["ChunkedVocoderStream", "finish_stream", "open_stream"]


class ChunkedVocoderStream:
    """The default streaming of any vocoder (``vocoder(frames [1, T, F], lengths [1]) -> (wav, lengths)``,
    ``(T - 1) * hop_length`` samples for ``T`` frames, frame ``j`` centred on sample ``j * hop_length``).

    Arguments:
        vocoder: the vocoder module.
        hop_length: samples per frame.
        context_frames: frames before a chunk vocoded with it (the vocoder's left context; at least
            ``crossfade_frames``).
        lookahead_frames: frames held back until the next push (its right context; at least 1).
        crossfade_frames: length of the linear cross-fade between consecutive chunks, in frames.
    """

    def __init__(self, vocoder, hop_length, context_frames=16, lookahead_frames=8, crossfade_frames=2):
        if int(lookahead_frames) < 1 or int(crossfade_frames) < 0 or int(context_frames) < int(crossfade_frames):
            raise ValueError(f"lookahead_frames={lookahead_frames} (>= 1), crossfade_frames={crossfade_frames} "
                             f"(>= 0) and context_frames={context_frames} (>= crossfade_frames) are needed")
        self.vocoder, self.hop = vocoder, int(hop_length)
        self.context, self.lookahead = int(context_frames), int(lookahead_frames)
        self.fade = int(crossfade_frames) * self.hop
        self.frames = None          # every frame pushed [T, F]
        self.done = 0               # frames whose audio is out (but for the held cross-fade tail)
        self.tail = None            # the last emitted chunk's next `fade` samples, to fade out into the next

    def push(self, frames):
        """Add frames [T, F]; returns the audio that is final now (1-D, maybe empty)."""
        self._append(frames)
        return self._emit(final=False)

    def flush(self):
        """The audio of every frame still held back (the end of the utterance)."""
        return self._emit(final=True)

    def finish(self, frames):
        """The last frames and the end at once: ``push(frames)`` + ``flush()`` in one vocoder call (optional in
        the contract: :func:`finish_stream`)."""
        self._append(frames)
        return self._emit(final=True)

    def _append(self, frames):
        frames = torch.as_tensor(frames).float()
        if len(frames):
            self.frames = frames if self.frames is None else torch.cat([self.frames, frames.to(self.frames)])

    def _emit(self, final):
        total = 0 if self.frames is None else len(self.frames)
        end = total if final else total - self.lookahead
        if end <= self.done and not (final and self.tail is not None):
            return torch.zeros(0)
        first = max(0, self.done - self.context)
        wav = self._vocode(self.frames[first:total], first)
        offset = first * self.hop                                 # absolute sample of wav[0]
        start = self.done * self.hop - (len(self.tail) if self.tail is not None else 0)
        stop = offset + len(wav) if final else end * self.hop - self.fade
        chunk = wav[start - offset: stop - offset].clone()
        if self.tail is not None and len(self.tail):
            n = min(len(self.tail), len(chunk))
            ramp = torch.linspace(0.0, 1.0, n + 2)[1:-1]
            chunk[:n] = self.tail[:n] * (1 - ramp) + chunk[:n] * ramp
        self.tail = None if final else wav[stop - offset: end * self.hop - offset].clone()
        self.done = end
        return chunk

    def _vocode(self, window, first):
        """The audio of frames ``window`` [T, F] (frame ``first`` of the utterance onwards), 1-D on the CPU;
        a vocoder's own stream may override this (e.g. to carry state from the previous window)."""
        wav, lengths = self.vocoder(window[None], torch.tensor([len(window)]))
        return wav[0, : int(lengths[0])].detach().float().cpu()


def finish_stream(stream, frames):
    """The last frames and the end of a stream: its ``finish`` where it has one, else ``push`` + ``flush``."""
    finish = getattr(stream, "finish", None)
    return finish(frames) if callable(finish) else torch.cat([stream.push(frames), stream.flush()])


def open_stream(vocoder, hop_length):
    """The vocoder's own stream (``vocoder.stream()``) when it has one, else :class:`ChunkedVocoderStream`."""
    own = getattr(vocoder, "stream", None)
    return own() if callable(own) else ChunkedVocoderStream(vocoder, hop_length)
