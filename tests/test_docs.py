"""The guide stays a guide: README short, every docs page linked from it, every relative link alive."""

import re

from conftest import REPO

LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def relative_links(path):
    return [target for target in LINK.findall(path.read_text()) if "://" not in target]


def test_readme_is_a_short_guide_linking_every_docs_page():
    readme = REPO / "README.md"
    assert len(readme.read_text().splitlines()) <= 250
    linked = {target for target in relative_links(readme)}
    pages = {f"docs/{page.name}" for page in (REPO / "docs").glob("*.md")}
    assert pages and pages <= linked, sorted(pages - linked)


def test_every_relative_link_of_the_guide_points_to_a_file():
    documents = [REPO / "README.md", *(REPO / "docs").glob("*.md"), *(REPO / "experiments").glob("*/README.md")]
    broken = [(str(doc.relative_to(REPO)), target) for doc in documents for target in relative_links(doc)
              if not (doc.parent / target).exists()]
    assert not broken, broken
