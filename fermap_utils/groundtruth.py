"""Grading explanations against the planted truth of the synthetic default dataset.

On the synthetic set (:mod:`fermap_utils.synthetic`) the pixels that carry each
class are known: the planted-signal map of a class is the mean change its
expression made, on the standard face. Here every explainer's heatmaps are
scored against it with the paper's own path (Otsu, then IoU, F1, precision,
recall against the planted region) and without a threshold (ROC-AUC, relevance
mass, pointing game, and the correlation with the planted map itself), beside
the same scores against the Ekman masks.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from .errors import FermapError
from .explanations import load_run_heatmaps, network_heatmaps
from .heatmaps import as_unit, to_uint8
from .layout import data_dir, records_file, truth_dir
from .metrics import binary_scores, ncc, score_heatmap, threshold_free_scores
from .statistics import correlation_test
from .synthetic import load_planted_maps, planted_regions

_BINARY = ("iou", "f1", "precision", "recall")


def grade_heatmap(heatmap: np.ndarray, region: np.ndarray, planted: np.ndarray) -> dict[str, float]:
    """All the scores of one heatmap against one class's planted truth.

    Parameters
    ----------
    heatmap : (275, 224) uint8 (0..255, as a run stores it), bool, or float in [0, 1]
        A heatmap on the standard face, brought to [0, 1] by :func:`fermap_utils.heatmaps.as_unit`.
    region : (275, 224) bool
        The planted region (:func:`fermap_utils.synthetic.planted_regions`).
    planted : (275, 224) float
        The planted-signal map (mean change, grey levels).

    Returns
    -------
    dict
        ``iou``, ``f1``, ``precision``, ``recall`` after Otsu (the paper's path),
        ``roc_auc``, ``relevance_mass``, ``pointing_game``, ``iou_area_matched``
        (see :func:`fermap_utils.metrics.threshold_free_scores`) and ``ncc``, the
        normalised correlation with the planted map.
    """
    unit = as_unit(heatmap)
    otsu = score_heatmap(to_uint8(unit), region)  # Otsu on 8-bit grey, as the paper thresholds
    return {**{k: otsu[k] for k in _BINARY}, **threshold_free_scores(unit, region), "ncc": ncc(unit, planted)}


def grade_heatmaps(heatmaps: dict[tuple[str, str], np.ndarray], regions: dict[str, np.ndarray],
                   planted: dict[str, np.ndarray], masks: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """Grade many heatmaps, keyed ``(network, expression)``, against the planted truth (and the Ekman masks).

    Returns one row per heatmap and truth: network, expression, ``truth``
    (``planted`` or ``Ekman``) and the scores of :func:`grade_heatmap` (``ncc``,
    the correlation with the planted map, only in the ``planted`` rows).
    """
    rows = []
    for (network, expression), h in sorted(heatmaps.items()):
        if expression not in regions:
            continue
        rows.append({"network": network, "expression": expression, "truth": "planted",
                     **grade_heatmap(h, regions[expression], planted[expression])})
        if masks is not None:  # ncc is against the planted map only: not repeated for the masks
            rows.append({"network": network, "expression": expression, "truth": "Ekman",
                         **grade_heatmap(h, masks[expression], planted[expression]), "ncc": np.nan})
    return pd.DataFrame(rows)


def masks_against_truth(masks: dict[str, np.ndarray], regions: dict[str, np.ndarray]) -> pd.DataFrame:
    """How far a set of masks (the Ekman masks, say) is from the planted regions: one row per expression.

    The planted region is the ground truth (the paper's convention for the masks).
    """
    return pd.DataFrame({e: binary_scores(masks[e], regions[e]) for e in regions if e in masks}).T


def run_heatmaps_by_network(run_dir: str | os.PathLike, method: str) -> dict[tuple[str, str], np.ndarray]:
    """A run's by-network heatmaps H_{n,c} of one explainer, keyed ``(network, expression)``."""
    return network_heatmaps(load_run_heatmaps(run_dir, method))


def grade_run(run_dir: str | os.PathLike, methods: list[str], masks: dict[str, np.ndarray]) -> pd.DataFrame:
    """Grade every explainer's by-network heatmaps of a run on the synthetic set.

    Explainers with no heatmaps in the run are left out and named in the
    returned frame's ``attrs["missing"]``, with the reason.
    """
    planted = load_planted_maps(data_dir(run_dir))
    regions = planted_regions(planted)
    frames, missing = [], {}
    for method in methods:
        try:
            maps = run_heatmaps_by_network(run_dir, method)
        except FermapError as exc:
            missing[method] = str(exc)
            continue
        frame = grade_heatmaps(maps, regions, planted, masks)
        frame.insert(0, "method", method)
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    out.attrs["missing"] = missing
    return out


def summarise_grades(grades: pd.DataFrame, by: list[str], metrics: tuple[str, ...] = ("iou", "f1", "roc_auc", "ncc")
                     ) -> pd.DataFrame:
    """Mean scores grouped by ``by`` (e.g. ``["method", "truth"]``), with the number of heatmaps."""
    table = grades.groupby(by)[list(metrics)].mean()
    table["n"] = grades.groupby(by).size()
    return table


def accuracy_against_truth(grades: pd.DataFrame, accuracy: pd.Series, metric: str = "roc_auc") -> pd.DataFrame:
    """Do better networks give truer heatmaps? Per explainer, the rank correlation across networks of
    test accuracy with the mean ``metric`` against the planted truth, with its exact permutation p-value.

    Parameters
    ----------
    grades : DataFrame
        From :func:`grade_run`.
    accuracy : Series
        Test accuracy, indexed by network.
    """
    planted = grades[grades.truth == "planted"]
    rows = []
    for method, g in planted.groupby("method", sort=False):
        score = g.groupby("network")[metric].mean()
        common = score.index.intersection(accuracy.index)
        rows.append({"method": method, **correlation_test(accuracy[common].to_numpy(), score[common].to_numpy())})
    return pd.DataFrame(rows).set_index("method")


def subject_examples(data_dir: str | os.PathLike, subject: str | None = None, sample: int = 0
                     ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One subject's image of each expression and its true change map, from a built synthetic dataset.

    Returns the images (6, s, s), the change maps (6, s, s) and the expressions.
    """
    data_dir = Path(data_dir)
    table = pd.read_csv(records_file(data_dir), dtype={"subject": str})
    subject = subject or table.subject.iloc[0]
    rows = table[(table.subject == subject) & table.source.str.endswith(f"_{sample}.png")].sort_values("expression")
    read = lambda p: cv2.imread(str(p), cv2.IMREAD_UNCHANGED)  # noqa: E731
    images = np.stack([read(data_dir / r) for r in rows.image])
    changes = np.stack([read(truth_dir(data_dir) / Path(r).name) for r in rows.image])
    return images, changes, list(rows.expression)
