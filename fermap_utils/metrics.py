"""Comparing heatmaps with masks, and heatmaps with each other: the scores.

Otsu thresholding (as OpenCV computes it on 8-bit images), IoU, precision,
recall and F1 with the mask as ground truth, scores that need no threshold, and
the normalised cross-correlation the authors used to cluster networks; tables of
these scores. Statistics on the scores (intervals, tests, chance) are in
:mod:`fermap_utils.statistics` and :mod:`fermap_utils.specificity`.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import ndimage, stats
from scipy.cluster.hierarchy import linkage
from scipy.spatial.distance import squareform

METRICS: tuple[str, ...] = ("iou", "f1", "precision", "recall")


def otsu_threshold(image: np.ndarray) -> int:
    """Otsu's threshold of an 8-bit image, identical to OpenCV's ``THRESH_OTSU``.

    Pixels strictly above the threshold are the foreground. Among equally good
    thresholds the lowest is taken, as OpenCV does.

    Parameters
    ----------
    image : uint8 array
        Any shape; only the histogram matters.

    Returns
    -------
    threshold : int
        The grey level t in [0, 255] that maximises the between-class variance of
        {<= t} and {> t}; 0 for a constant image.

    Raises
    ------
    TypeError
        When ``image`` is not uint8.

    Examples
    --------
    >>> otsu_threshold(np.array([10, 10, 12, 200, 201, 203], np.uint8))
    12
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"Otsu's threshold is defined here on uint8 images, got {image.dtype}")
    hist = np.bincount(image.ravel(), minlength=256).astype(np.float64)
    p = hist / hist.sum()
    levels = np.arange(256, dtype=np.float64)
    w0 = np.cumsum(p)  # weight of the class <= t
    mu_t = np.cumsum(p * levels)
    mu = mu_t[-1]
    w1 = 1.0 - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma_b = (mu * w0 - mu_t) ** 2 / (w0 * w1)
    # OpenCV skips thresholds where either class is (numerically) empty.
    sigma_b[(w0 < 1e-12) | (w1 < 1e-12)] = 0.0
    return int(np.argmax(sigma_b))


def binarize(heatmap: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Threshold a heatmap: ``heatmap > threshold``.

    Parameters
    ----------
    heatmap : array
        uint8 when ``threshold`` is None.
    threshold : float, optional
        By default Otsu's (:func:`otsu_threshold`).

    Returns
    -------
    binary : bool array of ``heatmap``'s shape
    """
    heatmap = np.asarray(heatmap)
    t = otsu_threshold(heatmap) if threshold is None else threshold
    return heatmap > t


def binary_scores(prediction: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """IoU, F1, precision and recall of a binary prediction against a binary ground truth.

    With TP, FP and FN counted pixel by pixel: IoU = TP / (TP + FP + FN),
    F1 = 2 TP / (2 TP + FP + FN), precision = TP / (TP + FP), recall = TP / (TP + FN).

    Parameters
    ----------
    prediction, truth : bool arrays of one shape
        The thresholded heatmap and the mask (the ground truth).

    Returns
    -------
    scores : dict of str to float
        ``iou``, ``f1``, ``precision``, ``recall``. An empty prediction, mask or union gives
        0 for the undefined ratios and a ``RuntimeWarning``; never NaN.

    Raises
    ------
    ValueError
        When the shapes differ.

    Examples
    --------
    >>> binary_scores(np.array([1, 1, 1, 0, 0]), np.array([0, 1, 1, 1, 0]))
    {'iou': 0.5, 'f1': 0.6666666666666666, 'precision': 0.6666666666666666, 'recall': 0.6666666666666666}
    """
    pred = np.asarray(prediction, dtype=bool)
    true = np.asarray(truth, dtype=bool)
    if pred.shape != true.shape:
        raise ValueError(f"prediction {pred.shape} and mask {true.shape} differ in shape")
    tp = float(np.count_nonzero(pred & true))
    fp = float(np.count_nonzero(pred & ~true))
    fn = float(np.count_nonzero(~pred & true))

    def ratio(num: float, den: float, what: str) -> float:
        if den == 0:
            warnings.warn(f"{what} is undefined (empty {'prediction' if what == 'precision' else 'mask or union'}); "
                          "reported as 0", RuntimeWarning, stacklevel=3)
            return 0.0
        return num / den

    precision = ratio(tp, tp + fp, "precision")
    recall = ratio(tp, tp + fn, "recall")
    iou = ratio(tp, tp + fp + fn, "IoU")
    f1 = 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)
    return {"iou": iou, "f1": f1, "precision": precision, "recall": recall}


def score_heatmap(heatmap: np.ndarray, mask: np.ndarray, threshold: float | None = None) -> dict[str, float]:
    """Binarise a heatmap and score it against a mask, as the paper does.

    Parameters
    ----------
    heatmap : array
        uint8 when ``threshold`` is None.
    mask : bool array of ``heatmap``'s shape
    threshold : float, optional
        By default Otsu's.

    Returns
    -------
    scores : dict of str to float
        :func:`binary_scores` of ``heatmap > threshold`` against ``mask``.
    """
    return binary_scores(binarize(heatmap, threshold), mask)


def threshold_scores(heatmap: np.ndarray, mask: np.ndarray, thresholds: np.ndarray) -> pd.DataFrame:
    """The paper's scores of a heatmap at each of several thresholds.

    Parameters
    ----------
    heatmap : array
        The heatmap (uint8 for thresholds on the 0..255 scale).
    mask : bool array of ``heatmap``'s shape
        The ground truth.
    thresholds : array of numbers
        Each threshold; a pixel above it is kept.

    Returns
    -------
    DataFrame
        One row per threshold: ``threshold`` (as an int), ``iou, f1, precision, recall``
        (:func:`score_heatmap` at that threshold).

    Examples
    --------
    >>> h = np.array([[0, 100], [200, 250]], np.uint8)
    >>> t = threshold_scores(h, np.array([[False, False], [True, True]]), [50, 150])
    >>> t.threshold.tolist(), t.iou.round(3).tolist(), t.precision.round(3).tolist()
    ([50, 150], [0.667, 1.0], [0.667, 1.0])
    """
    return pd.DataFrame([{"threshold": int(t), **score_heatmap(heatmap, mask, float(t))} for t in thresholds])


def roc_auc(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """ROC-AUC of a heatmap's values against a mask, by ranks (Mann-Whitney U over the pixels).

    Parameters
    ----------
    heatmap : array
        Any numeric type; larger is more important. Tied values share their mean rank.
    mask : bool array of ``heatmap``'s shape

    Returns
    -------
    auc : float
        The probability that a pixel inside the mask outranks one outside (a tie counts half);
        NaN for an empty or full mask. Equal to scikit-learn's ``roc_auc_score`` on the pixels,
        without its sort of the whole curve.

    Examples
    --------
    >>> roc_auc(np.array([0.9, 0.1, 0.5, 0.5]), np.array([True, False, True, False]))
    0.875
    """
    m = np.asarray(mask, dtype=bool).ravel()
    positives = int(m.sum())
    negatives = m.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = stats.rankdata(np.asarray(heatmap, dtype=np.float64).ravel())
    return float((ranks[m].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Zero-mean normalised cross-correlation of two same-size images.

    Equal to OpenCV's ``TM_CCOEFF_NORMED`` for images of the same size.

    Parameters
    ----------
    a, b : arrays with the same number of pixels

    Returns
    -------
    r : float
        In [-1, 1]: the Pearson correlation of the pixel values.

    Raises
    ------
    ValueError
        When the sizes differ, or an image is constant (no correlation is defined).

    Examples
    --------
    >>> a = np.array([[0, 1], [2, 3]])
    >>> ncc(a, 10 * a + 5), ncc(a, -a)
    (1.0, -1.0)
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"images differ in size: {a.size} vs {b.size} pixels")
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt(np.dot(a, a) * np.dot(b, b))
    if den == 0:
        raise ValueError("normalised correlation is undefined for a constant image")
    return float(np.dot(a, b) / den)


def ncc_or_nan(a: np.ndarray, b: np.ndarray) -> float:
    """The NCC of two images, or NaN when either is constant.

    An explanation with no positive weight at all is a constant image, for which NCC is
    undefined (:func:`ncc` raises); comparing explanations made with other settings, such an
    image is reported as missing instead.

    Parameters
    ----------
    a, b : arrays with the same number of pixels

    Returns
    -------
    r : float
        :func:`ncc` of ``a`` and ``b``, or NaN when ``a`` or ``b`` is constant.

    Examples
    --------
    >>> a = np.array([[0, 1], [2, 3]])
    >>> ncc_or_nan(a, -a), ncc_or_nan(a, np.zeros((2, 2)))
    (-1.0, nan)
    """
    a, b = np.asarray(a), np.asarray(b)
    return ncc(a, b) if a.std() > 0 and b.std() > 0 else float("nan")


def ncc_distance(a: np.ndarray, b: np.ndarray) -> float:
    """1 - NCC, the authors' distance between heatmaps.

    Parameters
    ----------
    a, b : arrays
        As for :func:`ncc`.

    Returns
    -------
    distance : float
        In [0, 2]: 0 for heatmaps equal up to brightness and contrast, 2 for inverse ones.
    """
    return 1.0 - ncc(a, b)


def distance_matrix(heatmaps: dict[str, np.ndarray]) -> pd.DataFrame:
    """Pairwise 1 - NCC distances between named heatmaps.

    Parameters
    ----------
    heatmaps : dict of str to array
        Heatmaps of one size, by name.

    Returns
    -------
    distances : DataFrame
        Square, indexed and labelled by name, symmetric, 0 on the diagonal, in [0, 2].

    Raises
    ------
    ValueError
        Naming the constant heatmaps, for which no correlation is defined.
    """
    names = list(heatmaps)
    flat = np.stack([np.asarray(heatmaps[n], dtype=np.float64).ravel() for n in names])
    flat = flat - flat.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(flat, axis=1)
    if np.any(norms == 0):
        bad = [n for n, v in zip(names, norms) if v == 0]
        raise ValueError(f"normalised correlation is undefined for constant heatmaps: {', '.join(bad)}")
    corr = (flat @ flat.T) / np.outer(norms, norms)
    dist = np.clip(1.0 - corr, 0.0, 2.0)
    np.fill_diagonal(dist, 0.0)
    return pd.DataFrame(dist, index=names, columns=names)


def average_linkage(distances: pd.DataFrame) -> np.ndarray:
    """Average-linkage (UPGMA) clustering of a square distance matrix.

    Parameters
    ----------
    distances : (N, N) DataFrame or array
        Made symmetric by averaging with its transpose.

    Returns
    -------
    linkage : (N - 1, 4) array
        scipy's linkage matrix, for ``scipy.cluster.hierarchy.dendrogram``.
    """
    d = np.asarray(distances, dtype=np.float64)
    d = (d + d.T) / 2.0
    return linkage(squareform(d, checks=False), method="average")


def per_fold_scores(heatmaps: dict[tuple[str, int, str], np.ndarray], masks: dict[str, np.ndarray],
                    score=None) -> pd.DataFrame:
    """Score every (network, fold, expression) heatmap against its expression's mask.

    Parameters
    ----------
    heatmaps, masks : dict
        ``(network, fold, expression) -> uint8 heatmap`` and ``expression -> boolean mask``.
    score : callable, optional
        ``score(heatmap, mask) -> dict``; :func:`score_heatmap` (Otsu, then IoU, F1,
        precision, recall) by default.

    Returns
    -------
    scores : DataFrame
        One row per heatmap: ``network, fold, expression`` and the scores.

    Raises
    ------
    KeyError
        When a heatmap's expression has no mask.
    """
    score = score or score_heatmap
    rows = []
    for (net, fold, expr), hm in heatmaps.items():
        if expr not in masks:
            raise KeyError(f"no mask for expression {expr!r}")
        rows.append({"network": net, "fold": fold, "expression": expr, **score(hm, masks[expr])})
    return pd.DataFrame(rows)


def score_table(
    heatmaps: dict[tuple[str, int, str], np.ndarray],
    masks: dict[str, np.ndarray],
    network_order: list[str] | None = None,
) -> pd.DataFrame:
    """The paper's Tables 3 and 4 from per-fold heatmaps.

    Each (network, expression) value is the mean over folds of the metric of
    that fold's Otsu-thresholded heatmap; ``Average`` rows and columns are the
    means of those. Rows are ordered by ``network_order`` when given.

    Parameters
    ----------
    heatmaps : dict
        ``(network, fold, expression) -> uint8 heatmap``.
    masks : dict
        ``expression -> boolean mask``.
    network_order : list of str, optional
        The rows' order; networks not in it follow, sorted.

    Returns
    -------
    DataFrame with columns ``network, expression, iou, f1, precision, recall``.
    """
    per_fold = per_fold_scores(heatmaps, masks)
    table = per_fold.groupby(["network", "expression"], sort=False)[list(METRICS)].mean()
    wide = {m: table[m].unstack("expression") for m in METRICS}
    nets = list(wide["iou"].index)
    if network_order:
        nets = [n for n in network_order if n in nets] + sorted(n for n in nets if n not in network_order)
    exprs = [e for e in masks if e in wide["iou"].columns]
    out = []
    for m in METRICS:
        w = wide[m].loc[nets, exprs]
        w["Average"] = w.mean(axis=1)
        w.loc["Average"] = w.mean(axis=0)
        out.append(w.stack().rename(m))
    result = pd.concat(out, axis=1).reset_index()
    result.columns = ["network", "expression", *METRICS]
    return result


def compare_tables(ours: pd.DataFrame, paper: pd.DataFrame, decimals: int = 4) -> pd.DataFrame:
    """Join a score table with the paper's, cell by cell, rounded to the paper's decimals.

    Parameters
    ----------
    ours, paper : DataFrame
        Long score tables (``network, expression`` and metric columns), as
        :func:`score_table` and :func:`fermap_utils.scoring.load_paper_tables` give them.
    decimals : int, optional
        The paper's decimals.

    Returns
    -------
    comparison : DataFrame
        One row per (network, expression, metric) of ``paper``, with ``ours`` (NaN where
        fermap has no cell), ``paper`` and ``equal``.
    """
    metrics = [m for m in METRICS if m in paper.columns]
    left = ours.melt(id_vars=["network", "expression"], value_vars=metrics, var_name="metric", value_name="ours")
    right = paper.melt(id_vars=["network", "expression"], value_vars=metrics, var_name="metric", value_name="paper")
    out = right.merge(left, on=["network", "expression", "metric"], how="left")
    out["ours"] = out["ours"].round(decimals)
    out["equal"] = np.isclose(out["ours"], out["paper"].round(decimals), rtol=0, atol=0.5 * 10.0**-decimals / 10)
    return out


def best_worst(table: pd.DataFrame, k: int = 3, metric: str = "iou") -> pd.DataFrame:
    """The paper's Table 5: per expression, the best and worst networks by a metric.

    Parameters
    ----------
    table : DataFrame
        A long score table; its ``Average`` rows are left out.
    k : int, optional
        How many networks at each end.
    metric : str, optional
        The column to rank by.

    Returns
    -------
    ranking : DataFrame
        Indexed by expression, with ``best`` and ``worst`` as "1. name (0.123), 2. ...".
    """
    rows = []
    scored = table[(table.network != "Average") & (table.expression != "Average")].dropna(subset=[metric])
    for expr, group in scored.groupby("expression", sort=False):
        ranked = group.sort_values(metric, ascending=False)
        def fmt(g):
            return ", ".join(f"{i}. {n} ({v:.3f})" for i, (n, v) in enumerate(zip(g.network, g[metric]), 1))

        rows.append({"expression": expr, "best": fmt(ranked.head(k)), "worst": fmt(ranked.iloc[::-1].head(k))})
    return pd.DataFrame(rows).set_index("expression")


# ---------------------------------------------------------------- scores without a threshold

def iou_from_f1(f1: np.ndarray | float) -> np.ndarray | float:
    """IoU from F1: IoU = F1 / (2 - F1).

    Exact for one prediction against one mask, since both are ratios of the same
    TP, FP and FN; averages over heatmaps only approximately obey it.

    Parameters
    ----------
    f1 : float or array of float
        F1 scores in [0, 1].

    Returns
    -------
    iou : float64 array (0-d for a scalar)

    Examples
    --------
    >>> iou_from_f1([0.0, 0.5, 0.8, 1.0]).round(6).tolist()
    [0.0, 0.333333, 0.666667, 1.0]
    """
    f1 = np.asarray(f1, dtype=np.float64)
    return f1 / (2.0 - f1)


#: The pointing game's tolerance (Zhang et al. 2018): a hit within 15 pixels of the region, here pixels of the
#: 275x224 standard face every heatmap is graded on.
POINTING_TOLERANCE = 15.0


def pointing_game(heatmap: np.ndarray, mask: np.ndarray, tolerance: float = POINTING_TOLERANCE) -> float:
    """The pointing game (Zhang et al. 2018): does the heatmap's maximum fall within ``tolerance`` of the mask?

    Parameters
    ----------
    heatmap : array
        Larger is more important.
    mask : bool array of ``heatmap``'s shape
    tolerance : float, optional
        Pixels (Euclidean, to the nearest mask pixel). 15 by default, as Zhang et al. use, measured
        here on the 275x224 standard face; 0 asks for the maximum inside the mask.

    Returns
    -------
    float
        1 for a hit, 0 for a miss; when several pixels share the maximum, the share of them that hit
        (ties share the credit, where the paper takes one). 0 for an empty mask.
    """
    h = np.asarray(heatmap, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return 0.0
    distance = ndimage.distance_transform_edt(~m)  # to the nearest mask pixel: 0 inside
    return float((distance[h == h.max()] <= tolerance).mean())


def top_k_overlap(heatmap: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """The mask's area of top-valued pixels against the mask, ties at the cut broken fairly.

    K is the mask's area. The pixels above the K-th largest value are taken; of the
    pixels equal to it, as many as K still needs are drawn uniformly at random, and
    both scores are their exact expectation over that draw (the number drawn from
    inside the mask is hypergeometric). So the scores never depend on the pixels'
    raster order: a constant heatmap scores the same wherever the mask is.

    Parameters
    ----------
    heatmap : array
        Larger is more important.
    mask : bool array of ``heatmap``'s shape

    Returns
    -------
    dict
        ``relevance_rank_accuracy``: the expected share of the K pixels inside the mask (Arras et
        al. 2022); ``iou_area_matched``: the expected IoU of the K pixels with the mask,
        E[I / (2K - I)] for I pixels inside. Both NaN for an empty mask.
    """
    h = np.asarray(heatmap, dtype=np.float64).ravel()
    m = np.asarray(mask, dtype=bool).ravel()
    k = int(m.sum())
    if k == 0:
        return {"relevance_rank_accuracy": float("nan"), "iou_area_matched": float("nan")}
    cut = np.sort(h)[-k]  # the K-th largest value
    above, tied = h > cut, h == cut
    sure = int((above & m).sum())  # inside, and certainly taken
    draws = k - int(above.sum())  # how many of the tied pixels are taken
    inside = np.arange(draws + 1)
    p = stats.hypergeom.pmf(inside, int(tied.sum()), int((tied & m).sum()), draws)
    hits = sure + inside
    return {"relevance_rank_accuracy": float(p @ hits / k), "iou_area_matched": float(p @ (hits / (2 * k - hits)))}


def threshold_free_scores(heatmap: np.ndarray, mask: np.ndarray,
                          tolerance: float = POINTING_TOLERANCE) -> dict[str, float]:
    """Scores of a heatmap against a mask that need no threshold.

    Parameters
    ----------
    heatmap : array
        Any numeric type; larger is more important.
    mask : bool array of ``heatmap``'s shape
    tolerance : float, optional
        The pointing game's tolerance in pixels (:func:`pointing_game`).

    Returns
    -------
    scores : dict of str to float
        ``roc_auc``: ROC-AUC of the heatmap's values against the mask (NaN for an empty or
        full mask); ``relevance_mass``: the share of the heatmap's total inside the mask (0 for an
        all-zero heatmap); ``pointing_game`` (:func:`pointing_game`, with ``tolerance``);
        ``relevance_rank_accuracy`` and ``iou_area_matched``: the mask's area of top-valued pixels
        against the mask, ties broken fairly (:func:`top_k_overlap`).
    """
    h = np.asarray(heatmap, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    total = h.sum()
    return {
        "roc_auc": roc_auc(h, m),
        "relevance_mass": float(h[m].sum() / total) if total > 0 else 0.0,
        "pointing_game": pointing_game(h, m, tolerance),
        **top_k_overlap(h, m),
    }


def score(heatmap: np.ndarray, mask: np.ndarray, metric: str = "iou") -> float:
    """One score of a heatmap against a mask.

    Parameters
    ----------
    heatmap : uint8 array
    mask : bool array
    metric : str
        A thresholded metric (``iou``, ``f1``, ``precision``, ``recall``; Otsu's threshold) or a
        threshold-free one (``roc_auc``, ``relevance_mass``, ``pointing_game``, ``relevance_rank_accuracy``,
        ``iou_area_matched``).

    Returns
    -------
    float
    """
    if metric in METRICS:
        return score_heatmap(heatmap, mask)[metric]
    return threshold_free_scores(heatmap, mask)[metric]


def threshold_free_table(heatmaps: dict[tuple[str, str], np.ndarray], masks: dict[str, np.ndarray]) -> pd.DataFrame:
    """:func:`threshold_free_scores` and Otsu's IoU of each heatmap, averaged over expressions.

    Parameters
    ----------
    heatmaps : dict
        ``(network, expression) -> uint8 heatmap``.
    masks : dict
        ``expression -> boolean mask``.

    Returns
    -------
    DataFrame indexed by network: ``roc_auc, relevance_mass, pointing_game, relevance_rank_accuracy,
    iou_area_matched, iou_otsu``.
    """
    rows = [{"network": n, **threshold_free_scores(h, masks[e]), "iou_otsu": score_heatmap(h, masks[e])["iou"]}
            for (n, e), h in heatmaps.items()]
    return pd.DataFrame(rows).groupby("network", sort=False).mean(numeric_only=True)
