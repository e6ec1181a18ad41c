import numpy as np
import pytest

from fermap_utils import landmarks as L
from fermap_utils.errors import NoFaceError


def test_mean_shape_is_the_authors_standard_face():
    pts = L.standard_points()
    assert pts.shape == (89, 2)
    # Facts from the reference README: landmark 28 near (109, 79), the chin (9) near (114, 269),
    # below the 250-row face box, inside the 25 extra rows.
    np.testing.assert_allclose(pts[27], (109, 79), atol=1)
    np.testing.assert_allclose(pts[8], (114, 269), atol=1)
    assert 250 < pts[8, 1] < 275


def test_border_points_order():
    pts = L.standard_points()
    np.testing.assert_array_equal(pts[68:85, 0], pts[:17, 0])
    assert np.all(pts[68:85, 1] == 0)
    np.testing.assert_array_equal(pts[85:], [(0, 0), (0, 275), (224, 0), (224, 275)])


def test_with_border_points_rejects_wrong_shape():
    with pytest.raises(ValueError, match="68"):
        L.with_border_points(np.zeros((67, 2)), 10, 10)


def test_detect_landmarks_on_a_real_face(astronaut_face):
    gray, lm = astronaut_face
    assert lm.shape == (68, 2)
    # the astronaut's face lies in the upper middle of the 512x512 image
    assert 120 < lm[:, 0].mean() < 300 and 60 < lm[:, 1].mean() < 260
    # eyes above the nose tip, nose tip above the mouth
    assert lm[36:48, 1].mean() < lm[33, 1] < lm[48:68, 1].mean()


def test_no_face_error_names_the_image():
    with pytest.raises(NoFaceError, match="blank.png"):
        L.detect_landmarks(np.zeros((120, 120), np.uint8), name="blank.png")


def test_mirror_index_swaps_left_and_right():
    perm = L.mirror_index()
    np.testing.assert_array_equal(perm[perm], np.arange(68))  # an involution
    pts = L.mean_shape()
    mirrored = pts.copy()
    mirrored[:, 0] = 224 - mirrored[:, 0]
    # the mean face is nearly symmetric: mirroring then re-indexing gives it back within a few pixels
    assert np.abs(mirrored[perm] - pts).max() < 8
