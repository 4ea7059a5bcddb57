"""The documentation holds together: every relative link resolves, every anchor names a heading
of its target, and the README stays a short front door. Reads files only (no services)."""

import re
import unicodedata
from functools import cache
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 250

# Files another change writes (generated references, the committed benchmark results): a link to
# one of them is accepted while it does not exist yet; once it exists it is checked like any
# other. Remove an entry when its file is committed.
PENDING = {
    "docs/cli.md",
    "docs/configuration.md",
    "docs/api.md",
    "docs/openapi.json",
    "bench/results/SUMMARY.md",
    "bench/results/ingest.json",
    "bench/results/retrain.json",
    "bench/results/serve.json",
    "bench/results/quality.json",
    "bench/results/learning-curve.json",
    "bench/results/gpu.json",
    "bench/results/quality",
}

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
# [text](target) and ![alt](target); the target ends at whitespace or the closing parenthesis.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
# [label]: target
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
INLINE_CODE = re.compile(r"`+[^`]*`+")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def doc_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [f for f in files if f.is_file()]


def prose_lines(text: str, keep_code: bool = False) -> list[str]:
    """The lines outside fenced code blocks (blank inside them, so line numbers hold); inline
    code blanked unless `keep_code` (a heading's anchor includes it, a link inside it is none)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            lines.append("")
        elif fenced:
            lines.append("")
        else:
            lines.append(line if keep_code else INLINE_CODE.sub("", line))
    return lines


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation other than `-`
    and `_` removed, each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links keep their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("`", "").replace("*", "")
    text = unicodedata.normalize("NFC", text).strip().lower()
    text = "".join(c for c in text if c in "-_ " or unicodedata.category(c)[0] in "LNM")
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    """Every anchor a markdown file offers; repeated headings get -1, -2, … as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for line in prose_lines(path.read_text(encoding="utf-8"), keep_code=True):
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return frozenset(found)


def links(path: Path) -> list[tuple[int, str]]:
    found = []
    for number, line in enumerate(prose_lines(path.read_text(encoding="utf-8")), start=1):
        found += [(number, m.group(1)) for m in INLINE_LINK.finditer(line)]
        if match := REFERENCE_LINK.match(line):
            found.append((number, match.group(1)))
    return found


def relative_links() -> list[tuple[Path, int, str]]:
    return [
        (path, number, target)
        for path in doc_files()
        for number, target in links(path)
        if not EXTERNAL.match(target)
    ]


def test_the_docs_have_links_to_check() -> None:
    # A parser that finds nothing would make the link test pass vacuously.
    assert len(relative_links()) > 50


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path: Path) -> None:
    broken = []
    for number, target in links(path):
        if EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / unquote(file_part)).resolve() if file_part else path
        where = f"{path.relative_to(ROOT)}:{number}: {target}"
        if not resolved.is_relative_to(ROOT):
            broken.append(f"{where} (outside the repository)")
            continue
        name = resolved.relative_to(ROOT).as_posix()
        if not resolved.exists():
            if name not in PENDING:
                broken.append(f"{where} (no such file)")
            continue
        if anchor and resolved.suffix == ".md" and unquote(anchor) not in anchors(resolved):
            broken.append(f"{where} (no heading with anchor #{anchor} in {name})")
        elif anchor and resolved.suffix != ".md":
            broken.append(f"{where} (an anchor into a file that is not markdown)")
    assert not broken, "broken links:\n" + "\n".join(broken)


# A doc cited from code by path, with an optional anchor: `docs/operations.md#on-a-cluster`.
CITED_DOC = re.compile(
    r"(?<![\w/.-])((?:docs/[\w./-]+\.(?:md|json))|README\.md|CHANGELOG\.md)(?:#([\w-]+))?"
)
CODE_DIRS = ("pipeline", "services", "schemas", "bench", "scripts", "tests", "docker")
CODE_FILES = ("Makefile", "docker-compose.yml", "pyproject.toml")


def code_files() -> list[Path]:
    files = [ROOT / name for name in CODE_FILES]
    for folder in CODE_DIRS:
        files += sorted(p for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".sh", ""))
    return [f for f in files if f.is_file() and f != Path(__file__).resolve()]


def test_docs_cited_from_code_exist_with_their_anchors() -> None:
    broken = []
    for path in code_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            for match in CITED_DOC.finditer(line):
                name, anchor = match.group(1).rstrip("."), match.group(2)
                target = ROOT / name
                where = f"{path.relative_to(ROOT)}:{number}: {match.group(0)}"
                if not target.exists():
                    if name not in PENDING:
                        broken.append(f"{where} (no such file)")
                elif anchor and anchor not in anchors(target):
                    broken.append(f"{where} (no heading with that anchor)")
    assert not broken, "code cites docs that are not there:\n" + "\n".join(broken)


def test_the_readme_is_a_short_front_door() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("Exactly once with respect to the log", "exactly-once-with-respect-to-the-log"),
        ("Face: where, and what (2026-11-27)", "face-where-and-what-2026-11-27"),
        ("The book's 0.9258, and what it measures", "the-books-09258-and-what-it-measures"),
        ("On a GPU (`tests/test_gpu.py`)", "on-a-gpu-teststest_gpupy"),
        ("How far 30 people go — a curve", "how-far-30-people-go--a-curve"),
        ("learning-curve", "learning-curve"),
        ("[Link](x.md) **bold**", "link-bold"),
    ],
)
def test_github_slugs(heading: str, slug: str) -> None:
    assert github_slug(heading) == slug


def test_repeated_headings_are_numbered(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# A\n\n## Notes\n\n```\n# not a heading\n```\n\n## Notes\n")
    assert anchors(page) == {"a", "notes", "notes-1"}
