"""The explainers, each declared once: the registry that ``plan``, ``explanations``, the profile
schema, the command line and the chapters read.

An explainer is one :class:`Explainer` in :data:`REGISTRY`: its name; the function that explains
a batch of images of one model; its settings (their defaults in ``config.yaml``, ``explainers:
<name>``, a profile's ``explain`` entry on top through the keys it lists in ``options``, each with
its JSON-schema fragment, which :func:`fermap_utils.profiles.validate_profile` merges into the
profile schema); its cost for ``fermap plan`` (network passes per image, and whether they run
backward); the settings its cached explanations depend on (their cache key); how it warps an
explanation to the standard face; and which networks it can explain. ``plan.py`` and
``explanations.py`` name no explainer: they ask this registry.

Adding an explainer
-------------------
1. Write the function that explains a batch (a map method in :mod:`fermap_utils.attribution`,
   ``(model, images, labels, ...) -> (N, H, W)`` non-negative maps) and its adapter here with
   the signature of :attr:`Explainer.explain`.
2. Add its settings' defaults under ``explainers:`` in ``config.yaml`` (``name: {}`` for none):
   the run-folder layout and the profile schema learn the name there.
3. Add one :class:`Explainer` entry to :data:`REGISTRY`.

Nothing else changes: ``fermap explain --method NAME``, ``explain.methods: [NAME]`` in a profile,
``fermap plan``, the cache and the heatmaps folder ``RUN/heatmaps_NAME`` follow.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .attribution import cam, cam_gradcam_scale, cam_maps, extremal_perturbation, gradcam, gradcam_maps
from .config import expressions, section
from .data import load_dataset, resize_images
from .errors import FermapError
from .layout import PAPER_METHOD, data_dir
from .lime import EXPLANATION_DTYPES, WARP_ORDER, LimeSettings, explain_images, keras_predictor, standardise
from .models import load_trained, spec
from .warping import apply_map, standardisation_map

#: A batch explainer: ``(model, images (N, H, W), labels (N,), seeds (N,), settings, batch_size, progress)
#: -> (pictures: N explanation images at the images' size, records)``; the records are LIME's
#: per-image :class:`fermap_utils.lime.Explanation` list, or a dict of per-image ``(N, ...)`` details.
ExplainFunction = Callable[..., tuple[Any, Any]]


def _any_network(network: str) -> str | None:
    return None


def _gap_head(network: str) -> str | None:
    """CAM needs a global-average-pooling head: the keras.applications networks, Lite0 and FER2013."""
    s = spec(network)
    return None if ("application" in s or s.get("lite") or s.get("fixed")) else \
        "CAM needs a global-average-pooling head; this network flattens its features"


def _warp(picture: np.ndarray, landmarks: np.ndarray, settings: Any) -> np.ndarray:
    """A map method's explanation warped to the standard face, bilinearly, as it is (float)."""
    return apply_map(picture, standardisation_map(landmarks, picture.shape))


def _config_settings(name: str) -> Callable[[dict | None], dict]:
    """An explainer's settings as a plain mapping: ``config.yaml``'s ``explainers: <name>``."""
    def settings(explain: dict | None) -> dict:
        return dict(section("explainers")[name])
    return settings


@dataclass(frozen=True)
class Explainer:
    """One explainer, everything fermap needs to know about it."""

    name: str
    #: Explains a batch (:data:`ExplainFunction`).
    explain: ExplainFunction
    #: Its settings from a profile's ``explain`` entry (``None``: the defaults of ``config.yaml``).
    settings: Callable[[dict | None], Any]
    #: Network passes per explained image, from its settings (``fermap plan``'s cost model).
    passes: Callable[[Any], int]
    #: Whether its passes also run backward (timed at the training rate, else at the inference rate).
    backward: bool = False
    #: The profile ``explain`` keys it reads, each with its JSON-schema fragment.
    options: dict[str, dict] = field(default_factory=dict)
    #: The ``explain`` key that overrides ``images_per_class`` for it (an expensive explainer may do fewer).
    images_per_class: str | None = None
    #: What its cached explanations depend on, from its settings (part of the cache key).
    key: Callable[[Any], dict] = dict
    #: One explanation image warped to the standard face: ``(picture, landmarks, settings) -> (275, 224)``.
    standardise: Callable[[np.ndarray, np.ndarray, Any], np.ndarray] = _warp
    #: Why it cannot explain a network (by name), or None.
    applies_to: Callable[[str], str | None] = _any_network


# ----------------------------------------------------------------------- the explainers' functions

def _lime(model, images, labels, seeds, settings: LimeSettings, batch_size: int, progress):
    found = explain_images(keras_predictor(model), images, labels, seeds, settings, batch_size=batch_size,
                           progress=progress)
    return [e.image for e in found], found


def _maps(method: Callable) -> ExplainFunction:
    """The batch explainer of a map method ``(model, images, labels) -> maps`` that records no details."""
    def explain(model, images, labels, seeds, settings, batch_size, progress):
        maps = method(model, images, labels)
        if progress:
            progress(len(maps))
        return maps, {}
    return explain


def _extremal(model, images, labels, seeds, settings: dict, batch_size: int, progress):
    found = extremal_perturbation(model, images, labels, areas=settings["areas"], steps=settings["steps"],
                                  grid=settings["grid"], learning_rate=settings["learning_rate"],
                                  area_weight=settings["area_weight"], seed=int(seeds[0]) if len(seeds) else 0)
    if progress:
        progress(len(images))
    n = len(images)
    return found.explanation, {"area_target": np.tile(found.areas, (n, 1)), "area_achieved": found.achieved.T,
                               "score": found.scores.T, "undecided": found.undecided.T}


def _extremal_settings(explain: dict | None) -> dict:
    """``config.yaml``'s ``explainers: extremal``, its steps overridden by ``explain.extremal_steps``."""
    settings = dict(section("explainers")["extremal"])
    steps = (explain or {}).get("extremal_steps")
    return {**settings, "steps": int(steps)} if steps else settings


_POSITIVE = {"$ref": "#/$defs/positive_int"}

#: Every explainer, in the order the book shows them; LIME (:data:`fermap_utils.layout.PAPER_METHOD`)
#: is the paper's and always runs.
REGISTRY: dict[str, Explainer] = {e.name: e for e in [
    Explainer("lime", _lime, LimeSettings.from_profile, passes=lambda s: s.num_samples, key=asdict,
              standardise=standardise,
              options={"num_samples": {"type": "integer", "minimum": 2}, "n_segments": _POSITIVE,
                       "compactness": {"type": "number", "exclusiveMinimum": 0},
                       "kernel_width": {"type": "number", "exclusiveMinimum": 0},
                       "alpha": {"type": "number", "minimum": 0},
                       "explanation_dtype": {"enum": list(EXPLANATION_DTYPES)},
                       "warp_interpolation": {"enum": list(WARP_ORDER)}}),
    Explainer("cam", _maps(cam), _config_settings("cam"), passes=lambda s: 1, applies_to=_gap_head),
    Explainer("gradcam", _maps(gradcam), _config_settings("gradcam"), passes=lambda s: 1, backward=True),
    Explainer("extremal", _extremal, _extremal_settings, passes=lambda s: len(s["areas"]) * int(s["steps"]),
              backward=True, images_per_class="extremal_images_per_class",
              options={"extremal_images_per_class": _POSITIVE, "extremal_steps": _POSITIVE}),
]}


# ----------------------------------------------------------------------- reading the registry

def names() -> tuple[str, ...]:
    """The explainers' names, in the registry's order.

    Returns
    -------
    tuple of str

    Raises
    ------
    FermapError
        When ``config.yaml``'s ``explainers`` and the registry name different explainers.
    """
    configured = list(section("explainers"))
    if configured != list(REGISTRY) or PAPER_METHOD not in REGISTRY:
        raise FermapError(f"config.yaml's explainers ({', '.join(configured)}) and fermap_utils.explainers' "
                          f"registry ({', '.join(REGISTRY)}) must name the same explainers, in the same order")
    return tuple(REGISTRY)


def get(method: str) -> Explainer:
    """The registry's entry of an explainer.

    Parameters
    ----------
    method : str
        Its name.

    Returns
    -------
    Explainer

    Raises
    ------
    FermapError
        For an unknown name, in one line listing the known ones.
    """
    known = names()
    if method not in REGISTRY:
        raise FermapError(f"unknown explanation method {method!r}; one of {', '.join(known)}")
    return REGISTRY[method]


def applicable(method: str, network: str) -> str | None:
    """Why an explainer cannot explain a network (CAM needs a GAP head), or None."""
    return get(method).applies_to(network)


def profile_methods(prof: dict) -> list[str]:
    """The explainers a profile runs: the paper's (LIME) and its ``explain.methods``, each once."""
    return list(dict.fromkeys([PAPER_METHOD, *((prof.get("explain") or {}).get("methods") or [])]))


def images_per_class(method: str, options: dict) -> int:
    """How many images per class an explainer explains: ``images_per_class`` of the profile's
    ``explain`` entry (with its defaults, :func:`fermap_utils.profiles.explain_options`), or the
    explainer's own key for it."""
    per_class = int(options["images_per_class"])
    own = get(method).images_per_class
    return int(options.get(own, per_class)) if own else per_class


def options_schema() -> dict[str, dict]:
    """The ``explain`` keys every explainer reads, with their JSON-schema fragments (for the profile schema)."""
    return {key: fragment for name in names() for key, fragment in REGISTRY[name].options.items()}


def settings_key(method: str, settings: Any) -> dict:
    """What an explainer's cached explanations depend on besides the model and the images."""
    return get(method).key(settings)


def explain_batch(method: str, model, images: np.ndarray, labels: np.ndarray, explain: dict | None = None,
                  seeds: list[int] | None = None, batch_size: int = 1000, progress=None,
                  settings: Any = None) -> tuple[Any, Any]:
    """Explain a batch of images of one model by an explainer, at the images' size.

    Parameters
    ----------
    method : str
        The explainer (:func:`names`).
    model : keras.Model
        A fermap network.
    images : (N, H, W) array
        Grey images in [0, 255], at the model's input size.
    labels : (N,) ints
        The class to explain for each image.
    explain : dict, optional
        A profile's ``explain`` entry: the explainer's settings (``config.yaml``'s by default).
    seeds : N ints, optional
        One seed per image (``0 .. N-1`` by default).
    batch_size : int
        Images per prediction call, for the explainers that batch their samples (LIME).
    progress : callable, optional
        Called with the number of images finished.
    settings : optional
        The explainer's settings, already made (:attr:`Explainer.settings`); they override ``explain``.

    Returns
    -------
    pictures : N (H, W) arrays
        One non-negative explanation image per image.
    records
        LIME's per-image :class:`fermap_utils.lime.Explanation` list; for another explainer a dict
        of per-image ``(N, ...)`` details (Extremal Perturbation: ``area_target``, ``area_achieved``
        and ``score``, each (N, A)), possibly empty.
    """
    entry = get(method)
    settings = entry.settings(explain) if settings is None else settings
    seeds = list(range(len(images))) if seeds is None else list(seeds)
    return entry.explain(model, images, labels, seeds, settings, batch_size, progress)


def cam_identity(run_dir, trained: pd.DataFrame, images: int = 4, data=None) -> pd.DataFrame:
    """Check CAM against Grad-CAM on every trained network of a run that has a GAP head.

    Parameters
    ----------
    run_dir : path
        A run with trained networks.
    trained : DataFrame
        Its trained (network, fold)s (``network``, ``fold``), e.g. the run's accuracy table.
    images : int
        How many of the dataset's first images to explain, each for the class ``i mod k``
        (``k`` the number of expressions).
    data : Dataset, optional
        The run's dataset, if already loaded.

    Returns
    -------
    DataFrame
        One row per (network, fold) that CAM can explain (:func:`applicable`): ``network``,
        ``fold`` and :func:`fermap_utils.attribution.cam_gradcam_scale`'s columns.
    """
    data = data or load_dataset(data_dir(run_dir))
    labels = np.arange(images) % len(expressions())
    rows = []
    for network, fold in zip(trained.network, trained.fold.astype(int)):
        if applicable("cam", network):
            continue
        model = load_trained(run_dir, network, fold)
        x = resize_images(data.images[:images], model.input_shape[1]).astype(np.float32)
        rows.append({"network": network, "fold": int(fold),
                     **cam_gradcam_scale(cam_maps(model, x, labels), gradcam_maps(model, x, labels))})
    return pd.DataFrame(rows)
