"""Spectrogram figures (matplotlib, no display needed)."""
import numpy as np


def colour_range(arrays):
    """One colour range for several spectrograms: the 1st and 99.9th percentile of all their values.

    Arguments:
        arrays: list of arrays [T, F] (empty ones are ignored).

    Returns:
        ``(vmin, vmax)`` floats (``(0.0, 1.0)`` when there is nothing).

    Example:
        >>> colour_range([np.zeros((2, 2)), np.ones((3, 2))])
        (0.0, 1.0)
    """
    values = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays if np.size(a)] or [np.zeros(0)])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(values, [1.0, 99.9])
    return float(low), float(max(high, low + 1e-6))


def plot_spectrograms(panels, path, frame_rate=80.0, title=None, shared_scale=True):
    """Save stacked spectrogram panels to an image file.

    Arguments:
        panels: list of (label, frames [T, F]) pairs, drawn top to bottom.
        path: output file (PNG recommended).
        frame_rate: frames per second, for the time axis.
        title: figure title.
        shared_scale: draw every panel with one colour scale (one colour bar),
            so a flat, featureless panel looks flat next to a real one;
            False scales each panel to its own range.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(label, frames) for label, frames in panels if frames is not None and len(frames)]
    if not panels:
        raise ValueError("nothing to plot: every panel is empty")
    data = [f.detach().cpu().float().numpy() if hasattr(f, "detach") else np.asarray(f) for _, f in panels]
    vmin, vmax = colour_range(data) if shared_scale else (None, None)
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.4 * len(panels)), squeeze=False)
    image = None
    for ax, (label, _), frames in zip(axes[:, 0], panels, data):
        extent = [0, frames.shape[0] / frame_rate, 0, frames.shape[1]]
        image = ax.imshow(frames.T, origin="lower", aspect="auto", extent=extent, cmap="magma",
                          vmin=vmin, vmax=vmax)
        ax.set_title(label, fontsize=9)
        ax.set_ylabel("mel bin")
        if not shared_scale:
            fig.colorbar(image, ax=ax, pad=0.01)
    axes[-1, 0].set_xlabel("seconds")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if shared_scale:
        fig.colorbar(image, ax=list(axes[:, 0]), pad=0.01, label="log-mel (one scale for all panels)")
    fig.savefig(str(path), dpi=80)
    plt.close(fig)
    return path


def read_train_log(path):
    """Per-epoch stats of a SpeechBrain ``train_log.txt``: ``[{"epoch": 1, "lr": ..., "train": {...}, "valid": {...}}]``.

    Lines look like ``epoch: 1, lr: 1.00e-03 - train loss: 52.05, train ce: 6.39e-01 - valid loss: 29.27``;
    lines that do not parse are skipped.
    """
    import re
    from pathlib import Path

    epochs = []
    for line in Path(path).read_text().splitlines():
        parts = [p.strip() for p in line.split(" - ")]
        head = dict(re.findall(r"(\w+): ([-+0-9.eE]+|nan|inf)", parts[0]))
        if "epoch" not in head:
            continue
        record = {"epoch": int(float(head["epoch"])), "lr": float(head["lr"]) if "lr" in head else None,
                  "train": {}, "valid": {}}
        for part in parts[1:]:
            for stage, key, value in re.findall(r"(train|valid) (\w+): ([-+0-9.eE]+|nan|inf)", part):
                record[stage][key] = float(value)
        epochs.append(record)
    return epochs


def plot_loss_curves(train_log, path, title=None):
    """One panel per loss term: train and valid value per epoch (log scale), from ``train_log.txt``.

    Returns:
        the list of terms drawn (empty when the log has no epoch yet; no file is written then).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = read_train_log(train_log)
    terms = list(dict.fromkeys(k for e in epochs for stage in ("train", "valid") for k in e[stage]))
    if not terms:
        return []
    cols = min(3, len(terms))
    rows = -(-len(terms) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, term in zip(axes.flat, terms):
        for stage, style in (("train", "o-"), ("valid", "s--")):
            points = [(e["epoch"], e[stage][term]) for e in epochs if term in e[stage]]
            if points:
                ax.plot(*zip(*points), style, label=stage, markersize=3)
        values = [e[s][term] for e in epochs for s in ("train", "valid") if term in e[s]]
        if values and min(values) > 0:
            ax.set_yscale("log")
        ax.set_title(term, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(terms):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return terms
