"""Statistics on a run's explanations that the paper does not report: the randomisation sanity
check, and bootstrap intervals over the explained images.

The statistics on tables of scores (fold-cluster bootstrap, permutation tests, chance
baselines, specificity) are in :mod:`fermap_utils.metrics`.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

from .config import section
from .explanations import choose_images, standardised_explanations
from .heatmaps import heatmap, to_uint8
from .layout import data_dir, metrics_file, predictions_file
from .lime import LimeSettings


def sanity_check(run_dir: str | os.PathLike, network: str, fold: int, prof: dict, method: str = "lime",
                 per_class: int = 3):
    """Adebayo et al.'s model-parameter randomisation test on a trained (network, fold).

    The same images (``per_class`` per predicted class) are explained by the trained network and
    by the same architecture with every weight drawn afresh from its initialiser; each model's
    explanations are pooled per class into a heatmap (Eq. 1) and scored against the Ekman masks.
    If both score alike, the metric does not measure what the network learned; if the two
    heatmaps are alike, the explanation does not depend on the weights.

    Returns
    -------
    metrics.SanityCheck: the scores of both models on the same expressions, how alike the two
    heatmaps of each expression are, and the expressions dropped with the reason (no image
    predicted as the class, or a constant heatmap from either model).
    """
    from .data import load_dataset, resize_images, scale_landmarks
    from .masks import ekman_masks
    from .metrics import randomisation_comparison
    from .models import load_trained

    expressions = list(section("paper")["expressions"])
    metrics = json.loads(metrics_file(run_dir, network, fold).read_text())
    predictions = pd.read_csv(predictions_file(run_dir, network, fold), dtype={"id": str})
    options = dict(prof.get("explain") or {})
    seed = int(options.get("seed", 0))
    chosen = choose_images(predictions.pred.to_numpy(), per_class, seed + 17, len(expressions))
    data = load_dataset(data_dir(run_dir))
    index = {i: n for n, i in enumerate(data.table.id.astype(str))}
    size = int(metrics["input_size"])
    trained = load_trained(run_dir, network, fold)
    import keras

    from .training import seeded

    with seeded(seed):  # the fresh weights depend on the seed alone, not on other threads' draws
        random = keras.models.clone_model(trained)  # same layers, every weight drawn afresh from its initialiser
    maps: dict[str, dict[str, np.ndarray]] = {"trained": {}, "random weights": {}}
    images, dropped = {}, {}
    for c in range(len(expressions)):
        picked = chosen.get(c, np.zeros(0, int))
        if not len(picked):
            dropped[expressions[c]] = "no test image predicted as this class"
            continue
        ids = predictions.id.to_numpy()[picked]
        positions = np.array([index[i] for i in ids])
        resized = resize_images(data.images[positions], size).astype(np.float32)
        marks = scale_landmarks(data.landmarks[positions], data.images.shape[1], size)
        labels = np.full(len(ids), c)
        images[expressions[c]] = len(ids)
        for label, model in (("trained", trained), ("random weights", random)):
            stack, _ = standardised_explanations(model, resized, marks, labels, method,
                                                 LimeSettings.from_profile(options),
                                                 list(positions), int(options.get("batch_size", 1000)))
            maps[label][expressions[c]] = to_uint8(heatmap(stack))
    return randomisation_comparison(maps["trained"], maps["random weights"], ekman_masks(), images, dropped)


def _resampled_heatmap(stack: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    h = to_uint8(heatmap(stack[rng.integers(0, len(stack), len(stack))]))
    return h if h.min() < h.max() else None  # a constant draw has no Otsu threshold to speak of


def _interval(full: float, draws: np.ndarray, level: float) -> dict[str, float]:
    draws = draws[~np.isnan(draws)]
    lo, hi = np.quantile(draws, [(1 - level) / 2, 1 - (1 - level) / 2]) if len(draws) else (np.nan, np.nan)
    return {"estimate": full, "low": float(lo), "high": float(hi)}


def bootstrap_image_scores(stack: np.ndarray, mask: np.ndarray, n: int = 200, seed: int = 0,
                           level: float = 0.95) -> pd.DataFrame:
    """Confidence intervals of a heatmap's scores when its images are resampled with replacement:
    one row per metric (IoU, F1, precision, recall, ROC-AUC) with the value on all images and the
    interval's bounds (``value, low, high``)."""
    from .metrics import METRICS, score

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
        Any of :func:`metrics.score`'s.

    Returns
    -------
    DataFrame indexed by network, plus ``Average`` (mean over networks' means):
    ``estimate, low, high, heatmaps``.
    """
    from .metrics import score

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

    Returns
    -------
    DataFrame with ``expression, net_a, net_b, distance, low, high``.
    """
    from .metrics import ncc_distance

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
