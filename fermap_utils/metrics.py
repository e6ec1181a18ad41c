"""Comparing heatmaps with masks, and heatmaps with each other.

Otsu thresholding (as OpenCV computes it on 8-bit images), IoU, precision,
recall and F1 with the mask as ground truth, and the normalised
cross-correlation the authors used to cluster networks.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import linkage
from scipy.spatial.distance import squareform

METRICS: tuple[str, ...] = ("iou", "f1", "precision", "recall")


def otsu_threshold(image: np.ndarray) -> int:
    """Otsu's threshold of an 8-bit image, identical to OpenCV's ``THRESH_OTSU``.

    Pixels strictly above the threshold are the foreground. Among equally good
    thresholds the lowest is taken, as OpenCV does.
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
    """Threshold a heatmap: ``heatmap > threshold``, Otsu's by default (heatmap must then be uint8)."""
    heatmap = np.asarray(heatmap)
    t = otsu_threshold(heatmap) if threshold is None else threshold
    return heatmap > t


def binary_scores(prediction: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """IoU, F1, precision and recall of a binary prediction against a binary ground truth.

    An empty prediction, mask or union gives 0 for the undefined ratios and a
    ``RuntimeWarning``; never NaN.
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
    """Binarise a heatmap (Otsu by default) and score it against a mask."""
    return binary_scores(binarize(heatmap, threshold), mask)


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Zero-mean normalised cross-correlation of two same-size images, in [-1, 1].

    Equal to OpenCV's ``TM_CCOEFF_NORMED`` for images of the same size. A
    constant image has no defined correlation: ``ValueError``.
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


def ncc_distance(a: np.ndarray, b: np.ndarray) -> float:
    """1 - NCC: 0 for identical heatmaps, 2 for inverse ones."""
    return 1.0 - ncc(a, b)


def distance_matrix(heatmaps: dict[str, np.ndarray]) -> pd.DataFrame:
    """Pairwise 1 - NCC distances between named heatmaps, as a square DataFrame."""
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
    """Average-linkage (UPGMA) clustering of a square distance matrix, as scipy's linkage matrix."""
    d = np.asarray(distances, dtype=np.float64)
    d = (d + d.T) / 2.0
    return linkage(squareform(d, checks=False), method="average")


def per_fold_scores(heatmaps: dict[tuple[str, int, str], np.ndarray], masks: dict[str, np.ndarray],
                    score=None) -> pd.DataFrame:
    """One row per (network, fold, expression) heatmap with its scores against the expression's mask
    (``score(heatmap, mask) -> dict``; Otsu then IoU, F1, precision, recall by default)."""
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

    Returns one row per (network, expression, metric) with ``ours``, ``paper`` and ``equal``.
    """
    metrics = [m for m in METRICS if m in paper.columns]
    left = ours.melt(id_vars=["network", "expression"], value_vars=metrics, var_name="metric", value_name="ours")
    right = paper.melt(id_vars=["network", "expression"], value_vars=metrics, var_name="metric", value_name="paper")
    out = right.merge(left, on=["network", "expression", "metric"], how="left")
    out["ours"] = out["ours"].round(decimals)
    out["equal"] = np.isclose(out["ours"], out["paper"].round(decimals), rtol=0, atol=0.5 * 10.0**-decimals / 10)
    return out


def best_worst(table: pd.DataFrame, k: int = 3, metric: str = "iou") -> pd.DataFrame:
    """The paper's Table 5: per expression, the ``k`` best and worst networks by a metric of a score table."""
    rows = []
    scored = table[(table.network != "Average") & (table.expression != "Average")].dropna(subset=[metric])
    for expr, group in scored.groupby("expression", sort=False):
        ranked = group.sort_values(metric, ascending=False)
        fmt = lambda g: ", ".join(f"{i}. {n} ({v:.3f})" for i, (n, v) in enumerate(zip(g.network, g[metric]), 1))
        rows.append({"expression": expr, "best": fmt(ranked.head(k)), "worst": fmt(ranked.iloc[::-1].head(k))})
    return pd.DataFrame(rows).set_index("expression")


# ---------------------------------------------------------------- statistics the paper lacks

def iou_from_f1(f1: np.ndarray | float) -> np.ndarray | float:
    """IoU = F1 / (2 - F1): exact for one prediction against one mask."""
    f1 = np.asarray(f1, dtype=np.float64)
    return f1 / (2.0 - f1)


def threshold_free_scores(heatmap: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Scores that need no threshold: ROC-AUC of the heatmap's values against the mask,
    relevance mass (share of the heatmap's total inside the mask), the pointing game (is the
    maximum inside the mask), and IoU at the threshold that keeps the mask's area."""
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


def specificity_matrix(heatmaps: dict[str, np.ndarray], masks: dict[str, np.ndarray],
                       metric: str = "iou") -> pd.DataFrame:
    """Heatmap of expression i (rows) against mask of expression j (columns), Otsu-thresholded.

    Expression-specific heatmaps score highest on the diagonal.
    """
    return pd.DataFrame({j: {i: score_heatmap(h, masks[j])[metric] for i, h in heatmaps.items()} for j in masks})


def chance_baselines(masks: dict[str, np.ndarray], n: int = 20, seed: int = 0,
                     sigma: float = 60.0) -> pd.DataFrame:
    """What the Otsu -> IoU path gives without any learning, per mask.

    ``uniform``: white-noise heatmaps (mean over ``n``); ``smooth noise``: noise blurred to
    the scale of face parts; ``centre``: a centred Gaussian of ``sigma`` pixels (centre bias);
    ``other masks``: each other expression's mask used as the heatmap (mean).
    """
    import cv2

    rng = np.random.default_rng(seed)
    shape = next(iter(masks.values())).shape
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    centre = np.exp(-((yy - shape[0] / 2) ** 2 + (xx - shape[1] / 2) ** 2) / (2 * sigma ** 2))
    centre = np.round(255 * centre / centre.max()).astype(np.uint8)

    def stretch_u8(a):
        a = a - a.min()
        return np.round(255 * a / a.max()).astype(np.uint8)

    rows = []
    for e, m in masks.items():
        noise = [score_heatmap(rng.integers(0, 256, shape, dtype=np.uint8), m)["iou"] for _ in range(n)]
        smooth = [score_heatmap(stretch_u8(cv2.GaussianBlur(rng.random(shape).astype(np.float32), (0, 0), 15)), m)["iou"]
                  for _ in range(n)]
        others = [score_heatmap(masks[o].astype(np.uint8) * 255, m)["iou"] for o in masks if o != e]
        rows.append({"expression": e, "uniform": np.mean(noise), "smooth noise": np.mean(smooth),
                     "centre": score_heatmap(centre, m)["iou"], "other masks": np.mean(others),
                     "mask area": float(m.mean())})
    return pd.DataFrame(rows).set_index("expression")


def bootstrap_ci(values: np.ndarray, n: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``values``."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if len(values) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = rng.choice(values, size=(n, len(values)), replace=True).mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)
