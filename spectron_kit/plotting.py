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
