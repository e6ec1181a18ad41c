import warnings

import cv2
import numpy as np
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
    assert cophenet(z).shape == (10,)


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
