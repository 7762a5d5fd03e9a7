"""spectron-kit: Spectron (spectrogram-powered spoken LM) in PyTorch."""
from spectron_kit.version import __version__  # noqa: E402

from spectron_kit.hookspecs import hookimpl  # noqa: E402
from spectron_kit.registry import build, build_encoder, build_vocoder, get_registry, names  # noqa: E402

__all__ = ["__version__", "hookimpl", "build", "build_encoder", "build_vocoder", "get_registry", "names", "SpectronModel"]


def __getattr__(name):  # keep `import spectron_kit` light
    if name == "SpectronModel":
        from spectron_kit.model import SpectronModel
        return SpectronModel
    raise AttributeError(f"module 'spectron_kit' has no attribute {name!r}")
