"""The documentation's links resolve inside the repository, and the README stays a ten-minute page.

Every Markdown link and image of README.md, CHANGELOG.md, docs/*.md and examples/*.md (inline `[text](target)` and
reference definitions `[label]: target`, outside code blocks and code spans) must be either an http(s) address
(not fetched) or a relative path to a file or folder of the repository, and a `#anchor` must be the slug of a
heading of the target file as GitHub makes it (lower case; punctuation other than `-` and `_` dropped; spaces to
`-`; a repeated heading gets `-1`, `-2`, ...).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parent.parent
MAX_README_LINES = 250

FENCE = re.compile(r"^\s{0,3}(```|~~~)")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^()\s>]*(?:\([^()\s]*\)[^()\s>]*)*)>?(?:\s+\"[^\"]*\")?\s*\)"
)
REFERENCE_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
EXTERNAL = re.compile(r"^https?://[^\s/]+")


def documentation_files(root: Path = ROOT) -> list[Path]:
    pages = [root / "README.md", root / "CHANGELOG.md", *sorted((root / "docs").glob("*.md"))]
    return [*pages, *sorted((root / "examples").glob("*.md"))]


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, with code spans blanked (their brackets are not links)."""
    lines, in_fence = [], False
    for number, line in enumerate(text.split("\n"), start=1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            lines.append((number, CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line)))
    return lines


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its rendered text (links keep their text, code spans their content)
    lower-cased, characters other than letters, digits, `_`, `-` and spaces dropped, spaces turned into `-`."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    in_fence = False
    for line in path.read_text(encoding="utf-8").split("\n"):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        match = None if in_fence else HEADING.match(line)
        if match:
            slug = github_slug(match.group(2))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def links(path: Path) -> list[tuple[int, str]]:
    found = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        definition = REFERENCE_DEFINITION.match(line)
        if definition:
            found.append((number, definition.group(1)))
            continue
        found.extend((number, match.group(1)) for match in INLINE_LINK.finditer(line))
    return found


def link_problem(source: Path, target: str, root: Path) -> str | None:
    """Why `target`, written in `source`, does not resolve inside `root` (None if it does)."""
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):
        return None if EXTERNAL.match(target) else "only http(s) addresses may leave the repository"
    if not target:
        return "empty link"
    path_part, _, anchor = target.partition("#")
    path_part = unquote(path_part)
    if path_part.startswith("/"):
        return "absolute path (write it relative to the file)"
    resolved = (source.parent / path_part).resolve() if path_part else source.resolve()
    if os.path.commonpath([resolved, root.resolve()]) != str(root.resolve()):
        return "points outside the repository"
    if not resolved.exists():
        return "no such file"
    if anchor:
        if resolved.is_dir() or resolved.suffix.lower() != ".md":
            return "an anchor into something that is not a Markdown file"
        if unquote(anchor) not in anchors(resolved):
            return f"no heading with anchor #{anchor} in {resolved.relative_to(root.resolve())}"
    return None


def broken_links(files: list[Path], root: Path = ROOT) -> list[str]:
    problems = []
    for path in files:
        for number, target in links(path):
            problem = link_problem(path, target, root)
            if problem:
                problems.append(f"{path.relative_to(root)}:{number}: {target}: {problem}")
    return problems


def test_documentation_files_exist():
    missing = [str(p.relative_to(ROOT)) for p in documentation_files() if not p.is_file()]
    assert not missing
    assert len(documentation_files()) > 3, "docs/ has no pages"


def test_every_link_and_anchor_resolves_inside_the_repository():
    files = documentation_files()
    assert sum(len(links(path)) for path in files) > 50, "the link parser found (almost) no links"
    assert broken_links(files) == []


def test_broken_links_are_reported(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "outside.md").write_text("# Outside\n")
    (tmp_path / "docs" / "page.md").write_text(
        "# A page\n\n## What `make demo` does (5 × 2)\n\n## Repeated\n\n## Repeated\n\n```bash\n# not a heading\n```\n"
    )
    good = (
        "[ok](docs/page.md) [anchor](docs/page.md#what-make-demo-does-5--2) [dup](docs/page.md#repeated-1) "
        "[self](#readme) [web](https://example.org/x#y) ![img](docs) [ref]: docs/page.md#a-page"
    )
    bad = [
        "[missing](docs/nope.md)",
        "[bad anchor](docs/page.md#not-there)",
        "[code fence is no heading](docs/page.md#not-a-heading)",
        "[third repeat](docs/page.md#repeated-2)",
        "[absolute](/docs/page.md)",
        "[ftp](ftp://example.org/file)",
        "[anchor into a folder](docs#x)",
    ]
    readme = tmp_path / "README.md"
    readme.write_text(
        "# README\n\n" + good.replace(" [ref]", "\n\n[ref]") + "\n\n" + "\n".join(bad) + "\n\n`[in code](nope.md)`\n"
        "\n```\n[in a fence](nope.md)\n```\n"
    )
    outside = tmp_path / "docs" / "escape.md"
    outside.write_text("[up and out](../../outside.md)\n")
    problems = broken_links([readme, outside], root=tmp_path)
    reported = [problem.split(": ")[1] for problem in problems]
    assert reported == [re.search(r"\((.*)\)", link).group(1) for link in bad] + ["../../outside.md"]
    assert problems[-1].endswith("points outside the repository")
    assert broken_links([tmp_path / "docs" / "page.md"], root=tmp_path) == []


def test_github_slugs():
    assert github_slug("What `make demo` does") == "what-make-demo-does"
    assert github_slug("Latent diffusion (`main_ldm.py`)") == "latent-diffusion-main_ldmpy"
    assert github_slug("Strategies table with ε-prediction") == "strategies-table-with-ε-prediction"
    assert github_slug("See [the docs](docs/x.md) now") == "see-the-docs-now"


def test_readme_is_a_ten_minute_page():
    with open(ROOT / "README.md", encoding="utf-8") as fh:
        lines = fh.read().count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; move detail to docs/ (at most {MAX_README_LINES})"


def test_documentation_refers_to_nothing_outside_the_repository():
    outside = ("shared/", "ARCHITECTURE.md", "REFERENCE_BEHAVIOUR", "PRIOR_ART", "the issue", "issue's")
    found = [
        f"{path.relative_to(ROOT)}:{number}: {word}"
        for path in documentation_files()
        for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1)
        for word in outside
        if word in line
    ]
    assert found == []
