"""The example plugin packages under plugins/ load through their declared entry points."""
import json
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from spectron_kit import registry

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
sys.path.insert(0, str(Path(__file__).resolve().parent))  # test_model's tiny model


def install_as_distribution(plugin_dir, site):
    """Expose a plugin folder as an installed distribution (dist-info from its pyproject)."""
    project = tomllib.loads((plugin_dir / "pyproject.toml").read_text())["project"]
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    lines = ["[spectron_kit]"] + [f"{k} = {v}" for k, v in project["entry-points"]["spectron_kit"].items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return project["name"]


def load_example(folder, tmp_path, monkeypatch):
    """Install an example plugin as a distribution (importable, only it loaded); returns its name."""
    plugin = PLUGINS / folder
    name = install_as_distribution(plugin, tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(plugin))
    monkeypatch.setenv("SPECTRON_KIT_LOAD_PLUGINS", name)
    return name


def test_librosa_vocoder_plugin(tmp_path, monkeypatch):
    pytest.importorskip("librosa")
    load_example("spectron-kit-librosa-vocoder", tmp_path, monkeypatch)
    entry = registry.get_registry().get("vocoder", "librosa_griffin_lim")
    assert entry.provider == "spectron-kit-librosa-vocoder"
    spec = {"n_mels": 40, "n_fft": 512, "win_length": 400, "hop_length": 160}
    frontend = registry.build("frontend", "log_mel", spec=spec)
    vocoder = registry.build("vocoder", "librosa_griffin_lim", spec=spec, n_iter=8)
    t = torch.arange(8000) / 16000
    feats, lens = frontend(0.3 * torch.sin(2 * torch.pi * 440 * t)[None])
    wav, wav_lens = vocoder(feats, lens)
    assert wav_lens.tolist() == [(int(lens[0]) - 1) * 160] and wav.abs().max() > 0.01


def test_gated_prenet_plugin_drives_the_model(tmp_path, monkeypatch):
    load_example("spectron-kit-gated-prenet", tmp_path, monkeypatch)
    assert registry.get_registry().get("prenet", "gated_prenet").provider == "spectron-kit-gated-prenet"
    from test_model import SPEC, batch_of, scored, tiny_model

    from spectron_kit.model import SpectronModel

    base = tiny_model()
    model = SpectronModel(frontend=base.frontend, encoder=base.encoder, lm=base.lm,
                          prenet=lambda in_dim, out_dim: registry.build("prenet", "gated_prenet", in_dim=in_dim,
                                                                        out_dim=out_dim, bottleneck=16, dropout=0.0),
                          postnet=lambda in_dim, out_dim: registry.build("postnet", "mlp", in_dim=in_dim,
                                                                         out_dim=out_dim),
                          vocoder=registry.build("vocoder", "griffin_lim", spec=SPEC, n_iter=2), prompt_seconds=1.0)
    out = scored(model, batch_of())
    assert torch.isfinite(out["loss"]) and type(model.prenet).__name__ == "GatedPrenet"
    prompt = batch_of()["prompt_wav"][0]
    cached = model.generate(prompt, num_frames=6, max_text_tokens=3, vocode=False)
    full = model.generate(prompt, num_frames=6, max_text_tokens=3, vocode=False, use_cache=False)
    torch.testing.assert_close(cached.frames[0], full.frames[0], atol=1e-4, rtol=1e-4)


def test_example_plugins_pass_their_own_tests():
    import os
    import subprocess

    for plugin in sorted(PLUGINS.iterdir()):
        if not (plugin / "tests").is_dir():
            continue
        env = dict(os.environ, OMP_NUM_THREADS="1", SPECTRON_KIT_LOAD_PLUGINS="")
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                                cwd=plugin, capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode == 0, plugin.name + result.stdout[-2000:]


def test_vocos_plugin_rides_in_a_bundle_and_replaces_a_bundles_vocoder(tmp_path, monkeypatch):
    """The neural-vocoder example: built by name from its entry point, saved in a bundle, swapped in."""
    load_example("spectron-kit-vocos", tmp_path, monkeypatch)
    assert registry.get_registry().get("vocoder", "vocos").provider == "spectron-kit-vocos"
    from test_model import SPEC, batch_of, tiny_model

    from spectron_kit.model import SpectronModel

    arch = {"dim": 16, "hidden": 32, "num_layers": 1}
    base = tiny_model()
    torch.manual_seed(1)
    model = SpectronModel(frontend=base.frontend, encoder=base.encoder, lm=base.lm, prenet=base.prenet,
                          postnet=base.postnet, prompt_seconds=1.0,
                          vocoder=registry.build("vocoder", "vocos", spec=SPEC, **arch)).eval()
    prompt = batch_of()["prompt_wav"][0]
    out = model.generate(prompt, num_frames=6, max_text_tokens=3)
    assert out.waveforms[0].shape[0] == model.frontend.spec.num_samples(6)
    loaded = SpectronModel.from_pretrained(model.save_pretrained(tmp_path / "bundle"))  # weights travel inside
    again = loaded.generate(prompt, num_frames=6, max_text_tokens=3)
    torch.testing.assert_close(again.waveforms[0], out.waveforms[0])
    # a bundle's vocoder is replaced at load time either way (evaluate.py --vocoder_name)
    swapped = SpectronModel.from_pretrained(tmp_path / "bundle", vocoder=registry.build("vocoder", "griffin_lim",
                                                                                        spec=SPEC, n_iter=2))
    assert type(swapped.vocoder).__name__ == "GriffinLimVocoder"
    # it streams exactly: chunks with its context and lookahead give the whole utterance's samples
    events = list(model.stream(prompt, num_frames=60, max_text_tokens=3, chunk_frames=7, max_chunk_frames=11))
    streamed = torch.cat([e.audio for e in events if e.kind == "audio"])
    whole = model.vocode([events[-1].output.frames[0]])[0]
    assert sum(e.kind == "audio" for e in events) >= 3 and streamed.shape == whole.shape
    torch.testing.assert_close(streamed, whole, atol=1e-5, rtol=1e-4)
    plain = tiny_model().save_pretrained(tmp_path / "plain")
    vocos = registry.build("vocoder", "vocos", spec=SPEC, **arch)
    assert SpectronModel.from_pretrained(plain, vocoder=vocos).vocoder is vocos
    # uninstalled (not loaded): the unknown-name error lists what there is
    monkeypatch.setenv("SPECTRON_KIT_LOAD_PLUGINS", "")
    registry.reset_registry()
    with pytest.raises(Exception, match="vocos.*available|available.*griffin_lim"):
        registry.build("vocoder", "vocos", spec=SPEC)


def test_the_recipe_trains_with_a_plugin_vocoder_by_name(tmp_path, monkeypatch):
    """docs/PLUGINS.md's pattern (issue 23, finding 3): only the chosen vocoder's arguments are passed."""
    pytest.importorskip("espeakng_loader")
    (tmp_path / "site").mkdir()
    load_example("spectron-kit-vocos", tmp_path / "site", monkeypatch)
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "LibriLight"
    monkeypatch.syspath_prepend(str(recipe))
    import train

    summary = train.main([str(recipe / "hparams" / "spectron_mini.yaml"), "--debug", "--vocoder_name=vocos",
                          f"--data_folder={tmp_path}/corpus", f"--output_folder={tmp_path}/run"])
    config = json.loads((tmp_path / "run" / "bundle" / "spectron_config.json").read_text())
    assert "vocos" in json.dumps(config["components"]["vocoder"]) and summary["optimizer_steps"] > 0
