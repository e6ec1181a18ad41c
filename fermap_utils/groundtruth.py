"""Grading explanations against the truths of the synthetic default dataset.

On the synthetic set (:mod:`fermap_utils.synthetic`) the pixels that carry each
class are known, in two senses:

- the **planted** truth: the mean change a class's expression made against the
  neutral face, on the standard face (:func:`fermap_utils.synthetic.planted_maps`);
- the **discriminative** truth: where a class's images differ from the other
  classes' images of the same identity (:func:`discriminative_maps`). The networks
  separate six classes, none of them neutral: an AU shared by several classes is
  planted signal but no evidence for one class over another.

Every explainer's heatmaps are scored against both with the paper's own path
(Otsu, then IoU, F1, precision, recall against the region) and without a
threshold (ROC-AUC, relevance mass, pointing game, relevance rank accuracy, and
the correlation with the truth's map itself), beside the same scores against the
Ekman masks.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import tqdm.auto  # looked up at call time, so a book chapter can silence it

from ._io import atomic_path, atomic_paths, read_csv
from .config import expressions as config_expressions
from .errors import FermapError
from .explanations import load_image_maps, load_run_heatmaps, network_heatmaps, read_class_file
from .heatmaps import as_unit, to_uint8
from .layout import (
    class_files,
    data_dir,
    discriminative_file,
    explanations_dir,
    landmarks_file,
    predictions_file,
    records_file,
    statistics_dir,
    truth_dir,
)
from .metrics import binary_scores, ncc, roc_auc, score_heatmap, threshold_free_scores
from .specificity import centred_gaussian
from .statistics import correlation_test
from .synthetic import load_planted_maps, planted_regions
from .warping import warp_to_standard

#: The truths a heatmap is graded against, in the order of :func:`grade_heatmaps`'s rows.
TRUTHS: tuple[str, ...] = ("planted", "discriminative", "Ekman")

_BINARY = ("iou", "f1", "precision", "recall")


def grade_heatmap(heatmap: np.ndarray, region: np.ndarray, planted: np.ndarray) -> dict[str, float]:
    """All the scores of one heatmap against one class's truth (planted or discriminative).

    Parameters
    ----------
    heatmap : (275, 224) uint8 (0..255, as a run stores it), bool, or float in [0, 1]
        A heatmap on the standard face, brought to [0, 1] by :func:`fermap_utils.heatmaps.as_unit`.
    region : (275, 224) bool
        The truth's region (:func:`fermap_utils.synthetic.planted_regions` of its map).
    planted : (275, 224) float
        The truth's map (the planted-signal map, or a discriminative map), for ``ncc``.

    Returns
    -------
    dict
        ``iou``, ``f1``, ``precision``, ``recall`` after Otsu (the paper's path),
        ``roc_auc``, ``relevance_mass``, ``pointing_game``, ``iou_area_matched``
        and ``relevance_rank_accuracy`` (see :func:`fermap_utils.metrics.threshold_free_scores`)
        and ``ncc``, the normalised correlation with the truth's map.
    """
    unit = as_unit(heatmap)
    return {**_otsu_scores(unit, region), **threshold_free_scores(unit, region),
            "ncc": ncc(unit, planted) if np.ptp(unit) else float("nan")}  # a constant map: undefined


def _otsu_scores(unit: np.ndarray, region: np.ndarray) -> dict[str, float]:
    """The paper's Otsu path on a map in [0, 1]; a constant map ranks no pixel above another, so it
    selects nothing (whatever its value), where Otsu's threshold would be arbitrary."""
    if np.ptp(unit) == 0:
        with warnings.catch_warnings():  # precision of an empty selection: 0
            warnings.simplefilter("ignore", RuntimeWarning)
            nothing = binary_scores(np.zeros(region.shape, bool), region)
        return {k: nothing[k] for k in _BINARY}
    otsu = score_heatmap(to_uint8(unit), region)  # Otsu on 8-bit grey, as the paper thresholds
    return {k: otsu[k] for k in _BINARY}


def grade_heatmaps(heatmaps: dict[tuple[str, str], np.ndarray], regions: dict[str, np.ndarray],
                   planted: dict[str, np.ndarray], masks: dict[str, np.ndarray] | None = None,
                   discriminative: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """Grade many heatmaps, keyed ``(network, expression)``, against the planted truth, the discriminative
    truth and the Ekman masks.

    Parameters
    ----------
    heatmaps : dict
        ``(network, expression) -> heatmap`` (any form :func:`grade_heatmap` takes).
    regions, planted : dict
        The planted regions and maps, by expression; an expression without one is left out.
    masks : dict, optional
        The Ekman masks: ``Ekman`` rows (``ncc`` NaN: the masks have no map).
    discriminative : dict, optional
        The discriminative maps (:func:`discriminative_maps`): ``discriminative`` rows, against
        their regions (thresholded as the planted ones, :func:`fermap_utils.synthetic.planted_regions`)
        and with ``ncc`` against the discriminative map.

    Returns
    -------
    DataFrame
        One row per heatmap and truth: network, expression, ``truth`` (one of :data:`TRUTHS`) and
        the scores of :func:`grade_heatmap`.
    """
    truths = {"planted": (regions, planted)}
    if discriminative is not None:
        truths["discriminative"] = (planted_regions(discriminative), discriminative)
    rows = []
    for (network, expression), h in sorted(heatmaps.items()):
        if expression not in regions:
            continue
        for truth, (reg, maps) in truths.items():
            rows.append({"network": network, "expression": expression, "truth": truth,
                         **grade_heatmap(h, reg[expression], maps[expression])})
        if masks is not None:  # ncc is against a truth's map: the masks have none
            rows.append({"network": network, "expression": expression, "truth": "Ekman",
                         **grade_heatmap(h, masks[expression], planted[expression]), "ncc": np.nan})
    return pd.DataFrame(rows)


def masks_against_truth(masks: dict[str, np.ndarray], regions: dict[str, np.ndarray]) -> pd.DataFrame:
    """How far a set of masks (the Ekman masks, say) is from a truth's regions: one row per expression.

    ``regions`` (planted, or discriminative: ``planted_regions(discriminative_maps)``) is the
    ground truth (the paper's convention for the masks).
    """
    return pd.DataFrame({e: binary_scores(masks[e], regions[e]) for e in regions if e in masks}).T


def run_heatmaps_by_network(run_dir: str | os.PathLike, method: str) -> dict[tuple[str, str], np.ndarray]:
    """A run's by-network heatmaps H_{n,c} of one explainer, keyed ``(network, expression)``."""
    return network_heatmaps(load_run_heatmaps(run_dir, method))


def grade_run(run_dir: str | os.PathLike, methods: list[str], masks: dict[str, np.ndarray]) -> pd.DataFrame:
    """Grade every explainer's by-network heatmaps of a run on the synthetic set.

    Each is graded against the three truths of :data:`TRUTHS` (:func:`grade_heatmaps`); the
    discriminative maps come from :func:`load_discriminative_maps` (computed from the run's images
    on first use, then cached). Explainers with no heatmaps in the run are left out and named in
    the returned frame's ``attrs["missing"]``, with the reason.
    """
    planted = load_planted_maps(data_dir(run_dir))
    regions = planted_regions(planted)
    discriminative = load_discriminative_maps(data_dir(run_dir))
    frames, missing = [], {}
    for method in methods:
        try:
            maps = run_heatmaps_by_network(run_dir, method)
        except FermapError as exc:
            missing[method] = str(exc)
            continue
        frame = grade_heatmaps(maps, regions, planted, masks, discriminative)
        frame.insert(0, "method", method)
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    out.attrs["missing"] = missing
    return out


def grade_image(heatmap: np.ndarray, region: np.ndarray, truth_map: np.ndarray) -> dict[str, float]:
    """The scores of one image's explanation against one class's truth: the paper's Otsu path
    (``iou``, ``f1``, ``precision``, ``recall``), ``roc_auc`` (by ranks, :func:`fermap_utils.metrics.roc_auc`)
    and ``ncc`` with the truth's map: the scores :func:`grade_heatmap` gives that are cheap enough
    for every explained image.

    Parameters
    ----------
    heatmap : (275, 224) array
        One explanation on the standard face, in any form :func:`fermap_utils.heatmaps.as_unit` takes.
    region : (275, 224) bool
        The truth's region.
    truth_map : (275, 224) float
        The truth's map.

    Returns
    -------
    dict
        The scores, and ``constant``: whether the map has one value everywhere. Such a map (Grad-CAM's
        ReLU leaves nothing when all of an image's weighted evidence is negative) ranks no pixel above
        another: it selects nothing at Otsu's threshold (IoU, F1, precision and recall 0), its
        ROC-AUC is 0.5 by ranks, and its NCC is undefined (NaN).
    """
    unit = as_unit(heatmap)
    constant = not np.ptp(unit)
    return {**_otsu_scores(unit, region), "roc_auc": roc_auc(unit, region),
            "ncc": float("nan") if constant else ncc(unit, truth_map), "constant": constant}


def grade_images(run_dir: str | os.PathLike, methods: list[str], progress: bool = True) -> pd.DataFrame:
    """Grade every explained image of a run, one by one, against the planted and the discriminative truth.

    Each explainer's per-image maps (:func:`fermap_utils.explanations.load_image_maps`) are scored
    by :func:`grade_image`. Because the images are drawn nested
    (:func:`fermap_utils.explanations.choose_images`), an explainer that explains fewer images per
    class explains a subset of the others' images: pairing rows by ``(network, fold, id)`` compares
    explainers on the same images.

    Parameters
    ----------
    run_dir : path
        A run on the synthetic set.
    methods : list of str
        The explainers to grade; one without explanations in the run is left out and named in
        ``attrs["missing"]``.
    progress : bool
        Show a progress bar.

    Returns
    -------
    DataFrame
        One row per (method, network, fold, expression, id, truth): ``correct`` (the network's
        prediction, which is ``expression``, is the image's true class) and the scores of
        :func:`grade_image` (with ``constant``).
    """
    planted = load_planted_maps(data_dir(run_dir))
    discriminative = load_discriminative_maps(data_dir(run_dir), progress=progress)
    truths = {"planted": (planted_regions(planted), planted),
              "discriminative": (planted_regions(discriminative), discriminative)}
    names = list(config_expressions())
    groups = [(m, *g) for m in methods for g in class_files(run_dir, m)]
    missing = {m: f"{explanations_dir(run_dir, m)}: no explanations" for m in methods
               if not any(g[0] == m for g in groups)}
    true_of: dict[tuple[str, int], dict[str, int]] = {}
    rows = []
    for method, network, fold, expression, _ in tqdm.auto.tqdm(groups, desc="grading images", unit="group",
                                                              disable=not progress):
        if expression not in planted:
            continue
        if (network, fold) not in true_of:
            table = read_csv(predictions_file(run_dir, network, fold), columns=("id", "true"), dtype={"id": str})
            true_of[(network, fold)] = dict(zip(table.id, table.true.astype(int)))
        ids, maps = load_image_maps(run_dir, network, fold, expression, method)
        for image_id, h in zip(ids, maps):
            correct = true_of[(network, fold)].get(str(image_id)) == names.index(expression)
            for truth, (regions, truth_maps) in truths.items():
                rows.append({"method": method, "network": network, "fold": fold, "expression": expression,
                             "id": str(image_id), "correct": correct, "truth": truth,
                             **grade_image(h, regions[expression], truth_maps[expression])})
    out = pd.DataFrame(rows)
    out.attrs["missing"] = missing
    return out


def image_grades(run_dir: str | os.PathLike, methods: list[str], progress: bool = True) -> pd.DataFrame:
    """:func:`grade_images` of a run, kept in the run (``RUN/statistics/image_grades``) for the chapters
    that read them after the ground-truth chapter (the Discussion).

    The kept table is reused only while every graded class file holds the same explanations (their
    cache keys) and the dataset the same records and landmarks; otherwise the images are graded again.
    """
    found = [(m, *g) for m in methods for g in class_files(run_dir, m)]
    parts = [f"{m}/{n}/{f}/{e}/{read_class_file(path, ('key',))['key']}" for m, n, f, e, path in found]
    parts += [_dataset_digest(data_dir(run_dir)), "constant maps kept"]  # tables graded before that differ
    key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    folder = statistics_dir(run_dir, "image_grades")
    table, stamp = folder / "grades.csv", folder / "key.txt"
    if table.is_file() and stamp.is_file() and stamp.read_text().strip() == key:
        graded = read_csv(table, dtype={"id": str})
        graded.attrs["missing"] = {m: f"{explanations_dir(run_dir, m)}: no explanations" for m in methods
                                   if m not in set(graded.method)}
        return graded
    graded = grade_images(run_dir, methods, progress)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_paths([table, stamp]) as (tmp_table, tmp_stamp):
        graded.to_csv(tmp_table, index=False)
        tmp_stamp.write_text(key)
    return graded


def same_image_table(graded: pd.DataFrame, truth: str, metric: str = "roc_auc",
                     networks: list[str] | None = None) -> pd.DataFrame:
    """The per-image grades of :func:`grade_images` as paired units: the correctly classified images,
    one row per ``(network, fold, expression, id)``, one column per explainer (NaN where it did not
    explain that image), ready for :func:`fermap_utils.statistics.pairwise_comparisons`.

    Parameters
    ----------
    graded : DataFrame
        :func:`grade_images`'s rows.
    truth : str
        ``planted`` or ``discriminative``.
    metric : str
        The score compared.
    networks : list of str, optional
        Keep only these networks (e.g. the ones trained here, FER2013 apart).
    """
    rows = graded[(graded.truth == truth) & graded.correct]
    if networks is not None:
        rows = rows[rows.network.isin(networks)]
    return rows.pivot_table(index=["network", "fold", "expression", "id"], columns="method", values=metric,
                            aggfunc="first")


def summarise_grades(grades: pd.DataFrame, by: list[str], metrics: tuple[str, ...] = ("iou", "f1", "roc_auc", "ncc")
                     ) -> pd.DataFrame:
    """Mean scores grouped by ``by`` (e.g. ``["method", "truth"]``), with the number of heatmaps."""
    table = grades.groupby(by)[list(metrics)].mean()
    table["n"] = grades.groupby(by).size()
    return table


def accuracy_against_truth(grades: pd.DataFrame, accuracy: pd.Series, metric: str = "roc_auc",
                           truth: str = "planted") -> pd.DataFrame:
    """Do better networks give truer heatmaps? Per explainer, the rank correlation across networks of
    test accuracy with the mean ``metric`` against ``truth`` (one of :data:`TRUTHS`), with its exact
    permutation p-value.

    Parameters
    ----------
    grades : DataFrame
        From :func:`grade_run`.
    accuracy : Series
        Test accuracy, indexed by network.
    """
    rows = []
    for method, g in grades[grades.truth == truth].groupby("method", sort=False):
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


# ---------------------------------------------------------------- the discriminative truth


def discriminative_maps(warped: np.ndarray, subjects: np.ndarray, expressions: np.ndarray) -> dict[str, np.ndarray]:
    """The discriminative truth: where each class's images differ from the other classes' images of the
    same identity, on the standard face.

    For identity i and class c, let X_{i,c,1..n} be its images warped to the standard face
    (each with its own landmarks, as its explanations are). Per pixel,

    - between(c, c') = mean over all pairs (k, k') of ``|X_{i,c,k} - X_{i,c',k'}|``,
    - within(c) = mean over pairs k < k' of ``|X_{i,c,k} - X_{i,c,k'}|``,
    - D_{i,c} = mean over the other classes c' of between(c, c') - within(c) / 2 - within(c') / 2,

    and the discriminative map of c is D_{i,c} averaged over identities (each identity
    weighs the same). D_{i,c} is, per pixel and class pair, half the energy distance
    (Székely & Rizzo 2013) between the grey levels of the two classes' images of that
    identity: its expectation is 0 wherever the two classes' images are distributed alike
    and positive where they differ. Subtracting the within-class term matters: the
    images of a class differ in pose, light and noise, drawn independently of the class,
    and ``|X_c - X_c'|`` alone stays near that nuisance's level (about 26 grey levels on
    the default set) over the whole face. Where the classes differ by much more than the
    nuisance, D is close to that difference in grey levels; where they differ by less, it is
    smaller. Estimates can fall slightly below 0 where nothing differs.

    Parameters
    ----------
    warped : (N, H, W) float
        The images on the standard face.
    subjects, expressions : (N,) str
        Each image's identity and class. Every identity must have every class, each at
        least twice (the within-class term needs a pair).

    Returns
    -------
    dict expression -> (H, W) float32, grey levels

    Raises
    ------
    FermapError
        When an identity lacks a class or has a class only once.
    """
    warped = np.asarray(warped, dtype=np.float32)
    table = pd.DataFrame({"subject": np.asarray(subjects), "expression": np.asarray(expressions)})
    classes = sorted(table.expression.unique())
    counts = table.groupby(["subject", "expression"]).size().unstack(fill_value=0).reindex(columns=classes,
                                                                                           fill_value=0)
    short = counts[(counts < 2).any(axis=1)]
    if len(short):
        raise FermapError(f"the discriminative truth needs every identity in every class at least twice; "
                          f"{len(short)} identities are not (e.g. {short.index[0]!r}: {dict(short.iloc[0])})")
    sums = {c: np.zeros(warped.shape[1:], np.float64) for c in classes}
    for _, group in table.groupby("subject"):
        images = {c: warped[group.index[group.expression == c]] for c in classes}
        within = {c: _mean_abs_pairs(x, x, distinct=True) for c, x in images.items()}
        for i, c in enumerate(classes):
            for c2 in classes[i + 1:]:  # the between term is symmetric: computed once per pair
                d = _mean_abs_pairs(images[c], images[c2]) - within[c] / 2 - within[c2] / 2
                sums[c] += d
                sums[c2] += d
    scale = 1.0 / ((len(classes) - 1) * counts.shape[0])
    return {c: (sums[c] * scale).astype(np.float32) for c in classes}


def _mean_abs_pairs(a: np.ndarray, b: np.ndarray, distinct: bool = False) -> np.ndarray:
    """Mean of ``|a[k] - b[k']|`` over all pairs (k, k'), or over k < k' with ``distinct`` (a is b)."""
    pairs = [(k, k2) for k in range(len(a)) for k2 in range(len(b)) if not distinct or k < k2]
    return np.mean([np.abs(a[k].astype(np.float64) - b[k2]) for k, k2 in pairs], axis=0)


def warped_images(data_dir: str | os.PathLike, progress: bool = True) -> tuple[np.ndarray, pd.DataFrame]:
    """Every image of a built synthetic dataset warped to the standard face with its stored landmarks
    (as its explanations are, :func:`fermap_utils.warping.warp_to_standard`).

    Returns the (N, 275, 224) float32 stack and the records (``image, subject, expression``) in its order.
    """
    data_dir = Path(data_dir)
    table = read_csv(records_file(data_dir), columns=("image", "subject", "expression"), dtype={"subject": str})
    marks = np.load(landmarks_file(data_dir))
    warped = None
    for i, row in enumerate(tqdm.auto.tqdm(list(table.itertuples()), desc="warping the images", unit="img",
                                           disable=not progress)):
        image = cv2.imread(str(data_dir / row.image), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise FermapError(f"{data_dir / row.image}: missing or unreadable image")
        face = warp_to_standard(image.astype(np.float32), marks[i])[0]
        if warped is None:
            warped = np.zeros((len(table), *face.shape), np.float32)
        warped[i] = face
    return warped, table


def compute_discriminative_maps(data_dir: str | os.PathLike, progress: bool = True) -> dict[str, np.ndarray]:
    """:func:`discriminative_maps` of a built synthetic dataset, from its images, landmarks and records
    (:func:`warped_images`)."""
    warped, table = warped_images(data_dir, progress)
    return discriminative_maps(warped, table.subject.to_numpy(), table.expression.to_numpy())


#: The key of the mean face in the discriminative maps' cache (no expression starts with ``_``).
_MEAN_FACE = "_mean_face"


def _dataset_digest(data_dir: str | os.PathLike) -> str:
    """What a built dataset's truths and grades depend on: its records and landmarks (SHA-256)."""
    return hashlib.sha256(records_file(data_dir).read_bytes() + landmarks_file(data_dir).read_bytes()).hexdigest()


def _truth_cache(data_dir: str | os.PathLike, progress: bool) -> dict[str, np.ndarray]:
    """The discriminative maps and the mean face of a built dataset, cached together: both need every
    image warped to the standard face, so they are computed in one pass."""
    path = discriminative_file(data_dir)
    digest = _dataset_digest(data_dir)
    if path.is_file():
        with np.load(path) as z:
            if "_digest" in z.files and str(z["_digest"]) == digest and _MEAN_FACE in z.files:
                return {k: z[k] for k in z.files if k != "_digest"}
    warped, table = warped_images(data_dir, progress)
    found = {**discriminative_maps(warped, table.subject.to_numpy(), table.expression.to_numpy()),
             _MEAN_FACE: warped.mean(axis=0)}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, _digest=np.array(digest), **found)
    return found


def load_discriminative_maps(data_dir: str | os.PathLike, progress: bool = True) -> dict[str, np.ndarray]:
    """The discriminative maps of a built synthetic dataset, cached beside its planted maps.

    Computed by :func:`compute_discriminative_maps`'s definition on first use and written to
    :func:`fermap_utils.layout.discriminative_file` atomically (with :func:`load_mean_face`'s mean
    face), with the digest of the dataset's records and landmarks: a cache from other records is
    recomputed.
    """
    return {k: v for k, v in _truth_cache(data_dir, progress).items() if not k.startswith("_")}


def load_mean_face(data_dir: str | os.PathLike, progress: bool = True) -> np.ndarray:
    """The mean of a built dataset's images on the standard face (275, 224), cached with the
    discriminative maps (:func:`load_discriminative_maps`): its edges are one of :func:`chance_rows`."""
    return _truth_cache(data_dir, progress)[_MEAN_FACE]


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
