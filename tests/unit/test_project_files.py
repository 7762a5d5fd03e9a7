"""The files a user looks for at the top of the repository say what setup.py and the docs say."""
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_license_is_the_one_setup_declares():
    declared = re.search(r'license="([^"]+)"', (ROOT / "setup.py").read_text()).group(1)
    assert declared == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text


def test_citation_names_the_paper_and_the_toolkit():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert cff["license"] == "Apache-2.0"
    assert cff["version"] == re.search(r'version="([^"]+)"', (ROOT / "setup.py").read_text()).group(1)
    paper = cff["preferred-citation"]
    assert paper["title"] == "Spoken Question Answering and Speech Continuation Using Spectrogram-Powered LLM"
    assert paper["authors"][0]["family-names"] == "Nachmani" and paper["year"] == 2024
    assert any("2305.15255" in i["value"] for i in paper["identifiers"])


def test_contributing_names_commands_that_exist():
    text = (ROOT / "CONTRIBUTING.md").read_text()
    for path in re.findall(r"(?:tools|recipes|docs|tests)/[\w/.-]+\.(?:py|sh|md|yaml)", text):
        assert (ROOT / path).exists(), path


def test_relative_links_of_the_docs_point_to_files_that_exist():
    pages = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md")),
             *sorted((ROOT / "recipes").glob("*/README.md")), *sorted((ROOT / "plugins").glob("*/README.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken
