"""Statistics on scores: confidence intervals, permutation tests and the randomisation sanity check.

Intervals of a mean over folds (folds resampled whole) and of a test accuracy; permutation
p-values of a correlation and of paired differences; trained against randomised-weights
heatmaps (Adebayo et al. 2018); and bootstrap intervals over the explained images. All take
arrays or tables of scores (:mod:`fermap_utils.metrics`) or stacks of explanations; none loads
a run (the run-level sanity check is :func:`fermap_utils.sanity.sanity_check`). Whether heatmaps
are specific to their mask, and what chance scores, is :mod:`fermap_utils.specificity`.
"""
from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity
from statsmodels.stats.multitest import multipletests

from .heatmaps import heatmap, to_uint8
from .metrics import METRICS, ncc_distance, score, score_heatmap, threshold_free_scores

# ---------------------------------------------------------------- intervals and tests

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

    Examples
    --------
    Three folds whose means are 0, 1 and 2: each all-same draw has probability 1/27 > 2.5 %,
    so the 95 % interval over folds runs from the lowest fold mean to the highest.

    >>> bootstrap_ci([0, 0, 1, 1, 2, 2], clusters=[1, 1, 2, 2, 3, 3], n=4000)
    Interval(estimate=1.0, low=0.0, high=2.0, reason='')
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
        One row per heatmap with ``fold``, ``by`` and ``metric`` columns (:func:`fermap_utils.metrics.per_fold_scores`).
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


def smallest_correlation_p(n: int) -> float:
    """The smallest two-sided p-value an exact permutation test of a rank correlation can reach
    with ``n`` untied pairs: only the two perfect orderings of the ``n!`` reach ``|rho| = 1``.

    Parameters
    ----------
    n : int
        Number of pairs (e.g. networks).

    Returns
    -------
    float
        ``2 / n!``, at most 1.

    Examples
    --------
    >>> smallest_correlation_p(4)  # 2 of 24 orderings
    0.08333333333333333
    """
    return min(1.0, 2 / math.factorial(max(int(n), 1)))


def spearman_critical(n: int, alpha: float = 0.05, n_resamples: int = 9999, seed: int = 0) -> float:
    """The smallest ``|rho|`` (Spearman) that a two-sided permutation test of ``n`` untied pairs
    declares significant at ``alpha``: what the design can detect at all.

    The null distribution of ``rho`` is that of ``n`` ranks against a random permutation of them:
    enumerated when ``n!`` <= ``n_resamples``, else drawn (``n_resamples`` permutations, ``seed``).
    A value ``r`` is significant when the share of null values with ``|rho| >= r`` (with the observed
    one counted, as :func:`correlation_test`'s Monte Carlo p) is at most ``alpha``.

    Parameters
    ----------
    n : int
        Number of pairs (points).
    alpha : float
        The test's level.
    n_resamples, seed
        Permutations drawn when ``n!`` is larger, and their seed.

    Returns
    -------
    float
        The critical ``|rho|``; NaN when no ``|rho|`` can reach ``alpha`` (e.g. 4 points: the
        smallest p is 2/24).

    Examples
    --------
    >>> spearman_critical(4)  # 4 points: even rho = 1 has p = 2/24
    nan
    >>> spearman_critical(5)  # 5 points: only the two perfect orderings, p = 2/120
    1.0
    """
    n = int(n)
    if n < 3:
        return float("nan")
    ranks = np.arange(n, dtype=np.float64)
    if math.factorial(n) <= n_resamples:
        perms = np.array(list(itertools.permutations(range(n))), dtype=np.float64)
        extra = 0  # exact: the observed ordering is among them
    else:
        rng = np.random.default_rng(seed)
        perms = np.array([rng.permutation(n) for _ in range(n_resamples)], dtype=np.float64)
        extra = 1
    d = ranks - ranks.mean()
    rho = np.abs(((perms - ranks.mean()) @ d) / (d @ d))
    values = np.sort(np.round(rho, 12))
    # p(r) = (#{|rho_null| >= r} + extra) / (len + extra), smallest r with p(r) <= alpha
    at_least = len(values) - np.searchsorted(values, values, side="left")
    p = (at_least + extra) / (len(values) + extra)
    ok = values[p <= alpha]
    return float(ok.min()) if len(ok) else float("nan")


def spearman_detectable(n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The ``|rho|`` (Spearman) a design of ``n`` points detects with the given power at ``alpha``
    (two-sided), from Fisher's z with Fieller, Hartley and Pearson's (1957) variance of Spearman's
    z, ``1.06 / (n - 3)``: ``tanh((z_{1-alpha/2} + z_{power}) sqrt(1.06 / (n - 3)))``.

    Parameters
    ----------
    n : int
        The number of points.
    alpha : float
        The two-sided level.
    power : float
        The probability of detecting the relation.

    Returns
    -------
    float
        The detectable ``|rho|``; NaN for 3 points or fewer.

    Examples
    --------
    >>> round(spearman_detectable(16), 2)
    0.66
    """
    if n <= 3:
        return float("nan")
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(np.tanh(z * math.sqrt(1.06 / (n - 3))))


def _pearson(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    a = a - a.mean(axis=axis, keepdims=True)
    b = b - b.mean(axis=axis, keepdims=True)
    return (a * b).sum(axis=axis) / np.sqrt((a * a).sum(axis=axis) * (b * b).sum(axis=axis))


def _spearman_permutation(x: np.ndarray, y: np.ndarray, n_resamples: int, seed: int) -> tuple[float, float]:
    """Spearman's rho (Pearson's r of the ranks, ties averaged) and its two-sided permutation p,
    as :func:`correlation_test` but with the permutations vectorised (thousands in one call)."""
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    result = stats.permutation_test((rx,), lambda r, axis=-1: _pearson(r, ry, axis), permutation_type="pairings",
                                    vectorized=True, n_resamples=n_resamples, random_state=seed)
    return float(result.statistic), float(result.pvalue)


def accuracy_relation(points: pd.DataFrame, value: str, x: str = "accuracy", by: str = "method",
                      clusters: str | None = None, n_resamples: int = 9999, n_boot: int = 2000,
                      level: float = 0.95, alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Per group (explainer), the rank correlation of ``x`` (accuracy) with ``value`` (truthfulness)
    over the points, with its permutation p, a bootstrap interval, and what the design can detect.

    Parameters
    ----------
    points : DataFrame
        One row per point (e.g. :func:`fermap_utils.states.accuracy_points`: a state of a network).
    value : str
        The column of truthfulness, e.g. ``roc_auc_planted``.
    x : str
        The column of accuracy.
    by : str
        The grouping column (one relation per value).
    clusters : str, optional
        A column whose groups the bootstrap resamples whole (e.g. ``network``: the states of one
        network are not independent points); default: the points themselves.
    n_resamples : int
        Permutations of :func:`correlation_test` (exact up to ``n!`` <= this; else drawn with ``seed``)
        and of :func:`spearman_critical`.
    n_boot, level : int, float
        Bootstrap replicates (percentile interval) and its level; a replicate whose ``x`` or
        ``value`` is constant has no rho and is left out.
    alpha : float
        The level for the critical and the detectable rho.
    seed : int
        Of the permutations and the bootstrap.

    Returns
    -------
    DataFrame, indexed by ``by``
        ``n`` (points), ``rho`` (Spearman), ``p_value`` (two-sided permutation), ``low``, ``high``
        (the interval), ``rho_critical`` (the smallest ``|rho|`` reaching ``alpha`` with ``n``
        points, :func:`spearman_critical`; NaN: none can) and ``rho_detectable`` (at 80 % power,
        :func:`spearman_detectable`).
    """
    rows = []
    for group, g in points.groupby(by, sort=False):
        g = g.dropna(subset=[x, value])
        a, b = g[x].to_numpy(np.float64), g[value].to_numpy(np.float64)
        rho = p_value = lo = hi = float("nan")
        if len(g) >= 3 and np.ptp(a) > 0 and np.ptp(b) > 0:
            rho, p_value = _spearman_permutation(a, b, n_resamples, seed)
            rng = np.random.default_rng(seed)
            labels = g[clusters].to_numpy() if clusters else np.arange(len(g))
            units = [np.flatnonzero(labels == u) for u in pd.unique(labels)]
            draws = []
            for _ in range(n_boot):
                take = np.concatenate([units[i] for i in rng.integers(0, len(units), len(units))])
                if np.ptp(a[take]) > 0 and np.ptp(b[take]) > 0:
                    draws.append(_pearson(stats.rankdata(a[take]), stats.rankdata(b[take])))
            if draws:
                lo, hi = np.quantile(draws, [(1 - level) / 2, 1 - (1 - level) / 2])
        rows.append({by: group, "n": len(g), "rho": float(rho), "p_value": float(p_value),
                     "low": float(lo), "high": float(hi),
                     "rho_critical": spearman_critical(len(g), alpha, n_resamples, seed),
                     "rho_detectable": spearman_detectable(len(g), alpha)})
    return pd.DataFrame(rows).set_index(by)


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

    Examples
    --------
    Of the 8 sign flips of the differences 1, 2, 3, two (all +, all -) reach a mean of 2 or more
    in absolute value:

    >>> paired_test([1, 2, 3], [0, 0, 0])
    {'mean_difference': 2.0, 'p_value': 0.25, 'n': 3}
    """
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
    k = int(round(accuracy * n_test))
    ci = stats.binomtest(k, int(n_test)).proportion_ci(confidence_level=level, method="wilson")
    return Interval(k / n_test, float(ci.low), float(ci.high))


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


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (statsmodels' ``multipletests``).

    Parameters
    ----------
    p_values : array of float
        The family; NaNs stay NaN and do not count in it.

    Returns
    -------
    ndarray
        The adjusted p-values, in the order given.

    Examples
    --------
    >>> holm([0.01, 0.04, 0.03]).round(3).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    keep = ~np.isnan(p)
    if keep.any():
        out[keep] = multipletests(p[keep], method="holm")[1]
    return out


def pairwise_comparisons(wide: pd.DataFrame, n_boot: int = 2000, level: float = 0.95, seed: int = 0
                         ) -> pd.DataFrame:
    """Every pair of groups (columns) compared over the cells (rows) both scored, Holm-corrected.

    Every pair is tested, not only the pairs with the post-hoc best group, so no group is
    chosen by looking at the data before the test.

    Parameters
    ----------
    wide : DataFrame
        One row per paired unit (e.g. a (network, expression) cell), one column per group
        (e.g. explainer); NaN where a group did not score the unit.
    n_boot, level, seed
        Bootstrap replicates (units resampled) of the interval of each mean difference.

    Returns
    -------
    DataFrame
        One row per pair ``a``, ``b`` (``a`` the group of higher mean): ``difference`` (mean of
        a - b over shared units), its ``low`` and ``high`` bootstrap bounds, ``effect_size``
        (Cohen's d_z: the mean difference over the standard deviation of the differences),
        ``p_value`` (exact sign-flip, :func:`paired_test`), ``p_holm`` (Holm over all pairs) and
        ``n`` (shared units).
    """
    means = wide.mean().sort_values(ascending=False)
    rows = []
    for i, a in enumerate(means.index):
        for b in means.index[i + 1:]:
            d = (wide[a] - wide[b]).dropna().to_numpy()
            test = paired_test(wide[a].to_numpy(), wide[b].to_numpy())
            ci = bootstrap_ci(d, n=n_boot, level=level, seed=seed)
            sd = d.std(ddof=1) if len(d) > 1 else np.nan
            rows.append({"a": a, "b": b, "difference": test["mean_difference"], "low": ci.low, "high": ci.high,
                         "effect_size": test["mean_difference"] / sd if sd and sd > 0 else np.nan,
                         "p_value": test["p_value"], "n": test["n"]})
    table = pd.DataFrame(rows, columns=["a", "b", "difference", "low", "high", "effect_size", "p_value", "n"])
    table.insert(len(table.columns) - 1, "p_holm", holm(table.p_value.to_numpy()))
    return table


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
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.scores.to_csv(folder / "scores.csv", index=False)
        self.similarity.to_csv(folder / "similarity.csv")
        (folder / "dropped.json").write_text(json.dumps(self.dropped, indent=1))

    @classmethod
    def load(cls, folder: str | os.PathLike) -> SanityCheck | None:
        """What :meth:`save` wrote, or None when ``folder`` holds no sanity check."""
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


# ---------------------------------------------------------------- intervals over explained images

def _resampled_heatmap(stack: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    h = to_uint8(heatmap(stack[rng.integers(0, len(stack), len(stack))]))
    return h if h.min() < h.max() else None  # a constant draw has no Otsu threshold to speak of


def _interval(full: float, draws: np.ndarray, level: float) -> dict[str, float]:
    draws = draws[~np.isnan(draws)]
    lo, hi = np.quantile(draws, [(1 - level) / 2, 1 - (1 - level) / 2]) if len(draws) else (np.nan, np.nan)
    return {"estimate": full, "low": float(lo), "high": float(hi)}


def bootstrap_image_scores(stack: np.ndarray, mask: np.ndarray, n: int = 200, seed: int = 0,
                           level: float = 0.95) -> pd.DataFrame:
    """Confidence intervals of a heatmap's scores when its images are resampled with replacement.

    Parameters
    ----------
    stack : array (N, H, W)
        Standardised explanations of one (network, fold, expression); their mean is the heatmap (Eq. 1).
    mask : bool array (H, W)
        The expression's mask.
    n, seed, level
        Replicates, their seed, and the confidence level. A replicate whose heatmap is constant
        is left out.

    Returns
    -------
    DataFrame
        One row per metric (IoU, F1, precision, recall, ROC-AUC) with the value on all images and
        the interval's bounds: ``value, low, high``.
    """
    names = [*METRICS, "roc_auc"]
    rng = np.random.default_rng(seed)
    full = to_uint8(heatmap(stack))
    draws = [_resampled_heatmap(stack, rng) for _ in range(n)]
    table = np.array([[score(h, mask, m) for m in names] for h in draws if h is not None]).reshape(-1, len(names))
    rows = {m: _interval(score(full, mask, m), table[:, i], level) for i, m in enumerate(names)}
    return pd.DataFrame(rows).T.rename(columns={"estimate": "value"})[["value", "low", "high"]]


def bootstrap_image_means(stacks: dict[tuple[str, int, str], np.ndarray], masks: dict[str, np.ndarray],
                          metric: str = "iou", n: int = 200, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Each network's mean score over its heatmaps, and the run's overall mean, with intervals over images.

    Every replicate resamples, with replacement, the images of every (network, fold, expression)
    independently, rebuilds each heatmap (Eq. 1), scores it, and averages as the tables do.

    Parameters
    ----------
    stacks : dict
        ``(network, fold, expression) -> (N, H, W)`` standardised explanations
        (:func:`fermap_utils.explanations.load_run_stacks`).
    masks : dict
        ``expression -> boolean mask``.
    metric : str
        Any of :func:`fermap_utils.metrics.score`'s.
    n, seed, level
        Replicates, their seed, and the confidence level.

    Returns
    -------
    DataFrame indexed by network, plus ``Average`` (mean over networks' means):
    ``estimate, low, high, heatmaps``.
    """
    keys = list(stacks)
    rng = np.random.default_rng(seed)
    full = np.array([score(to_uint8(heatmap(stacks[k])), masks[k[2]], metric) for k in keys])
    draws = np.full((n, len(keys)), np.nan)
    for r in range(n):
        for j, k in enumerate(keys):
            h = _resampled_heatmap(stacks[k], rng)
            if h is not None:
                draws[r, j] = score(h, masks[k[2]], metric)
    nets = list(dict.fromkeys(k[0] for k in keys))
    cols = {net: [j for j, k in enumerate(keys) if k[0] == net] for net in nets}
    net_draws = np.stack([np.nanmean(draws[:, c], axis=1) for c in cols.values()], axis=1)
    rows = {net: {**_interval(float(full[c].mean()), net_draws[:, i], level), "heatmaps": len(c)}
            for i, (net, c) in enumerate(cols.items())}
    rows["Average"] = {**_interval(float(np.mean([full[c].mean() for c in cols.values()])),
                                   net_draws.mean(axis=1), level),
                       "heatmaps": len(keys)}
    return pd.DataFrame(rows).T.rename_axis("network").astype({"estimate": float, "low": float, "high": float,
                                                               "heatmaps": int})


def bootstrap_image_distances(stacks: dict[tuple[str, int, str], np.ndarray], n: int = 200, seed: int = 0,
                              level: float = 0.95) -> pd.DataFrame:
    """1 - NCC between networks' heatmaps H(n,c), with intervals over images.

    Each H(n,c) pools all its folds' explanations (Eq. 2: every explanation weighs the same);
    each replicate resamples those images with replacement.

    Parameters
    ----------
    stacks : dict
        ``(network, fold, expression) -> (N, H, W)`` standardised explanations.
    n, seed, level
        Replicates, their seed, and the confidence level. Pairs with a constant heatmap on all
        images are left out.

    Returns
    -------
    DataFrame with ``expression, net_a, net_b, distance, low, high``.
    """
    pooled: dict[tuple[str, str], list[np.ndarray]] = {}
    for (net, _, expr), stack in stacks.items():
        pooled.setdefault((expr, net), []).append(stack)
    pooled = {k: np.concatenate(v) for k, v in pooled.items()}
    rng = np.random.default_rng(seed)
    rows = []
    for expr in dict.fromkeys(e for e, _ in pooled):
        nets = [net for e, net in pooled if e == expr]
        full = {net: to_uint8(heatmap(pooled[(expr, net)])) for net in nets}
        draws = [{net: _resampled_heatmap(pooled[(expr, net)], rng) for net in nets} for _ in range(n)]
        for i, a in enumerate(nets):
            for b in nets[i + 1:]:
                if full[a].min() == full[a].max() or full[b].min() == full[b].max():
                    continue
                d = np.array([ncc_distance(x[a], x[b]) if x[a] is not None and x[b] is not None else np.nan
                              for x in draws])
                rows.append({"expression": expr, "net_a": a, "net_b": b,
                             **_interval(ncc_distance(full[a], full[b]), d, level)})
    return pd.DataFrame(rows).rename(columns={"estimate": "distance"})


def bootstrap_image_cells(stacks: dict[tuple[str, int, str], np.ndarray], masks: dict[str, np.ndarray],
                          metrics: tuple[str, ...] = ("iou", "f1"), n: int = 200, seed: int = 0,
                          level: float = 0.95) -> pd.DataFrame:
    """:func:`bootstrap_image_scores` for every (network, fold, expression) with at least two images.

    Parameters
    ----------
    stacks : dict
        ``(network, fold, expression) -> (N, H, W)`` standardised explanations.
    masks : dict
        ``expression -> boolean mask``.
    metrics : tuple of str
        The scores to report, among :func:`bootstrap_image_scores`'s rows.
    n, seed, level
        Replicates, their seed, and the confidence level.

    Returns
    -------
    DataFrame with ``network, fold, expression, images`` and ``<metric> value|low|high`` columns.
    """
    rows = []
    for (net, fold, expr), stack in stacks.items():
        if len(stack) < 2:
            continue
        ci = bootstrap_image_scores(stack, masks[expr], n=n, seed=seed, level=level)
        rows.append({"network": net, "fold": fold, "expression": expr, "images": len(stack),
                     **{f"{m} {c}": ci.loc[m, c] for m in metrics for c in ("value", "low", "high")}})
    return pd.DataFrame(rows)
