"""The package's own conventions: every module documented, numpydoc on the bottom layer, one version."""
import ast
import inspect
import re
import textwrap
from importlib import import_module

import pytest

import fermap_utils
from fermap_utils.config import project_root

ROOT = project_root()
MODULES = sorted(p.stem for p in (ROOT / "fermap_utils").glob("*.py") if not p.stem.startswith("_"))
#: The bottom layer: small functions on arrays that everything else builds on.
BOTTOM = ("landmarks", "warping", "masks", "metrics", "statistics", "specificity", "augment", "heatmaps", "lime",
          "layout")
#: Public functions of the bottom layer exempt from the numpydoc check (none today).
PENDING: set[str] = set()


def test_readme_lists_every_module_and_no_other():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Modules", 1)[1].split("\n## ", 1)[0]
    listed = set()
    for line in section.splitlines():
        head = re.match(r"- ((?:`\w+`(?:, )?)+):", line)  # "- `name`: ..." or "- `a`, `b`: ..."
        if head:
            listed |= set(re.findall(r"`(\w+)`", head.group(1)))
    assert listed == set(MODULES)


def test_package_docstring_names_every_module():
    named = set(re.findall(r"``(\w+)``", fermap_utils.__doc__))
    assert set(MODULES) <= named
    assert "to land" not in fermap_utils.__doc__


def _documented(section: str) -> set[str]:
    """Names in a numpydoc Parameters section: ``a : type`` or ``a, b : type`` at the section's indent."""
    names = set()
    for line in section.splitlines():
        if line and not line[0].isspace():
            names |= {n.strip().lstrip("*") for n in line.split(" : ")[0].split(",")}
    return names


def _sections(doc: str) -> dict[str, str]:
    parts = re.split(r"^(\w[\w ]*)\n-+\n", textwrap.dedent(doc), flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def _public_functions(module_name: str):
    module = import_module(f"fermap_utils.{module_name}")
    tree = ast.parse(inspect.getsource(module))
    for node in tree.body:  # defined here, not imported
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_") \
                and f"{module_name}.{node.name}" not in PENDING:
            yield node.name, getattr(module, node.name)


@pytest.mark.parametrize("module_name", BOTTOM)
def test_bottom_layer_has_numpydoc_parameters_and_returns(module_name):
    problems = []
    for name, fn in _public_functions(module_name):
        doc = inspect.getdoc(fn) or ""
        sections = _sections(doc)
        params = [p for p in inspect.signature(fn).parameters]
        if params:
            documented = _documented(sections.get("Parameters", ""))
            if set(params) - documented:
                problems.append(f"{name}: undocumented parameters {sorted(set(params) - documented)}")
            if documented - set(params):
                problems.append(f"{name}: documents parameters it lacks {sorted(documented - set(params))}")
        if "Returns" not in sections and "Yields" not in sections:
            problems.append(f"{name}: no Returns section")
    assert problems == []


def test_the_docstring_check_finds_a_missing_parameter():
    doc = "Summary.\n\nParameters\n----------\na, b : int\n    Numbers.\n*more : arrays\n\nReturns\n-------\nint\n"
    assert _documented(_sections(doc)["Parameters"]) == {"a", "b", "more"}
    assert "Returns" in _sections(doc)
    assert _documented("x : int\n    the x\n") == {"x"}
