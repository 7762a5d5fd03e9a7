#!/usr/bin/env python3
"""Training speed of the mini recipe: frame targets per second, and where a step's time goes.

    python tools/benchmark_training.py recipes/LibriLight/hparams/spectron_mini.yaml \
        --variant="before: --interleave_phonemes=False --normalize_frames=False" \
        --variant="after:" --steps 20

Each variant is a set of the recipe's overrides on top of the YAML (and any
overrides given after it). For each, the script builds the model and the
datasets with the recipe's own code (``train.py``: corpus, pre-trained parts,
cached prompt encodings), then times ``--steps`` training steps of the
training loader's batches, split into data loading, forward (and within it the
speech prefix - encoder and projection -, the LM, the pre-net, the post-net,
the rest of the model's own code, and the losses), backward and optimiser. It
prints two tables measured in one run: seconds per step, frame targets
(spectrogram frames with a loss) per second, each variant's ratio to the first
and its mean training loss over the timed steps (the same batches in the same
order for every variant); and the forward's parts with the share of padded
positions, of positions that carry no frame loss, and the peak memory.

Uses the data and pre-trained parts of the YAML (made on first use, as
``train.py`` does); nothing is written to a run folder (the optimiser's
``parameter_groups.json`` goes to a temporary folder unless ``--output_folder`` is given).
"""
import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "recipes" / "LibriLight"))

console = Console(width=None if sys.stdout.isatty() else 150)  # a log keeps the tables' columns whole


def measure(yaml_file, overrides, steps, warmup, device="cpu", profile=0):
    """Time ``steps`` training steps of the recipe's model on its training loader (on ``device``); with
    ``profile``, also print the ``profile`` operators that took the most time of their own (torch.profiler,
    over the timed steps: profiling slows them, so compare its shares, not its times)."""
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
        generator=torch.Generator().manual_seed(hparams["seed"]), **recipe_train.loader_workers(hparams, device))
    model.train()
    brain.term_sums, brain.term_count = {}, 0
    times = {"data": 0.0, "forward": 0.0, "backward": 0.0, "optimiser": 0.0}
    parts = PartTimer(model, device)
    frames, positions, padded, no_frame_loss, losses = 0, 0, 0, 0, []
    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
    iterator = iter(loader)
    cuda = str(device).startswith("cuda")

    def now():  # a GPU runs ahead of Python: wait for it, so each part gets its own time
        if cuda:
            torch.cuda.synchronize(device)
        return time.perf_counter()

    profiler = None
    for step in range(warmup + steps):
        if profile and step == warmup:
            profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]
                                              + ([torch.profiler.ProfilerActivity.CUDA] if cuda else []))
            profiler.__enter__()
        t0 = now()
        batch = next(iterator)
        t1 = now()
        with brain.training_ctx:  # the run's precision (autocast), as in Brain.fit_batch
            parts.active = step >= warmup
            out = brain.compute_forward(batch, sb.Stage.TRAIN)
            t_model = now()
            loss = brain.compute_objectives(out, batch, sb.Stage.TRAIN)
            parts.active = False
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
            parts.seconds["losses"] += t2 - t_model
            parts.seconds["model"] += t_model - t1
            predictions = out[0]  # (predictions, inputs)
            frames += int(predictions["frame_lens"].sum())
            used, width, speech_steps = sequence_positions(predictions)
            positions += width
            padded += width - used
            no_frame_loss += width - speech_steps
            losses.append(float(loss.detach()))
    if profiler is not None:
        profiler.__exit__(None, None, None)
        console.print(profiler.key_averages().table(sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total",
                                                    row_limit=int(profile)), soft_wrap=True)
    total = sum(times.values())
    forward = {name: value / steps for name, value in parts.seconds.items()}
    forward["other model code"] = forward.pop("model") - sum(v for k, v in forward.items() if k != "losses")
    return {"step_s": total / steps, "frames_per_s": frames / total,
            **{f"{k}_s": v / steps for k, v in times.items()}, "forward_parts_s": forward,
            "padding_share": padded / max(positions, 1), "no_frame_loss_share": no_frame_loss / max(positions, 1),
            "mean_loss": sum(losses) / len(losses), "peak_memory_gb": peak_memory_gb(device),
            "parameters": model.num_parameters(trainable_only=True), "batch_size": hparams["batch_size"]}


class PartTimer:
    """Wall time spent in the forward of the model's parts (outermost calls only), while ``active``."""

    PARTS = (("speech prefix", ("encoder", "projection")), ("LM", ("lm",)), ("pre-net", ("prenet",)),
             ("post-net", ("postnet",)))

    def __init__(self, model, device):
        self.active, self.cuda = False, str(device).startswith("cuda")
        self.seconds = {name: 0.0 for name, _ in self.PARTS} | {"model": 0.0, "losses": 0.0}
        self._started, self._depth = {}, {}
        for name, attributes in self.PARTS:
            for attribute in attributes:
                module = getattr(model, attribute, None)
                if module is not None:
                    module.register_forward_pre_hook(lambda *_, n=name: self._enter(n))
                    module.register_forward_hook(lambda *_, n=name: self._leave(n))

    def _now(self):
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def _enter(self, name):
        if self.active:
            self._depth[name] = self._depth.get(name, 0) + 1
            if self._depth[name] == 1:
                self._started[name] = self._now()

    def _leave(self, name):
        if self.active and self._depth.get(name):
            self._depth[name] -= 1
            if self._depth[name] == 0:
                self.seconds[name] += self._now() - self._started.pop(name)


def sequence_positions(predictions):
    """(positions used, positions in the padded batch, positions whose target is a frame group) of a batch's
    LM sequences, from the model's ``layout`` (prefix, text, speech steps per item) and ``stop_lengths``."""
    layout = predictions["layout"].tolist()
    lengths = [p + n + 1 + m for p, n, m in layout]
    groups = predictions.get("stop_lengths")
    speech = int(groups.sum()) if groups is not None else sum(m for _, _, m in layout)
    return sum(lengths), max(lengths) * len(lengths), speech


def peak_memory_gb(device):
    """Peak memory: the GPU's allocated peak on cuda, else this process's peak resident memory."""
    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 1e9
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("yaml", help="the recipe YAML, e.g. recipes/LibriLight/hparams/spectron_mini.yaml")
    parser.add_argument("overrides", nargs="*", help="overrides for every variant (--key=value)")
    parser.add_argument("--variant", action="append", metavar="NAME: OVERRIDES", default=None,
                        help="a named set of overrides, e.g. --variant='bf16: --precision=bf16'; repeat to compare")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also print the N operators with the most time of their own (torch.profiler)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda:0 for a GPU (its parts are timed after "
                                                        "torch.cuda.synchronize)")
    args, unknown = parser.parse_known_args(argv)  # the recipe's own --key=value overrides pass through
    bad = [a for a in unknown if not a.startswith("--")]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    args.overrides = [*args.overrides, *unknown]
    if not any(o.startswith("--output_folder") for o in args.overrides):  # leave the recipe's run folders alone
        args.overrides.append(f"--output_folder={tempfile.mkdtemp(prefix='benchmark_training_')}")
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = [tuple(part.strip() for part in v.partition(":")[::2]) for v in args.variant or ["as configured:"]]
    results = []
    for name, text in variants:
        console.print(f"[bold]{name}[/]: {text or '(the YAML as it is)'}")
        results.append((name, text, measure(args.yaml, [*args.overrides, *shlex.split(text)], args.steps,
                                            args.warmup, args.device, args.profile)))
    table = Table(title=f"training step, {args.steps} steps after {args.warmup} warm-up, "
                        f"{torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs, {args.device}")
    for column in ("variant", "s/step", "data", "forward", "backward", "optimiser", "frame targets/s",
                   "vs first", "mean loss"):
        table.add_column(column, justify="right" if column != "variant" else "left")
    first = results[0][2]["frames_per_s"]
    for name, _, r in results:
        table.add_row(name, f"{r['step_s']:.3f}", f"{r['data_s']:.3f}", f"{r['forward_s']:.3f}",
                      f"{r['backward_s']:.3f}", f"{r['optimiser_s']:.3f}", f"{r['frames_per_s']:.0f}",
                      f"{r['frames_per_s'] / first:.2f}x", f"{r['mean_loss']:.3f}")
    console.print(table)
    parts = Table(title="the forward's parts (s/step), the batches' positions and peak memory")
    names = list(results[0][2]["forward_parts_s"])
    for column in ("variant", *names, "padded positions", "no frame loss", "peak memory (GB)"):
        parts.add_column(column, justify="right" if column != "variant" else "left")
    for name, _, r in results:
        parts.add_row(name, *(f"{r['forward_parts_s'][n]:.3f}" for n in names), f"{r['padding_share']:.0%}",
                      f"{r['no_frame_loss_share']:.0%}", f"{r['peak_memory_gb']:.2f}")
    console.print(parts)
    return results


if __name__ == "__main__":
    main()
