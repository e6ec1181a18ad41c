"""LIME on SLIC superpixels, as the paper ran it, vectorised and seeded.

The paper's method, with its numbers in ``config.yaml`` (``explainers: lime``, read by
:class:`LimeSettings`): SLIC superpixels of the image scaled to [0, 1]; hidden superpixels
black; an exponential kernel on the cosine distance to the unperturbed image; ridge regression
on the sample weights; positive weights kept; the explanation is each superpixel filled with
its weight.

The ``lime`` package builds each perturbed image in a Python loop and predicts
ten at a time. Here a whole batch of perturbed images is one array product, and
several images share a prediction batch. With the same perturbation matrix the
weights equal ``lime`` 0.2.0.1's (``tests/test_lime.py``).

How an explanation reaches the standard face is a setting too (``lime``:
``explanation_dtype``, ``warp_interpolation``): fermap keeps the weights as floats
and warps them bilinearly; the authors stored each explanation as an 8-bit grey
image and warped it with the nearest pixel, which ``uint8`` and ``nearest`` reproduce.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields

import numpy as np
from skimage.color import gray2rgb
from skimage.segmentation import slic

from .config import section
from .errors import FermapError
from .warping import apply_map, standardisation_map


def _default(name: str):
    """A field's default: the paper's setting, ``config.yaml`` (``explainers: lime``), read when needed."""
    kind = {f.name: f.type for f in fields(LimeSettings)}[name]
    return _TYPES[kind](section("explainers")["lime"][name])


_TYPES = {"int": int, "float": float, "str": str}


@dataclass(frozen=True)
class LimeSettings:
    """What an explanation depends on besides the model and the image.

    Every field defaults to the paper's setting in ``config.yaml`` (``explainers: lime``), the one
    place LIME's defaults are written: ``LimeSettings()`` is the paper's LIME.
    """

    num_samples: int = field(default_factory=lambda: _default("num_samples"))
    n_segments: int = field(default_factory=lambda: _default("n_segments"))
    compactness: float = field(default_factory=lambda: _default("compactness"))
    kernel_width: float = field(default_factory=lambda: _default("kernel_width"))
    alpha: float = field(default_factory=lambda: _default("alpha"))
    #: "uint8": stretched to 0..255 and rounded, as the authors stored it
    explanation_dtype: str = field(default_factory=lambda: _default("explanation_dtype"))
    #: "nearest": the authors' warp
    warp_interpolation: str = field(default_factory=lambda: _default("warp_interpolation"))

    def __post_init__(self):
        if self.explanation_dtype not in EXPLANATION_DTYPES:
            raise FermapError(f"lime explanation_dtype {self.explanation_dtype!r}: "
                              f"one of {', '.join(EXPLANATION_DTYPES)}")
        if self.warp_interpolation not in WARP_ORDER:
            raise FermapError(f"lime warp_interpolation {self.warp_interpolation!r}: one of {', '.join(WARP_ORDER)}")

    @classmethod
    def from_profile(cls, explain: dict | None) -> LimeSettings:
        """The paper's settings (``config.yaml``, ``explainers: lime``), with a profile's ``explain``
        entries on top."""
        explain = explain or {}
        return cls(**{f.name: _TYPES[f.type](explain[f.name]) for f in fields(cls) if f.name in explain})


EXPLANATION_DTYPES = ("float", "uint8")
WARP_ORDER = {"linear": 1, "nearest": 0}  # warping.apply_map's ``order``


def segment(image: np.ndarray, n_segments: int = 30, compactness: float = 20.0) -> np.ndarray:
    """SLIC superpixels of a grey [0, 255] image, labelled 0..K-1.

    The image is scaled to [0, 1] and repeated to three channels, as ``lime``
    does with a grey image (so SLIC works in Lab, as it did for the authors).

    Parameters
    ----------
    image : (H, W) array
        A grey image, [0, 255].
    n_segments : int
        SLIC's target number of superpixels.
    compactness : float
        SLIC's balance of colour and space.

    Returns
    -------
    (H, W) int array
        Each pixel's superpixel, 0..K-1.
    """
    rgb = gray2rgb(np.asarray(image, dtype=np.float64) / 255.0)
    return slic(rgb, n_segments=n_segments, compactness=compactness, start_label=0)


def perturbation_matrix(num_samples: int, n_features: int, rng: np.random.Generator) -> np.ndarray:
    """Which superpixels each sample keeps (1) or hides (0); the first sample keeps all.

    Parameters
    ----------
    num_samples : int
        Rows: perturbed samples.
    n_features : int
        Columns: superpixels.
    rng : numpy.random.Generator
        The draw's stream.

    Returns
    -------
    (num_samples, n_features) int64 array of 0 and 1

    Examples
    --------
    >>> perturbation_matrix(3, 4, np.random.default_rng(0))[0].tolist()
    [1, 1, 1, 1]
    """
    rows = rng.integers(0, 2, size=(num_samples, n_features), dtype=np.int64)
    rows[0] = 1
    return rows


def perturb(image: np.ndarray, segments: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """All perturbed images at once, hidden superpixels set to black (0).

    Parameters
    ----------
    image : (H, W) array
        The grey image.
    segments : (H, W) int array
        Its superpixels (:func:`segment`).
    rows : (S, K) array of 0 and 1
        Which superpixels each sample keeps (:func:`perturbation_matrix`).

    Returns
    -------
    (S, H, W) float32 array

    Examples
    --------
    >>> perturb(np.full((1, 2), 9.0), np.array([[0, 1]]), np.array([[1, 0]])).tolist()
    [[[9.0, 0.0]]]
    """
    return np.asarray(image, dtype=np.float32)[None] * rows[:, segments].astype(np.float32)


def kernel_weights(rows: np.ndarray, kernel_width: float = 0.25) -> np.ndarray:
    """LIME's sample weights: sqrt(exp(-d^2 / w^2)), d the cosine distance to the all-ones row.

    Parameters
    ----------
    rows : (S, K) array of 0 and 1
        The perturbation matrix.
    kernel_width : float
        w, the kernel's width.

    Returns
    -------
    (S,) float64 array
        1 for the unperturbed sample, smaller the more superpixels a sample hides.

    Examples
    --------
    >>> kernel_weights(np.array([[1, 1], [0, 0]])).round(4).tolist()
    [1.0, 0.0003]
    """
    rows = np.asarray(rows, dtype=np.float64)
    norms = np.linalg.norm(rows, axis=1) * np.sqrt(rows.shape[1])
    cosine = np.divide(rows.sum(axis=1), norms, out=np.zeros(len(rows)), where=norms > 0)
    distance = 1.0 - cosine
    return np.sqrt(np.exp(-(distance ** 2) / kernel_width ** 2))


def ridge_weights(rows: np.ndarray, targets: np.ndarray, sample_weight: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Coefficients of a weighted ridge regression with an intercept (as sklearn's ``Ridge``).

    Parameters
    ----------
    rows : (S, K) array
        The regressors: the perturbation matrix.
    targets : (S,) array
        The model's probability of the explained class on each sample.
    sample_weight : (S,) array
        Each sample's weight (:func:`kernel_weights`).
    alpha : float
        The ridge penalty.

    Returns
    -------
    (K,) float64 array
        One coefficient per superpixel (the intercept is not returned).
    """
    x = np.asarray(rows, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    w = np.asarray(sample_weight, dtype=np.float64)
    w_sum = w.sum()
    xc = x - (w @ x) / w_sum
    yc = y - (w @ y) / w_sum
    gram = (xc * w[:, None]).T @ xc + alpha * np.eye(x.shape[1])
    return np.linalg.solve(gram, (xc * w[:, None]).T @ yc)


def explanation_image(segments: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each superpixel filled with its weight, negative weights set to 0.

    Parameters
    ----------
    segments : (H, W) int array
        The superpixels.
    weights : (K,) array
        One weight per superpixel.

    Returns
    -------
    (H, W) float32 array

    Examples
    --------
    >>> explanation_image(np.array([[0, 1, 1]]), np.array([-0.5, 2.0])).tolist()
    [[0.0, 2.0, 2.0]]
    """
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


def standardise(picture: np.ndarray, landmarks: np.ndarray, settings: LimeSettings | None = None) -> np.ndarray:
    """One explanation warped to the 275x224 standard face with its image's 68 landmarks.

    Parameters
    ----------
    picture : (H, W) array
        A non-negative explanation image.
    landmarks : (68, 2) array
        Its image's landmarks, in the picture's coordinates.
    settings : LimeSettings, optional
        How the picture is stored (:func:`as_stored`) and interpolated (``warp_interpolation``);
        the paper's by default.

    Returns
    -------
    (275, 224) float32 array
    """
    settings = settings or LimeSettings()
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
    settings: LimeSettings | None = None,
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
    settings : LimeSettings, optional
        The paper's by default.
    batch_size : int
        Images per call of ``predict``; samples of several images share a batch.
    rows : list of (S, K) arrays, optional
        Perturbation matrices to use instead of drawing them (to compare with ``lime``).
    progress : callable, optional
        Called with the number of images finished, as they finish.

    Returns
    -------
    list of Explanation
        One per image, in order.
    """
    settings = settings or LimeSettings()
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


def explain_one(model, image: np.ndarray, label: int, settings: LimeSettings | None = None,
                seed: int = 0) -> Explanation:
    """LIME on one grey image of a Keras model, the chapters' worked example.

    Parameters
    ----------
    model : keras.Model
        Maps (B, H, W, 1) grey [0, 255] images to class probabilities.
    image : (H, W) array
        The image at the model's input size, [0, 255].
    label : int
        The class to explain.
    settings : LimeSettings
        How to explain (the paper's by default).
    seed : int
        The seed of the perturbations.

    Returns
    -------
    Explanation
        As :func:`explain_images` gives it for this image alone.
    """
    return explain_images(keras_predictor(model), np.asarray(image)[None], [int(label)], [int(seed)], settings)[0]


def keras_predictor(model) -> Callable[[np.ndarray], np.ndarray]:
    """A ``predict`` for :func:`explain_images` from a Keras model (inference mode, no per-call overhead).

    Parameters
    ----------
    model : keras.Model
        A classifier of (B, H, W, 1) grey images.

    Returns
    -------
    callable
        (B, H, W, 1) float32 -> (B, C) numpy array of class probabilities.
    """
    def predict(x: np.ndarray) -> np.ndarray:
        # an eager call: no graph to trace for each model a job loads (seconds for a deep network),
        # and a batch of perturbed images is large enough that the per-op overhead is negligible
        return np.asarray(model(x, training=False))
    return predict
