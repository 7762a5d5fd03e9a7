"""``--help`` of the recipe scripts lists the recipe's own keys, with defaults and the YAML's comments."""
import subprocess
import sys
from pathlib import Path

import pytest

from spectron_kit.recipe import declared_keys, recipe_keys
from spectron_kit.recipe.help import key_comments

ROOT = Path(__file__).resolve().parents[2]


def script_help(*args):
    """The script's --help as a user runs it from the repository root: (exit code, stdout)."""
    done = subprocess.run([sys.executable, *args, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("script, yaml", [
    ("recipes/LibriLight/train.py", "recipes/LibriLight/hparams/spectron_mini.yaml"),
    ("recipes/LibriLight/evaluate.py", "recipes/LibriLight/hparams/evaluate.yaml"),
    ("recipes/SpokenQA/evaluate.py", "recipes/SpokenQA/hparams/evaluate.yaml"),
    ("recipes/SpokenQA/knowledge_retention.py", "recipes/SpokenQA/hparams/knowledge_retention.yaml"),
])
def test_help_lists_every_key_of_the_default_yaml(script, yaml):
    code, text = script_help(script)
    assert code == 0, text[-2000:]
    assert f"Recipe keys of {yaml}" in text
    missing = sorted(key for key in declared_keys(ROOT / yaml) if f"  --{key}=" not in text)
    assert not missing, missing


def test_train_help_shows_defaults_comments_and_what_debug_does():
    code, text = script_help("recipes/LibriLight/train.py")
    assert code == 0
    # a value spectron_mini.yaml changes, with the comment written beside it there
    assert "--w_ce=10.0\n      the LM must learn to read the prefix" in text
    assert "[set by spectron_mini.yaml]" in text
    assert "--snapshot_minutes=" in text and "--lr=0.001" in text
    assert "data/mini_corpus_debug" in text and "results/debug/spectron_mini" in text  # --debug, as used here


def test_help_of_a_named_layer_shows_its_values():
    code, text = script_help("recipes/LibriLight/train.py", "recipes/LibriLight/hparams/spectron_mini_long.yaml")
    assert code == 0
    assert "Recipe keys of recipes/LibriLight/hparams/spectron_mini_long.yaml" in text
    assert "--experiment=spectron_mini_long\n      [set by spectron_mini_long.yaml]" in text


def test_evaluate_help_lists_only_the_run_options_it_reads():
    code, text = script_help("recipes/LibriLight/evaluate.py")
    assert code == 0
    assert "--device" in text and "--model_dir=<required>" in text
    for training_only in ("--grad_accumulation_factor", "--jit ", "--debug ", "--precision"):
        assert training_only not in text


def test_key_comments_sections_inline_above_and_added_keys(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "# ####### Model ########\n"
        "width: 8          # units per layer\n"
        "# the depth: layers\n"
        "depth: 2\n\n"
        "# Loss ----------\n"
        "url: 'a#b'   # a hash inside quotes is the value's\n"
        "block: !new:torch.nn.Identity\n"
        "    inner: 1      # not a top-level key\n")
    (tmp_path / "layer.yaml").write_text(
        "__base__: base.yaml\n"
        "depth: 4\n"
        "__add__:\n"
        "    extra: [1, 2]     # a key of the layer's own\n")
    assert key_comments((tmp_path / "base.yaml").read_text()) == {
        "width": ("Model", "units per layer"), "depth": ("Model", "the depth: layers"),
        "url": ("Loss", "a hash inside quotes is the value's"), "block": ("Loss", "")}
    rows = recipe_keys(tmp_path / "layer.yaml")
    assert [(r[1], r[2], r[4]) for r in rows] == [
        ("width", "8", None), ("depth", "4", "layer.yaml"), ("url", "a#b", None),
        ("block", "!new:torch.nn.Identity inner: 1", None), ("extra", "[1, 2]", None)]
    assert rows[-1][0] == "keys added by layer.yaml" and rows[-1][3] == "a key of the layer's own"
