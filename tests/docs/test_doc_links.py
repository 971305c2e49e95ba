"""tools/check_doc_links.py: no Markdown in the repository links outside it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("check_doc_links", ROOT / "tools" / "check_doc_links.py")
assert spec and spec.loader
check_doc_links = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = check_doc_links
spec.loader.exec_module(check_doc_links)


def test_the_repositorys_markdown_links_nowhere_outside_it():
    assert check_doc_links.problems(ROOT) == []


SHARED = "../" + "shared"  # the folder beside a checkout (spelt in two pieces: no line here points at it)
MACHINE = "/" + "work/"  # a path of one machine


def test_links_and_paths_outside_a_repository_are_found(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("[ok](other.md) [up](../../x.md)\n<a href=\"../../y.md\">y</a>\n")
    (tmp_path / "README.md").write_text(
        f"[a]({SHARED}/notes.md) [b](../../outside.md) [c](/etc/passwd) [d](file:///tmp/x) "
        "[vendor](https://example.com/manual.pdf) [e](docs/page.md) [f](missing.md#part) [g](#anchor)\n\n"
        f"```\n[in a code block](../../example.md)\n```\nsee {MACHINE}main/x\n\n[ref]: ../../../up.md\n")
    found = check_doc_links.problems(tmp_path)
    text = "\n".join(found)
    for bad in (f"'{SHARED}'", f"'{MACHINE}'", f"link '{SHARED}/notes.md'", "link '../../outside.md'",
                "link '/etc/passwd'", "link 'file:///tmp/x'", "link 'missing.md#part'", "link '../../../up.md'",
                "docs/page.md:1: link '../../x.md'", "docs/page.md:2: link '../../y.md'"):
        assert bad in text, bad
    assert len(found) == 10, text  # the vendor's site, an existing page, an anchor and the code block are fine
    assert check_doc_links.main([str(tmp_path)]) == 1
