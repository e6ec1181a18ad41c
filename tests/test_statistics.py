"""Statistics on scores (fermap_utils.statistics): intervals over folds and images, permutation tests,
and the randomisation comparison of the sanity check."""
import numpy as np
import pandas as pd
import pytest

from fermap_utils import metrics as Mt
from fermap_utils import statistics as St
from fermap_utils.heatmaps import heatmap, to_uint8


def test_cluster_bootstrap_matches_the_enumerated_distribution():
    # Fold a: one cell worth 0; fold b: three cells worth 1. Drawing two folds with replacement:
    # aa -> 0 (1/4), ab or ba -> 3/4 (1/2), bb -> 1 (1/4). A cell bootstrap would weigh a by 1/4.
    values = np.array([0.0, 1.0, 1.0, 1.0])
    folds = np.array(["a", "b", "b", "b"])
    reps = St.cluster_bootstrap(values, folds, n=20000, seed=1)
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
    ci = St.bootstrap_ci(values, folds, n=4000, seed=0)
    assert (ci.estimate, ci.low, ci.high, ci.reason) == (1.0, 0.0, 2.0, "")
    cells = St.bootstrap_ci(values, n=4000, seed=0)
    assert cells.low > 0.3 and cells.high < 1.7
    one = St.bootstrap_ci(values, np.ones(6), n=100)
    assert one.estimate == 1.0 and np.isnan(one.low) and np.isnan(one.high) and "no interval over folds" in one.reason


def test_fold_intervals_per_network():
    per_fold = pd.DataFrame({"network": ["A"] * 6 + ["B"] * 2, "fold": [1, 1, 2, 2, 3, 3, 1, 1],
                             "iou": [0, 0, 1, 1, 2, 2, 0.2, 0.4]})
    t = St.fold_intervals(per_fold, n=4000)
    assert (t.loc["A", "low"], t.loc["A", "high"], t.loc["A", "folds"]) == (0.0, 2.0, 3)
    assert t.loc["B", "estimate"] == pytest.approx(0.3) and np.isnan(t.loc["B", "low"])
    assert "1 fold" in t.loc["B", "note"]


def test_correlation_test_is_the_exact_permutation_p_value():
    from itertools import permutations

    from scipy.stats import spearmanr

    acc = np.array([0.2, 0.3, 0.4, 0.5, 0.6])
    iou = np.array([0.11, 0.10, 0.13, 0.15, 0.14])  # ranks 2 1 3 5 4: rho = 0.8
    res = St.correlation_test(acc, iou)
    rho = spearmanr(acc, iou).statistic
    null = np.array([spearmanr(acc, iou[list(p)]).statistic for p in permutations(range(5))])
    two_sided = min(1.0, 2 * min(np.mean(null >= rho - 1e-12), np.mean(null <= rho + 1e-12)))
    assert res["r"] == pytest.approx(0.8) and res["n"] == 5
    assert res["p_value"] == pytest.approx(two_sided) == pytest.approx(16 / 120)
    assert np.isnan(St.correlation_test(acc[:2], iou[:2])["p_value"])


def test_paired_test_is_the_exact_sign_flip_p_value():
    from itertools import product

    a = np.array([0.30, 0.25, 0.40, 0.35, 0.20, 0.33])
    b = np.array([0.20, 0.27, 0.10, 0.30, 0.21, 0.12])
    d = a - b
    null = np.array([np.mean(d * s) for s in product([1, -1], repeat=6)])
    expected = min(1.0, 2 * min(np.mean(null >= d.mean() - 1e-12), np.mean(null <= d.mean() + 1e-12)))
    res = St.paired_test(a, b)
    assert res["mean_difference"] == pytest.approx(d.mean()) and res["p_value"] == pytest.approx(expected)
    assert res["p_value"] < 0.2 and St.paired_test(a, a[::-1])["p_value"] > 0.2


def test_accuracy_interval_is_wilson():
    ci = St.accuracy_interval(0.5, 100)
    z = 1.959963984540054
    half = z * np.sqrt(0.25 / 100 + z**2 / (4 * 100**2)) / (1 + z**2 / 100)
    assert ci.estimate == 0.5 and ci.low == pytest.approx(0.5 - half) and ci.high == pytest.approx(0.5 + half)


def test_paired_comparisons_pair_the_shared_cells():
    import itertools

    scores = pd.DataFrame({"method": ["a"] * 4 + ["b"] * 4 + ["c"] * 3,
                           "network": ["n1", "n1", "n2", "n2"] * 2 + ["n1", "n1", "n2"],
                           "expression": ["x", "y"] * 4 + ["x", "y", "x"],
                           "iou": [0.5, 0.6, 0.7, 0.8, 0.4, 0.5, 0.6, 0.9, 0.6, 0.7, 0.8]})
    table = St.paired_comparisons(scores, "iou", reference="a")
    d = np.array([-0.1, -0.1, -0.1, 0.1])  # b - a, cell by cell
    assert table.loc["b", "mean_difference"] == pytest.approx(d.mean())
    flips = [abs((d * s).mean()) >= abs(d.mean()) - 1e-12 for s in itertools.product([1, -1], repeat=4)]
    assert table.loc["b", "p_value"] == pytest.approx(np.mean(flips))
    assert table.loc["c", "n"] == 3 and table.loc["c", "mean_difference"] == pytest.approx(0.1)
    assert "a" not in table.index


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
    check = St.randomisation_comparison(trained, random, masks, images={"Anger": 3})
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


def test_sanity_check_saves_and_loads(tmp_path):
    masks = _square_masks()
    maps = {e: (m * 200 + 10).astype(np.uint8) for e, m in masks.items()}
    check = St.randomisation_comparison(maps, {e: h[::-1].copy() for e, h in maps.items()}, masks,
                                        dropped={"Surprise": "no test image predicted as this class"})
    assert St.SanityCheck.load(tmp_path) is None
    check.save(tmp_path / "s")
    back = St.SanityCheck.load(tmp_path / "s")
    assert back.dropped == check.dropped
    pd.testing.assert_frame_equal(back.scores, check.scores, check_dtype=False)
    pd.testing.assert_frame_equal(back.similarity, check.similarity)
    pd.testing.assert_frame_equal(back.comparison(), check.comparison())


def _two_image_stack():
    a = np.zeros((30, 30))
    a[:10] = 1.0  # exactly the Anger mask
    b = np.zeros((30, 30))
    b[5:25, 5:25] = 1.0
    return np.stack([a, b])


def test_bootstrap_image_means_resamples_images():
    masks = _square_masks()
    stack = _two_image_stack()
    # Two images: the resampled heatmap is a alone, b alone (1/4 each) or their mean (1/2); each
    # outcome has probability >= 2.5 %, so the 95 % interval runs from the lowest to the highest.
    outcomes = [Mt.binary_scores(Mt.binarize(to_uint8(heatmap(s))), masks["Anger"])["iou"]
                for s in (stack[:1], stack[1:], stack)]
    t = St.bootstrap_image_means({("N", 1, "Anger"): stack}, masks, n=400, seed=0)
    assert t.loc["N", "estimate"] == pytest.approx(outcomes[2])
    assert t.loc["N", "low"] == pytest.approx(min(outcomes)) and t.loc["N", "high"] == pytest.approx(max(outcomes))
    same = St.bootstrap_image_means({("N", 1, "Anger"): stack[[0, 0]], ("M", 1, "Fear"): stack[[1, 1, 1]]}, masks, n=50)
    assert same.loc["N", "low"] == same.loc["N", "high"] == 1.0  # identical images: no spread
    assert same.loc["Average", "estimate"] == pytest.approx((1.0 + same.loc["M", "estimate"]) / 2)


def test_bootstrap_image_distances_and_scores():
    stack = _two_image_stack()
    other = np.random.default_rng(1).random((1, 30, 30))
    t = St.bootstrap_image_distances({("A", 1, "Anger"): stack[:1], ("A", 2, "Anger"): stack[1:],  # folds pooled
                                   ("B", 1, "Anger"): other}, n=400, seed=0)
    b = to_uint8(heatmap(other))
    outcomes = [Mt.ncc_distance(to_uint8(heatmap(s)), b) for s in (stack[:1], stack[1:], stack)]
    row = t.iloc[0]
    assert (row.net_a, row.net_b, len(t)) == ("A", "B", 1)
    assert row.distance == pytest.approx(outcomes[2])
    assert row.low == pytest.approx(min(outcomes)) and row.high == pytest.approx(max(outcomes))
    ci = St.bootstrap_image_scores(stack, _square_masks()["Anger"], n=100)
    assert list(ci.index) == ["iou", "f1", "precision", "recall", "roc_auc"]
    assert ci.loc["iou", "high"] == 1.0 and ci.loc["iou", "low"] < ci.loc["iou", "value"] < 1.0


def test_holm_matches_its_step_down_definition():
    """Holm (1979): sort p ascending, multiply the i-th (0-based) by m - i, keep the running maximum, cap at 1."""
    rng = np.random.default_rng(3)
    for m in (1, 2, 5, 9):
        p = rng.uniform(0, 0.2, m)
        order = np.argsort(p)
        stepped = np.minimum(1, np.maximum.accumulate((m - np.arange(m)) * p[order]))
        expected = np.empty(m)
        expected[order] = stepped
        assert np.allclose(St.holm(p), expected)
    assert np.isnan(St.holm([0.01, np.nan])[1]) and St.holm([0.01, np.nan])[0] == pytest.approx(0.01)


def test_pairwise_comparisons_test_every_pair_on_shared_cells():
    rng = np.random.default_rng(0)
    wide = pd.DataFrame({"low": rng.normal(0.5, 0.01, 12), "high": rng.normal(0.8, 0.01, 12),
                         "mid": rng.normal(0.79, 0.01, 12)})
    wide.loc[0, "mid"] = np.nan  # a cell one group did not score: left out of its pairs only
    pairs = St.pairwise_comparisons(wide).set_index(["a", "b"])
    assert set(pairs.index) == {("high", "mid"), ("high", "low"), ("mid", "low")}  # a: the higher mean
    d = (wide.high - wide.low).to_numpy()
    row = pairs.loc[("high", "low")]
    assert row.difference == pytest.approx(d.mean()) and row.n == 12 and pairs.loc[("high", "mid"), "n"] == 11
    assert row.effect_size == pytest.approx(d.mean() / d.std(ddof=1))
    assert row.low < row.difference < row.high
    assert row.p_value == pytest.approx(2 / 2 ** 12)  # exact sign-flip: only all + and all - reach it
    assert np.allclose(pairs.p_holm, St.holm(pairs.p_value.to_numpy()))


def test_smallest_correlation_p_is_what_the_exact_test_reaches():
    x = np.arange(5.0)
    assert St.correlation_test(x, x)["p_value"] == pytest.approx(St.smallest_correlation_p(5))
    assert St.smallest_correlation_p(4) == pytest.approx(1 / 12) and St.smallest_correlation_p(1) == 1.0


# ------------------------------------------------------- accuracy against truthfulness over many points

def test_spearman_critical_values_are_the_published_ones_and_what_the_test_reaches():
    # Two-sided 0.05 critical values of Spearman's rho (Zar 1972, exact for n <= 10): 6: 0.886,
    # 7: 0.786, 9: 0.683, 10: 0.648; for 4 points none exists (smallest p 2/24)
    for n, published in [(6, 0.886), (7, 0.786), (9, 0.683), (10, 0.648)]:
        assert St.spearman_critical(n) == pytest.approx(published, abs=0.0015)
    assert np.isnan(St.spearman_critical(4)) and St.spearman_critical(5) == 1.0
    # the critical value computed independently: every ordering of 6 ranks, scipy's spearmanr
    from itertools import permutations

    from scipy.stats import spearmanr
    null = np.array([spearmanr(np.arange(6), p).statistic for p in permutations(range(6))])
    levels = np.unique(np.round(np.abs(null), 9))
    p = np.array([(np.abs(null) >= v - 1e-9).mean() for v in levels])
    assert St.spearman_critical(6) == pytest.approx(levels[p <= 0.05].min())
    # 16 points (the default's): drawn permutations, near the tabled 0.503 (Zar 1972)
    assert St.spearman_critical(16) == pytest.approx(0.503, abs=0.03)
    assert 0.6 < St.spearman_detectable(16) < 0.7 and St.spearman_detectable(16) > St.spearman_detectable(40)


def test_accuracy_relation_is_spearman_with_its_permutation_p():
    from itertools import permutations

    from scipy.stats import spearmanr
    # a hand-made case: one swap in 5 ranks, rho = 1 - 6 * 2 / (5 * 24) = 0.9
    points = pd.DataFrame({"method": "m", "accuracy": [0.1, 0.2, 0.3, 0.4, 0.5],
                           "truth": [0.50, 0.55, 0.60, 0.70, 0.65]})
    row = St.accuracy_relation(points, "truth").loc["m"]
    assert row.rho == pytest.approx(0.9) and row.n == 5
    # its exact two-sided p, enumerated independently: orderings with |rho| >= 0.9
    null = np.array([spearmanr(np.arange(5), p).statistic for p in permutations(range(5))])
    assert row.p_value == pytest.approx((np.abs(null) >= 0.9 - 1e-12).mean())
    assert row.rho_critical == 1.0 and row.low <= row.rho <= row.high
    # random points, two explainers: rho is scipy's, one relation per explainer
    rng = np.random.default_rng(3)
    many = pd.DataFrame({"method": np.repeat(["a", "b"], 16), "accuracy": rng.random(32), "truth": rng.random(32)})
    table = St.accuracy_relation(many, "truth", n_boot=200)
    for m in ("a", "b"):
        g = many[many.method == m]
        assert table.loc[m, "rho"] == pytest.approx(spearmanr(g.accuracy, g.truth).statistic)
        assert table.loc[m, "n"] == 16 and table.loc[m, "rho_critical"] == pytest.approx(0.503, abs=0.03)


def test_accuracy_relation_finds_a_rising_relation_and_not_a_flat_one():
    """Oracle: 4 networks x 4 states whose truthfulness rises with accuracy (plus small noise) must give
    rho near 1 and a small p; the same points with truthfulness shuffled, no relation."""
    rng = np.random.default_rng(0)
    acc = np.concatenate([np.linspace(0.17, top, 4) for top in (0.8, 0.85, 0.9, 0.95)])
    rising = pd.DataFrame({"method": "gradcam", "network": np.repeat(list("ABCD"), 4), "accuracy": acc,
                           "roc_auc_planted": 0.5 + 0.4 * acc + rng.normal(0, 0.005, 16)})
    row = St.accuracy_relation(rising, "roc_auc_planted", clusters="network").loc["gradcam"]
    assert row.rho > 0.95 and row.p_value < 0.001 and row.low > 0.8
    flat = rising.assign(roc_auc_planted=rng.permutation(rising.roc_auc_planted.to_numpy()))
    assert St.accuracy_relation(flat, "roc_auc_planted").loc["gradcam"].p_value > 0.05
