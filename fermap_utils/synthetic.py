"""The embedded default dataset: a ground-truth benchmark of FACS-driven expressions on real faces.

No labelled facial-expression dataset can be installed offline, so fermap
makes one from the real faces its dependencies ship, screened for neutral
bases (:func:`base_faces`: no smile, no surprise, closed lips). Each image is
built in three steps, and only the second depends on the class:

1. **Pose and crop** come from the face's *neutral* landmarks and a pose drawn
   independently of the class (:func:`draw_nuisance`, :func:`posed_face`).
2. **The expression**: each action unit (AU) of the expression's EMFACS set (the
   paper's Table 2) at a random intensity moves the landmarks it moves
   (``action_units.yaml``) through a smooth velocity field, integrated so the
   skin never folds over itself (:func:`exponential_map`); squeezed skin darkens
   and stretched skin lightens a little; the lips part and a jaw drop moves the
   chin (:func:`open_mouth`). Then the appearance a real face shows (creases, a
   mouth's dark inside, teeth, the white of the eye) is *shaded* into the face's
   own texture, as soft as the face's own detail (:func:`detail_sigma`), never
   painted as flat shapes. Everything has compact support inside the AU's region,
   dilated by a few pixels and cut to the union of the expression's AU regions
   (:func:`au_supports`). Outside that union the image is the neutral face,
   pixel for pixel.
3. **Lighting and noise**, drawn independently of the class, pixel-wise.

So every pixel the expression changed is known: :func:`render` returns the
expression and the neutral render under the same pose, light and noise, and
the dataset stores their difference per image (its true change map) and, per
class, the mean change on the standard face (the planted-signal map). On this
set the paper's question "do the networks look where the Ekman masks say?" has
a ground truth.

It is synthetic, and every result computed on it says so.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import tqdm.auto  # looked up at call time, so a book chapter can silence it
from matplotlib import cbook
from skimage import data as skimage_data

from ._io import atomic_path, write_gray
from .config import cache_dir, section
from .config import expressions as config_expressions
from .data import build_dataset, eye_angle, face_box_transform, read_manifest, split_records
from .errors import FermapError
from .landmarks import detect_faces, mean_shape, predict_landmarks, with_border_points
from .layout import (
    PLANTED,
    PLANTED_MAPS,
    TRUTH,
    landmarks_file,
    planted_dir,
    planted_file,
    records_file,
    summary_file,
    truth_dir,
)
from .masks import action_units, au_region, expression_aus
from .warping import warp_to_standard

GENERATOR_VERSION = 3


# ---------------------------------------------------------------- sources


def neutral_faces() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The real faces shipped by fermap's dependencies, in grey, with their dlib landmarks.

    - scikit-image's ``astronaut`` (Eileen Collins, 512x512, the face about 200 px wide);
    - matplotlib's ``grace_hopper.jpg`` (512x600, the face about 250 px wide);
    - scikit-image's ``lfw_subset``: its 100 faces, 25x25, upscaled bicubically to 128x128.

    The LFW faces are taken as they ship: some are not neutral, and their
    identities are not labelled, so each image counts as one identity. Every
    identity appears in all six classes from the same base face, so a base
    expression is shared by all classes, never a class signal.

    Returns
    -------
    list of (identity, grey image, (68, 2) landmarks in the image's pixels)
    """
    def gray(rgb):
        return cv2.cvtColor(np.asarray(rgb)[..., :3], cv2.COLOR_RGB2GRAY)

    hopper = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))[..., ::-1]
    sources = [("astronaut", gray(skimage_data.astronaut())), ("grace_hopper", gray(hopper))]
    for i, face in enumerate(skimage_data.lfw_subset()[:100]):
        sources.append((f"lfw{i:03d}", cv2.resize((face * 255).astype(np.uint8), (128, 128),
                                                  interpolation=cv2.INTER_CUBIC)))
    faces = []
    for name, img in sources:
        boxes = detect_faces(img)
        box = tuple(boxes[0]) if len(boxes) else (0, 0, img.shape[1], img.shape[0])  # LFW crops are the face
        faces.append((name, img, predict_landmarks(img, box)))
    return faces


# ---------------------------------------------------------------- neutral bases

#: The screening of :func:`neutral_faces` (:func:`screen_base_faces`), shipped so that every machine builds
#: the same dataset; ``benchmarks/screen_bases.py --write`` recomputes it.
BASE_FACES_FILE = "base_faces.csv"


def base_crops(faces: list[tuple[str, np.ndarray, np.ndarray]], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Each face cropped and levelled as the generator crops it, with no pose, light or noise.

    Returns the (N, size, size) uint8 crops and their (N, 68, 2) landmarks.
    """
    still = Nuisance(angle=0.0, scale=1.0, shift=(0.0, 0.0), gamma=1.0, light_angle=0.0, light=0.0, noise=0.0,
                     noise_seed=0)
    posed = [posed_face(image, marks, size, still) for _, image, marks in faces]
    crops = np.stack([np.clip(np.round(c), 0, 255).astype(np.uint8) for c, _ in posed])
    return crops, np.stack([m for _, m in posed])


def mouth_measures(landmarks: np.ndarray) -> dict[str, float]:
    """How open and how lifted a mouth is, from its 68 landmarks (dlib's order).

    ``mouth_open``: the mean gap between the inner lips (points 62-68, 63-67, 64-66) over the
    mouth's width (49-55). ``corner_lift``: how far the corners (49, 55) sit above the outer lips'
    middle (52, 58), over the width; positive for a smile.
    """
    p = lambda i: np.asarray(landmarks[i - 1], float)  # noqa: E731  (1-based, as dlib's figure)
    width = float(np.linalg.norm(p(55) - p(49)))
    gap = float(np.mean([np.linalg.norm(p(a) - p(b)) for a, b in ((62, 68), (63, 67), (64, 66))]))
    middle = (p(52)[1] + p(58)[1]) / 2
    return {"mouth_open": gap / width, "corner_lift": float(middle - (p(49)[1] + p(55)[1]) / 2) / width}


def screen_base_faces(names: list[str], landmarks: np.ndarray, probabilities: np.ndarray, rule: dict,
                      classes: tuple[str, ...]) -> pd.DataFrame:
    """Which base faces are neutral enough to carry every class.

    A face is dropped when a real model reads an expression on it (``p_<class>`` at or above
    ``rule['max_p']`` for a class named there) or its lips are parted (``mouth_open`` at or
    above ``rule['max_mouth_open']``): a smile or an open mouth on the base would show in
    every class, and make Sadness or Disgust look happy.

    Parameters
    ----------
    names : list of str
        The identities.
    landmarks : (N, 68, 2)
        Each base face's landmarks on its crop (:func:`base_crops`).
    probabilities : (N, len(classes))
        A real FER model's probabilities on the crops (``fermap_utils.models.fer2013_seven_way``).
    rule : dict
        ``max_p`` (class -> probability) and ``max_mouth_open``: ``synthetic.screen`` in ``config.yaml``.
    classes : tuple of str
        The model's class names, in its output order.

    Returns
    -------
    DataFrame
        One row per identity: the measures, the probabilities, ``verdict`` (the model's class),
        ``kept`` and ``reason`` (empty when kept).
    """
    table = pd.DataFrame([{"identity": n, **mouth_measures(m)} for n, m in zip(names, landmarks)])
    for k, c in enumerate(classes):
        table[f"p_{c}"] = np.asarray(probabilities)[:, k]
    table["verdict"] = [classes[k] for k in np.asarray(probabilities).argmax(axis=1)]
    reasons = []
    for row in table.itertuples():
        why = [f"{c} p={getattr(row, f'p_{c}'):.2f}" for c, limit in rule["max_p"].items()
               if getattr(row, f"p_{c}") >= limit]
        if row.mouth_open >= rule["max_mouth_open"]:
            why.append(f"lips parted ({row.mouth_open:.2f} of the mouth's width)")
        reasons.append("; ".join(why))
    table["reason"] = reasons
    table["kept"] = table.reason == ""
    return table


def base_faces() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The neutral base faces the default dataset is built on: :func:`neutral_faces` less the ones its
    shipped screening (``base_faces.csv``, :func:`screen_base_faces`) dropped, in the same order."""
    kept = set(read_base_screening().query("kept").identity)
    return [face for face in neutral_faces() if face[0] in kept]


def read_base_screening() -> pd.DataFrame:
    """The shipped screening of the base faces (one row per face of :func:`neutral_faces`)."""
    from importlib import resources

    with resources.files(__package__).joinpath("data", BASE_FACES_FILE).open() as fh:
        return pd.read_csv(fh, keep_default_na=False)


# ---------------------------------------------------------------- class-independent draws


@dataclass(frozen=True)
class Nuisance:
    """Everything about an image that does not depend on its class."""

    angle: float        # head roll, degrees
    scale: float        # zoom around the crop's centre
    shift: tuple[float, float]  # translation, pixels
    gamma: float
    light_angle: float  # direction of the side light, radians
    light: float        # its strength (fraction of brightness across the face)
    noise: float        # Gaussian noise sigma, grey levels
    noise_seed: int


def draw_nuisance(rng: np.random.Generator, params: dict, size: int) -> Nuisance:
    """Draw pose, lighting and noise from ``params`` (the ``synthetic`` section)."""
    return Nuisance(
        angle=float(rng.uniform(-params["rotation_deg"], params["rotation_deg"])),
        scale=float(rng.uniform(*params["scale"])),
        shift=tuple(float(v) for v in rng.uniform(-params["shift"], params["shift"], 2) * size),
        gamma=float(np.exp(rng.normal(0.0, params["gamma_sigma"]))),
        light_angle=float(rng.uniform(-np.pi, np.pi)),
        light=float(params["gradient"] * rng.uniform(0, 1)),
        noise=float(rng.uniform(*params["noise"])),
        noise_seed=int(rng.integers(2**31)),
    )


def posed_face(image: np.ndarray, landmarks: np.ndarray, size: int,
               nuisance: Nuisance) -> tuple[np.ndarray, np.ndarray]:
    """Crop a neutral face as :func:`fermap_utils.data.align_face` does, then apply the pose, in one warp.

    Returns the (size, size) float32 crop and its landmarks in the crop's pixels.
    """
    centre, side = face_box_transform(landmarks)
    if side > 1.5 * size:  # shrink first with area averaging: a single warp would alias
        f = 1.2 * size / side
        image = cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        landmarks = (landmarks + 0.5) * f - 0.5
        centre, side = face_box_transform(landmarks)
    align = np.vstack([cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), eye_angle(landmarks), size / side),
                       [0, 0, 1]])
    align[:2, 2] += np.array([size / 2, size / 2]) - centre
    pose = np.vstack([cv2.getRotationMatrix2D((size / 2, size / 2), nuisance.angle, nuisance.scale), [0, 0, 1]])
    pose[:2, 2] += nuisance.shift
    matrix = (pose @ align)[:2]
    crop = cv2.warpAffine(image.astype(np.float32), matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    return crop, np.c_[landmarks, np.ones(len(landmarks))] @ matrix.T


def light_and_noise(image: np.ndarray, nuisance: Nuisance) -> np.ndarray:
    """Gamma, a side light and Gaussian noise, pixel by pixel; returns uint8."""
    h, w = image.shape
    out = np.clip(image, 0, 255) / 255.0
    out = out ** nuisance.gamma
    ys, xs = np.mgrid[0:h, 0:w] / np.array([h, w]).reshape(2, 1, 1) * 2 - 1
    out = out * (1.0 + nuisance.light * (np.cos(nuisance.light_angle) * xs + np.sin(nuisance.light_angle) * ys))
    noise = np.random.default_rng(nuisance.noise_seed).normal(0.0, nuisance.noise, out.shape)
    return np.clip(out * 255.0 + noise + 0.5, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- how sharp a face is

_DETAIL_SCALE = 4.0  # pixels: detail finer than this Gaussian is what sharpness measures


def sharpness(image: np.ndarray, mask: np.ndarray | None = None) -> float:
    """How fine an image's detail is, in radians per pixel: sqrt(sum |grad h|^2 / sum h^2) over ``mask``,
    where h is the image less its Gaussian blur at 4 px (its detail).

    A step edge blurred by a Gaussian of sigma s scores about 0.61, 0.51, 0.38, 0.31 for s = 0.5, 1,
    2, 3 (:func:`detail_sigma` inverts it); 0 for an image with no detail.
    """
    f = np.asarray(image, np.float32)
    h = f - cv2.GaussianBlur(f, (0, 0), _DETAIL_SCALE)
    gy, gx = np.gradient(h)
    m = np.ones(f.shape, bool) if mask is None else np.asarray(mask, bool)
    energy = float((h[m] ** 2).sum())
    return float(np.sqrt((gx[m] ** 2 + gy[m] ** 2).sum() / energy)) if energy > 0 else 0.0


@lru_cache(maxsize=1)
def _edge_sharpness() -> tuple[np.ndarray, np.ndarray]:
    sigmas = np.linspace(0.3, 6.0, 58)
    step = np.zeros((96, 96), np.float32)
    step[:, 48:] = 100.0
    return sigmas, np.array([sharpness(cv2.GaussianBlur(step, (0, 0), s)) for s in sigmas])


def detail_sigma(image: np.ndarray, mask: np.ndarray | None = None) -> float:
    """The blur of the image's own detail: the sigma of the Gaussian-blurred step edge whose
    :func:`sharpness` equals the image's (about 0.5 px for a sharp photograph, 2 px for a 25-px LFW
    face upscaled to 128). The renderer blurs every appearance change at least this much."""
    sigmas, scores = _edge_sharpness()
    return float(np.interp(sharpness(image, mask), scores[::-1], sigmas[::-1]))


def edge_ratio(expressive: np.ndarray, neutral: np.ndarray, region: np.ndarray, face: np.ndarray,
               q: float = 99.0) -> float:
    """How steep the edges of an expression's changes are against the face's own: the ``q``-th
    percentile of the gradient magnitude of ``expressive - neutral`` inside ``region``, over that
    of ``neutral`` inside ``face`` (both bool masks). About 3 for a flat black mouth drawn on a
    face; at most about 1 when the change is the face's own texture, moved or shaded softly."""
    def steepest(image: np.ndarray, mask: np.ndarray) -> float:
        gy, gx = np.gradient(np.asarray(image, np.float32))
        return float(np.percentile(np.hypot(gx, gy)[np.asarray(mask, bool)], q))

    return steepest(np.asarray(expressive, np.float32) - neutral, region) / max(steepest(neutral, face), 1e-9)


def face_hull(landmarks: np.ndarray, size: int) -> np.ndarray:
    """The (size, size) bool convex hull of a face's 68 landmarks."""
    hull = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(hull, np.round(cv2.convexHull(np.asarray(landmarks, np.float32))).astype(np.int32), 1)
    return hull.astype(bool)


# ---------------------------------------------------------------- where each AU may act


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def au_supports(landmarks: np.ndarray, expression: str, size: int, dilate: float, ramp: float
                ) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Where each AU of an expression may change the face, as a taper in [0, 1].

    An AU's support is its region (``action_units.yaml``, drawn over this face's
    89 points) dilated by ``dilate`` pixels and cut to the union of the
    expression's AU regions: neighbouring regions share edges (the brows are the
    edge between AU1/2 and AU5), so a brow raise needs the pixels on both sides.
    The taper rises from 0 at the support's edge to 1 at ``ramp`` pixels inside.

    Returns
    -------
    tapers : dict AU -> (size, size) float32 in [0, 1], zero outside the support
    union : (size, size) bool, the union of the expression's AU regions
    """
    points = with_border_points(landmarks, size, size)
    regions = {au: au_region(au, points, (size, size)) for au in expression_aus()[expression]}
    union = np.logical_or.reduce(list(regions.values()))
    k = int(np.ceil(dilate))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
    tapers = {}
    for au, region in regions.items():
        support = cv2.dilate(region.astype(np.uint8), disc).astype(bool) & union
        inside = cv2.distanceTransform(support.astype(np.uint8), cv2.DIST_L2, 5)
        tapers[au] = _smoothstep(inside / ramp).astype(np.float32)
    return tapers, union


# ---------------------------------------------------------------- geometry of an AU


def _bilinear(field: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Sample an (H, W, 2) field at float (x, y) points."""
    return np.stack([cv2.remap(field[..., c], points[:, 0].astype(np.float32).reshape(-1, 1),
                               points[:, 1].astype(np.float32).reshape(-1, 1), cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0).ravel() for c in range(2)], axis=1)


def au_displacement(landmarks: np.ndarray, moves: dict, intensity: float, to_crop: np.ndarray,
                    size: int, sigma: float) -> np.ndarray:
    """The smooth displacement field (size, size, 2) of one AU, before its taper.

    Each moved landmark carries its displacement (standard-face pixels, mapped to
    the crop by the similarity ``to_crop``, times ``intensity``); between
    landmarks the field is their Gaussian-weighted mean, and it fades as the
    Gaussians do away from them.
    """
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    num = np.zeros((size, size, 2), np.float32)
    den = np.zeros((size, size), np.float32)
    for k, d in moves.items():
        x0, y0 = landmarks[int(k) - 1]
        g = np.exp(-((xs - x0) ** 2 + (ys - y0) ** 2) / (2 * sigma**2))
        num += g[..., None] * (intensity * (to_crop @ np.asarray(d, float))).astype(np.float32)
        den += g
    return num / np.maximum(den, 1.0)[..., None]


def open_mouth(face: np.ndarray, lm: np.ndarray, opening: float, floor: np.ndarray,
               jaw: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Part the lips by ``opening`` pixels at the middle (a lens that closes at the corners).

    The line where the lips meet (landmarks 61-65 and the inner lower lip) stays.
    Below it, each column is pushed down by the opening. Without ``jaw`` (a smile
    parting the lips) it is squeezed linearly to nothing at ``floor``, the lower lip.
    With ``jaw`` (a jaw drop) everything from the line to the jaw moves down whole,
    chin included, and only the skin between the jaw and ``floor`` (under the chin)
    is squeezed. Nothing changes above the line or below the floor. ``floor`` and
    ``jaw`` are polylines of (x, y) points.

    Returns the face, the moved landmarks and the mouth's inside (bool), where the
    lips parted.
    """
    size = face.shape[0]
    line = np.array([lm[60], (lm[61] + lm[67]) / 2, (lm[62] + lm[66]) / 2, (lm[63] + lm[65]) / 2, lm[64]])
    order = np.argsort(line[:, 0])
    xs = np.arange(size, dtype=np.float64)
    left, right = line[order[0], 0], line[order[-1], 0]
    t = (xs - (left + right) / 2) / max((right - left) / 2, 1e-6)
    gap = opening * np.clip(1 - t**2, 0, None)  # per column

    def across(points: np.ndarray) -> np.ndarray:
        k = np.argsort(points[:, 0])
        return np.interp(xs, points[k, 0], points[k, 1])

    line_y, floor_y = across(line), across(floor)
    gap = np.minimum(gap, np.maximum(floor_y - line_y - 2, 0) * 0.6)  # keep room below for the squeezed skin
    # where the squeeze starts: the jaw, or higher where there is too little room under the chin
    hinge_y = line_y if jaw is None else np.clip(np.minimum(across(jaw), floor_y - gap / 0.6 - 2), line_y, floor_y)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    g, top, hinge, bottom = gap[None, :], line_y[None, :], hinge_y[None, :], floor_y[None, :]
    shifted = (yy >= top + g) & (yy < hinge + g) & (g > 0)
    squeezed = (yy >= hinge + g) & (yy <= bottom) & (g > 0)
    inside = (yy > top) & (yy < top + g) & (g > 0)
    src = yy.copy()
    src[shifted] = (yy - g)[shifted]
    src[squeezed] = (hinge + (yy - hinge - g) * (bottom - hinge) / np.maximum(bottom - hinge - g, 1e-6))[squeezed]
    # the inside continues the line where the lips met (the mouth's darkest row), smooth down to the lower lip
    src[inside] = np.broadcast_to(top, yy.shape)[inside]
    out = face.copy()
    moved = shifted | squeezed | inside
    sampled = cv2.remap(face, xx.astype(np.float32), src.astype(np.float32), cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)
    out[moved] = sampled[moved]
    marks = lm.copy()
    cols = np.clip(np.round(marks[:, 0]).astype(int), 0, size - 1)
    # 0-based: the jaw 6-12, outer lower lip 56-60, inner 65-68
    for k in [5, 6, 7, 8, 9, 10, 11, 55, 56, 57, 58, 59, 64, 65, 66, 67]:
        c, y = cols[k], marks[k, 1]
        if y < line_y[c] - 0.5 or y > floor_y[c]:
            continue
        if y <= hinge_y[c]:
            marks[k, 1] = y + gap[c]
        else:
            marks[k, 1] = y + gap[c] * (floor_y[c] - y) / max(floor_y[c] - hinge_y[c], 1e-6)
    return out, marks, inside


def exponential_map(velocity: np.ndarray, steps: int = 7) -> np.ndarray:
    """The displacement of exp(v), the flow of a stationary velocity field for unit time, by scaling
    and squaring (Arsigny et al. 2006): fold-free for a smooth field, exactly zero wherever the
    field is zero around a point.

    Parameters
    ----------
    velocity : (H, W, 2) float32
        The velocity (x, y) at each pixel.
    steps : int
        Squarings: the field is first divided by 2**steps.

    Returns
    -------
    (H, W, 2) float32: u with exp(v)(x) = x + u(x).
    """
    h, w = velocity.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    u = (velocity / 2.0**steps).astype(np.float32)
    for _ in range(steps):  # exp(v) = exp(v / 2)∘exp(v / 2)
        mx, my = xs + u[..., 0], ys + u[..., 1]
        u = u + np.stack([cv2.remap(u[..., c], mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                    borderValue=0) for c in range(2)], axis=-1)
    return u


def moved_landmarks(landmarks: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Where the landmarks go under the forward map x -> x + forward(x) (:func:`exponential_map` of the velocity)."""
    return np.asarray(landmarks, np.float64) + _bilinear(forward, np.asarray(landmarks, np.float64))


def area_change(backward: np.ndarray) -> np.ndarray:
    """How much the skin at each output pixel was stretched (> 1) or compressed (< 1) by the warp
    out(x) = in(x + backward(x)): 1 / det(I + grad backward)."""
    dux_dy, dux_dx = np.gradient(backward[..., 0])
    duy_dy, duy_dx = np.gradient(backward[..., 1])
    det = (1 + dux_dx) * (1 + duy_dy) - dux_dy * duy_dx
    return (1.0 / np.maximum(det, 1e-3)).astype(np.float32)


# ---------------------------------------------------------------- appearance of an AU


def _canvas(size: int) -> np.ndarray:
    return np.zeros((size, size), np.float32)


_SHIFT = 4  # sub-pixel bits for OpenCV drawing


def _pts(points) -> np.ndarray:
    return np.round(np.asarray(points, np.float64) * (1 << _SHIFT)).astype(np.int32).reshape(-1, 1, 2)


def _curve_points(a, b, bulge: float, n: int = 12) -> np.ndarray:
    """A quadratic curve from a to b, bowed by ``bulge`` pixels to the left of a->b."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    normal = np.array([-(b - a)[1], (b - a)[0]]) / (np.linalg.norm(b - a) + 1e-9)
    t = np.linspace(0, 1, n)[:, None]
    mid = (a + b) / 2 + bulge * normal
    return (1 - t) ** 2 * a + 2 * (1 - t) * t * mid + t**2 * b


def _fill(canvas: np.ndarray, polygon, value: float = 1.0) -> None:
    cv2.fillPoly(canvas, [_pts(polygon)], value, cv2.LINE_AA, _SHIFT)


def _disc(canvas: np.ndarray, centre, radius: float) -> None:
    cv2.circle(canvas, tuple(int(v) for v in np.round(np.asarray(centre) * (1 << _SHIFT))),
               int(round(radius * (1 << _SHIFT))), 1.0, -1, cv2.LINE_AA, _SHIFT)


def _folds(curves: list[np.ndarray], size: int, unit: float, strength: float, dark: float = 0.3,
           light: float = 0.12, weights: list[float] | None = None) -> list[tuple[np.ndarray, float]]:
    """Skin folds along polylines: a soft shadow in the crease and a faint highlight on the skin
    it pushes up, each curve at its own weight (real creases are never equal)."""
    shadow, lit = _canvas(size), _canvas(size)
    width = max(1, int(round(2.5 * unit)))
    for pts, w in zip(curves, weights or [1.0] * len(curves)):
        cv2.polylines(shadow, [_pts(pts)], False, float(w), width, cv2.LINE_AA, _SHIFT)
        cv2.polylines(lit, [_pts(pts + [0, (2.0 + width) * unit])], False, float(w), width, cv2.LINE_AA, _SHIFT)
    blur = max(0.7, 1.5 * unit)
    return [(cv2.GaussianBlur(shadow, (0, 0), blur) * dark * 1.6 * strength, 30.0),
            (cv2.GaussianBlur(lit, (0, 0), blur * 1.8) * light * 1.6 * strength, 225.0)]


def _wavy(a, b, bulge: float, unit: float, phase: float, n: int = 16) -> np.ndarray:
    """A crease from a to b: a shallow arc with a slight waviness, as skin lines are."""
    pts = _curve_points(a, b, bulge, n)
    t = np.linspace(0, 1, n)
    return pts + np.c_[np.zeros(n), 0.8 * unit * np.sin(2 * np.pi * (1.3 * t + phase))]


def _graded(polygon, size: int) -> np.ndarray:
    """A filled polygon whose alpha rises from its edge to 1 at its deepest point (a cavity's shading)."""
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(np.asarray(polygon, np.float64)).astype(np.int32).reshape(-1, 1, 2)], 1)
    if not mask.any():
        return mask.astype(np.float32)
    depth = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    return (0.55 + 0.45 * _smoothstep(depth / max(float(depth.max()), 1e-6))) * mask


def au_appearance(au: int, lm: np.ndarray, unit: float, intensity: float, size: int
                  ) -> list[tuple[np.ndarray, float]]:
    """The appearance changes of one AU on a face whose (moved) landmarks are ``lm``.

    Each change is a layer (an alpha map in [0, 1]) and the grey level it shades the skin's
    local brightness towards (:func:`apply_expression` keeps the texture): dark for a crease or
    the mouth's inside, light for teeth, the white of the eye or a bulge. Creases are soft,
    thin and unequal; a cavity darkens towards its depth; ``unit`` is the crop's pixels per
    standard-face pixel; ``intensity`` scales the strength.

    Returns
    -------
    list of (alpha (size, size) float32, grey level)
    """
    p = lambda i: lm[i - 1]  # noqa: E731  (1-based, as in the data)
    s = min(1.0, intensity / 2.5)
    layers: list[tuple[np.ndarray, float]] = []
    if au == 1:  # horizontal lines over the inner forehead, fainter and shorter going up
        inset = 0.3 * (p(22)[0] - p(21)[0])
        curves = [_wavy(p(20) + [inset + k * 3 * unit, -up * unit], p(25) + [-inset - k * 2 * unit, -up * unit],
                        3 * unit, unit, 0.3 * k) for k, up in enumerate((15, 25, 35))]
        layers += _folds(curves, size, unit, s, weights=[1.0, 0.7, 0.4])
    elif au == 2:  # lines over the outer forehead, above each outer brow
        curves = []
        for k, up in enumerate((17, 27)):
            curves.append(_wavy(p(18) + [2 * unit, -up * unit], p(21) + [0, -(up + 5) * unit], 3 * unit, unit, k))
            curves.append(_wavy(p(24) + [0, -(up + 5) * unit], p(27) + [-2 * unit, -up * unit], 3 * unit, unit, -k))
        layers += _folds(curves, size, unit, s, dark=0.25, weights=[0.9, 0.8, 0.5, 0.45])
    elif au == 4:  # vertical furrows between the brows, and the brows' shadow over the eyes
        mid = (p(22) + p(23)) / 2
        curves = [_curve_points(mid + [side * 4 * unit, -7 * unit], mid + [side * 2.5 * unit, 10 * unit],
                                side * 1.5 * unit) for side in (-1, 1)]
        layers += _folds(curves, size, unit, s, dark=0.35, light=0.1, weights=[1.0, 0.8])
        shade = _canvas(size)
        for brow, eye in ((range(18, 23), range(37, 41)), (range(23, 28), range(43, 47))):
            _fill(shade, np.vstack([[p(i) for i in brow], [p(i) for i in reversed(eye)]]))
        layers.append((cv2.GaussianBlur(shade, (0, 0), 3 * unit) * 0.3 * s, 20.0))
    elif au == 5:  # the upper lid raised: more of the white of the eye shows above the iris
        for eye in (range(37, 43), range(43, 49)):
            contour = np.array([p(i) for i in eye])
            opening = _canvas(size)
            _fill(opening, contour)
            top, bottom = contour[:, 1].min(), contour[:, 1].max()
            ys = np.arange(size, dtype=np.float32)[:, None]
            upper = np.clip((bottom - ys) / max(bottom - top, 1e-6), 0, 1)  # 1 at the lid, 0 at the lower lid
            layers.append((cv2.GaussianBlur(opening, (0, 0), 0.6) * upper * 0.7 * s, 225.0))
    elif au == 6:  # crow's feet, the crease under the lower lid, the cheek's bulge
        curves = []
        for corner, out in ((p(37), -1), (p(46), 1)):
            curves += [_curve_points(corner + [out * 4 * unit, dy * unit], corner + [out * 12 * unit, dy * 2.2 * unit],
                                     0.0) for dy in (-3, 1, 5)]
        for lid in ((42, 41), (47, 48)):
            curves.append(_curve_points(p(lid[0]) + [0, 6 * unit], p(lid[1]) + [0, 6 * unit], -2 * unit))
        layers += _folds(curves, size, unit, s, dark=0.25, weights=[0.6, 0.8, 0.5, 0.6, 0.8, 0.5, 1.0, 1.0])
        bulge = _canvas(size)
        for lid in ((42, 41), (47, 48)):
            centre = (p(lid[0]) + p(lid[1])) / 2 + [0, 16 * unit]
            cv2.ellipse(bulge, tuple(int(v) for v in np.round(centre * (1 << _SHIFT))),
                        (int(14 * unit * (1 << _SHIFT)), int(8 * unit * (1 << _SHIFT))), 0, 0, 360, 1.0, -1,
                        cv2.LINE_AA, _SHIFT)
        layers.append((cv2.GaussianBlur(bulge, (0, 0), 5 * unit) * 0.3 * s, 215.0))
    elif au == 7:  # tightened lids: a darker lower lid line
        curves = [np.array([p(i) for i in lid]) for lid in ((37, 42, 41, 40), (43, 48, 47, 46))]
        layers += _folds(curves, size, unit, s, dark=0.3, light=0.05)
    elif au == 9:  # short wrinkles across the nose bridge, folds beside the nose wings
        half = 0.22 * (p(43)[0] - p(40)[0])
        curves = [_curve_points(y - [half, 0], y + [half, 0], -2.5 * unit)
                  for y in (p(28) + t * (p(30) - p(28)) for t in (0.3, 0.5))]
        curves += [_curve_points(wing + [0, -2 * unit], wing + 0.45 * (top - wing), side * unit)
                   for wing, top, side in ((p(32), p(40), 1), (p(36), p(43), -1))]
        layers += _folds(curves, size, unit, s, dark=0.35, weights=[0.7, 0.5, 1.0, 1.0])
    elif au == 12:  # nasolabial folds, and teeth between the parted lips
        curves = [_curve_points(wing + [side * 5 * unit, 0], corner + [side * 7 * unit, 10 * unit], -side * 4 * unit)
                  for wing, corner, side in ((p(32), p(49), -1), (p(36), p(55), 1))]
        layers += _folds(curves, size, unit, s, dark=0.45, light=0.2)
        inner = np.array([p(i) for i in range(61, 69)])
        mouth = _canvas(size)
        _fill(mouth, inner)
        left, right = inner[:, 0].min(), inner[:, 0].max()
        xs = np.arange(size, dtype=np.float32)[None, :]
        across = np.clip(1 - ((xs - (left + right) / 2) / max((right - left) / 2, 1e-6)) ** 2, 0, 1)
        gap = _canvas(size)
        cv2.polylines(gap, [_pts([p(61), (p(62) + p(68)) / 2, (p(63) + p(67)) / 2, (p(64) + p(66)) / 2, p(65)])],
                      False, 1.0, 1, cv2.LINE_AA, _SHIFT)
        layers.append((cv2.GaussianBlur(mouth, (0, 0), 1.0) * across * 0.6 * s, 195.0))  # teeth, shaded to the corners
        layers.append((cv2.GaussianBlur(mouth * (1 - across), (0, 0), 0.8) * 0.5 * s, 40.0))  # the corners' shadow
        layers.append((np.minimum(mouth, cv2.GaussianBlur(gap, (0, 0), 0.7)) * 0.45 * s, 70.0))
    elif au == 15:  # creases down from the mouth's corners
        curves = [_curve_points(corner + [side * 1 * unit, 3 * unit], corner + [side * 4 * unit, 17 * unit],
                                side * 2 * unit) for corner, side in ((p(49), -1), (p(55), 1))]
        layers += _folds(curves, size, unit, s, dark=0.3)
    elif au == 20:  # the stretched mouth's corners pulled into short horizontal folds
        curves = [_curve_points(corner + [side * 2 * unit, 0], corner + [side * 10 * unit, 3 * unit], 0.0)
                  for corner, side in ((p(49), -1), (p(55), 1))]
        layers += _folds(curves, size, unit, s, dark=0.3)
    elif au == 23:  # pressed lips: a darker line where they meet, paler lips
        lips = _canvas(size)
        _fill(lips, [p(i) for i in range(49, 61)])
        layers.append((cv2.GaussianBlur(lips, (0, 0), 1.0) * 0.2 * s, 170.0))
        layers += _folds([np.array([p(i) for i in range(61, 66)])], size, unit, s, dark=0.5, light=0.05)
    elif au == 26:  # the open mouth: dark towards its depth, the upper teeth's edge catching the light
        inner = np.array([p(i) for i in range(61, 69)])
        layers.append((cv2.GaussianBlur(_graded(inner, size), (0, 0), 1.2) * 0.9 * s, 20.0))
        upper = np.array([p(i) for i in (61, 62, 63, 64, 65)])
        teeth = _canvas(size)
        _fill(teeth, np.vstack([upper, upper[::-1] + [0, 3.5 * unit]]))
        left, right = upper[:, 0].min(), upper[:, 0].max()
        xs = np.arange(size, dtype=np.float32)[None, :]
        across = np.clip(1 - ((xs - (left + right) / 2) / max((right - left) / 2, 1e-6)) ** 2, 0, 1)
        layers.append((cv2.GaussianBlur(teeth, (0, 0), 1.2) * across * 0.5 * s, 190.0))
    return layers


# ---------------------------------------------------------------- one image


def draw_intensities(expression: str, rng: np.random.Generator, params: dict) -> dict[int, float]:
    """One intensity per AU of the expression, uniform in ``params['intensity']``."""
    lo, hi = params["intensity"]
    return {au: float(rng.uniform(lo, hi)) for au in expression_aus()[expression]}


@dataclass
class Rendered:
    """One synthetic image, its neutral twin (same pose, light and noise) and the truth about it."""

    image: np.ndarray      # (size, size) uint8
    neutral: np.ndarray    # (size, size) uint8, the same face without the expression
    landmarks: np.ndarray  # (68, 2), where the expression moved them
    neutral_landmarks: np.ndarray  # (68, 2)
    union: np.ndarray      # (size, size) bool, the union of the expression's AU regions

    @property
    def change(self) -> np.ndarray:
        """The true change map: |image - neutral|, grey levels (uint8)."""
        return cv2.absdiff(self.image, self.neutral)


def apply_expression(face: np.ndarray, landmarks: np.ndarray, expression: str,
                     intensities: dict[int, float], params: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deform and paint one (float, posed, neutral) face with an expression.

    Returns the expressive face (float32), its moved landmarks, and the union of
    the expression's AU regions; outside the AUs' supports the face is unchanged.
    """
    size = face.shape[0]
    fit, _ = cv2.estimateAffinePartial2D(mean_shape().astype(np.float32), landmarks.astype(np.float32))
    to_crop = fit[:, :2]
    unit = float(np.hypot(*to_crop[:, 0]))  # crop pixels per standard-face pixel
    tapers, union = au_supports(landmarks, expression, size, params["support_dilate"] * unit,
                                params["support_ramp"] * unit)
    table = action_units()
    field = np.zeros((size, size, 2), np.float32)
    for au, taper in tapers.items():
        moves = table[au]["displacement"]
        field += au_displacement(landmarks, moves, intensities[au] * params["displacement_scale"], to_crop, size,
                                 params["bump_sigma"] * unit) * taper[..., None]
    # The field is a velocity, integrated (exp): skin may be compressed but never folds over itself,
    # however far it moves within a small support. The compression shades the skin: a crease where
    # it is squeezed, a little light where it is stretched.
    backward, forward = exponential_map(-field), exponential_map(field)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    moved = cv2.remap(face, xs + backward[..., 0], ys + backward[..., 1], cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_REPLICATE)
    still = ~np.any(backward != 0, axis=-1)
    out = np.where(still, face, moved)  # exactly the neutral face where nothing moves
    marks = moved_landmarks(landmarks, forward)
    blur = detail_sigma(face, face_hull(landmarks, size))
    squeeze = cv2.GaussianBlur(np.clip(np.log(area_change(backward)), -1.0, 0.5), (0, 0), blur + 2 * unit)
    squeeze[still] = 0.0
    out = out * (1 + params["compression_shading"] * squeeze)
    openings = {au: table[au].get("opening", 0) * intensities[au] * params["displacement_scale"] * unit
                for au in tapers}
    if any(openings.values()):
        # a jaw drop moves the chin: the skin from the lips to below the jaw is pushed down and
        # squeezed into the neck; a smile only parts the lips, within the lower lip
        closed = out
        if openings.get(26):
            jaw = marks[4:13]
            floor = np.c_[jaw[:, 0], np.minimum(jaw[:, 1] + 0.8 * (jaw[:, 1] - marks[57, 1]).clip(0), size - 1)]
            out, marks, _ = open_mouth(out, marks, sum(openings.values()), floor, jaw=jaw)
        else:
            out, marks, _ = open_mouth(out, marks, sum(openings.values()), marks[[48, 59, 58, 57, 56, 55, 54]])
        # confined to the opening AUs' supports (a mouth stretched wide by AU20 reaches past them)
        opening_support = np.logical_or.reduce([tapers[au] > 0 for au, v in openings.items() if v])
        out = np.where(opening_support, out, closed)
    # Appearance is shading of the face's own texture: each layer moves the local mean brightness
    # towards its level and scales the texture with it, blurred at least as much as the face's own
    # detail (a 25-px face upscaled gets soft folds, a photograph sharp ones).
    local = np.maximum(cv2.GaussianBlur(out, (0, 0), 3 * unit), 8.0)
    for au, taper in tapers.items():
        for alpha, level in au_appearance(au, marks, unit, intensities[au], size):
            a = np.clip(alpha * params["appearance_gain"], 0, 1).astype(np.float32)
            a = cv2.GaussianBlur(a, (0, 0), blur) * taper
            out = out * (1 + a * (level - local) / local)
    return out.astype(np.float32), marks, union


def render(image: np.ndarray, landmarks: np.ndarray, expression: str, intensities: dict[int, float],
           nuisance: Nuisance, params: dict) -> Rendered:
    """One synthetic image of ``expression`` and its neutral twin under the same pose, light and noise."""
    size = int(params["size"])
    face, marks = posed_face(image, landmarks, size, nuisance)
    expressive, moved, union = apply_expression(face, marks, expression, intensities, params)
    return Rendered(light_and_noise(expressive, nuisance), light_and_noise(face, nuisance), moved, marks, union)


def expression_panel(identities: int = 6, params: dict | None = None) -> tuple[list[str], np.ndarray]:
    """A panel of the default dataset as the generator renders it: ``identities`` base faces spread
    over :func:`base_faces`, each as its neutral twin then the six classes (sample 0 of each, with
    that image's own pose, light and noise, so exactly the dataset's first image of the class).

    Returns
    -------
    names : list of str
        The identities, top to bottom.
    faces : (identities, 7, size, size) uint8
        Per identity: the neutral twin of its first class's image, then one image per class in
        ``config.yaml``'s order.
    """
    params = {**section("synthetic"), **(params or {})}
    bases = base_faces()
    picks = np.linspace(0, len(bases) - 1, identities).round().astype(int)
    expressions = list(config_expressions())
    names, rows = [], []
    for i in picks:
        name, image, marks = bases[i]
        row = []
        for j, expr in enumerate(expressions):
            nuisance_rng, au_rng = sample_rngs(params["seed"], int(i), j, 0)
            out = render(image, marks, expr, draw_intensities(expr, au_rng, params),
                         draw_nuisance(nuisance_rng, params, params["size"]), params)
            if j == 0:
                row.append(out.neutral)
            row.append(out.image)
        names.append(name)
        rows.append(np.stack(row))
    return names, np.stack(rows)


def sample_rngs(seed: int, identity: int, expression: int,
                sample: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Two independent streams per image: one for the nuisance, one for the AU intensities."""
    return (np.random.default_rng([seed, identity, expression, sample, 0]),
            np.random.default_rng([seed, identity, expression, sample, 1]))


# ---------------------------------------------------------------- the dataset


def _key(params: dict) -> str:
    # the generator's own code is part of the key: a changed renderer never reuses an old cache
    code = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    kept = sorted(read_base_screening().query("kept").identity)
    blob = json.dumps({"params": params, "aus": action_units(), "table2": expression_aus(), "bases": kept,
                       "version": GENERATOR_VERSION, "code": code}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def synthetic_params(overrides: dict | None = None) -> dict:
    """The generator's parameters: ``config.yaml``'s ``synthetic`` section with ``overrides`` applied.

    Parameters
    ----------
    overrides : dict, optional
        Parameter name -> value; every name must be one of the section's.

    Returns
    -------
    dict
        The merged parameters (a new dict).

    Raises
    ------
    FermapError
        When an override names no parameter of the section (a typo would otherwise be ignored).
    """
    params = dict(section("synthetic"))
    unknown = sorted(set(overrides or {}) - set(params))
    if unknown:
        raise FermapError(f"no parameter {', '.join(map(repr, unknown))} in config.yaml's synthetic section; "
                          f"known: {', '.join(params)}")
    return {**params, **(overrides or {})}


def generate(directory: str | os.PathLike | None = None, progress: bool = True, identities: int | None = None,
             **overrides) -> Path:
    """Generate the synthetic images (cached) and return the path of their manifest CSV.

    Writes ``raw/<identity>/<Expression>_<k>.png`` with beside each its
    landmarks (``.landmarks.txt``), its neutral twin's landmarks (``.neutral.txt``)
    and its true change map (``.change.png``),
    ``manifest.csv``, ``aus.csv`` (the AU intensities drawn) and ``params.json``.
    A second call with the same parameters reuses the cache. ``identities``
    keeps only the first N faces (for tests).
    """
    params = synthetic_params(overrides)
    tag = _key(params) + (f"-{identities}" if identities else "")
    root = Path(directory) if directory else cache_dir() / f"synthetic-{tag}"
    manifest = root / "manifest.csv"
    if manifest.is_file():
        return manifest
    expressions = list(config_expressions())
    faces = base_faces()[:identities]
    rows, au_rows = [], []
    total = len(faces) * len(expressions) * params["samples_per_expression"]
    with tqdm.auto.tqdm(total=total, desc="synthesising", unit="img", disable=not progress) as bar:
        for i, (identity, face, marks) in enumerate(faces):
            for j, expr in enumerate(expressions):
                for k in range(params["samples_per_expression"]):
                    nuisance_rng, au_rng = sample_rngs(params["seed"], i, j, k)
                    nuisance = draw_nuisance(nuisance_rng, params, params["size"])
                    intensities = draw_intensities(expr, au_rng, params)
                    out = render(face, marks, expr, intensities, nuisance, params)
                    rel = f"raw/{identity}/{expr}_{k}"
                    write_gray(root / f"{rel}.png", out.image)
                    write_gray(root / f"{rel}.change.png", out.change)
                    np.savetxt(root / f"{rel}.landmarks.txt", out.landmarks, fmt="%.3f")
                    np.savetxt(root / f"{rel}.neutral.txt", out.neutral_landmarks, fmt="%.3f")
                    rows.append(f"{rel}.png,{identity},{expr},synthetic,{rel}.landmarks.txt")
                    au_rows.append({"path": f"{rel}.png", **{f"AU{a}": round(v, 4) for a, v in intensities.items()},
                                    **{k2: v for k2, v in asdict(nuisance).items() if k2 != "shift"}})
                    bar.update()
    pd.DataFrame(au_rows).to_csv(root / "aus.csv", index=False)
    (root / "params.json").write_text(json.dumps(params, indent=2))
    with atomic_path(manifest) as tmp:  # written last: its presence means the set is complete
        tmp.write_text("path,subject,expression,dataset,landmarks\n" + "\n".join(rows) + "\n")
    return manifest


def planted_maps(changes: np.ndarray, landmarks: np.ndarray, expressions: np.ndarray) -> dict[str, np.ndarray]:
    """The planted-signal map of each class: the mean true change, on the standard face.

    Each image's change map is warped to the standard face with that image's own
    landmarks (as its explanations are) and averaged over the class.

    Parameters
    ----------
    changes : (N, s, s) uint8 or float
        True change maps, grey levels.
    landmarks : (N, 68, 2)
        The landmarks of each image (the ones the explanations are warped with).
    expressions : (N,) str

    Returns
    -------
    dict expression -> (275, 224) float32, mean change in grey levels
    """
    out = {}
    for expr in sorted(set(expressions)):
        idx = np.flatnonzero(np.asarray(expressions) == expr)
        warped = [warp_to_standard(changes[i].astype(np.float32), landmarks[i])[0] for i in idx]
        out[str(expr)] = np.mean(warped, axis=0).astype(np.float32)
    return out


def planted_regions(maps: dict[str, np.ndarray], level: float | None = None) -> dict[str, np.ndarray]:
    """The planted region of each class: where its mean change reaches ``level`` grey levels.

    ``level`` defaults to ``synthetic.planted_level`` in ``config.yaml``.
    """
    level = section("synthetic")["planted_level"] if level is None else level
    return {e: m >= level for e, m in maps.items()}


def write_truth(out: Path, source_root: Path) -> dict[str, np.ndarray]:
    """Copy each built image's change map (and its neutral landmarks) to ``out/truth/``; write ``out/planted/``."""
    table = pd.read_csv(records_file(out), dtype={"subject": str})
    marks = np.load(landmarks_file(out))
    changes, neutral = [], []
    for row in table.itertuples():
        stem = source_root / str(row.source)[: -len(".png")]
        change = cv2.imread(f"{stem}.change.png", cv2.IMREAD_UNCHANGED)
        write_gray(truth_dir(out) / Path(row.image).name, change)
        changes.append(change)
        neutral.append(np.loadtxt(f"{stem}.neutral.txt"))
    with atomic_path(truth_dir(out) / "neutral_landmarks.npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.asarray(neutral, np.float32))
    maps = planted_maps(np.asarray(changes), marks, table.expression.to_numpy())
    with atomic_path(planted_file(out)) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **maps)
    for expr, m in maps.items():
        write_gray(planted_dir(out) / f"{expr}_planted.png", np.clip(m / max(float(m.max()), 1e-9) * 255, 0, 255)
                   .astype(np.uint8))
    return maps


def load_planted_maps(data_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """The planted-signal maps of a built synthetic dataset (``DATA/planted/planted_maps.npz``)."""
    path = planted_file(data_dir)
    if not path.is_file():
        raise FermapError(f"{path}: no planted-signal maps; only the synthetic default dataset has them "
                          "(`fermap data build --default`)")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def build_default(out: str | os.PathLike, progress: bool = True, identities: int | None = None,
                  **overrides) -> dict:
    """``fermap data build --default``: generate (or reuse) the synthetic set and write it into ``out``.

    The images are already cropped and posed from their neutral landmarks, so
    they are stored as generated (no re-alignment, which would fit the crop to
    the expression's landmarks and leak the class into the zoom). Beside the
    usual dataset files it writes ``truth/`` (each image's true change map) and
    ``planted/`` (each class's planted-signal map on the standard face).
    """
    out = Path(out)
    params = synthetic_params(overrides)
    key = _key(params) + (f"-{identities}" if identities else "")
    summary_path = summary_file(out)
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        if summary.get("source_key") == key:
            return summary
    for stale in (truth_dir(out), planted_dir(out)):  # a rebuild never keeps another set's truth
        shutil.rmtree(stale, ignore_errors=True)  # (build_dataset replaces images)
    manifest = generate(progress=progress, identities=identities, **overrides)
    records, dropped = split_records(read_manifest(manifest))
    summary = build_dataset(records, out, dropped, size=params["size"], synthetic=True, progress=progress,
                            align=False,
                            description="SYNTHETIC: FACS-driven expressions (EMFACS AUs of Table 2, geometry and "
                                        "appearance, confined to the AU regions) on real faces shipped by "
                                        "scikit-image and matplotlib")
    write_truth(out, manifest.parent)
    summary["source_key"] = key
    summary["ground_truth"] = {"truth": f"{TRUTH}/", "planted": f"{PLANTED}/{PLANTED_MAPS}",
                               "planted_level": params["planted_level"]}
    with atomic_path(summary_path) as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return summary


__all__ = ["BASE_FACES_FILE", "Nuisance", "Rendered", "apply_expression", "area_change", "au_appearance",
           "au_displacement", "au_supports", "base_crops", "base_faces", "build_default", "detail_sigma",
           "draw_intensities", "draw_nuisance", "edge_ratio", "exponential_map", "expression_panel", "face_hull",
           "generate", "light_and_noise", "load_planted_maps", "mouth_measures", "moved_landmarks", "neutral_faces",
           "planted_maps", "planted_regions", "posed_face", "read_base_screening", "render", "sample_rngs",
           "screen_base_faces", "sharpness", "synthetic_params", "write_truth"]
