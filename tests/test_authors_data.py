"""The authors' data shipped in ``book/data/authors``: complete, unchanged, and what the reference folder holds."""
import hashlib
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import fermap_utils
from fermap_utils.config import project_root
from fermap_utils.run import authors_data_dir

SHARED = project_root().parent / "shared" / "reference"
NOT_DATA = {"README.md", "SHA256SUMS"}  # the two files the manifest does not list


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def _manifest_problems(folder: Path) -> list[str]:
    """What is wrong between ``folder/SHA256SUMS`` and the files beside it, computed with hashlib."""
    listed = {}
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        digest, sep, name = line.partition("  ")  # sha256sum's text-mode format: hash, two spaces, path
        assert sep and len(digest) == 64, f"not a sha256sum line: {line!r}"
        listed[name] = digest
    present = _files(folder) - NOT_DATA
    problems = [f"not listed: {n}" for n in sorted(present - set(listed))]
    problems += [f"missing: {n}" for n in sorted(set(listed) - present)]
    problems += [f"changed: {n}" for n in sorted(present & set(listed))
                 if hashlib.sha256((folder / n).read_bytes()).hexdigest() != listed[n]]
    return problems


def test_the_shipped_folder_holds_what_the_paper_published():
    folder = authors_data_dir()
    files = _files(folder)
    assert len([f for f in files if f.startswith("gray/heatmaps_by_cv/")]) == 12 * 5 * 6
    assert len([f for f in files if f.startswith("gray/heatmaps_by_net/")]) == 12 * 6
    assert len([f for f in files if f.startswith("gray/heatmaps_total/")]) == 6
    assert len([f for f in files if f.startswith("ekman_masks/") and f.endswith("_gt.png")]) == 6
    assert {"ekman_masks_figure.png", "table3_iou_f1.csv", "table4_precision_recall.csv", "LICENSE"} <= files
    notice = (folder / "LICENSE").read_text()
    assert "Copyright (c) 2024 Xavi3398" in notice and "MIT License" in notice
    assert "060a08bd" in (folder / "README.md").read_text()


def test_checksum_manifest_matches_every_file():
    folder = authors_data_dir()
    assert _manifest_problems(folder) == []
    assert len((folder / "SHA256SUMS").read_text().splitlines()) == len(_files(folder) - NOT_DATA) == 448
    if shutil.which("sha256sum"):  # the format is the one `sha256sum -c` reads, as the README says
        done = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=folder, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def test_checksum_check_catches_a_changed_a_missing_and_an_extra_file(tmp_path):
    copy = tmp_path / "authors"
    shutil.copytree(authors_data_dir(), copy)
    target = copy / "gray" / "heatmaps_total" / "Fear_heatmap.png"
    data = bytearray(target.read_bytes())
    data[-1] ^= 1
    target.write_bytes(bytes(data))
    (copy / "ekman_masks" / "Anger_gt.png").unlink()
    (copy / "notes.txt").write_text("not from the authors")
    assert _manifest_problems(copy) == ["not listed: notes.txt", "missing: ekman_masks/Anger_gt.png",
                                        "changed: gray/heatmaps_total/Fear_heatmap.png"]


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"no {SHARED} beside the project to compare the shipped copy with")
def test_shipped_copy_equals_the_shared_reference_file_by_file():
    ours = authors_data_dir()
    # The reference folder keeps the images under authors_heatmaps/ and the tables at its top.
    theirs = {n.removeprefix("authors_heatmaps/"): SHARED / n for n in _files(SHARED) if n != "README.md"}
    assert set(theirs) == _files(ours) - NOT_DATA - {"LICENSE"}
    different = [n for n, path in sorted(theirs.items()) if path.read_bytes() != (ours / n).read_bytes()]
    assert different == []


def test_the_wheel_and_sdist_carry_the_licence_but_not_the_authors_data(tmp_path):
    """The 12 MB of authors' data live beside the book: packaging must not pick them up."""
    root = project_root()
    src = tmp_path / "src"
    shutil.copytree(root / "fermap_utils", src / "fermap_utils", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "setup.py", "setup.cfg"):
        if (root / name).is_file():  # everything that tells setuptools what to pack
            shutil.copy(root / name, src / name)
    shutil.copytree(authors_data_dir(), src / authors_data_dir().relative_to(root))
    out = tmp_path / "dist"
    build = ("from setuptools import build_meta as b; import sys; out = sys.argv[1]; "
             "b.build_wheel(out); b.build_sdist(out)")
    done = subprocess.run([sys.executable, "-c", build, str(out)], cwd=src, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    wheel, = out.glob("*.whl")
    sdist, = out.glob("*.tar.gz")
    assert wheel.name.startswith(f"fermap-{fermap_utils.__version__}-")  # the one version, read by setuptools
    wheel_names = zipfile.ZipFile(wheel).namelist()
    sdist_names = tarfile.open(sdist).getnames()
    for names in (wheel_names, sdist_names):
        assert not [n for n in names if n.endswith(".png") or "/book/" in f"/{n}"]
        assert any(n.endswith("LICENSE") for n in names)
    assert wheel.stat().st_size < 1_000_000 and sdist.stat().st_size < 1_000_000


def test_citation_file_cites_this_version_and_the_paper():
    import tomllib

    import yaml

    root = project_root()
    cff = yaml.safe_load((root / "CITATION.cff").read_text())
    project = tomllib.loads((root / "pyproject.toml").read_text())
    # One version, defined once: fermap_utils.__version__, which setuptools reads as the package's.
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "fermap_utils.__version__"}
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert (cff["version"], cff["license"]) == (fermap_utils.__version__, project["project"]["license"])
    paper, = cff["references"]
    assert [a["family-names"] for a in paper["authors"]] == ["Gaya-Morey", "Ramis-Guarinos", "Manresa-Yee",
                                                            "Buades-Rubio"]
    assert (paper["journal"], paper["year"]) == ("Multimedia Tools and Applications", 2024)
    assert "arXiv:2401.11835" in [i["value"] for i in paper["identifiers"]]
    assert "Copyright (c) 2026 fermap contributors" in (root / "LICENSE").read_text()
