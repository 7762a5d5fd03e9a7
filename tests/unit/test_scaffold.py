"""spectron-kit new-plugin: packages that pass their own tests and load through their entry point."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spectron_kit import registry
from spectron_kit.cli import main as cli
from spectron_kit.scaffold import KINDS, new_plugin

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_example_plugins import install_as_distribution  # noqa: E402


@pytest.mark.parametrize("kind", KINDS)
def test_a_new_plugin_passes_its_own_tests(tmp_path, kind):
    root = new_plugin(kind, f"my_{kind}", tmp_path)
    assert {p.name for p in root.iterdir()} == {"pyproject.toml", f"spectron_kit_my_{kind}.py", "README.md", "tests"}
    env = dict(os.environ, OMP_NUM_THREADS="1", SPECTRON_KIT_LOAD_PLUGINS="")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=root,
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "1 passed" in result.stdout


def test_installed_it_is_listed_and_built_by_name_and_uninstalled_it_is_an_unknown_name(tmp_path, monkeypatch,
                                                                                     capsys):
    assert cli(["new-plugin", "vocoder", "tiny_voc", "--dir", str(tmp_path)]) == 0
    root = tmp_path / "spectron-kit-tiny-voc"
    site = tmp_path / "site"
    site.mkdir()
    name = install_as_distribution(root, site)  # what `pip install -e` leaves: dist-info + entry point
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("SPECTRON_KIT_LOAD_PLUGINS", name)
    registry.reset_registry()
    assert registry.get_registry().get("vocoder", "tiny_voc").provider == "spectron-kit-tiny-voc"
    vocoder = registry.build("vocoder", "tiny_voc", spec={"n_mels": 40, "n_fft": 512, "win_length": 400,
                                                          "hop_length": 160}, n_iter=2)
    assert vocoder.sample_rate == 16000
    monkeypatch.setenv("SPECTRON_KIT_LOAD_PLUGINS", "")  # uninstalled
    registry.reset_registry()
    with pytest.raises(registry.UnknownComponentError, match="no vocoder named 'tiny_voc'; available vocoder names"):
        registry.build("vocoder", "tiny_voc")


def test_bad_names_and_existing_folders_are_refused(tmp_path):
    with pytest.raises(ValueError, match="plugin name 'My-Voc'"):
        new_plugin("vocoder", "My-Voc", tmp_path)
    with pytest.raises(ValueError, match="kind 'encoder': the scaffold makes vocoder, prenet, postnet, loss"):
        new_plugin("encoder", "enc", tmp_path)
    new_plugin("prenet", "pn", tmp_path)
    with pytest.raises(FileExistsError, match="already exists"):
        new_plugin("prenet", "pn", tmp_path)
    assert cli(["new-plugin", "prenet", "pn", "--dir", str(tmp_path)]) == 2
