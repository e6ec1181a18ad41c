"""Small file helpers shared by the stages: reading images with clear errors, atomic writes."""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from .errors import FermapError


def read_gray(path: str | os.PathLike, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read an 8-bit grey image, failing with the file's name and the reason.

    Parameters
    ----------
    path : path-like
        The image file.
    shape : (height, width), optional
        The size the image must have.

    Returns
    -------
    image : (H, W) uint8 array
    """
    path = Path(path)
    if not path.is_file():
        raise FermapError(f"{path}: no such file")
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise FermapError(f"{path}: not a readable image")
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    if image.dtype != np.uint8:
        raise FermapError(f"{path}: expected an 8-bit image, got {image.dtype}")
    if shape is not None and image.shape != tuple(shape):
        raise FermapError(
            f"{path}: wrong size {image.shape[1]}x{image.shape[0]} (width x height), "
            f"expected {shape[1]}x{shape[0]}"
        )
    return image


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it into place only if the block succeeds.

    A killed or failed write never leaves a partial ``target`` behind.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_gray(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an 8-bit grey PNG atomically."""
    with atomic_path(path) as tmp:
        ok, buf = cv2.imencode(Path(path).suffix or ".png", image)
        if not ok:
            raise FermapError(f"{path}: could not encode image")
        buf.tofile(tmp)


def package_file(package: str, *parts: str, install_hint: str) -> Path:
    """A file shipped inside an installed package, found without importing the package.

    Raises FileNotFoundError saying how to install it when the package or the file is missing.
    """
    from importlib.util import find_spec

    found = find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(f"the package {package!r} is not installed ({install_hint})")
    path = Path(list(found.submodule_search_locations)[0]).joinpath(*parts)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {package} is installed without this file ({install_hint})")
    return path
