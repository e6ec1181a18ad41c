"""The book: every chapter executes with the smoke profile through papermill, the book builds,
and a headless Chromium finds every chapter rendered and nothing a reader should not see.

The smoke book is executed once per session, in a private copy of the book's source tree
(``smoke_site`` in conftest.py, shared with the exercises' tests); a test that changes anything
works in its own copy of it.
"""
import base64
import json
import os
import re
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import cv2
import matplotlib.pyplot as plt
import nbformat
import numpy as np
import pandas as pd
import pytest

from fermap_utils import book as B
from fermap_utils import chapters as C
from fermap_utils import plots
from fermap_utils import run as R
from fermap_utils import statistics as St
from fermap_utils.config import section
from fermap_utils.layout import RUN_PARTS
from fermap_utils.profiles import load_profile

ROOT = Path(__file__).resolve().parents[1]
EXECUTED = section("book")["executed"]
needs_chromium = pytest.mark.skipif(B.find_chromium() is None,
                                    reason="no Chromium on this machine (.ci/run installs Debian's chromium)")


@pytest.fixture(scope="module")
def smoke_book(smoke_site):
    """The smoke book (conftest's ``smoke_site``, executed once per session), built to HTML."""
    site, first, again = smoke_site
    shutil.copy(ROOT / "README.md", site / "README.md")  # the book carries a copy; the chapters link it
    return site, first, again, B.build_book(root=site)


@pytest.mark.slow
def test_every_chapter_executes_with_the_smoke_profile(smoke_book):
    site, first, again, _ = smoke_book
    chapters = list(section("book")["chapters"])
    assert list(first.chapter) == chapters and (first.status == "executed").all()
    for name in chapters:
        nb = json.loads((site / EXECUTED / f"{name}.ipynb").read_text())
        outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
        assert not [o for o in outputs if o["output_type"] == "error"], name
        assert outputs, f"{name} shows nothing"
        # nothing a reader should not see: no stream on stderr, no widget state, no machine path
        assert not [o for o in outputs if o.get("name") == "stderr"], f"{name} writes to stderr"
        text = json.dumps(outputs)
        assert "application/vnd.jupyter.widget" not in text and "site-packages" not in text, name
        for absolute in (site, ROOT):  # a path relative to notebooks/ may pass through them, never start there
            assert not re.search(r"(?<![\w./])" + re.escape(str(absolute)), text), name
        injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
        assert len(injected) == 1 and "remove-cell" in injected[0]["metadata"]["tags"], name
    # nothing changed: no chapter runs again
    assert (again.status == "unchanged").all()


def _figures(notebook: Path) -> list[str]:
    """The PNG figures a chapter shows, in order."""
    nb = nbformat.read(notebook, as_version=4)
    return [o["data"]["image/png"] for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if "image/png" in o.get("data", {})]


@pytest.mark.slow
def test_another_profile_in_the_same_book_reruns_its_chapters(smoke_book, own_copy, tmp_path):
    """Executed chapters of one profile never pass for another's (the stamps key holds the parameters),
    and another profile's setting shows in them: here LIME's seed, with the run explained again."""
    from fermap_utils.explanations import explain_run
    from fermap_utils.profiles import apply_overrides, record_profile

    mine = own_copy(smoke_book[0], tmp_path / "site")
    chapters = ["06_masks", "09_authors_heatmaps"]
    masks_chapter = mine / EXECUTED / "06_masks.ipynb"
    prof = load_profile("smoke")
    C.run_book(prof, mine / "run", chapters, progress=False, out_dir=mine / EXECUTED)  # this copy's own run folder
    same = C.run_book(prof, mine / "run", chapters, progress=False, out_dir=mine / EXECUTED)
    assert (same.status == "unchanged").all()
    before = _figures(masks_chapter)
    other = {**apply_overrides(prof, {"explain.seed": prof["explain"]["seed"] + 1}), "name": "smoke-other"}
    record_profile(mine / "run", other)
    explain_run(mine / "run", other, progress=False)  # other images, other LIME samples: other heatmaps
    rerun = C.run_book(other, mine / "run", chapters, progress=False, out_dir=mine / EXECUTED)
    assert list(rerun.chapter) == chapters and (rerun.status == "executed").all()
    nb = nbformat.read(masks_chapter, as_version=4)
    injected = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "smoke-other" in injected.source
    after = _figures(masks_chapter)
    # the masks' figures are the same; the run's heatmaps over the masks (the last figure) changed
    assert len(after) == len(before) > 2 and after[:-1] == before[:-1] and after[-1] != before[-1]
    back = C.run_book(prof, mine / "run", chapters, progress=False, out_dir=mine / EXECUTED)
    assert (back.status == "executed").all()  # the other profile's pages were not this one's
    assert _figures(masks_chapter)[-1] == after[-1]  # the figure follows the run's heatmaps, not the name


@pytest.mark.slow
def test_chapter_reruns_only_when_its_inputs_change(smoke_book, own_copy, tmp_path):
    run_dir = own_copy(smoke_book[0], tmp_path / "site", parts=("run",)) / "run"
    before = {p: R.run_fingerprint(run_dir, [p]) for p in RUN_PARTS}
    (run_dir / "heatmaps" / "summary.json").write_text("{}")  # as if the explanations had changed
    after = {p: R.run_fingerprint(run_dir, [p]) for p in RUN_PARTS}
    assert [p for p in before if before[p] != after[p]] == ["explanations"]


@pytest.mark.slow
@needs_chromium
def test_the_built_book_reads_well_in_a_browser(smoke_book, tmp_path):
    site, _, _, html = smoke_book
    shutil.copytree(html.parent, tmp_path / "_build")  # screenshots go beside this copy
    mine = tmp_path / "_build" / html.name
    toc = (site / "_toc.yml").read_text()
    assert all(f"book/chapters/{c}" in toc for c in section("book")["chapters"])
    assert B.check_book(mine) == []
    for shot in ("index", "07_scores"):
        assert (mine.parent / "screenshots" / f"{shot}.png").stat().st_size > 10_000
    page = (mine / EXECUTED / "05_heatmaps.html").read_text()
    assert "<figcaption" in page and "SYNTHETIC" in page  # numbered, captioned, labelled figures


@pytest.mark.slow
def test_the_built_book_teaches_and_launches(smoke_book):
    """What `fermap book --check` adds as a teacher (teaching.check_teaching) finds nothing missing in the
    built book, and each chapter's launch button opens it on Binder from the one repository setting
    of _config.yml; its download button serves the executed notebook."""
    import yaml

    from fermap_utils import teaching

    site, _, _, html = smoke_book
    assert teaching.check_teaching(html) == []
    url = yaml.safe_load((site / "_config.yml").read_text())["repository"]["url"]
    assert url == teaching.PLACEHOLDER_REPOSITORY and B.launch_config(site) is not None
    for name in section("book")["chapters"]:
        page = (html / EXECUTED / f"{name}.html").read_text()
        # no repository configured: no launch button that would open a placeholder
        assert "mybinder.org" not in page and "OWNER/REPOSITORY" not in page, name
        assert f"_sources/{EXECUTED}/{name}.ipynb" in page, name
        assert (html / "_sources" / EXECUTED / f"{name}.ipynb").is_file(), name


@pytest.mark.slow
def test_the_built_book_hands_out_its_source(smoke_book):
    """The Source page links the source tree and every executed chapter as downloads; the archive holds
    the package and the notebooks, and no run, build or environment; README mentions link its copy."""
    import tarfile
    import zipfile

    site, _, _, html = smoke_book
    page = (html / "book" / "source.html").read_text()
    assert B.SOURCE_ARCHIVE in page and B.NOTEBOOKS_ARCHIVE in page and ".ci/setup" in page
    downloads = {p.name: p for p in (html / "_downloads").rglob("*") if p.is_file()}
    with tarfile.open(downloads[B.SOURCE_ARCHIVE]) as tar:
        names = tar.getnames()
    # the test's site is a copy of the book's tree only (no package): the archive holds what it has
    assert "fermap/_config.yml" in names and "fermap/book/_static/fermap.css" in names
    assert not [n for n in names if n.split("/")[1] in {"_build", "run", "runs", ".venv", ".git"}]
    with zipfile.ZipFile(downloads[B.NOTEBOOKS_ARCHIVE]) as zf:
        assert sorted(zf.namelist()) == sorted(f"chapters/{c}.ipynb" for c in section("book")["chapters"])
    for name in section("book")["chapters"]:
        assert f"{name}.ipynb" in downloads, name
    assert (html / "book" / "readme.html").is_file()
    assert "readme.html" in (html / EXECUTED / "02_networks.html").read_text()
    intro = (html / "book" / "intro.html").read_text() if (html / "book" / "intro.html").is_file() else ""
    assert "What is replicated" in intro and "What this run found" in intro
    # the test's site has no CITATION.cff (a copy of the book's tree only): the citation is
    # test_landing_page_findings_come_from_what_the_chapters_glued's to check


# ---------------------------------------------------------------- the browser check, page by page

CLEAN = """<html><body><article style="width: 500px"><h1>{title}</h1>
<div class="cell_output"><pre>Mean accuracy 45.2 %</pre></div>
<div style="overflow-x: auto"><table><tr><td style="min-width: 900px">scrolls</td></tr></table></div>
<p>An image with words: <img src="face.png" alt="A face with its landmarks"></p>
{extra}</article></body></html>"""


def _check(tmp_path: Path, extra: str = "", title: str = "Data") -> list[str]:
    """check_book on a two-page book: a clean index and one chapter with ``extra`` in its column."""
    html = tmp_path / "_build" / "html"
    pages = html / EXECUTED
    pages.mkdir(parents=True)
    for folder in (html, pages):
        cv2.imwrite(str(folder / "face.png"), np.full((8, 8), 128, np.uint8))
    (html / "index.html").write_text(CLEAN.format(title="Book", extra=""))
    (pages / "01_data.html").write_text(CLEAN.format(title=title, extra=extra))
    return B.check_book(html, chapters=["01_data"], screenshots=())


@pytest.mark.slow
@needs_chromium
def test_the_browser_check_passes_a_clean_page(tmp_path):
    assert _check(tmp_path) == []


@pytest.mark.slow
@needs_chromium
def test_the_browser_check_finds_a_path_of_the_build_machine(tmp_path):
    leaked = f'<div class="cell_output"><pre>run_dir = "{ROOT / "runs" / "smoke"}"</pre></div>'
    problems = _check(tmp_path, leaked)
    assert len(problems) == 1 and problems[0].startswith("01_data: shows a path of the build machine")


@pytest.mark.slow
@needs_chromium
def test_the_browser_check_finds_a_python_warning(tmp_path):
    warned = ('<div class="cell_output"><pre class="stderr">keras/src/layers/layer.py:12: UserWarning: '
              'Do not pass an input_shape</pre></div>')
    problems = _check(tmp_path, warned)
    assert len(problems) == 1 and "an output shows a warning (UserWarning:" in problems[0]


@pytest.mark.slow
@needs_chromium
def test_the_browser_check_finds_a_table_wider_than_its_column(tmp_path):
    wide = '<table><tr><td style="min-width: 900px">Anger</td><td>Average</td></tr></table>'
    problems = _check(tmp_path, wide)
    assert len(problems) == 1 and "table 2 (" in problems[0] and "wider than its column" in problems[0]


@pytest.mark.slow
@needs_chromium
def test_the_browser_check_finds_raw_tex(tmp_path):
    problems = _check(tmp_path, r'<p>The global heatmap <span class="math">\(H_c\)</span> of each class.</p>')
    assert len(problems) == 1 and "raw TeX" in problems[0] and "H_c" in problems[0]
    problems = _check(tmp_path / "display", "<p>$$H_c = \\frac{1}{N}$$</p>")
    assert len(problems) == 1 and "raw TeX" in problems[0]


@pytest.mark.slow
@needs_chromium
def test_the_browser_check_finds_a_figure_without_alt_text(tmp_path):
    # Sphinx writes the file name as alt text when none is given: that is no description either.
    problems = _check(tmp_path, '<img src="face.png"><img src="./face.png" alt="face.png">')
    assert len(problems) == 1 and "2 image(s) without alt text" in problems[0]


@pytest.mark.slow
@needs_chromium
def test_the_browser_check_finds_what_a_reader_would(tmp_path):
    html = tmp_path / "_build" / "html"
    pages = html / EXECUTED
    pages.mkdir(parents=True)
    (html / "index.html").write_text("<html><body><h1>Book</h1></body></html>")
    (pages / "01_data.html").write_text('<html><body><h1>Data</h1><img src="missing.png" alt="a face"></body></html>')
    (pages / "02_networks.html").write_text(
        '<html><body><h1>Nets</h1><div class="output traceback">ValueError</div></body></html>')
    problems = B.check_book(html, chapters=["01_data", "02_networks", "03_lime"], screenshots=())
    text = "\n".join(problems)
    assert "01_data: image missing.png is missing" in text
    assert "02_networks: an output shows an error" in text
    assert "03_lime: not rendered" in text
    assert "index" not in text


# A chapter as `fermap run` leaves it: one figure, and prose that types a number the run computed.
PLANTED_NOTEBOOK = {
    "cells": [{"cell_type": "markdown", "metadata": {}, "source": "The networks reach 45.2 % on average."},
              {"cell_type": "code", "metadata": {"tags": ["remove-input"]}, "source": "", "execution_count": 1,
               "outputs": [{"output_type": "display_data", "metadata": {},
                            "data": {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}}]}],
    "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
# A display equation as MathJax renders it, wider than the 500 px column, in a container that cuts it.
WIDE_EQUATION = ('<div class="math"><mjx-container jax="CHTML" display="true" style="display: block; '
                 'overflow: hidden"><mjx-math style="display: inline-block; width: 900px">H</mjx-math>'
                 '</mjx-container></div>')


@pytest.mark.slow
@needs_chromium
def test_the_browser_check_fails_a_dropped_figure_a_clipped_equation_and_a_typed_number(tmp_path):
    """The planted chapter: its executed notebook shows a figure the page lacks (a blank-source cell, as
    myst-nb drops), the page cuts a display equation, and the prose types a number instead of the run's."""
    (tmp_path / EXECUTED).mkdir(parents=True)
    (tmp_path / EXECUTED / "01_data.ipynb").write_text(json.dumps(PLANTED_NOTEBOOK))
    problems = _check(tmp_path, WIDE_EQUATION)
    assert len(problems) == 3, problems
    assert "01_data: 0 of the executed notebook's 1 images are on the page" in problems
    assert any("display equation 1 (900 px in a 500 px column) is wider than its column" in p for p in problems)
    assert any("a number typed in prose, not from the run" in p and "45.2 %" in p for p in problems)


@pytest.mark.slow
@needs_chromium
def test_the_books_stylesheet_scrolls_a_wide_equation(tmp_path):
    """With the book's own CSS (book/_static/fermap.css) the same MathJax equation scrolls in its column."""
    css = os.path.relpath(ROOT / "book" / "_static" / "fermap.css", tmp_path / "_build" / "html" / EXECUTED)
    equation = f'<link rel="stylesheet" href="{css}">' + WIDE_EQUATION.replace(' overflow: hidden', '')
    assert _check(tmp_path, equation) == []
    assert "is wider than its column" in " ".join(_check(tmp_path / "bare", WIDE_EQUATION))


def test_landing_page_findings_come_from_what_the_chapters_glued(tmp_path):
    """write_pages: the findings are the glued text of the executed chapters, the gallery their figures,
    the scope config.yaml's default profile, the citation CITATION.cff; nothing typed."""
    def glue(name, text):
        return {"output_type": "display_data", "metadata": {"scrapbook": {"name": name, "mime_prefix": "P/"}},
                "data": {"P/text/plain": text}}

    figure = {"output_type": "display_data", "metadata": {},
              "data": {"image/png": base64.b64encode(cv2.imencode(".png", np.zeros((4, 4), np.uint8))[1]).decode()}}
    chapters = {"09_authors_heatmaps": [glue("cells_equal", repr("364 of 364")), glue("ratio", repr("1.000"))],
                "10_discussion": [glue("gt_outcome", "Positive control: 3 of 4 explainers."),
                                  glue("specific", "own mask best in 1 of 6")],
                "05_heatmaps": [figure]}
    (tmp_path / EXECUTED).mkdir(parents=True)
    for name, outputs in chapters.items():
        nb = {"cells": [{"cell_type": "code", "source": "x", "outputs": outputs,
                         "metadata": {"mystnb": {"figure": {"caption": "c"}}}}], "metadata": {}, "nbformat": 4,
              "nbformat_minor": 5}
        (tmp_path / EXECUTED / f"{name}.ipynb").write_text(json.dumps(nb))
    shutil.copy(ROOT / "CITATION.cff", tmp_path / "CITATION.cff")
    (tmp_path / "README.md").write_text("# fermap\n\nHello.\n")
    pages = B.write_pages(tmp_path)
    findings = pages["findings"].read_text()
    assert "364 of 364 cells equal" in findings and "own mask best in 1 of 6" in findings
    assert "Positive control: 3 of 4 explainers." in findings
    assert "SongNet, MobileNetV3" in findings and "on 1 of the paper's 5 folds" in findings  # config.yaml's default
    assert "downloads/gallery/05_heatmaps.png" in findings and "## How to cite" in findings
    assert (tmp_path / B.DOWNLOADS / "gallery" / "05_heatmaps.png").is_file()
    assert "Hello." in pages["readme"].read_text()
    assert B.glued(tmp_path / EXECUTED / "09_authors_heatmaps.ipynb")["ratio"] == "1.000"  # as formatted
    assert all(f"{c}.ipynb" in pages["source"].read_text() for c in section("book")["chapters"])


def test_the_books_readme_finds_what_the_readme_links(tmp_path):
    """The README links from the project's root, its copy from book/: every relative target of the
    real README (its expression panels among them) resolves from the copy to the same file."""
    shutil.copy(ROOT / "CITATION.cff", tmp_path / "CITATION.cff")
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    page = B.write_pages(tmp_path)["readme"]
    assert page.parent == tmp_path / "book"
    link = re.compile(r"\]\(([^)\s]+)")
    theirs = [t for t in link.findall((ROOT / "README.md").read_text()) if "://" not in t and not t.startswith("#")]
    copied = page.read_text().split("\n\n", 2)[2]  # after the page's own title and its link to the Source page
    ours = [t for t in link.findall(copied) if "://" not in t and not t.startswith("#")]
    assert "book/_static/expression_panel.png" in theirs and "_static/expression_panel.png" in ours
    assert len(ours) == len(theirs) >= 2
    assert all((ROOT / t).is_file() and (ROOT / "book" / o).resolve() == (ROOT / t).resolve()
               for o, t in zip(ours, theirs))
    moved = B.readme_links_from("book", '[L](LICENSE) [u](https://x.org/a) [s](#top) ![f](book/_static/a.png "t")')
    assert moved == '[L](../LICENSE) [u](https://x.org/a) [s](#top) ![f](_static/a.png "t")'


def test_the_source_archive_holds_the_checkout_and_nothing_a_run_writes():
    files = {str(p) for p in B.source_files(ROOT)}
    assert {"fermap_utils/book.py", "notebooks/05_heatmaps.ipynb", "pyproject.toml", "CITATION.cff"} <= files
    assert not [f for f in files if f.split("/")[0] in {"_build", "runs", ".venv", ".git"}
                or f.startswith(("book/chapters/", "book/downloads/", "book/_static/mathjax/"))]


def test_notebook_images_and_typed_numbers():
    nb = json.loads(json.dumps(PLANTED_NOTEBOOK))
    assert B.notebook_images(nb) == 1
    nb["cells"][1]["metadata"]["tags"] = ["remove-output"]
    html = {"output_type": "display_data", "metadata": {}, "data": {"text/html": '<p><img src="a.png"></p>'}}
    nb["cells"].append({"cell_type": "code", "metadata": {}, "source": "x", "outputs": [html]})
    assert B.notebook_images(nb) == 1  # the removed output does not count; the HTML's image does
    known = ({0.25, 0.3842}, {80.0, 95.0})
    prose = ("Kernel width 0.25, the paper's IoU 0.384, 1/720 ≈ 0.0014, a 95 % interval, 12 networks, "
             "the paper's 80 %, `-p explain.kernel_width 0.1`, $\\sigma = 0.5$, {glue:text}`acc`. "
             "But this run measured 0.256 and 45 %.")
    typed = B.typed_numbers({"cells": [{"cell_type": "markdown", "source": prose}]}, known)
    assert len(typed) == 2 and "0.256" in typed[0] and "45 %" in typed[1]


@pytest.mark.slow
@needs_chromium
def test_mathjax_renders_an_equation_offline(tmp_path):
    """The vendored MathJax (no network) turns TeX into rendered math in Chromium."""
    if not (B.MATHJAX_NPM / "tex-mml-chtml.js").is_file():
        pytest.skip(f"MathJax not installed at {B.MATHJAX_NPM} (bash .ci/setup installs it)")
    script = B.vendor_mathjax(tmp_path)  # tmp_path/book/_static/mathjax, as fermap book does
    pages = tmp_path / "_build" / "html" / EXECUTED
    math = (f'<script defer src="{os.path.relpath(script, pages)}"></script>'
            r'<p>The global heatmap <span class="math notranslate nohighlight">\(H_c\)</span>.</p>')
    assert _check(tmp_path, math) == []
    done = B._render(B.find_chromium(), (pages / "01_data.html").as_uri(), tmp_path / "profile",
                     ["--dump-dom", B.WINDOW, "--virtual-time-budget=15000"])
    assert "<mjx-container" in done.stdout and r"\(H_c\)" not in done.stdout


# ---------------------------------------------------------------- what the chapters call

def test_chapters_get_paths_relative_to_their_folder(tmp_path):
    notebooks = ROOT / "notebooks"
    params = C.relative_paths(C.chapter_parameters(load_profile("smoke"), ROOT / "runs" / "smoke"), notebooks)
    assert params["run_dir"] == "../runs/smoke" and params["profile"] == "smoke" and params["live_widgets"] is False
    assert not Path(params["reference"]).is_absolute()
    far = C.relative_paths({"run_dir": str(tmp_path / "run"), "n": 3}, notebooks)
    assert not Path(far["run_dir"]).is_absolute() and far["n"] == 3
    assert (notebooks / far["run_dir"]).resolve() == (tmp_path / "run").resolve()


def test_finish_chapter_hides_parameters_and_captions_figures():
    def image(alt, caption):
        return nbformat.v4.new_output("display_data", data={"image/png": "AAAA", "text/plain": "<Figure>"},
                                      metadata={"image/png": {"alt": alt, "caption": caption}})

    def table(text):
        return nbformat.v4.new_output("display_data", data={"text/html": text})

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("run_dir = 'x'", metadata={"tags": ["injected-parameters"]})
    alone = nbformat.v4.new_code_cell("fig = plots.heatmap_grid(...)")
    alone.outputs = [image("Heatmaps. Panels: Anger", "Heatmaps (SYNTHETIC)")]
    mixed = nbformat.v4.new_code_cell("display(t); fig = ...; display(u); fig2 = ...")
    mixed.outputs = [table("<table>t</table>"), image("A", "first"), table("<table>u</table>"), image("B", "second")]
    own = nbformat.v4.new_code_cell("fig", metadata={"mystnb": {"figure": {"caption": "mine"}}})
    own.outputs = [image("x", "y")]
    plain = nbformat.v4.new_code_cell("1 + 1")
    nb.cells = [params, alone, mixed, own, plain]
    C.finish_chapter(nb, "05_heatmaps")
    assert params.metadata.tags == ["injected-parameters", "remove-cell"]
    assert nb.cells[1] is alone and alone.metadata.mystnb == {
        "image": {"alt": "Heatmaps. Panels: Anger"},
        "figure": {"caption": "Heatmaps (SYNTHETIC)", "name": "05_heatmaps-fig-1"}}
    # a figure never shares a cell (and so its caption) with a table; the order of outputs is kept
    assert nb.cells[2] is mixed and [o.data.get("text/html") for o in mixed.outputs] == ["<table>t</table>"]
    split = nb.cells[3:6]  # no empty cell is left behind the last figure
    # never a blank source: myst-nb drops such a cell from the page, outputs and all
    assert [c.source for c in split] == [C.OUTPUTS_ONLY_SOURCE] * 3 and C.OUTPUTS_ONLY_SOURCE.strip()
    assert [c.metadata.tags for c in split] == [["remove-input", "full-width"], ["remove-input"],
                                                ["remove-input", "full-width"]]
    assert alone.metadata.tags == ["full-width"]  # figures span the page's width
    assert [c.metadata.get("mystnb", {}).get("figure", {}).get("name") for c in split] == [
        "05_heatmaps-fig-2", None, "05_heatmaps-fig-3"]
    assert split[0].metadata.mystnb["image"] == {"alt": "A"}
    assert split[1].outputs[0].data["text/html"] == "<table>u</table>"
    assert nb.cells[6] is own and own.metadata.mystnb == {"figure": {"caption": "mine"}}  # its own caption is kept
    assert nb.cells[7] is plain and "mystnb" not in plain.metadata and len(nb.cells) == 8


def test_about_this_run_gathers_timing_and_job_logs_in_one_collapsed_block():
    nb = nbformat.v4.new_notebook()
    overview = nbformat.v4.new_markdown_cell("## Overview\n\n**Time.** About 5 minutes to read. It executed in 16 s.")
    cell = nbformat.v4.new_code_cell("train_run(...)")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout",
                                           text="train-SongNet-fold1: done in 11.8 s on vm:3301\nAccuracy table\n"),
                    nbformat.v4.new_output("stream", name="stdout",
                                           text="cam-FER2013-fold1-all: done in 1.0 s on vm:1\n")]
    prose = nbformat.v4.new_code_cell('display(Markdown(f"{n} networks"))')
    prose.outputs = [nbformat.v4.new_output("display_data", data={"text/markdown": "4 networks", "text/plain": "x"})]
    nb.cells = [overview, cell, prose]
    C.finish_chapter(nb, "02_networks", about={"Profile": "`smoke`"})
    assert prose.metadata.tags == ["hide-input"] and "tags" not in cell.metadata  # code writing only prose: folded
    assert overview.source.endswith("**Time.** About 5 minutes to read. How long it runs: *About this run*, "
                                    "at the end of the chapter.")
    assert [o.text for o in cell.outputs] == ["Accuracy table\n"]  # the logs left the outputs
    block = nb.cells[-1]
    assert block.cell_type == "markdown"
    assert block.source.startswith("::::{admonition} About this run\n:class: dropdown")
    assert "It executed in 16 s." in block.source and "**Profile:** `smoke`" in block.source
    assert "train-SongNet-fold1: 11.8 s" in block.source and "cam-FER2013-fold1-all: 1.0 s" in block.source
    assert "vm:" not in block.source and len(nb.cells) == 4


def test_ground_truth_outcome_calls_a_best_only_where_its_test_does():
    """The verdict of chapters 12 and 13: chance and every pair of explainers tested over the
    (network, expression) cells, Holm-corrected; the fixed FER2013 network reported apart."""
    rng = np.random.default_rng(0)
    cells = [(n, e) for n in ("A", "B", "FER2013") for e in "abcdef"]

    def grades(auc):
        return pd.DataFrame([{"method": m, "network": n, "expression": e, "truth": "planted",
                              "roc_auc": 0.5 if n == "FER2013" else v}
                             for m, f in auc.items() for (n, e) in cells for v in [f()]])

    tied = grades({"lime": lambda: 0.8 + rng.normal(0, 0.02), "cam": lambda: 0.8 + rng.normal(0, 0.02),
                   "noise": lambda: 0.5 + rng.normal(0, 0.02)})
    out = C.ground_truth_outcome("run", ["lime", "cam", "noise"], {}, grades=tied)
    said = out.sentences
    assert said[0].startswith("Positive control") and "2 of 3 explainers" in said[0] and "2 networks" in said[0]
    assert "Not shown to beat chance: noise" in said[1]
    assert said[2].startswith("No explainer is shown to be the best") and ("lime (" in said[2] or "cam (" in said[2])
    assert said[3].startswith("Differences shown") and "above noise" in said[3]
    assert set(out.explainers.n) == {12} and len(out.pairs) == 3  # FER2013's cells are not in the comparison
    assert said[-1].startswith("Reported apart") and list(out.transfer.roc_auc) == [0.5] * 3
    assert np.allclose(out.pairs.p_holm, St.holm(out.pairs.p_value.to_numpy()))
    clear = grades({"lime": lambda: 0.9 + rng.normal(0, 0.01), "cam": lambda: 0.7 + rng.normal(0, 0.01)})
    out = C.ground_truth_outcome("run", ["lime", "cam"], {}, grades=clear)
    assert out.sentences[1].startswith("lime is the best explainer here: above every other with a Holm-corrected")
    assert list(out.explainers.index) == ["lime", "cam"] and out.pairs.p_holm.iloc[0] < 0.05


def test_show_table_rounds_puts_average_last_and_hides_a_default_index():
    table = pd.DataFrame({"Average": [0.123456, 0.5], "Anger": [1 / 3, 0.1], "images": [3, 4]})
    html = plots.show_table(table, decimals=2, caption="IoU (SYNTHETIC)").to_html()
    headers = [h for h in ("Anger", "images", "Average") if h in html]
    assert [html.index(h) for h in headers] == sorted(html.index(h) for h in headers) and len(headers) == 3
    assert ">0.33<" in html and ">0.12<" in html and "0.333" not in html and ">3<" in html
    assert "row_heading" not in html and "IoU (SYNTHETIC)" in html
    rows = pd.DataFrame({"iou": [0.2, 0.3, 0.25]}, index=["Average", "WeiNet", "SilNet"])
    shown = plots.show_table(rows).data
    assert list(shown.index) == ["WeiNet", "SilNet", "Average"] and list(table.columns)[0] == "Average"
    # the paper's Tables 3-4 (two levels of columns): two header rows and the class the book's CSS
    # scrolls in its own box with sticky headers; a flat table has neither
    two = pd.DataFrame([[0.1, 0.2, 0.3, 0.4]], index=["A"], columns=pd.MultiIndex.from_product(
        [["Average", "Anger"], ["IoU", "F1"]]))
    html = plots.show_table(two).to_html()
    assert 'class="fermap-two-level"' in html and html.count("<tr>", 0, html.index("</thead>")) == 2
    assert html.index(">Anger<") < html.index(">Average<")
    assert "fermap-two-level" not in plots.show_table(table).to_html()


def test_figures_describe_themselves_and_heatmaps_carry_a_colour_bar():
    hm = (np.arange(400).reshape(20, 20) % 256).astype(np.uint8)
    masks = {"Anger": hm > 100, "Fear": hm > 50}
    fig = plots.heatmap_grid({("MobileNetV3", "Anger"): hm, ("MobileNetV3", "Fear"): hm}, masks,
                             title="H(n,c) (SYNTHETIC)", row_labels={"MobileNetV3": "MobileNetV3 (from scratch)"})
    caption, alt = plots.describe_figure(fig)
    assert caption == "H(n,c) (SYNTHETIC)" and alt == caption + ". Panels: Anger, Fear, MobileNetV3 (from scratch)"
    assert sum(ax.get_label() == "<colorbar>" for ax in fig.axes) == 1
    plt.close(fig)


def test_heatmaps_on_the_standard_face_show_the_face_and_read_0_to_1():
    """A stored 8-bit heatmap is drawn as Eq. 1 defines it, in [0, 1], over the faint standard face
    (jaw, brows, nose, eyes, lips: 9 lines); a map of another size gets no face."""
    hm = np.linspace(0, 255, 275 * 224).reshape(275, 224).astype(np.uint8)
    fig = plots.heatmap_grid({("A", "Anger"): hm}, title="t")
    ax = fig.axes[0]
    assert ax.images[0].get_clim() == (0.0, 1.0) and ax.images[0].get_array().max() <= 1.0
    assert len(ax.lines) == 9 and ax.get_xlim() == (-0.5, 223.5)
    plt.close(fig)
    fig = plots.heatmap_grid({("A", "Anger"): np.zeros((20, 20), np.uint8)}, title="t")
    assert not fig.axes[0].lines
    plt.close(fig)


def test_network_labels_mark_networks_trained_from_scratch():
    results = pd.DataFrame({
        "network": ["MobileNetV3", "EfficientNetLite0", "WeiNet", "FER2013", "EfficientNetLite0Scratch"],
        "pretrained": [False, True, False, False, False],
        "weights": ["none: ImageNet weights unavailable offline", "ImageNet (ported)",
                    "none (from scratch, as in the paper)", "FER2013 (fixed)", "none (from scratch)"]})
    assert plots.network_labels(results) == {
        "MobileNetV3": "MobileNetV3 (from scratch)", "EfficientNetLite0": "EfficientNetLite0", "WeiNet": "WeiNet",
        "FER2013": "FER2013", "EfficientNetLite0Scratch": "EfficientNetLite0Scratch"}


LEAKS = """
import warnings
from fermap_utils import chapters
chapters.quiet_libraries(book={book})
import tqdm.auto
warnings.warn("a library's UserWarning")
import keras
from keras.src.utils import io_utils
io_utils.print_msg("Downloading data from https://storage.googleapis.com/weights.h5")
import tensorflow as tf
tf.get_logger().warning("5 out of the last 5 calls triggered tf.function retracing")
list(tqdm.auto.tqdm(range(3), desc="images explained"))
print("END")
"""


@pytest.mark.slow
@pytest.mark.parametrize("in_book", [True, False])
def test_quiet_libraries_keeps_library_chatter_out_of_the_book(in_book):
    """In the book no warning, Keras download note, TensorFlow log or progress bar reaches the output;
    live (JupyterLab) they all still show."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", LEAKS.format(book=in_book)], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    said = done.stdout + done.stderr
    leaks = ["UserWarning", "Downloading data from", "retracing", "images explained"]
    if in_book:
        assert done.stdout == "END\n" and not [s for s in leaks if s in said], said[-2000:]
    else:
        assert all(s in said for s in leaks), said[-2000:]



def _image_rows(rng, methods: dict[str, float], n: int = 40, network: str = "SongNet") -> list[dict]:
    rows = []
    for k in range(n):
        base = rng.normal(0.6, 0.05)  # the image's own difficulty, shared by the explainers (paired units)
        for m, shift in methods.items():
            for truth in ("planted", "discriminative"):
                rows.append({"method": m, "network": network, "fold": 1, "expression": "Fear", "id": str(k),
                             "correct": k % 10 != 0, "truth": truth, "roc_auc": base + shift + rng.normal(0, 0.01),
                             "iou": 0.3})
    return rows


def test_same_image_outcome_names_a_best_only_when_every_pair_is_shown():
    rng = np.random.default_rng(0)
    clear = pd.DataFrame(_image_rows(rng, {"lime": 0.1, "gradcam": 0.0, "cam": -0.05})
                         + _image_rows(rng, {"lime": 0.0, "gradcam": 0.2}, network="FER2013"))
    out = C.same_image_outcome(clear)
    assert out.excluded == 4 and out.scores.loc[("lime", "planted"), "n"] == 36
    assert set(out.transfer.index.get_level_values("method")) == {"lime", "gradcam"}  # FER2013 apart
    assert out.sentences[0].startswith("Against the planted truth") and "lime is the best" in out.sentences[0]
    assert not [x for x in out.sentences if "one value everywhere" in x]
    flat = clear.assign(constant=(clear.method == "gradcam") & clear.id.isin(["1", "2"]))
    said = [x for x in C.same_image_outcome(flat).sentences if "one value everywhere" in x]
    assert len(said) == 1 and "gradcam 2 of 36" in said[0]  # counted on the correct images, once per image
    tie = pd.DataFrame(_image_rows(rng, {"lime": 0.0, "gradcam": 0.0}))
    out = C.same_image_outcome(tie)
    assert "no explainer is shown to be the best" in out.sentences[0]
    assert out.pairs["planted"].p_holm.iloc[0] > 0.05
