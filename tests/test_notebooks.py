"""Every notebook: committed without outputs, parameterised, and executable through papermill."""
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_clean_with_a_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "notebooks are committed without outputs"
    assert sum("parameters" in c.metadata.get("tags", []) for c in code) == 1


def test_every_notebook_is_a_chapter_of_the_book():
    """The runner's chapter list, the notebooks and the table of contents name the same chapters."""
    from fermap_utils.config import section

    book = section("book")
    assert sorted(p.stem for p in NOTEBOOKS) == sorted(book["chapters"]) and len(NOTEBOOKS) == 13
    toc = (ROOT / "_toc.yml").read_text()
    # the book's order is the configuration's (file names keep their numbers; the discussion comes last)
    positions = [toc.find(f"{book['executed']}/{name}\n") for name in book["chapters"]]
    assert -1 not in positions and positions == sorted(positions)


# Execution of every notebook, with the smoke profile and through papermill, is tests/test_book.py.
