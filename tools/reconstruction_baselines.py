#!/usr/bin/env python3
"""What the reconstruction loss terms (L_s, L_f, L_t) are for predictors that need no model.

    python tools/reconstruction_baselines.py data/mini_corpus/manifests/valid.csv \\
        --feature-spec results/spectron_mini/1234/bundle/feature_spec.json \\
        --step0 results/spectron_mini/1234/valid_step0.json

Reads the continuation of each utterance (after ``--prompt-seconds``, at most
``--max-continuation-seconds``), turns it into log-mel frames and scores, with
the same loss code as training (``SpectrogramLoss``, ``DerivativeLoss``):

- flat: the set's mean frame at every step (no frame-to-frame change at all);
- repeat: the previous true frame (a teacher-forced model that copies its input);
- linear AR(2): a least-squares linear map from the two previous true frames,
  fitted on these same frames (optimistic: in-sample);
- the truth smoothed in time ([1, 2, 1] / 4), and the truth plus Gaussian
  noise of 0.1 and 0.3 (natural-log units).

Use it to read a trained model's valid loss terms: a model whose L_t is not
below the flat predictor's has learnt none of the frame-level dynamics, and
predictors that only know the past (repeat, AR) do worse than flat on L_t,
because the change from one frame to the next is what they cannot know.
``--step0`` (the ``valid_step0.json`` a training run writes) adds the
"step 0 / value" ratio each predictor would reach.
"""
import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import track
from rich.table import Table

from spectron_kit.data.manifest import filter_for_continuation, load_segment, read_manifest
from spectron_kit.features import FeatureSpec, LogMelFrontend
from spectron_kit.losses import DerivativeLoss, SpectrogramLoss

TERMS = ("spec", "freq_deriv", "time_deriv")


def continuation_frames(rows, spec, prompt_seconds, max_seconds):
    """Log-mel frames [T, F] of each row's continuation."""
    frontend = LogMelFrontend(spec)
    rate = spec.sample_rate
    first, length = int(round(prompt_seconds * rate)), int(round(max_seconds * rate))
    frames = []
    for row in track(rows, description="features", transient=True):
        wav = load_segment(row, rate)[first: first + length]
        feats, _ = frontend(wav[None])
        frames.append(feats[0])
    return frames


def _ar_inputs(x, order):
    """[T - order, order*F + 1]: for each t >= order, frames t-1..t-order and a bias 1."""
    lagged = [x[order - k - 1: len(x) - k - 1] for k in range(order)]
    return torch.cat(lagged + [torch.ones(len(x) - order, 1)], dim=1)


def fit_linear_ar(frames, order=2, ridge=1e-2):
    """Least-squares weights [order*F + 1, F] predicting x[t] from x[t-1..t-order]."""
    inputs, targets = [], []
    for x in frames:
        if len(x) > order:
            inputs.append(_ar_inputs(x, order))
            targets.append(x[order:])
    a, b = torch.cat(inputs).double(), torch.cat(targets).double()
    return torch.linalg.solve(a.T @ a + ridge * torch.eye(a.shape[1], dtype=a.dtype), a.T @ b).float()


def predict_linear_ar(x, weights, order=2):
    """AR prediction of every frame from the true previous frames (the first ``order`` are copied)."""
    out = x.clone()
    if len(x) > order:
        out[order:] = _ar_inputs(x, order) @ weights
    return out


def smooth_in_time(x):
    padded = torch.cat([x[:1], x, x[-1:]])
    return 0.25 * padded[:-2] + 0.5 * padded[1:-1] + 0.25 * padded[2:]


def baselines(frames, time_orders=2, freq_orders=1, seed=0):
    """{predictor: {term: value}} for the reference predictors (see the module docstring)."""
    generator = torch.Generator().manual_seed(seed)
    mean = torch.cat(frames).mean(0)
    weights = fit_linear_ar(frames)
    predictors = {
        "flat (mean frame)": lambda x: mean.expand_as(x),
        "repeat previous true frame": lambda x: torch.cat([x[:1], x[:-1]]),
        "linear AR(2) from true past (in-sample)": lambda x: predict_linear_ar(x, weights),
        "truth smoothed in time [1,2,1]/4": smooth_in_time,
        "truth + N(0, 0.1^2)": lambda x: x + 0.1 * torch.randn(x.shape, generator=generator),
        "truth + N(0, 0.3^2)": lambda x: x + 0.3 * torch.randn(x.shape, generator=generator),
    }
    lengths = torch.tensor([len(x) for x in frames])
    target = torch.nn.utils.rnn.pad_sequence(frames, batch_first=True)
    spec_loss, deriv_loss = SpectrogramLoss(), DerivativeLoss(time_orders, freq_orders)
    results = {}
    for name, predict in predictors.items():
        pred = torch.nn.utils.rnn.pad_sequence([predict(x) for x in frames], batch_first=True)
        results[name] = {"spec": float(spec_loss(pred, target, lengths)),
                         "freq_deriv": float(deriv_loss.freq_loss(pred, target, lengths)),
                         "time_deriv": float(deriv_loss.time_loss(pred, target, lengths))}
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", help="manifest CSV (librilight_prepare.py)")
    parser.add_argument("--feature-spec", help="feature_spec.json (a bundle has one); default: the paper's")
    parser.add_argument("--step0", help="valid_step0.json of a run: adds the step-0 / value ratios")
    parser.add_argument("--prompt-seconds", type=float, default=3.0)
    parser.add_argument("--max-continuation-seconds", type=float, default=2.5)
    parser.add_argument("--max-utterances", type=int, default=60)
    parser.add_argument("--time-orders", type=int, default=2)
    parser.add_argument("--freq-orders", type=int, default=1)
    parser.add_argument("--log-floor", type=float,
                        help="score features with this log floor instead of the feature spec's (what-if)")
    parser.add_argument("--json", help="also write the values here")
    args = parser.parse_args(argv)

    spec = FeatureSpec.load(args.feature_spec) if args.feature_spec else FeatureSpec()
    if args.log_floor is not None:
        try:
            spec = dataclasses.replace(spec, log_floor=args.log_floor)  # FeatureSpec refuses floors <= 0
        except ValueError:
            sys.exit(f"error: --log-floor={args.log_floor}; pass a positive value such as 1e-5")
    rows, skipped = filter_for_continuation(read_manifest(args.manifest), args.prompt_seconds)
    rows = rows[: args.max_utterances]
    if not rows:
        sys.exit(f"error: no utterance of {args.manifest} is longer than the {args.prompt_seconds} s prompt "
                 "plus a continuation; pass a manifest of longer utterances or a smaller --prompt-seconds")
    frames = continuation_frames(rows, spec, args.prompt_seconds, args.max_continuation_seconds)
    results = baselines(frames, args.time_orders, args.freq_orders)
    step0 = json.loads(Path(args.step0).read_text()) if args.step0 else None

    table = Table(title=f"reconstruction terms of reference predictors ({len(rows)} utterances, "
                        f"{sum(len(x) for x in frames)} frames, K_t={args.time_orders}, K_f={args.freq_orders})")
    table.add_column("predictor")
    for term in TERMS:
        table.add_column(term, justify="right")
        if step0:
            table.add_column("step 0 / value", justify="right")
    if step0:
        table.add_row("(model at step 0)", *[c for t in TERMS for c in (f"{step0[t]:.3f}", "1.0x")])
    for name, values in results.items():
        cells = []
        for term in TERMS:
            cells.append(f"{values[term]:.3f}")
            if step0:
                cells.append(f"{step0[term] / values[term]:.1f}x")
        table.add_row(name, *cells)
    Console().print(table)
    if args.json:
        Path(args.json).write_text(json.dumps({"utterances": len(rows), "results": results}, indent=2))
    return results


if __name__ == "__main__":
    main()
