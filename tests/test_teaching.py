"""The book as a course text: every chapter's overview, exercises and summary; the exercises'
commands; run archives; a chapter opened alone from an archive."""
import json
import os
import shutil
import tarfile
from pathlib import Path

import nbformat
import pytest

from fermap_utils import archive, teaching
from fermap_utils.cli import main
from fermap_utils.config import section
from fermap_utils.errors import FermapError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_chapter_has_overview_exercises_and_summary(path):
    assert teaching.notebook_problems(path) == []


# The chapters that build a stage of the method (not chapter 9, the authors' data re-scored with
# chapters 6-7's code; not the discussion; 13_ground_truth is the lead's to add).
METHOD_CHAPTERS = ["01_data", "02_networks", "03_lime", "04_standardisation", "05_heatmaps", "06_masks",
                   "07_scores", "08_similarity", "11_statistics", "12_methods"]


@pytest.mark.parametrize("name", METHOD_CHAPTERS)
def test_every_method_chapter_ends_with_software_and_alternatives(name):
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    headings = [line.strip() for c in nb.cells if c.cell_type == "markdown"
                for line in c.source.splitlines() if line.startswith("## ")]
    assert "## Software and alternatives" in headings, name
    # the chapter's last section of text, before its exercises
    assert headings.index("## Exercises") == headings.index("## Software and alternatives") + 1


def test_the_notebook_check_finds_what_is_missing(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# T\n\n## Summary\n\nx"),
                nbformat.v4.new_markdown_cell(":::{exercise} A\n:label: ex-99-figure\n:class: kind-figure\n\nQ\n:::\n\n"
                                              ":::{solution} ex-99-figure\n\nA\n:::\n")]
    path = tmp_path / "99_x.ipynb"
    nbformat.write(nb, path)
    problems = "\n".join(teaching.notebook_problems(path))
    for expected in ("no 'overview' section", "no 'what's next' section", "1 exercise(s)",
                     "not hidden behind a toggle", "no parameter exercise", "no code exercise"):
        assert expected in problems
    assert "the overview is not the first section" not in problems  # there is none to misplace


def _page(exercises: int, dropdown: bool = True, sections=("Overview", "Exercises", "Summary", "What’s next"),
          buttons=("launch", "download")) -> str:
    kinds = ["kind-figure", "kind-parameter", "kind-code"]
    body = "<h2>Contents</h2>"  # the theme's table of contents: not a section
    body += "".join(f'<div class="dropdown dropdown-{b}-buttons"></div>' for b in buttons)
    body += "".join(f"<section><h2>{s}<a class='headerlink'>#</a></h2></section>" for s in sections)
    for k in range(exercises):
        body += f'<div class="exercise admonition {kinds[k % 3]}" id="e{k}"><p>Q</p></div>'
        body += f'<div class="solution {"dropdown " if dropdown else ""}admonition" id="s{k}"><p>A</p></div>'
    return f"<html><body><h1>C</h1>{body}</body></html>"


def test_the_html_check_reads_the_rendered_chapter(tmp_path):
    assert teaching.teaching_problems(_page(3), "c") == []
    assert teaching.teaching_problems(_page(2), "c") == ["c: 2 exercise(s), at least 3 expected", "c: no code exercise"]
    assert teaching.teaching_problems(_page(3, dropdown=False), "c") == [
        "c: a solution is shown, not hidden behind a toggle"]
    assert "c: no 'summary' section" in teaching.teaching_problems(_page(3, sections=("Overview", "Exercises")), "c")
    assert teaching.teaching_problems(_page(3, buttons=("download",)), "c") == ["c: no launch buttons"]
    # no repository configured: no launch buttons expected; a numbered book's "2.1. Overview" is the overview
    assert teaching.teaching_problems(_page(3, buttons=("download",)), "c", launch=False) == []
    numbered = _page(3).replace("<h2>Overview", "<h2>2.1. Overview")
    assert "<h2>2.1. Overview" in numbered and teaching.teaching_problems(numbered, "c") == []
    assert "c: the overview is not the first section" in teaching.teaching_problems(
        _page(3, sections=("Exercises", "Overview", "Summary", "What's next")), "c")
    # a built book: chapters as pages, the glossary and the lab plan beside them
    html = tmp_path / "html"
    (html / section("book")["executed"]).mkdir(parents=True)
    (html / section("book")["executed"] / "05_heatmaps.html").write_text(_page(1))
    problems = teaching.check_teaching(html, ["05_heatmaps", "07_scores"])
    assert "05_heatmaps: 1 exercise(s), at least 3 expected" in problems
    assert not [p for p in problems if p.startswith("07_scores")]  # not rendered: check_book reports it
    assert "book/glossary: not rendered" in problems and "book/teaching: not rendered" in problems


def _all_commands():
    return [(p.stem, c) for p in NOTEBOOKS for c in teaching.exercise_commands(p)]


def test_every_parameter_exercise_has_a_valid_command():
    """Every chapter's parameter exercise names a command; each parses, each -p key exists in
    a profile and changes its value, each chapter exists. (They run in tests/test_exercises.py.)"""
    commands = _all_commands()
    assert {name for name, _ in commands} == {p.stem for p in NOTEBOOKS}
    for name, argv in commands:
        assert teaching.command_problems(argv) == [], name
        if argv[0] == "run":
            assert argv[argv.index("--profile") + 1] == "smoke", f"{name}: exercises are written for the smoke profile"


def test_the_command_check_catches_typos():
    assert "no profile has the key 'explain.num_sample'" in teaching.command_problems(
        ["run", "--profile", "smoke", "-p", "explain.num_sample", "50"])[0]
    assert "no profile has the key 'input_sise'" in teaching.command_problems(
        ["run", "--profile", "smoke", "-p", "input_sise", "48"])[0]
    problems = teaching.command_problems(["run", "--profile", "smoke", "--chapters", "99_x"])
    assert "unknown chapter(s) 99_x" in problems[0]
    assert "rejects" in teaching.command_problems(["run", "--no-such-flag"])[0]
    # an exercise that sets what the profile already has changes nothing (kernel_width from lime:)
    for key, value in (("seed", "0"), ("explain.kernel_width", "0.25"), ("explain.num_samples", "200")):
        assert "nothing changes" in teaching.command_problems(["run", "--profile", "smoke", "-p", key, value])[0]
    assert teaching.command_problems(["run", "--profile", "smoke", "-p", "explain.kernel_width", "0.5"]) == []
    with pytest.raises(FermapError, match="not a fermap run command"):
        teaching.run_exercise(["masks", "--out", "x"], "run", "chapters")


@pytest.mark.slow
def test_the_exercise_commands_other_than_run_run(tmp_path, monkeypatch):
    """The exercise commands that are not `fermap run` (fermap masks, fermap score on the authors'
    heatmaps) run as written from the project root; the `fermap run` ones run in
    tests/test_exercises.py, on a copy of the smoke run."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "book").symlink_to(ROOT / "book")  # the commands name book/data/authors from the project root
    monkeypatch.setenv("FERMAP_CACHE", str(tmp_path / "cache"))
    ran = []
    for name, argv in _all_commands():
        if argv[0] != "run":
            assert main(argv) == 0, f"{name}: fermap {' '.join(argv)}"
            ran.append(argv[0])
    assert (tmp_path / "runs" / "au_scores.csv").stat().st_size > 0 and {"masks", "score"} <= set(ran)


# ---------------------------------------------------------------- run archives

def _finished_run(run_dir: Path, reference: Path, nets=("InceptionV3", "VGG16")) -> Path:
    """A finished run folder built from the authors' published heatmaps of two networks (fold 1):
    what chapter 5 reads (profile, data summary, metrics, the three heatmap folders)."""
    from fermap_utils.profiles import load_profile, record_profile

    record_profile(run_dir, load_profile("smoke", overrides={"networks": list(nets)}))
    (run_dir / "data").mkdir()
    (run_dir / "data" / "summary.json").write_text(json.dumps({"synthetic": False, "used": 0, "folds": 5,
                                                               "description": "test: the authors' heatmaps"}))
    gray = reference / "gray"
    for net in nets:
        (run_dir / "models" / net / "fold1").mkdir(parents=True)
        (run_dir / "models" / net / "fold1" / "metrics.json").write_text(json.dumps(
            {"network": net, "fold": 1, "accuracy": 0.8, "pretrained": True, "weights": "test", "input_size": 64,
             "epochs": 1, "n_test": 100, "seconds": 0.0, "synthetic": False}))
        for folder, pattern in (("heatmaps_by_cv", f"{net}_CV1_*"), ("heatmaps_by_net", f"{net}_*")):
            out = run_dir / "heatmaps" / folder
            out.mkdir(parents=True, exist_ok=True)
            for p in gray.joinpath(folder).glob(pattern):
                shutil.copy(p, out / p.name)
    shutil.copytree(gray / "heatmaps_total", run_dir / "heatmaps" / "heatmaps_total")
    return run_dir


def test_a_run_packs_and_unpacks_byte_for_byte(tmp_path, reference):
    run = _finished_run(tmp_path / "run", reference)
    (run / ".run.json.tmp123.json").write_text("partial")  # an interrupted atomic write is not packed
    packed = archive.pack_run(run)
    umask = os.umask(0)
    os.umask(umask)
    assert packed == tmp_path / "run.tar.gz" and packed.stat().st_mode & 0o777 == 0o666 & ~umask  # not private
    assert archive.archive_profile(packed)["networks"] == ["InceptionV3", "VGG16"]
    out = archive.unpack_run(packed, tmp_path / "copy")
    files = sorted(p.relative_to(run) for p in run.rglob("*") if p.is_file() and not p.name.startswith("."))
    assert files and files == sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert all((run / f).read_bytes() == (out / f).read_bytes() for f in files)
    with pytest.raises(FermapError, match="already holds a run"):
        archive.unpack_run(packed, out)


def test_unsafe_or_foreign_archives_are_refused(tmp_path):
    import io

    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        for name, data in (("run.json", b"{}"), ("../escaped.txt", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(FermapError, match="unsafe member"):
        archive.unpack_run(evil, tmp_path / "target")
    assert not (tmp_path / "escaped.txt").exists()
    other = tmp_path / "other.tar.gz"
    with tarfile.open(other, "w:gz") as tar:
        tar.add(__file__, arcname="notes.py")
    with pytest.raises(FermapError, match="not a fermap run archive"):
        archive.unpack_run(other, tmp_path / "t2")
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(FermapError, match="not a readable tar archive"):
        archive.archive_profile(tmp_path / "junk.tar.gz")
    with pytest.raises(FermapError, match="not a fermap run folder"):
        archive.pack_run(tmp_path)


def test_fermap_run_packs_and_unpacks(tmp_path, reference, capsys):
    run = _finished_run(tmp_path / "run", reference)
    assert main(["run", "--run", str(run), "--pack", str(tmp_path / "a.tar.gz")]) == 0
    assert main(["run", "--unpack", str(tmp_path / "a.tar.gz"), "--run", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "heatmaps" / "heatmaps_total").is_dir()
    assert main(["run", "--unpack", str(tmp_path / "missing.tar.gz"), "--run", str(tmp_path / "c")]) == 2
    assert "no such run archive" in capsys.readouterr().err


@pytest.mark.slow
def test_chapter_5_opens_alone_from_a_run_archive(tmp_path, reference):
    """A chapter opened with only `runs/<name>.tar.gz` present unpacks it and executes (papermill),
    training nothing: the run folder it leaves has no trained model."""
    import papermill as pm

    packed = archive.pack_run(_finished_run(tmp_path / "made", reference), tmp_path / "runs" / "default.tar.gz")
    run_dir = tmp_path / "runs" / "default"
    assert not run_dir.exists()
    out = tmp_path / "05_heatmaps.ipynb"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    pm.execute_notebook(str(ROOT / "notebooks" / "05_heatmaps.ipynb"), str(out), cwd=str(ROOT / "notebooks"),
                        parameters={"run_dir": str(run_dir), "profile": "default", "reference": str(reference),
                                    "live_widgets": False}, progress_bar=False, kernel_name="python3")
    nb = json.loads(out.read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2  # the global and per-network grids
    assert json.loads((run_dir / "run.json").read_text())["networks"] == ["InceptionV3", "VGG16"]
    assert packed.is_file() and not list(run_dir.glob("models/*/fold*/model.keras"))


def test_the_launch_repository_is_one_setting_and_a_placeholder_says_so(tmp_path, capsys, monkeypatch):
    """fermap has no public repository: `_config.yml` ships a placeholder, which reads as unset,
    and `fermap book` says where to set it; a real URL is taken as it is."""
    assert teaching.launch_repository(ROOT) is None
    assert teaching.PLACEHOLDER_REPOSITORY in (ROOT / "_config.yml").read_text()
    (tmp_path / "_config.yml").write_text("repository:\n  url: https://example.org/course/fermap\n")
    assert teaching.launch_repository(tmp_path) == "https://example.org/course/fermap"
    (tmp_path / "_config.yml").write_text("title: x\n")
    assert teaching.launch_repository(tmp_path) is None
    from fermap_utils import cli

    monkeypatch.setattr("fermap_utils.book.build_book", lambda: tmp_path / "_build" / "html")
    assert cli.main(["book"]) == 0
    assert "set `repository: url` in _config.yml" in capsys.readouterr().out
