"""Scorers: evaluation metrics as registered components (kind ``scorer``).

A scorer sees one batch of the continuation protocol (:class:`ScoringBatch`:
the audio and frames of every condition, the prompts, the texts each
condition should say, the manifest rows) and returns one record per
utterance, ``{condition: value or None}``. ``evaluate_continuation`` stores
them in each utterance's record (``scores``), aggregates every scorer the
same way (mean and 95% bootstrap interval per condition, in ``results.json``
under ``scores``) and the report prints them in one table. A new metric is one
registered class and one line in ``evaluate.yaml``'s ``scorers`` list (a plugin
registers it through ``register_scorers``, like any other kind).

The protocol's original metrics (ASR WER and perplexity, speaker similarity,
MOS) are computed by their own components and keep their own keys.

Example:
    >>> import numpy as np, torch
    >>> batch = ScoringBatch(sample_rate=16000, conditions=("vocoded", "generated"),
    ...     audio={"vocoded": [np.zeros(160)], "generated": [np.zeros(320)]},
    ...     frames={"vocoded": [torch.zeros(4, 2)], "generated": [torch.ones(6, 2)]},
    ...     reference_frames=[torch.zeros(4, 2)], prompts=[np.zeros(10)],
    ...     texts={"vocoded": [["a"]], "generated": [["b"]]}, rows=[{"id": "u1"}], model_text=["a b"])
    >>> FrameDistance().score(batch)
    [{'vocoded': 0.0, 'generated': 1.0}]
"""
import dataclasses

import torch

from spectron_kit.hookspecs import hookimpl


@dataclasses.dataclass
class ScoringBatch:
    """What a scorer sees of one batch (lists are per utterance, in batch order).

    Attributes:
        sample_rate: of every waveform.
        conditions: the conditions of the protocol, e.g. ``("reference", "vocoded",
            "teacher_forced", "generated", "flat")``.
        audio: condition -> waveforms (float numpy).
        frames: condition -> feature frames ``[T, n_mels]`` (conditions made from frames).
        reference_frames: frames of the true continuation.
        prompts: prompt waveforms.
        texts: condition -> the words the condition should say (the reference
            continuation, or the model's own text for the generated speech).
        rows: the manifest rows.
        model_text: the model's whole text (prompt transcript + continuation).
    """

    sample_rate: int
    conditions: tuple
    audio: dict
    frames: dict
    reference_frames: list
    prompts: list
    texts: dict
    rows: list
    model_text: list


class FrameDistance:
    """Mean absolute difference between a condition's frames and the true continuation's frames.

    Normalised log-mel units, over the frames both have. 0 for the vocoded
    reference (its frames are the reference's); it tells how far teacher-forced
    and generated frames are from the truth (``tools/reconstruction_baselines.py``
    relates such distances to intelligibility).
    """

    label = "frame L1 to the true continuation (normalised log-mel)"
    better = "lower"

    def score(self, batch):
        out = []
        for i, ref in enumerate(batch.reference_frames):
            record = {}
            for cond in batch.conditions:
                frames = batch.frames.get(cond)
                if frames is None:
                    continue
                got = torch.as_tensor(frames[i]).float()
                n = min(len(got), len(ref))
                record[cond] = float((got[:n] - torch.as_tensor(ref[:n]).float()).abs().mean()) if n else None
            out.append(record)
        return out


@hookimpl
def register_scorers(register):
    register("frame_distance", FrameDistance,
             description="mean |frames - true continuation frames| per condition (normalised log-mel)")
