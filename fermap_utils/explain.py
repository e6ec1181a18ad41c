"""LIME on SLIC superpixels, as the paper ran it, vectorised and seeded.

The paper's settings (``config.yaml``, ``explain``): SLIC with 30 segments and
compactness 20 on the image scaled to [0, 1]; hidden superpixels black; 1000
samples; an exponential kernel of width 0.25 on the cosine distance to the
unperturbed image; ridge regression (alpha 1) on the sample weights; positive
weights kept; the explanation is each superpixel filled with its weight.

The ``lime`` package builds each perturbed image in a Python loop and predicts
ten at a time. Here a whole batch of perturbed images is one array product, and
several images share a prediction batch. With the same perturbation matrix the
weights equal ``lime`` 0.2.0.1's (``tests/test_explain.py``).

How an explanation reaches the standard face is a setting too (``lime``:
``explanation_dtype``, ``warp_interpolation``): fermap keeps the weights as floats
and warps them bilinearly; the authors stored each explanation as an 8-bit grey
image and warped it with the nearest pixel, which ``uint8`` and ``nearest`` reproduce.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ._io import atomic_path
from .config import section
from .errors import FermapError
from .heatmaps import CANVAS_SHAPE


@dataclass(frozen=True)
class LimeSettings:
    """What an explanation depends on besides the model and the image."""

    num_samples: int = 1000
    n_segments: int = 30
    compactness: float = 20.0
    kernel_width: float = 0.25
    alpha: float = 1.0
    explanation_dtype: str = "float"  # "uint8": stretched to 0..255 and rounded, as the authors stored it
    warp_interpolation: str = "linear"  # "nearest": the authors' warp

    def __post_init__(self):
        if self.explanation_dtype not in EXPLANATION_DTYPES:
            raise FermapError(f"lime explanation_dtype {self.explanation_dtype!r}: "
                              f"one of {', '.join(EXPLANATION_DTYPES)}")
        if self.warp_interpolation not in WARP_ORDER:
            raise FermapError(f"lime warp_interpolation {self.warp_interpolation!r}: one of {', '.join(WARP_ORDER)}")

    @classmethod
    def from_profile(cls, explain: dict | None) -> LimeSettings:
        """The paper's settings (``config.yaml``, ``lime``), with a profile's ``explain`` entries on top."""
        merged = {**section("lime"), **(explain or {})}
        return cls(**{k: type(getattr(cls, k))(merged[k]) for k in cls.__dataclass_fields__ if k in merged})


EXPLANATION_DTYPES = ("float", "uint8")
WARP_ORDER = {"linear": 1, "nearest": 0}  # warping.apply_map's ``order``


def segment(image: np.ndarray, n_segments: int = 30, compactness: float = 20.0) -> np.ndarray:
    """SLIC superpixels of a grey [0, 255] image, labelled 0..K-1.

    The image is scaled to [0, 1] and repeated to three channels, as ``lime``
    does with a grey image (so SLIC works in Lab, as it did for the authors).
    """
    from skimage.color import gray2rgb
    from skimage.segmentation import slic

    rgb = gray2rgb(np.asarray(image, dtype=np.float64) / 255.0)
    return slic(rgb, n_segments=n_segments, compactness=compactness, start_label=0)


def perturbation_matrix(num_samples: int, n_features: int, rng: np.random.Generator) -> np.ndarray:
    """Which superpixels each sample keeps (1) or hides (0); the first sample keeps all."""
    rows = rng.integers(0, 2, size=(num_samples, n_features), dtype=np.int64)
    rows[0] = 1
    return rows


def perturb(image: np.ndarray, segments: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """All perturbed images at once: (S, H, W), hidden superpixels set to black (0)."""
    return np.asarray(image, dtype=np.float32)[None] * rows[:, segments].astype(np.float32)


def kernel_weights(rows: np.ndarray, kernel_width: float = 0.25) -> np.ndarray:
    """LIME's sample weights: sqrt(exp(-d^2 / w^2)), d the cosine distance to the all-ones row."""
    rows = np.asarray(rows, dtype=np.float64)
    norms = np.linalg.norm(rows, axis=1) * np.sqrt(rows.shape[1])
    cosine = np.divide(rows.sum(axis=1), norms, out=np.zeros(len(rows)), where=norms > 0)
    distance = 1.0 - cosine
    return np.sqrt(np.exp(-(distance ** 2) / kernel_width ** 2))


def ridge_weights(rows: np.ndarray, targets: np.ndarray, sample_weight: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Coefficients of a weighted ridge regression with an intercept (as sklearn's ``Ridge``)."""
    x = np.asarray(rows, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    w = np.asarray(sample_weight, dtype=np.float64)
    w_sum = w.sum()
    xc = x - (w @ x) / w_sum
    yc = y - (w @ y) / w_sum
    gram = (xc * w[:, None]).T @ xc + alpha * np.eye(x.shape[1])
    return np.linalg.solve(gram, (xc * w[:, None]).T @ yc)


def explanation_image(segments: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each superpixel filled with its weight, negative weights set to 0."""
    return np.maximum(np.asarray(weights, dtype=np.float32), 0)[segments]


def as_stored(picture: np.ndarray, dtype: str = "float") -> np.ndarray:
    """An explanation image as it is kept before standardisation.

    Parameters
    ----------
    picture : (H, W) array
        A non-negative explanation image.
    dtype : {"float", "uint8"}
        ``float`` keeps it as it is (float32); ``uint8`` stretches it to 0..255 by its own
        maximum (its minimum is 0: negative weights are dropped) and rounds, an 8-bit grey image
        as the authors stored theirs. An all-zero picture stays all zero.

    Returns
    -------
    (H, W) float32 or uint8 array
    """
    picture = np.asarray(picture, dtype=np.float32)
    if dtype == "float":
        return picture
    if dtype != "uint8":
        raise FermapError(f"explanation dtype {dtype!r}: one of {', '.join(EXPLANATION_DTYPES)}")
    top = float(picture.max(initial=0.0))
    return np.zeros(picture.shape, np.uint8) if top <= 0 else np.rint(picture * (255.0 / top)).astype(np.uint8)


def standardise(picture: np.ndarray, landmarks: np.ndarray, settings: LimeSettings = LimeSettings()) -> np.ndarray:
    """One explanation warped to the 275x224 standard face with its image's 68 landmarks, stored
    and interpolated as ``settings`` say (:func:`as_stored`, ``warp_interpolation``); float32."""
    from .warping import apply_map, standardisation_map

    stored = as_stored(picture, settings.explanation_dtype)
    order = WARP_ORDER[settings.warp_interpolation]
    return apply_map(stored, standardisation_map(landmarks, stored.shape), order=order).astype(np.float32)


@dataclass
class Explanation:
    """One image's LIME result."""

    label: int
    segments: np.ndarray  # (H, W) superpixel labels
    weights: np.ndarray  # (K,) ridge coefficients, signed
    rows: np.ndarray  # (S, K) the perturbation matrix used
    targets: np.ndarray  # (S,) the model's probability of ``label`` on each sample

    @property
    def image(self) -> np.ndarray:
        """The paper's explanation image: positive weights painted on their superpixels."""
        return explanation_image(self.segments, self.weights)


def _chunks(sizes: list[int], batch_size: int) -> Iterator[list[tuple[int, int, int]]]:
    """Split the samples of several images into prediction batches: lists of (image, start, stop)."""
    batch, free = [], batch_size
    for i, n in enumerate(sizes):
        start = 0
        while start < n:
            take = min(free, n - start)
            batch.append((i, start, start + take))
            start += take
            free -= take
            if free == 0:
                yield batch
                batch, free = [], batch_size
    if batch:
        yield batch


def explain_images(
    predict: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    labels: list[int] | np.ndarray,
    seeds: list[int] | np.ndarray,
    settings: LimeSettings = LimeSettings(),
    batch_size: int = 1000,
    rows: list[np.ndarray] | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Explanation]:
    """Explain several grey images of one model with LIME.

    Parameters
    ----------
    predict : callable
        Maps a float32 batch (B, H, W, 1) of grey [0, 255] images to class probabilities (B, C).
    images : (N, H, W) array
        Grey images, [0, 255].
    labels : N ints
        The class to explain for each image (the paper: the predicted class).
    seeds : N ints
        One seed per image; it fixes that image's perturbations whatever else is in the batch.
    settings : LimeSettings
    batch_size : int
        Images per call of ``predict``; samples of several images share a batch.
    rows : list of (S, K) arrays, optional
        Perturbation matrices to use instead of drawing them (to compare with ``lime``).
    progress : callable, optional
        Called with the number of images finished, as they finish.
    """
    images = np.asarray(images)
    segments = [segment(im, settings.n_segments, settings.compactness) for im in images]
    if rows is None:
        rows = [perturbation_matrix(settings.num_samples, int(s.max()) + 1, np.random.default_rng(int(seed)))
                for s, seed in zip(segments, seeds)]
    sizes = [len(r) for r in rows]
    targets = [np.empty(n, dtype=np.float64) for n in sizes]
    for batch in _chunks(sizes, batch_size):
        x = np.concatenate([perturb(images[i], segments[i], rows[i][a:b]) for i, a, b in batch])
        probs = np.asarray(predict(x[..., None]))
        at = 0
        for i, a, b in batch:
            targets[i][a:b] = probs[at:at + b - a, int(labels[i])]
            at += b - a
            if progress and b == sizes[i]:
                progress(1)
    out = []
    for i in range(len(images)):
        w = ridge_weights(rows[i], targets[i], kernel_weights(rows[i], settings.kernel_width), settings.alpha)
        out.append(Explanation(int(labels[i]), segments[i], w, rows[i], targets[i]))
    return out


def keras_predictor(model) -> Callable[[np.ndarray], np.ndarray]:
    """A ``predict`` for :func:`explain_images` from a Keras model (inference mode, no per-call overhead)."""
    def predict(x: np.ndarray) -> np.ndarray:
        # an eager call: no graph to trace for each model a job loads (seconds for a deep network),
        # and a batch of perturbed images is large enough that the per-op overhead is negligible
        return np.asarray(model(x, training=False))
    return predict


def choose_images(predicted: np.ndarray, per_class: int, seed: int, n_classes: int = 6) -> dict[int, np.ndarray]:
    """Up to ``per_class`` row indices for each class, at random among the rows predicted as that class."""
    rng = np.random.default_rng(seed)
    predicted = np.asarray(predicted)
    chosen = {}
    for c in range(n_classes):
        pool = np.flatnonzero(predicted == c)
        chosen[c] = np.sort(rng.choice(pool, size=min(per_class, len(pool)), replace=False))
    return chosen


# ---------------------------------------------------------------- the run's explain stage

def method_folders(method: str = "lime") -> tuple[str, str]:
    """Where a method's explanations and heatmaps live in a run: LIME (the paper's) in
    ``explanations`` and ``heatmaps``; another method in ``explanations_<method>`` and ``heatmaps_<method>``."""
    from .attribution import METHODS

    if method not in METHODS:
        raise FermapError(f"unknown explanation method {method!r}; one of {', '.join(METHODS)}")
    return ("explanations", "heatmaps") if method == "lime" else (f"explanations_{method}", f"heatmaps_{method}")


def _class_file(run_dir: Path, network: str, fold: int, expression: str, method: str = "lime") -> Path:
    from ._io import inside

    # Inside the run, even if a folder of it is a symbolic link to elsewhere.
    return inside(run_dir, method_folders(method)[0], network, f"fold{int(fold)}", f"{expression}.npz")


def _explain_key(metrics: dict, settings: LimeSettings, per_class: int, seed: int, method: str = "lime",
                 extremal_steps: int | None = None) -> str:
    """What a (network, fold)'s explanations depend on: the trained model, the method and its
    settings, the sample."""
    params = asdict(settings) if method == "lime" else (section("extremal") if method == "extremal" else {})
    if method == "extremal" and extremal_steps:
        params = {**params, "steps": int(extremal_steps)}
    blob = json.dumps({"model": metrics.get("settings"), "accuracy": metrics["accuracy"], "method": method,
                       "params": params, "per_class": per_class, "seed": seed}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _cached(path: Path, key: str) -> bool:
    if not path.is_file():
        return False
    with np.load(path) as f:
        return str(f["key"]) == key


def save_class_explanations(path: Path, key: str, ids: np.ndarray, standardised: np.ndarray,
                            explanations: list[Explanation] | None = None,
                            details: dict[str, np.ndarray] | None = None) -> None:
    """One (network, fold, class): per image its id (and for LIME its weights and superpixels, for
    another method its ``details`` such as Extremal Perturbation's achieved areas); the sum of the
    standardised explanations (Eq. 1's numerator) and their count. Written atomically."""
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
                            sum=total, count=len(standardised), **extra)


def standardised_explanations(model, images: np.ndarray, landmarks: np.ndarray, labels: np.ndarray,
                              method: str = "lime", settings: LimeSettings = LimeSettings(),
                              seeds: list[int] | None = None, batch_size: int = 1000, progress=None,
                              extremal_steps: int | None = None
                              ) -> tuple[np.ndarray, list[Explanation] | dict[str, np.ndarray]]:
    """Explain images of one model by a method and warp each explanation to the standard face with
    its image's landmarks. Returns the (N, 275, 224) stack, and LIME's per-image results (for
    another method, its per-image details, e.g. Extremal Perturbation's achieved areas)."""
    from .attribution import attribute
    from .warping import apply_map, standardisation_map

    seeds = list(range(len(images))) if seeds is None else seeds
    if method == "lime":
        found = explain_images(keras_predictor(model), images, labels, seeds, settings,
                               batch_size=batch_size, progress=progress)
        return np.stack([standardise(e.image, m, settings) for e, m in zip(found, landmarks)]), found
    pictures, details = attribute(method, model, images, labels, seed=int(seeds[0]) if len(seeds) else 0,
                                  steps=extremal_steps)
    if progress:
        progress(len(pictures))
    standard = np.stack([apply_map(pic, standardisation_map(m, pic.shape)) for pic, m in zip(pictures, landmarks)])
    return standard, details


def explain_fold(run_dir: Path, network: str, fold: int, data, prof: dict, progress=None,
                 method: str = "lime", classes: list[str] | None = None, model=None) -> dict:
    """Explain the sampled test images of one trained (network, fold), class by class, resuming.

    ``classes`` (expressions) limits the work to those classes; the images sampled for a class
    do not depend on which others are explained with it. ``model``: the trained model, if the
    caller has it. Returns ``{expression: number of images}``.
    """
    from .data import resize_images, scale_landmarks
    from .training import trained_model

    expressions = list(section("paper")["expressions"])
    from .training import read_metrics

    model_dir = Path(run_dir) / "models" / network / f"fold{fold}"
    metrics = read_metrics(run_dir, model_dir / "metrics.json")
    options = dict(prof.get("explain") or {})
    settings = LimeSettings.from_profile(options)
    per_class, seed = int(options.get("images_per_class", 100)), int(options.get("seed", 0))
    if method == "extremal":  # an optimisation per image: a profile may explain fewer
        per_class = int(options.get("extremal_images_per_class", per_class))
    key = _explain_key(metrics, settings, per_class, seed, method, options.get("extremal_steps"))
    predictions = pd.read_csv(model_dir / "predictions.csv", dtype={"id": str})
    chosen = choose_images(predictions.pred.to_numpy(), per_class, seed * 1000 + fold, len(expressions))
    if classes is not None:
        chosen = {c: rows for c, rows in chosen.items() if expressions[c] in classes}
    todo = {c: rows for c, rows in chosen.items()
            if not _cached(_class_file(run_dir, network, fold, expressions[c], method), key)}
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
        raise FermapError(f"{model_dir / 'predictions.csv'}: image id(s) {', '.join(map(str, unknown[:5]))} "
                          "are not in the run's dataset")
    positions = np.array([index[i] for i in ids], dtype=int)
    images = resize_images(data.images[positions], size).astype(np.float32)
    marks = scale_landmarks(data.landmarks[positions], data.images.shape[1], size)
    labels = predictions.pred.to_numpy()[rows_all]
    model = model if model is not None else trained_model(run_dir, network, fold)
    seeds = [seed * 1_000_003 + p for p in positions]  # one stream per image, independent of the batch
    standard, found = standardised_explanations(model, images, marks, labels, method, settings, seeds,
                                                int(options.get("batch_size", 1000)), progress,
                                                extremal_steps=options.get("extremal_steps"))
    at = 0
    for c, rows in todo.items():
        n = len(rows)
        lime_results = found[at:at + n] if isinstance(found, list) else None
        details = {k: v[at:at + n] for k, v in found.items()} if isinstance(found, dict) else None
        save_class_explanations(_class_file(run_dir, network, fold, expressions[c], method), key, ids[at:at + n],
                                standard[at:at + n], lime_results, details)
        at += n
    return counts


def applicable(method: str, network: str) -> str | None:
    """Why a method cannot explain a network (CAM needs a GAP head), or None."""
    if method != "cam":
        return None
    from .models import spec

    s = spec(network)
    return None if ("application" in s or s.get("lite") or s.get("fixed")) else \
        "CAM needs a global-average-pooling head; this network flattens its features"


def explain_job(run_dir: str | os.PathLike, network: str, fold: int, classes: list[str], prof: dict,
                methods: list[str] | tuple[str, ...] = ("lime",)) -> dict:
    """One unit of ``fermap explain``: the given classes of one trained (network, fold) by each
    method (one model load for all), sequential or on a Dask worker. Reads the run's dataset and
    model, writes only those classes' cache files. Returns ``{method: {expression: number of images}}``;
    a method that cannot explain the network maps to its reason (a string)."""
    from .training import _dataset, _run_data, data_key

    data_dir = _run_data(Path(run_dir))
    data = _dataset(str(data_dir), data_key(data_dir))
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
    of them per job (default 6: one job per (network, fold), one model load; the paper profile: 1)."""
    expressions = list(section("paper")["expressions"])
    k = max(1, int((prof.get("explain") or {}).get("classes_per_job", len(expressions))))
    return [expressions[i:i + k] for i in range(0, len(expressions), k)]


def explain_run(run_dir: str | os.PathLike, prof: dict | None = None, progress: bool = True,
                method: str = "lime", executor=None) -> pd.DataFrame:
    """``fermap explain``: explain every trained (network, fold) of a run (LIME by default, or
    ``cam``, ``gradcam``, ``extremal``), standardised and cached; then the heatmaps of Eq. 1 and 2
    under ``RUN/heatmaps`` (``RUN/heatmaps_<method>`` for another method).

    The work is one job per (network, fold, group of classes) (:func:`explain_groups`), run by
    ``executor`` (:class:`fermap_utils.executor.Executor`: Dask workers) or, by default, one after
    the other in this process through the same job function.
    Returns how many images were explained per (network, fold, expression); a network the
    method cannot explain is listed with 0 images and the reason.
    """
    from .executor import Executor, Job
    from .heatmaps import write_run_heatmaps
    from .run import read_profile
    from .training import load_results

    run_dir = Path(run_dir)
    folders = method_folders(method)
    from ._io import inside

    for folder in folders:  # before any work: a folder linked out of the run is refused
        inside(run_dir, folder)
    prof = prof or read_profile(run_dir)
    trained = load_results(run_dir)
    rows, jobs = [], []
    for network, fold in zip(trained.network, trained.fold.astype(int)):
        why = applicable(method, network)
        if why:
            rows.append({"network": network, "fold": fold, "expression": None, "images": 0, "note": why})
        else:
            jobs += [Job("explain", network, fold, tuple(group), (method,)) for group in explain_groups(prof)]
    done = (executor or Executor()).run(jobs, run_dir, prof, progress=progress, desc=f"explaining ({method})")
    for job, counts in zip(jobs, done):
        rows += [{"network": job.network, "fold": job.fold, "expression": e, "images": n, "note": ""}
                 for e, n in counts[method].items()]
    order = {(n, int(f)): i for i, (n, f) in enumerate(zip(trained.network, trained.fold))}
    rows.sort(key=lambda r: order[(r["network"], int(r["fold"]))])  # stable: classes keep their order
    table = pd.DataFrame(rows, columns=["network", "fold", "expression", "images", "note"])
    explained = table[table.expression.notna()]
    write_run_heatmaps(run_dir, explained, folders=folders)
    return table


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
    from .heatmaps import heatmap, to_uint8
    from .masks import ekman_masks
    from .metrics import randomisation_comparison
    from .models import load_trained

    run_dir = Path(run_dir)
    expressions = list(section("paper")["expressions"])
    metrics = json.loads((run_dir / "models" / network / f"fold{fold}" / "metrics.json").read_text())
    predictions = pd.read_csv(run_dir / "models" / network / f"fold{fold}" / "predictions.csv", dtype={"id": str})
    options = dict(prof.get("explain") or {})
    seed = int(options.get("seed", 0))
    chosen = choose_images(predictions.pred.to_numpy(), per_class, seed + 17, len(expressions))
    data = load_dataset(run_dir / "data")
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


def load_standardised(run_dir: str | os.PathLike, network: str, fold: int, expression: str,
                      data=None, settings: LimeSettings | None = None) -> np.ndarray:
    """The per-image standardised LIME explanations of one (network, fold, class), rebuilt from the
    cache (weights, superpixels, the images' landmarks), (N, 275, 224).

    ``settings`` chooses how they are stored and warped (``explanation_dtype``,
    ``warp_interpolation``); by default the run's own."""
    from .data import load_dataset, scale_landmarks

    run_dir = Path(run_dir)
    data = data or load_dataset(run_dir / "data")
    if settings is None:
        from .run import read_profile

        settings = LimeSettings.from_profile(read_profile(run_dir).get("explain"))
    with np.load(_class_file(run_dir, network, fold, expression)) as f:
        ids, weights, segments = f["ids"], f["weights"], f["segments"]
    if not len(ids):
        return np.zeros((0, *CANVAS_SHAPE), np.float32)
    index = {i: n for n, i in enumerate(data.table.id.astype(str))}
    positions = np.array([index[str(i)] for i in ids])
    size = segments.shape[1]
    marks = scale_landmarks(data.landmarks[positions], data.images.shape[1], size)
    return np.stack([standardise(explanation_image(seg, np.nan_to_num(w[: int(seg.max()) + 1])), m, settings)
                     for w, seg, m in zip(weights, segments, marks)])


def load_details(run_dir: str | os.PathLike, method: str) -> pd.DataFrame:
    """The per-image details a method recorded in a run, one row per (image, entry): for
    Extremal Perturbation ``network, fold, expression, id, area_target, area_achieved, score``."""
    folder = Path(run_dir) / method_folders(method)[0]
    rows = []
    for path in sorted(folder.glob("*/fold*/*.npz")):
        with np.load(path) as f:
            names = [k[len("detail_"):] for k in f.files if k.startswith("detail_")]
            if not names or not len(f["ids"]):
                continue
            columns = {k: np.asarray(f[f"detail_{k}"]) for k in names}
            ids = f["ids"]
        width = columns[names[0]].shape[1] if columns[names[0]].ndim == 2 else 1
        frame = pd.DataFrame({k: v.reshape(len(ids), width).ravel() for k, v in columns.items()})
        frame.insert(0, "id", np.repeat(ids, width))
        frame.insert(0, "expression", path.stem)
        frame.insert(0, "fold", int(path.parent.name[len("fold"):]))
        frame.insert(0, "network", path.parent.parent.name)
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
    from .data import load_dataset

    run_dir = Path(run_dir)
    data = data or load_dataset(run_dir / "data")
    out = {}
    for path in sorted((run_dir / "explanations").glob("*/fold*/*.npz")):
        network, fold, expression = path.parent.parent.name, int(path.parent.name[4:]), path.stem
        stack = load_standardised(run_dir, network, fold, expression, data)
        if len(stack):
            out[(network, fold, expression)] = stack
    return out


def _resampled_heatmap(stack: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    from .heatmaps import heatmap, to_uint8

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
    from .heatmaps import heatmap, to_uint8
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
        ``(network, fold, expression) -> (N, H, W)`` standardised explanations (:func:`load_run_stacks`).
    masks : dict
        ``expression -> boolean mask``.
    metric : str
        Any of :func:`metrics.score`'s.

    Returns
    -------
    DataFrame indexed by network, plus ``Average`` (mean over networks' means):
    ``estimate, low, high, heatmaps``.
    """
    from .heatmaps import heatmap, to_uint8
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
    from .heatmaps import heatmap, to_uint8
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
