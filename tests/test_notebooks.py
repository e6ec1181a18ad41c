"""Every notebook: committed without outputs, parameterised, and executable through papermill."""
import ast
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _parameters(cell) -> dict:
    """The names a parameters cell assigns and their literal values; anything else in it is refused."""
    values = {}
    for node in ast.parse(cell.source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name), \
            f"a parameters cell holds only `name = literal` lines, not {ast.unparse(node)!r}"
        values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_clean_with_a_parameters_cell(path, tmp_path):
    """Valid nbformat 4, no outputs, and one parameters cell, first, naming exactly what papermill
    injects (``chapters.chapter_parameters``) with defaults of the same types that work from JupyterLab."""
    from fermap_utils.chapters import chapter_parameters
    from fermap_utils.profiles import load_profile
    from fermap_utils.run import authors_data_dir

    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)  # raises on an invalid notebook
    assert nb.nbformat == 4 and nb.metadata.kernelspec.name == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "notebooks are committed without outputs"
    tagged = [i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", [])]
    assert tagged == [0], "one parameters cell, the first code cell (papermill injects right after it)"
    defaults = _parameters(code[0])
    injected = chapter_parameters(load_profile("smoke"), tmp_path / "run")
    assert list(defaults) == list(injected)
    assert {k: type(v) for k, v in defaults.items()} == {k: type(v) for k, v in injected.items()}
    # the defaults, as JupyterLab runs the chapter from notebooks/: the default profile's run, the shipped data
    assert defaults == {"run_dir": "../runs/default", "profile": "default", "reference": "../book/data/authors",
                        "live_widgets": True}
    assert load_profile(defaults["profile"])["name"] == "default"
    assert (path.parent / defaults["reference"]).resolve() == authors_data_dir().resolve()


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
