"""The files a user looks for at the top of the repository say what setup.py and the docs say."""
import re
from pathlib import Path

import pytest
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


def test_readme_numbers_come_from_generated_files():
    """Every measured decimal (a percentage, an 'N.NNx' ratio, minutes or gigabytes) the READMEs quote is in a
    generated results file (recipes/*/RESULTS.md, or a benchmark block the benchmark tool wrote); targets
    ('target 1.5 x', '<= 1.3') and settings in the guides are not measurements."""
    generated = " ".join(p.read_text() for p in (ROOT / "recipes").glob("*/RESULTS.md"))
    readme = (ROOT / "README.md").read_text()
    generated += " ".join(re.findall(r"<!-- benchmark [\w-]+: start.*?-->(.*?)<!-- benchmark", readme, re.S))
    generated = re.sub(r"(\d) x\b", r"\1x", generated)
    missing = []
    for page in [ROOT / "README.md", *sorted((ROOT / "recipes").glob("*/README.md"))]:
        text = page.read_text()
        for match in re.finditer(r"(?<![\d.\-])(\d+\.\d+)\s?(%|x\b|min\b|GB\b)", text):
            before = text[max(0, match.start() - 10):match.start()]
            if "target" in before or "<=" in before or ">=" in before:
                continue
            quoted = match.group(1) + ("" if match.group(2) in "%x" else " ") + match.group(2)
            if quoted not in generated:
                missing.append(f"{page.relative_to(ROOT)}: {match.group(0)}")
    assert not missing, missing


def test_benchmark_blocks_are_written_by_the_tool(tmp_path, monkeypatch):
    sys_path = str(ROOT / "tools")
    monkeypatch.syspath_prepend(sys_path)
    import benchmark

    page = tmp_path / "page.md"
    first, last = benchmark.block_markers("x")
    page.write_text(f"before\n{first}\nold\n{last}\nafter\n")
    text = benchmark.markdown([("a title", [("time (s)", "0.123", "<= 0.3")])], "cpu")
    benchmark.replace_block(page, text, "x")
    out = page.read_text()
    assert out.startswith("before\n") and out.endswith(f"{last}\nafter\n") and "old" not in out
    assert "Measured by `python tools/benchmark.py" in out and "| time (s) | 0.123 | <= 0.3 |" in out
    with pytest.raises(SystemExit, match="no benchmark block 'y'"):
        benchmark.replace_block(page, text, "y")


def test_benchmark_lm_shape_is_parsed_or_refused_with_the_expected_form(monkeypatch):
    import argparse

    monkeypatch.syspath_prepend(str(ROOT / "tools"))
    import benchmark

    assert benchmark.lm_shape("1024x24") == (1024, 24)
    with pytest.raises(argparse.ArgumentTypeError, match="WIDTHxLAYERS, e.g. 1024x24"):
        benchmark.lm_shape("big")
    with pytest.raises(argparse.ArgumentTypeError, match="multiple of 64"):
        benchmark.lm_shape("100x2")
