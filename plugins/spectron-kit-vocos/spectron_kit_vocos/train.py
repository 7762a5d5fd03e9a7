"""Train the Vocos-style vocoder on any LibriSpeech-layout folder (e.g. the mini corpus).

    python -m spectron_kit_vocos.train --data data/mini_corpus/train --out results/vocos \\
        --feature-spec results/spectron_mini/1234/bundle/feature_spec.json --steps 3000

Random ``--segment-seconds`` crops of the audio; the frontend of spectron-kit
makes the frames (so the vocoder learns exactly the features the Spectron model
writes); the loss is a multi-resolution STFT loss (spectral convergence +
log-magnitude L1) plus an L1 between the frames of the output and the input
frames. No adversarial loss: it trains on a CPU in minutes, at the price of
some buzz. Checkpoints every ``--save-every`` steps; rerunning resumes.
"""
import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch
from torch import nn

from spectron_kit import build
from spectron_kit.audio import audio_seconds, load_audio
from spectron_kit.features import FeatureSpec
from spectron_kit.progress import progress_bar

from spectron_kit_vocos import VocosVocoder

#: STFT resolutions of the spectral loss (n_fft, hop, window) at 16 kHz
RESOLUTIONS = ((256, 64, 256), (512, 128, 512), (1024, 256, 1024))


def audio_files(folder):
    """Every .flac/.wav under a LibriSpeech-layout folder, sorted."""
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in (".flac", ".wav"))
    if not files:
        raise FileNotFoundError(f"no .flac or .wav files under {folder}; pass a LibriSpeech-layout folder "
                                "(e.g. data/mini_corpus/train)")
    return files


def stft_loss(wav, target):
    """Multi-resolution STFT loss: spectral convergence + L1 of log magnitudes, averaged over resolutions."""
    total = 0.0
    for n_fft, hop, win in RESOLUTIONS:
        window = torch.hann_window(win, device=wav.device)
        a = torch.stft(wav, n_fft, hop, win, window, return_complex=True).abs().clamp(min=1e-5)
        b = torch.stft(target, n_fft, hop, win, window, return_complex=True).abs().clamp(min=1e-5)
        convergence = torch.linalg.norm(b - a) / torch.linalg.norm(b).clamp(min=1e-5)
        total = total + convergence + (a.log() - b.log()).abs().mean()
    return total / len(RESOLUTIONS)


class Crops:
    """Random fixed-length crops of random files (read lazily: only the crop is decoded)."""

    def __init__(self, files, spec, seconds, seed):
        self.rng = random.Random(seed)
        self.spec = spec
        self.seconds = seconds
        self.items = [(f, audio_seconds(f)) for f in files]
        self.items = [(f, d) for f, d in self.items if d > seconds]
        if not self.items:
            raise ValueError(f"no file is longer than --segment-seconds={seconds}; lower it")

    def batch(self, size):
        n = int(round(self.seconds * self.spec.sample_rate))
        wavs = []
        for _ in range(size):
            path, duration = self.rng.choice(self.items)
            start = self.rng.uniform(0.0, duration - self.seconds)
            wav = load_audio(str(path), self.spec.sample_rate, start=start, end=start + self.seconds + 0.1)[:n]
            wavs.append(nn.functional.pad(wav, (0, n - len(wav))))
        return torch.stack(wavs)


def train(data, out, spec, steps=3000, batch_size=8, segment_seconds=0.8, lr=1e-3, seed=0, save_every=250,
          max_minutes=None, arch=None, mel_weight=1.0, progress=True):
    """Train (or resume) a vocoder in ``out``; returns the training record."""
    torch.manual_seed(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frontend = build("frontend", "log_mel", spec=spec)
    vocoder = VocosVocoder(spec=spec, **(arch or {}))
    optimizer = torch.optim.AdamW(vocoder.parameters(), lr=lr, betas=(0.8, 0.99))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + torch.cos(
        torch.tensor(min(s, steps) / steps * torch.pi)).item()) * 0.9 + 0.1)
    state = out / "checkpoint.pt"
    step, history = 0, []
    if state.is_file():
        saved = torch.load(state, weights_only=False)
        vocoder.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        step, history = saved["step"], saved["history"]
        crops_state = saved["rng"]
    else:
        crops_state = None
    crops = Crops(audio_files(data), spec, segment_seconds, seed)
    if crops_state is not None:
        crops.rng.setstate(crops_state)
    started = time.time()

    def save():
        torch.save({"model": vocoder.state_dict(), "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(), "step": step, "history": history,
                    "rng": crops.rng.getstate()}, state)
        vocoder.save_pretrained(out)

    vocoder.train()
    with progress_bar(info=True, disable=not progress) as bar:
        task = bar.add_task("vocoder training", total=steps, completed=step, info="")
        while step < steps:
            wav = crops.batch(batch_size)
            with torch.no_grad():
                feats, lengths = frontend(wav)
            fake, _ = vocoder(feats, lengths)
            target = wav[:, : fake.shape[1]]
            spectral = stft_loss(fake, target)
            mel = (frontend(fake)[0] - feats).abs().mean()
            loss = spectral + mel_weight * mel
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(vocoder.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            step += 1
            loss, spectral, mel = float(loss.detach()), float(spectral.detach()), float(mel.detach())
            if step % 25 == 0 or step == steps:
                history.append({"step": step, "loss": loss, "stft": spectral, "mel_l1": mel})
            bar.update(task, advance=1, info=f"stft {spectral:.3f} mel {mel:.3f}")
            if step % save_every == 0:
                save()
            if max_minutes is not None and (time.time() - started) / 60 >= max_minutes:
                break
    save()
    record = {"steps": step, "minutes_this_run": (time.time() - started) / 60, "history": history,
              "data": str(data), "spec": spec.to_dict(), "arch": vocoder.arch,
              "parameters": sum(p.numel() for p in vocoder.parameters())}
    (out / "training.json").write_text(json.dumps(record, indent=1))
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="LibriSpeech-layout folder of training audio")
    parser.add_argument("--out", required=True, help="where the vocoder (and its checkpoint) go")
    parser.add_argument("--feature-spec", help="feature_spec.json (e.g. a Spectron bundle's); default: the "
                                               "mini recipe's (16 kHz, n_fft 1024, win 800, hop 200, 80 mels)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--segment-seconds", type=float, default=0.8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-every", type=int, default=250)
    parser.add_argument("--max-minutes", type=float, help="stop after this many minutes (rerun to resume)")
    parser.add_argument("--dim", type=int, default=192)
    parser.add_argument("--layers", type=int, default=6)
    args = parser.parse_args(argv)
    spec = (FeatureSpec.load(args.feature_spec) if args.feature_spec else
            FeatureSpec(sample_rate=16000, n_fft=1024, win_length=800, hop_length=200, n_mels=80))
    try:
        record = train(args.data, args.out, spec, steps=args.steps, batch_size=args.batch_size,
                       segment_seconds=args.segment_seconds, lr=args.lr, seed=args.seed,
                       save_every=args.save_every, max_minutes=args.max_minutes,
                       arch={"dim": args.dim, "hidden": 3 * args.dim, "num_layers": args.layers})
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    last = record["history"][-1] if record["history"] else {}
    print(f"{record['steps']} steps, {record['parameters'] / 1e6:.2f} M parameters, last loss "
          f"{last.get('loss', float('nan')):.3f} (stft {last.get('stft', float('nan')):.3f}, mel L1 "
          f"{last.get('mel_l1', float('nan')):.3f}); vocoder in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
