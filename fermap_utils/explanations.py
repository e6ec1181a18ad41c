"""The run's explain stage: which test images are explained, by which method, cached, and the
run's heatmaps made from them.

``fermap explain`` explains, for every trained (network, fold) of a run, up to
``explain.images_per_class`` test images per predicted class (:func:`choose_images`), by any
explainer of the registry (:mod:`fermap_utils.explainers`; the paper's is LIME); each
explanation is warped to the standard face, and each (network, fold, class) cached in one file
(:func:`fermap_utils.layout.class_file`) with the sum that Eq. 1 and 2 need. The heatmaps are
then written with the authors' folder layout (:func:`write_run_heatmaps`) and read back with
structured keys (:func:`load_run_heatmaps`, :class:`HeatmapKey`).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from . import explainers
from ._io import atomic_path
from .config import expressions as config_expressions
from .data import load_dataset, resize_images, scale_landmarks
from .errors import FermapError
from .executor import Executor, Job
from .explainers import applicable
from .heatmaps import (
    CANVAS_SHAPE,
    HeatmapKey,
    heatmap,
    heatmap_filename,
    load_heatmap,
    parse_heatmap_filename,
    pooled_heatmap,
    save_heatmap,
    stretch,
    to_uint8,
)
from .layout import (
    HEATMAP_GROUPS,
    PAPER_METHOD,
    class_file,
    class_files,
    data_dir,
    explanations_dir,
    heatmap_group_dir,
    heatmaps_dir,
    heatmaps_summary_file,
    metrics_file,
    model_file,
    predictions_file,
)
from .lime import Explanation, LimeSettings, explanation_image, standardise
from .metrics import score_heatmap
from .models import load_trained
from .profiles import explain_options, read_profile
from .rundata import cached_dataset, data_key, load_results, models_made, read_metrics, run_data_folder, trained_model


def choose_images(predicted: np.ndarray, per_class: int, seed: int,
                  n_classes: int | None = None) -> dict[int, np.ndarray]:
    """Which test images a (network, fold) explains.

    Parameters
    ----------
    predicted : (N,) int array
        The predicted class of each test image.
    per_class : int
        How many images per class at most.
    seed : int
        The draw's seed.
    n_classes : int, optional
        How many classes; by default the paper's expressions (``config.yaml``).

    Returns
    -------
    dict ``class -> sorted row indices``
        Up to ``per_class`` rows for each class, drawn at random among the rows predicted as
        that class (all of them when there are fewer).

    Notes
    -----
    The draws are nested: with the same seed, a smaller ``per_class`` chooses a subset of what a
    larger one chooses (each class's rows are put in one random order and the first ``per_class``
    taken). An explainer that explains fewer images per class (Extremal Perturbation) thus
    explains images that every other explainer explained too, and they can be compared image by
    image.

    Examples
    --------
    >>> predicted = np.array([0, 1, 0, 0, 1, 0, 1, 0])
    >>> few, many = choose_images(predicted, 2, seed=0, n_classes=2), choose_images(predicted, 4, seed=0, n_classes=2)
    >>> all(set(few[c]) <= set(many[c]) for c in (0, 1))
    True
    """
    rng = np.random.default_rng(seed)
    predicted = np.asarray(predicted)
    n_classes = len(config_expressions()) if n_classes is None else int(n_classes)
    chosen = {}
    for c in range(n_classes):
        order = rng.permutation(np.flatnonzero(predicted == c))  # its draw does not depend on per_class
        chosen[c] = np.sort(order[:per_class])
    return chosen


#: What a class file holds; a change re-explains every cache (2: the nested draw of :func:`choose_images`
#: and every image's own map, ``maps``, kept for grading image by image).
STORED_FORMAT = 2


def _explain_key(metrics: dict, params: dict, per_class: int, seed: int, method: str = PAPER_METHOD,
                 model: str = "") -> str:
    """What a (network, fold)'s explanations depend on: the trained model (its settings, accuracy and
    the hash of its file, :func:`model_hash`), the method and its settings
    (:func:`fermap_utils.explainers.settings_key`), the sample."""
    blob = json.dumps({"model": metrics.get("settings"), "accuracy": metrics["accuracy"], "method": method,
                       "params": params, "per_class": per_class, "seed": seed, "model_file": model,
                       "stored": STORED_FORMAT},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def fold_explain_key(run_dir: str | os.PathLike, network: str, fold: int, prof: dict,
                     method: str = PAPER_METHOD) -> str:
    """The cache key a (network, fold)'s class files carry when they hold ``method``'s explanations
    under the profile ``prof`` (:func:`_explain_key` of the trained model, the method's settings
    and the sample)."""
    metrics = read_metrics(run_dir, metrics_file(run_dir, network, fold))
    options = explain_options(prof)
    settings = explainers.get(method).settings(options)
    return _explain_key(metrics, explainers.settings_key(method, settings),
                        explainers.images_per_class(method, options), int(options["seed"]), method,
                        model_hash(model_file(run_dir, network, fold)))


_MODEL_HASHES: dict[tuple[str, int, int], str] = {}


def _hash_stream(h, fh) -> None:
    for block in iter(lambda: fh.read(1 << 20), b""):
        h.update(block)


def _archive_hash(path: Path) -> str | None:
    """The hash of a zip archive's members by name, ``metadata.json`` (the save time) left out
    and ``config.json`` made canonical (:func:`_canonical_config`)."""
    if not zipfile.is_zipfile(path):
        return None
    h = hashlib.sha256()
    with zipfile.ZipFile(path) as archive:
        for name in sorted(archive.namelist()):
            if name == "metadata.json":
                continue
            h.update(name.encode() + b"\0")
            if name == "config.json":
                h.update(_canonical_config(archive.read(name)))
                continue
            with archive.open(name) as fh:
                _hash_stream(h, fh)
    return h.hexdigest()


def _canonical_config(blob: bytes) -> bytes:
    """A Keras ``config.json`` with its ``shared_object_id`` values (Python object addresses,
    new in every process) renumbered in order of appearance; other content unchanged."""
    try:
        config = json.loads(blob)
    except ValueError:
        return blob
    numbers: dict[Any, int] = {}

    def renumber(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: numbers.setdefault(v, len(numbers)) if k == "shared_object_id" else renumber(v)
                    for k, v in node.items()}
        if isinstance(node, list):
            return [renumber(v) for v in node]
        return node

    return json.dumps(renumber(config), sort_keys=True).encode()


def model_hash(path: Path) -> str:
    """The SHA-256 of a trained model's content (``""`` for a fixed network, which has none), so a
    replaced ``model.keras`` never passes for the one its explanations were cached with.

    A Keras archive is hashed member by member without ``metadata.json``, which holds the time
    it was saved: the same weights saved twice (a killed job redone) hash the same. Anything
    that is not a zip archive is hashed whole. Remembered per (path, size, modification time):
    a file is read once per process.
    """
    if not path.is_file():
        return ""
    st = path.stat()
    stamp = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if stamp not in _MODEL_HASHES:
        try:
            digest = _archive_hash(path)
        except (zipfile.BadZipFile, OSError, RuntimeError):
            digest = None
        if digest is None:  # not a (readable) Keras archive: the bytes themselves
            h = hashlib.sha256()
            with open(path, "rb") as fh:
                _hash_stream(h, fh)
            digest = h.hexdigest()
        _MODEL_HASHES[stamp] = digest[:16]
    return _MODEL_HASHES[stamp]


def read_class_file(path: Path, keys: tuple[str, ...] = ("key", "ids", "sum", "count"),
                    optional: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """One cached (network, fold, class) file's arrays (``keys``, and ``optional`` where present), or
    one line naming the file when it is not one fermap wrote (a foreign or damaged ``.npz`` in a
    run's explanations)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in keys if k not in f.files]
            if missing:
                raise FermapError(f"{path}: not a fermap explanation file (no {', '.join(missing)}); "
                                  "remove it and explain again")
            return {k: f[k] for k in f.files if k in keys or k in optional or k.startswith("detail_")}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise FermapError(f"{path}: not a readable explanation file ({str(exc).splitlines()[0][:80]})") from None


def _cached(path: Path, key: str) -> bool:
    if not path.is_file():
        return False
    return str(read_class_file(path, ("key",))["key"]) == key


def save_class_explanations(path: Path, key: str, ids: np.ndarray, standardised: np.ndarray,
                            explanations: list[Explanation] | None = None,
                            details: dict[str, np.ndarray] | None = None) -> None:
    """One (network, fold, class): per image its id, its standardised explanation stretched to [0, 1]
    (``maps``, float16: what :func:`load_image_maps` grades image by image), and for LIME its weights
    and superpixels, for another method its ``details`` such as Extremal Perturbation's achieved
    areas; the sum of the standardised explanations (Eq. 1's numerator) and their count. Written
    atomically."""
    explanations = explanations or []
    k = max([len(e.weights) for e in explanations], default=0)
    weights = np.full((len(explanations), k), np.nan)
    for i, e in enumerate(explanations):
        weights[i, :len(e.weights)] = e.weights
    segments = np.stack([e.segments for e in explanations]).astype(np.uint8) if explanations \
        else np.zeros((0, 0, 0), np.uint8)
    total = standardised.sum(axis=0, dtype=np.float64) if len(standardised) else np.zeros(CANVAS_SHAPE)
    extra = {f"detail_{name}": np.asarray(v) for name, v in (details or {}).items()}
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, key=key, ids=np.asarray(ids, dtype=str), weights=weights, segments=segments,
                            sum=total, count=len(standardised), maps=_stretched_maps(standardised), **extra)


def _stretched_maps(standardised: np.ndarray) -> np.ndarray:
    """Each image's explanation stretched to [0, 1] as a heatmap is (:func:`fermap_utils.heatmaps.stretch`),
    as float16: a grading by ranks or by Otsu on 8-bit grey does not see the difference."""
    if not len(standardised):
        return np.zeros((0, *CANVAS_SHAPE), np.float16)
    return np.stack([stretch(np.asarray(m, np.float64)) for m in standardised]).astype(np.float16)


def load_image_maps(run_dir: str | os.PathLike, network: str, fold: int, expression: str,
                    method: str = PAPER_METHOD) -> tuple[np.ndarray, np.ndarray]:
    """Every explained image of one (network, fold, class) with its own explanation on the standard face.

    Parameters
    ----------
    run_dir : path
        A run with ``method``'s explanations.
    network, fold, expression
        The group.
    method : str
        The explainer (:mod:`fermap_utils.explainers`).

    Returns
    -------
    ids : (N,) str array
        The images' ids, in the order of ``maps``.
    maps : (N, 275, 224) float32 array
        Each image's standardised explanation stretched to [0, 1] (an all-zero one stays zero).

    Raises
    ------
    FermapError
        When the file is not a fermap explanation file, or was written before images' maps were
        kept (explain the run again: its cache key has changed, so ``fermap run`` redoes it).
    """
    path = class_file(run_dir, network, fold, expression, method)
    f = read_class_file(path, ("ids",), optional=("maps",))
    if "maps" not in f:
        raise FermapError(f"{path}: holds no per-image maps (written by an older fermap); explain the run again")
    return f["ids"].astype(str), f["maps"].astype(np.float32)


def current_image_maps(run_dir: str | os.PathLike, network: str, fold: int, prof: dict, method: str,
                       ids: np.ndarray, labels: np.ndarray) -> np.ndarray | None:
    """The run's own maps of some images of a (network, fold), when its explanations are current.

    Parameters
    ----------
    run_dir : path
        The run folder.
    network, fold
        The trained network and fold.
    prof : dict
        The run's profile: the class files must carry the key it gives (:func:`fold_explain_key`).
    method : str
        The explainer.
    ids : (M,) str array
        The images wanted.
    labels : (M,) int array
        The class each was explained for (its class file).

    Returns
    -------
    (M, 275, 224) float32 array or None
        Each image's map as :func:`load_image_maps` gives it, in the order of ``ids``; None when a
        class file is missing, stale (another model or setting) or lacks one of the images.
    """
    expressions = list(config_expressions())
    key = fold_explain_key(run_dir, network, fold, prof, method)
    found: dict[str, np.ndarray] = {}
    for c in sorted({int(c) for c in labels}):
        path = class_file(run_dir, network, fold, expressions[c], method)
        if not _cached(path, key):
            return None
        got, maps = load_image_maps(run_dir, network, fold, expressions[c], method)
        found.update(zip(got, maps))
    if not all(str(i) in found for i in ids):
        return None
    return np.stack([found[str(i)] for i in ids]) if len(ids) else np.zeros((0, *CANVAS_SHAPE), np.float32)


def standardised_explanations(model, images: np.ndarray, landmarks: np.ndarray, labels: np.ndarray,
                              method: str = PAPER_METHOD, settings: Any = None,
                              seeds: list[int] | None = None, batch_size: int = 1000, progress=None
                              ) -> tuple[np.ndarray, list[Explanation] | dict[str, np.ndarray]]:
    """Explain images of one model by a method and warp each explanation to the standard face with
    its image's landmarks. Returns the (N, 275, 224) stack, and LIME's per-image results (for
    another method, its per-image details, e.g. Extremal Perturbation's achieved areas).

    ``settings`` are the method's (:attr:`fermap_utils.explainers.Explainer.settings`); without
    them, the method's defaults (``config.yaml``). Another method's settings are refused (TypeError):
    explaining with defaults the caller did not ask for would go unnoticed."""
    entry = explainers.get(method)
    defaults = entry.settings(None)
    if settings is None:
        settings = defaults
    elif not isinstance(settings, type(defaults)):
        raise TypeError(f"{method} takes settings of type {type(defaults).__name__}, "
                        f"not {type(settings).__name__}")
    seeds = list(range(len(images))) if seeds is None else seeds
    pictures, records = explainers.explain_batch(method, model, images, labels, seeds=seeds, batch_size=batch_size,
                                                 progress=progress, settings=settings)
    return np.stack([entry.standardise(pic, m, settings) for pic, m in zip(pictures, landmarks)]), records


def explain_fold(run_dir: Path, network: str, fold: int, data, prof: dict, progress=None,
                 method: str = PAPER_METHOD, classes: list[str] | None = None, model=None) -> dict:
    """Explain the sampled test images of one trained (network, fold), class by class, resuming.

    ``classes`` (expressions) limits the work to those classes; the images sampled for a class
    do not depend on which others are explained with it. ``model``: the trained model, if the
    caller has it. Returns ``{expression: number of images}``.
    """

    expressions = list(config_expressions())
    metrics = read_metrics(run_dir, metrics_file(run_dir, network, fold))
    options = explain_options(prof)
    settings = explainers.get(method).settings(options)
    per_class, seed = explainers.images_per_class(method, options), int(options["seed"])
    key = fold_explain_key(run_dir, network, fold, prof, method)
    predictions = pd.read_csv(predictions_file(run_dir, network, fold), dtype={"id": str})
    chosen = choose_images(predictions.pred.to_numpy(), per_class, seed * 1000 + fold, len(expressions))
    if classes is not None:
        chosen = {c: rows for c, rows in chosen.items() if expressions[c] in classes}
    todo = {c: rows for c, rows in chosen.items()
            if not _cached(class_file(run_dir, network, fold, expressions[c], method), key)}
    counts = {expressions[c]: len(rows) for c, rows in chosen.items()}
    if progress:
        progress(sum(len(r) for c, r in chosen.items() if c not in todo))
    if not todo:
        return counts
    size = int(metrics["input_size"])
    index = {i: n for n, i in enumerate(data.table.id.astype(str))}
    rows_all = np.concatenate([r for r in todo.values()]).astype(int)
    ids = predictions.id.to_numpy()[rows_all]
    unknown = [i for i in ids if i not in index]
    if unknown:
        raise FermapError(f"{predictions_file(run_dir, network, fold)}: image id(s) {', '.join(map(str, unknown[:5]))} "
                          "are not in the run's dataset")
    positions = np.array([index[i] for i in ids], dtype=int)
    images = resize_images(data.images[positions], size).astype(np.float32)
    marks = scale_landmarks(data.landmarks[positions], data.images.shape[1], size)
    labels = predictions.pred.to_numpy()[rows_all]
    model = model if model is not None else trained_model(run_dir, network, fold)
    seeds = [seed * 1_000_003 + p for p in positions]  # one stream per image, independent of the batch
    standard, found = standardised_explanations(model, images, marks, labels, method, settings, seeds,
                                                int(options["batch_size"]), progress)
    at = 0
    for c, rows in todo.items():
        n = len(rows)
        records = found[at:at + n] if isinstance(found, list) else None
        details = {k: v[at:at + n] for k, v in found.items()} if isinstance(found, dict) else None
        save_class_explanations(class_file(run_dir, network, fold, expressions[c], method), key, ids[at:at + n],
                                standard[at:at + n], records, details)
        at += n
    return counts


def explain_job(run_dir: str | os.PathLike, network: str, fold: int, classes: list[str], prof: dict,
                methods: list[str] | tuple[str, ...] = (PAPER_METHOD,)) -> dict:
    """One unit of ``fermap explain``: the given classes of one trained (network, fold) by each
    method (one model load for all), sequential or on a Dask worker. Reads the run's dataset and
    model, writes only those classes' cache files. Returns ``{method: {expression: number of images}}``;
    a method that cannot explain the network maps to its reason (a string)."""

    folder = run_data_folder(Path(run_dir))
    data = cached_dataset(str(folder), data_key(folder))
    out = {}
    for method in methods:
        why = applicable(method, network)
        if why:
            out[method] = why
            continue
        started = time.perf_counter()
        # explain_fold loads the model only if something is left to do; the methods share one load
        out[method] = explain_fold(Path(run_dir), network, int(fold), data, prof, method=method,
                                   classes=list(classes))
        print(f"{method}: {sum(out[method].values())} images in {time.perf_counter() - started:.2f} s", flush=True)
    return out


def explain_groups(prof: dict) -> list[list[str]]:
    """How a profile splits the six classes of a (network, fold) into jobs: ``explain.classes_per_job``
    of them per job (default all: one job per (network, fold), one model load; the paper profile: 1)."""
    expressions = list(config_expressions())
    k = max(1, int((prof.get("explain") or {}).get("classes_per_job", len(expressions))))
    return [expressions[i:i + k] for i in range(0, len(expressions), k)]


def explain_run(run_dir: str | os.PathLike, prof: dict | None = None, progress: bool = True,
                method: str = PAPER_METHOD, executor=None) -> pd.DataFrame:
    """``fermap explain``: explain every trained (network, fold) of a run by one explainer (the
    paper's, LIME, by default; :mod:`fermap_utils.explainers`), standardised and cached; then the
    heatmaps of Eq. 1 and 2 under ``RUN/heatmaps`` (``RUN/heatmaps_<method>`` for another method).

    The work is one job per (network, fold, group of classes) (:func:`explain_groups`), run by
    ``executor`` (:class:`fermap_utils.executor.Executor`: Dask workers) or, by default, one after
    the other in this process through the same job function.
    Returns how many images were explained per (network, fold, expression); a network the
    method cannot explain is listed with 0 images and the reason.
    """

    run_dir = Path(run_dir)
    explanations_dir(run_dir, method)  # before any work: a folder linked out of the run is refused
    heatmaps_dir(run_dir, method)
    prof = prof or read_profile(run_dir)
    trained = load_results(run_dir)
    rows, jobs = [], []
    for network, fold in zip(trained.network, trained.fold.astype(int)):
        why = applicable(method, network)
        if why:
            rows.append({"network": network, "fold": fold, "expression": None, "images": 0, "note": why})
        else:
            jobs += [Job("explain", network, fold, tuple(group), (method,), func=explain_job,
                         args=(network, fold, tuple(group)), kwargs={"methods": (method,)}, models_made=models_made)
                     for group in explain_groups(prof)]
    done = (executor or Executor()).run(jobs, run_dir, prof, progress=progress, desc=f"explaining ({method})")
    for job, counts in zip(jobs, done):
        rows += [{"network": job.network, "fold": job.fold, "expression": e, "images": n, "note": ""}
                 for e, n in counts[method].items()]
    order = {(n, int(f)): i for i, (n, f) in enumerate(zip(trained.network, trained.fold))}
    rows.sort(key=lambda r: order[(r["network"], int(r["fold"]))])  # stable: classes keep their order
    table = pd.DataFrame(rows, columns=["network", "fold", "expression", "images", "note"])
    explained = table[table.expression.notna()]
    write_run_heatmaps(run_dir, explained, method)
    return table


def load_standardised(run_dir: str | os.PathLike, network: str, fold: int, expression: str,
                      data=None, settings: LimeSettings | None = None) -> np.ndarray:
    """The per-image standardised LIME explanations of one (network, fold, class), rebuilt from the
    cache (weights, superpixels, the images' landmarks), (N, 275, 224).

    ``settings`` chooses how they are stored and warped (``explanation_dtype``,
    ``warp_interpolation``); by default the run's own."""
    run_dir = Path(run_dir)
    data = data or load_dataset(data_dir(run_dir))
    if settings is None:
        settings = LimeSettings.from_profile(read_profile(run_dir).get("explain"))
    f = read_class_file(class_file(run_dir, network, fold, expression), ("ids", "weights", "segments"))
    ids, weights, segments = f["ids"], f["weights"], f["segments"]
    if not len(ids):
        return np.zeros((0, *CANVAS_SHAPE), np.float32)
    index = {i: n for n, i in enumerate(data.table.id.astype(str))}
    positions = np.array([index[str(i)] for i in ids])
    size = segments.shape[1]
    marks = scale_landmarks(data.landmarks[positions], data.images.shape[1], size)
    return np.stack([standardise(explanation_image(seg, np.nan_to_num(w[: int(seg.max()) + 1])), m, settings)
                     for w, seg, m in zip(weights, segments, marks)])


#: The four ways of storing and warping LIME explanations: fermap's and the authors' among them.
STORAGE_WAYS: dict[str, dict[str, str]] = {f"{dtype}, {warp}": {"explanation_dtype": dtype, "warp_interpolation": warp}
                                           for dtype in ("float", "uint8") for warp in ("linear", "nearest")}
#: fermap's default way, and the authors' (8-bit images warped with the nearest pixel).
FERMAP_WAY, AUTHORS_WAY = "float, linear", "uint8, nearest"


class StorageComparison(NamedTuple):
    """What :func:`storage_comparison` returns."""

    scores: pd.DataFrame  #: one row per (network, fold, expression, way): its IoU
    table: pd.DataFrame  #: mean IoU over folds per network (and ``Average``) by way, and ``authors − fermap``
    deltas: np.ndarray  #: per heatmap, the mean absolute grey-level difference of the authors' way from fermap's
    by_storage: float  #: how much storage (float or uint8) moves the average IoU, mean over the warps
    by_warp: float  #: how much the warp (linear or nearest) moves the average IoU, mean over the storages


def storage_comparison(run_dir: str | os.PathLike, masks: dict[str, np.ndarray], explain: dict | None = None,
                       data=None) -> StorageComparison:
    """Rebuild every cached LIME explanation of a run in each of :data:`STORAGE_WAYS` and score
    each fold's heatmap against the masks as the paper does (Otsu, IoU).

    Nothing is explained again: the heatmaps come from the cached weights and superpixels
    (:func:`load_standardised`). A (network, fold, class) is skipped unless every way gives a
    heatmap with some contrast.

    Parameters
    ----------
    run_dir : path
        A run with LIME explanations.
    masks : dict
        ``expression -> boolean mask`` (the Ekman masks).
    explain : dict, optional
        The profile's ``explain`` entry; the ways override its storage and warp only.
    data : Dataset, optional
        The run's dataset, if already loaded.

    Returns
    -------
    StorageComparison
        Empty frames, no deltas and NaN summaries when nothing could be compared.
    """
    data = data or load_dataset(data_dir(run_dir))
    ways = {w: LimeSettings.from_profile({**(explain or {}), **opts}) for w, opts in STORAGE_WAYS.items()}
    rows, deltas = [], []
    for network, fold, expression, _ in class_files(run_dir):
        built = {}
        for way, settings in ways.items():
            stack = load_standardised(run_dir, network, fold, expression, data, settings)
            if len(stack):
                built[way] = to_uint8(heatmap(stack))
        if len(built) < len(ways) or any(h.min() == h.max() for h in built.values()):
            continue
        deltas.append(np.abs(built[FERMAP_WAY].astype(float) - built[AUTHORS_WAY]).mean())
        rows += [{"network": network, "fold": fold, "expression": expression, "way": way,
                  "IoU": score_heatmap(h, masks[expression])["iou"]} for way, h in built.items()]
    scores = pd.DataFrame(rows, columns=["network", "fold", "expression", "way", "IoU"])
    if not len(scores):
        return StorageComparison(scores, pd.DataFrame(), np.zeros(0), float("nan"), float("nan"))
    per_fold = scores.pivot_table(index=["network", "fold"], columns="way", values="IoU", sort=False)[list(ways)]
    table = per_fold.groupby(level="network", sort=False).mean()
    table.loc["Average"] = table.mean()
    table["authors − fermap"] = table[AUTHORS_WAY] - table[FERMAP_WAY]
    avg = table.loc["Average"]
    by_storage = float(np.mean([abs(avg[f"uint8, {w}"] - avg[f"float, {w}"]) for w in ("linear", "nearest")]))
    by_warp = float(np.mean([abs(avg[f"{d}, nearest"] - avg[f"{d}, linear"]) for d in ("float", "uint8")]))
    return StorageComparison(scores, table, np.array(deltas), by_storage, by_warp)


def load_details(run_dir: str | os.PathLike, method: str) -> pd.DataFrame:
    """The per-image details a method recorded in a run, one row per (image, entry): for
    Extremal Perturbation ``network, fold, expression, id, area_target, area_achieved, score, undecided``
    (:attr:`fermap_utils.attribution.ExtremalResult.undecided`)."""
    rows = []
    for network, fold, expression, path in class_files(run_dir, method):
        f = read_class_file(path, ("ids",))
        names = [k[len("detail_"):] for k in f if k.startswith("detail_")]
        if not names or not len(f["ids"]):
            continue
        columns = {k: np.asarray(f[f"detail_{k}"]) for k in names}
        ids = f["ids"]
        width = columns[names[0]].shape[1] if columns[names[0]].ndim == 2 else 1
        frame = pd.DataFrame({k: v.reshape(len(ids), width).ravel() for k, v in columns.items()})
        frame.insert(0, "id", np.repeat(ids, width))
        frame.insert(0, "expression", expression)
        frame.insert(0, "fold", fold)
        frame.insert(0, "network", network)
        rows.append(frame)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def load_run_stacks(run_dir: str | os.PathLike, data=None) -> dict[tuple[str, int, str], np.ndarray]:
    """Every (network, fold, expression) of a run's LIME cache with its per-image explanations.

    Parameters
    ----------
    run_dir : path
        The run folder.
    data : Dataset, optional
        The run's dataset, if already loaded.

    Returns
    -------
    dict ``(network, fold, expression) -> (N, 275, 224)`` standardised explanations
    (:func:`load_standardised`); groups without images are left out.
    """
    data = data or load_dataset(data_dir(run_dir))
    out = {}
    for network, fold, expression, _ in class_files(run_dir):
        stack = load_standardised(run_dir, network, fold, expression, data)
        if len(stack):
            out[(network, fold, expression)] = stack
    return out


def write_run_heatmaps(run_dir: str | os.PathLike, counts: pd.DataFrame, method: str = PAPER_METHOD) -> dict:
    """The heatmaps of a run from its cached explanation sums, with the authors' folder layout.

    ``RUN/heatmaps/heatmaps_by_cv`` holds H_{n,t,c} (Eq. 1), ``heatmaps_by_net``
    H_{n,c} and ``heatmaps_total`` H_c (Eq. 2, every explanation weighing the same);
    another method writes ``RUN/heatmaps_<method>``.
    A group with no explanation (no test image predicted as that class), or whose
    explanations are all zero, has no heatmap; ``RUN/heatmaps/summary.json`` lists
    them beside the counts.

    Parameters
    ----------
    run_dir : path
        The run folder.
    counts : DataFrame
        The explained (network, fold, expression) groups: ``network, fold, expression, images``.
    method : str
        Whose cached explanations to pool.

    Returns
    -------
    dict
        What ``summary.json`` holds: ``networks, folds, explanations, missing``.
    """
    # A run folder may come from someone else: nothing is deleted or written outside it, even
    # through a symbolic link (the layout refuses in one line before anything is touched).
    out = heatmaps_dir(run_dir, method)
    by_cv, by_net, total = HEATMAP_GROUPS
    targets = [heatmap_group_dir(run_dir, group, method) for group in HEATMAP_GROUPS]
    for target in targets:  # cheap to redo; no stale map may survive
        if target.is_symlink():
            target.unlink()  # the link, never what it points to
        elif target.exists():
            shutil.rmtree(target)
    sums: dict[tuple[str, int, str], tuple[np.ndarray, int]] = {}
    for row in counts.itertuples():
        f = read_class_file(class_file(run_dir, row.network, row.fold, row.expression, method))
        sums[(row.network, int(row.fold), row.expression)] = (f["sum"], int(f["count"]))
    missing = []

    def emit(folder: str, name: str, parts: list[tuple[np.ndarray, int]]) -> None:
        parts = [(s, n) for s, n in parts if n]
        h = pooled_heatmap([s for s, _ in parts], [n for _, n in parts]) if parts else None
        if h is None or h.max() == 0:
            missing.append(f"{folder}/{name}")
            return
        save_heatmap(out / folder / name, h)

    nets = list(dict.fromkeys(counts.network))
    exprs = list(dict.fromkeys(counts.expression))
    for (net, fold, expr), part in sums.items():
        emit(by_cv, heatmap_filename(expr, net, fold), [part])
    for net in nets:
        for expr in exprs:
            emit(by_net, heatmap_filename(expr, net),
                 [p for (n, _, e), p in sums.items() if n == net and e == expr])
    for expr in exprs:
        emit(total, heatmap_filename(expr), [p for (_, _, e), p in sums.items() if e == expr])
    summary = {"networks": nets, "folds": sorted({int(f) for f in counts.fold}),
               "explanations": int(counts.images.sum()), "missing": missing}
    with atomic_path(heatmaps_summary_file(run_dir, method)) as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    return summary


def load_run_heatmaps(run_dir: str | os.PathLike, method: str = PAPER_METHOD) -> dict[HeatmapKey, np.ndarray]:
    """Every heatmap a run wrote for a method.

    Parameters
    ----------
    run_dir : path
        The run folder.
    method : str, optional
        LIME's (``RUN/heatmaps``) by default, or another method's (``RUN/heatmaps_<method>``).

    Returns
    -------
    dict ``HeatmapKey(network, fold, expression) -> uint8 heatmap``
        H_{n,t,c} first (``fold`` set), then H_{n,c} (``fold`` None), then H_c (``network`` and
        ``fold`` None); :func:`fold_heatmaps`, :func:`network_heatmaps` and :func:`total_heatmaps`
        pick one kind.

    Raises
    ------
    FermapError
        When the folder is missing or holds no heatmap.
    """
    base = heatmaps_dir(run_dir, method)
    if not base.is_dir():
        raise FermapError(f"{base}: no such folder")
    by_cv, by_net, total = (heatmap_group_dir(run_dir, group, method) for group in HEATMAP_GROUPS)
    out: dict[HeatmapKey, np.ndarray] = {}
    for path in sorted(by_cv.glob("*_heatmap.png")):
        key = parse_heatmap_filename(path.name)
        if key is not None and key.fold is not None:
            out[key] = load_heatmap(path)
    for path in sorted(by_net.glob("*_heatmap.png")):
        key = parse_heatmap_filename(path.name)
        if key is not None and key.network is not None and key.fold is None:
            out[key] = load_heatmap(path)
    for path in sorted(total.glob("*_heatmap.png")):
        out[HeatmapKey(None, None, path.name[: -len("_heatmap.png")])] = load_heatmap(path)
    if not out:
        raise FermapError(f"{base}: no heatmaps (run fermap explain first)")
    return out


def fold_heatmaps(maps: dict[HeatmapKey, np.ndarray]) -> dict[tuple[str, int, str], np.ndarray]:
    """The per-fold heatmaps H_{n,t,c} of :func:`load_run_heatmaps`, keyed ``(network, fold, expression)``
    as :func:`fermap_utils.metrics.score_table` takes them."""
    return {(k.network, k.fold, k.expression): h for k, h in maps.items() if k.fold is not None}


def network_heatmaps(maps: dict[HeatmapKey, np.ndarray]) -> dict[tuple[str, str], np.ndarray]:
    """The by-network heatmaps H_{n,c} of :func:`load_run_heatmaps`, keyed ``(network, expression)``."""
    return {(k.network, k.expression): h for k, h in maps.items() if k.network is not None and k.fold is None}


def total_heatmaps(maps: dict[HeatmapKey, np.ndarray]) -> dict[str, np.ndarray]:
    """The global heatmaps H_c of :func:`load_run_heatmaps`, keyed by expression."""
    return {k.expression: h for k, h in maps.items() if k.network is None}


class WorkedExample(NamedTuple):
    """One test face of a trained (network, fold), ready to explain: what the chapters show."""

    network: str
    fold: int
    id: str  # the image's id in the run's dataset
    true: int  # its class
    label: int  # the class to explain: the network's prediction
    face: np.ndarray  # (s, s) float32, grey [0, 255], at the network's input size s
    landmarks: np.ndarray  # (68, 2), in the coordinates of ``face``
    model: Any  # the trained Keras model


def worked_example(run_dir: str | os.PathLike, network: str, fold: int,
                   expression: str | None = None) -> WorkedExample:
    """A face to explain by hand with a run's trained (network, fold).

    Parameters
    ----------
    run_dir : path
        The run folder.
    network, fold : str, int
        A trained (network, fold) of the run.
    expression : str, optional
        Without it, the first test image the network classified correctly (else the first test
        image). With it, the dataset's first image of that expression.

    Returns
    -------
    WorkedExample
        The face at the network's input size with its landmarks, its class, the class to explain
        (the network's prediction) and the model.
    """

    data = load_dataset(data_dir(run_dir))
    size = int(read_metrics(run_dir, metrics_file(run_dir, network, fold))["input_size"])
    model = load_trained(run_dir, network, fold)
    ids = data.table.id.astype(str)
    if expression is None:
        preds = pd.read_csv(predictions_file(run_dir, network, fold), dtype={"id": str})
        right = preds[preds.true == preds.pred]
        row = right.iloc[0] if len(right) else preds.iloc[0]
        index, true, label = int(np.flatnonzero(ids == row.id)[0]), int(row.true), int(row.pred)
    else:
        index = int(np.flatnonzero(data.table.expression == expression)[0])
        true, label = list(config_expressions()).index(expression), None
    face = resize_images(data.images[[index]], size)[0].astype(np.float32)
    if label is None:
        label = int(np.asarray(model.predict_on_batch(face[None, ..., None])).argmax())
    marks = scale_landmarks(data.landmarks[index], data.images.shape[1], size)
    return WorkedExample(network, int(fold), str(ids.iloc[index]), true, label, face, marks, model)
