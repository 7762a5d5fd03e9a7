#!/usr/bin/env python3
"""Decoding speed: KV-cached vs uncached generation, cost per step along the sequence, and (with a bundle)
streaming latency and batched throughput.

    python tools/benchmark.py [--frames 500] [--d-model 256] [--layers 4] [--device cpu]
    python tools/benchmark.py --bundle results/spectron_mini/1234/bundle --prompts data/mini_corpus/test_seen
    python tools/benchmark.py --recompute-lm 1024x24   # also the cache's gain at the paper LM's size

Prints one table measured in a single run: seconds for N frames with and
without the cache, their ratio, and the cached step time at frame ~10 vs the
last frames (a cached step should cost about the same at frame 10 and 500).
With ``--bundle``, a second table: time to the first text token after the
prompt is read, time to the first audio after the text (``SpectronModel.stream``),
streaming vs non-streaming total time (``generate`` + vocoder), and the
real-time factor (compute seconds per second of audio, vocoding included) at
batch 1 and ``--batch``, each with its target beside it. With ``--recompute-lm DxL``, one more table:
the cached step against a full recompute at ``--long-frames`` frames for an LM of width D and L layers
(1024x24 is the shape of the 410M-parameter Pythia the paper configuration loads, random weights), where
the cache's gain is measured at the size that matters without decoding 500 frames uncached at that size.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from spectron_kit import build
from spectron_kit.model import SpectronModel


def tiny_model(d_model, layers, device):
    """A SpectronModel with random weights around a Llama-shaped LM of width ``d_model`` and ``layers`` layers
    (heads of width 64, at least 4)."""
    torch.manual_seed(0)
    heads = max(4, d_model // 64)
    model = SpectronModel(
        frontend=build("frontend", "log_mel"),
        encoder=build("encoder", "conformer", n_mels=128, d_model=144, num_layers=2, nhead=4, d_ffn=576),
        lm=build("lm", "hf", config={"model_type": "llama", "hidden_size": d_model, "intermediate_size": 4 * d_model,
                                     "num_hidden_layers": layers, "num_attention_heads": heads,
                                     "num_key_value_heads": heads, "max_position_embeddings": 4096}, vocab_size=512),
        prenet=lambda in_dim, out_dim: build("prenet", "mlp", in_dim=in_dim, out_dim=out_dim, bottleneck=128),
        postnet=lambda in_dim, out_dim: build("postnet", "mlp", in_dim=in_dim, out_dim=out_dim),
        max_text_tokens=8)
    return model.to(device).eval()


class StepTimer:
    """Wraps the LM forward to time every decoding step."""

    def __init__(self, lm):
        self.lm, self.times = lm, []
        self.original = lm.forward

        def timed(*args, **kwargs):
            start = time.perf_counter()
            out = self.original(*args, **kwargs)
            self.times.append(time.perf_counter() - start)
            return out

        lm.forward = timed

    def restore(self):
        self.lm.forward = self.original


def lm_shape(text):
    """``"1024x24"`` -> (1024, 24); anything else is refused with the expected form."""
    try:
        d_model, layers = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give the LM shape as WIDTHxLAYERS, e.g. 1024x24") from None
    if d_model < 64 or d_model % 64 or layers < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: the width must be a multiple of 64 and layers at least 1")
    return d_model, layers


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--long-frames", type=int, default=1000, help="frames of the cached vs full-recompute row")
    parser.add_argument("--recompute-lm", type=lm_shape, metavar="DxL",
                        help="also time cached step vs full recompute for an LM of this shape (e.g. 1024x24)")
    parser.add_argument("--bundle", help="a trained bundle: streaming latency and batched throughput")
    parser.add_argument("--prompts", default="data/mini_corpus/test_seen", help="audio files for --bundle")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5, help="prompts averaged for the streaming rows")
    parser.add_argument("--markdown", help="also write the tables as Markdown (with command, date, hardware, commit)")
    parser.add_argument("--readme", help="also write them into this Markdown file's benchmark block (README.md)")
    parser.add_argument("--block", default="main", help="which benchmark block of --readme (its markers name it)")
    args = parser.parse_args()
    model = tiny_model(args.d_model, args.layers, args.device)
    prompt = torch.randn(3 * 16000) * 0.1
    results = {}
    for use_cache in (True, False):
        timer = StepTimer(model.lm)
        torch.manual_seed(1)
        start = time.perf_counter()
        out = model.generate(prompt, num_frames=args.frames, use_cache=use_cache, vocode=False)
        results[use_cache] = (time.perf_counter() - start, timer.times, out)
        timer.restore()
    cached_s, steps, out = results[True]
    uncached_s, uncached_steps, _ = results[False]
    frame_steps = steps[-args.frames:]
    early, late = frame_steps[5:25], frame_steps[-20:]
    early_ms, late_ms = 1000 * sum(early) / len(early), 1000 * sum(late) / len(late)
    decoding = [("cached decode (s)", f"{cached_s:.2f}", ""),
                ("uncached decode (s)", f"{uncached_s:.2f}", ""),
                ("uncached / cached", f"{uncached_s / cached_s:.1f}x", ""),
                ("cached step, frames 5-25 (ms)", f"{early_ms:.2f}", ""),
                ("cached step, last 20 frames (ms)", f"{late_ms:.2f}", ""),
                ("late / early cached step", f"{late_ms / early_ms:.2f}x", "<= 1.3"),
                ("uncached step, last 20 frames (ms)", f"{1000 * sum(uncached_steps[-20:]) / 20:.2f}", ""),
                ("frames per second (cached)", f"{out.timing['frames_per_second']:.0f}", "")]
    decoding += recompute_rows(model, args.long_frames, digits=2)
    tables = [(f"{args.frames} frames, LM d={args.d_model} x {args.layers} layers (random weights), {args.device}",
               decoding)]
    if args.recompute_lm:
        d_model, layers = args.recompute_lm
        big = tiny_model(d_model, layers, args.device)
        size = sum(p.numel() for p in big.lm.parameters()) / 1e6
        tables.append((f"{args.long_frames} frames, LM d={d_model} x {layers} layers ({size:.0f}M parameters, "
                       f"random weights), {args.device}", recompute_rows(big, args.long_frames, digits=1)))
        del big
    if args.bundle:
        threads = torch.get_num_threads()
        rows = stream_and_batch(args.bundle, args.prompts, args.batch, args.repeats)
        tables.append((f"{args.bundle} on {args.prompts}, {args.device}, {threads} threads",
                       [(measure, f"{value:.3f}", target) for measure, value, target in rows]))
    console = Console()
    for title, rows in tables:
        table = Table(title=title)
        for column, justify in (("measure", "left"), ("value", "right"), ("target", "right")):
            table.add_column(column, justify=justify)
        for row in rows:
            table.add_row(*row)
        console.print(table)
    if args.markdown or args.readme:
        text = markdown(tables, args.device)
        if args.markdown:
            Path(args.markdown).write_text(text)
            console.print(f"wrote {args.markdown}")
        if args.readme:
            replace_block(args.readme, text, args.block)
            console.print(f"updated the benchmark block {args.block!r} of {args.readme}")


def block_markers(name):
    """The lines around a named benchmark block in a Markdown file."""
    return (f"<!-- benchmark {name}: start (written by tools/benchmark.py --readme; do not edit) -->",
            f"<!-- benchmark {name}: end -->")


def markdown(tables, device):
    """The tables as Markdown, with the command, date, hardware and commit they came from."""
    import datetime
    import os
    import platform
    import shlex

    from spectron_kit.evaluation.report import checkout_commit

    commit = checkout_commit() or "n/a"
    command = shlex.join(["python", "tools/benchmark.py", *sys.argv[1:]])
    lines = [f"Measured by `{command}` on {datetime.date.today().isoformat()}: {os.cpu_count()} CPU cores "
             f"({platform.processor() or platform.machine()}), {torch.get_num_threads()} torch threads, "
             f"device {device}, torch {torch.__version__}, commit {commit}. Ratios are measured within one run.", ""]
    for title, rows in tables:
        lines += [f"| {title} | value | target |", "| --- | ---: | ---: |"]
        lines += [f"| {measure} | {value} | {target} |" for measure, value, target in rows]
        lines.append("")
    return "\n".join(lines)


def replace_block(path, text, name="main"):
    """Write ``text`` between the markers of benchmark block ``name`` in the Markdown file ``path``."""
    page, (first, last) = Path(path).read_text(), block_markers(name)
    start, end = page.find(first), page.find(last)
    if start < 0 or end < start:
        raise SystemExit(f"error: {path} has no benchmark block {name!r}; add the lines {first} and {last} "
                         "where the table goes")
    Path(path).write_text(page[:start + len(first)] + "\n" + text.rstrip("\n") + "\n" + page[end:])


def prompts_from(folder, n, rate, seconds):
    """The first ``seconds`` of ``n`` audio files under ``folder`` (sorted; FLAC or WAV)."""
    from pathlib import Path

    from spectron_kit.audio import load_audio, to_samples

    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in (".flac", ".wav"))[:n]
    if not files:
        raise SystemExit(f"--prompts={folder}: no .flac or .wav file there")
    return [load_audio(f, rate)[: to_samples(seconds, rate)] for f in files]


def stream_and_batch(bundle, folder, batch, repeats):
    """Streaming latency and batched throughput of a bundle on real prompts: rows of (measure, value, target)."""
    model = SpectronModel.from_pretrained(bundle).eval()
    rate = model.frontend.spec.sample_rate
    prompts = prompts_from(folder, max(batch, repeats), rate, model.prompt_seconds)
    first_text, first_audio, streamed, whole = [], [], [], []
    for prompt in prompts[:repeats]:
        torch.manual_seed(0)
        start = time.perf_counter()
        out = model.generate(prompt, torch.tensor([len(prompt)]))
        whole.append(time.perf_counter() - start)
        encoded = out.timing["encode_s"]
        torch.manual_seed(0)
        start, text_at, speech_at, audio_at = time.perf_counter(), None, None, None
        for event in model.stream(prompt):
            now = time.perf_counter() - start
            if event.kind == "text" and text_at is None:
                text_at = now
            elif event.kind == "speech":
                speech_at = now
            elif event.kind == "audio" and audio_at is None and len(event.audio):
                audio_at = now
        streamed.append(time.perf_counter() - start)
        first_text.append(text_at - encoded)
        first_audio.append(audio_at - speech_at)
    rows = [("time to first text token after the prompt is read (s)", statistics.mean(first_text), ""),
            ("time to first audio after the text (s)", statistics.mean(first_audio), "<= 0.3"),
            ("non-streaming total: generate + vocoder (s)", statistics.mean(whole), ""),
            ("streaming total (s)", statistics.mean(streamed), ""),
            ("streaming / non-streaming", statistics.mean(streamed) / statistics.mean(whole), "<= 1.1")]
    for size in sorted({1, batch}):
        wav = torch.nn.utils.rnn.pad_sequence(prompts[:size], batch_first=True)
        lens = torch.tensor([len(p) for p in prompts[:size]])
        model.generate(wav, lens)  # warm-up
        start = time.perf_counter()
        out = model.generate(wav, lens)
        seconds = time.perf_counter() - start
        audio = sum(len(w) for w in out.waveforms) / out.sample_rate
        t = out.timing
        rows.append((f"batch {size}: real-time factor, vocoder included (LM {t['text_s'] + t['frames_s']:.2f} s, "
                     f"vocoder {t['vocoder_s']:.2f} s, {audio:.1f} s of audio)", seconds / audio,
                     "<= 0.05" if size == batch else ""))
    return rows


def recompute_rows(model, frames, digits):
    """The table rows of :func:`full_recompute_ratio`: both times in ms (``digits`` decimals) and their ratio."""
    cached_step, full = full_recompute_ratio(model, frames)
    return [(f"cached step at {frames} frames (ms)", f"{1000 * cached_step:.{digits}f}", ""),
            (f"full recompute at {frames} frames (ms)", f"{1000 * full:.{digits}f}", ""),
            (f"full recompute / cached step at {frames} frames", f"{full / cached_step:.1f}x", ">= 10")]


def full_recompute_ratio(model, frames, repeats=3):
    """Cached step time at ``frames`` frames vs recomputing the whole sequence once (the uncached step there)."""
    timer = StepTimer(model.lm)
    prompt = torch.randn(3 * 16000) * 0.1
    torch.manual_seed(1)
    out = model.generate(prompt, num_frames=frames, vocode=False)
    cached = sum(timer.times[-20:]) / 20
    timer.restore()
    with torch.no_grad():
        _, prefix_lens = model.encode_prompt(prompt[None], torch.tensor([len(prompt)]))
    length = int(prefix_lens[0]) + out.timing["decoder_steps"]  # the sequence the last step reads
    embeds = torch.randn(1, length, model.lm.d_model) * 0.02
    mask = torch.ones(1, length, dtype=torch.long)
    positions = torch.arange(length)[None]
    with torch.no_grad():
        model.lm(embeds, mask, positions)
        start = time.perf_counter()
        for _ in range(repeats):
            model.lm(embeds, mask, positions)
    return cached, (time.perf_counter() - start) / repeats


if __name__ == "__main__":
    main()
