import cv2
import numpy as np
import pytest

from fermap_utils import masks as M
from fermap_utils.config import expressions, section
from fermap_utils.landmarks import standard_points

# Mask areas as fractions of the 224x275 canvas, from the reference README.
AREAS = {"Anger": 0.2496, "Disgust": 0.2345, "Fear": 0.3000, "Happiness": 0.2144,
         "Sadness": 0.3091, "Surprise": 0.2372}


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_masks_match_the_authors(reference):
    for expr in expressions():
        theirs = cv2.imread(str(reference / "ekman_masks" / f"{expr}_gt.png"), 0) > 127
        ours = M.ekman_mask(expr)
        assert _iou(ours, theirs) >= 0.97, expr
        # the masks are drawn as the authors drew them: identical pixel for pixel
        assert np.count_nonzero(ours ^ theirs) == 0, expr


def test_every_file_keyed_by_expression_names_the_configured_ones():
    """config.yaml's paper.expressions is the one list: every mapping keyed by expression names exactly it."""
    configured = set(expressions())
    assert set(M.mask_spec()) == configured
    assert set(M.expression_aus()) == configured
    assert set(section("data")["expression_aliases"]) == configured
    assert set(section("data")["ckplus_codes"].values()) == configured
    assert list(M.ekman_masks()) == list(expressions())


def test_mask_areas():
    for expr, area in AREAS.items():
        assert M.ekman_mask(expr).mean() == pytest.approx(area, abs=5e-5), expr


def test_vertex_references():
    pts = standard_points()
    np.testing.assert_array_equal(M.resolve_vertex(19, pts), pts[18])
    np.testing.assert_array_equal(M.resolve_vertex("x19 y30", pts), (pts[18, 0], pts[29, 1]))
    np.testing.assert_array_equal(M.resolve_vertex("mid 5 49", pts), (pts[4] + pts[48]) / 2)
    with pytest.raises(ValueError, match="bad vertex"):
        M.resolve_vertex("middle 5", pts)


def test_strips_and_fans_expand_to_triangles():
    items = [{"strip": [1, 2, 3, 4]}, {"fan": [9, 5, 6, 7]}, [1, 2, 3]]
    assert M.expand_items(items) == [[1, 2, 3], [2, 3, 4], [9, 5, 6], [9, 6, 7], [1, 2, 3]]
    with pytest.raises(ValueError, match="unknown group"):
        M.expand_items([{"use": "nowhere"}], {})


def test_action_units_cover_table_2():
    aus = M.action_units()
    table2 = M.expression_aus()
    assert table2 == {"Anger": [4, 5, 7, 23], "Disgust": [9, 15], "Fear": [1, 2, 4, 5, 7, 20, 26],
                      "Happiness": [6, 12], "Sadness": [1, 4, 15], "Surprise": [1, 2, 5, 26]}
    assert sorted(aus) == [1, 2, 4, 5, 6, 7, 9, 12, 15, 20, 23, 26]
    for au, info in aus.items():
        assert info["name"] and (info["displacement"] or info.get("opening")), au
        region = M.au_region(au)
        assert 0.002 < region.mean() < 0.25, au
        # every landmark the AU moves lies in or next to its region
        pts = standard_points()
        if not info["displacement"]:  # AU26 parts the lips: the mouth lies in its region
            assert region[int(pts[66, 1]), int(pts[66, 0])], au
            continue
        moved = np.array([pts[k - 1] for k in info["displacement"]]).astype(int)
        dist = cv2.distanceTransform((~region).astype(np.uint8), cv2.DIST_L2, 3)
        assert np.median(dist[moved[:, 1].clip(0, 274), moved[:, 0].clip(0, 223)]) < 25, au


def test_au_mask_is_the_union_of_its_regions():
    union = M.au_region(6) | M.au_region(12)
    np.testing.assert_array_equal(M.au_mask([6, 12]), union)
    np.testing.assert_array_equal(M.au_masks()["Happiness"], union)
    with pytest.raises(KeyError, match="AU3"):
        M.au_region(3)


def test_masks_follow_another_face():
    # the same data drawn over shifted points gives the same mask shifted
    pts = standard_points() + (0, 3)
    np.testing.assert_array_equal(M.ekman_mask("Disgust", pts)[3:], M.ekman_mask("Disgust")[:-3])
