"""The specificity report of chapter 11 and the NCC agreement of chapter 3 (metrics)."""
import numpy as np
import pytest

from fermap_utils import metrics as M


def test_ncc_or_nan_is_ncc_unless_an_image_is_constant():
    rng = np.random.default_rng(1)
    a, b = rng.random((8, 8)), rng.random((8, 8))
    assert M.ncc_or_nan(a, b) == pytest.approx(M.ncc(a, b))
    assert M.ncc_or_nan(a, 3 * a + 1) == pytest.approx(1.0)
    assert np.isnan(M.ncc_or_nan(a, np.full((8, 8), 0.5))) and np.isnan(M.ncc_or_nan(np.zeros((8, 8)), b))


def _masks():
    masks = {}
    for i, e in enumerate(["Anger", "Disgust", "Fear"]):
        m = np.zeros((30, 30), bool)
        m[10 * i:10 * i + 10, :] = True  # three disjoint bands
        masks[e] = m
    return masks


def test_specificity_report_on_heatmaps_equal_to_their_masks():
    masks = _masks()
    heat = {e: np.where(m, 255, 0).astype(np.uint8) for e, m in masks.items()}
    report = M.specificity_report(heat, masks)
    assert [r["metric"] for r in report] == ["IoU after Otsu", "ROC-AUC"]
    iou, auc = report
    assert set(iou["tables"]) == {"raw", "column-normalised"} and set(auc["tables"]) == {"raw"}
    np.testing.assert_allclose(np.diag(iou["tables"]["raw"].to_numpy()), 1.0)
    np.testing.assert_allclose(iou["tables"]["raw"].to_numpy() - np.eye(3), 0.0, atol=1e-12)
    np.testing.assert_allclose(iou["tables"]["column-normalised"].mean(axis=0), 0.0, atol=1e-12)
    assert iou["own_best"] == {"raw": 3, "column-normalised": 3} and iou["rows"] == 3
    assert iou["test"]["permutations"] == 6 and iou["test"]["p_value"] == pytest.approx(1 / 6)
    assert iou["test"]["statistic"] == pytest.approx(1.0 - 0.0)
    assert "mean diagonal − mean off-diagonal = 1.000" in iou["verdict"]
    assert iou["verdict"].endswith("no evidence at the 5 % level that the heatmaps are specific to their expression.")


def test_specificity_report_counts_the_rows_a_relabelling_gets_wrong():
    masks = _masks()
    names = list(masks)
    heat = {e: np.where(masks[names[(i + 1) % 3]], 255, 0).astype(np.uint8) for i, e in enumerate(names)}
    iou = M.specificity_report(heat, masks)[0]
    assert iou["own_best"]["raw"] == 0 and iou["test"]["statistic"] == pytest.approx(-0.5)
    assert iou["test"]["p_value"] == pytest.approx(1.0)
