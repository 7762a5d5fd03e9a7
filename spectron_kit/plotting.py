"""Spectrogram figures (matplotlib, no display needed)."""


def plot_spectrograms(panels, path, frame_rate=80.0, title=None):
    """Save stacked spectrogram panels to an image file.

    Arguments:
        panels: list of (label, frames [T, F]) pairs, drawn top to bottom.
        path: output file (PNG recommended).
        frame_rate: frames per second, for the time axis.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(label, frames) for label, frames in panels if frames is not None and len(frames)]
    if not panels:
        raise ValueError("nothing to plot: every panel is empty")
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.4 * len(panels)), squeeze=False)
    for ax, (label, frames) in zip(axes[:, 0], panels):
        data = frames.detach().cpu().float().numpy() if hasattr(frames, "detach") else frames
        extent = [0, data.shape[0] / frame_rate, 0, data.shape[1]]
        image = ax.imshow(data.T, origin="lower", aspect="auto", extent=extent, cmap="magma")
        ax.set_title(label, fontsize=9)
        ax.set_ylabel("mel bin")
        fig.colorbar(image, ax=ax, pad=0.01)
    axes[-1, 0].set_xlabel("seconds")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(str(path), dpi=80)
    plt.close(fig)
    return path
