#!/usr/bin/env python3
"""CPU training-step cost with glibc's default allocator settings vs ``reuse_freed_memory``.

    python tools/benchmark_allocator.py [--steps 12] [--batch-size 32]

Times the mini recipe's CTC encoder pre-training step (log-mel front end +
3-layer Conformer + CTC, batch of 3 s prompts) in two fresh processes, one with
glibc's defaults and one after ``spectron_kit.recipe.reuse_freed_memory()``,
and prints one table: ms per step, user and system CPU seconds, minor page
faults and peak memory, with the ratios between the two.
"""
import argparse
import json
import os
import subprocess
import sys

from rich.console import Console
from rich.table import Table

WORKER = r"""
import json, resource, sys, time
import torch
from spectron_kit import build
from spectron_kit.ctc import CTCSpeechRecognizer
from spectron_kit.recipe import reuse_freed_memory

steps, batch, reuse = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "reuse"
applied = reuse_freed_memory() if reuse else False
torch.manual_seed(0)
spec = dict(sample_rate=16000, n_fft=1024, win_length=800, hop_length=200, n_mels=80)
model = CTCSpeechRecognizer(build("frontend", "log_mel", spec=spec), build(
    "encoder", "conformer", n_mels=80, hop_seconds=200 / 16000, d_model=96, num_layers=3, nhead=4, d_ffn=384,
    kernel_size=15, dropout=0.1, subsampling_channels=32))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)
wav, lens = 0.1 * torch.randn(batch, 48000), torch.full((batch,), 48000)
labels, label_lens = torch.randint(1, 28, (batch, 45)), torch.full((batch,), 45)

def step():
    logp, out_lens = model(wav, lens)
    loss = ctc(logp.transpose(0, 1), labels, out_lens, label_lens)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

for _ in range(2):  # warm-up
    step()
before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for _ in range(steps):
    step()
seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"applied": applied, "ms_per_step": 1000 * seconds / steps,
                  "user_s": after.ru_utime - before.ru_utime, "sys_s": after.ru_stime - before.ru_stime,
                  "minor_faults": after.ru_minflt - before.ru_minflt, "peak_rss_mb": after.ru_maxrss / 1024}))
"""


def measure(mode, steps, batch_size):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    proc = subprocess.run([sys.executable, "-c", WORKER, str(steps), str(batch_size), mode],
                          capture_output=True, text=True, env=env, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    default = measure("default", args.steps, args.batch_size)
    reuse = measure("reuse", args.steps, args.batch_size)
    if not reuse["applied"]:
        print("note: reuse_freed_memory() had no effect here (not Linux/glibc); both columns use the defaults")
    table = Table(title=f"CTC pre-training step, batch {args.batch_size} x 3 s, {args.steps} steps, "
                        f"{os.cpu_count()} CPUs")
    for column in ("", "glibc defaults", "reuse_freed_memory", "defaults / reuse"):
        table.add_column(column, justify="right")
    for key, label in (("ms_per_step", "ms per step"), ("user_s", "user CPU s"), ("sys_s", "system CPU s"),
                       ("minor_faults", "minor page faults"), ("peak_rss_mb", "peak RSS MB")):
        a, b = default[key], reuse[key]
        table.add_row(label, f"{a:,.1f}", f"{b:,.1f}", f"{a / b:.2f}x" if b else "-")
    Console().print(table)
    return default, reuse


if __name__ == "__main__":
    main()
