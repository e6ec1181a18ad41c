import cv2
import numpy as np
import pytest
from skimage.transform import PiecewiseAffineTransform, warp

from fermap_utils import landmarks as L
from fermap_utils import warping as W

H, Wd = 275, 224


def _hull_mask() -> np.ndarray:
    mask = np.zeros((H, Wd), np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(L.standard_points()[:68].astype(np.int32)), 1)
    return mask.astype(bool)


def _skimage_reference(gray, lm):
    src = L.with_border_points(lm, gray.shape[1], gray.shape[0])
    dst = L.standard_points()
    tform = PiecewiseAffineTransform.from_estimate(dst, src)
    ref = warp(gray, tform, output_shape=(H, Wd), order=1, preserve_range=True)
    # skimage triangulates its first argument (the standard points): use the same triangles
    mine = W.apply_map(gray, W.piecewise_affine_map(src, dst, (H, Wd), triangles=W.triangulate(dst)))
    return mine, ref


def test_matches_skimage_on_real_faces(astronaut_face, lfw_faces):
    hull = _hull_mask()
    for gray, lm in [astronaut_face, *lfw_faces]:
        mine, ref = _skimage_reference(gray, lm)
        mad = np.abs(mine.astype(float) - ref)[hull].mean()
        assert mad <= 1.0, mad


def test_identity_when_points_coincide():
    pts = L.standard_points()
    mx, my = W.piecewise_affine_map(pts, pts, (H, Wd))
    ys, xs = np.mgrid[0:H, 0:Wd]
    np.testing.assert_allclose(mx, xs, atol=1e-3)
    np.testing.assert_allclose(my, ys, atol=1e-3)


def test_landmarks_land_on_the_standard_points(astronaut_face):
    gray, lm = astronaut_face
    maps = W.standardisation_map(lm, gray.shape)
    std = L.standard_points()[:68]
    # the map sends each standard landmark back to the image landmark it came from
    for (sx, sy), (ix, iy) in zip(std.astype(int), lm):
        if 0 <= sx < Wd and 0 <= sy < H:
            assert abs(maps[0][sy, sx] - ix) < 2.5 and abs(maps[1][sy, sx] - iy) < 2.5


def test_one_map_for_the_image_and_its_explanations(astronaut_face):
    gray, lm = astronaut_face
    explanations = np.random.default_rng(0).random((3,) + gray.shape).astype(np.float32)
    out = W.warp_to_standard(gray, lm, explanations)
    assert out[0].shape == (H, Wd) and out[0].dtype == np.uint8
    assert out[1].shape == (3, H, Wd)
    maps = W.standardisation_map(lm, gray.shape)
    np.testing.assert_array_equal(out[0], W.apply_map(gray, maps))
    for warped, explanation in zip(out[1], explanations, strict=True):
        np.testing.assert_array_equal(warped, W.apply_map(explanation, maps))


def test_mismatched_points_are_rejected():
    with pytest.raises(ValueError, match="point sets"):
        W.piecewise_affine_map(np.zeros((5, 2)), np.zeros((6, 2)), (10, 10))
