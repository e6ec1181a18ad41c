"""Training-time augmentation, as in section 3.2 of the paper: lighting and appearance.

Each function takes a grey face and its 68 landmarks and returns both,
transformed; randomness comes only from the ``rng`` passed in.
"""
from __future__ import annotations

import cv2
import numpy as np

from .landmarks import mirror_index

#: Landmarks that every crop must keep: brows, eyes, nose and mouth (0-based 17..67).
FEATURES = slice(17, 68)


def adjust_gamma(image: np.ndarray, gamma: float) -> np.ndarray:
    """Gamma correction of an 8-bit image: out = 255 (in / 255) ** gamma, rounded.

    Parameters
    ----------
    image : uint8 array
        Any shape ``cv2.LUT`` takes.
    gamma : float
        Below 1 brightens, above 1 darkens.

    Returns
    -------
    out : uint8 array of ``image``'s shape

    Examples
    --------
    >>> adjust_gamma(np.array([[0, 64, 128, 255]], np.uint8), 0.5).tolist()
    [[0, 128, 181, 255]]
    """
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** gamma + 0.5, 0, 255).astype(np.uint8)
    return cv2.LUT(image, lut)


def translate(image: np.ndarray, landmarks: np.ndarray, dx: float, dy: float) -> tuple[np.ndarray, np.ndarray]:
    """Shift an image and its landmarks by (dx, dy) pixels; the uncovered border repeats the edge.

    Parameters
    ----------
    image, landmarks : (H, W) array, (68, 2) array of (x, y)
        A grey face and its landmarks.
    dx, dy : float
        The shift, right and down positive.

    Returns
    -------
    image : (H, W) array
    landmarks : (68, 2) float array
        Shifted by the same (dx, dy).
    """
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    out = cv2.warpAffine(image, m, image.shape[::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out, landmarks + (dx, dy)


def mirror(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flip an image left-right, re-indexing the landmarks so that "left eye" stays the left eye.

    Parameters
    ----------
    image, landmarks : (H, W) array, (68, 2) array of (x, y)
        A grey face and its landmarks.

    Returns
    -------
    image : (H, W) array
        The flipped copy.
    landmarks : (68, 2) array
        x becomes (W - 1) - x, then the rows are permuted by
        :func:`~fermap_utils.landmarks.mirror_index`.
    """
    w = image.shape[1]
    flipped = landmarks.copy()
    flipped[:, 0] = (w - 1) - flipped[:, 0]
    return image[:, ::-1].copy(), flipped[mirror_index()]


def crop_keeping_features(
    image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator, min_scale: float = 0.8
) -> tuple[np.ndarray, np.ndarray]:
    """A random square crop, resized back to full size, that always keeps the eyes, nose and mouth.

    Parameters
    ----------
    image : (H, W) array
        A grey face.
    landmarks : (68, 2) array of (x, y)
        Its landmarks; points 18-68 (brows, eyes, nose, mouth) stay inside the crop.
    rng : numpy.random.Generator
        The only source of randomness.
    min_scale : float, optional
        The smallest crop side, as a share of the image's shorter side (raised when the
        features need more).

    Returns
    -------
    image : (H, W) array
        The crop, resized to the input's size.
    landmarks : (68, 2) float array
        Mapped by the same affine transform.
    """
    h, w = image.shape
    feats = landmarks[FEATURES]
    x0, y0 = np.floor(feats.min(axis=0))
    x1, y1 = np.ceil(feats.max(axis=0))
    need = max(x1 - x0, y1 - y0) + 2
    side = rng.uniform(max(min_scale * min(h, w), min(need, min(h, w))), min(h, w))
    lo_x, hi_x = max(0.0, x1 + 1 - side), min(x0 - 1, w - side)
    lo_y, hi_y = max(0.0, y1 + 1 - side), min(y0 - 1, h - side)
    left = rng.uniform(lo_x, hi_x) if hi_x > lo_x else max(0.0, min(x0 - 1, w - side))
    top = rng.uniform(lo_y, hi_y) if hi_y > lo_y else max(0.0, min(y0 - 1, h - side))
    scale = w / side
    m = np.float32([[scale, 0, -left * scale], [0, h / side, -top * h / side]])
    out = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out, np.c_[landmarks, np.ones(len(landmarks))] @ m.T


def random_augment(
    image: np.ndarray,
    landmarks: np.ndarray,
    rng: np.random.Generator,
    gamma_sigma: float = 0.25,
    max_shift: float = 0.06,
    crop_probability: float = 0.5,
    mirror_probability: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """One random draw of the paper's augmentations: gamma, a feature-keeping crop, translation, mirroring.

    Parameters
    ----------
    image : (H, W) uint8 array
        A grey face.
    landmarks : (68, 2) array of (x, y)
        Its landmarks.
    rng : numpy.random.Generator
        The only source of randomness.
    gamma_sigma : float, optional
        Gamma is exp(N(0, gamma_sigma)), so darker and brighter are equally likely.
    max_shift : float, optional
        The largest shift, as a share of the width (x) and height (y).
    crop_probability, mirror_probability : float, optional
        How often a crop (:func:`crop_keeping_features`) and a mirroring are applied.

    Returns
    -------
    image : (H, W) uint8 array
    landmarks : (68, 2) float array
        Transformed with the image.
    """
    h, w = image.shape
    out = adjust_gamma(image, float(np.exp(rng.normal(0.0, gamma_sigma))))
    marks = np.asarray(landmarks, dtype=np.float64)
    if rng.random() < crop_probability:
        out, marks = crop_keeping_features(out, marks, rng)
    dx, dy = rng.uniform(-max_shift, max_shift, 2) * (w, h)
    out, marks = translate(out, marks, dx, dy)
    if rng.random() < mirror_probability:
        out, marks = mirror(out, marks)
    return out, marks
