"""Whether heatmaps are specific to their expression's mask, and the chance baselines
(fermap_utils.specificity): the tests, and the specificity report of chapter 11."""
import numpy as np
import pandas as pd
import pytest

from fermap_utils import metrics as Mt
from fermap_utils import specificity as Sp


def _biased_specific(k=6, eps=0.05, seed=0):
    """Every heatmap scores best on mask 0 (a central mask), but each is a little better on its own mask."""
    rng = np.random.default_rng(seed)
    bias = np.linspace(0.6, 0.1, k)
    m = bias[None, :] + eps * np.eye(k) + rng.uniform(0, 0.001, (k, k))
    names = [f"e{i}" for i in range(k)]
    return pd.DataFrame(m, index=names, columns=names)


def test_column_normalisation_removes_the_central_mask_advantage():
    m = _biased_specific()
    assert Sp.own_mask_best(m) == 1  # raw: mask e0 wins every row
    assert Sp.own_mask_best(Sp.column_normalised(m)) == 6
    np.testing.assert_allclose(Sp.column_normalised(m).mean(axis=0), 0, atol=1e-12)


def test_specificity_test_enumerates_the_720_relabellings():
    from itertools import permutations

    m = _biased_specific(eps=0.002, seed=3)
    t = Sp.specificity_test(m)
    a = m.to_numpy()
    k = len(a)

    def stat(p):
        diag = sum(a[p[j], j] for j in range(k))
        return diag / k - (a.sum() - diag) / (k * k - k)

    null = [stat(p) for p in permutations(range(k))]
    observed = stat(range(k))
    assert t["permutations"] == 720
    assert t["statistic"] == pytest.approx(observed)
    assert t["p_value"] == pytest.approx(np.mean(np.array(null) >= observed - 1e-12))
    assert Sp.specificity_test(_biased_specific(eps=0.05))["p_value"] == pytest.approx(1 / 720)
    flat = _biased_specific(eps=0.0)
    assert Sp.specificity_test(flat)["p_value"] > 0.05


def test_specificity_matrix_and_by_network():
    masks = {"a": np.zeros((20, 20), bool), "b": np.zeros((20, 20), bool)}
    masks["a"][:8] = True
    masks["b"][12:] = True
    hm = {e: (m * 200).astype(np.uint8) for e, m in masks.items()}
    m = Sp.specificity_matrix(hm, masks)
    assert m.loc["a", "a"] == 1.0 and m.loc["a", "b"] == 0.0
    auc = Sp.specificity_matrix(hm, masks, metric="roc_auc")
    assert auc.loc["b", "b"] == 1.0 and auc.loc["b", "a"] < 0.5
    t = Sp.specificity_by_network({("N", e): h for e, h in hm.items()} | {("M", "a"): hm["b"], ("M", "b"): hm["a"]},
                                  masks)
    assert t.loc["N", "own mask best"] == 2 and t.loc["N", "p_value"] == pytest.approx(0.5)
    assert t.loc["M", "own mask best"] == 0 and t.loc["M", "p_value"] == 1.0


def test_centre_bias_curve_and_its_crossings():
    masks = {"centre": np.zeros((40, 40), bool)}
    masks["centre"][10:30, 10:30] = True
    curve = Sp.centre_bias_curve(masks, [2.0, 8.0, 30.0])
    for s in curve.index:
        expected = Mt.binary_scores(Mt.binarize(Sp.centred_gaussian((40, 40), s)), masks["centre"])["iou"]
        assert curve.loc[s, "centre"] == curve.loc[s, "mean"] == pytest.approx(expected)
    assert curve["mean"].idxmax() == 8.0
    assert Sp.crossings([0, 1, 2, 3], [0, 1, 0, 1], 0.5) == [0.5, 1.5, 2.5]
    assert Sp.crossings([0, 10], [0.2, 0.4], 0.25) == [pytest.approx(2.5)]


def test_chance_baselines_on_known_masks():
    half = np.zeros((60, 80), bool)
    half[:, :40] = True
    centre = np.zeros((60, 80), bool)
    centre[20:40, 30:50] = True
    table = Sp.chance_baselines({"half": half, "centre": centre}, n=5, seed=1, sigma=8.0)
    assert list(table.index) == ["half", "centre"]
    assert table.loc["half", "mask area"] == 0.5 and table.loc["centre", "mask area"] == 400 / 4800
    # the other mask as the heatmap: |half ∩ centre| / |half ∪ centre| = 200 / 2600
    assert table.loc["half", "other masks"] == pytest.approx(200 / 2600)
    assert table.loc["centre", "other masks"] == pytest.approx(200 / 2600)
    # white noise kept by Otsu is about half the canvas: IoU with the half mask near 1/3
    assert 0.25 < table.loc["half", "uniform"] < 0.42
    # a centred Gaussian finds the centred square far better than noise does
    assert table.loc["centre", "centre"] > 2 * table.loc["centre", "uniform"]
    masks = {"half": half, "centre": centre}
    assert Sp.chance_baselines(masks, n=3, seed=1).equals(Sp.chance_baselines(masks, n=3, seed=1))  # seeded


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
    report = Sp.specificity_report(heat, masks)
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
    iou = Sp.specificity_report(heat, masks)[0]
    assert iou["own_best"]["raw"] == 0 and iou["test"]["statistic"] == pytest.approx(-0.5)
    assert iou["test"]["p_value"] == pytest.approx(1.0)
