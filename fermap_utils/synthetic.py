"""The embedded default dataset: FACS-driven expressions on real faces.

No labelled facial-expression dataset can be installed offline, so fermap
makes one. It takes the real faces that ship inside its dependencies, moves
their landmarks as the action units of each expression's EMFACS set (the
paper's Table 2) would, at random intensities, and warps each face to match.
Head pose, lighting and noise are added independently of the class. The only
class signal therefore lies in the AU regions, which makes the set a
positive control for the paper's method.

It is synthetic, and every result computed on it says so.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np

from ._io import atomic_path, write_gray
from .config import cache_dir, section
from .data import align_face, build_dataset, read_manifest, split_records
from .landmarks import detect_faces, mean_shape, predict_landmarks, with_border_points
from .masks import action_units, expression_aus
from .warping import apply_map, piecewise_affine_map

GENERATOR_VERSION = 1


def neutral_faces(size: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The real faces shipped by fermap's dependencies, aligned to ``size`` x ``size``.

    - scikit-image's ``astronaut`` (Eileen Collins);
    - matplotlib's ``grace_hopper.jpg``;
    - scikit-image's ``lfw_subset``: its 100 faces (25x25), upscaled.

    The LFW faces are taken as they ship: some are not neutral, and their
    identities are not labelled, so each image counts as one identity. Every
    identity appears in all six classes from the same base face, so a base
    expression is noise shared by all classes, not a class signal.

    Returns
    -------
    list of (identity, grey face, 68 landmarks in the face's coordinates)
    """
    from matplotlib import cbook
    from skimage import data

    def gray(rgb):
        return cv2.cvtColor(np.asarray(rgb)[..., :3], cv2.COLOR_RGB2GRAY)

    sources = [("astronaut", gray(data.astronaut())),
               ("grace_hopper", gray(cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))[..., ::-1]))]
    for i, face in enumerate(data.lfw_subset()[:100]):
        sources.append((f"lfw{i:03d}", cv2.resize((face * 255).astype(np.uint8), (128, 128), interpolation=cv2.INTER_CUBIC)))
    faces = []
    for name, img in sources:
        boxes = detect_faces(img)
        box = tuple(boxes[0]) if len(boxes) else (0, 0, img.shape[1], img.shape[0])  # LFW crops are the face
        crop, marks = align_face(img, predict_landmarks(img, box), size)
        faces.append((name, crop, marks))
    return faces


def expression_displacement(expression: str, intensities: dict[int, float]) -> np.ndarray:
    """Landmark displacement (68, 2) in standard-face pixels for an expression at given AU intensities."""
    table = action_units()
    disp = np.zeros((68, 2))
    for au in expression_aus()[expression]:
        for k, (dx, dy) in table[au]["displacement"].items():
            disp[int(k) - 1] += intensities[au] * np.array([dx, dy], dtype=float)
    return disp


def make_expression(
    face: np.ndarray, landmarks: np.ndarray, expression: str, rng: np.random.Generator, params: dict
) -> tuple[np.ndarray, np.ndarray, dict[int, float]]:
    """One synthetic image of ``expression`` on a neutral face.

    The landmarks move as the expression's AUs would (displacements defined in
    the standard face, mapped to this face by a similarity fit); the face is
    warped piecewise-affinely to follow them; then pose, lighting and noise are
    drawn independently of the class.

    Returns the image, its landmarks and the AU intensities drawn.
    """
    h, w = face.shape
    lo, hi = params["intensity"]
    intensities = {au: float(rng.uniform(lo, hi)) for au in expression_aus()[expression]}
    fit, _ = cv2.estimateAffinePartial2D(mean_shape().astype(np.float32), landmarks.astype(np.float32))
    target = landmarks + expression_displacement(expression, intensities) @ fit[:, :2].T
    maps = piecewise_affine_map(with_border_points(landmarks, w, h), with_border_points(target, w, h), (h, w))
    # the map covers the whole canvas (its corners are points); keep it sampling inside the image
    maps = (np.clip(maps[0], 0, w - 1), np.clip(maps[1], 0, h - 1))
    out = apply_map(face, maps)

    angle = rng.uniform(-params["rotation_deg"], params["rotation_deg"])
    scale = rng.uniform(*params["scale"])
    pose = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    pose[:, 2] += rng.uniform(-params["shift"], params["shift"], 2) * (w, h)
    out = cv2.warpAffine(out, pose, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    target = np.c_[target, np.ones(68)] @ pose.T

    light = out.astype(np.float64) / 255.0
    light = light ** float(np.exp(rng.normal(0.0, params["gamma_sigma"])))
    direction = rng.uniform(-np.pi, np.pi)
    ys, xs = np.mgrid[0:h, 0:w] / np.array([h, w]).reshape(2, 1, 1) * 2 - 1
    light *= 1.0 + params["gradient"] * rng.uniform(0, 1) * (np.cos(direction) * xs + np.sin(direction) * ys)
    light = light * 255.0 + rng.normal(0.0, rng.uniform(*params["noise"]), light.shape)
    return np.clip(light + 0.5, 0, 255).astype(np.uint8), target, intensities


def _key(params: dict) -> str:
    blob = json.dumps({"params": params, "aus": action_units(), "table2": expression_aus(),
                       "version": GENERATOR_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def generate(directory: str | os.PathLike | None = None, progress: bool = True, **overrides) -> Path:
    """Generate the synthetic images (cached) and return the path of their manifest CSV.

    Writes ``raw/<identity>/<Expression>_<k>.png`` with a landmarks text file
    beside each, ``manifest.csv`` and ``aus.csv`` (the AU intensities drawn).
    A second call with the same parameters reuses the cache.
    """
    from tqdm.auto import tqdm

    params = {**section("synthetic"), **overrides}
    root = Path(directory) if directory else cache_dir() / f"synthetic-{_key(params)}"
    manifest = root / "manifest.csv"
    if manifest.is_file():
        return manifest
    expressions = list(section("paper")["expressions"])
    faces = neutral_faces(params["size"])
    rows, au_rows = [], []
    total = len(faces) * len(expressions) * params["samples_per_expression"]
    with tqdm(total=total, desc="synthesising", unit="img", disable=not progress) as bar:
        for i, (identity, face, marks) in enumerate(faces):
            for j, expr in enumerate(expressions):
                for k in range(params["samples_per_expression"]):
                    rng = np.random.default_rng([params["seed"], i, j, k])
                    image, target, intensities = make_expression(face, marks, expr, rng, params)
                    rel = f"raw/{identity}/{expr}_{k}.png"
                    write_gray(root / rel, image)
                    np.savetxt(root / f"{rel[:-4]}.landmarks.txt", target, fmt="%.3f")
                    rows.append(f"{rel},{identity},{expr},synthetic,{rel[:-4]}.landmarks.txt")
                    au_rows.append({"path": rel, **{f"AU{a}": round(v, 4) for a, v in intensities.items()}})
                    bar.update()
    import pandas as pd

    pd.DataFrame(au_rows).to_csv(root / "aus.csv", index=False)
    (root / "params.json").write_text(json.dumps(params, indent=2))
    with atomic_path(manifest) as tmp:  # written last: its presence means the set is complete
        tmp.write_text("path,subject,expression,dataset,landmarks\n" + "\n".join(rows) + "\n")
    return manifest


def build_default(out: str | os.PathLike, progress: bool = True, **overrides) -> dict:
    """``fermap data build --default``: generate (or reuse) the synthetic set and preprocess it into ``out``."""
    out = Path(out)
    params = {**section("synthetic"), **overrides}
    key = _key(params)
    summary_path = out / "summary.json"
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        if summary.get("source_key") == key:
            return summary
    manifest = generate(progress=progress, **overrides)
    records, dropped = split_records(read_manifest(manifest))
    summary = build_dataset(records, out, dropped, synthetic=True, progress=progress,
                            description="SYNTHETIC: FACS-driven expressions (EMFACS AUs of Table 2) warped onto "
                                        "real faces shipped by scikit-image and matplotlib")
    summary["source_key"] = key
    with atomic_path(summary_path) as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return summary
