"""Code and documents cite the specification by anchor (`docs/CONTRACTS.md#payments`); every anchor cited exists.

The specification is `docs/ARCHITECTURE.md` and `docs/CONTRACTS.md`; their sections carry explicit
`<a id="…">` anchors so that a heading can be reworded without breaking the comments that point at it.
A citation of an anchor that does not exist (a typo, a section removed) fails here.
"""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = {"ARCHITECTURE.md": ROOT / "docs" / "ARCHITECTURE.md", "CONTRACTS.md": ROOT / "docs" / "CONTRACTS.md"}
SEARCHED = ["README.md", "BENCHMARKS.md", "RELIABILITY.md", "docs", "chalicelib", "terminal_client", "tools", "tests",
            "bench", "reliability", "infrastructure", "scripts"]
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".sh", ".json"}

_ANCHOR = re.compile(r'<a id="([a-z0-9-]+)"></a>')
_EXPLICIT = re.compile(r"(ARCHITECTURE\.md|CONTRACTS\.md)#([a-z0-9-]+)")
# Shorthand after a citation on the same line: "docs/CONTRACTS.md#card-certificates, #card-signature, #apdus".
_SHORTHAND = re.compile(r"(?<=[\s(,\[])#([a-z][a-z0-9-]*[a-z0-9])")
_IN_FILE_LINK = re.compile(r"\]\(#([a-z0-9-]+)\)")


def _anchors(path: Path) -> set[str]:
    return set(_ANCHOR.findall(path.read_text(encoding="utf-8")))


def _files():
    for name in SEARCHED:
        path = ROOT / name
        if path.is_file():
            yield path
        elif path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and child.suffix in SUFFIXES and "__pycache__" not in child.parts:
                    yield child


def _citations(path: Path, text: str):
    """(document name, anchor, line number) of every citation in a file."""
    for number, line in enumerate(text.splitlines(), start=1):
        explicit = _EXPLICIT.findall(line)
        for document, anchor in explicit:
            yield document, anchor, number
        named = {document for document, _ in explicit}
        if len(named) == 1:
            (document,) = named
            for anchor in _SHORTHAND.findall(line):
                yield document, anchor, number
        if path.name in DOCUMENTS:
            for anchor in _IN_FILE_LINK.findall(line):
                yield path.name, anchor, number


def test_specification__every_section_has_a_unique_anchor():
    for name, path in DOCUMENTS.items():
        text = path.read_text(encoding="utf-8")
        anchors = _ANCHOR.findall(text)
        assert anchors, name
        assert len(anchors) == len(set(anchors)), f"{name} defines an anchor twice"
        headings = [line for line in text.splitlines() if line.startswith("## ")]
        assert len(anchors) >= len(headings), f"{name}: a section without an anchor"


def test_specification__every_cited_anchor_exists():
    anchors = {name: _anchors(path) for name, path in DOCUMENTS.items()}
    cited = 0
    missing = []
    for path in _files():
        if path == Path(__file__).resolve():
            continue
        for document, anchor, number in _citations(path, path.read_text(encoding="utf-8", errors="replace")):
            cited += 1
            if anchor not in anchors[document]:
                missing.append(f"{path.relative_to(ROOT)}:{number}: {document}#{anchor}")
    assert cited > 50, cited
    assert missing == []


def test_anchor_check__finds_a_citation_of_a_missing_section():
    line = "see docs/CONTRACTS.md#payments, #no-such-section and docs/ARCHITECTURE.md#layers"
    found = sorted((document, anchor) for document, anchor, _ in _citations(Path("x.py"), line))
    assert found == [("ARCHITECTURE.md", "layers"), ("CONTRACTS.md", "payments")]
    line = "(docs/CONTRACTS.md#card-certificates, #card-signature, #no-such-section)"
    found = [anchor for _, anchor, _ in _citations(Path("x.py"), line)]
    assert "no-such-section" in found and "no-such-section" not in _anchors(DOCUMENTS["CONTRACTS.md"])
