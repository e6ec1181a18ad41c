"""The embedded default dataset: a ground-truth benchmark of FACS-driven expressions on real faces.

No labelled facial-expression dataset can be installed offline, so fermap
makes one from the real faces its dependencies ship. Each image is built in
three steps, and only the second depends on the class:

1. **Pose and crop** come from the face's *neutral* landmarks and a pose drawn
   independently of the class (:func:`draw_nuisance`, :func:`posed_face`).
2. **The expression**: each action unit (AU) of the expression's EMFACS set (the
   paper's Table 2) at a random intensity moves the landmarks it moves
   (``action_units.yaml``) through a smooth displacement field, and adds the
   appearance a real face shows (a dark open mouth, teeth, wrinkles, folds).
   Both have compact support inside the AU's region, dilated by a few pixels and
   cut to the union of the expression's AU regions (:func:`au_supports`).
   Outside that union the image is the neutral face, pixel for pixel.
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

GENERATOR_VERSION = 2


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


def open_mouth(face: np.ndarray, lm: np.ndarray, opening: float, floor: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Part the lips by ``opening`` pixels at the middle (a lens that closes at the corners).

    The line where the lips meet (landmarks 61-65 and the inner lower lip) stays;
    below it, each column is pushed down by the opening and squeezed linearly
    to nothing at ``floor`` (the column's lower bound: the jaw for a jaw drop,
    the lower lip for a smile). Nothing changes above the line or below the floor.

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
    line_y = np.interp(xs, line[order, 0], line[order, 1])
    floor_y = np.interp(xs, floor[np.argsort(floor[:, 0]), 0], floor[np.argsort(floor[:, 0]), 1])
    gap = np.minimum(gap, np.maximum(floor_y - line_y - 2, 0) * 0.6)  # keep room below for the squeezed skin
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    g, top, bottom = gap[None, :], line_y[None, :], floor_y[None, :]
    below = (yy >= top + g) & (yy <= bottom) & (g > 0)
    inside = (yy > top) & (yy < top + g) & (g > 0)
    src = yy.copy()
    src[below] = (top + (yy - top - g) * (bottom - top) / np.maximum(bottom - top - g, 1e-6))[below]
    out = face.copy()
    moved = below | inside
    sampled = cv2.remap(face, xx.astype(np.float32), src.astype(np.float32), cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)
    out[moved] = sampled[moved]
    marks = lm.copy()
    cols = np.clip(np.round(marks[:, 0]).astype(int), 0, size - 1)
    push = (marks[:, 1] >= line_y[cols] - 0.5) & (marks[:, 1] <= floor_y[cols])
    lower = [55, 56, 57, 58, 59, 64, 65, 66, 67]  # 0-based: outer lower lip 56-60, inner lower lip 65-68
    for k in lower:
        if push[k]:
            y = marks[k, 1]
            marks[k, 1] = y + gap[cols[k]] * (floor_y[cols[k]] - y) / max(floor_y[cols[k]] - line_y[cols[k]], 1e-6)
    return out, marks, inside


def moved_landmarks(landmarks: np.ndarray, field: np.ndarray, iterations: int = 6) -> np.ndarray:
    """Where the landmarks go under the backward warp out(x) = in(x - D(x)): solve p' = p + D(p')."""
    moved = np.asarray(landmarks, np.float64).copy()
    for _ in range(iterations):
        moved = landmarks + _bilinear(field, moved)
    return moved


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


def _folds(curves: list[np.ndarray], size: int, unit: float, strength: float, dark: float = 0.5,
           light: float = 0.25) -> list[tuple[np.ndarray, float]]:
    """Skin folds along polylines: a soft shadow, and a highlight just below it."""
    shadow, lit = _canvas(size), _canvas(size)
    width = max(1, int(round(4 * unit)))  # about 4 standard-face pixels: still a line at the networks' 32-64 px
    for pts in curves:
        cv2.polylines(shadow, [_pts(pts)], False, 1.0, width, cv2.LINE_AA, _SHIFT)
        cv2.polylines(lit, [_pts(pts + [0, (2.5 + width) * unit])], False, 1.0, width, cv2.LINE_AA, _SHIFT)
    blur = max(0.5, 2.0 * unit)
    return [(cv2.GaussianBlur(shadow, (0, 0), blur) * dark * 1.6 * strength, 30.0),
            (cv2.GaussianBlur(lit, (0, 0), blur * 1.5) * light * 1.6 * strength, 225.0)]


def au_appearance(au: int, lm: np.ndarray, unit: float, intensity: float, size: int
                  ) -> list[tuple[np.ndarray, float]]:
    """The appearance changes of one AU on a face whose (moved) landmarks are ``lm``.

    Each change is a layer (an alpha map in [0, 1]) and the grey level it paints
    towards: dark for a fold, a wrinkle or the mouth's opening, light for teeth,
    the white of an eye or a bulge. ``unit`` is the crop's pixels per
    standard-face pixel; ``intensity`` scales the strength.

    Returns
    -------
    list of (alpha (size, size) float32, grey level)
    """
    p = lambda i: lm[i - 1]  # noqa: E731  (1-based, as in the data)
    s = min(1.0, intensity / 2.5)
    layers: list[tuple[np.ndarray, float]] = []
    if au == 1:  # horizontal lines over the inner forehead
        inset = 0.3 * (p(22)[0] - p(21)[0])
        curves = [_curve_points(p(20) + [inset, -up * unit], p(25) + [-inset, -up * unit], 3 * unit)
                  for up in (16, 28, 40)]
        layers += _folds(curves, size, unit, s)
    elif au == 2:  # lines over the outer forehead, above each outer brow
        curves = []
        for up in (18, 30):
            curves.append(_curve_points(p(18) + [0, -up * unit], p(21) + [0, -(up + 6) * unit], 3 * unit))
            curves.append(_curve_points(p(24) + [0, -(up + 6) * unit], p(27) + [0, -up * unit], 3 * unit))
        layers += _folds(curves, size, unit, s, dark=0.4)
    elif au == 4:  # vertical furrows between the brows, and the brows' shadow over the eyes
        mid = (p(22) + p(23)) / 2
        curves = [_curve_points(mid + [side * 5 * unit, -6 * unit], mid + [side * 3 * unit, 14 * unit],
                                side * 2 * unit) for side in (-1, 1)]
        layers += _folds(curves, size, unit, s, dark=0.7, light=0.2)
        shade = _canvas(size)
        for brow, eye in ((range(18, 23), range(37, 41)), (range(23, 28), range(43, 47))):
            _fill(shade, np.vstack([[p(i) for i in brow], [p(i) for i in reversed(eye)]]))
        layers.append((cv2.GaussianBlur(shade, (0, 0), 3 * unit) * 0.35 * s, 20.0))
    elif au == 5:  # the upper lid raised: the white of the eye around the iris
        for eye in (range(37, 43), range(43, 49)):
            contour = np.array([p(i) for i in eye])
            opening, iris = _canvas(size), _canvas(size)
            _fill(opening, contour)
            _disc(iris, contour.mean(axis=0), 0.2 * np.linalg.norm(contour[3] - contour[0]))
            layers.append((cv2.GaussianBlur(opening, (0, 0), 0.5) * 0.55 * s, 225.0))
            layers.append((np.minimum(opening, iris) * 0.8 * s, 30.0))
    elif au == 6:  # crow's feet, the crease under the lower lid, the cheek's bulge
        curves = []
        for corner, out in ((p(37), -1), (p(46), 1)):
            curves += [_curve_points(corner + [out * 4 * unit, dy * unit], corner + [out * 14 * unit, dy * 2.5 * unit],
                                     0.0) for dy in (-3, 1, 5)]
        for lid in ((42, 41), (47, 48)):
            a, b = p(lid[0]) + [0, 6 * unit], p(lid[1]) + [0, 6 * unit]
            curves.append(_curve_points(a, b, -2 * unit))
        layers += _folds(curves, size, unit, s, dark=0.45)
        bulge = _canvas(size)
        for lid in ((42, 41), (47, 48)):
            centre = (p(lid[0]) + p(lid[1])) / 2 + [0, 16 * unit]
            cv2.ellipse(bulge, tuple(int(v) for v in np.round(centre * (1 << _SHIFT))),
                        (int(14 * unit * (1 << _SHIFT)), int(8 * unit * (1 << _SHIFT))), 0, 0, 360, 1.0, -1,
                        cv2.LINE_AA, _SHIFT)
        layers.append((cv2.GaussianBlur(bulge, (0, 0), 4 * unit) * 0.35 * s, 220.0))
    elif au == 7:  # tightened lids: a darker lower lid line
        curves = [np.array([p(i) for i in lid]) for lid in ((37, 42, 41, 40), (43, 48, 47, 46))]
        layers += _folds(curves, size, unit, s, dark=0.5, light=0.1)
    elif au == 9:  # wrinkles across the nose bridge, folds beside the nose wings
        half = 0.35 * (p(43)[0] - p(40)[0])
        curves = [_curve_points(y - [half, 0], y + [half, 0], -2 * unit)
                  for y in (p(28) + t * (p(30) - p(28)) for t in (0.2, 0.4, 0.6))]
        curves += [_curve_points(wing + [0, -2 * unit], wing + 0.5 * (top - wing), 0.0)
                   for wing, top in ((p(32), p(40)), (p(36), p(43)))]
        layers += _folds(curves, size, unit, s, dark=0.7)
    elif au == 12:  # nasolabial folds, and teeth between the parted lips
        curves = [_curve_points(wing + [side * 5 * unit, 0], corner + [side * 7 * unit, 10 * unit], -side * 4 * unit)
                  for wing, corner, side in ((p(32), p(49), -1), (p(36), p(55), 1))]
        layers += _folds(curves, size, unit, s, dark=0.8, light=0.3)
        mouth, gap = _canvas(size), _canvas(size)
        _fill(mouth, [p(i) for i in range(61, 69)])
        cv2.polylines(gap, [_pts([p(61), (p(62) + p(68)) / 2, (p(63) + p(67)) / 2, (p(64) + p(66)) / 2, p(65)])],
                      False, 1.0, 1, cv2.LINE_AA, _SHIFT)
        layers.append((cv2.GaussianBlur(mouth, (0, 0), 0.4) * 0.95 * s, 230.0))  # the teeth
        layers.append((np.minimum(mouth, cv2.GaussianBlur(gap, (0, 0), 0.6)) * 0.6 * s, 70.0))
    elif au == 15:  # creases down from the mouth's corners
        curves = [_curve_points(corner + [side * 1 * unit, 3 * unit], corner + [side * 4 * unit, 20 * unit],
                                side * 2 * unit) for corner, side in ((p(49), -1), (p(55), 1))]
        layers += _folds(curves, size, unit, s, dark=0.6)
    elif au == 20:  # the stretched mouth's corners pulled into short horizontal folds
        curves = [_curve_points(corner + [side * 2 * unit, 0], corner + [side * 12 * unit, 3 * unit], 0.0)
                  for corner, side in ((p(49), -1), (p(55), 1))]
        layers += _folds(curves, size, unit, s)
    elif au == 23:  # pressed lips: a dark line where they meet, paler lips
        lips = _canvas(size)
        _fill(lips, [p(i) for i in range(49, 61)])
        layers.append((cv2.GaussianBlur(lips, (0, 0), 1.0) * 0.3 * s, 170.0))
        layers += _folds([np.array([p(i) for i in range(61, 66)])], size, unit, s, dark=0.9, light=0.1)
    elif au == 26:  # the open mouth: dark inside the lips, the upper teeth's edge
        mouth, teeth = _canvas(size), _canvas(size)
        _fill(mouth, [p(i) for i in range(61, 69)])
        upper = np.array([p(i) for i in (61, 62, 63, 64, 65)])
        _fill(teeth, np.vstack([upper, upper[::-1] + [0, 4 * unit]]))
        mouth = cv2.GaussianBlur(mouth, (0, 0), 0.5)
        layers.append((mouth * 0.95 * s, 15.0))
        layers.append((np.minimum(mouth, teeth) * 0.6 * s, 200.0))
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
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    moved = cv2.remap(face, xs - field[..., 0], ys - field[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    out = np.where(np.any(field != 0, axis=-1), moved, face)  # exactly the neutral face where nothing moves
    marks = moved_landmarks(landmarks, field)
    openings = {au: table[au].get("opening", 0) * intensities[au] * params["displacement_scale"] * unit
                for au in tapers}
    if any(openings.values()):
        # a jaw drop pushes the skin down to the jaw; a smile only parts the lips, within the lower lip
        floor = marks[4:13] - [0, 2] if openings.get(26) else marks[[48, 59, 58, 57, 56, 55, 54]]
        out, marks, _ = open_mouth(out, marks, sum(openings.values()), floor)
    for au, taper in tapers.items():
        for alpha, level in au_appearance(au, marks, unit, intensities[au], size):
            a = np.clip(alpha, 0, 1) * taper
            out = out * (1 - a) + level * a
    return out.astype(np.float32), marks, union


def render(image: np.ndarray, landmarks: np.ndarray, expression: str, intensities: dict[int, float],
           nuisance: Nuisance, params: dict) -> Rendered:
    """One synthetic image of ``expression`` and its neutral twin under the same pose, light and noise."""
    size = int(params["size"])
    face, marks = posed_face(image, landmarks, size, nuisance)
    expressive, moved, union = apply_expression(face, marks, expression, intensities, params)
    return Rendered(light_and_noise(expressive, nuisance), light_and_noise(face, nuisance), moved, marks, union)


def sample_rngs(seed: int, identity: int, expression: int,
                sample: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Two independent streams per image: one for the nuisance, one for the AU intensities."""
    return (np.random.default_rng([seed, identity, expression, sample, 0]),
            np.random.default_rng([seed, identity, expression, sample, 1]))


# ---------------------------------------------------------------- the dataset


def _key(params: dict) -> str:
    # the generator's own code is part of the key: a changed renderer never reuses an old cache
    code = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    blob = json.dumps({"params": params, "aus": action_units(), "table2": expression_aus(),
                       "version": GENERATOR_VERSION, "code": code}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


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
    params = {**section("synthetic"), **overrides}
    tag = _key(params) + (f"-{identities}" if identities else "")
    root = Path(directory) if directory else cache_dir() / f"synthetic-{tag}"
    manifest = root / "manifest.csv"
    if manifest.is_file():
        return manifest
    expressions = list(config_expressions())
    faces = neutral_faces()[:identities]
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
    params = {**section("synthetic"), **overrides}
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


__all__ = ["Nuisance", "Rendered", "apply_expression", "au_appearance", "au_displacement",
           "au_supports", "build_default", "draw_intensities", "draw_nuisance",
           "generate", "light_and_noise", "load_planted_maps", "moved_landmarks", "neutral_faces",
           "planted_maps", "planted_regions", "posed_face", "render", "sample_rngs", "write_truth"]
