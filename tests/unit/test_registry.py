"""Registry: built-ins, entry-point plugins, and the errors users see."""
import json
import textwrap

import pytest

from spectron_kit import registry
from spectron_kit.registry import PluginError, UnknownComponentError

BUILTIN_KINDS = {
    "frontend": {"log_mel"},
    "encoder": {"conformer", "hf"},
    "lm": {"hf"},
    "prenet": {"mlp"},
    "postnet": {"mlp"},
    "loss": {"spectron", "ce", "spec", "freq_deriv", "time_deriv", "stop", "guided_attention", "flux"},
    "vocoder": {"griffin_lim"},
}


def make_distribution(root, dist_name, module_name, source, entry_name=None):
    """Write an installed-looking distribution (dist-info + module) under ``root``."""
    entry_name = entry_name or module_name
    info = root / f"{dist_name.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[spectron_kit]\n{entry_name} = {module_name}\n")
    (root / f"{module_name}.py").write_text(textwrap.dedent(source))


GOOD_PLUGIN = """
    import torch
    from spectron_kit import hookimpl

    class SilenceVocoder(torch.nn.Module):
        def __init__(self, sample_rate=16000):
            super().__init__()
            self.sample_rate = sample_rate

    @hookimpl
    def register_vocoders(register):
        register("silence", SilenceVocoder, description="test vocoder")
"""


def test_builtins_registered_through_hooks():
    reg = registry.get_registry()
    for kind, expected in BUILTIN_KINDS.items():
        assert expected <= set(reg.names(kind)), kind
        for entry in reg.entries(kind):
            assert entry.provider == "spectron-kit"
    # every kind of the spec has a hook, evaluation kinds included
    assert set(registry.KINDS) >= {"transcriber", "speaker_encoder", "mos_predictor", "lm_scorer", "tts"}


def test_unknown_name_lists_available():
    with pytest.raises(UnknownComponentError) as err:
        registry.build("vocoder", "grifin_lim")
    message = str(err.value)
    assert "no vocoder named 'grifin_lim'" in message
    assert "griffin_lim" in message and "Did you mean 'griffin_lim'" in message


def test_unknown_kind_and_bad_argument():
    with pytest.raises(UnknownComponentError, match="unknown component kind 'vocoders'.*'vocoder'"):
        registry.build("vocoders", "griffin_lim")
    with pytest.raises(TypeError, match="prenet 'mlp'.*bottlenek.*it takes: in_dim, out_dim, bottleneck"):
        registry.build("prenet", "mlp", in_dim=4, out_dim=8, bottlenek=2)


def test_build_records_spec():
    prenet = registry.build("prenet", "mlp", in_dim=4, out_dim=8, bottleneck=2)
    assert prenet.spectron_spec.to_dict() == {
        "kind": "prenet", "name": "mlp", "kwargs": {"in_dim": 4, "out_dim": 8, "bottleneck": 2}}


def test_entry_point_plugin_loads(tmp_path, monkeypatch):
    make_distribution(tmp_path, "spectron-kit-silence", "sk_silence_plugin", GOOD_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SPECTRON_KIT_LOAD_PLUGINS", "spectron-kit-silence")
    reg = registry.get_registry()
    entry = reg.get("vocoder", "silence")
    assert (entry.provider, entry.version) == ("spectron-kit-silence", "1.2.3")
    assert registry.build("vocoder", "silence", sample_rate=8000).sample_rate == 8000
    assert [p.status for p in reg.plugins] == ["ok"]


def test_plugins_not_selected_are_not_loaded(tmp_path, monkeypatch):
    make_distribution(tmp_path, "spectron-kit-silence", "sk_silence_plugin2", GOOD_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SPECTRON_KIT_LOAD_PLUGINS", "")
    assert "silence" not in registry.names("vocoder")
    monkeypatch.delenv("SPECTRON_KIT_LOAD_PLUGINS")
    monkeypatch.setenv("SPECTRON_KIT_DISABLE_PLUGINS", "spectron-kit-silence")
    registry.reset_registry()
    reg = registry.get_registry()
    assert "silence" not in reg.names("vocoder")
    record = [p for p in reg.plugins if p.distribution == "spectron-kit-silence"][0]
    assert "disabled" in record.status


def test_broken_plugin_is_reported_and_others_work(tmp_path, monkeypatch, caplog):
    make_distribution(tmp_path, "spectron-kit-broken", "sk_broken_plugin",
                      "import this_module_does_not_exist\n")
    make_distribution(tmp_path, "spectron-kit-silence", "sk_silence_plugin3", GOOD_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SPECTRON_KIT_LOAD_PLUGINS", "spectron-kit-broken,spectron-kit-silence")
    reg = registry.get_registry()
    status = {p.distribution: p.status for p in reg.plugins}
    assert status["spectron-kit-silence"] == "ok"
    assert status["spectron-kit-broken"].startswith("failed to import: ModuleNotFoundError")
    assert "this_module_does_not_exist" in status["spectron-kit-broken"]
    assert "silence" in reg.names("vocoder") and "griffin_lim" in reg.names("vocoder")
    assert "spectron-kit-broken" in caplog.text


def test_misspelled_hook_is_an_error(tmp_path, monkeypatch):
    make_distribution(tmp_path, "spectron-kit-typo", "sk_typo_plugin", """
        from spectron_kit import hookimpl

        @hookimpl
        def register_vocoder(register):
            register("typo", object)
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SPECTRON_KIT_LOAD_PLUGINS", "spectron-kit-typo")
    with pytest.raises(PluginError) as err:
        registry.get_registry()
    message = str(err.value)
    assert "unknown hook 'register_vocoder'" in message
    assert "rename it to 'register_vocoders'" in message
    assert "SPECTRON_KIT_DISABLE_PLUGINS=spectron-kit-typo" in message


def test_register_plugin_object_at_runtime():
    from spectron_kit import hookimpl

    class LocalPlugin:
        @hookimpl
        def register_tts(self, register):
            register("local-tts", dict)

    reg = registry.get_registry()
    reg.register_plugin(LocalPlugin(), name="local")
    assert reg.get("tts", "local-tts").provider == "<local>"


def test_plugins_command_json(capsys):
    from spectron_kit.cli import main

    assert main(["plugins", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    listed = {(c["kind"], c["name"]) for c in data["components"]}
    for kind, expected in BUILTIN_KINDS.items():
        assert {(kind, n) for n in expected} <= listed
    assert all(c["status"] == "ok" for c in data["components"])


def test_plugins_command_table(capsys):
    from spectron_kit.cli import main

    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "griffin_lim" in out and "conformer" in out and "spectron-kit" in out


def test_a_plugin_constructor_that_raises_names_the_plugin(tmp_path, monkeypatch):
    make_distribution(tmp_path, "spectron-kit-crashy", "sk_crashy_plugin", """
        from spectron_kit import hookimpl

        class CrashyVocoder:
            def __init__(self, spec=None):
                raise RuntimeError("weights file vocoder.bin not found")

        @hookimpl
        def register_vocoders(register):
            register("crashy", CrashyVocoder)
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SPECTRON_KIT_LOAD_PLUGINS", "spectron-kit-crashy")
    with pytest.raises(PluginError) as err:
        registry.build("vocoder", "crashy")
    message = str(err.value)
    assert message.startswith("vocoder 'crashy' of the plugin spectron-kit-crashy ")
    assert "failed to build: RuntimeError: weights file vocoder.bin not found" in message
    assert "SPECTRON_KIT_DISABLE_PLUGINS=spectron-kit-crashy" in message
    with pytest.raises(ValueError, match="n_mels"):  # a built-in's own error is not re-worded
        registry.build("frontend", "log_mel", n_mels=-1)
