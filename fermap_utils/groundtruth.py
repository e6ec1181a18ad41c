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
from .specificity import centred_gaussian
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


_SMOOTH_SIGMAS = (1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 11.0, 16.0, 22.0, 32.0)


def roughness(heatmap: np.ndarray) -> float:
    """Mean gradient magnitude over standard deviation: how fast a map varies, independent of
    its scale (white noise: high; a smooth blob: low). NaN for a constant map."""
    h = as_unit(heatmap).astype(np.float64)
    sd = h.std()
    if sd == 0:
        return float("nan")
    gy, gx = np.gradient(h)
    return float(np.hypot(gx, gy).mean() / sd)


def smooth_noise(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """White noise blurred by a Gaussian of ``sigma`` pixels, stretched to [0, 1]."""
    a = cv2.GaussianBlur(rng.random(shape).astype(np.float32), (0, 0), sigma).astype(np.float64)
    a -= a.min()
    return a / a.max() if a.max() > 0 else a


def matched_smoothness(heatmaps: list[np.ndarray], seed: int = 0, sigmas: tuple[float, ...] = _SMOOTH_SIGMAS
                       ) -> float:
    """The blur (pixels) that gives random smooth noise the median :func:`roughness` of ``heatmaps``.

    Parameters
    ----------
    heatmaps : list of arrays
        The explainers' heatmaps whose smoothness the random maps must match.
    seed : int
        Seeds the calibration noise.
    sigmas : tuple of float
        The blurs tried.

    Returns
    -------
    float
        The sigma in ``sigmas`` whose noise is closest in log roughness.
    """
    target = np.nanmedian([roughness(h) for h in heatmaps])
    shape = np.asarray(heatmaps[0]).shape
    rng = np.random.default_rng(seed)
    rough = np.array([roughness(smooth_noise(shape, s, rng)) for s in sigmas])
    return float(sigmas[int(np.argmin(np.abs(np.log(rough) - np.log(target))))])


def chance_rows(regions: dict[str, np.ndarray], planted: dict[str, np.ndarray], masks: dict[str, np.ndarray],
                sigma: float, n: int = 20, seed: int = 0, centre_sigma: float = 60.0,
                mean_face: np.ndarray | None = None) -> pd.DataFrame:
    """What each score of :func:`grade_heatmap` is without any explainer: the rows a reader
    reads the explainers' scores against.

    Parameters
    ----------
    regions, planted : dict of str to array
        The planted regions and maps (:func:`fermap_utils.synthetic.planted_regions`).
    masks : dict of str to array
        The Ekman masks: each class's own mask is graded as if it were a heatmap.
    sigma : float
        Blur of the random smooth maps (:func:`matched_smoothness` of the run's heatmaps).
    n : int
        Random smooth maps per class.
    seed : int
        Seeds them.
    centre_sigma : float
        Width (pixels) of the centred Gaussian (:func:`fermap_utils.specificity.centred_gaussian`).
    mean_face : array, optional
        The mean face on the standard canvas: given, its edge map (Sobel magnitude) is graded too.

    Returns
    -------
    DataFrame
        One row per (``baseline``, ``expression``) with the scores of :func:`grade_heatmap`
        against the planted truth (the random maps: their mean over ``n``).
    """
    rng = np.random.default_rng(seed)
    shape = next(iter(regions.values())).shape
    fixed = {"centred Gaussian": centred_gaussian(shape, centre_sigma)}
    if mean_face is not None:
        face = np.asarray(mean_face, dtype=np.float32)
        edges = np.hypot(cv2.Sobel(face, cv2.CV_32F, 1, 0), cv2.Sobel(face, cv2.CV_32F, 0, 1)).astype(np.float64)
        fixed["mean-face edges"] = edges / edges.max() if edges.max() > 0 else edges
    rows = []
    for e in regions:
        draws = pd.DataFrame([grade_heatmap(smooth_noise(shape, sigma, rng), regions[e], planted[e])
                              for _ in range(n)])
        rows.append({"baseline": f"random smooth (sigma {sigma:g} px)", "expression": e, **draws.mean().to_dict()})
        for name, h in {**fixed, "Ekman mask": masks[e]}.items():
            rows.append({"baseline": name, "expression": e, **grade_heatmap(h, regions[e], planted[e])})
    return pd.DataFrame(rows)


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
