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

from .config import expressions
from .landmarks import STANDARD_SIZE, standard_points


@cache
def _load(name: str) -> dict:
    text = resources.files(__package__).joinpath("data").joinpath(name).read_text()
    return yaml.safe_load(text)


def expand_items(items: list, groups: dict | None = None) -> list[list]:
    """Expand a region's items into a flat list of polygons.

    Parameters
    ----------
    items : list
        Each item is a polygon (a list of vertex references), ``{strip: [v0, v1, ...]}``
        (the triangles v0 v1 v2, v1 v2 v3, ...), ``{fan: [c, v1, v2, ...]}`` (the triangles
        c v1 v2, c v2 v3, ...) or ``{use: name}`` (the items of a named group).
    groups : dict, optional
        The named groups that ``use`` refers to.

    Returns
    -------
    polygons : list of lists
        Vertex references, one list per polygon, in the items' order.

    Raises
    ------
    ValueError
        On an unknown group or an item of another form.

    Examples
    --------
    >>> expand_items([[1, 2, 3], {"strip": [4, 5, 6, 7]}, {"fan": [30, 31, 32, 33]}])
    [[1, 2, 3], [4, 5, 6], [5, 6, 7], [30, 31, 32], [30, 32, 33]]
    """
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
    """The six Ekman masks as polygons of vertex references.

    Returns
    -------
    spec : dict of str to list of lists
        For each expression, its polygons as :func:`expand_items` gives them, read from
        ``data/ekman_masks.yaml``.
    """
    data = _load("ekman_masks.yaml")
    return {e: expand_items(items, data["groups"]) for e, items in data["masks"].items()}


def action_units() -> dict[int, dict]:
    """The action units of ``data/action_units.yaml``.

    Returns
    -------
    table : dict of int to dict
        For each AU number, its FACS name, the landmarks it moves, its region's items
        (as :func:`expand_items` reads them) and its landmark displacements.
    """
    return {int(k): v for k, v in _load("action_units.yaml")["action_units"].items()}


def expression_aus() -> dict[str, list[int]]:
    """The EMFACS action units of each expression (the paper's Table 2).

    Returns
    -------
    aus : dict of str to list of int
        For each expression, its action-unit numbers.
    """
    return {k: list(v) for k, v in _load("action_units.yaml")["expressions"].items()}


def resolve_vertex(vertex: int | str, points: np.ndarray) -> np.ndarray:
    """The (x, y) of one vertex reference over 1-based points.

    Parameters
    ----------
    vertex : int or str
        ``19`` is point 19, ``"x19 y30"`` the x of point 19 with the y of point 30,
        ``"mid 5 49"`` the midpoint of points 5 and 49.
    points : (N, 2) array of (x, y)
        The points, point 1 first (row 0).

    Returns
    -------
    xy : (2,) array

    Raises
    ------
    ValueError
        On a reference of another form.

    Examples
    --------
    >>> pts = np.array([[0.0, 0.0], [10.0, 4.0], [2.0, 8.0]])
    >>> resolve_vertex(2, pts).tolist(), resolve_vertex("x2 y3", pts).tolist(), resolve_vertex("mid 1 2", pts).tolist()
    ([10.0, 4.0], [10.0, 8.0], [5.0, 2.0])
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
    """Rasterise the union of filled polygons into a boolean mask.

    Vertices are truncated to whole pixels and each polygon is filled with
    OpenCV, boundary included.

    Parameters
    ----------
    polygons : list of (K, 2) arrays of (x, y)
        The polygons; overlaps are filled, never cancelled.
    shape : (height, width), optional
        The canvas; the standard face's (275, 224) by default.

    Returns
    -------
    mask : (height, width) bool array

    Examples
    --------
    >>> polygons_to_mask([np.array([[1, 1], [3, 1], [3, 2], [1, 2]])], shape=(4, 5)).astype(int)
    array([[0, 0, 0, 0, 0],
           [0, 1, 1, 1, 0],
           [0, 1, 1, 1, 0],
           [0, 0, 0, 0, 0]])
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
    """Turn polygon specs into coordinates.

    Parameters
    ----------
    spec : list of lists
        Polygons of vertex references (see :func:`resolve_vertex`).
    points : (N, 2) array of (x, y)
        The points the references index, point 1 first.

    Returns
    -------
    polygons : list of (K, 2) float arrays
    """
    return [np.array([resolve_vertex(v, points) for v in poly]) for poly in spec]


def ekman_mask(expression: str, points: np.ndarray | None = None) -> np.ndarray:
    """The Ekman mask of one expression on the standard face.

    Parameters
    ----------
    expression : str
        One of :func:`fermap_utils.config.expressions`.
    points : (89, 2) array, optional
        The points to draw over; the standard face's by default. Other points
        (another face's 89 points) give the same regions on that face.

    Returns
    -------
    mask : (275, 224) bool array

    Raises
    ------
    KeyError
        On an unknown expression, listing the six.
    """
    spec = mask_spec()
    if expression not in spec:
        raise KeyError(f"unknown expression {expression!r}; expected one of {', '.join(expressions())}")
    pts = standard_points() if points is None else np.asarray(points, dtype=np.float64)
    return polygons_to_mask(resolve_polygons(spec[expression], pts))


def ekman_masks(points: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """All six Ekman masks.

    Parameters
    ----------
    points : (89, 2) array, optional
        The points to draw over; the standard face's by default.

    Returns
    -------
    masks : dict of str to (275, 224) bool array
        Keyed by expression, in the paper's order.
    """
    return {e: ekman_mask(e, points) for e in expressions()}


def au_region(au: int, points: np.ndarray | None = None, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The face region moved by one action unit.

    Parameters
    ----------
    au : int
        An action unit of ``action_units.yaml``.
    points : (89, 2) array, optional
        The points to draw over; the standard face's by default.
    shape : (height, width), optional
        The canvas; the standard face's (275, 224) by default.

    Returns
    -------
    region : (height, width) bool array

    Raises
    ------
    KeyError
        On an AU without a region, listing those that have one.
    """
    table = action_units()
    if au not in table:
        raise KeyError(f"no region defined for AU{au}; defined: {sorted(table)}")
    pts = standard_points() if points is None else np.asarray(points, dtype=np.float64)
    return polygons_to_mask(resolve_polygons(expand_items(table[au]["region"]), pts), shape)


def au_mask(aus: list[int] | tuple[int, ...], points: np.ndarray | None = None,
            shape: tuple[int, int] | None = None) -> np.ndarray:
    """The union of the regions of a set of action units (see :func:`au_region`).

    Parameters
    ----------
    aus : sequence of int
        The action units.
    points, shape : optional
        As for :func:`au_region`.

    Returns
    -------
    mask : (height, width) bool array
        All False for an empty ``aus``.
    """
    out = np.zeros(shape or (STANDARD_SIZE[1], STANDARD_SIZE[0]), bool)
    for au in aus:
        out |= au_region(int(au), points, shape)
    return out


def au_masks(points: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-expression masks built as the union of Table 2's action units.

    Parameters
    ----------
    points : (89, 2) array, optional
        The points to draw over; the standard face's by default.

    Returns
    -------
    masks : dict of str to (275, 224) bool array
        Keyed by expression.
    """
    return {e: au_mask(aus, points) for e, aus in expression_aus().items()}
