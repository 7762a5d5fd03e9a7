"""The example plugin packages under plugins/ load through their declared entry points."""
import tomllib
from pathlib import Path

import pytest
import torch

from spectron_kit import registry

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


def install_as_distribution(plugin_dir, site):
    """Expose a plugin folder as an installed distribution (dist-info from its pyproject)."""
    project = tomllib.loads((plugin_dir / "pyproject.toml").read_text())["project"]
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    lines = ["[spectron_kit]"] + [f"{k} = {v}" for k, v in project["entry-points"]["spectron_kit"].items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return project["name"]


def test_librosa_vocoder_plugin(tmp_path, monkeypatch):
    pytest.importorskip("librosa")
    plugin = PLUGINS / "spectron-kit-librosa-vocoder"
    name = install_as_distribution(plugin, tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(plugin))
    monkeypatch.setenv("SPECTRON_KIT_LOAD_PLUGINS", name)
    entry = registry.get_registry().get("vocoder", "librosa_griffin_lim")
    assert entry.provider == "spectron-kit-librosa-vocoder"
    spec = {"n_mels": 40, "n_fft": 512, "win_length": 400, "hop_length": 160}
    frontend = registry.build("frontend", "log_mel", spec=spec)
    vocoder = registry.build("vocoder", "librosa_griffin_lim", spec=spec, n_iter=8)
    t = torch.arange(8000) / 16000
    feats, lens = frontend(0.3 * torch.sin(2 * torch.pi * 440 * t)[None])
    wav, wav_lens = vocoder(feats, lens)
    assert wav_lens.tolist() == [(int(lens[0]) - 1) * 160] and wav.abs().max() > 0.01
