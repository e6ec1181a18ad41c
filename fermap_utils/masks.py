"""Ekman masks and action-unit regions, defined as data over the standard face's points.

The per-expression masks reproduce the authors' Figure 4; the per-AU regions let
a mask be built from any set of action units (Table 2 is the default set).
"""
from __future__ import annotations

from functools import cache
from importlib import resources

import cv2
import numpy as np
import yaml

from .landmarks import STANDARD_SIZE, standard_points

#: The six expressions, in the paper's order.
EXPRESSIONS: tuple[str, ...] = ("Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise")

@cache
def _load(name: str) -> dict:
    text = resources.files(__package__).joinpath("data").joinpath(name).read_text()
    return yaml.safe_load(text)


def expand_items(items: list, groups: dict | None = None) -> list[list]:
    """Expand a region's items (polygons, ``strip``, ``fan``, ``use``) into a flat list of polygons."""
    polygons: list[list] = []
    for item in items:
        if isinstance(item, list):
            polygons.append(item)
        elif isinstance(item, dict) and "strip" in item:
            v = item["strip"]
            polygons += [v[i:i + 3] for i in range(len(v) - 2)]
        elif isinstance(item, dict) and "fan" in item:
            v = item["fan"]
            polygons += [[v[0], v[i + 1], v[i + 2]] for i in range(len(v) - 2)]
        elif isinstance(item, dict) and "use" in item:
            if not groups or item["use"] not in groups:
                raise ValueError(f"unknown group {item['use']!r} in mask data")
            polygons += expand_items(groups[item["use"]], groups)
        else:
            raise ValueError(
                f"bad mask item {item!r}: use [a, b, c], {{strip: [...]}}, {{fan: [...]}} or {{use: name}}"
            )
    return polygons


def mask_spec() -> dict[str, list[list]]:
    """The six Ekman masks as lists of polygons of vertex references (see ``data/ekman_masks.yaml``)."""
    data = _load("ekman_masks.yaml")
    return {e: expand_items(items, data["groups"]) for e, items in data["masks"].items()}


def action_units() -> dict[int, dict]:
    """The action units: FACS name, landmarks moved, region polygons and landmark displacements."""
    return {int(k): v for k, v in _load("action_units.yaml")["action_units"].items()}


def expression_aus() -> dict[str, list[int]]:
    """EMFACS action units of each expression (the paper's Table 2)."""
    return {k: list(v) for k, v in _load("action_units.yaml")["expressions"].items()}


def resolve_vertex(vertex: int | str, points: np.ndarray) -> np.ndarray:
    """(x, y) of one vertex reference over 1-based ``points``.

    ``19`` is point 19, ``"x19 y30"`` the x of 19 with the y of 30, ``"mid 5 49"`` a midpoint.
    """
    if isinstance(vertex, (int, np.integer)):
        return points[int(vertex) - 1]
    parts = str(vertex).split()
    if len(parts) == 3 and parts[0] == "mid":
        return (points[int(parts[1]) - 1] + points[int(parts[2]) - 1]) / 2.0
    if len(parts) == 2 and parts[0][0] == "x" and parts[1][0] == "y":
        return np.array([points[int(parts[0][1:]) - 1, 0], points[int(parts[1][1:]) - 1, 1]])
    raise ValueError(f"bad vertex reference {vertex!r}: use N, 'xN yM' or 'mid N M'")


def polygons_to_mask(
    polygons: list[np.ndarray], shape: tuple[int, int] | None = None
) -> np.ndarray:
    """Rasterise the union of filled polygons (lists of (x, y)) into a boolean (height, width) mask.

    Vertices are truncated to whole pixels and each polygon is filled with
    OpenCV, boundary included.
    """
    if shape is None:
        shape = (STANDARD_SIZE[1], STANDARD_SIZE[0])
    canvas = np.zeros(shape, np.uint8)
    for poly in polygons:  # one call per polygon, so overlaps never cancel
        # Whole pixels, truncated, as the authors drew: this keeps the masks pixel-identical to theirs.
        contour = np.trunc(np.asarray(poly, dtype=np.float64)).astype(np.int32).reshape(-1, 1, 2)
        cv2.drawContours(canvas, [contour], 0, 1, thickness=cv2.FILLED)
    return canvas.astype(bool)


def resolve_polygons(spec: list[list], points: np.ndarray) -> list[np.ndarray]:
    """Turn polygon specs (lists of vertex references) into (K, 2) coordinate arrays."""
    return [np.array([resolve_vertex(v, points) for v in poly]) for poly in spec]


def ekman_mask(expression: str, points: np.ndarray | None = None) -> np.ndarray:
    """The Ekman mask of one expression on the standard face, boolean (275, 224).

    Parameters
    ----------
    expression : str
        One of :data:`EXPRESSIONS`.
    points : (89, 2) array, optional
        The points to draw over; the standard face's by default. Other points
        (another face's 89 points) give the same regions on that face.
    """
    spec = mask_spec()
    if expression not in spec:
        raise KeyError(f"unknown expression {expression!r}; expected one of {', '.join(EXPRESSIONS)}")
    pts = standard_points() if points is None else np.asarray(points, dtype=np.float64)
    return polygons_to_mask(resolve_polygons(spec[expression], pts))


def ekman_masks(points: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """All six Ekman masks, keyed by expression."""
    return {e: ekman_mask(e, points) for e in EXPRESSIONS}


def au_region(au: int, points: np.ndarray | None = None, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The face region moved by one action unit, boolean.

    Parameters
    ----------
    au : int
        An action unit of ``action_units.yaml``.
    points : (89, 2) array, optional
        The points to draw over; the standard face's by default.
    shape : (height, width), optional
        The canvas; the standard face's (275, 224) by default.
    """
    table = action_units()
    if au not in table:
        raise KeyError(f"no region defined for AU{au}; defined: {sorted(table)}")
    pts = standard_points() if points is None else np.asarray(points, dtype=np.float64)
    return polygons_to_mask(resolve_polygons(expand_items(table[au]["region"]), pts), shape)


def au_mask(aus: list[int] | tuple[int, ...], points: np.ndarray | None = None,
            shape: tuple[int, int] | None = None) -> np.ndarray:
    """The union of the regions of a set of action units (see :func:`au_region`)."""
    out = np.zeros(shape or (STANDARD_SIZE[1], STANDARD_SIZE[0]), bool)
    for au in aus:
        out |= au_region(int(au), points, shape)
    return out


def au_masks(points: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-expression masks built as the union of Table 2's action units."""
    return {e: au_mask(aus, points) for e, aus in expression_aus().items()}
