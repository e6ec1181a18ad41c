"""Comparing heatmaps with masks, and heatmaps with each other.

Otsu thresholding (as OpenCV computes it on 8-bit images), IoU, precision,
recall and F1 with the mask as ground truth, and the normalised
cross-correlation the authors used to cluster networks.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
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
        :func:`score_table` and :func:`load_paper_tables` give them.
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


# ---------------------------------------------------------------- the paper's tables

def load_paper_tables(reference: str | os.PathLike) -> pd.DataFrame | None:
    """The paper's Tables 3 and 4 as one long table, or None when the reference folder lacks them.

    Parameters
    ----------
    reference : path
        The folder holding ``table3_iou_f1.csv`` and ``table4_precision_recall.csv``.

    Returns
    -------
    DataFrame with columns ``network, expression, iou, f1, precision, recall`` (``Average``
    rows and columns included), or None.
    """
    reference = Path(reference)
    t3, t4 = reference / "table3_iou_f1.csv", reference / "table4_precision_recall.csv"
    if not (t3.is_file() and t4.is_file()):
        return None
    merged = pd.read_csv(t3).merge(pd.read_csv(t4), on=["network", "expression"], how="outer", validate="one_to_one")
    return merged[["network", "expression", *METRICS]]


def side_by_side(ours: pd.DataFrame, paper: pd.DataFrame | None, metric: str, columns: list[str],
                 paper_order: list[str] | None = None) -> pd.DataFrame:
    """One metric of a score table as networks x expressions, stacked above the paper's.

    Parameters
    ----------
    ours, paper : DataFrame
        Long score tables (``network, expression, <metric>``); ``paper`` may be None.
    metric : str
        The column to show.
    columns : list of str
        The expressions (and ``Average``), in order.
    paper_order : list of str, optional
        The paper's network order; ``Average`` goes last.

    Returns
    -------
    DataFrame indexed by network (by ``(source, network)`` when ``paper`` is given).
    """
    def wide(table: pd.DataFrame, order: list[str]) -> pd.DataFrame:
        return table.pivot(index="network", columns="expression", values=metric).reindex(index=order, columns=columns)

    mine = wide(ours, list(dict.fromkeys(ours.network)))
    if paper is None:
        return mine
    order = [n for n in (paper_order or list(dict.fromkeys(paper.network))) if n != "Average"] + ["Average"]
    return pd.concat({"fermap": mine, "paper (real data)": wide(paper, order)}, axis=0)


# ---------------------------------------------------------------- statistics the paper lacks

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


def threshold_free_scores(heatmap: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Scores of a heatmap against a mask that need no threshold.

    Parameters
    ----------
    heatmap : array
        Any numeric type; larger is more important.
    mask : bool array of ``heatmap``'s shape

    Returns
    -------
    scores : dict of str to float
        ``roc_auc``: ROC-AUC of the heatmap's values against the mask (NaN for an empty or
        full mask); ``relevance_mass``: the share of the heatmap's total inside the mask (0 for an
        all-zero heatmap); ``pointing_game``: the share of the heatmap's maxima inside the mask
        (ties share the credit); ``iou_area_matched``: the IoU of the mask's area of top-valued
        pixels with the mask.
    """
    from sklearn.metrics import roc_auc_score

    h = np.asarray(heatmap, dtype=np.float64).ravel()
    m = np.asarray(mask, dtype=bool).ravel()
    total = h.sum()
    peak = h.max()
    keep = int(m.sum())
    order = np.argsort(-h, kind="stable")[:keep]  # the mask's area, most important pixels first
    matched = np.zeros_like(m)
    matched[order] = True
    return {
        "roc_auc": float(roc_auc_score(m, h)) if 0 < m.sum() < m.size else float("nan"),
        "relevance_mass": float(h[m].sum() / total) if total > 0 else 0.0,
        "pointing_game": float(m[h == peak].mean()),  # ties share the credit
        "iou_area_matched": binary_scores(matched, m)["iou"],
    }


def score(heatmap: np.ndarray, mask: np.ndarray, metric: str = "iou") -> float:
    """One score of a heatmap against a mask.

    Parameters
    ----------
    heatmap : uint8 array
    mask : bool array
    metric : str
        A thresholded metric (``iou``, ``f1``, ``precision``, ``recall``; Otsu's threshold) or a
        threshold-free one (``roc_auc``, ``relevance_mass``, ``pointing_game``, ``iou_area_matched``).

    Returns
    -------
    float
    """
    if metric in METRICS:
        return score_heatmap(heatmap, mask)[metric]
    return threshold_free_scores(heatmap, mask)[metric]


class Interval(NamedTuple):
    """A point estimate with its confidence interval; ``reason`` says why there is none (then NaN)."""

    estimate: float
    low: float
    high: float
    reason: str = ""


def cluster_bootstrap(values: np.ndarray, clusters: np.ndarray, n: int = 2000, seed: int = 0) -> np.ndarray:
    """Bootstrap replicates of a mean when whole clusters (e.g. folds) are the sampling unit.

    Each replicate draws as many clusters as there are, with replacement, and takes the mean
    of all values of the drawn clusters (a cluster drawn twice counts twice).

    Parameters
    ----------
    values : array of float
        One value per cell (e.g. per (fold, expression) heatmap); NaNs are dropped.
    clusters : array
        The cluster of each value (e.g. its fold).
    n : int
        Number of replicates.
    seed : int
        Seed of the draws.

    Returns
    -------
    ndarray of shape (n,): the replicates.
    """
    values = np.asarray(values, dtype=np.float64)
    clusters = np.asarray(clusters)
    keep = ~np.isnan(values)
    labels, which = np.unique(clusters[keep], return_inverse=True)
    sums = np.bincount(which, weights=values[keep], minlength=len(labels))
    sizes = np.bincount(which, minlength=len(labels)).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(labels), size=(n, len(labels)))
    times = np.stack([np.bincount(d, minlength=len(labels)) for d in draws])  # how often each cluster was drawn
    return (times @ sums) / (times @ sizes)


def bootstrap_ci(values: np.ndarray, clusters: np.ndarray | None = None, n: int = 2000, level: float = 0.95,
                 seed: int = 0) -> Interval:
    """Percentile bootstrap interval of the mean of ``values``, resampling clusters when given.

    Parameters
    ----------
    values : array of float
        The values (NaNs dropped).
    clusters : array, optional
        The cluster (e.g. fold) of each value. Given, whole clusters are resampled
        (:func:`cluster_bootstrap`), so the spread between cells of one cluster (e.g. between
        expressions) does not pass for uncertainty over clusters.
    n, level, seed
        Replicates, confidence level and seed.

    Returns
    -------
    Interval(estimate, low, high, reason): NaN bounds and a reason when fewer than two
    values, or two clusters, exist.
    """
    values = np.asarray(values, dtype=np.float64)
    keep = ~np.isnan(values)
    estimate = float(values[keep].mean()) if keep.any() else float("nan")
    if clusters is None:
        if keep.sum() < 2:
            return Interval(estimate, float("nan"), float("nan"), f"{int(keep.sum())} value(s): no interval")
        clusters = np.arange(len(values))
    n_clusters = len(np.unique(np.asarray(clusters)[keep]))
    if n_clusters < 2:
        return Interval(estimate, float("nan"), float("nan"),
                        f"{n_clusters} fold(s): no interval over folds exists")
    replicates = cluster_bootstrap(values, clusters, n, seed)
    lo, hi = np.quantile(replicates, [(1 - level) / 2, 1 - (1 - level) / 2])
    return Interval(estimate, float(lo), float(hi))


def fold_intervals(per_fold: pd.DataFrame, metric: str = "iou", by: str = "network", n: int = 2000,
                   level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Each group's mean score with its bootstrap interval over folds (folds resampled whole).

    Parameters
    ----------
    per_fold : DataFrame
        One row per heatmap with ``fold``, ``by`` and ``metric`` columns (:func:`per_fold_scores`).
    metric : str, optional
        The score to average.
    by : str, optional
        The column that names the groups.
    n, level, seed
        Replicates, confidence level and seed of :func:`bootstrap_ci`.

    Returns
    -------
    DataFrame indexed by ``by``: ``estimate, low, high, folds, heatmaps, note``.
    """
    rows = []
    for key, g in per_fold.groupby(by, sort=False):
        ci = bootstrap_ci(g[metric].to_numpy(), g["fold"].to_numpy(), n, level, seed)
        rows.append({by: key, **ci._asdict(), "folds": g["fold"].nunique(), "heatmaps": len(g)})
    table = pd.DataFrame(rows).set_index(by)
    return table.rename(columns={"reason": "note"})


def correlation_test(x: np.ndarray, y: np.ndarray, method: str = "spearman", n_resamples: int = 9999,
                     seed: int = 0) -> dict[str, float]:
    """A correlation with its two-sided permutation p-value (exact when ``n!`` <= ``n_resamples``).

    Parameters
    ----------
    x, y : array of float
        Paired values; pairs with a NaN are dropped.
    method : {"spearman", "pearson"}
    n_resamples, seed
        Random permutations when the exact test is too large, and their seed.

    Returns
    -------
    dict with ``r``, ``p_value`` and ``n``; NaN for fewer than 3 pairs or a constant variable.
    """
    from scipy import stats

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"r": float("nan"), "p_value": float("nan"), "n": int(len(x))}
    corr = {"spearman": lambda a: stats.spearmanr(a, y).statistic,
            "pearson": lambda a: stats.pearsonr(a, y).statistic}[method]
    # Permuting one variable is enough: the pairings are what the null hypothesis breaks.
    result = stats.permutation_test((x,), corr, permutation_type="pairings", vectorized=False,
                                    n_resamples=n_resamples, random_state=seed)
    return {"r": float(result.statistic), "p_value": float(result.pvalue), "n": int(len(x))}


def paired_test(a: np.ndarray, b: np.ndarray, n_resamples: int = 9999, seed: int = 0) -> dict[str, float]:
    """Mean of ``a - b`` over pairs with its two-sided sign-flip permutation p-value.

    Parameters
    ----------
    a, b : arrays of float of one length
        Paired values; pairs with a NaN are dropped.
    n_resamples : int, optional
        The test is exact (every sign flip enumerated) for up to log2(``n_resamples``) pairs.
    seed : int, optional
        For the random sign flips beyond that.

    Returns
    -------
    result : dict
        ``mean_difference``, ``p_value`` and ``n``; the p-value is NaN for fewer than 2 pairs.
    """
    from scipy import stats

    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    d = d[~np.isnan(d)]
    if len(d) < 2:
        return {"mean_difference": float(d.mean()) if len(d) else float("nan"), "p_value": float("nan"), "n": len(d)}
    result = stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=n_resamples,
                                    random_state=seed, vectorized=False)
    return {"mean_difference": float(d.mean()), "p_value": float(result.pvalue), "n": int(len(d))}


def accuracy_interval(accuracy: float, n_test: int, level: float = 0.95) -> Interval:
    """Wilson interval of a test accuracy measured on ``n_test`` images (scipy's ``binomtest``).

    Parameters
    ----------
    accuracy : float
        Share of correct predictions (rounded to a whole number of images).
    n_test : int
        Number of test images.
    level : float
        Confidence level.

    Returns
    -------
    Interval(estimate, low, high, reason="").
    """
    from scipy import stats

    k = int(round(accuracy * n_test))
    ci = stats.binomtest(k, int(n_test)).proportion_ci(confidence_level=level, method="wilson")
    return Interval(k / n_test, float(ci.low), float(ci.high))


# ---------------------------------------------------------------- mask specificity

def specificity_matrix(heatmaps: dict[str, np.ndarray], masks: dict[str, np.ndarray],
                       metric: str = "iou") -> pd.DataFrame:
    """Heatmap of expression i (rows) scored against the mask of expression j (columns).

    Parameters
    ----------
    heatmaps : dict
        ``expression -> uint8 heatmap``.
    masks : dict
        ``expression -> boolean mask``.
    metric : str, optional
        Any of :func:`score`'s (IoU after Otsu by default; ``roc_auc`` needs no threshold).

    Returns
    -------
    matrix : DataFrame
        Heatmaps by masks. Expression-specific heatmaps score highest on the diagonal.
    """
    return pd.DataFrame({j: {i: score(h, masks[j], metric) for i, h in heatmaps.items()} for j in masks})


def column_normalised(matrix: pd.DataFrame) -> pd.DataFrame:
    """Subtract from each column (mask) its mean over all rows (heatmaps).

    A large or central mask scores well against every heatmap; after this, a cell says how
    much better than usual a heatmap does on that mask.

    Parameters
    ----------
    matrix : DataFrame
        Heatmaps (rows) by masks (columns), e.g. :func:`specificity_matrix`.

    Returns
    -------
    DataFrame of the same shape, each column with mean 0.
    """
    return matrix - matrix.mean(axis=0)


def own_mask_best(matrix: pd.DataFrame) -> int:
    """How many rows (heatmaps) score best on their own expression's column (mask).

    Parameters
    ----------
    matrix : DataFrame
        Heatmaps (rows) by masks (columns), named by expression.

    Returns
    -------
    int
    """
    rows = [e for e in matrix.index if e in matrix.columns]
    return int(sum(matrix.loc[e].idxmax() == e for e in rows))


def specificity_test(matrix: pd.DataFrame) -> dict[str, float]:
    """Label-permutation test of a square heatmap-by-mask matrix.

    Statistic: mean diagonal minus mean off-diagonal. Null: the heatmaps' expression labels
    are exchangeable; all ``k!`` relabellings are enumerated (720 for six expressions). The
    p-value is the share of relabellings (the observed one included) whose statistic is at
    least the observed one. Subtracting column means shifts every relabelling's statistic
    alike, so the test is already free of how central each mask is.

    Parameters
    ----------
    matrix : DataFrame
        Heatmaps (rows) by masks (columns), named by expression, e.g. :func:`specificity_matrix`.

    Returns
    -------
    result : dict
        ``statistic``, ``p_value``, ``permutations``, ``own_best`` (raw row-wise count)
        and ``own_best_corrected`` (the count on the column-normalised matrix).

    Raises
    ------
    ValueError
        When fewer than two expressions are both rows and columns.
    """
    from scipy import stats

    labels = [e for e in matrix.index if e in matrix.columns]
    m = matrix.loc[labels, labels].to_numpy(dtype=np.float64)
    k = len(labels)
    if k < 2:
        raise ValueError("a specificity test needs at least two expressions")
    total = m.sum()
    rows = np.arange(k)

    def statistic(perm: np.ndarray) -> float:  # heatmap perm[j] labelled as expression j
        diag = m[perm, rows].sum()
        return diag / k - (total - diag) / (k * k - k)

    result = stats.permutation_test((rows,), statistic, permutation_type="pairings", vectorized=False,
                                    n_resamples=np.inf, alternative="greater")
    return {"statistic": float(result.statistic), "p_value": float(result.pvalue),
            "permutations": int(len(result.null_distribution)), "own_best": own_mask_best(matrix),
            "own_best_corrected": own_mask_best(column_normalised(matrix))}


#: The specificity report's metrics: (key of :func:`score`, the name a reader sees).
SPECIFICITY_METRICS: tuple[tuple[str, str], ...] = (("iou", "IoU after Otsu"), ("roc_auc", "ROC-AUC"))


def specificity_report(heatmaps: dict[str, np.ndarray], masks: dict[str, np.ndarray]) -> list[dict]:
    """Whether heatmaps are specific to their expression, for each of :data:`SPECIFICITY_METRICS`.

    For each metric: the heatmap-by-mask matrix (:func:`specificity_matrix`), for IoU also its
    column-normalised form (:func:`column_normalised`), the own-mask count of each
    (:func:`own_mask_best`), and the label-permutation test (:func:`specificity_test`) with a
    one-sentence verdict at the 5 % level.

    Parameters
    ----------
    heatmaps : dict
        ``expression -> uint8 heatmap`` (e.g. the global heatmaps H_c).
    masks : dict
        ``expression -> boolean mask``.

    Returns
    -------
    list of dict, one per metric
        ``metric`` (its name), ``tables`` (``{"raw": matrix}`` and, for IoU,
        ``"column-normalised"``), ``own_best`` (``{kind: count}``), ``rows`` (the number of
        heatmaps), ``test`` (:func:`specificity_test`'s result) and ``verdict`` (a sentence
        with the statistic and the p-value).
    """
    report = []
    for metric, name in SPECIFICITY_METRICS:
        m = specificity_matrix(heatmaps, masks, metric=metric)
        t = specificity_test(m)
        tables = {"raw": m, "column-normalised": column_normalised(m)} if metric == "iou" else {"raw": m}
        verdict = (f"{name}: mean diagonal − mean off-diagonal = {t['statistic']:.3f}, "
                   f"permutation p = {t['p_value']:.4f} ({t['permutations']} relabellings): "
                   + ("specific to their expression beyond chance at the 5 % level." if t["p_value"] < 0.05 else
                      "no evidence at the 5 % level that the heatmaps are specific to their expression."))
        report.append({"metric": name, "tables": tables, "own_best": {k: own_mask_best(v) for k, v in tables.items()},
                       "rows": len(m), "test": t, "verdict": verdict})
    return report


def specificity_by_network(heatmaps: dict[tuple[str, str], np.ndarray], masks: dict[str, np.ndarray],
                           metric: str = "iou") -> pd.DataFrame:
    """:func:`specificity_test` for each network's heatmaps H(n,c).

    Parameters
    ----------
    heatmaps : dict
        ``(network, expression) -> heatmap``.
    masks : dict
        ``expression -> boolean mask``.
    metric : str, optional
        Any of :func:`score`'s.

    Returns
    -------
    DataFrame indexed by network: ``expressions, own mask best, own mask best (corrected),
    own mask, other masks, statistic, p_value``. Networks with fewer than two heatmaps are left out.
    """
    rows = []
    for net in dict.fromkeys(n for n, _ in heatmaps):
        maps = {e: heatmaps[(net, e)] for e in masks if (net, e) in heatmaps}
        if len(maps) < 2:
            continue
        m = specificity_matrix(maps, masks, metric)
        t = specificity_test(m)
        square = m.loc[list(maps), list(maps)].to_numpy()
        off = ~np.eye(len(maps), dtype=bool)
        rows.append({"network": net, "expressions": len(maps), "own mask best": t["own_best"],
                     "own mask best (corrected)": t["own_best_corrected"], "own mask": np.diag(square).mean(),
                     "other masks": square[off].mean(), "statistic": t["statistic"], "p_value": t["p_value"]})
    return pd.DataFrame(rows).set_index("network")


# ---------------------------------------------------------------- chance baselines

def centred_gaussian(shape: tuple[int, int], sigma: float) -> np.ndarray:
    """A Gaussian of ``sigma`` pixels centred on the canvas, as an 8-bit heatmap.

    Parameters
    ----------
    shape : (int, int)
        Height and width.
    sigma : float
        Standard deviation in pixels.

    Returns
    -------
    uint8 array of ``shape``, 255 at the centre.
    """
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    g = np.exp(-((yy - shape[0] / 2) ** 2 + (xx - shape[1] / 2) ** 2) / (2 * sigma ** 2))
    return np.round(255 * g / g.max()).astype(np.uint8)


def chance_baselines(masks: dict[str, np.ndarray], n: int = 20, seed: int = 0,
                     sigma: float = 60.0) -> pd.DataFrame:
    """What the Otsu -> IoU path gives without any learning, per mask.

    Parameters
    ----------
    masks : dict
        ``expression -> boolean mask``, all of one shape.
    n : int, optional
        Noise heatmaps drawn per mask and kind.
    seed : int, optional
        Seeds the noise.
    sigma : float, optional
        The centred Gaussian's width in pixels.

    Returns
    -------
    baselines : DataFrame
        Indexed by expression, the IoU of: ``uniform``, white-noise heatmaps (mean over ``n``);
        ``smooth noise``, noise blurred to the scale of face parts; ``centre``, a centred Gaussian
        of ``sigma`` pixels (centre bias; see :func:`centre_bias_curve` for how much it depends on
        ``sigma``); ``other masks``, each other expression's mask used as the heatmap (mean);
        and the ``mask area`` as a share of the canvas.
    """
    import cv2

    rng = np.random.default_rng(seed)
    shape = next(iter(masks.values())).shape
    centre = centred_gaussian(shape, sigma)

    def stretch_u8(a):
        a = a - a.min()
        return np.round(255 * a / a.max()).astype(np.uint8)

    rows = []
    for e, m in masks.items():
        noise = [score_heatmap(rng.integers(0, 256, shape, dtype=np.uint8), m)["iou"] for _ in range(n)]
        smooth = [score_heatmap(stretch_u8(cv2.GaussianBlur(rng.random(shape).astype(np.float32), (0, 0), 15)),
                                m)["iou"]
                  for _ in range(n)]
        others = [score_heatmap(masks[o].astype(np.uint8) * 255, m)["iou"] for o in masks if o != e]
        rows.append({"expression": e, "uniform": np.mean(noise), "smooth noise": np.mean(smooth),
                     "centre": score_heatmap(centre, m)["iou"], "other masks": np.mean(others),
                     "mask area": float(m.mean())})
    return pd.DataFrame(rows).set_index("expression")


def centre_bias_curve(masks: dict[str, np.ndarray], sigmas: np.ndarray) -> pd.DataFrame:
    """IoU (after Otsu) of a centred Gaussian with each mask, for each width ``sigma``.

    Parameters
    ----------
    masks : dict
        ``expression -> boolean mask``, all of one shape.
    sigmas : array of float
        The Gaussian's widths, in pixels.

    Returns
    -------
    DataFrame indexed by ``sigma`` (pixels): one column per expression and ``mean``.
    """
    shape = next(iter(masks.values())).shape
    rows = {float(s): {e: score_heatmap(centred_gaussian(shape, s), m)["iou"] for e, m in masks.items()}
            for s in sigmas}
    table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("sigma")
    table["mean"] = table.mean(axis=1)
    return table


def crossings(x: np.ndarray, y: np.ndarray, level: float) -> list[float]:
    """Where a piecewise-linear curve ``y(x)`` takes the value ``level``.

    Parameters
    ----------
    x, y : array of float
        The curve's points, ``x`` increasing.
    level : float
        The value sought.

    Returns
    -------
    list of float: every ``x`` where the curve equals ``level`` (linear interpolation between points).
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64) - level
    out = [float(x[i]) for i in np.flatnonzero(y == 0)]
    for i in np.flatnonzero(y[:-1] * y[1:] < 0):
        out.append(float(x[i] - y[i] * (x[i + 1] - x[i]) / (y[i + 1] - y[i])))
    return sorted(out)


# ---------------------------------------------------------------- model-randomisation sanity check

@dataclass
class SanityCheck:
    """Trained against randomised-weights heatmaps (Adebayo et al. 2018), on the same expressions.

    Attributes
    ----------
    scores : DataFrame
        One row per (expression, model) with the scores against the expression's mask.
    similarity : DataFrame
        Per expression, how alike the two heatmaps are: Spearman rank correlation and SSIM
        (Adebayo et al.'s measures); 1 means identical, i.e. the explanation ignores the weights.
    dropped : dict
        Expression -> why it was left out of the comparison (for both models).
    """

    scores: pd.DataFrame
    similarity: pd.DataFrame
    dropped: dict[str, str] = field(default_factory=dict)

    def comparison(self, metrics: tuple[str, ...] = ("iou", "f1", "roc_auc")) -> pd.DataFrame:
        """Per metric: the trained and randomised means over the compared expressions, their
        difference and its exact sign-flip p-value (:func:`paired_test`)."""
        rows = []
        for m in metrics:
            wide = self.scores.pivot(index="expression", columns="model", values=m)
            t = paired_test(wide["trained"].to_numpy(), wide["random weights"].to_numpy())
            rows.append({"metric": m, "trained": wide["trained"].mean(),
                         "random weights": wide["random weights"].mean(),
                         "difference": t["mean_difference"], "p_value": t["p_value"], "expressions": t["n"]})
        return pd.DataFrame(rows).set_index("metric")

    def save(self, folder: str | os.PathLike) -> None:
        """Write ``scores.csv``, ``similarity.csv`` and ``dropped.json`` to ``folder``."""
        import json

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.scores.to_csv(folder / "scores.csv", index=False)
        self.similarity.to_csv(folder / "similarity.csv")
        (folder / "dropped.json").write_text(json.dumps(self.dropped, indent=1))

    @classmethod
    def load(cls, folder: str | os.PathLike) -> SanityCheck | None:
        """What :meth:`save` wrote, or None when ``folder`` holds no sanity check."""
        import json

        folder = Path(folder)
        if not (folder / "dropped.json").is_file():
            return None
        return cls(pd.read_csv(folder / "scores.csv"), pd.read_csv(folder / "similarity.csv", index_col="expression"),
                   json.loads((folder / "dropped.json").read_text()))


def randomisation_comparison(trained: dict[str, np.ndarray], randomised: dict[str, np.ndarray],
                             masks: dict[str, np.ndarray], images: dict[str, int] | None = None,
                             dropped: dict[str, str] | None = None) -> SanityCheck:
    """Score trained and randomised-weights heatmaps on the expressions both can be scored on.

    Parameters
    ----------
    trained, randomised : dict
        ``expression -> uint8 heatmap`` of the trained network and of the same architecture
        with fresh random weights, from the same images.
    masks : dict
        ``expression -> boolean mask``.
    images : dict, optional
        ``expression -> number of images`` behind each heatmap.
    dropped : dict, optional
        Expressions already left out, with the reason (e.g. no image predicted as it).

    Returns
    -------
    SanityCheck. An expression whose heatmap is constant for either model, or missing for
    one, is dropped for both, with the reason, so both are compared on the same set.
    """
    from scipy.stats import spearmanr
    from skimage.metrics import structural_similarity

    dropped = dict(dropped or {})
    images = images or {}
    rows, similar = [], []
    for e in dict.fromkeys([*trained, *randomised]):
        pair = {"trained": trained.get(e), "random weights": randomised.get(e)}
        missing = [k for k, h in pair.items() if h is None]
        constant = [k for k, h in pair.items() if h is not None and h.min() == h.max()]
        if missing or constant:
            dropped[e] = "; ".join([f"no heatmap from the {k} network" for k in missing]
                                   + [f"constant heatmap from the {k} network" for k in constant])
            continue
        for label, h in pair.items():
            rows.append({"expression": e, "model": label, "images": images.get(e, np.nan), **score_heatmap(h, masks[e]),
                         "roc_auc": threshold_free_scores(h, masks[e])["roc_auc"]})
        a, b = pair["trained"], pair["random weights"]
        similar.append({"expression": e, "rank correlation": float(spearmanr(a.ravel(), b.ravel()).statistic),
                        "ssim": float(structural_similarity(a, b, data_range=255))})
    columns = ["expression", "model", "images", *METRICS, "roc_auc"]
    return SanityCheck(pd.DataFrame(rows, columns=columns),
                       pd.DataFrame(similar, columns=["expression", "rank correlation", "ssim"])
                       .set_index("expression"),
                       dropped)


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
    DataFrame indexed by network: ``roc_auc, relevance_mass, pointing_game, iou_area_matched, iou_otsu``.
    """
    rows = [{"network": n, **threshold_free_scores(h, masks[e]), "iou_otsu": score_heatmap(h, masks[e])["iou"]}
            for (n, e), h in heatmaps.items()]
    return pd.DataFrame(rows).groupby("network", sort=False).mean(numeric_only=True)


def paired_comparisons(scores: pd.DataFrame, value: str, reference: str, group: str = "method",
                       pair: tuple[str, ...] = ("network", "expression")) -> pd.DataFrame:
    """Each group (e.g. explainer) against a reference group, over the cells they share.

    Parameters
    ----------
    scores : DataFrame
        One row per (group, cell); a cell is identified by the ``pair`` columns.
    value : str
        The score column compared.
    reference : str
        The group every other group is compared with.
    group : str, optional
        The column naming the groups.
    pair : tuple of str, optional
        The columns that identify a cell; only cells both groups scored are paired.

    Returns
    -------
    table : DataFrame
        Indexed by group: ``mean_difference`` (group minus reference), ``p_value`` (exact
        sign-flip test, :func:`paired_test`) and ``n`` (paired cells).
    """
    wide = scores.pivot_table(index=list(pair), columns=group, values=value)
    rows = {g: paired_test(wide[g].to_numpy(), wide[reference].to_numpy())
            for g in wide.columns if g != reference}
    return pd.DataFrame(rows).T[["mean_difference", "p_value", "n"]]
