"""Heatmaps: the paper's Eq. 1 and 2, and one heatmap saved and loaded under the authors' file names.

Names, as in the authors' repository (:func:`heatmap_filename`, read back as a
:class:`HeatmapKey` by :func:`parse_heatmap_filename`):

- per (network, fold, class): ``{Net}_CV{k}_{Expression}_heatmap.png`` (H_{n,t,c})
- per (network, class): ``{Net}_{Expression}_heatmap.png`` (H_{n,c})
- per class: ``{Expression}_heatmap.png`` (H_c)
"""
from __future__ import annotations

import os
import re
from typing import NamedTuple

import numpy as np

from ._io import read_gray, write_gray
from .errors import FermapError
from .landmarks import STANDARD_SIZE

_BY_CV = re.compile(r"^(?P<net>[A-Za-z0-9]+)_CV(?P<fold>\d+)_(?P<expr>[A-Za-z]+)_heatmap\.png$")
_BY_NET = re.compile(r"^(?P<net>[A-Za-z0-9]+)_(?P<expr>[A-Za-z]+)_heatmap\.png$")
_TOTAL = re.compile(r"^(?P<expr>[A-Za-z]+)_heatmap\.png$")

CANVAS_SHAPE: tuple[int, int] = (STANDARD_SIZE[1], STANDARD_SIZE[0])


class HeatmapKey(NamedTuple):
    """Which explanations a heatmap pools: one (network, fold, class), one network's folds, or all.

    ``network`` is None for H_c (every network); ``fold`` is None for H_{n,c} and H_c.
    """

    network: str | None
    fold: int | None
    expression: str

    @property
    def grouping(self) -> str:
        """``fold k`` (H_{n,t,c}), ``all folds`` (H_{n,c}) or ``global`` (H_c): the label a reader sees."""
        if self.network is None:
            return "global"
        return "all folds" if self.fold is None else f"fold {self.fold}"

    @property
    def network_label(self) -> str:
        """The network, or ``all`` for H_c."""
        return "all" if self.network is None else self.network


def heatmap_filename(expression: str, network: str | None = None, fold: int | None = None) -> str:
    """The authors' file name for a heatmap.

    Parameters
    ----------
    expression : str
        The class.
    network : str, optional
        The network; without it, the name of the class's global heatmap H_c.
    fold : int, optional
        The fold (with ``network``); without it, the name of H_{n,c}.

    Returns
    -------
    name : str

    Examples
    --------
    >>> heatmap_filename("Fear"), heatmap_filename("Fear", "VGG16"), heatmap_filename("Fear", "VGG16", 3)
    ('Fear_heatmap.png', 'VGG16_Fear_heatmap.png', 'VGG16_CV3_Fear_heatmap.png')
    """
    if network is None:
        return f"{expression}_heatmap.png"
    if fold is None:
        return f"{network}_{expression}_heatmap.png"
    return f"{network}_CV{int(fold)}_{expression}_heatmap.png"


def parse_heatmap_filename(name: str) -> HeatmapKey | None:
    """The key of an authors'-style heatmap file name, or None for another file.

    Parameters
    ----------
    name : str
        A file name (no folder).

    Returns
    -------
    HeatmapKey or None
        The inverse of :func:`heatmap_filename`.

    Examples
    --------
    >>> parse_heatmap_filename("VGG16_CV3_Fear_heatmap.png")
    HeatmapKey(network='VGG16', fold=3, expression='Fear')
    >>> parse_heatmap_filename("VGG16_Fear_heatmap.png"), parse_heatmap_filename("Fear_heatmap.png").network
    (HeatmapKey(network='VGG16', fold=None, expression='Fear'), None)
    >>> parse_heatmap_filename("notes.txt") is None
    True
    """
    m = _BY_CV.match(name)
    if m:
        return HeatmapKey(m["net"], int(m["fold"]), m["expr"])
    m = _BY_NET.match(name)
    if m:
        return HeatmapKey(m["net"], None, m["expr"])
    m = _TOTAL.match(name)
    return HeatmapKey(None, None, m["expr"]) if m else None


def mean_explanation(explanations: np.ndarray) -> np.ndarray:
    """Eq. 1: the pixel-wise mean of a stack of standardised explanations.

    Parameters
    ----------
    explanations : (N, H, W) array
        N >= 1 explanations on one canvas.

    Returns
    -------
    mean : (H, W) float64 array

    Raises
    ------
    ValueError
        When the stack is empty or not 3-D.
    """
    explanations = np.asarray(explanations, dtype=np.float64)
    if explanations.ndim != 3 or len(explanations) == 0:
        raise ValueError(f"expected a non-empty (N, H, W) stack, got {explanations.shape}")
    return explanations.mean(axis=0)


def stretch(heatmap: np.ndarray) -> np.ndarray:
    """Min-max stretch of a heatmap to [0, 1].

    Parameters
    ----------
    heatmap : array

    Returns
    -------
    stretched : float64 array of ``heatmap``'s shape
        Its minimum becomes 0 and its maximum 1; a constant heatmap becomes all zeros.

    Examples
    --------
    >>> stretch(np.array([2.0, 4.0, 6.0])).tolist(), stretch(np.ones(2)).tolist()
    ([0.0, 0.5, 1.0], [0.0, 0.0])
    """
    h = np.asarray(heatmap, dtype=np.float64)
    lo, hi = float(h.min()), float(h.max())
    return np.zeros_like(h) if hi == lo else (h - lo) / (hi - lo)


def to_uint8(heatmap: np.ndarray) -> np.ndarray:
    """A [0, 1] heatmap as 8-bit grey.

    Parameters
    ----------
    heatmap : array
        Values in [0, 1]; others are clipped.

    Returns
    -------
    grey : uint8 array of ``heatmap``'s shape
        round(255 x), so 0.5 becomes 128.

    Examples
    --------
    >>> to_uint8(np.array([0.0, 0.5, 1.0, 1.2])).tolist()
    [0, 128, 255, 255]
    """
    return np.clip(np.round(np.asarray(heatmap, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def as_unit(heatmap: np.ndarray) -> np.ndarray:
    """A heatmap as floats in [0, 1], from whatever form it is held in: the one entry point for grading.

    A run stores heatmaps as 8-bit PNGs (0..255); chapters and tests also hold them as [0, 1] floats
    or as boolean masks. Each form is converted by its own rule, never guessed from the values.

    Parameters
    ----------
    heatmap : array
        ``uint8`` (0..255, as :func:`load_heatmap` returns it), ``bool``, or floats in [0, 1].

    Returns
    -------
    unit : float64 array of ``heatmap``'s shape, in [0, 1]

    Raises
    ------
    ValueError
        For floats outside [0, 1] or not finite, and for any other dtype: scale such a map first.

    Examples
    --------
    >>> as_unit(np.array([0, 128, 255], dtype=np.uint8)).round(3).tolist()
    [0.0, 0.502, 1.0]
    >>> as_unit(np.array([0.0, 0.25, 1.0])).tolist()
    [0.0, 0.25, 1.0]
    """
    h = np.asarray(heatmap)
    if h.dtype == np.uint8:
        return h.astype(np.float64) / 255.0
    if h.dtype == bool:
        return h.astype(np.float64)
    if h.dtype.kind == "f":
        if not np.isfinite(h).all() or h.min() < 0.0 or h.max() > 1.0:
            raise ValueError(f"a float heatmap must lie in [0, 1]; this one spans [{h.min()}, {h.max()}]")
        return h.astype(np.float64)
    raise ValueError(f"a heatmap is uint8 (0..255), bool or float in [0, 1], not {h.dtype}")


def heatmap(explanations: np.ndarray) -> np.ndarray:
    """Eq. 1 then the min-max stretch: the [0, 1] heatmap of a group of explanations.

    Parameters
    ----------
    explanations : (N, H, W) array
        The group's standardised explanations.

    Returns
    -------
    heatmap : (H, W) float64 array in [0, 1]
    """
    return stretch(mean_explanation(explanations))


def pooled_heatmap(sums: list[np.ndarray], counts: list[int]) -> np.ndarray:
    """Eq. 2: the heatmap of several groups pooled, from each group's explanation sum and count.

    Pooling folds gives H_{n,c}; pooling networks and folds gives H_c. Every
    explanation weighs the same, whichever group it came from.

    Parameters
    ----------
    sums : list of (H, W) arrays
        Each group's sum of standardised explanations.
    counts : list of int
        How many explanations each sum holds.

    Returns
    -------
    heatmap : (H, W) float64 array in [0, 1]
        The stretched mean of all explanations.

    Raises
    ------
    ValueError
        When the counts add up to 0.
    """
    total = int(np.sum(counts))
    if total == 0:
        raise ValueError("no explanations to pool")
    return stretch(np.sum([np.asarray(s, dtype=np.float64) for s in sums], axis=0) / total)


def save_heatmap(path: str | os.PathLike, heatmap01: np.ndarray) -> None:
    """Save a [0, 1] heatmap as an 8-bit PNG, atomically.

    Parameters
    ----------
    path : path
        The PNG to write; its folder is created.
    heatmap01 : (H, W) array in [0, 1]

    Returns
    -------
    None
    """
    write_gray(path, to_uint8(heatmap01))


def load_heatmap(path: str | os.PathLike, require_contrast: bool = True) -> np.ndarray:
    """Read one 8-bit, 224x275 heatmap.

    Parameters
    ----------
    path : path
        A grey PNG.
    require_contrast : bool, optional
        Refuse a constant heatmap, on which Otsu's threshold is undefined.

    Returns
    -------
    heatmap : (275, 224) uint8 array

    Raises
    ------
    FermapError
        Naming the file: unreadable, of another size, or constant.
    """
    image = read_gray(path, CANVAS_SHAPE)
    if require_contrast and image.min() == image.max():
        raise FermapError(f"{path}: constant heatmap (every pixel {image.min()}): nothing to threshold")
    return image


