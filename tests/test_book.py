"""The book: every chapter executes with the smoke profile through papermill, the book builds,
and a headless Chromium finds every chapter rendered, every image present and no error shown."""
import json
import shutil
from pathlib import Path

import pytest

from fermap_utils import run as R
from fermap_utils.config import section

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke_book(tmp_path_factory):
    """The smoke book, executed and built in a private copy of the book's source tree."""
    site = tmp_path_factory.mktemp("site")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, site / name)
    shutil.copytree(ROOT / "book", site / "book", ignore=shutil.ignore_patterns("chapters", "_build"))
    prof = R.load_profile("smoke")
    first = R.run_book(prof, site / "run", progress=False, out_dir=site / section("book")["executed"])
    again = R.run_book(prof, site / "run", progress=False, out_dir=site / section("book")["executed"])
    html = R.build_book(root=site)
    return site, first, again, html


def test_every_chapter_executes_with_the_smoke_profile(smoke_book):
    site, first, again, _ = smoke_book
    chapters = list(section("book")["chapters"])
    assert list(first.chapter) == chapters and (first.status == "executed").all()
    for name in chapters:
        nb = json.loads((site / section("book")["executed"] / f"{name}.ipynb").read_text())
        outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
        assert not [o for o in outputs if o["output_type"] == "error"], name
        assert outputs, f"{name} shows nothing"
    # nothing changed: no chapter runs again
    assert (again.status == "unchanged").all()


def test_another_profile_in_the_same_book_reruns_every_chapter(smoke_book, tmp_path):
    """Executed chapters of one profile never pass for another's (the stamps key holds the parameters)."""
    site, *_ = smoke_book
    stamps = json.loads((site / section("book")["executed"] / ".fermap_stamps.json").read_text())
    prof = R.load_profile("smoke")
    other = R.chapter_parameters({**prof, "name": "other"}, site / "run")
    assert other != R.chapter_parameters(prof, site / "run") and len(stamps) == len(section("book")["chapters"])


def test_chapter_reruns_only_when_its_inputs_change(smoke_book, tmp_path):
    site, *_ = smoke_book
    run_dir = site / "run"
    before = {p: R.run_fingerprint(run_dir, [p]) for p in R.RUN_PARTS}
    (run_dir / "heatmaps" / "summary.json").write_text("{}")  # as if the explanations had changed
    after = {p: R.run_fingerprint(run_dir, [p]) for p in R.RUN_PARTS}
    assert [p for p in before if before[p] != after[p]] == ["explanations"]


def test_the_built_book_reads_well_in_a_browser(smoke_book):
    if R.find_chromium() is None:
        pytest.skip("no Chromium on this machine (.ci/run installs Debian's chromium)")
    site, _, _, html = smoke_book
    toc = (site / "_toc.yml").read_text()
    assert all(f"book/chapters/{c}" in toc for c in section("book")["chapters"])
    problems = R.check_book(html)
    assert problems == []
    for shot in ("index", "07_scores"):
        assert (html.parent / "screenshots" / f"{shot}.png").stat().st_size > 10_000


def test_the_browser_check_finds_what_a_reader_would(tmp_path):
    if R.find_chromium() is None:
        pytest.skip("no Chromium on this machine (.ci/run installs Debian's chromium)")
    html = tmp_path / "_build" / "html"
    pages = html / section("book")["executed"]
    pages.mkdir(parents=True)
    (html / "index.html").write_text("<html><body><h1>Book</h1></body></html>")
    (pages / "01_data.html").write_text('<html><body><h1>Data</h1><img src="missing.png"></body></html>')
    (pages / "02_networks.html").write_text(
        '<html><body><h1>Nets</h1><div class="output traceback">ValueError</div></body></html>')
    problems = R.check_book(html, chapters=["01_data", "02_networks", "03_lime"], screenshots=())
    text = "\n".join(problems)
    assert "01_data: image missing.png is missing" in text
    assert "02_networks: an output shows an error" in text
    assert "03_lime: not rendered" in text
    assert "index" not in text
