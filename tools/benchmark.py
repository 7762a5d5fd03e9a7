#!/usr/bin/env python3
"""Decoding speed: KV-cached vs uncached generation, and cost per step along the sequence.

    python tools/benchmark.py [--frames 500] [--d-model 256] [--layers 4] [--device cpu]

Prints one table measured in a single run: seconds for N frames with and
without the cache, their ratio, and the cached step time at frame ~10 vs the
last frames (a cached step should cost about the same at frame 10 and 500).
"""
import argparse
import time

import torch
from rich.console import Console
from rich.table import Table

from spectron_kit import build
from spectron_kit.model import SpectronModel


def tiny_model(d_model, layers, device):
    torch.manual_seed(0)
    model = SpectronModel(
        frontend=build("frontend", "log_mel"),
        encoder=build("encoder", "conformer", n_mels=128, d_model=144, num_layers=2, nhead=4, d_ffn=576),
        lm=build("lm", "hf", config={"model_type": "llama", "hidden_size": d_model, "intermediate_size": 4 * d_model,
                                     "num_hidden_layers": layers, "num_attention_heads": 4,
                                     "num_key_value_heads": 4, "max_position_embeddings": 4096}, vocab_size=512),
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--device", default="cpu")
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
    table = Table(title=f"{args.frames} frames, LM d={args.d_model} x {args.layers} layers, {args.device}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("cached decode (s)", f"{cached_s:.2f}")
    table.add_row("uncached decode (s)", f"{uncached_s:.2f}")
    table.add_row("uncached / cached", f"{uncached_s / cached_s:.1f}x")
    table.add_row("cached step, frames 5-25 (ms)", f"{early_ms:.2f}")
    table.add_row("cached step, last 20 frames (ms)", f"{late_ms:.2f}")
    table.add_row("late / early cached step", f"{late_ms / early_ms:.2f}x")
    table.add_row("uncached step, last 20 frames (ms)", f"{1000 * sum(uncached_steps[-20:]) / 20:.2f}")
    table.add_row("frames per second (cached)", f"{out.timing['frames_per_second']:.0f}")
    Console().print(table)


if __name__ == "__main__":
    main()
