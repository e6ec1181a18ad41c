"""Hostile and careless input, contained: one table of cases, each a command a user could type.

Every case must end with a non-zero exit, exactly one line on stderr (no traceback), nothing written
outside the run folder or ``--out``, and nothing partial at ``--out``. Each case builds what it needs
in ``tmp_path`` (an ``outside`` folder stands for everything a command must not touch) and calls
``cli.main`` in-process. Categories: parameters, files, run folders, archives, outputs.
"""
from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from fermap_utils import cli, layout
from fermap_utils._io import TEMP_PREFIX
from fermap_utils.config import project_root

AUTHORS = project_root() / "book" / "data" / "authors" / "gray" / "heatmaps_by_cv"


# -- parameters: refused before any work (no dataset, run.json or lock written) --------------------------

def _params(*argv: str):
    def setup(tmp: Path) -> list[str]:
        return [a.replace("RUN", str(tmp / "run")) for a in argv]
    return setup


# -- files a user hands fermap ---------------------------------------------------------------------------

def _datasets_file(text: bytes, manifest: bytes | None = None):
    def setup(tmp: Path) -> list[str]:
        if manifest is not None:
            (tmp / "manifest.csv").write_bytes(manifest)
        (tmp / "datasets.yaml").write_bytes(text)
        return ["data", "build", "--config", str(tmp / "datasets.yaml"), "--out", str(tmp / "run" / "built")]
    return setup


MANIFEST_ENTRY = b"datasets:\n  - name: mine\n    adapter: manifest\n    manifest: manifest.csv\n"


def _built_dataset(tmp: Path, damage) -> list[str]:
    folder = tmp / "run" / "dataset"
    folder.mkdir(parents=True)
    layout.summary_file(folder).write_text(json.dumps({"images": 1}))
    layout.records_file(folder).write_text("id,subject,expression\n")
    damage(folder)
    return ["data", "show", str(folder)]


# -- run folders whose paths lead out --------------------------------------------------------------------

def _run_with_link(name: str):
    def setup(tmp: Path) -> list[str]:
        run = tmp / "run"
        run.mkdir()
        target = tmp / "outside" / name
        target.mkdir(parents=True) if name != "run.json" else target.write_text("{}")
        (run / name).symlink_to(target)
        return ["train", "--profile", "smoke", "--run", str(run)]
    return setup


# -- archives --------------------------------------------------------------------------------------------

def _archive(run_json: dict):
    def setup(tmp: Path) -> list[str]:
        staged = tmp / "staged"
        staged.mkdir()
        (staged / "run.json").write_text(json.dumps(run_json))
        archive = tmp / "run" / "packed.tar.gz"
        archive.parent.mkdir()
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(staged / "run.json", arcname="run.json")
        return ["run", "--unpack", str(archive)]
    return setup


# -- outputs ---------------------------------------------------------------------------------------------

def _colliding_heatmaps(tmp: Path) -> list[str]:
    folder = tmp / "run" / "heatmaps"
    folder.mkdir(parents=True)
    for source in AUTHORS.glob("MobileNetV3_*"):
        for name in (source.name, source.name.replace("MobileNetV3_", "MobileNetV3Large_")):
            (folder / name).write_bytes(source.read_bytes())
    return ["score", "--heatmaps", str(folder), "--out", str(tmp / "run" / "out.csv")]


def _unwritable_mask(tmp: Path) -> list[str]:
    out = tmp / "run" / "masks"
    out.mkdir(parents=True)
    (out / "Fear_gt.png").mkdir()  # a folder where one of the six files must go
    return ["masks", "--out", str(out)]


CASES = {
    # parameters
    "score --decimals -3": _params("score", "--heatmaps", str(AUTHORS), "--out", "RUN/t.csv", "--decimals", "-3"),
    "score --decimals 100000": _params("score", "--heatmaps", str(AUTHORS), "--out", "RUN/t.csv",
                                       "--decimals", "100000"),
    "plan -p epochs_scale .nan": _params("plan", "--profile", "smoke", "-p", "epochs_scale", ".nan"),
    "train -p epochs_scale .nan": _params("train", "--profile", "smoke", "--run", "RUN", "-p", "epochs_scale", ".nan"),
    "plan -p explain.kernel_width .nan": _params("plan", "--profile", "smoke", "-p", "explain.kernel_width", ".nan"),
    "train --threads -1": _params("train", "--profile", "smoke", "--run", "RUN", "--threads", "-1"),
    "train --threads 0": _params("train", "--profile", "smoke", "--run", "RUN", "--threads", "0"),
    "train --workers -1": _params("train", "--profile", "smoke", "--run", "RUN", "--workers", "-1"),
    "run --chapters nosuch": _params("run", "--profile", "smoke", "--run", "RUN", "--chapters", "nosuch"),
    # files
    "data build: manifest of random bytes": _datasets_file(MANIFEST_ENTRY, bytes(range(256)) * 4),
    "data build: Latin-1 manifest": _datasets_file(MANIFEST_ENTRY, "path,subject,expression\nÉté.png,s,Anger\n"
                                                   .encode("latin-1")),
    "data build: unknown key in a dataset entry": _datasets_file(MANIFEST_ENTRY + b"    colour: blue\n",
                                                                 b"path,subject,expression\n"),
    "data build: crop_size 100000": _datasets_file(MANIFEST_ENTRY + b"crop_size: 100000\n",
                                                   b"path,subject,expression\n"),
    "data build: datasets file of random bytes": _datasets_file(bytes(range(256))),
    "data show: truncated summary.json": lambda tmp: _built_dataset(
        tmp, lambda f: layout.summary_file(f).write_text('{"images": ')),
    "data show: binary records.csv": lambda tmp: _built_dataset(
        tmp, lambda f: layout.records_file(f).write_bytes(bytes(range(256)) * 8)),
    "data show: no summary.json": lambda tmp: _built_dataset(tmp, lambda f: layout.summary_file(f).unlink()),
    # run folders
    "train: data/ links out of the run": _run_with_link("data"),
    "train: jobs/ links out of the run": _run_with_link("jobs"),
    "train: run.json links out of the run": _run_with_link("run.json"),
    # archives
    "unpack: a run named ../../x": _archive({"name": "../../../x", "profile": {"name": "smoke"}}),
    "unpack: a profile off the schema": _archive({"name": "packed", "profile": {"name": "smoke", "networks": "nope"}}),
    # outputs
    "score: MobileNetV3 and MobileNetV3Large heatmaps together": _colliding_heatmaps,
    "masks --out: one target not writable": _unwritable_mask,
}


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_input_is_refused_in_one_line(case, tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("FERMAP_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outside").mkdir(exist_ok=True)
    argv = CASES[case](tmp_path)
    outside_before = _tree(tmp_path / "outside")
    run_before = _tree(tmp_path / "run")
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    err = capfd.readouterr().err.strip()
    assert code not in (0, None), f"{case}: accepted"
    assert "Traceback" not in err, f"{case}: {err}"
    assert len(err.splitlines()) == 1, f"{case}: {len(err.splitlines())} lines:\n{err}"
    assert _tree(tmp_path / "outside") == outside_before, f"{case}: wrote outside the run"
    new = _tree(tmp_path / "run") - run_before
    assert not [n for n in new if Path(n).name.startswith(TEMP_PREFIX)], f"{case}: temporary files left: {new}"
    if case.startswith("masks --out"):
        assert not new, f"{case}: partial output {sorted(new)}"
    if case.startswith(("score", "plan", "train", "explain", "run --chapters")):
        assert not [n for n in new if n.endswith((".csv", "run.json", ".lock"))], f"{case}: wrote {sorted(new)}"


def test_the_table_covers_every_category():
    words = " ".join(CASES)
    for category in ("-p", "--threads", "--workers", "--decimals", "manifest", "summary.json", "records.csv",
                     "links out", "unpack", "MobileNetV3Large", "masks --out"):
        assert category in words, category
    assert len(CASES) >= 20
