"""Several states of each trained network, explained and graded: the points of "do more accurate
networks give truer heatmaps?".

One trained network per point gives too few points for any rank correlation to be significant
(:func:`fermap_utils.statistics.smallest_correlation_p`). Training keeps each network at a few
states (the profile's ``states``: fractions of its epochs, 0 before any training;
:func:`fermap_utils.training.state_epochs`), each with its test accuracy. This stage explains
every state, final model included, on the same images with every explainer of the profile:

- the images are the final network's chosen test images (:func:`fermap_utils.explanations.choose_images`,
  the profile's seed, the smallest of the explainers' images per class: the nested draw every
  explainer explained) that it classifies correctly, the first ``explain.state_images_per_class`` of
  each class, each explained for its true class;
- the final model's maps are the run's own explanations of those images (the same images, seeds
  and settings: :func:`fermap_utils.explanations.current_image_maps`), read rather than redone;
- each explainer runs with its own settings (:mod:`fermap_utils.explainers`), and each map is
  stored warped to the standard face, per image (:func:`fermap_utils.layout.state_maps_file`),
  cached by the state's model hash (:func:`fermap_utils.explanations.model_hash`).

:func:`accuracy_points` grades every stored map against the synthetic set's truths
(:func:`fermap_utils.groundtruth.grade_heatmap`) and gives one point per (network, fold, state,
explainer): the state's accuracy and its maps' mean ROC-AUC against each truth.
:func:`fermap_utils.statistics.accuracy_relation` relates the two.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import tqdm.auto

from . import explainers
from ._io import atomic_path
from .config import expressions as config_expressions
from .data import resize_images, scale_landmarks
from .errors import FermapError
from .explanations import choose_images, current_image_maps, model_hash, standardised_explanations
from .groundtruth import grade_heatmap, load_discriminative_maps
from .heatmaps import stretch
from .layout import data_dir, metrics_file, model_file, predictions_file, state_maps_file, state_model_file
from .metrics import roc_auc
from .models import load_model_file, load_trained
from .profiles import explain_options
from .rundata import cached_dataset, data_key, load_results, read_metrics, run_data_folder
from .synthetic import load_planted_maps, planted_regions

#: The truths :func:`accuracy_points` grades against by default (:func:`run_truths`).
STATE_TRUTHS: tuple[str, ...] = ("planted", "discriminative")


def state_images_per_class(prof: dict) -> int:
    """How many images per class each state is explained on: the profile's
    ``explain.state_images_per_class`` (0, none, when it does not set it)."""
    return int(explain_options(prof).get("state_images_per_class", 0))


def network_states(run_dir: str | os.PathLike, network: str, fold: int) -> list[dict]:
    """The states of one trained (network, fold), the final model last.

    Parameters
    ----------
    run_dir : path
        The run folder.
    network : str
        The network.
    fold : int
        The fold, from 1.

    Returns
    -------
    list of dict
        ``epoch``, ``accuracy``, ``final`` (bool) and ``path`` (the model file), by epoch; empty for a
        fixed network (never trained: it has no states).
    """
    metrics = read_metrics(run_dir, metrics_file(run_dir, network, fold))
    if not metrics.get("trained"):
        return []
    rows = [{"epoch": int(s["epoch"]), "accuracy": float(s["accuracy"]), "final": False,
             "path": state_model_file(run_dir, network, fold, s["epoch"])} for s in metrics.get("states", [])]
    return rows + [{"epoch": int(metrics["epochs"]), "accuracy": float(metrics["accuracy"]), "final": True,
                    "path": model_file(run_dir, network, fold)}]


def state_images(predictions: pd.DataFrame, per_class: int, k: int, seed: int, n_classes: int) -> np.ndarray:
    """The rows of a (network, fold)'s predictions its states are explained on.

    Parameters
    ----------
    predictions : DataFrame
        The final model's ``predictions.csv`` (``true``, ``pred``).
    per_class : int
        The profile's ``explain.images_per_class``.
    k : int
        Images per class to keep (``explain.state_images_per_class``).
    seed : int
        :func:`fermap_utils.explanations.choose_images`' seed for this (network, fold).
    n_classes : int
        The number of expressions.

    Returns
    -------
    (M,) int array
        For each class in turn, the first ``k`` of the images chosen for it that the final model
        classifies correctly (fewer when fewer are): the same images for every state and explainer.
    """
    chosen = choose_images(predictions.pred.to_numpy(), per_class, seed, n_classes)
    true = predictions.true.to_numpy()
    rows = [np.asarray([r for r in chosen[c] if true[r] == c][:k], dtype=int) for c in range(n_classes)]
    return np.concatenate(rows) if rows else np.zeros(0, int)


def _state_key(model: str, method: str, settings: dict, ids: np.ndarray, seed: int) -> str:
    blob = json.dumps({"model": model, "method": method, "settings": settings, "ids": [str(i) for i in ids],
                       "seed": seed}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _cached_key(path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            return str(f["key"])
    except (ValueError, OSError, EOFError, KeyError):
        return None  # damaged or foreign: explained again


def explain_states(run_dir: str | os.PathLike, network: str, fold: int, prof: dict, progress=None) -> dict:
    """Explain every state of one trained (network, fold) by every explainer of the profile, resuming.

    Parameters
    ----------
    run_dir : path
        The run folder.
    network : str
        The network.
    fold : int
        The fold, from 1.
    prof : dict
        The run's profile.
    progress : callable, optional
        Called with the number of (state, explainer) pairs done.

    Returns
    -------
    dict
        ``{"images": M, "explained": pairs explained now, "cached": pairs found cached, "reused": the
        final model's pairs read from the run's own explanations}``.
    """
    run_dir = Path(run_dir)
    states = network_states(run_dir, network, fold)
    k = state_images_per_class(prof)
    methods = [m for m in explainers.profile_methods(prof) if not explainers.applicable(m, network)]
    if not states or k <= 0 or not methods:
        return {"images": 0, "explained": 0, "cached": 0, "reused": 0}
    options = explain_options(prof)
    seed = int(options["seed"])
    expressions = list(config_expressions())
    predictions = pd.read_csv(predictions_file(run_dir, network, fold), dtype={"id": str})
    # the smallest of the explainers' nested draws: images every explainer explained in the run itself
    fewest = min(explainers.images_per_class(m, options) for m in methods)
    rows = state_images(predictions, fewest, k, seed * 1000 + int(fold), len(expressions))
    ids, labels = predictions.id.to_numpy()[rows], predictions.true.to_numpy()[rows].astype(int)
    if not len(ids):  # the final model classifies none of its chosen images correctly
        return {"images": 0, "explained": 0, "cached": 0, "reused": 0}
    folder = run_data_folder(run_dir)
    data = cached_dataset(str(folder), data_key(folder))
    index = {i: n for n, i in enumerate(data.table.id.astype(str))}
    unknown = [i for i in ids if i not in index]
    if unknown:
        raise FermapError(f"{predictions_file(run_dir, network, fold)}: image id(s) {', '.join(unknown[:5])} "
                          "are not in the run's dataset")
    positions = np.array([index[i] for i in ids], dtype=int)
    size = int(read_metrics(run_dir, metrics_file(run_dir, network, fold))["input_size"])
    images = resize_images(data.images[positions], size).astype(np.float32)
    marks = scale_landmarks(data.landmarks[positions], data.images.shape[1], size)
    seeds = [seed * 1_000_003 + int(p) for p in positions]  # the main explanations' streams
    done = cached = reused = 0
    for state in states:
        if not state["path"].is_file():
            raise FermapError(f"{state['path']}: state missing; train again (fermap train) to keep it")
        digest = model_hash(state["path"])
        model = None
        for method in methods:
            settings = explainers.get(method).settings(options)
            key = _state_key(digest, method, explainers.settings_key(method, settings), ids, seed)
            path = state_maps_file(run_dir, network, fold, state["epoch"], method)
            if _cached_key(path) == key:
                cached += 1
            else:
                # the final model's maps are the run's own (same images, seeds and settings): read, not redone
                maps = (current_image_maps(run_dir, network, fold, prof, method, ids, labels) if state["final"]
                        else None)
                read = maps is not None
                if not read:
                    model = model if model is not None else load_trained_state(state["path"], run_dir, network, fold)
                    maps, _ = standardised_explanations(model, images, marks, labels, method, settings, seeds,
                                                        int(options["batch_size"]))
                path.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(path) as tmp:
                    with open(tmp, "wb") as fh:
                        np.savez_compressed(fh, key=np.array(key), ids=np.asarray(ids, dtype=str), labels=labels,
                                            maps=maps.astype(np.float32), epoch=state["epoch"],
                                            accuracy=state["accuracy"])
                reused, done = reused + read, done + (not read)
            if progress:
                progress(1)
    return {"images": int(len(ids)), "explained": done, "cached": cached, "reused": reused}


def load_trained_state(path: Path, run_dir: str | os.PathLike, network: str, fold: int):
    """A state's model: the final model (:func:`fermap_utils.models.load_trained`) for
    ``model.keras``, else the state file loaded as safely (no code runs from it)."""
    if Path(path) == model_file(run_dir, network, fold):
        return load_trained(run_dir, network, fold)
    return load_model_file(path)


def state_work(run_dir: str | os.PathLike, prof: dict) -> list[tuple[str, int, int]]:
    """The trained (network, fold)s whose states this stage explains, each with its number of
    (state, explainer) pairs (for the progress bar)."""
    trained = load_results(run_dir)
    out = []
    for network, fold in zip(trained.network, trained.fold.astype(int)):
        methods = [m for m in explainers.profile_methods(prof) if not explainers.applicable(m, network)]
        n = len(network_states(run_dir, network, fold)) * len(methods)
        if n and state_images_per_class(prof) > 0:
            out.append((network, int(fold), n))
    return out


def explain_states_run(run_dir: str | os.PathLike, prof: dict, progress: bool = True) -> pd.DataFrame:
    """The states stage of ``fermap run``: :func:`explain_states` for every trained (network, fold), with
    a progress bar over (state, explainer) pairs.

    Parameters
    ----------
    run_dir : path
        The run folder, trained.
    prof : dict
        The run's profile (its ``states`` and ``explain.state_images_per_class``).
    progress : bool
        Show the bar.

    Returns
    -------
    DataFrame
        One row per (network, fold): ``images``, ``explained``, ``cached``, ``reused``, ``seconds``.
    """
    work = state_work(run_dir, prof)
    rows = []
    with tqdm.auto.tqdm(total=sum(n for *_, n in work), desc="explaining states", unit="state x method",
                        disable=not progress) as bar:
        for network, fold, _ in work:
            started = time.perf_counter()
            out = explain_states(run_dir, network, fold, prof, progress=bar.update)
            rows.append({"network": network, "fold": fold, **out,
                         "seconds": round(time.perf_counter() - started, 1)})
    return pd.DataFrame(rows, columns=["network", "fold", "images", "explained", "cached", "reused", "seconds"])


def load_state_maps(run_dir: str | os.PathLike) -> pd.DataFrame:
    """Every stored state explanation of a run, one row per (network, fold, state, explainer).

    Returns
    -------
    DataFrame
        ``network``, ``fold``, ``epoch``, ``final``, ``accuracy``, ``method``, ``ids``, ``labels``
        (the classes explained, as indices of the expressions) and ``maps`` ((M, 275, 224) float).
    """
    trained = load_results(run_dir)
    rows = []
    for network, fold in zip(trained.network, trained.fold.astype(int)):
        for state in network_states(run_dir, network, fold):
            for method in explainers.names():
                path = state_maps_file(run_dir, network, fold, state["epoch"], method)
                if not path.is_file():
                    continue
                with np.load(path, allow_pickle=False) as f:
                    rows.append({"network": network, "fold": fold, "epoch": state["epoch"], "final": state["final"],
                                 "accuracy": state["accuracy"], "method": method, "ids": f["ids"],
                                 "labels": f["labels"], "maps": f["maps"]})
    return pd.DataFrame(rows, columns=["network", "fold", "epoch", "final", "accuracy", "method", "ids", "labels",
                                       "maps"])


def run_truths(run_dir: str | os.PathLike, progress: bool = False) -> dict[str, dict[str, np.ndarray]]:
    """The synthetic set's truths of a run, by name (:data:`STATE_TRUTHS`): ``{truth: {expression: map}}``,
    the planted maps (:func:`fermap_utils.synthetic.load_planted_maps`) and the discriminative ones
    (:func:`fermap_utils.groundtruth.load_discriminative_maps`)."""
    return {"planted": load_planted_maps(data_dir(run_dir)),
            "discriminative": load_discriminative_maps(data_dir(run_dir), progress=progress)}


def _grade(unit: np.ndarray, region: np.ndarray, truth: np.ndarray, metric: str) -> float:
    """One score of a [0, 1] heatmap. ROC-AUC alone as :func:`fermap_utils.metrics.threshold_free_scores`
    defines it (its fair top-K overlap costs 0.4 s on a map with large ties, measured: not needed
    here); any other score from :func:`fermap_utils.groundtruth.grade_heatmap`."""
    if metric == "roc_auc":
        return roc_auc(unit, region)
    return grade_heatmap(unit, region, truth)[metric]


def state_grades(run_dir: str | os.PathLike, truths: dict[str, dict[str, np.ndarray]],
                 metric: str = "roc_auc") -> pd.DataFrame:
    """Grade every stored state explanation, image by image, against each truth.

    Parameters
    ----------
    run_dir : path
        The run folder.
    truths : dict
        ``{truth name: {expression: truth map}}`` (:func:`run_truths`); each map's region is
        :func:`fermap_utils.synthetic.planted_regions` of it, as chapter 13 grades.
    metric : str
        The score kept, one of :func:`fermap_utils.groundtruth.grade_heatmap`'s.

    Returns
    -------
    DataFrame
        One row per (network, fold, state, explainer, image, truth), each image's map min-max stretched
        to [0, 1] as a heatmap of one explanation (:func:`fermap_utils.heatmaps.stretch`, Eq. 1 with
        N = 1): ``network``, ``fold``, ``epoch``,
        ``final``, ``accuracy``, ``method``, ``id``, ``expression``, ``truth`` and ``metric``'s value.
    """
    expressions = list(config_expressions())
    regions = {t: planted_regions(maps) for t, maps in truths.items()}
    rows = []
    for r in load_state_maps(run_dir).itertuples():
        for image_id, label, heatmap in zip(r.ids, r.labels, r.maps):
            expression = expressions[int(label)]
            for truth, maps in truths.items():
                if expression not in maps:
                    continue
                score = _grade(stretch(heatmap), regions[truth][expression], maps[expression], metric)
                rows.append({"network": r.network, "fold": r.fold, "epoch": r.epoch, "final": r.final,
                             "accuracy": r.accuracy, "method": r.method, "id": str(image_id),
                             "expression": expression, "truth": truth, metric: score})
    return pd.DataFrame(rows)


def accuracy_points(run_dir: str | os.PathLike, truths: dict[str, dict[str, np.ndarray]] | None = None,
                    metric: str = "roc_auc") -> pd.DataFrame:
    """The points of "do more accurate networks give truer heatmaps?": one per (network, fold, state,
    explainer).

    Parameters
    ----------
    run_dir : path
        The run folder, its states explained (:func:`explain_states_run`).
    truths : dict, optional
        ``{truth name: {expression: truth map}}``; by default :func:`run_truths`.
    metric : str
        The score averaged over the state's images (default ROC-AUC against the truth's region).

    Returns
    -------
    DataFrame
        ``network``, ``fold``, ``epoch``, ``final``, ``accuracy`` (the state's test accuracy), ``method``,
        one column ``<metric>_<truth>`` per truth (the mean over the state's images) and ``n_images``.
    """
    truths = run_truths(run_dir) if truths is None else truths
    grades = state_grades(run_dir, truths, metric)
    keys = ["network", "fold", "epoch", "final", "accuracy", "method"]
    if grades.empty:
        return pd.DataFrame(columns=[*keys, *(f"{metric}_{t}" for t in truths), "n_images"])
    wide = grades.pivot_table(index=[*keys, "id"], columns="truth", values=metric).reset_index()
    points = wide.groupby(keys, sort=False)[list(truths)].mean()
    points.columns = [f"{metric}_{t}" for t in points.columns]
    points["n_images"] = wide.groupby(keys, sort=False).size()
    return points.reset_index()
