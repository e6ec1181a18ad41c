"""The house's plan: data flows downward, each room has one job, each fact is spelled once.

The package is built in layers. A module may import from its own layer or any layer below, never from
above, and the imports (at the top of a file or inside a function) form no circle. These tests read the
source with ``ast``, so they see imports hidden inside functions too.
"""
import ast
import graphlib
from pathlib import Path

import pytest

from fermap_utils.config import project_root

PACKAGE = project_root() / "fermap_utils"

#: Bottom to top. Adding a module means placing it here: a new room is a design decision.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__init__", "errors", "config", "_io", "layout"),  # base: configuration, files, paths
    ("landmarks", "warping", "masks", "heatmaps", "augment", "metrics", "statistics", "specificity",
     "lime", "attribution", "efficientnet_lite", "plots"),  # functions on arrays
    ("data", "synthetic", "models"),  # datasets and networks
    ("explainers", "profiles"),  # registries: what an explainer is, what a run does
    ("executor",),  # jobs, not stages
    ("rundata", "training", "explanations", "sanity", "scoring", "groundtruth", "attention", "widgets",
     "states"),  # stages
    ("plan", "run", "archive"),  # runs
    ("chapters", "book", "parser", "teaching"),  # the book
    ("cli",),  # the command
)
#: Imports inside functions that name a module of the package: at most this many in all (the issue's bound).
MAX_LOCAL_IMPORTS = 30


def layer_of(module: str) -> int:
    """The index of ``module``'s layer in :data:`LAYERS`."""
    for i, layer in enumerate(LAYERS):
        if module in layer:
            return i
    raise KeyError(f"module {module!r} is in no layer of tests/test_architecture.py: place it there")


def package_imports(source: str) -> list[tuple[str, bool]]:
    """The package modules a source imports, each with whether the import sits inside a function.

    ``from . import a, b`` imports ``a`` and ``b``; ``from .a import x`` and ``from fermap_utils.a import x``
    import ``a``.
    """
    tree = ast.parse(source)
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            inside |= {id(n) for n in ast.walk(node) if n is not node}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 1 or module.split(".")[0] == "fermap_utils":
                rest = module.removeprefix("fermap_utils").lstrip(".") if node.level == 0 else module
                names = [rest.split(".")[0]] if rest else [a.name for a in node.names]
                found += [(n, id(node) in inside) for n in names]
        elif isinstance(node, ast.Import):
            found += [(a.name.split(".")[1], id(node) in inside) for a in node.names
                      if a.name.startswith("fermap_utils.")]
    return found


def import_graph(folder: Path = PACKAGE) -> dict[str, list[tuple[str, bool]]]:
    """Each module of the package, with the package modules it imports (``from . import __version__`` is no module)."""
    files = sorted(folder.glob("*.py"))
    modules = {p.stem for p in files}
    return {p.stem: [(t, inner) for t, inner in package_imports(p.read_text()) if t in modules] for p in files}


def cycle_in(graph: dict[str, list[tuple[str, bool]]]) -> list[str] | None:
    """One import circle of ``graph``, or ``None`` (``graphlib`` finds it)."""
    order = graphlib.TopologicalSorter({m: {t for t, _ in deps if t != m} for m, deps in graph.items()})
    try:
        order.prepare()
    except graphlib.CycleError as error:
        return error.args[1]
    return None


def upward_imports(graph: dict[str, list[tuple[str, bool]]]) -> list[str]:
    """Every import that runs from a lower layer to a higher one, as ``"a -> b"``."""
    return sorted({f"{m} -> {t}" for m, deps in graph.items() for t, _ in deps if layer_of(t) > layer_of(m)})


def test_every_module_has_a_layer():
    assert [m for m in import_graph() if not any(m in layer for layer in LAYERS)] == []


def test_the_imports_form_no_circle():
    assert cycle_in(import_graph()) is None


def test_no_import_runs_back_up():
    assert upward_imports(import_graph()) == []


def test_imports_inside_functions_are_few():
    local = [(m, t) for m, deps in import_graph().items() for t, inner in deps if inner]
    assert len(local) <= MAX_LOCAL_IMPORTS, sorted(local)


# The checks above, on planted cases: each can fail.

def test_the_graph_reader_sees_imports_inside_functions():
    source = "from . import a, b\nfrom .c import x\nimport fermap_utils.d\ndef f():\n    from fermap_utils.e import y\n"
    assert package_imports(source) == [("a", False), ("b", False), ("c", False), ("d", False), ("e", True)]


def test_a_planted_circle_and_an_upward_import_are_found():
    graph = {"metrics": [("plots", False)], "plots": [("cli", True)], "cli": [("metrics", False)]}
    assert set(cycle_in(graph)) == {"metrics", "plots", "cli"}
    assert upward_imports(graph) == ["plots -> cli"]
    with pytest.raises(KeyError, match="no layer"):
        layer_of("kitchen")


def test_the_scores_room_is_read_in_one_sitting():
    assert len((PACKAGE / "metrics.py").read_text().splitlines()) < 700


def test_progress_bars_are_looked_up_when_drawn():
    # A book chapter silences progress bars by replacing ``tqdm.auto.tqdm`` (chapters.quiet_libraries);
    # a module that bound the name at import would still draw a widget into the page.
    bound = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tqdm"):
                bound.append(f"{path.name}:{node.lineno}")
    assert not bound, f"import tqdm.auto and call tqdm.auto.tqdm instead: {bound}"


def test_a_quiet_chapter_draws_no_progress_bar(monkeypatch, capsys, tmp_path):
    import tqdm.auto

    from fermap_utils import chapters, synthetic

    monkeypatch.setattr(tqdm.auto, "tqdm", tqdm.auto.tqdm)  # restored after the test
    synthetic.generate(tmp_path / "drawn", identities=1, samples_per_expression=1)
    assert "synthesising" in capsys.readouterr().err  # the bar is drawn outside a chapter...
    chapters.quiet_libraries(book=True)
    synthetic.generate(tmp_path / "quiet", identities=1, samples_per_expression=1)
    assert "synthesising" not in capsys.readouterr().err  # ...and not inside one
