"""How specific a score is: to the expression, and to learning.

Mask specificity: each heatmap scored against every expression's mask, with a label-permutation
test of whether heatmaps score best on their own expression's mask. Chance baselines: what the
Otsu -> IoU path gives without any learning (noise, a centred Gaussian, the other masks as
heatmaps), and how the centre bias depends on the Gaussian's width.
"""
from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
from scipy import stats

from .metrics import score, score_heatmap

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
        Any of :func:`fermap_utils.metrics.score`'s (IoU after Otsu by default; ``roc_auc`` needs no threshold).

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


#: The specificity report's metrics: (key of :func:`fermap_utils.metrics.score`, the name a reader sees).
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
        Any of :func:`fermap_utils.metrics.score`'s.

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

    Examples
    --------
    >>> crossings([0, 1, 2, 3], [0, 1, 0, 1], 0.5)
    [0.5, 1.5, 2.5]
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64) - level
    out = [float(x[i]) for i in np.flatnonzero(y == 0)]
    for i in np.flatnonzero(y[:-1] * y[1:] < 0):
        out.append(float(x[i] - y[i] * (x[i + 1] - x[i]) / (y[i + 1] - y[i])))
    return sorted(out)
