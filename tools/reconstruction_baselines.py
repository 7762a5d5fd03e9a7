#!/usr/bin/env python3
"""What the reconstruction loss terms (and, optionally, ASR) say for predictors that need no model.

    python tools/reconstruction_baselines.py data/mini_corpus/manifests/valid.csv \\
        --feature-spec results/spectron_mini/1234/bundle/feature_spec.json \\
        --step0 results/spectron_mini/1234/valid_step0.json
    # how close must frames be to be understood? (vocodes every predictor, Whisper ASR)
    python tools/reconstruction_baselines.py data/mini_corpus/manifests/test.csv \\
        --feature-spec results/spectron_mini/1234/bundle/feature_spec.json --transcriber whisper \\
        --max-utterances 24

Reads the continuation of each utterance (after ``--prompt-seconds``, at most
``--max-continuation-seconds``), turns it into log-mel frames and scores, with
the loss terms of training (the registered ``loss`` terms that read only
frames: ``spec``, ``freq_deriv``, ``time_deriv`` of the paper's table, or the
ones named by ``--terms``):

- flat: the set's mean frame at every step (no frame-to-frame change at all);
- repeat: the previous true frame (a teacher-forced model that copies its input);
- linear AR(2): a least-squares linear map from the two previous true frames,
  fitted on these same frames (optimistic: in-sample);
- the truth itself (all terms 0; with ``--transcriber`` the vocoder's ceiling);
- the truth smoothed in time ([1, 2, 1] / 4; means over 5 and 9 frames), held
  constant over groups of 4 frames, and plus Gaussian noise of 0.1, 0.3, 0.5
  and 1.0 (natural-log units).

Use it to read a trained model's valid loss terms: a model whose L_t is not
below the flat predictor's has learnt none of the frame-level dynamics, and
predictors that only know the past (repeat, AR) do worse than flat on L_t,
because the change from one frame to the next is what they cannot know.
``--step0`` (the ``valid_step0.json`` a training run writes) adds the
"step 0 / value" ratio each predictor would reach. ``--transcriber NAME``
(a registered transcriber, e.g. ``whisper``) vocodes every predictor's frames
with Griffin-Lim and adds the ASR word error rate against the words of the
continuation: the loss level at which speech becomes intelligible.
"""
import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from spectron_kit.audio import to_samples
from spectron_kit.data.manifest import filter_for_continuation, load_segment, read_manifest
from spectron_kit.features import FeatureSpec, LogMelFrontend
from spectron_kit.losses import PAPER_TERMS, SpectronLoss
from spectron_kit.progress import track
from spectron_kit.registry import get_registry

FRAME_KEYS = {"pred_frames", "target_frames", "frame_lens"}


def frame_terms(names=None):
    """The loss terms (registered ``loss`` components) computed from frames alone.

    Arguments:
        names: term names (None: the frame terms of the paper's table, ``PAPER_TERMS``).

    Returns:
        list of names, in order; a name that is not a registered term, or that
        needs more than frames (``ce``, ``stop``, ...), is an error naming it.
    """
    registry = get_registry()

    def requires(name):
        return set(getattr(registry.get("loss", name).factory, "requires", ()))

    if names is None:
        names = [n for n in PAPER_TERMS if requires(n) <= FRAME_KEYS]
    for name in names:
        if name not in registry.names("loss"):
            sys.exit(f"error: --terms {name}: not a registered loss term; choose from "
                     f"{', '.join(sorted(registry.names('loss')))}")
        needs = requires(name) - FRAME_KEYS
        if needs or not requires(name):
            sys.exit(f"error: --terms {name}: that term needs {', '.join(sorted(needs)) or 'model outputs'}, "
                     "not only frames; pass frame terms such as spec, freq_deriv, time_deriv, flux")
    return list(names)


def continuation_frames(rows, spec, prompt_seconds, max_seconds):
    """Log-mel frames [T, F] of each row's continuation."""
    frontend = LogMelFrontend(spec)
    rate = spec.sample_rate
    first, length = to_samples(prompt_seconds, rate), to_samples(max_seconds, rate)
    frames = []
    for row in track(rows, "features"):
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


def mean_in_time(x, width):
    """Mean over ``width`` frames centred on each frame (edges repeated): a time blur."""
    half = width // 2
    padded = torch.cat([x[:1].expand(half, -1), x, x[-1:].expand(half, -1)])
    return padded.unfold(0, width, 1).mean(-1)


def hold_groups(x, size):
    """Each group of ``size`` frames replaced by its mean (a model that can only move every ``size`` frames)."""
    groups = -(-len(x) // size)
    padded = torch.cat([x, x[-1:].expand(groups * size - len(x), -1)])
    means = padded.reshape(groups, size, -1).mean(1)
    return means.repeat_interleave(size, dim=0)[: len(x)]


def predictors(frames, seed=0):
    """{name: frames -> predicted frames} of the reference predictors (see the module docstring)."""
    generator = torch.Generator().manual_seed(seed)
    mean = torch.cat(frames).mean(0)
    weights = fit_linear_ar(frames)

    def noisy(sigma):
        return lambda x: x + sigma * torch.randn(x.shape, generator=generator)

    return {
        "flat (mean frame)": lambda x: mean.expand_as(x),
        "repeat previous true frame": lambda x: torch.cat([x[:1], x[:-1]]),
        "linear AR(2) from true past (in-sample)": lambda x: predict_linear_ar(x, weights),
        "truth": lambda x: x,
        "truth smoothed in time [1,2,1]/4": smooth_in_time,
        "truth, mean over 5 frames": lambda x: mean_in_time(x, 5),
        "truth, mean over 9 frames": lambda x: mean_in_time(x, 9),
        "truth held over groups of 4 frames": lambda x: hold_groups(x, 4),
        "truth + N(0, 0.1^2)": noisy(0.1),
        "truth + N(0, 0.3^2)": noisy(0.3),
        "truth + N(0, 0.5^2)": noisy(0.5),
        "truth + N(0, 1.0^2)": noisy(1.0),
    }


def baselines(frames, terms=None, options=None, seed=0):
    """{predictor: {term: value}} for the reference predictors, scored with the training loss terms.

    Arguments:
        frames: list of true continuation frames [T, F].
        terms: frame-level loss term names (None: those of the paper's table).
        options: ``{term: {argument: value}}`` as in the recipe YAML.
        seed: seed of the noise predictors.

    Returns:
        ``(results, predictions)``: the values, and each predictor's frames.
    """
    terms = frame_terms(terms)
    loss = SpectronLoss({name: 1.0 for name in terms}, options)
    lengths = torch.tensor([len(x) for x in frames])
    target = torch.nn.utils.rnn.pad_sequence(frames, batch_first=True)
    results, predictions = {}, {}
    for name, predict in predictors(frames, seed).items():
        predicted = [predict(x) for x in frames]
        pred = torch.nn.utils.rnn.pad_sequence(predicted, batch_first=True)
        values = loss({"pred_frames": pred, "target_frames": target, "frame_lens": lengths})
        results[name] = {term: float(values[term]) for term in terms}
        predictions[name] = predicted
    return results, predictions


def asr_wer(predictions, words, spec, transcriber, n_iter=32):
    """{predictor: WER} of ASR on the Griffin-Lim audio of each predictor's frames vs the continuation words."""
    from spectron_kit.evaluation import metrics

    registry = get_registry()
    vocoder = registry.build("vocoder", "griffin_lim", spec=spec, n_iter=n_iter)
    asr = registry.build("transcriber", transcriber)
    out = {}
    for name, predicted in track(list(predictions.items()), "vocoder + ASR"):
        with torch.no_grad():
            wavs = [vocoder(x[None])[0][0].numpy() for x in predicted]
        hyps = [metrics.normalize_text(h).split() for h in asr.transcribe(wavs, spec.sample_rate)]
        out[name] = metrics.wer(words, hyps, normalize=False)  # corpus WER: summed edits / summed words
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", help="manifest CSV (librilight_prepare.py)")
    parser.add_argument("--feature-spec", help="feature_spec.json (a bundle has one); default: the paper's")
    parser.add_argument("--step0", help="valid_step0.json of a run: adds the step-0 / value ratios")
    parser.add_argument("--prompt-seconds", type=float, default=3.0)
    parser.add_argument("--max-continuation-seconds", type=float, default=2.5)
    parser.add_argument("--max-utterances", type=int, default=60)
    parser.add_argument("--terms", nargs="+", help="frame-level loss terms to score (default: the paper's "
                        "spec, freq_deriv, time_deriv); any registered frame term, e.g. flux")
    parser.add_argument("--time-orders", type=int, default=2)
    parser.add_argument("--freq-orders", type=int, default=1)
    parser.add_argument("--log-floor", type=float,
                        help="score features with this log floor instead of the feature spec's (what-if)")
    parser.add_argument("--transcriber", help="registered transcriber (e.g. whisper): adds ASR WER of each "
                        "predictor's Griffin-Lim audio against the continuation's words")
    parser.add_argument("--json", help="also write the values here")
    args = parser.parse_args(argv)

    spec = FeatureSpec.load(args.feature_spec) if args.feature_spec else FeatureSpec()
    if args.log_floor is not None:
        try:
            spec = dataclasses.replace(spec, log_floor=args.log_floor)  # FeatureSpec refuses floors <= 0
        except ValueError:
            sys.exit(f"error: --log-floor={args.log_floor}; pass a positive value such as 1e-5")
    terms = frame_terms(args.terms)
    options = {"time_deriv": {"orders": args.time_orders}, "freq_deriv": {"orders": args.freq_orders}}
    rows, skipped = filter_for_continuation(read_manifest(args.manifest), args.prompt_seconds)
    rows = rows[: args.max_utterances]
    if not rows:
        sys.exit(f"error: no utterance of {args.manifest} is longer than the {args.prompt_seconds} s prompt "
                 "plus a continuation; pass a manifest of longer utterances or a smaller --prompt-seconds")
    frames = continuation_frames(rows, spec, args.prompt_seconds, args.max_continuation_seconds)
    results, predictions = baselines(frames, terms, options)
    step0 = json.loads(Path(args.step0).read_text()) if args.step0 else None
    wers = None
    if args.transcriber:
        from spectron_kit.evaluation.continuation import continuation_words

        end = args.prompt_seconds + args.max_continuation_seconds
        words = [continuation_words(row, args.prompt_seconds, end)[0] for row in rows]
        wers = asr_wer(predictions, words, spec, args.transcriber)
        for name, value in wers.items():
            results[name]["asr_wer"] = value

    table = Table(title=f"reconstruction terms of reference predictors ({len(rows)} utterances, "
                        f"{sum(len(x) for x in frames)} frames, K_t={args.time_orders}, K_f={args.freq_orders})")
    table.add_column("predictor")
    for term in terms:
        table.add_column(term, justify="right")
        if step0 and term in step0:
            table.add_column("step 0 / value", justify="right")
    if wers:
        table.add_column(f"ASR WER ({args.transcriber}, Griffin-Lim)", justify="right")
    if step0:
        cells = [c for t in terms for c in ((f"{step0[t]:.3f}", "1.0x") if t in step0 else ("-",))]
        table.add_row("(model at step 0)", *cells, *(["-"] if wers else []))
    for name, values in results.items():
        cells = []
        for term in terms:
            cells.append(f"{values[term]:.3f}")
            if step0 and term in step0:
                cells.append(f"{step0[term] / values[term]:.1f}x" if values[term] else "-")
        if wers:
            cells.append(f"{100 * wers[name]:.1f}%")
        table.add_row(name, *cells)
    Console().print(table)
    if args.json:
        Path(args.json).write_text(json.dumps({"utterances": len(rows), "results": results}, indent=2))
    return results


if __name__ == "__main__":
    main()
