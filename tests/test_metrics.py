import warnings

import cv2
import numpy as np
import pandas as pd
import pytest
from scipy.cluster.hierarchy import cophenet
from sklearn.metrics import f1_score, jaccard_score, precision_score, recall_score

from fermap_utils import metrics as Mt


def _images(reference=None):
    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 256, (275, 224), dtype=np.uint8),
            np.clip(rng.normal(80, 30, (50, 60)), 0, 255).astype(np.uint8),
            np.r_[np.full(100, 10), np.full(50, 200)].astype(np.uint8).reshape(10, 15)]
    if reference is not None:
        folder = reference / "gray" / "heatmaps_by_cv"
        imgs += [cv2.imread(str(p), 0) for p in sorted(folder.glob("*.png"))[::7]]
    return imgs


def test_otsu_equals_opencv():
    for img in _images():
        t_cv, _ = cv2.threshold(img, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        assert Mt.otsu_threshold(img) == int(t_cv)


def test_otsu_equals_opencv_on_the_authors_heatmaps(reference):
    imgs = _images(reference)
    assert len(imgs) > 50
    for img in imgs:
        t_cv, binary = cv2.threshold(img, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        assert Mt.otsu_threshold(img) == int(t_cv)
        np.testing.assert_array_equal(Mt.binarize(img), binary > 0)


def test_otsu_needs_uint8():
    with pytest.raises(TypeError):
        Mt.otsu_threshold(np.zeros((3, 3), np.float32))


def test_binary_scores_equal_sklearn():
    rng = np.random.default_rng(2)
    for p in (0.1, 0.5, 0.8):
        truth = rng.random((40, 30)) < 0.3
        pred = rng.random((40, 30)) < p
        s = Mt.binary_scores(pred, truth)
        y, yh = truth.ravel(), pred.ravel()
        assert s["iou"] == pytest.approx(jaccard_score(y, yh))
        assert s["f1"] == pytest.approx(f1_score(y, yh))
        assert s["precision"] == pytest.approx(precision_score(y, yh))
        assert s["recall"] == pytest.approx(recall_score(y, yh))
        # IoU = F1 / (2 - F1) holds exactly for one pair
        assert s["iou"] == pytest.approx(s["f1"] / (2 - s["f1"]))


def test_iou_from_f1_is_the_iou_of_the_same_prediction():
    rng = np.random.default_rng(5)
    f1s, ious = [], []
    for p in (0.05, 0.2, 0.5, 0.9):
        for q in (0.1, 0.4):
            truth = rng.random(500) < q
            pred = rng.random(500) < p
            f1s.append(f1_score(truth, pred))
            ious.append(jaccard_score(truth, pred))  # TP / (TP + FP + FN), computed by sklearn
    np.testing.assert_allclose(Mt.iou_from_f1(np.array(f1s)), ious, rtol=1e-12)
    assert float(Mt.iou_from_f1(0.5)) == pytest.approx(1 / 3)  # not the identity: IoU < F1 inside (0, 1)
    assert Mt.iou_from_f1([0.0, 1.0]).tolist() == [0.0, 1.0]


def test_empty_inputs_give_numbers_and_a_warning():
    truth = np.zeros((5, 5), bool)
    truth[1:3, 1:3] = True
    empty = np.zeros((5, 5), bool)
    with pytest.warns(RuntimeWarning, match="precision"):
        s = Mt.binary_scores(empty, truth)
    assert s == {"iou": 0.0, "f1": 0.0, "precision": 0.0, "recall": 0.0}
    with pytest.warns(RuntimeWarning):
        s = Mt.binary_scores(empty, empty)
    assert not any(np.isnan(v) for v in s.values())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Mt.binary_scores(truth, truth)  # a well-defined case warns nothing


def test_ncc_equals_opencv_tm_ccoeff_normed():
    rng = np.random.default_rng(3)
    a = rng.random((275, 224)).astype(np.float32)
    b = (0.6 * a + 0.4 * rng.random((275, 224))).astype(np.float32)
    cv = cv2.matchTemplate(a, b, cv2.TM_CCOEFF_NORMED)[0, 0]
    assert Mt.ncc(a, b) == pytest.approx(float(cv), abs=1e-5)
    assert Mt.ncc(a, a) == pytest.approx(1.0)
    assert Mt.ncc(a, 1 - a) == pytest.approx(-1.0)
    assert Mt.ncc_distance(a, 1 - a) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="constant"):
        Mt.ncc(a, np.ones_like(a))


def test_ncc_or_nan_is_ncc_unless_an_image_is_constant():
    rng = np.random.default_rng(1)
    a, b = rng.random((8, 8)), rng.random((8, 8))
    assert Mt.ncc_or_nan(a, b) == pytest.approx(Mt.ncc(a, b))
    assert Mt.ncc_or_nan(a, 3 * a + 1) == pytest.approx(1.0)
    assert np.isnan(Mt.ncc_or_nan(a, np.full((8, 8), 0.5))) and np.isnan(Mt.ncc_or_nan(np.zeros((8, 8)), b))


def _naive_upgma_heights(d: np.ndarray) -> list[float]:
    """Average linkage by hand: repeatedly merge the closest clusters."""
    clusters = [[i] for i in range(len(d))]
    heights = []
    while len(clusters) > 1:
        best = None
        for i in range(len(clusters)):
            for j in range(i + 1, len(clusters)):
                h = np.mean([d[a, b] for a in clusters[i] for b in clusters[j]])
                if best is None or h < best[0]:
                    best = (h, i, j)
        h, i, j = best
        heights.append(h)
        clusters[i] = clusters[i] + clusters[j]
        del clusters[j]
    return heights


def test_distance_matrix_and_average_linkage():
    rng = np.random.default_rng(4)
    base = rng.random((20, 20))
    maps = {f"n{i}": base + rng.random((20, 20)) * (i + 1) * 0.3 for i in range(5)}
    dist = Mt.distance_matrix(maps)
    assert list(dist.index) == list(maps)
    np.testing.assert_allclose(dist.values, dist.values.T)
    assert dist.loc["n0", "n3"] == pytest.approx(Mt.ncc_distance(maps["n0"], maps["n3"]))
    z = Mt.average_linkage(dist)
    np.testing.assert_allclose(sorted(z[:, 2]), sorted(_naive_upgma_heights(dist.values)))
    # the same tree as SciPy's average linkage: the cophenetic distance of every pair (5 networks: 10)
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    expected = cophenet(linkage(squareform(dist.values, checks=False), method="average"))
    np.testing.assert_allclose(cophenet(z), expected, rtol=1e-12)
    assert len(expected) == 10


def test_score_table_averages_fold_metrics():
    mask = np.zeros((10, 10), bool)
    mask[:5] = True
    good = np.zeros((10, 10), np.uint8)
    good[:5] = 200
    half = np.zeros((10, 10), np.uint8)
    half[:, :5] = 200
    heatmaps = {("A", 1, "Anger"): good, ("A", 2, "Anger"): half,
                ("B", 1, "Anger"): half, ("B", 2, "Anger"): half}
    t = Mt.score_table(heatmaps, {"Anger": mask}, network_order=["B", "A"])
    assert list(t.network.unique()) == ["B", "A", "Average"]
    a = t[(t.network == "A") & (t.expression == "Anger")].iloc[0]
    assert a.iou == pytest.approx((1.0 + 1 / 3) / 2)  # mean of per-fold IoUs, not IoU of the mean
    avg = t[(t.network == "Average") & (t.expression == "Average")].iloc[0]
    assert avg.iou == pytest.approx(((1 + 1 / 3) / 2 + 1 / 3) / 2)


def test_threshold_free_scores_by_hand():
    """Every score on a 2x4 heatmap, counted by hand from the definitions."""
    heatmap = np.array([[4, 4, 0, 1],
                        [3, 2, 0, 0]], dtype=np.uint8)
    mask = np.array([[1, 0, 0, 1],
                     [1, 1, 0, 0]], dtype=bool)
    s = Mt.threshold_free_scores(heatmap, mask, tolerance=0)  # 0: the maximum must lie inside the mask
    assert set(s) == {"roc_auc", "relevance_mass", "pointing_game", "relevance_rank_accuracy", "iou_area_matched"}
    # inside {4, 1, 3, 2} against outside {4, 0, 0, 0}: of the 16 pairs, 4 beats 0 three times and
    # ties 4 (3.5), and 1, 3, 2 each beat the three 0s (9): 12.5 / 16
    assert s["roc_auc"] == pytest.approx(12.5 / 16)
    assert s["relevance_mass"] == pytest.approx((4 + 1 + 3 + 2) / 14)
    assert s["pointing_game"] == 0.5  # two maxima (4), one of them inside
    # the mask's 4 pixels of highest value: (0,0) (0,1) (1,0) (1,1); 3 inside, union 5
    assert s["iou_area_matched"] == pytest.approx(3 / 5)
    assert s["relevance_rank_accuracy"] == pytest.approx(3 / 4)
    for key, value in s.items():
        if key != "pointing_game":  # score() uses the default tolerance
            assert Mt.score(heatmap, mask, key) == value
    flat = Mt.threshold_free_scores(np.zeros((2, 4)), mask, tolerance=0)
    assert flat["relevance_mass"] == 0.0 and flat["pointing_game"] == 0.5  # every pixel a maximum, 4 of 8 inside
    assert flat["roc_auc"] == 0.5
    full = Mt.threshold_free_scores(heatmap, np.ones((2, 4), bool))
    assert np.isnan(full["roc_auc"]) and full["relevance_mass"] == 1.0 and full["iou_area_matched"] == 1.0


def _pointing_by_hand(heatmap, mask, tolerance):
    """The pointing game from its definition, by brute force: each maximum's distance to every mask pixel."""
    inside = np.argwhere(mask)
    peaks = np.argwhere(heatmap == heatmap.max())
    hits = [min(np.hypot(*(p - q)) for q in inside) <= tolerance for p in peaks]
    return float(np.mean(hits))


def test_pointing_game_has_zhangs_15_pixel_tolerance():
    """Zhang et al. 2018: a hit when the maximum lies within 15 px of the region (fails without a tolerance)."""
    mask = np.zeros((40, 60), bool)
    mask[10:20, 10:20] = True
    heatmap = np.zeros((40, 60))
    heatmap[15, 31] = 1.0  # 12 px right of the mask's edge column 19: a hit at 15 px, a miss inside-only
    assert Mt.threshold_free_scores(heatmap, mask)["pointing_game"] == 1.0
    assert Mt.pointing_game(heatmap, mask, tolerance=0) == 0.0
    heatmap[15, 31], heatmap[30, 40] = 0.0, 1.0  # (30, 40) is sqrt(11**2 + 21**2) = 23.7 px from (19, 19)
    assert Mt.pointing_game(heatmap, mask) == 0.0
    assert Mt.pointing_game(heatmap, mask, tolerance=24) == 1.0
    rng = np.random.default_rng(0)
    for _ in range(20):  # random small cases with tied maxima, against the definition computed by brute force
        h = rng.integers(0, 3, (12, 15))
        m = rng.random((12, 15)) < 0.05
        m[rng.integers(12), rng.integers(15)] = True
        tol = float(rng.choice([0, 1, 2.5, 4]))
        assert Mt.pointing_game(h, m, tol) == pytest.approx(_pointing_by_hand(h, m, tol))


def _top_k_by_enumeration(heatmap, mask):
    """Relevance rank accuracy and IoU of the top-K pixels (K = mask area), averaged over every way of
    choosing among the pixels tied at the cut, all equally likely: enumerated, no formula."""
    from itertools import combinations

    h, m = heatmap.ravel(), mask.ravel()
    k = int(m.sum())
    cut = np.sort(h)[-k]
    above = np.flatnonzero(h > cut)
    tied = np.flatnonzero(h == cut)
    accs, ious = [], []
    for chosen in combinations(tied, k - len(above)):
        top = np.zeros_like(m)
        top[above] = True
        top[list(chosen)] = True
        accs.append((top & m).sum() / k)
        ious.append((top & m).sum() / (top | m).sum())
    return np.mean(accs), np.mean(ious)


def test_top_k_scores_break_ties_fairly():
    """A constant heatmap scores the same wherever the mask is (raster order would give 1 or 0), and every
    tie is averaged over all the ways of breaking it (Arras et al.'s relevance rank accuracy, K = mask area)."""
    flat = np.ones((4, 5))
    first, last = np.zeros((4, 5), bool), np.zeros((4, 5), bool)
    first[0, :2] = True
    last[3, 3:] = True
    a, b = Mt.threshold_free_scores(flat, first), Mt.threshold_free_scores(flat, last)
    assert a["iou_area_matched"] == b["iou_area_matched"]
    assert a["relevance_rank_accuracy"] == b["relevance_rank_accuracy"] == pytest.approx(2 / 20)
    # two of 20 pixels drawn: both inside with p 1/190 (IoU 1), one with p 36/190 (IoU 1/3), none otherwise
    assert a["iou_area_matched"] == pytest.approx(1 / 190 + 36 / 190 / 3)
    rng = np.random.default_rng(1)
    for _ in range(30):
        h = rng.integers(0, 3, (3, 4)).astype(float)
        m = rng.random((3, 4)) < 0.4
        m[rng.integers(3), rng.integers(4)] = True
        acc, iou = _top_k_by_enumeration(h, m)
        s = Mt.top_k_overlap(h, m)
        assert s["relevance_rank_accuracy"] == pytest.approx(acc)
        assert s["iou_area_matched"] == pytest.approx(iou)


def _square_masks():
    masks = {e: np.zeros((30, 30), bool) for e in ("Anger", "Fear", "Happiness", "Sadness")}
    masks["Anger"][:10] = True
    masks["Fear"][10:20] = True
    masks["Happiness"][20:] = True
    masks["Sadness"][:, :10] = True
    return masks


def test_threshold_free_table_averages_over_expressions():
    masks = _square_masks()
    maps = {("N", e): (m * 200 + 10).astype(np.uint8) for e, m in masks.items()}
    maps[("M", "Anger")] = maps[("N", "Fear")]
    t = Mt.threshold_free_table(maps, masks)
    assert list(t.index) == ["N", "M"]
    assert t.loc["N", "roc_auc"] == 1.0 and t.loc["N", "iou_otsu"] == 1.0 and t.loc["N", "pointing_game"] == 1.0
    expected = Mt.threshold_free_scores(maps[("N", "Fear")], masks["Anger"])["roc_auc"]
    assert t.loc["M", "roc_auc"] == pytest.approx(expected)


def test_compare_tables_matches_cells_at_the_papers_decimals():
    from fermap_utils.metrics import compare_tables

    paper = pd.DataFrame({"network": ["A", "A", "B"], "expression": ["Fear", "Average", "Fear"],
                          "iou": [0.1234, 0.2, 0.5], "f1": [0.3, 0.4, 0.6]})
    ours = pd.DataFrame({"network": ["A", "A"], "expression": ["Fear", "Average"],
                         "iou": [0.12344, 0.2001], "f1": [0.29996, 0.4], "precision": [1.0, 1.0]})
    out = compare_tables(ours, paper).set_index(["network", "expression", "metric"])
    assert len(out) == 6 and set(out.index.get_level_values("metric")) == {"iou", "f1"}  # the paper's metrics only
    assert out.loc[("A", "Fear", "iou"), "equal"] and out.loc[("A", "Fear", "f1"), "equal"]  # equal once rounded
    assert not out.loc[("A", "Average", "iou"), "equal"]  # 0.2001 is not 0.2000 at 4 decimals
    assert np.isnan(out.loc[("B", "Fear", "iou"), "ours"]) and not out.loc[("B", "Fear", "iou"), "equal"]


def test_roc_auc_by_ranks_equals_scikit_learns_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    for levels in (3, 255, None):  # heavy ties, 8-bit ties, none
        h = rng.random((40, 30))
        h = np.round(h * levels) if levels else h
        m = rng.random((40, 30)) < 0.3
        assert Mt.roc_auc(h, m) == pytest.approx(roc_auc_score(m.ravel(), h.ravel()), abs=1e-12)
    assert np.isnan(Mt.roc_auc(h, np.zeros_like(m)))
