"""Shared recipe command-line checks (spectron_kit/recipe.py)."""
import os
import platform
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


def test_reuse_freed_memory_applies_on_glibc_and_respects_user_settings(monkeypatch):
    code = "from spectron_kit.recipe import reuse_freed_memory as r; print(r())"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    applied = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert applied.stdout.strip() == str(glibc)
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")  # the user's own tuning wins
    assert reuse_freed_memory() is False
