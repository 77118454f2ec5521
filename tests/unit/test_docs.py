"""The documentation's links hold: every relative link in the README and in docs/ points at
a file that exists and, into Markdown, at a heading that exists (anchors as GitHub makes
them), so moving a section cannot break a link silently. And the docs build (`make docs`)
checks links out of docs/ as strictly as links inside it (mkdocs_hooks.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import pytest

from mkdocs_hooks import EXTERNAL, FENCE, LINK

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)


def prose(path: Path) -> str:
    """A Markdown file without its fenced code (whose `#` lines are no headings)."""
    return FENCE.sub("", path.read_text(encoding="utf-8"))


def anchors(path: Path) -> set[str]:
    """The anchors GitHub gives a file's headings: lower case, punctuation dropped, spaces
    as hyphens, and -1, -2... after a repeated one."""
    seen: Counter[str] = Counter()
    found = set()
    for heading in HEADING.findall(prose(path)):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        found.add(f"{slug}-{seen[slug]}" if seen[slug] else slug)
        seen[slug] += 1
    return found


def relative_links(path: Path) -> list[str]:
    links = (match.group(2) for match in LINK.finditer(prose(path)))
    return [link for link in links if not EXTERNAL.match(link)]


def broken(page: Path, link: str, root: Path = ROOT) -> str | None:
    """What is wrong with a relative link of `page`, or None."""
    path, _, anchor = link.partition("#")
    target = (page.parent / unquote(path)).resolve() if path else page
    if not target.is_relative_to(root) or not target.exists():
        return "no such file"
    if anchor and target.suffix == ".md" and anchor not in anchors(target):
        return f"no heading #{anchor} in {target.relative_to(root)}"
    return None


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_points_at_a_file_and_a_heading(page: Path) -> None:
    problems = [(link, why) for link in relative_links(page) if (why := broken(page, link))]
    assert problems == []


def test_the_readme_links_every_docs_page() -> None:
    linked = {(ROOT / link.partition("#")[0]).resolve() for link in relative_links(README)}
    pages = set(DOCS.glob("*.md"))
    assert len(pages) >= 7
    assert pages - linked == set()


def test_the_check_catches_a_missing_file_and_a_missing_heading(tmp_path: Path) -> None:
    root = tmp_path / "repository"
    root.mkdir()
    page = root / "page.md"
    page.write_text("# A page\n\n## Its part\n", encoding="utf-8")
    (tmp_path / "outside.md").write_text("# Outside\n", encoding="utf-8")
    assert broken(page, "#its-part", root) is None
    assert broken(page, "page.md#a-page", root) is None
    assert broken(page, "#its-whole", root) == "no heading #its-whole in page.md"
    assert broken(page, "other.md", root) == "no such file"
    assert broken(page, "../outside.md", root) == "no such file"


MKDOCS_YML = f"""site_name: links
hooks: [{ROOT / "mkdocs_hooks.py"}]
validation: {{not_found: warn, anchors: warn, unrecognized_links: warn}}
"""


def build(tmp_path: Path, link: str) -> subprocess.CompletedProcess[str]:
    """A one-page site whose page links to `link`, beside a repository file notes.md."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "mkdocs.yml").write_text(MKDOCS_YML, encoding="utf-8")
    (tmp_path / "notes.md").write_text("# Notes\n\n## Setting up\n", encoding="utf-8")
    page = f"# Home\n\nSee [it]({link}).\n\n```\n[not a link](../none.md)\n```\n"
    (tmp_path / "docs" / "index.md").write_text(page, encoding="utf-8")
    command = [sys.executable, "-m", "mkdocs", "build", "--strict"]
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)


def test_docs_build_takes_a_link_out_of_docs_to_a_file_and_heading_that_exist(
    tmp_path: Path,
) -> None:
    result = build(tmp_path, "../notes.md#setting-up")
    assert result.returncode == 0, result.stderr
    home = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert 'href="repo/notes/#setting-up"' in home
    assert "Setting up" in (tmp_path / "site" / "repo" / "notes" / "index.html").read_text()


@pytest.mark.parametrize(
    ("link", "complaint"),
    [("../notes.md#tearing-down", "anchor '#tearing-down'"), ("../none.md", "'../none.md'")],
)
def test_docs_build_fails_on_a_link_out_of_docs_that_is_broken(
    tmp_path: Path, link: str, complaint: str
) -> None:
    result = build(tmp_path, link)
    assert result.returncode != 0
    assert complaint in result.stderr
