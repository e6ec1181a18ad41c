"""Grading heatmaps against the planted truth, checked against the definitions computed here."""
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from fermap_utils import groundtruth as G

SHAPE = (275, 224)


def _disc(cx, cy, r):
    yy, xx = np.mgrid[0:SHAPE[0], 0:SHAPE[1]]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2


def test_grade_heatmap_against_the_definitions():
    region = _disc(100, 120, 30)
    planted = region * 40.0 + _disc(100, 120, 10) * 60.0  # a stronger core inside the region
    off = _disc(170, 60, 30).astype(float)                 # a heatmap that misses the region entirely
    half = np.where(_disc(70, 120, 30), 1.0, 0.0)         # overlaps part of it
    perfect = G.grade_heatmap(region.astype(float), region, planted)
    assert perfect["iou"] == perfect["f1"] == perfect["roc_auc"] == 1.0
    miss = G.grade_heatmap(off, region, planted)
    assert miss["iou"] == 0.0 and miss["roc_auc"] < 0.5 and miss["ncc"] < 0
    part = G.grade_heatmap(half, region, planted)
    pred = half > 0.5
    inter, union = (pred & region).sum(), (pred | region).sum()
    assert part["iou"] == pytest.approx(inter / union, abs=1e-9)
    assert part["precision"] == pytest.approx(inter / pred.sum(), abs=1e-9)
    assert part["recall"] == pytest.approx(inter / region.sum(), abs=1e-9)
    assert part["roc_auc"] == pytest.approx(roc_auc_score(region.ravel(), half.ravel()))
    expected_ncc = np.corrcoef(half.ravel(), planted.ravel())[0, 1]
    assert part["ncc"] == pytest.approx(expected_ncc, abs=1e-6)
    assert G.grade_heatmap(planted / planted.max(), region, planted)["ncc"] == pytest.approx(1.0, abs=1e-6)


def test_grade_heatmaps_and_summaries():
    regions = {"Happiness": _disc(100, 200, 25), "Surprise": _disc(110, 60, 40)}
    planted = {e: r * 10.0 for e, r in regions.items()}
    masks = {"Happiness": _disc(100, 190, 40), "Surprise": _disc(110, 60, 20)}
    maps = {("A", "Happiness"): regions["Happiness"] * 1.0, ("A", "Surprise"): regions["Happiness"] * 1.0,
            ("B", "Happiness"): masks["Happiness"] * 1.0, ("B", "Contempt"): masks["Happiness"] * 1.0}
    grades = G.grade_heatmaps(maps, regions, planted, masks)
    assert len(grades) == 6  # Contempt has no truth: left out
    a = grades.set_index(["network", "expression", "truth"])
    assert a.loc[("A", "Happiness", "planted"), "iou"] == 1.0
    assert a.loc[("A", "Surprise", "planted"), "iou"] == 0.0
    assert a.loc[("B", "Happiness", "Ekman"), "iou"] == 1.0 and np.isnan(a.loc[("B", "Happiness", "Ekman"), "ncc"])
    grades.insert(0, "method", "lime")
    table = G.summarise_grades(grades, ["method", "truth"])
    assert table.loc[("lime", "planted"), "n"] == 3
    assert table.loc[("lime", "planted"), "iou"] == pytest.approx(grades[grades.truth == "planted"].iou.mean())


def test_masks_against_truth_takes_the_planted_region_as_ground_truth():
    regions = {"Fear": _disc(100, 100, 20)}
    masks = {"Fear": _disc(100, 100, 40)}  # covers the region and more: full recall, low precision
    row = G.masks_against_truth(masks, regions).loc["Fear"]
    assert row["recall"] == 1.0
    assert row["precision"] == pytest.approx(regions["Fear"].sum() / masks["Fear"].sum())


def test_accuracy_against_truth_is_a_rank_correlation_per_method():
    grades = pd.DataFrame({"method": ["lime"] * 4 + ["cam"] * 4, "network": list("abcd") * 2,
                           "truth": "planted", "roc_auc": [0.6, 0.7, 0.8, 0.9, 0.9, 0.8, 0.7, 0.6]})
    acc = pd.Series({"a": 0.5, "b": 0.6, "c": 0.7, "d": 0.8})
    out = G.accuracy_against_truth(grades, acc)
    assert out.loc["lime", "r"] == pytest.approx(1.0) and out.loc["cam", "r"] == pytest.approx(-1.0)
    assert out.loc["lime", "p_value"] == pytest.approx(2 / 24)  # exact: 2 of the 24 orderings are as extreme
    assert out.loc["lime", "n"] == 4


@pytest.mark.slow
def test_grade_run_on_the_default_dataset_truth(default_dataset, tmp_path):
    """grade_run reads a run's planted maps and heatmaps; an explainer without heatmaps is named, not skipped."""
    import shutil

    from fermap_utils.heatmaps import heatmap_filename, save_heatmap
    from fermap_utils.masks import ekman_masks
    from fermap_utils.synthetic import load_planted_maps, planted_regions

    run = tmp_path / "run"
    shutil.copytree(default_dataset / "planted", run / "data" / "planted")
    planted = load_planted_maps(run / "data")
    for e, m in planted.items():  # a network whose heatmaps are the planted maps themselves
        save_heatmap(run / "heatmaps" / "heatmaps_by_net" / heatmap_filename(e, "Oracle"), m / m.max())
    grades = G.grade_run(run, ["lime", "cam"], ekman_masks())
    assert "cam" in grades.attrs["missing"]
    truth = grades[grades.truth == "planted"]
    assert len(truth) == 6 and (truth.ncc > 0.99).all() and (truth.roc_auc > 0.99).all()
    regions = planted_regions(planted)
    assert set(truth.expression) == set(regions)
