"""The chapters' parameter exercises, run: each `fermap run --profile smoke -p ...` command written in
a chapter executes on a copy of the session's smoke run (``smoke_site`` in conftest.py), re-executing
only the chapters it names and retraining only what its new setting demands, and changes what its
exercise and solution say it changes (and leaves what they say stays put).

The suite runs a representative subset (:data:`IN_SUITE`: a new seed, a retraining, a LIME setting and
the explainers' list); ``FERMAP_EXERCISES=all`` runs every group, as ``.ci/exercises`` does.
Exercises that share a setting or a network run in one group, on one copy, in order, so the second
finds the first's training and explanations done.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import numpy as np
import pytest

from fermap_utils import teaching
from fermap_utils.config import section

ROOT = Path(__file__).resolve().parents[1]
EXECUTED = section("book")["executed"]
COMMANDS = {p.stem: c for p in sorted((ROOT / "notebooks").glob("*.ipynb"))
            for c in teaching.exercise_commands(p) if c[:1] == ["run"]}
# Each group runs on its own copy of the smoke run, its exercises in order.
GROUPS = {"01_data": ["01_data"], "02_networks": ["02_networks"], "03_lime": ["03_lime"],
          "04_standardisation": ["04_standardisation", "11_statistics"],  # the same -p explain.images_per_class 4
          "05_heatmaps": ["05_heatmaps"], "06_masks": ["06_masks"], "07_scores": ["07_scores"],
          "08_similarity": ["08_similarity", "10_discussion"],  # 10 adds one network to 08's
          "12_methods": ["12_methods"], "13_ground_truth": ["13_ground_truth"]}
# Measured (--durations, 2 shared cores at load average ~12): 01 10 s, 02 104 s, 03 36 s, 04+11 206 s, 05 57 s,
# 06 68 s, 07 75 s, 08+10 461 s, 12 69 s, 13 50 s. The suite takes a seed, a retraining, a LIME setting and the
# explainers' list (167 s at load average ~8); the rest run in .ci/exercises.
IN_SUITE = ["01_data", "02_networks", "03_lime", "13_ground_truth"]
RUN_ALL = os.environ.get("FERMAP_EXERCISES") == "all"


# ---------------------------------------------------------------- what a run folder and a chapter hold

def _files(run: Path, pattern: str) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.glob(pattern)) if p.is_file()}


def _cells(site: Path, chapter: str) -> list:
    return [c for c in nbformat.read(site / EXECUTED / f"{chapter}.ipynb", as_version=4).cells
            if c.cell_type == "code"]


def _images(site: Path, chapter: str) -> dict[int, list[str]]:
    """Each code cell's PNG outputs, by the cell's position."""
    return {i: [o["data"]["image/png"] for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
            for i, c in enumerate(_cells(site, chapter))}


def _text(site: Path, chapter: str) -> str:
    """Everything a chapter shows as text (streams, tables, markdown)."""
    out = []
    for c in _cells(site, chapter):
        for o in c.get("outputs", []):
            out.append(o.get("text", ""))
            out += [v for k, v in o.get("data", {}).items() if k.startswith("text/")]
    return "\n".join(out)


def _errors(site: Path, chapter: str) -> list:
    return [o for c in _cells(site, chapter) for o in c.get("outputs", []) if o["output_type"] == "error"]


def _npz(run: Path, pattern: str, field: str) -> dict[str, np.ndarray]:
    out = {}
    for p in sorted(run.glob(pattern)):
        with np.load(p) as f:
            out[str(p.relative_to(run))] = np.asarray(f[field])
    return out


def _models(run: Path) -> dict[str, bytes]:
    return _files(run, "models/*/fold*/metrics.json")


def _retrained(old: dict[str, bytes], new: dict[str, bytes]) -> set[str]:
    """The networks whose fold was (re)trained between two snapshots of ``_models``."""
    return {Path(k).parts[1] for k in new if old.get(k) != new[k]}


# ---------------------------------------------------------------- what each exercise says it changes
# Each check gets the site before its group ran and after this exercise (``site/run``,
# ``site/book/chapters``), and the networks this exercise's run trained.

def _seed(before: Path, after: Path, trained: set[str]) -> None:
    """01: 'Only the augmentation variants change ... the sample grid and the fold table stay the same.'"""
    old, new = _images(before, "01_data"), _images(after, "01_data")
    cells = _cells(after, "01_data")
    augment = {i for i, c in enumerate(cells) if "random_augment" in c.source}
    assert len(augment) == 1 and all(new[i] for i in augment)
    assert {i for i in new if new[i] != old[i]} == augment  # the augmentation figure, nothing else
    assert _files(before / "run", "data/records.csv") == _files(after / "run", "data/records.csv")
    assert trained == set()


def _input_size(before: Path, after: Path, trained: set[str]) -> None:
    """02: the smoke networks retrained at 48 pixels, shown in the chapter's tables; the fixed FER2013
    network (evaluated, never trained) keeps its own input and its accuracy."""
    from fermap_utils.rundata import load_results

    results, was = (load_results(site / "run").set_index("network") for site in (after, before))
    fixed = ["FER2013"]
    assert set(results.index) - set(fixed) <= trained  # FER2013 is evaluated again: its key holds input_size
    assert (results.drop(index=fixed).input_size == 48).all() and (was.drop(index=fixed).input_size == 32).all()
    assert results.loc[fixed, ["input_size", "accuracy"]].equals(was.loc[fixed, ["input_size", "accuracy"]])
    assert _images(before, "02_networks") != _images(after, "02_networks")


def _explanations_only(before: Path, after: Path, trained: set[str]) -> None:
    """LIME settings: 'only the explanations are recomputed, not the training'; the heatmaps change."""
    assert trained == set()
    old, new = _files(before / "run", "heatmaps/*/*.png"), _files(after / "run", "heatmaps/*/*.png")
    assert old.keys() == new.keys() and any(old[k] != new[k] for k in old)
    assert _images(before, "05_heatmaps") != _images(after, "05_heatmaps")


def _num_samples(before: Path, after: Path, trained: set[str]) -> None:
    _explanations_only(before, after, trained)


def _more_images(before: Path, after: Path, trained: set[str]) -> None:
    """04: more explained images per class (the heatmaps average more explanations)."""
    _explanations_only(before, after, trained)
    old, new = _npz(before / "run", "explanations/*/fold*/*.npz", "count"), \
        _npz(after / "run", "explanations/*/fold*/*.npz", "count")
    assert sum(new.values()) > sum(old.values())
    assert all(new[k] >= old[k] for k in old)


def _intervals(before: Path, after: Path, trained: set[str]) -> None:
    """11 (after 4 in its group): more explanations than the smoke run's; chapter 11's numbers move."""
    _more_images(before, after, trained)
    assert _text(before, "11_statistics") != _text(after, "11_statistics")


def _lime_seed(before: Path, after: Path, trained: set[str]) -> None:
    """05: 'The seed picks the explained images and each image's perturbations.'"""
    _explanations_only(before, after, trained)
    old, new = _npz(before / "run", "explanations/*/fold*/*.npz", "ids"), \
        _npz(after / "run", "explanations/*/fold*/*.npz", "ids")
    old_w, new_w = _npz(before / "run", "explanations/*/fold*/*.npz", "weights"), \
        _npz(after / "run", "explanations/*/fold*/*.npz", "weights")
    assert any(set(old[k]) != set(new[k]) for k in old) and any(
        old_w[k].shape != new_w[k].shape or not np.array_equal(old_w[k], new_w[k]) for k in old)


def _segments(before: Path, after: Path, trained: set[str]) -> None:
    """06: about 60 superpixels instead of 30 (SLIC gives about as many as asked), so finer ones."""
    _explanations_only(before, after, trained)

    def superpixels(site: Path) -> list[int]:
        return [int(s.max()) + 1 for seg in _npz(site / "run", "explanations/*/fold*/*.npz", "segments").values()
                for s in seg]

    assert min(superpixels(after)) > max(superpixels(before))
    # the mask builder (its static fallback: heatmap, mask and scores) changes; the masks themselves do not
    old, new = _images(before, "06_masks"), _images(after, "06_masks")
    builder = {i for i, c in enumerate(_cells(after, "06_masks")) if "au_mask_builder" in c.source}
    assert len(builder) == 1 and {i for i in new if new[i] != old[i]} == builder


def _kernel(before: Path, after: Path, trained: set[str]) -> None:
    """07: 'the positive superpixels and hence the heatmaps change, and so do the scores' (Table 3)."""
    _explanations_only(before, after, trained)
    assert _text(before, "07_scores") != _text(after, "07_scores")


def _add_lite0_scratch(before: Path, after: Path, trained: set[str]) -> None:
    """08: EfficientNet-Lite0 from scratch trained (the others read back) and in the similarity chapter."""
    assert trained == {"EfficientNetLite0Scratch"}
    assert "EfficientNetLite0Scratch" not in _text(before, "08_similarity")
    assert "EfficientNetLite0Scratch" in _text(after, "08_similarity")


def _add_mobilenet(before: Path, after: Path, trained: set[str]) -> None:
    """10 (after 08 in its group): only MobileNetV3 is trained now; the discussion names it."""
    assert trained == {"MobileNetV3"}
    assert "MobileNetV3" in _text(after, "10_discussion") and "MobileNetV3" not in _text(before, "10_discussion")


def _extremal_steps(before: Path, after: Path, trained: set[str]) -> None:
    """12: only Extremal Perturbation is recomputed: its heatmaps and achieved areas change, LIME's,
    CAM's and Grad-CAM's do not."""
    from fermap_utils.explanations import load_details

    assert trained == set()
    for folder in ("heatmaps", "heatmaps_cam", "heatmaps_gradcam"):
        assert _files(before / "run", f"{folder}/*/*.png") == _files(after / "run", f"{folder}/*/*.png"), folder
    old, new = _files(before / "run", "heatmaps_extremal/*/*.png"), _files(after / "run", "heatmaps_extremal/*/*.png")
    assert old.keys() == new.keys() and any(old[k] != new[k] for k in old)
    a, b = load_details(before / "run", "extremal"), load_details(after / "run", "extremal")
    assert len(a) == len(b) and not np.array_equal(a.area_achieved.to_numpy(), b.area_achieved.to_numpy())


def _cam_only(before: Path, after: Path, trained: set[str]) -> None:
    """13: 'Grad-CAM and Extremal Perturbation disappear from the grades'; CAM stays beside LIME."""
    def graded(site: Path) -> set[str]:
        cell = next(c for c in _cells(site, "13_ground_truth") if "grade_run" in c.source)
        shown = "\n".join(v for o in cell.get("outputs", []) for k, v in o.get("data", {}).items()
                          if k == "text/html")
        return {m for m in ("lime", "cam", "gradcam", "extremal") if f">{m}<" in shown}

    assert graded(before) == {"lime", "cam", "gradcam", "extremal"}
    assert graded(after) == {"lime", "cam"}
    assert trained == set()


CHECKS = {"01_data": _seed, "02_networks": _input_size, "03_lime": _num_samples,
          "04_standardisation": _more_images, "05_heatmaps": _lime_seed, "06_masks": _segments,
          "07_scores": _kernel, "08_similarity": _add_lite0_scratch, "10_discussion": _add_mobilenet,
          "11_statistics": _intervals, "12_methods": _extremal_steps, "13_ground_truth": _cam_only}


# ---------------------------------------------------------------- the tests

def test_every_parameter_exercise_is_run_and_checked():
    """No exercise escapes the runs below: the groups hold every chapter's `fermap run` exercise,
    each with its check, and the suite's subset is a part of them."""
    assert sorted(sum(GROUPS.values(), [])) == sorted(COMMANDS) == sorted(CHECKS)
    assert set(IN_SUITE) <= set(GROUPS)
    for argv in COMMANDS.values():
        assert argv[argv.index("--profile") + 1] == "smoke" and "--chapters" in argv


@pytest.mark.slow
@pytest.mark.parametrize("group", list(GROUPS) if RUN_ALL else IN_SUITE)
def test_a_parameter_exercise_runs_and_changes_what_it_says(group, smoke_site, own_copy, tmp_path):
    site = smoke_site[0]
    mine = own_copy(site, tmp_path / "site", parts=("run", "book"))
    for chapter in GROUPS[group]:
        argv = COMMANDS[chapter]
        models = _models(mine / "run")
        prof, table = teaching.run_exercise(argv, mine / "run", mine / EXECUTED)
        named = argv[argv.index("--chapters") + 1:]
        assert list(table.chapter) == [c for c in section("book")["chapters"] if c in named]
        # the exercise's own chapter runs again; an earlier one of its group may have run the others
        assert table.set_index("chapter").status[chapter] == "executed", table
        assert chapter == group or set(table.status) <= {"executed", "unchanged"}
        if chapter == group:
            assert (table.status == "executed").all(), table
        for name in named:
            assert _errors(mine, name) == [], name
        recorded = json.loads((mine / "run" / "run.json").read_text())
        assert recorded == json.loads(json.dumps(prof))  # the run holds the exercise's settings
        CHECKS[chapter](site, mine, _retrained(models, _models(mine / "run")))
