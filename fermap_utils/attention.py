"""A reader's own attention, from the click-to-reveal game (Park & Wallraven): the click order as
an attention map, its scores against the Ekman mask and the networks' heatmaps, and a class's
saved sessions pooled into one map per expression.

The game itself (a widget) and its static figure are in :mod:`fermap_utils.widgets`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ._io import atomic_path
from .errors import FermapError
from .heatmaps import stretch, to_uint8
from .landmarks import STANDARD_SIZE
from .metrics import ncc, score_heatmap, threshold_free_scores


def attention_from_clicks(clicks: list[tuple[int, int]], tiles: int, shape: tuple[int, int]) -> np.ndarray:
    """An attention map from the order in which tiles were uncovered (Park & Wallraven's game).

    The first tile uncovered weighs most: with T clicks, the k-th (from 0) weighs (T - k) / T;
    tiles never uncovered weigh 0.

    Parameters
    ----------
    clicks : list of (int, int)
        The uncovered tiles as (row, column), in the order clicked.
    tiles : int
        Tiles per side of the board.
    shape : (int, int)
        The image's (rows, columns).

    Returns
    -------
    float32 array of ``shape``
    """
    h, w = shape
    grid = np.zeros((tiles, tiles), np.float32)
    total = len(clicks)
    for k, (row, col) in enumerate(clicks):
        if grid[row, col] == 0:
            grid[row, col] = (total - k) / total
    ys = np.minimum(np.arange(h) * tiles // h, tiles - 1)
    xs = np.minimum(np.arange(w) * tiles // w, tiles - 1)
    return grid[np.ix_(ys, xs)]


def score_attention(standard_map: np.ndarray, mask: np.ndarray, heatmaps: dict[str, np.ndarray]) -> dict:
    """A standardised attention map against the Ekman mask (Otsu, IoU...; ROC-AUC) and each
    network's heatmap (NCC).

    Parameters
    ----------
    standard_map : array of float
        The attention map warped to the standard face.
    mask : bool array
        The expression's Ekman mask.
    heatmaps : dict
        ``network -> uint8 heatmap`` to correlate with.

    Returns
    -------
    dict
        ``mask``: the scores against the mask (:func:`fermap_utils.metrics.score_heatmap` and
        ``roc_auc``); ``ncc``: ``network -> NCC``.
    """
    u8 = to_uint8(stretch(standard_map))
    scores = {"mask": {**score_heatmap(u8, mask), "roc_auc": threshold_free_scores(u8, mask)["roc_auc"]}}
    scores["ncc"] = {name: ncc(u8, h) for name, h in heatmaps.items()}
    return scores


def covered_face(image: np.ndarray, clicks: list[tuple[int, int]], tiles: int) -> np.ndarray:
    """A face with every tile grey except those uncovered.

    Parameters
    ----------
    image : uint8 array (H, W)
        The face.
    clicks : list of (int, int)
        The uncovered tiles as (row, column).
    tiles : int
        Tiles per side of the board.

    Returns
    -------
    uint8 array (H, W)
    """
    shown = np.full(image.shape, 128, np.uint8)
    h, w = image.shape
    for r, c in clicks:
        ys, xs = slice(r * h // tiles, (r + 1) * h // tiles), slice(c * w // tiles, (c + 1) * w // tiles)
        shown[ys, xs] = image[ys, xs]
    return shown


def save_session(result: dict, folder: str | os.PathLike) -> Path:
    """Write one click-to-reveal session where :func:`pool_sessions` finds it.

    Parameters
    ----------
    result : dict
        The session: ``session``, ``expression``, ``answer``, ``correct``, ``tiles``, ``clicks``,
        ``scores`` (:func:`score_attention`) and ``standard_map`` (a nested list).
    folder : path
        Where to write ``<session>_<Expression>.json`` (atomically).

    Returns
    -------
    Path
        The file written.
    """
    path = Path(folder) / f"{result['session']}_{result['expression']}.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(result))
    return path


def pool_sessions(folder: str, shape: tuple[int, int] | None = None) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Pool saved click-to-reveal sessions into one map per expression.

    The sessions are those :func:`save_session` writes (``widgets.ClickToReveal(out=folder)``).

    Parameters
    ----------
    folder : str
        A folder of session files ``<session>_<Expression>.json`` (searched recursively, so the
        folders of several students can be gathered under one).
    shape : tuple of int, optional
        (rows, columns) every map must have; a session of another shape is an error.
        Default: the standard face's, 275 x 224.

    Returns
    -------
    maps : dict
        Expression -> the mean of its sessions' standardised attention maps (float, the same
        weight for every session, as the paper's Eq. 1 weighs every explanation).
    sessions : pandas.DataFrame
        One row per session: file, session, expression, answer, correct, tiles uncovered, and
        the session's IoU with the Ekman mask.
    """
    shape = tuple(shape or STANDARD_SIZE[::-1])
    files = sorted(Path(folder).rglob("*.json"))
    if not files:
        raise FermapError(f"{folder}: no saved click-to-reveal sessions (*.json)")
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    rows = []
    for path in files:
        try:
            s = json.loads(path.read_text())
            standard = np.asarray(s["standard_map"], np.float64)
            expression = s["expression"]
        except (ValueError, KeyError, TypeError) as exc:
            raise FermapError(f"{path}: not a click-to-reveal session ({exc})") from None
        if standard.shape != shape:
            raise FermapError(f"{path}: map of shape {standard.shape}, not {shape}")
        sums[expression] = sums.get(expression, 0) + standard
        counts[expression] = counts.get(expression, 0) + 1
        rows.append({"file": path.name, "session": s.get("session"), "expression": expression,
                     "answer": s.get("answer"), "correct": s.get("correct"), "tiles": len(s.get("clicks", [])),
                     "iou_mask": s.get("scores", {}).get("mask", {}).get("iou")})
    return {e: sums[e] / counts[e] for e in sums}, pd.DataFrame(rows)
