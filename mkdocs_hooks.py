"""mkdocs hook: links from docs/ to repository files outside it (README.md, deploy/...).

The pages link to them relatively (`../deploy/README.md`), as GitHub renders them. mkdocs
knows only docs/, so --strict would fail on those links as "not found". This hook adds
each linked file to the site under `repo/` (Markdown as a page, anything else as a copy),
following links from those pages too, and points every link there. mkdocs then checks
these links like any other, anchors included: a missing file or heading fails the build.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files, InclusionLevel
from mkdocs.structure.pages import Page

# Where repository files outside docs/ go in the site.
PREFIX = "repo"
# An inline link or image: ](target) or ](target#anchor).
LINK = re.compile(r"(\]\()([^)\s]+)(\))")
# Fenced code (indented fences too): its text is not Markdown, so its links are not links.
FENCE = re.compile(r"^([ \t]*)(```|~~~).*?^\1\2[ \t]*$", re.M | re.S)
# A link with a scheme (https:, mailto:) or an absolute path: not a repository file.
EXTERNAL = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*:|/)")


def _roots(config: MkDocsConfig) -> tuple[Path, Path]:
    """The docs folder and the repository (the folder of mkdocs.yml)."""
    return Path(config.docs_dir).resolve(), Path(config.config_file_path).parent.resolve()


def _outside_fences(markdown: str, change: Callable[[str], str]) -> str:
    """`markdown` with `change` applied to every stretch outside fenced code."""
    parts, start = [], 0
    for fence in FENCE.finditer(markdown):
        parts += [change(markdown[start : fence.start()]), fence.group(0)]
        start = fence.end()
    return "".join([*parts, change(markdown[start:])])


def _target(link: str, folder: Path, repository: Path) -> tuple[Path, str] | None:
    """The repository path a relative link points at, and its `#anchor` (or "")."""
    if link.startswith("#") or EXTERNAL.match(link):
        return None
    path, hash_, anchor = link.partition("#")
    target = (folder / unquote(path)).resolve()
    return (target, hash_ + anchor) if target.is_relative_to(repository) else None


def _site_uri(target: Path, docs: Path, repository: Path) -> str:
    """The path a repository file has among the site's files."""
    if target.is_relative_to(docs):
        return target.relative_to(docs).as_posix()
    return f"{PREFIX}/{target.relative_to(repository).as_posix()}"


def _links(markdown: str, folder: Path, repository: Path) -> Iterator[Path]:
    """The repository paths a page's links point at."""
    for match in LINK.finditer(FENCE.sub("", markdown)):
        if (target := _target(match.group(2), folder, repository)) is not None:
            yield target[0]


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the files outside docs/ that the pages link to, and those their pages link to."""
    docs, repository = _roots(config)
    pending = [Path(page.abs_src_path or "") for page in files.documentation_pages()]
    added: set[Path] = set()
    while pending:
        source = pending.pop()
        for target in _links(source.read_text(encoding="utf-8"), source.parent, repository):
            # A missing file, or a folder, is left to mkdocs, which reports the link.
            if target.is_relative_to(docs) or target in added or not target.is_file():
                continue
            added.add(target)
            uri = _site_uri(target, docs, repository)
            files.append(
                File.generated(
                    config, uri, abs_src_path=str(target), inclusion=InclusionLevel.NOT_IN_NAV
                )
            )
            if target.suffix == ".md":
                pending.append(target)
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Point each link that crosses the docs folder's edge at the file's place in the site."""
    docs, repository = _roots(config)
    source = Path(page.file.abs_src_path or "")
    here = posixpath.dirname(page.file.src_uri) or "."

    def rewrite(match: re.Match[str]) -> str:
        target = _target(match.group(2), source.parent, repository)
        if target is None or not target[0].is_file():
            return match.group(0)
        path, anchor = target
        if source.is_relative_to(docs) and path.is_relative_to(docs):
            return match.group(0)
        uri = posixpath.relpath(_site_uri(path, docs, repository), here)
        return f"{match.group(1)}{uri}{anchor}{match.group(3)}"

    return _outside_fences(markdown, lambda text: LINK.sub(rewrite, text))
