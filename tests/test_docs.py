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


TEST_REFERENCE = re.compile(r"tests/(test_\w+\.py)::(test_\w+)")


def test_every_test_the_docs_name_exists():
    """A promise in the guide names the test that checks it; renaming or deleting that test must
    not leave the promise unchecked."""
    documents = [REPO / "README.md", *(REPO / "docs").glob("*.md"), *(REPO / "experiments").glob("*/README.md")]
    named = {(file, name) for doc in documents for file, name in TEST_REFERENCE.findall(doc.read_text())}
    missing = [f"{file}::{name}" for file, name in sorted(named)
               if not re.search(rf"^def {name}\(", (REPO / "tests" / file).read_text()
                                if (REPO / "tests" / file).exists() else "", re.M)]
    assert len(named) > 20 and not missing, missing
