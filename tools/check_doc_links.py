"""Check the repository's Markdown for links and paths that lead outside the repository.

The documentation must stand on its own in any clone: a link to a file beside the repository (the
project's ``shared`` folder), a path of one machine (an absolute path, a ``file://`` URL), or a
relative link that climbs above the repository's root works on one machine only. Links to web sites (a vendor's
manual) are fine. Outside ``docs/`` a relative link must also name a file that exists (inside ``docs/``,
``mkdocs build --strict`` checks that, with the pages it generates).

Usage: ``python tools/check_doc_links.py [ROOT]``; prints one line per problem and exits 1 if there is any.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent

PATTERNS = ("README.md", "CHANGELOG.md", "docs/**/*.md", "examples/**/*.md")
SKIPPED_PARTS = {".venv", "node_modules", "build", "dist", ".git"}

# Text that names a place outside the repository, wherever it stands (a link, a code span, a code block, prose).
OUTSIDE = [
    (re.compile(r"(?<![\w.])\.\./shared\b|(?<![\w/.-])shared/[\w.-]+/"),
     "the project's shared/ folder, outside the repository"),
    (re.compile(r"(?<![\w.])/work/"), "a path on one machine (/work/)"),
]
# Markdown links and images: [text](target), ![alt](target), reference definitions [id]: target, <a href>, <img src>.
LINKS = [
    re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)"),
    re.compile(r"^\s{0,3}\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE),
    re.compile(r"""<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*["']([^"']+)["']""", re.IGNORECASE),
]
FENCE = re.compile(r"^(```|~~~)")


def markdown_files(root: Path) -> Iterator[Path]:
    seen = set()
    for pattern in PATTERNS:
        for path in sorted(root.glob(pattern)):
            if path in seen or SKIPPED_PARTS & set(path.relative_to(root).parts) or not path.is_file():
                continue
            seen.add(path)
            yield path


def _without_code_blocks(text: str) -> str:
    """The text with the lines of fenced code blocks blanked (line numbers kept): links there are examples."""
    out, fenced = [], None
    for line in text.split("\n"):
        marker = FENCE.match(line.strip())
        if fenced is None and marker:
            fenced = marker.group(1)
            out.append("")
        elif fenced is not None:
            if line.strip().startswith(fenced):
                fenced = None
            out.append("")
        else:
            out.append(line)
    return "\n".join(out)


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def problems(root: Path = ROOT) -> list[str]:
    """One line per problem: ``path:line: what``."""
    root = root.resolve()
    found = []
    for path in markdown_files(root):
        name = path.relative_to(root).as_posix()
        text = path.read_text(encoding="utf-8")
        for pattern, what in OUTSIDE:
            for match in pattern.finditer(text):
                found.append(f"{name}:{_line(text, match.start())}: {match.group(0)!r}: {what}")
        prose = _without_code_blocks(text)
        in_docs = path.is_relative_to(root / "docs")
        for pattern in LINKS:
            for match in pattern.finditer(prose):
                target = match.group(1)
                problem = _link_problem(root, path, target, check_exists=not in_docs)
                if problem:
                    found.append(f"{name}:{_line(prose, match.start())}: link {target!r}: {problem}")
    return found


def _link_problem(root: Path, page: Path, target: str, *, check_exists: bool) -> str | None:
    parts = urlsplit(target)
    if parts.scheme in ("http", "https", "mailto"):
        return None
    if parts.scheme == "file":
        return "a file:// URL of one machine"
    if parts.scheme or parts.netloc:
        return f"a {parts.scheme or 'network'} link"
    if not parts.path:  # an anchor on the same page
        return None
    if parts.path.startswith("/"):
        return "an absolute path (works on one machine, or one web server, only)"
    resolved = (page.parent / unquote(parts.path)).resolve()
    if not resolved.is_relative_to(root):
        return "leads outside the repository"
    if check_exists and not resolved.exists():
        return "no such file in the repository"
    return None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0]) if args else ROOT
    found = problems(root)
    for line in found:
        print(line)
    checked = sum(1 for _ in markdown_files(root.resolve()))
    print(f"{checked} Markdown files checked: {len(found)} link problem{'s' if len(found) != 1 else ''}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
