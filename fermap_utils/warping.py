"""Piecewise-affine warping of faces (and their explanations) to the standard face.

The map is built once per image as a dense (map_x, map_y) pair and applied with
``cv2.remap``, so warping one explanation or a hundred costs little more than
warping the image itself.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
from scipy.spatial import Delaunay

from .landmarks import STANDARD_SIZE, standard_points, with_border_points

_SHIFT = 8  # fractional bits for sub-pixel triangle rasterisation


@lru_cache(maxsize=8)
def _pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    xs.setflags(write=False)
    ys.setflags(write=False)
    return xs, ys


def triangulate(points: np.ndarray) -> np.ndarray:
    """Delaunay triangles of a point set.

    Parameters
    ----------
    points : (N, 2) array of (x, y)

    Returns
    -------
    triangles : (T, 3) intp array
        Indices into ``points``, one row per triangle (``scipy.spatial.Delaunay``).

    Examples
    --------
    >>> square = np.array([[0, 0], [1, 0], [0, 1], [1, 1]])
    >>> triangulate(square).shape
    (2, 3)
    """
    return Delaunay(np.asarray(points, dtype=np.float64)).simplices.astype(np.intp)


def _affine_from_triangles(dst_tri: np.ndarray, src_tri: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-triangle 3x2 matrices M with [x, y, 1] @ M = source (x, y); and which are valid."""
    ones = np.ones(dst_tri.shape[:2] + (1,))
    design = np.concatenate([dst_tri, ones], axis=2)  # (T, 3, 3)
    valid = np.abs(np.linalg.det(design)) > 1e-9
    coef = np.zeros((len(dst_tri), 3, 2))
    coef[valid] = np.linalg.solve(design[valid], src_tri[valid])
    return coef, valid


def piecewise_affine_map(
    src_points: np.ndarray,
    dst_points: np.ndarray,
    output_shape: tuple[int, int],
    triangles: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Dense inverse map of the piecewise-affine transform taking ``src_points`` to ``dst_points``.

    Parameters
    ----------
    src_points, dst_points : (N, 2) arrays of (x, y)
        Corresponding points in the input image and in the output canvas.
    output_shape : (height, width)
        Size of the output canvas.
    triangles : (T, 3) int array, optional
        The triangulation. By default, as the authors did, the Delaunay
        triangulation of ``src_points`` (the image's own points).

    Returns
    -------
    map_x, map_y : (height, width) float32 arrays
        For each output pixel, the input coordinates to sample; -1 outside every triangle.
    """
    src = np.asarray(src_points, dtype=np.float64)
    dst = np.asarray(dst_points, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2:
        raise ValueError(f"point sets must both be (N, 2); got {src.shape} and {dst.shape}")
    tris = triangulate(src) if triangles is None else np.asarray(triangles, dtype=np.intp)
    coef, valid = _affine_from_triangles(dst[tris], src[tris])

    height, width = output_shape
    label = np.full((height, width), -1, dtype=np.int32)
    scaled = np.round(dst[tris] * (1 << _SHIFT)).astype(np.int32)
    for k in np.flatnonzero(valid):
        cv2.fillConvexPoly(label, scaled[k], int(k), lineType=cv2.LINE_8, shift=_SHIFT)

    # One gather of six float32 coefficients per pixel; outside pixels get a row that maps to -1.
    table = np.zeros((len(tris) + 1, 6), dtype=np.float32)
    table[:-1] = coef.transpose(0, 2, 1).reshape(-1, 6)  # (ax, bx, cx, ay, by, cy)
    table[-1] = (0, 0, -1, 0, 0, -1)
    m = table[label]  # label -1 picks the last row
    xs, ys = _pixel_grid(height, width)
    map_x = xs * m[..., 0] + ys * m[..., 1] + m[..., 2]
    map_y = xs * m[..., 3] + ys * m[..., 4] + m[..., 5]
    return map_x, map_y


def apply_map(image: np.ndarray, maps: tuple[np.ndarray, np.ndarray], order: int = 1) -> np.ndarray:
    """Sample an image through a dense map with ``cv2.remap``; pixels outside the map become 0.

    Parameters
    ----------
    image : (H, W), (H, W, C) with C <= 4, or (N, H, W) array
        The image, or a stack of 2-D planes (explanations) that all get the same map.
        float64 is sampled as float32, which ``cv2.remap`` needs.
    maps : (map_x, map_y)
        From :func:`piecewise_affine_map` or :func:`standardisation_map`.
    order : {0, 1, 3}, optional
        Nearest, bilinear or bicubic interpolation.

    Returns
    -------
    warped : array
        Of the maps' (height, width), with ``image``'s channels or stack length.

    Raises
    ------
    ValueError
        When ``image`` has another number of dimensions.

    Examples
    --------
    >>> shift = (np.tile(np.arange(4, dtype=np.float32) - 1, (2, 1)), np.zeros((2, 4), np.float32))
    >>> apply_map(np.array([[10, 20, 30, 40], [0, 0, 0, 0]], np.uint8), shift)[0].tolist()
    [0, 10, 20, 30]
    """
    interp = {0: cv2.INTER_NEAREST, 1: cv2.INTER_LINEAR, 3: cv2.INTER_CUBIC}[order]
    image = np.asarray(image)
    map_x, map_y = maps
    if image.dtype == np.float64:
        image = image.astype(np.float32)

    def remap(plane: np.ndarray) -> np.ndarray:
        return cv2.remap(plane, map_x, map_y, interp, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    if image.ndim == 2:
        return remap(image)
    if image.ndim == 3 and image.shape[2] <= 4 and image.shape[0] > 4:
        out = remap(np.ascontiguousarray(image))
        return out.reshape(out.shape[:2] + (image.shape[2],))
    if image.ndim == 3:
        return np.stack([remap(np.ascontiguousarray(p)) for p in image])
    raise ValueError(f"cannot warp an array of shape {image.shape}")


def standardisation_map(
    landmarks: np.ndarray, image_shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The map taking an image with these 68 landmarks to the 224x275 standard face.

    Parameters
    ----------
    landmarks : (68, 2) array
        The image's landmarks, (x, y) in its own pixels.
    image_shape : (height, width)
        The image's size; its corners become points 86-89.

    Returns
    -------
    map_x, map_y : (275, 224) float32 arrays
        As :func:`piecewise_affine_map` returns them, from the image's 89 points to
        :func:`~fermap_utils.landmarks.standard_points`.
    """
    height, width = image_shape[:2]
    src = with_border_points(landmarks, width, height)
    out_w, out_h = STANDARD_SIZE
    return piecewise_affine_map(src, standard_points(), (out_h, out_w))


def warp_to_standard(image: np.ndarray, landmarks: np.ndarray, *more: np.ndarray) -> list[np.ndarray]:
    """Warp an image, and any explanations of it, to the standard face with one map.

    Parameters
    ----------
    image : (H, W) or (H, W, C) array
        The face image.
    landmarks : (68, 2) array
        Its landmarks, (x, y) in its own pixels.
    *more : arrays
        Explanations of the same image, each (H, W) or a stack (N, H, W).

    Returns
    -------
    warped : list of arrays
        The warped image, then each warped extra array, all on the 224x275 standard face.
    """
    maps = standardisation_map(landmarks, np.asarray(image).shape[:2])
    return [apply_map(a, maps) for a in (image, *more)]


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Resize a stack of square images to a new side length.

    Parameters
    ----------
    images : ndarray, shape (N, s, s)
        Square images, any dtype OpenCV resizes.
    size : int
        Side length of the output.

    Returns
    -------
    ndarray, shape (N, size, size)
        The resized stack: area averaging when shrinking, bilinear when
        enlarging; the input itself when it already has that size.
    """
    if images.shape[1] == size:
        return images
    interp = cv2.INTER_AREA if size < images.shape[1] else cv2.INTER_LINEAR
    return np.stack([cv2.resize(im, (size, size), interpolation=interp) for im in images])
