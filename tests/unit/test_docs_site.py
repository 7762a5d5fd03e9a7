"""The reference site (Sphinx: docs/conf.py, the guides in docs/ and the API from the docstrings) builds
without a single warning, so a broken docstring or link fails the suite."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_reference_builds_without_warnings(tmp_path):
    out = tmp_path / "html"
    done = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                           str(ROOT / "docs"), str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    api = (out / "api.html").read_text()
    # the generate() docstring and the recipe loader reached the API page
    assert "spectron_kit.model.SpectronModel.generate" in api and "One decoding pass" in api
    assert "spectron_kit.recipe.config.load_recipe" in api
    for page in ("index", "MAP", "COMPONENTS", "PLUGINS", "troubleshooting", "glossary"):
        assert (out / f"{page}.html").is_file(), page
    assert "<dt><strong>bundle</strong></dt>" in (out / "glossary.html").read_text()   # definition lists, not paragraphs
