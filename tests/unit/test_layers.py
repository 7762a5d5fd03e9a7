"""The package's layers are a checked contract (import-linter, configured in .importlinter)."""
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def lint(config, cwd):
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports is missing: install the test extra (pip install -e '.[test]')")
    return subprocess.run([exe, "--config", str(config), "--no-cache"], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_the_layer_contracts_hold():
    result = lint(REPO / ".importlinter", REPO)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Contracts: 3 kept, 0 broken." in result.stdout


def test_a_broken_contract_is_reported(tmp_path):
    # the checker is not vacuous: the model does import the registry, so forbidding it must fail
    config = tmp_path / "forbid.ini"
    config.write_text("[importlinter]\nroot_package = spectron_kit\n\n"
                      "[importlinter:contract:x]\nname = model without registry\ntype = forbidden\n"
                      "source_modules = spectron_kit.model\nforbidden_modules = spectron_kit.registry\n")
    result = lint(config, tmp_path)
    assert result.returncode != 0 and "model without registry BROKEN" in result.stdout


def test_every_module_of_the_package_has_a_layer():
    """A new module joins the contract: each top-level module and sub-package is named in one layer."""
    import configparser

    parser = configparser.ConfigParser()
    parser.read(REPO / ".importlinter")
    layers = parser["importlinter:contract:layers"]["layers"]
    named = {name.strip() for line in layers.splitlines() for name in line.replace(":", "|").split("|")
             if name.strip()}
    package = REPO / "spectron_kit"
    modules = {f"spectron_kit.{p.stem}" for p in package.glob("*.py") if p.stem != "__init__"}
    modules |= {f"spectron_kit.{p.parent.name}" for p in package.glob("*/__init__.py")}
    assert modules - named == set(), "add these modules to a layer of .importlinter"
    assert named - modules == set(), "these layers name modules that no longer exist"
