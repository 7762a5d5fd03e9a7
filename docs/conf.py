"""Sphinx configuration of the spectron-kit reference (built by the test suite with warnings as errors:
``python -m sphinx -W -b html docs docs/_build/html``)."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spectron_kit.version import __version__  # noqa: E402

project = "spectron-kit"
author = "spectron-kit contributors"
copyright = "2026, spectron-kit contributors"
version = release = __version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "experiments"]   # research logs (dated prose), read on the repository

# docstrings are Google style ("Arguments:", "Returns:"); signatures show types as written
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_member_order = "bysource"
autodoc_typehints = "none"
autodoc_default_options = {"members": True, "show-inheritance": False}

myst_heading_anchors = 3
myst_enable_extensions = ["deflist"]   # the glossary's "term / : definition" lists
html_theme = "alabaster"
html_static_path = []
html_title = f"spectron-kit {release}"
