"""The book: the HTML build (MathJax vendored, so it reads offline) and its browser check.

``fermap run`` executes the chapters and finishes them for the page (:mod:`fermap_utils.chapters`);
this module builds the HTML with jupyter-book 1.x and checks it in headless Chromium.
"""
from __future__ import annotations

import ast
import base64
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import cv2
import numpy as np
import pandas as pd

from .config import _config, paper, project_root, section
from .errors import FermapError
from .profiles import load_profile
from .teaching import PLACEHOLDER_REPOSITORY

# Where ``fermap book`` finds MathJax 3 (the npm package, which .ci/setup installs beside the Python
# environment) and where it copies it, inside the book's static folder, so the HTML renders its
# equations without a network.
MATHJAX_NPM = Path(sys.prefix) / "mathjax" / "node_modules" / "mathjax" / "es5"
MATHJAX_STATIC = Path("book") / "_static" / "mathjax"


# ---------------------------------------------------------------- build

def vendor_mathjax(root: str | os.PathLike) -> Path:
    """Copy MathJax 3 (npm package ``mathjax``, installed by ``.ci/setup``) into the book's static folder.

    Parameters
    ----------
    root : path
        The book's root (``_config.yml``).

    Returns
    -------
    Path
        The copied ``tex-mml-chtml.js``.
    """
    root = Path(root)
    target = root / MATHJAX_STATIC
    if (target / "tex-mml-chtml.js").is_file():
        return target / "tex-mml-chtml.js"
    if not (MATHJAX_NPM / "tex-mml-chtml.js").is_file():
        raise FermapError(f"MathJax not found at {MATHJAX_NPM}; run `bash .ci/setup` "
                          "(npm install --prefix .venv/mathjax mathjax@3.2.2) so the book renders equations offline")
    # The CommonHTML build and what it loads on demand; not the SVG output nor the speech rules (4 MB).
    shutil.copytree(MATHJAX_NPM, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
        "sre", "*svg*", "*speech*", "node-main.js", "latest.js", "mml-chtml.js", "tex-chtml*.js"))
    return target / "tex-mml-chtml.js"


# What ``fermap book`` writes into the book's source tree before it builds (all ignored by git).
DOWNLOADS = Path("book") / "downloads"
SOURCE_ARCHIVE = "fermap-source.tar.gz"
NOTEBOOKS_ARCHIVE = "fermap-chapters.zip"
GENERATED_PAGES = {"source": Path("book") / "source.md", "readme": Path("book") / "readme.md",
                   "findings": Path("book") / "findings.md"}
# Never in the source archive: what a run, a build or an environment writes.
_NOT_SOURCE = {".git", ".venv", "_build", "run", "runs", "results", "__pycache__", ".pytest_cache",
               ".ipynb_checkpoints", ".ruff_cache", "node_modules"}
# The landing page's gallery: (chapter, figure number in it, what it shows).
GALLERY = (("05_heatmaps", 1, "This run's heatmaps H(n,c) over the Ekman masks"),
           ("09_authors_heatmaps", 1, "The authors' global heatmaps over the masks (real data)"),
           ("08_similarity", 1, "Which networks look alike (the paper's Figure 10)"),
           ("13_ground_truth", 1, "The planted signal the explainers are graded against"))


def source_files(root: str | os.PathLike) -> list[Path]:
    """The files of the project's source tree: what git tracks or would (``git ls-files``), else
    every file but those a run, a build or an environment writes.

    Parameters
    ----------
    root : path
        The checkout.

    Returns
    -------
    list of Path
        Relative to ``root``, sorted.
    """
    root = Path(root)
    if (root / ".git").exists() and shutil.which("git"):
        done = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root,
                              capture_output=True, text=True)
        if done.returncode == 0:
            return sorted(Path(p) for p in done.stdout.split("\0") if p and (root / p).is_file())
    generated = {DOWNLOADS, *GENERATED_PAGES.values(), Path(section("book")["executed"]), MATHJAX_STATIC}
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file()
                  and not _NOT_SOURCE & set(p.relative_to(root).parts)
                  and not any(p.relative_to(root).is_relative_to(g) for g in generated))


def write_downloads(root: str | os.PathLike) -> dict[str, Path]:
    """The project's source (the tree this book is built from) and the executed chapters, as two
    archives under ``book/downloads`` that the book's "Source" page links.

    Parameters
    ----------
    root : path
        The book's root (``_config.yml``).

    Returns
    -------
    dict
        ``source`` and ``notebooks``: the archives written.
    """
    import tarfile
    import zipfile

    root = Path(root)
    out = root / DOWNLOADS
    out.mkdir(parents=True, exist_ok=True)
    source = out / SOURCE_ARCHIVE
    with tarfile.open(source, "w:gz") as tar:
        for path in source_files(root):
            tar.add(root / path, arcname=str(Path("fermap") / path), recursive=False)
    notebooks = out / NOTEBOOKS_ARCHIVE
    executed = root / section("book")["executed"]
    with zipfile.ZipFile(notebooks, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in section("book")["chapters"]:
            zf.write(executed / f"{name}.ipynb", arcname=f"chapters/{name}.ipynb")
    return {"source": source, "notebooks": notebooks}


def glued(notebook: str | os.PathLike) -> dict[str, str]:
    """The text a chapter glued for its prose (:func:`fermap_utils.chapters.say`), by key."""
    nb = json.loads(Path(notebook).read_text())
    found = {}
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            key = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if key:
                text = next((v for k, v in output.get("data", {}).items() if k.endswith("text/plain")), "")
                text = text if isinstance(text, str) else "".join(text)
                try:  # a glued str is stored as its repr, as myst-nb reads it back
                    value = ast.literal_eval(text)
                except (SyntaxError, ValueError):
                    value = text
                found[key] = value if isinstance(value, str) else text
    return found


def _figure_png(notebook: Path, number: int) -> bytes | None:
    nb = json.loads(notebook.read_text())
    figures = [o["data"]["image/png"] for c in nb.get("cells", []) if c.get("cell_type") == "code"
               and "figure" in c.get("metadata", {}).get("mystnb", {}) for o in c.get("outputs", [])
               if "image/png" in o.get("data", {})]
    if len(figures) < number:
        return None
    data = figures[number - 1]
    return base64.b64decode(data if isinstance(data, str) else "".join(data))


def scope_lines(profile: str = "default") -> list[str]:
    """What a profile replicates of the paper and what it replaces, read from ``config.yaml``.

    Parameters
    ----------
    profile : str
        The profile the book is built with by default.

    Returns
    -------
    list of str
        Markdown lines: a heading and one item per fact.
    """
    prof = load_profile(profile)
    facts = paper()
    nets = list(prof["networks"])
    theirs = [n for n in nets if n in facts["table_order"]]
    fixed = [n for n, spec in section("networks").items() if spec.get("fixed") and n in nets]
    added = [n for n in nets if n not in theirs and n not in fixed]
    folds = prof.get("folds")
    folds_text = f"{folds} of the paper's {section('data')['folds']} folds" if folds != "all" else "all five folds"
    return ["## What is replicated, and what is synthetic", "",
            f"- **Replicated exactly, on real data:** the paper's Tables 3 and 4, from the authors' published "
            f"heatmaps of its {len(facts['table_order'])} networks (chapter 9).",
            f"- **Rerun, on SYNTHETIC data:** every step of the method. The `{profile}` profile trains "
            f"{len(theirs)} of the paper's {len(facts['table_order'])} networks ({', '.join(theirs)}) and "
            f"{len(added)} it did not have ({', '.join(added)}) on {folds_text}"
            + (f", and evaluates without training {', '.join(fixed)}, a network trained on real faces" if fixed else "")
            + "; "
            "the paper's datasets are licensed, so the dataset is synthetic: FACS-driven expressions on real faces.",
            "- **Beyond the paper:** the statistics it lacks, three other explainers, and a ground truth to grade "
            "them against (chapters 10 to 12).",
            "- **The paper's full experiment** is the `paper` profile, for a GPU and licensed copies of its datasets."]


def cite_lines(root: str | os.PathLike) -> list[str]:
    """How to cite fermap and the paper, read from the checkout's ``CITATION.cff``.

    Parameters
    ----------
    root : path
        The checkout.

    Returns
    -------
    list of str
        Markdown lines (a heading and the citations); empty without a ``CITATION.cff``.
    """
    import yaml

    cff = Path(root) / "CITATION.cff"
    if not cff.is_file():
        return []
    meta = yaml.safe_load(cff.read_text()) or {}

    def names(people) -> str:
        return ", ".join(p.get("name") or f"{p.get('given-names', '')} {p.get('family-names', '')}".strip()
                         for p in people or [])

    lines = ["## How to cite", "",
             f"- **fermap:** {names(meta.get('authors'))}, *{' '.join(str(meta.get('title', '')).split())}*, "
             f"version {meta.get('version', '?')}, {meta.get('license', '')} licence (`CITATION.cff`, in the "
             "[source archive](source.md))."]
    for ref in meta.get("references") or []:
        where = ref.get("journal") or ref.get("collection-title") or ""
        lines.append(f"- **The paper:** {names(ref.get('authors'))} ({ref.get('year', '')}), "
                     f"*{' '.join(str(ref.get('title', '')).split())}*" + (f", {where}" if where else "")
                     + (f", doi:{ref['doi']}" if ref.get("doi") else "") + ".")
    return lines


def readme_links_from(folder: str | os.PathLike, text: str) -> str:
    """The README's Markdown with its relative link and image targets, written from the project's
    root, rewritten from ``folder`` (the book's copy lives in ``book/``).

    Parameters
    ----------
    folder : path
        Where the copy lives, relative to the project's root.
    text : str
        The README's Markdown.

    Returns
    -------
    str
        ``text`` with ``](book/_static/x.png)`` read from ``book`` as ``](_static/x.png)`` and
        ``](LICENSE)`` as ``](../LICENSE)``; URLs, anchors and absolute paths unchanged.
    """
    def moved(match: re.Match) -> str:
        target = match.group(2)
        if urlparse(target).scheme or target.startswith(("#", "/")):
            return match.group(0)
        return match.group(1) + posixpath.relpath(target, Path(folder).as_posix()) + match.group(3)

    return re.sub(r"(\]\()([^)\s]+)(\s[^)]*\)|\))", moved, text)


def write_pages(root: str | os.PathLike) -> dict[str, Path]:
    """The pages ``fermap book`` writes from the run and the checkout: the landing page's findings
    and gallery (``findings.md``, included by ``intro.md``), the Source page with the downloads,
    and a copy of the README (``readme.md``), which the chapters link.

    The findings are what the chapters glued (:func:`glued`): the numbers of this run, never typed.

    Parameters
    ----------
    root : path
        The book's root.

    Returns
    -------
    dict
        The pages written, by name.
    """
    root = Path(root)
    book = section("book")
    executed = root / book["executed"]
    facts = {name: glued(executed / f"{name}.ipynb") for name in book["chapters"]
             if (executed / f"{name}.ipynb").is_file()}
    gallery_dir = root / DOWNLOADS / "gallery"
    gallery_dir.mkdir(parents=True, exist_ok=True)
    cards = []
    for chapter, number, what in GALLERY:
        png = _figure_png(executed / f"{chapter}.ipynb", number) if (executed / f"{chapter}.ipynb").is_file() else None
        if png is None:
            continue
        (gallery_dir / f"{chapter}.png").write_bytes(png)
        cards.append(f"```{{figure}} downloads/gallery/{chapter}.png\n:alt: {what}\n:width: 100%\n\n"
                     f"{what} ([chapter]({book['executed'].removeprefix('book/')}/{chapter}.ipynb))\n```")
    f = {k: v for chapter in facts.values() for k, v in chapter.items()}
    findings = []
    if "cells_equal" in f:
        findings.append(f"**The paper's Tables 3 and 4 are reproduced from the authors' heatmaps:** {f['cells_equal']} "
                        "cells equal the paper's to 4 decimals (chapter 9, real data).")
    if "specific" in f:
        findings.append(f"**On the authors' own heatmaps, the masks do not show expression-specific attention:** "
                        f"{f['specific']} (chapter 10).")
    if "gt_outcome" in f:
        findings.append(f"**On the synthetic faces, whose signal is known:** {f['gt_outcome']} (chapters 12 and 13).")
    if "accuracies" in f:
        findings.append(f"**This run's networks** (profile {f.get('profile', '?')}, SYNTHETIC data): test accuracy "
                        f"{f['accuracies']} (chapter 2).")
    lines = [*scope_lines(), "", "## What this run found", ""]
    lines += [f"{i}. {t}" for i, t in enumerate(findings[:3], 1)] or ["The chapters have not been executed yet."]
    lines += ["", "## Key figures", "", "::::{grid} 2", ""] if cards else []
    if cards:
        lines += [f":::{{grid-item}}\n{c}\n:::\n" for c in cards] + ["::::", ""]
    lines += cite_lines(root)
    written = {}
    page = root / GENERATED_PAGES["findings"]
    page.write_text("\n".join(lines) + "\n")
    written["findings"] = page
    readme = root / "README.md"
    if readme.is_file():
        page = root / GENERATED_PAGES["readme"]
        page.write_text("# README\n\nThe project's README, as in the source archive ([Source](source.md)).\n\n"
                        + readme_links_from(page.parent.relative_to(root),
                                            re.sub(r"^# .*\n", "", readme.read_text(), count=1)
                                            .replace("\n## ", "\n## ").replace("\n# ", "\n## ")))
        written["readme"] = page
    chapters_list = "\n".join(f"- {{download}}`{name}.ipynb <{book['executed'].removeprefix('book/')}/{name}.ipynb>`"
                              for name in book["chapters"])
    page = root / GENERATED_PAGES["source"]
    page.write_text(f"""# Source and downloads

This book was built from the source tree in the first download below: the package
`fermap_utils`, the notebooks (stored without outputs), the configuration, the tests and the
book's pages. Unpack it and, with Python 3.11, install and run in two commands:

```bash
tar xzf {SOURCE_ARCHIVE} && cd fermap && bash .ci/setup
.venv/bin/fermap run --profile default && .venv/bin/fermap book
```

The first builds `.venv` with every pinned dependency; the second executes the chapters and
builds this book in `_build/html`. The [README](readme.md) says more (profiles, the command
line, measured times).

- {{download}}`The project's source <downloads/{SOURCE_ARCHIVE}>` (`{SOURCE_ARCHIVE}`)
- {{download}}`Every executed chapter <downloads/{NOTEBOOKS_ARCHIVE}>` (`{NOTEBOOKS_ARCHIVE}`, with outputs)

Each executed chapter, with its outputs:

{chapters_list}
""")
    written["source"] = page
    return written


def build_book(builder: str = "html", root: str | os.PathLike | None = None) -> Path:
    """``fermap book``: build the book with jupyter-book 1.x from the executed chapters (no execution).

    Parameters
    ----------
    builder : str
        jupyter-book's builder (``html``).
    root : path, optional
        The folder holding ``_config.yml``, ``_toc.yml`` and ``book/`` (default: this checkout).

    Returns
    -------
    Path
        ``<root>/_build/<builder>``.
    """
    root = Path(root or project_root())
    book = section("book")
    missing = [c for c in book["chapters"] if not (root / book["executed"] / f"{c}.ipynb").is_file()]
    if missing:
        raise FermapError(f"chapters not executed yet: {', '.join(missing)}; run `fermap run --profile ...` first")
    vendor_mathjax(root)
    write_downloads(root)
    write_pages(root)
    jb = Path(sys.executable).with_name("jupyter-book")
    command = [str(jb) if jb.is_file() else "jupyter-book", "build", str(root), "--builder", builder]
    config = launch_config(root)
    if config is not None:
        command += ["--config", str(config)]
    done = subprocess.run(command, cwd=root)
    if done.returncode:
        raise FermapError(f"jupyter-book build failed (exit {done.returncode})")
    return root / "_build" / builder


def launch_config(root: str | os.PathLike) -> Path | None:
    """Without a repository in ``_config.yml`` (fermap ships a placeholder), a copy of it without launch
    buttons, which would open nothing; None when a repository is set.

    Parameters
    ----------
    root : path
        The book's root.

    Returns
    -------
    Path or None
        ``<root>/_build/_config.no-launch.yml``, for ``jupyter-book build --config``.
    """
    import yaml

    root = Path(root)
    config = yaml.safe_load((root / "_config.yml").read_text()) or {}
    url = str((config.get("repository") or {}).get("url") or "").strip()
    if url and url != PLACEHOLDER_REPOSITORY:
        return None
    config["launch_buttons"] = {**(config.get("launch_buttons") or {}), "binderhub_url": "", "jupyterhub_url": "",
                                "colab_url": "", "thebe": False}
    config.pop("repository", None)
    target = root / "_build" / "_config.no-launch.yml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    return target


# ---------------------------------------------------------------- browser check

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]
WINDOW = "--window-size=1280,2400"

# Run in the page after it loaded (and MathJax typeset): what a reader sees, as JSON in the DOM.
_PROBE = r"""
<script>
window.addEventListener('load', () => setTimeout(() => {
  const report = {wide: [], tex: [], outputs: [], noalt: [], images: 0, clipped: []};
  const column = el => el.closest('article, main, [role=main]') || document.body;
  // The nearest ancestor (or the element itself) that scrolls sideways, or null.
  const scroller = el => {
    for (let a = el; a && a !== document.body; a = a.parentElement) {
      const o = getComputedStyle(a).overflowX;
      if (o === 'auto' || o === 'scroll') return a;
    }
    return null;
  };
  // Wider than its column: a scroller that fits its column holds it, else it is cut off or spills.
  const spills = (el, content) => {
    const col = column(el).getBoundingClientRect();
    const s = scroller(el);
    const box = (s || content).getBoundingClientRect();
    return box.right > col.right + 1 || box.left < col.left - 1 ? Math.round(col.width) : 0;
  };
  document.querySelectorAll('table').forEach((t, i) => {
    const col = spills(t, t);
    if (col) report.wide.push(`table ${i + 1} (${Math.round(t.getBoundingClientRect().width)} px in a `
                              + `${col} px column)`);
  });
  document.querySelectorAll('mjx-container[display="true"]').forEach((m, i) => {
    const math = m.querySelector('mjx-math') || m;
    const col = spills(math, math);
    if (col) report.clipped.push(`display equation ${i + 1} (${Math.round(math.getBoundingClientRect().width)} px `
                                 + `in a ${col} px column)`);
  });
  report.images = document.querySelectorAll('div.cell_output img').length;
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (n.parentElement.closest('script, style, pre, code, mjx-container, .fermap-probe')) continue;
    if (/\\\(|\\\[|\$\$/.test(n.textContent)) report.tex.push(n.textContent.trim().slice(0, 60));
  }
  document.querySelectorAll('.cell_output, .output, .stderr').forEach(o => report.outputs.push(o.textContent));
  document.querySelectorAll('img').forEach(im => {
    const alt = (im.getAttribute('alt') || '').trim(), src = im.getAttribute('src') || '';
    const name = src.split('/').pop();
    if (!alt || alt === src || alt === name || src.endsWith(alt)) report.noalt.push(name.slice(0, 40));
  });
  const out = document.createElement('pre');
  out.id = 'fermap-probe'; out.className = 'fermap-probe'; out.hidden = true;
  out.textContent = JSON.stringify(report);
  document.body.appendChild(out);
}, 1500));
</script>
"""
_DATA_URI = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+")
_ABSOLUTE = re.compile(r"(?<![\w./:%-])(/[\w.-]+)(?:/[\w.-]+)+")
_WARNING = re.compile(r"\b\w*Warning: |\bwarnings\.warn\(|^\s*WARNING[: ]|W0000 ", re.M)


# myst-nb's choice among an output's types for HTML, most preferred first (its ``html`` render priority).
_HTML_PRIORITY = ("application/vnd.jupyter.widget-view+json", "application/javascript", "text/html",
                  "image/svg+xml", "image/png", "image/gif", "image/jpeg", "text/markdown", "text/latex",
                  "text/plain")
_HIDDEN = {"remove-cell", "remove_cell", "remove-output", "remove_output"}


def notebook_images(nb: dict) -> int:
    """How many images an executed notebook's outputs put on its HTML page.

    Every image output counts (for each output, the type myst-nb renders in HTML), and every ``<img>``
    of an HTML output, but for cells tagged to remove their output. A cell myst-nb skips for another
    reason (e.g. a blank source) still counts: its figure is what the reader must not lose.

    Parameters
    ----------
    nb : dict
        The executed notebook (nbformat JSON).

    Returns
    -------
    int
        The images its page must show.
    """
    count = 0
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code" or _HIDDEN & set(cell.get("metadata", {}).get("tags", [])):
            continue
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            chosen = next((m for m in _HTML_PRIORITY if m in data), None)
            if chosen is None:
                continue
            if chosen.startswith("image/"):
                count += 1
            elif chosen == "text/html":
                html = data[chosen] if isinstance(data[chosen], str) else "".join(data[chosen])
                count += len(re.findall(r"<img\b", html, re.I))
    return count


# A number written in prose: a decimal (0.256, 16.7) or a percentage (45 %).
_NUMBER = re.compile(r"(?<![\w.$\\{/-])(\d+\.\d+|\d+(?:\.\d+)?)(\s?%)?(?![\w}/])")
_NOT_PROSE = re.compile(r"\$\$.*?\$\$|\$[^$\n]*\$|```.*?```|`[^`\n]*`|\{[\w:-]+\}`[^`]*`|\]\([^)]*\)|<[^>]+>", re.S)


def _walk_numbers(value) -> set[float]:
    if isinstance(value, bool):
        return set()
    if isinstance(value, (int, float)):
        return {float(value)}
    if isinstance(value, dict):
        return set().union(*map(_walk_numbers, value.values())) | set().union(*map(_walk_numbers, value.keys()))
    if isinstance(value, (list, tuple)):
        return set().union(*map(_walk_numbers, value)) if value else set()
    return set()


# Percentages prose may type without a source: the conventional levels of intervals and tests.
CONVENTIONAL_PERCENTAGES = frozenset({90.0, 95.0, 99.0})


def known_numbers(root: str | os.PathLike | None = None) -> tuple[set[float], set[float]]:
    """The numbers prose may type: fermap's configuration (the paper's facts, the profiles' settings)
    and the paper's own Tables 3 and 4 (``book/data/authors``).

    Parameters
    ----------
    root : path, optional
        The book's root (default: this checkout).

    Returns
    -------
    decimals : set of float
        Every number of the configuration and of the paper's tables.
    percentages : set of float
        The paper's fractions (its ``paper`` section: the accuracies) times 100, and the conventional
        levels of intervals.
    """
    decimals = _walk_numbers(_config())
    paper_facts = _walk_numbers(_config()["paper"])
    authors = Path(root or project_root()) / section("book")["authors"]
    for table in sorted(authors.glob("*.csv")):
        frame = pd.read_csv(table)
        decimals |= {float(v) for v in frame.select_dtypes("number").to_numpy().ravel()}
    return decimals, {round(100 * n, 6) for n in paper_facts if 0 < n <= 1} | CONVENTIONAL_PERCENTAGES


def typed_numbers(nb: dict, known: tuple[set[float], set[float]]) -> list[str]:
    """Numbers typed in a notebook's prose that are neither known facts nor computed by the run.

    A result of the run reaches prose through a cell's output or a ``{glue}`` reference, never typed:
    a typed copy goes stale when the run changes. Prose may type what :func:`known_numbers` holds (the
    paper's facts and tables, the profiles' settings), whole numbers without ``%`` (counts, chapters)
    and the value of an arithmetic shown beside it (``1/720 ≈ 0.0014``). Maths, code and links are
    not prose.

    Parameters
    ----------
    nb : dict
        The notebook (nbformat JSON).
    known : (set of float, set of float)
        :func:`known_numbers`: the decimals and the percentages prose may type.

    Returns
    -------
    list of str
        Each offending number as typed, with a few words around it.
    """
    found = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        prose = _NOT_PROSE.sub(" ", source)
        for m in _NUMBER.finditer(prose):
            number, percent = m.group(1), m.group(2)
            if "." not in number and not percent:
                continue  # counts, years, chapter numbers
            if prose[:m.start()].rstrip().endswith(("≈", "~")):
                continue  # the value of the arithmetic typed before it
            value, tolerance = float(number), 0.5 * 10.0 ** -len(number.partition(".")[2])
            if any(abs(value - k) <= tolerance + 1e-9 for k in known[1 if percent else 0]):
                continue  # the fact, rounded as typed
            found.append(" ".join(prose[max(0, m.start() - 30):m.end() + 10].split()))
    return found


def find_chromium() -> str | None:
    """A headless-capable Chromium on this machine (Debian's ``chromium``), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _render(chromium: str, url: str, profile_dir: Path, extra: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", *extra, url],
                          capture_output=True, text=True, timeout=120)


def machine_paths(html_dir: str | os.PathLike) -> list[str]:
    """Absolute paths of the machine that built a book, none of which its pages may show.

    Parameters
    ----------
    html_dir : path
        The built HTML (``<root>/_build/html``).

    Returns
    -------
    list of str
        The book's root, this checkout, the Python environment, the home and temporary folders.
    """
    html_dir = Path(html_dir).resolve()
    found = {html_dir.parents[1], project_root(), Path(sys.prefix), Path(sys.base_prefix), Path.home(),
             Path(tempfile.gettempdir()).resolve(), Path.cwd()}
    return sorted({str(p) for p in found if len(p.parts) > 1}, key=len, reverse=True)


def page_problems(name: str, html: str, dom: str, probe: dict, paths: list[str]) -> list[str]:
    """What a reader would see wrong on one page: leaked paths and warnings, cut tables and equations,
    raw TeX, no alt text.

    Parameters
    ----------
    name : str
        The page's name, which every problem starts with.
    html : str
        The page as built (file contents).
    dom : str
        The page as Chromium rendered it.
    probe : dict
        The in-page report (``wide``, ``clipped``, ``tex``, ``outputs``, ``noalt``, ``images``).
    paths : list of str
        Absolute paths of the build machine (:func:`machine_paths`).

    Returns
    -------
    list of str
        One line per problem.
    """
    problems = []
    text = _DATA_URI.sub("", html + dom)  # an image's base64 may spell "/x/..." by chance
    # This machine's own folders, and any absolute path whose top folder exists here (/work/..., /tmp/...)
    found = [p for p in paths if re.search(r"(?<![\w./:%-])" + re.escape(p) + r"(?![\w.-])", text)]
    found += [m.group(0) for m in _ABSOLUTE.finditer(text) if Path(m.group(1)).is_dir()]
    if found:
        problems.append(f"{name}: shows a path of the build machine ({found[0]})")
    if "site-packages" in html:
        problems.append(f"{name}: shows a site-packages path")
    warned = [m.group(0).strip() for text in probe.get("outputs", []) for m in [_WARNING.search(text)] if m]
    if warned:
        problems.append(f"{name}: an output shows a warning ({warned[0]})")
    for table in probe.get("wide", []):
        problems.append(f"{name}: {table} is wider than its column and does not scroll")
    for equation in probe.get("clipped", []):
        problems.append(f"{name}: {equation} is wider than its column and does not scroll")
    if probe.get("tex"):
        problems.append(f"{name}: raw TeX, math not rendered ({probe['tex'][0]!r})")
    if probe.get("noalt"):
        problems.append(f"{name}: {len(probe['noalt'])} image(s) without alt text ({probe['noalt'][0]})")
    return problems


def check_book(html_dir: str | os.PathLike, chapters: list[str] | None = None,
               screenshots: list[str] = ("index", "07_scores")) -> list[str]:
    """Open the built book's pages in headless Chromium as a reader would; return the problems found.

    A problem is: a chapter not rendered; an image missing, empty or not decodable, or without alt
    text; fewer images in a chapter's outputs on the page than in its executed notebook
    (:func:`notebook_images`); an output showing an error, a traceback or a Python warning; an absolute
    path of the build machine; a table or a display equation wider than its column that does not
    scroll; TeX that MathJax did not render; a number typed in a chapter's prose that is neither a
    known fact nor computed by the run (:func:`typed_numbers`).
    Screenshots of the pages named in ``screenshots`` go to ``<build>/screenshots``.

    Parameters
    ----------
    html_dir : path
        The built HTML (``<root>/_build/html``).
    chapters : list of str, optional
        The chapters to read (default: the book's).
    screenshots : list of str
        Pages to photograph.

    Returns
    -------
    list of str
        One line per problem; empty when the book reads well.
    """
    chromium = find_chromium()
    if chromium is None:
        raise FermapError("no Chromium found (Debian: apt-get install chromium)")
    html_dir = Path(html_dir).resolve()
    chapters = chapters or list(section("book")["chapters"])
    executed = section("book")["executed"]
    pages = {"index": html_dir / "index.html", **{c: html_dir / executed / f"{c}.html" for c in chapters}}
    shots = html_dir.parent / "screenshots"
    shots.mkdir(exist_ok=True)
    paths = machine_paths(html_dir)
    known = known_numbers(html_dir.parents[1])

    class Page(HTMLParser):
        def __init__(self):
            super().__init__()
            self.images, self.errors, self.h1, self.probe = [], 0, 0, None
            self._probe_text = None

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            classes = (a.get("class") or "").split()
            if tag == "img" and a.get("src"):
                self.images.append(a["src"])
            if tag == "h1":
                self.h1 += 1
            if "traceback" in classes or ("output" in classes and "error" in classes):
                self.errors += 1
            if a.get("id") == "fermap-probe":
                self._probe_text = []

        def handle_data(self, data):
            if self._probe_text is not None:
                self._probe_text.append(data)

        def handle_endtag(self, tag):
            if tag == "pre" and self._probe_text is not None:
                self.probe = json.loads("".join(self._probe_text))
                self._probe_text = None

    problems = []
    with tempfile.TemporaryDirectory() as profile_dir:
        for name, page in pages.items():
            if not page.is_file():
                problems.append(f"{name}: not rendered ({page} missing)")
                continue
            html = page.read_text(errors="replace")
            redirect = re.search(r'http-equiv="refresh"\s+content="\d+;\s*url=([^"]+)"', html, re.I)
            if redirect and (page.parent / redirect.group(1)).is_file():  # jupyter-book's index.html
                page = (page.parent / redirect.group(1)).resolve()
                html = page.read_text(errors="replace")
            # A copy beside the page (same relative links) that reports its own layout once loaded.
            probe_page = page.with_name(f".fermap-check-{page.name}")
            probe_page.write_text(re.sub(r"</body>", lambda m: _PROBE + m.group(0), html, count=1, flags=re.I)
                                  if re.search(r"</body>", html, re.I) else html + _PROBE)
            try:
                done = _render(chromium, probe_page.as_uri(), Path(profile_dir),
                               ["--dump-dom", WINDOW, "--virtual-time-budget=15000"])
            finally:
                probe_page.unlink(missing_ok=True)
            dom = done.stdout
            if done.returncode or "<body" not in dom:
                problems.append(f"{name}: Chromium could not render it ({done.stderr.strip()[-200:]})")
                continue
            parsed = Page()
            parsed.feed(dom)
            if not parsed.h1:
                problems.append(f"{name}: no title rendered")
            if parsed.errors or "Traceback (most recent call last)" in dom:
                problems.append(f"{name}: an output shows an error or a traceback")
            if parsed.probe is None:
                problems.append(f"{name}: the page did not finish loading in the browser")
            else:
                problems += page_problems(name, html, dom, parsed.probe, paths)
            notebook = html_dir.parents[1] / executed / f"{name}.ipynb"
            if name != "index" and notebook.is_file():
                nb = json.loads(notebook.read_text())
                expected = notebook_images(nb)
                if parsed.probe is not None and parsed.probe.get("images", 0) < expected:
                    problems.append(f"{name}: {parsed.probe.get('images', 0)} of the executed notebook's "
                                    f"{expected} images are on the page")
                problems += [f"{name}: a number typed in prose, not from the run: {t!r}"
                             for t in typed_numbers(nb, known)]
            for src in parsed.images:
                if src.startswith("data:"):
                    payload = src.split(",", 1)[1]
                    blob = base64.b64decode(payload) if ";base64" in src.split(",", 1)[0] else payload.encode()
                    if not blob or (not src.startswith("data:image/svg") and
                                    cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_UNCHANGED) is None):
                        problems.append(f"{name}: an inline image does not decode")
                    continue
                url = urlparse(src)
                if url.scheme in ("http", "https"):
                    continue  # remote badges etc. are not the book's own images
                target = ((page.parent / unquote(url.path)).resolve() if url.scheme != "file"
                          else Path(unquote(url.path)))
                if not target.is_file() or target.stat().st_size == 0:
                    problems.append(f"{name}: image {src} is missing")
                elif target.suffix.lower() != ".svg" and cv2.imread(str(target), cv2.IMREAD_UNCHANGED) is None:
                    problems.append(f"{name}: image {src} does not decode")
            if name in screenshots:
                _render(chromium, page.as_uri(), Path(profile_dir),
                        [f"--screenshot={shots / (re.sub(r'[^A-Za-z0-9_]', '_', name) + '.png')}",
                         WINDOW, "--virtual-time-budget=15000"])
    return problems
