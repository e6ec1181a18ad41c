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


# ---------------------------------------------------------------- statistics the paper lacks

def test_paper_tables_merge_and_side_by_side(tmp_path):
    import pandas as pd

    assert Mt.load_paper_tables(tmp_path) is None
    pd.DataFrame({"network": ["A", "A", "Average"], "expression": ["Anger", "Average", "Anger"],
                  "iou": [0.1, 0.2, 0.3], "f1": [0.4, 0.5, 0.6]}).to_csv(tmp_path / "table3_iou_f1.csv", index=False)
    pd.DataFrame({"network": ["Average", "A", "A"], "expression": ["Anger", "Anger", "Average"],
                  "precision": [0.7, 0.8, 0.9], "recall": [0.11, 0.12, 0.13]}).to_csv(
        tmp_path / "table4_precision_recall.csv", index=False)
    paper = Mt.load_paper_tables(tmp_path)
    row = paper[(paper.network == "Average") & (paper.expression == "Anger")].iloc[0]
    assert (row.iou, row.f1, row.precision, row.recall) == (0.3, 0.6, 0.7, 0.11)  # joined on both keys
    ours = pd.DataFrame({"network": ["B", "B"], "expression": ["Anger", "Average"], "iou": [0.5, 0.25]})
    t = Mt.side_by_side(ours, paper, "iou", ["Anger", "Average"], paper_order=["A"])
    assert list(t.index) == [("fermap", "B"), ("paper (real data)", "A"), ("paper (real data)", "Average")]
    assert t.loc[("paper (real data)", "A"), "Average"] == 0.2 and t.loc[("fermap", "B"), "Anger"] == 0.5
    assert np.isnan(t.loc[("paper (real data)", "Average"), "Average"])
    assert list(Mt.side_by_side(ours, None, "iou", ["Anger", "Average"]).index) == ["B"]


def test_cluster_bootstrap_matches_the_enumerated_distribution():
    # Fold a: one cell worth 0; fold b: three cells worth 1. Drawing two folds with replacement:
    # aa -> 0 (1/4), ab or ba -> 3/4 (1/2), bb -> 1 (1/4). A cell bootstrap would weigh a by 1/4.
    values = np.array([0.0, 1.0, 1.0, 1.0])
    folds = np.array(["a", "b", "b", "b"])
    reps = Mt.cluster_bootstrap(values, folds, n=20000, seed=1)
    exact = {}
    for draw in [("a", "a"), ("a", "b"), ("b", "a"), ("b", "b")]:
        cells = np.concatenate([values[folds == f] for f in draw])
        exact[cells.mean()] = exact.get(cells.mean(), 0) + 0.25
    assert set(np.round(reps, 12)) == set(np.round(list(exact), 12))
    for v, p in exact.items():
        assert np.mean(np.isclose(reps, v)) == pytest.approx(p, abs=0.015)


def test_bootstrap_ci_resamples_folds_not_cells():
    # Three folds of two cells; fold means 0, 1, 2. Each all-same draw has probability 1/27 > 2.5 %,
    # so the 95 % interval over folds is exactly [0, 2]; over the six cells it would be far narrower.
    values = np.array([0, 0, 1, 1, 2, 2], dtype=float)
    folds = np.array([1, 1, 2, 2, 3, 3])
    ci = Mt.bootstrap_ci(values, folds, n=4000, seed=0)
    assert (ci.estimate, ci.low, ci.high, ci.reason) == (1.0, 0.0, 2.0, "")
    cells = Mt.bootstrap_ci(values, n=4000, seed=0)
    assert cells.low > 0.3 and cells.high < 1.7
    one = Mt.bootstrap_ci(values, np.ones(6), n=100)
    assert one.estimate == 1.0 and np.isnan(one.low) and np.isnan(one.high) and "no interval over folds" in one.reason


def test_fold_intervals_per_network():
    import pandas as pd

    per_fold = pd.DataFrame({"network": ["A"] * 6 + ["B"] * 2, "fold": [1, 1, 2, 2, 3, 3, 1, 1],
                             "iou": [0, 0, 1, 1, 2, 2, 0.2, 0.4]})
    t = Mt.fold_intervals(per_fold, n=4000)
    assert (t.loc["A", "low"], t.loc["A", "high"], t.loc["A", "folds"]) == (0.0, 2.0, 3)
    assert t.loc["B", "estimate"] == pytest.approx(0.3) and np.isnan(t.loc["B", "low"])
    assert "1 fold" in t.loc["B", "note"]


def test_correlation_test_is_the_exact_permutation_p_value():
    from itertools import permutations

    from scipy.stats import spearmanr

    acc = np.array([0.2, 0.3, 0.4, 0.5, 0.6])
    iou = np.array([0.11, 0.10, 0.13, 0.15, 0.14])  # ranks 2 1 3 5 4: rho = 0.8
    res = Mt.correlation_test(acc, iou)
    rho = spearmanr(acc, iou).statistic
    null = np.array([spearmanr(acc, iou[list(p)]).statistic for p in permutations(range(5))])
    two_sided = min(1.0, 2 * min(np.mean(null >= rho - 1e-12), np.mean(null <= rho + 1e-12)))
    assert res["r"] == pytest.approx(0.8) and res["n"] == 5
    assert res["p_value"] == pytest.approx(two_sided) == pytest.approx(16 / 120)
    assert np.isnan(Mt.correlation_test(acc[:2], iou[:2])["p_value"])


def test_paired_test_is_the_exact_sign_flip_p_value():
    from itertools import product

    a = np.array([0.30, 0.25, 0.40, 0.35, 0.20, 0.33])
    b = np.array([0.20, 0.27, 0.10, 0.30, 0.21, 0.12])
    d = a - b
    null = np.array([np.mean(d * s) for s in product([1, -1], repeat=6)])
    expected = min(1.0, 2 * min(np.mean(null >= d.mean() - 1e-12), np.mean(null <= d.mean() + 1e-12)))
    res = Mt.paired_test(a, b)
    assert res["mean_difference"] == pytest.approx(d.mean()) and res["p_value"] == pytest.approx(expected)
    assert res["p_value"] < 0.2 and Mt.paired_test(a, a[::-1])["p_value"] > 0.2


def test_accuracy_interval_is_wilson():
    ci = Mt.accuracy_interval(0.5, 100)
    z = 1.959963984540054
    half = z * np.sqrt(0.25 / 100 + z**2 / (4 * 100**2)) / (1 + z**2 / 100)
    assert ci.estimate == 0.5 and ci.low == pytest.approx(0.5 - half) and ci.high == pytest.approx(0.5 + half)


def _biased_specific(k=6, eps=0.05, seed=0):
    """Every heatmap scores best on mask 0 (a central mask), but each is a little better on its own mask."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    bias = np.linspace(0.6, 0.1, k)
    m = bias[None, :] + eps * np.eye(k) + rng.uniform(0, 0.001, (k, k))
    names = [f"e{i}" for i in range(k)]
    return pd.DataFrame(m, index=names, columns=names)


def test_column_normalisation_removes_the_central_mask_advantage():
    m = _biased_specific()
    assert Mt.own_mask_best(m) == 1  # raw: mask e0 wins every row
    assert Mt.own_mask_best(Mt.column_normalised(m)) == 6
    np.testing.assert_allclose(Mt.column_normalised(m).mean(axis=0), 0, atol=1e-12)


def test_specificity_test_enumerates_the_720_relabellings():
    from itertools import permutations

    m = _biased_specific(eps=0.002, seed=3)
    t = Mt.specificity_test(m)
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
    assert Mt.specificity_test(_biased_specific(eps=0.05))["p_value"] == pytest.approx(1 / 720)
    flat = _biased_specific(eps=0.0)
    assert Mt.specificity_test(flat)["p_value"] > 0.05


def test_specificity_matrix_and_by_network():
    masks = {"a": np.zeros((20, 20), bool), "b": np.zeros((20, 20), bool)}
    masks["a"][:8] = True
    masks["b"][12:] = True
    hm = {e: (m * 200).astype(np.uint8) for e, m in masks.items()}
    m = Mt.specificity_matrix(hm, masks)
    assert m.loc["a", "a"] == 1.0 and m.loc["a", "b"] == 0.0
    auc = Mt.specificity_matrix(hm, masks, metric="roc_auc")
    assert auc.loc["b", "b"] == 1.0 and auc.loc["b", "a"] < 0.5
    t = Mt.specificity_by_network({("N", e): h for e, h in hm.items()} | {("M", "a"): hm["b"], ("M", "b"): hm["a"]},
                                  masks)
    assert t.loc["N", "own mask best"] == 2 and t.loc["N", "p_value"] == pytest.approx(0.5)
    assert t.loc["M", "own mask best"] == 0 and t.loc["M", "p_value"] == 1.0


def test_centre_bias_curve_and_its_crossings():
    masks = {"centre": np.zeros((40, 40), bool)}
    masks["centre"][10:30, 10:30] = True
    curve = Mt.centre_bias_curve(masks, [2.0, 8.0, 30.0])
    for s in curve.index:
        expected = Mt.binary_scores(Mt.binarize(Mt.centred_gaussian((40, 40), s)), masks["centre"])["iou"]
        assert curve.loc[s, "centre"] == curve.loc[s, "mean"] == pytest.approx(expected)
    assert curve["mean"].idxmax() == 8.0
    assert Mt.crossings([0, 1, 2, 3], [0, 1, 0, 1], 0.5) == [0.5, 1.5, 2.5]
    assert Mt.crossings([0, 10], [0.2, 0.4], 0.25) == [pytest.approx(2.5)]


def _square_masks():
    masks = {e: np.zeros((30, 30), bool) for e in ("Anger", "Fear", "Happiness", "Sadness")}
    masks["Anger"][:10] = True
    masks["Fear"][10:20] = True
    masks["Happiness"][20:] = True
    masks["Sadness"][:, :10] = True
    return masks


def test_randomisation_comparison_uses_the_same_expressions_and_reports_the_dropped():
    masks = _square_masks()
    noise = np.random.default_rng(0).integers(0, 256, (30, 30), dtype=np.uint8)
    trained = {e: (m * 200 + 10).astype(np.uint8) for e, m in masks.items() if e != "Happiness"}
    trained["Happiness"] = np.full((30, 30), 7, np.uint8)  # constant: no Otsu threshold
    random = {"Anger": noise, "Fear": noise[::-1].copy(), "Happiness": noise, "Sadness": trained["Sadness"]}
    trained["Surprise"] = trained["Anger"]  # no randomised heatmap for it
    masks["Surprise"] = masks["Anger"]
    check = Mt.randomisation_comparison(trained, random, masks, images={"Anger": 3})
    assert set(check.dropped) == {"Happiness", "Surprise"}
    assert "constant heatmap from the trained network" in check.dropped["Happiness"]
    assert "no heatmap from the random weights network" in check.dropped["Surprise"]
    per_model = check.scores.groupby("model").expression.apply(sorted)
    assert per_model["trained"] == per_model["random weights"] == ["Anger", "Fear", "Sadness"]
    s = check.scores.set_index(["expression", "model"])
    assert s.loc[("Anger", "trained"), "iou"] == 1.0 and s.loc[("Anger", "trained"), "images"] == 3
    assert s.loc[("Anger", "random weights"), "iou"] == pytest.approx(
        Mt.binary_scores(Mt.binarize(noise), masks["Anger"])["iou"])
    assert check.similarity.loc["Sadness", "rank correlation"] == pytest.approx(1.0)  # identical: weights ignored
    assert check.similarity.loc["Anger", "rank correlation"] < 0.3
    comp = check.comparison()
    diffs = (s.xs("trained", level="model").iou - s.xs("random weights", level="model").iou)
    assert comp.loc["iou", "difference"] == pytest.approx(diffs.mean()) and comp.loc["iou", "expressions"] == 3


def _two_image_stack():
    a = np.zeros((30, 30))
    a[:10] = 1.0  # exactly the Anger mask
    b = np.zeros((30, 30))
    b[5:25, 5:25] = 1.0
    return np.stack([a, b])


def test_bootstrap_image_means_resamples_images():
    from fermap_utils.heatmaps import heatmap, to_uint8
    from fermap_utils.statistics import bootstrap_image_means

    masks = _square_masks()
    stack = _two_image_stack()
    # Two images: the resampled heatmap is a alone, b alone (1/4 each) or their mean (1/2); each
    # outcome has probability >= 2.5 %, so the 95 % interval runs from the lowest to the highest.
    outcomes = [Mt.binary_scores(Mt.binarize(to_uint8(heatmap(s))), masks["Anger"])["iou"]
                for s in (stack[:1], stack[1:], stack)]
    t = bootstrap_image_means({("N", 1, "Anger"): stack}, masks, n=400, seed=0)
    assert t.loc["N", "estimate"] == pytest.approx(outcomes[2])
    assert t.loc["N", "low"] == pytest.approx(min(outcomes)) and t.loc["N", "high"] == pytest.approx(max(outcomes))
    same = bootstrap_image_means({("N", 1, "Anger"): stack[[0, 0]], ("M", 1, "Fear"): stack[[1, 1, 1]]}, masks, n=50)
    assert same.loc["N", "low"] == same.loc["N", "high"] == 1.0  # identical images: no spread
    assert same.loc["Average", "estimate"] == pytest.approx((1.0 + same.loc["M", "estimate"]) / 2)


def test_bootstrap_image_distances_and_scores():
    from fermap_utils.heatmaps import heatmap, to_uint8
    from fermap_utils.statistics import bootstrap_image_distances, bootstrap_image_scores

    stack = _two_image_stack()
    other = np.random.default_rng(1).random((1, 30, 30))
    t = bootstrap_image_distances({("A", 1, "Anger"): stack[:1], ("A", 2, "Anger"): stack[1:],  # folds pooled
                                   ("B", 1, "Anger"): other}, n=400, seed=0)
    b = to_uint8(heatmap(other))
    outcomes = [Mt.ncc_distance(to_uint8(heatmap(s)), b) for s in (stack[:1], stack[1:], stack)]
    row = t.iloc[0]
    assert (row.net_a, row.net_b, len(t)) == ("A", "B", 1)
    assert row.distance == pytest.approx(outcomes[2])
    assert row.low == pytest.approx(min(outcomes)) and row.high == pytest.approx(max(outcomes))
    ci = bootstrap_image_scores(stack, _square_masks()["Anger"], n=100)
    assert list(ci.index) == ["iou", "f1", "precision", "recall", "roc_auc"]
    assert ci.loc["iou", "high"] == 1.0 and ci.loc["iou", "low"] < ci.loc["iou", "value"] < 1.0


def test_sanity_check_saves_and_loads(tmp_path):
    masks = _square_masks()
    maps = {e: (m * 200 + 10).astype(np.uint8) for e, m in masks.items()}
    check = Mt.randomisation_comparison(maps, {e: h[::-1].copy() for e, h in maps.items()}, masks,
                                        dropped={"Surprise": "no test image predicted as this class"})
    assert Mt.SanityCheck.load(tmp_path) is None
    check.save(tmp_path / "s")
    back = Mt.SanityCheck.load(tmp_path / "s")
    assert back.dropped == check.dropped
    pd_testing = __import__("pandas").testing
    pd_testing.assert_frame_equal(back.scores, check.scores, check_dtype=False)
    pd_testing.assert_frame_equal(back.similarity, check.similarity)
    pd_testing.assert_frame_equal(back.comparison(), check.comparison())


def test_threshold_free_scores_by_hand():
    """Every score on a 2x4 heatmap, counted by hand from the definitions."""
    heatmap = np.array([[4, 4, 0, 1],
                        [3, 2, 0, 0]], dtype=np.uint8)
    mask = np.array([[1, 0, 0, 1],
                     [1, 1, 0, 0]], dtype=bool)
    s = Mt.threshold_free_scores(heatmap, mask)
    assert set(s) == {"roc_auc", "relevance_mass", "pointing_game", "iou_area_matched"}
    # inside {4, 1, 3, 2} against outside {4, 0, 0, 0}: of the 16 pairs, 4 beats 0 three times and
    # ties 4 (3.5), and 1, 3, 2 each beat the three 0s (9): 12.5 / 16
    assert s["roc_auc"] == pytest.approx(12.5 / 16)
    assert s["relevance_mass"] == pytest.approx((4 + 1 + 3 + 2) / 14)
    assert s["pointing_game"] == 0.5  # two maxima (4), one of them inside
    # the mask's 4 pixels of highest value: (0,0) (0,1) (1,0) (1,1); 3 inside, union 5
    assert s["iou_area_matched"] == pytest.approx(3 / 5)
    for key, value in s.items():
        assert Mt.score(heatmap, mask, key) == value
    flat = Mt.threshold_free_scores(np.zeros((2, 4)), mask)
    assert flat["relevance_mass"] == 0.0 and flat["pointing_game"] == 0.5  # every pixel a maximum, 4 of 8 inside
    assert flat["roc_auc"] == 0.5
    full = Mt.threshold_free_scores(heatmap, np.ones((2, 4), bool))
    assert np.isnan(full["roc_auc"]) and full["relevance_mass"] == 1.0 and full["iou_area_matched"] == 1.0


def test_threshold_free_table_averages_over_expressions():
    masks = _square_masks()
    maps = {("N", e): (m * 200 + 10).astype(np.uint8) for e, m in masks.items()}
    maps[("M", "Anger")] = maps[("N", "Fear")]
    t = Mt.threshold_free_table(maps, masks)
    assert list(t.index) == ["N", "M"]
    assert t.loc["N", "roc_auc"] == 1.0 and t.loc["N", "iou_otsu"] == 1.0 and t.loc["N", "pointing_game"] == 1.0
    expected = Mt.threshold_free_scores(maps[("N", "Fear")], masks["Anger"])["roc_auc"]
    assert t.loc["M", "roc_auc"] == pytest.approx(expected)


def test_paired_comparisons_pair_the_shared_cells():
    import itertools

    scores = pd.DataFrame({"method": ["a"] * 4 + ["b"] * 4 + ["c"] * 3,
                           "network": ["n1", "n1", "n2", "n2"] * 2 + ["n1", "n1", "n2"],
                           "expression": ["x", "y"] * 4 + ["x", "y", "x"],
                           "iou": [0.5, 0.6, 0.7, 0.8, 0.4, 0.5, 0.6, 0.9, 0.6, 0.7, 0.8]})
    table = Mt.paired_comparisons(scores, "iou", reference="a")
    d = np.array([-0.1, -0.1, -0.1, 0.1])  # b - a, cell by cell
    assert table.loc["b", "mean_difference"] == pytest.approx(d.mean())
    flips = [abs((d * s).mean()) >= abs(d.mean()) - 1e-12 for s in itertools.product([1, -1], repeat=4)]
    assert table.loc["b", "p_value"] == pytest.approx(np.mean(flips))
    assert table.loc["c", "n"] == 3 and table.loc["c", "mean_difference"] == pytest.approx(0.1)
    assert "a" not in table.index


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


def test_chance_baselines_on_known_masks():
    from fermap_utils.metrics import chance_baselines

    half = np.zeros((60, 80), bool)
    half[:, :40] = True
    centre = np.zeros((60, 80), bool)
    centre[20:40, 30:50] = True
    table = chance_baselines({"half": half, "centre": centre}, n=5, seed=1, sigma=8.0)
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
    assert chance_baselines(masks, n=3, seed=1).equals(chance_baselines(masks, n=3, seed=1))  # seeded
