"""Face detection, dlib's 68 landmarks and the paper's 89-point standard face.

Point numbering in the docs and the mask data is 1-based, as in the paper's
Figure 4: 1-68 are dlib's landmarks, 69-85 the top-border points (the x of jaw
points 1-17 at y = 0) and 86-89 the corners (0, 0), (0, H), (W, 0), (W, H).
Arrays are 0-based.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from ._io import package_file
from .errors import NoFaceError

#: The standard face canvas, (width, height): a 224x250 face rectangle plus 25 rows for the chin.
STANDARD_SIZE: tuple[int, int] = (224, 275)
#: The face rectangle (left, top, right, bottom) the mean shape is placed in.
STANDARD_FACE_BOX: tuple[int, int, int, int] = (0, 0, 224, 250)
N_LANDMARKS = 68
N_POINTS = 89

# Left/right pairs of the 68-point scheme (0-based), for mirroring.
_MIRROR_PAIRS = (
    [(i, 16 - i) for i in range(8)]
    + [(17 + i, 26 - i) for i in range(5)]
    + [(31, 35), (32, 34)]
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    + [(48, 54), (49, 53), (50, 52), (59, 55), (58, 56), (60, 64), (61, 63), (67, 65)]
)


def mirror_index() -> np.ndarray:
    """Permutation of the 68 landmark indices that swaps left and right, for mirrored faces.

    Returns
    -------
    perm : (68,) int array
        ``landmarks[perm]`` relabels the landmarks of a horizontally flipped face so that
        each index names the same facial point as before the flip. It is its own inverse.

    Examples
    --------
    >>> perm = mirror_index()
    >>> perm[[0, 16, 36, 45, 30]].tolist()  # jaw ends and outer eye corners swap; the nose tip stays
    [16, 0, 45, 36, 30]
    >>> bool((perm[perm] == range(68)).all())
    True
    """
    perm = np.arange(N_LANDMARKS)
    for a, b in _MIRROR_PAIRS:
        perm[a], perm[b] = b, a
    return perm


def predictor_path() -> str:
    """Path of dlib's 68-point predictor shipped by ``face-recognition-models``.

    Its training data (iBUG 300-W) rule out commercial use.

    Returns
    -------
    path : str
        The ``shape_predictor_68_face_landmarks.dat`` file inside the installed package.

    Raises
    ------
    FermapError
        When the package is not installed, with the command that installs it.
    """
    # Found without importing the package: its __init__ needs pkg_resources, gone from recent setuptools.
    return str(package_file("face_recognition_models", "models", "shape_predictor_68_face_landmarks.dat",
                            install_hint="pip install face-recognition-models"))


@lru_cache(maxsize=1)
def _predictor():
    import dlib

    return dlib.shape_predictor(predictor_path())


@lru_cache(maxsize=1)
def _detector():
    import dlib

    return dlib.get_frontal_face_detector()


def _as_gray_u8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 3:
        image = image[..., :3].mean(axis=2)
    if image.dtype != np.uint8:
        lo, hi = (0.0, 1.0) if image.max() <= 1.0 else (0.0, 255.0)
        image = np.clip((image - lo) / (hi - lo) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)


def predict_landmarks(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """dlib's 68 landmarks inside a given face box.

    Parameters
    ----------
    image : (H, W) or (H, W, 3) array
        Grey or RGB image; floats are taken in [0, 1] or [0, 255].
    box : (left, top, right, bottom)
        The face rectangle.

    Returns
    -------
    landmarks : (68, 2) float64 array of (x, y)
    """
    import dlib

    shape = _predictor()(_as_gray_u8(image), dlib.rectangle(*(int(v) for v in box)))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def detect_faces(image: np.ndarray, upsample: int = 1) -> np.ndarray:
    """Face boxes found by dlib's HOG detector, largest first.

    Parameters
    ----------
    image : (H, W) or (H, W, 3) array
        Grey or RGB image; floats are taken in [0, 1] or [0, 255].
    upsample : int, optional
        How many times dlib doubles the image before detecting (finds smaller faces, slower).

    Returns
    -------
    boxes : (N, 4) int array of (left, top, right, bottom)
        Empty, shape (0, 4), when no face is found.
    """
    rects = _detector()(_as_gray_u8(image), upsample)
    boxes = np.array([(r.left(), r.top(), r.right(), r.bottom()) for r in rects], dtype=int).reshape(-1, 4)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return boxes[np.argsort(-areas, kind="stable")]


def detect_landmarks(image: np.ndarray, name: str = "image", upsample: int = 1) -> np.ndarray:
    """Detect the largest face and return its 68 landmarks.

    Parameters
    ----------
    image : (H, W) or (H, W, 3) array
        Grey or RGB image; floats are taken in [0, 1] or [0, 255].
    name : str, optional
        What to call the image in the error message.
    upsample : int, optional
        Passed to :func:`detect_faces`.

    Returns
    -------
    landmarks : (68, 2) float64 array of (x, y)
        The landmarks of the largest face found.

    Raises
    ------
    NoFaceError
        Naming ``name`` when no face is found.
    """
    boxes = detect_faces(image, upsample)
    if len(boxes) == 0:
        raise NoFaceError(f"{name}: no face found by dlib's detector")
    return predict_landmarks(image, tuple(boxes[0]))


def border_points(landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
    """The paper's 21 extra points: the 17 jaw x's on the top border, then the 4 corners.

    Parameters
    ----------
    landmarks : (68, 2) array of (x, y)
        The image's landmarks; only the jaw (points 1-17) is used.
    width, height : int
        The image's size.

    Returns
    -------
    points : (21, 2) float64 array of (x, y)
        Points 69-85 (each jaw point's x at y = 0), then points 86-89, the corners
        (0, 0), (0, H), (W, 0), (W, H).

    Examples
    --------
    >>> jaw = np.column_stack([np.arange(10.0, 180.0, 10.0), np.full(17, 50.0)])
    >>> extra = border_points(np.vstack([jaw, np.zeros((51, 2))]), width=200, height=100)
    >>> extra.shape
    (21, 2)
    >>> extra[[0, 16]].tolist(), extra[17:].tolist()
    ([[10.0, 0.0], [170.0, 0.0]], [[0.0, 0.0], [0.0, 100.0], [200.0, 0.0], [200.0, 100.0]])
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    top = np.column_stack([landmarks[:17, 0], np.zeros(17)])
    corners = np.array([(0, 0), (0, height), (width, 0), (width, height)], dtype=np.float64)
    return np.vstack([top, corners])


def with_border_points(landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
    """The 89 points of an image: its 68 landmarks followed by :func:`border_points`.

    Parameters
    ----------
    landmarks : (68, 2) array of (x, y)
        The image's landmarks.
    width, height : int
        The image's size.

    Returns
    -------
    points : (89, 2) float64 array of (x, y)

    Raises
    ------
    ValueError
        When ``landmarks`` is not (68, 2).
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (N_LANDMARKS, 2):
        raise ValueError(f"expected (68, 2) landmarks, got {landmarks.shape}")
    return np.vstack([landmarks, border_points(landmarks, width, height)])


@lru_cache(maxsize=1)
def _mean_shape() -> np.ndarray:
    width, height = STANDARD_SIZE
    points = predict_landmarks(np.zeros((height, width), np.uint8), STANDARD_FACE_BOX)
    points.setflags(write=False)
    return points


def mean_shape() -> np.ndarray:
    """dlib's mean shape as the authors found it.

    The predictor run on a black 224x275 canvas with the face box (0, 0, 224, 250);
    the points are used as they come (the chin falls below the box).

    Returns
    -------
    landmarks : (68, 2) float64 array of (x, y)
        A fresh copy, safe to modify.
    """
    return _mean_shape().copy()


def standard_points() -> np.ndarray:
    """The 89 points of the standard face.

    Returns
    -------
    points : (89, 2) float64 array of (x, y)
        :func:`mean_shape` on the 224x275 canvas, followed by its :func:`border_points`.
    """
    return with_border_points(_mean_shape(), *STANDARD_SIZE)
