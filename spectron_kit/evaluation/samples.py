"""The one writer of sample files: each condition's audio and one spectrogram figure of an utterance
(the training recipe's samples and the evaluation's listening page both use it)."""
from pathlib import Path

import numpy as np


def write_sample(folder, name, audio, sample_rate, panels, frame_rate, title=""):
    """Write ``<name>_<condition>.wav`` for every entry of ``audio`` and ``<name>_spectrogram.png``.

    Arguments:
        folder: where the files go (made if missing).
        name: the utterance's file-safe name.
        audio: ``{condition: waveform}`` (tensor or array); an empty waveform is written as one
            silent sample, so every condition has a playable file.
        sample_rate: of every waveform.
        panels: ``[(label, frames [T, F])]`` drawn on one colour scale; no figure when all are empty.
        frame_rate: frames per second of the panels (time axis).
        title: the figure's title.
    Returns:
        ``{condition: file name, "spectrogram": file name}`` (names inside ``folder``).
    """
    from spectron_kit.audio import save_audio
    from spectron_kit.plotting import plot_spectrograms

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for condition, wav in audio.items():
        written[condition] = f"{name}_{condition}.wav"
        save_audio(folder / written[condition], wav if len(wav) else np.zeros(1, np.float32), sample_rate)
    if any(len(frames) for _, frames in panels):
        written["spectrogram"] = f"{name}_spectrogram.png"
        plot_spectrograms(panels, folder / written["spectrogram"], frame_rate=frame_rate, title=title)
    return written
