"""Shared recipe command-line checks (spectron_kit/recipe/)."""
import os
import platform
from pathlib import Path
import subprocess
import sys

import pytest
from hyperpyyaml import load_hyperpyyaml

from spectron_kit.recipe import (RecipeConfigError, check_overrides, overrides_to_yaml, parse_overrides,
                                 resolve_base, reuse_freed_memory)

YAML = """\
seed: 1234
lr: 0.001
epochs: 4
use_stop: False
name: base
splits: [train]
data_folder: !PLACEHOLDER
out: !ref results/<name>
thing: !new:collections.OrderedDict
    a: 1
"""


@pytest.fixture
def hparams(tmp_path):
    path = tmp_path / "base.yaml"
    path.write_text(YAML)
    return path


def test_unknown_key_is_named_with_the_closest_known_one(hparams):
    with pytest.raises(RecipeConfigError, match=r"unknown override --learning_rate; .*keys of base.yaml: seed, lr"):
        check_overrides(hparams, "learning_rate: 0.1\ndata_folder: x")
    with pytest.raises(RecipeConfigError, match="did you mean --epochs"):
        check_overrides(hparams, "epoch: 3\ndata_folder: x")


def test_wrong_type_and_missing_placeholder(hparams):
    with pytest.raises(RecipeConfigError, match=r"--lr='fast' is a str but lr takes a float"):
        check_overrides(hparams, "lr: fast\ndata_folder: x")
    with pytest.raises(RecipeConfigError, match=r"--epochs=2.5 is a float but epochs takes a int"):
        check_overrides(hparams, "epochs: 2.5\ndata_folder: x")
    with pytest.raises(RecipeConfigError, match=r"--use_stop=1 is a int but use_stop takes a bool"):
        check_overrides(hparams, "use_stop: 1\ndata_folder: x")
    with pytest.raises(RecipeConfigError, match=r"base.yaml needs data_folder: pass --data_folder=\.\.\.; try X$"):
        check_overrides(hparams, "lr: 0.1", example_hint="try X")
    assert check_overrides(hparams, "epochs: 3.0\ndata_folder: /d") == {"epochs": 3.0, "data_folder": "/d"}


def test_numbers_parse_as_users_write_them(hparams):
    # YAML 1.1 (PyYAML) reads 3e-4 as a string; HyperPyYAML (YAML 1.2) as a float: the check must agree with it
    given = check_overrides(hparams, "lr: 3e-4\nepochs: 1e1\nname: 1e-3x\ndata_folder: x")
    assert given == {"lr": 3e-4, "epochs": 10.0, "name": "1e-3x", "data_folder": "x"}
    loaded = load_hyperpyyaml(YAML.replace("!PLACEHOLDER", "x"), overrides_to_yaml({"lr": given["lr"]}))
    assert loaded["lr"] == pytest.approx(3e-4)
    assert parse_overrides("a: 1e9\nb: -2.5E-3\nc: 1_000\nd: e5") == {"a": 1e9, "b": -2.5e-3, "c": 1000, "d": "e5"}


def test_tagged_overrides_survive_parsing_and_reach_hyperpyyaml(hparams):
    given = "data_folder: /d\nthing: !new:collections.OrderedDict {b: 2}\nout: !ref <data_folder>/run"
    parsed = check_overrides(hparams, given)
    assert parsed["thing"] == "!new:collections.OrderedDict {b: 2}"
    loaded = load_hyperpyyaml(YAML, overrides_to_yaml(parsed))  # HyperPyYAML merges mappings
    assert dict(loaded["thing"]) == {"a": 1, "b": 2} and loaded["out"] == "/d/run"


def test_plain_values_round_trip_through_yaml():
    values = {"lr": 0.5, "splits": ["a", "b c"], "name": None, "flag": True, "text": "x: y"}
    assert parse_overrides(overrides_to_yaml(values)) == values


def test_ablation_file_layers_over_its_base(tmp_path, hparams):
    ablation = tmp_path / "ablation.yaml"
    ablation.write_text("__base__: base.yaml\nname: no_stop\nuse_stop: True\nthing: !new:collections.OrderedDict {c: 3}\n")
    base, merged = resolve_base(ablation, "lr: 0.01\nname: mine")
    assert base == str(hparams)
    assert merged == {"name": "mine", "use_stop": True, "thing": "!new:collections.OrderedDict {c: 3}", "lr": 0.01}
    loaded = load_hyperpyyaml(YAML, overrides_to_yaml({**merged, "data_folder": "/d"}))
    assert dict(loaded["thing"]) == {"a": 1, "c": 3} and loaded["out"] == "results/mine"
    (tmp_path / "loop.yaml").write_text("__base__: loop.yaml\n")
    with pytest.raises(RecipeConfigError, match="cycle"):
        resolve_base(tmp_path / "loop.yaml", "")


def test_an_ablation_file_can_replace_a_component_block(tmp_path, hparams):
    # block mappings with their own indentation and nested tags survive the base resolution
    ablation = tmp_path / "block.yaml"
    ablation.write_text("__base__: base.yaml\nthing: !new:collections.OrderedDict\n  a: 5\n  b: !ref <name>\n"
                        "  c: [1, 2]\n")
    base, merged = resolve_base(ablation, "")
    loaded = load_hyperpyyaml(YAML, overrides_to_yaml({**merged, "data_folder": "/d"}))
    assert dict(loaded["thing"]) == {"a": 5, "b": "base", "c": [1, 2]}


def test_a_block_of_another_shape_replaces_the_base_block(tmp_path):
    from spectron_kit.recipe import replace_blocks

    base = tmp_path / "base.yaml"
    base.write_text("spec: {n: 80}\nvoc: !new:collections.OrderedDict\n    spec: !ref <spec>\n    k: 1\n\n"
                    "# a comment\nafter: 2\n")
    ablation = tmp_path / "abl.yaml"
    ablation.write_text("__base__: base.yaml\nvoc: !new:collections.OrderedDict\n  spec: {n: 64}\nafter: 3\n")
    path, merged = resolve_base(ablation, "")
    # HyperPyYAML alone refuses this override (a !ref against a mapping): the block must replace
    with pytest.raises(Exception):
        load_hyperpyyaml(Path(path).read_text(), overrides_to_yaml(merged))
    new_path, rest = replace_blocks(path, merged)
    assert rest == {"after": 3} and new_path != path and Path(path).read_text().count("k: 1") == 1
    loaded = load_hyperpyyaml(Path(new_path).read_text(), overrides_to_yaml(rest))
    assert dict(loaded["voc"]) == {"spec": {"n": 64}} and loaded["after"] == 3 and loaded["spec"] == {"n": 80}
    assert replace_blocks(path, {"after": 3}) == (path, {"after": 3})  # nothing to replace: same file


def test_reuse_freed_memory_applies_on_glibc_and_respects_user_settings(monkeypatch):
    code = "from spectron_kit.recipe import reuse_freed_memory as r; print(r())"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    applied = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert applied.stdout.strip() == str(glibc)
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")  # the user's own tuning wins
    assert reuse_freed_memory() is False


def test_broken_checkpoints_are_set_aside_and_the_previous_one_is_used(tmp_path):
    import torch
    from speechbrain.utils.checkpoints import Checkpointer

    from spectron_kit.recipe import RandomState, checkpoint_problem, set_aside_broken_checkpoints

    model = torch.nn.Linear(3, 2)
    checkpointer = Checkpointer(tmp_path / "save", recoverables={"model": model, "rng": RandomState()})
    good = checkpointer.save_checkpoint(meta={"loss": 1.0}, name="good")
    assert checkpoint_problem(good.path, checkpointer.recoverables) is None
    # a kill -9 during the next write: SpeechBrain writes CKPT.yaml first, the model file stays empty
    partial = tmp_path / "save" / "CKPT+partial"
    partial.mkdir()
    (partial / "CKPT.yaml").write_text("loss: 0.5\nunixtime: 9999999999\nend-of-epoch: true\n")
    (partial / "model.ckpt").write_bytes(b"")
    (partial / "rng.ckpt").write_bytes(b"")
    truncated = tmp_path / "save" / "CKPT+truncated"
    truncated.mkdir()
    (truncated / "CKPT.yaml").write_text("loss: 0.4\nunixtime: 9999999998\nend-of-epoch: true\n")
    (truncated / "model.ckpt").write_bytes((good.path / "model.ckpt").read_bytes()[:40])
    (truncated / "rng.ckpt").write_bytes((good.path / "rng.ckpt").read_bytes())
    assert checkpoint_problem(partial, checkpointer.recoverables) == "model.ckpt is empty"
    assert checkpoint_problem(truncated, checkpointer.recoverables).startswith("model.ckpt does not load")
    older = tmp_path / "save" / "CKPT+older"  # written before the rng recoverable existed: still usable
    older.mkdir()
    (older / "CKPT.yaml").write_text("loss: 2.0\nunixtime: 1\nend-of-epoch: true\n")
    (older / "model.ckpt").write_bytes((good.path / "model.ckpt").read_bytes())
    assert checkpoint_problem(older, checkpointer.recoverables) is None
    warnings = []
    moved = set_aside_broken_checkpoints(checkpointer, log=warnings.append)
    assert sorted(p.name for p in moved) == ["BROKEN-CKPT+partial", "BROKEN-CKPT+truncated"]
    assert all(p.is_dir() for p in moved)  # nothing is deleted
    assert "cannot be loaded (model.ckpt is empty)" in " ".join(warnings)
    with torch.no_grad():
        model.weight.zero_()
    assert checkpointer.recover_if_possible().path == good.path
    assert model.weight.abs().sum() > 0


def test_random_state_resumes_the_same_draws(tmp_path):
    import random

    import numpy as np
    import torch

    from spectron_kit.recipe import RandomState

    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    RandomState().save(tmp_path / "rng.ckpt")
    first = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    RandomState().load(tmp_path / "rng.ckpt")
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]


def test_nonfinite_weights_are_named():
    import torch

    from spectron_kit.recipe import nonfinite_weights

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    assert nonfinite_weights(model) == []
    with torch.no_grad():
        model[0].bias[1] = float("nan")
    model[1].running_var[0] = float("inf")
    assert nonfinite_weights(model) == ["0.bias", "1.running_var"]


def test_the_mini_yaml_builds_its_components_from_the_paper_file():
    """spectron_mini.yaml is the paper's file with values changed and keys added: one home for the component
    blocks; the resolved file has every key of both, and the mini values win."""
    import re

    from hyperpyyaml import load_hyperpyyaml

    hparams = Path(__file__).resolve().parents[2] / "recipes" / "LibriLight" / "hparams"
    mini_text = (hparams / "spectron_mini.yaml").read_text()
    assert not re.search(r"^\w+: !(?:name|new|apply):", mini_text, re.M), "a component block in spectron_mini.yaml"
    path, overrides = resolve_base(hparams / "spectron_mini.yaml", "lr: 0.002")
    assert Path(path).name == "spectron_mini.yaml" and Path(path).parent != hparams  # a resolved copy
    check_overrides(path, overrides)
    loaded = load_hyperpyyaml(Path(path).read_text(), overrides_to_yaml(overrides))
    assert loaded["lr"] == 0.002 and loaded["n_mels"] == 80 and loaded["mini_corpus"] is True
    assert loaded["lm"].keywords["source"] == "data/mini_corpus/pretrained/1234/text_lm"  # an added key, by !ref
    assert loaded["loss"].keywords["terms"]["guided_attention"] == 0.0  # the paper's block, the mini's weight
    assert loaded["postnet"].keywords["name"] == "conv_residual" and loaded["interleave_phonemes"] is True
    assert loaded["text_lm_config"]["hidden_size"] == 192


def test_added_keys_are_checked(tmp_path):
    (tmp_path / "base.yaml").write_text("a: 1\nb: !ref <a>\n")
    (tmp_path / "setup.yaml").write_text("__base__: base.yaml\na: 2\n__add__:\n    c: !ref <b>  # note\n"
                                         "    d:\n        x: 1\n")
    path, overrides = resolve_base(tmp_path / "setup.yaml", "c: 5")
    assert overrides == {"a": 2, "c": 5}
    with pytest.raises(RecipeConfigError, match="unknown override --e; keys of setup.yaml: a, b, c, d"):
        check_overrides(path, {"e": 1})
    loaded = load_hyperpyyaml(Path(path).read_text(), overrides_to_yaml({"a": 2}))
    assert (loaded["c"], loaded["d"]) == (2, {"x": 1})
    (tmp_path / "bad.yaml").write_text("__base__: base.yaml\n__add__:\n    b: 3\n")
    with pytest.raises(RecipeConfigError, match="bad.yaml adds b under __add__ but its base already has it"):
        resolve_base(tmp_path / "bad.yaml", "")


def test_declared_keys_cover_the_chain_without_writing(tmp_path):
    from spectron_kit.recipe import declared_keys, yaml_defaults

    (tmp_path / "base.yaml").write_text("a: 1\nb: 2\n")
    (tmp_path / "setup.yaml").write_text("__base__: base.yaml\na: 3\n__add__:\n    c: 4\n")
    (tmp_path / "abl.yaml").write_text("__base__: setup.yaml\nb: 5\n")
    assert declared_keys(tmp_path / "abl.yaml") == {"a", "b", "c"}
    path, merged = resolve_base(tmp_path / "abl.yaml", "")
    assert set(yaml_defaults(path)) == {"a", "b", "c"} and merged == {"a": 3, "b": 5}


def test_load_recipe_is_the_one_loader_layers_checks_hooks(tmp_path):
    """``load_recipe``: __base__ layers, checked overrides, the adjust and required hooks, then HyperPyYAML."""
    from spectron_kit.recipe import RecipeConfigError, load_recipe

    base = tmp_path / "base.yaml"
    base.write_text("seed: 1\nlr: 0.1\nname: !ref run<seed>\nblock: !new:collections.OrderedDict\n    a: 1\n")
    layer = tmp_path / "layer.yaml"
    layer.write_text(f"__base__: {base}\nlr: 0.5\n__add__:\n    extra: 7\n")
    seen = {}

    def adjust(hparams_file, overrides, typed, run_opts):
        seen["typed"], seen["overrides"] = dict(typed), dict(overrides)
        return {**overrides, "seed": 3}, run_opts

    loaded = load_recipe([str(layer), "--lr=0.25"], adjust=adjust, required=lambda keys: seen.update(keys=keys))
    assert loaded.hparams["lr"] == 0.25 and loaded.hparams["extra"] == 7 and loaded.hparams["name"] == "run3"
    assert seen["typed"] == {"lr": 0.25} and seen["overrides"]["lr"] == 0.25 and {"extra", "seed"} <= seen["keys"]
    assert "lr: 0.25" in loaded.overrides and dict(loaded.hparams["block"]) == {"a": 1}
    with pytest.raises(RecipeConfigError, match="unknown override --lrr; did you mean --lr"):
        load_recipe([str(layer), "--lrr=1"])


def test_running_from_inside_a_recipe_folder_warns(tmp_path):
    from spectron_kit.recipe.config import warn_if_inside_a_recipe_folder

    recipe = tmp_path / "recipes" / "LibriLight"
    (recipe / "hparams").mkdir(parents=True)
    with pytest.warns(UserWarning, match="run from the repository root"):
        assert "recipes/LibriLight" in warn_if_inside_a_recipe_folder(recipe)
    assert warn_if_inside_a_recipe_folder(tmp_path) is None


def test_run_logs_keep_our_debug_records_but_only_warnings_of_noisy_libraries(tmp_path):
    import logging

    from spectron_kit.recipe import quiet_library_loggers
    from spectron_kit.recipe.runtime import NOISY_LIBRARIES

    log_file = tmp_path / "log.txt"
    handler = logging.FileHandler(log_file)  # what SpeechBrain's log file does: every record at DEBUG
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    saved = {name: logging.getLogger(name).level for name in NOISY_LIBRARIES}  # restored for the other tests
    try:
        quiet_library_loggers()
        logging.getLogger("numba.core.byteflow").debug("bytecode trace")
        logging.getLogger("faster_whisper").info("Processing audio with duration 00:02.488")
        logging.getLogger("faster_whisper").warning("a real warning")
        logging.getLogger("spectron_kit.test").debug("our own debug record")
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
    text = log_file.read_text()
    assert "bytecode trace" not in text and "Processing audio" not in text
    assert "a real warning" in text and "our own debug record" in text
