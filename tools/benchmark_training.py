#!/usr/bin/env python3
"""Training speed of the mini recipe: frame targets per second, and where a step's time goes.

    python tools/benchmark_training.py recipes/LibriLight/hparams/spectron_mini.yaml \
        --variant="before: --interleave_phonemes=False --normalize_frames=False" \
        --variant="after:" --steps 20

Each variant is a set of the recipe's overrides on top of the YAML (and any
overrides given after it). For each, the script builds the model and the
datasets with the recipe's own code (``train.py``: corpus, pre-trained parts,
cached prompt encodings), then times ``--steps`` training steps of the
training loader's batches, split into data loading, forward (loss included),
backward and optimiser. It prints one table measured in one run: seconds per
step, frame targets (spectrogram frames with a loss) per second, and each
variant's ratio to the first.

Uses the data and pre-trained parts of the YAML (made on first use, as
``train.py`` does); nothing is written to a run folder.
"""
import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "recipes" / "LibriLight"))

console = Console()


def measure(yaml_file, overrides, steps, warmup, device="cpu"):
    """Time ``steps`` training steps of the recipe's model on its training loader (on ``device``)."""
    import speechbrain as sb
    import train as recipe_train
    from speechbrain.utils.seed import seed_everything

    from spectron_kit.recipe.checkpoints import TrainingClock

    _, _, _, hparams, _ = recipe_train.load_run([yaml_file, *overrides])
    manifests = recipe_train.prepare_data(hparams)
    recipe_train.pretrain_if_missing(hparams, manifests)
    seed_everything(hparams["seed"], verbose=False)
    model = recipe_train.build_model_for_data(hparams, manifests)
    encode = None
    if hparams["cache_prompt_encodings"] and model.encoder_is_fixed:
        encode = lambda rows: recipe_train.encode_prompts(model, rows, hparams)  # noqa: E731
    objective = hparams["loss"]()
    datasets = recipe_train.dataio_prepare(hparams, manifests, model.lm.tokenizer, encode, model.phone_vocab,
                                           needs=objective.requires)
    brain = recipe_train.SpectronBrain(modules={"model": model}, hparams=hparams,
                                       run_opts={"noprogressbar": True, "precision": hparams["precision"],
                                                 "device": device},
                                       checkpointer=None, objective=objective)
    brain.steps_per_epoch = 1
    brain.clock = TrainingClock()  # a minutes-clocked schedule (schedule_clock: minutes) reads it
    brain.clock.start()
    brain.init_optimizers()
    loader = sb.dataio.dataloader.make_dataloader(
        datasets["train"], batch_size=hparams["batch_size"], shuffle=True,
        generator=torch.Generator().manual_seed(hparams["seed"]))
    model.train()
    brain.term_sums, brain.term_count = {}, 0
    times = {"data": 0.0, "forward": 0.0, "backward": 0.0, "optimiser": 0.0}
    frames = 0
    iterator = iter(loader)
    cuda = str(device).startswith("cuda")

    def now():  # a GPU runs ahead of Python: wait for it, so each part gets its own time
        if cuda:
            torch.cuda.synchronize(device)
        return time.perf_counter()

    for step in range(warmup + steps):
        t0 = now()
        batch = next(iterator)
        t1 = now()
        with brain.training_ctx:  # the run's precision (autocast), as in Brain.fit_batch
            out = brain.compute_forward(batch, sb.Stage.TRAIN)
            loss = brain.compute_objectives(out, batch, sb.Stage.TRAIN)
        t2 = now()
        loss.backward()
        t3 = now()
        torch.nn.utils.clip_grad_norm_(model.parameters(), hparams["max_grad_norm"])
        brain.optimizer.step()
        brain.optimizer.zero_grad(set_to_none=True)
        t4 = now()
        if step >= warmup:
            for key, value in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                times[key] += value
            frames += int(out[0]["frame_lens"].sum())  # (predictions, inputs)
    total = sum(times.values())
    return {"step_s": total / steps, "frames_per_s": frames / total,
            **{f"{k}_s": v / steps for k, v in times.items()},
            "parameters": model.num_parameters(trainable_only=True), "batch_size": hparams["batch_size"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("yaml", help="the recipe YAML, e.g. recipes/LibriLight/hparams/spectron_mini.yaml")
    parser.add_argument("overrides", nargs="*", help="overrides for every variant (--key=value)")
    parser.add_argument("--variant", action="append", metavar="NAME: OVERRIDES", default=None,
                        help="a named set of overrides, e.g. --variant='bf16: --precision=bf16'; repeat to compare")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda:0 for a GPU (its parts are timed after "
                                                        "torch.cuda.synchronize)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = [tuple(part.strip() for part in v.partition(":")[::2]) for v in args.variant or ["as configured:"]]
    results = []
    for name, text in variants:
        console.print(f"[bold]{name}[/]: {text or '(the YAML as it is)'}")
        results.append((name, text, measure(args.yaml, [*args.overrides, *shlex.split(text)], args.steps,
                                            args.warmup, args.device)))
    table = Table(title=f"training step, {args.steps} steps after {args.warmup} warm-up, "
                        f"{torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs, {args.device}")
    for column in ("variant", "s/step", "data", "forward", "backward", "optimiser", "frame targets/s",
                   "vs first"):
        table.add_column(column, justify="right" if column != "variant" else "left")
    first = results[0][2]["frames_per_s"]
    for name, _, r in results:
        table.add_row(name, f"{r['step_s']:.3f}", f"{r['data_s']:.3f}", f"{r['forward_s']:.3f}",
                      f"{r['backward_s']:.3f}", f"{r['optimiser_s']:.3f}", f"{r['frames_per_s']:.0f}",
                      f"{r['frames_per_s'] / first:.2f}x")
    console.print(table)
    return results


if __name__ == "__main__":
    main()
