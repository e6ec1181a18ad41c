"""The run-level randomisation sanity check (Adebayo et al. 2018): a trained (network, fold)
against the same architecture with every weight drawn afresh, explained on the same images.

The comparison of the two sets of heatmaps is :func:`fermap_utils.statistics.randomisation_comparison`;
this module loads what it needs from a run (dataset, predictions, model) and explains.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

from . import explainers
from .config import expressions as config_expressions
from .data import load_dataset, resize_images, scale_landmarks
from .explanations import choose_images, standardised_explanations
from .heatmaps import heatmap, to_uint8
from .layout import data_dir, metrics_file, predictions_file
from .masks import ekman_masks
from .models import load_trained
from .profiles import explain_options
from .statistics import SanityCheck, randomisation_comparison
from .training import seeded


def sanity_check(run_dir: str | os.PathLike, network: str, fold: int, prof: dict, method: str = "lime",
                 per_class: int = 3) -> SanityCheck:
    """Adebayo et al.'s model-parameter randomisation test on a trained (network, fold).

    The same images (``per_class`` per predicted class) are explained by the trained network and
    by the same architecture with every weight drawn afresh from its initialiser; each model's
    explanations are pooled per class into a heatmap (Eq. 1) and scored against the Ekman masks.
    If both score alike, the metric does not measure what the network learned; if the two
    heatmaps are alike, the explanation does not depend on the weights.

    Parameters
    ----------
    run_dir : path
        The run folder holding the trained (network, fold) and its dataset.
    network : str
        The network's name in the run.
    fold : int
        The fold, from 1.
    prof : dict
        The run's profile; its ``explain`` section gives the explainer's settings and seed.
    method : str, optional
        The explainer.
    per_class : int, optional
        Test images explained per predicted class.

    Returns
    -------
    SanityCheck
        The scores of both models on the same expressions, how alike the two heatmaps of each
        expression are, and the expressions dropped with the reason (no image predicted as the
        class, or a constant heatmap from either model).
    """
    import keras

    expressions = list(config_expressions())
    metrics = json.loads(metrics_file(run_dir, network, fold).read_text())
    predictions = pd.read_csv(predictions_file(run_dir, network, fold), dtype={"id": str})
    options = explain_options(prof)
    seed = int(options["seed"])
    settings = explainers.get(method).settings(options)  # the method's own settings, as the run explained
    chosen = choose_images(predictions.pred.to_numpy(), per_class, seed + 17, len(expressions))
    data = load_dataset(data_dir(run_dir))
    index = {i: n for n, i in enumerate(data.table.id.astype(str))}
    size = int(metrics["input_size"])
    trained = load_trained(run_dir, network, fold)
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
                                                 settings, list(positions), int(options["batch_size"]))
            maps[label][expressions[c]] = to_uint8(heatmap(stack))
    return randomisation_comparison(maps["trained"], maps["random weights"], ekman_masks(), images, dropped)
