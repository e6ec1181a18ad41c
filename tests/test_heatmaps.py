import numpy as np
import pytest

from fermap_utils import heatmaps as Hm
from fermap_utils._io import write_gray
from fermap_utils.errors import FermapError
from fermap_utils.scoring import load_fold_heatmaps

EXPR = ["Anger", "Disgust"]


def test_filenames_follow_the_authors():
    assert Hm.heatmap_filename("Fear") == "Fear_heatmap.png"
    assert Hm.heatmap_filename("Fear", "VGG16") == "VGG16_Fear_heatmap.png"
    assert Hm.heatmap_filename("Fear", "VGG16", 3) == "VGG16_CV3_Fear_heatmap.png"


def test_filenames_read_back_as_keys():
    for key in (Hm.HeatmapKey("VGG16", 3, "Fear"), Hm.HeatmapKey("MobileNetV3Large", None, "Anger"),
                Hm.HeatmapKey(None, None, "Surprise")):
        assert Hm.parse_heatmap_filename(Hm.heatmap_filename(key.expression, key.network, key.fold)) == key
    assert Hm.parse_heatmap_filename("VGG16_CV3_Fear_heatmap.png").fold == 3
    assert [Hm.parse_heatmap_filename(n) for n in ("summary.json", "VGG16_CV3_Fear.png", "a_b_c_heatmap.png")] \
        == [None, None, None]
    keys = [Hm.HeatmapKey("VGG16", 3, "Fear"), Hm.HeatmapKey("VGG16", None, "Fear"), Hm.HeatmapKey(None, None, "Fear")]
    assert [k.grouping for k in keys] == ["fold 3", "all folds", "global"]
    assert [k.network_label for k in keys] == ["VGG16", "VGG16", "all"]


def test_eq1_mean_then_stretch():
    stack = np.stack([np.full((4, 4), v, float) for v in (1.0, 2.0, 3.0)])
    stack[:, 0, 0] = 9
    h = Hm.heatmap(stack)
    assert h.min() == 0 and h.max() == 1 and h[0, 0] == 1
    assert Hm.stretch(np.ones((3, 3))).max() == 0  # constant -> zeros, no NaN
    with pytest.raises(ValueError):
        Hm.mean_explanation(np.zeros((0, 4, 4)))


def test_eq2_pools_every_explanation_equally():
    rng = np.random.default_rng(0)
    a, b = rng.random((3, 5, 5)), rng.random((7, 5, 5))
    pooled = Hm.pooled_heatmap([a.sum(0), b.sum(0)], [3, 7])
    np.testing.assert_allclose(pooled, Hm.heatmap(np.concatenate([a, b])))


def test_save_then_load_roundtrip(tmp_path):
    h = np.linspace(0, 1, 275 * 224).reshape(275, 224)
    Hm.save_heatmap(tmp_path / "x.png", h)
    back = Hm.load_heatmap(tmp_path / "x.png")
    assert back.dtype == np.uint8 and back.min() == 0 and back.max() == 255
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def _fold_set(folder, nets=("N1", "N2"), folds=(1, 2), skip=()):
    rng = np.random.default_rng(5)
    for n in nets:
        for f in folds:
            for e in EXPR:
                if (n, f, e) not in skip:
                    write_gray(folder / Hm.heatmap_filename(e, n, f), rng.integers(0, 256, (275, 224), dtype=np.uint8))


def test_load_fold_heatmaps(tmp_path):
    _fold_set(tmp_path)
    (tmp_path / "notes.txt").write_text("ignored")
    hm = load_fold_heatmaps(tmp_path, EXPR)
    assert sorted(hm) == sorted((n, f, e) for n in ("N1", "N2") for f in (1, 2) for e in EXPR)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: None, "no such folder"),
        (lambda d: d.mkdir(), "no heatmaps named"),
        (lambda d: (d.mkdir(), _fold_set(d, skip={("N2", 2, "Disgust")})), "missing N2_CV2_Disgust_heatmap.png"),
        (lambda d: (d.mkdir(), _fold_set(d), (d / "N1_CV1_Anger_heatmap.png").write_text("not a png")),
         "N1_CV1_Anger_heatmap.png: not a readable image"),
        (lambda d: (d.mkdir(), _fold_set(d), write_gray(d / "N1_CV1_Anger_heatmap.png", np.zeros((10, 10), np.uint8))),
         "wrong size 10x10"),
        (lambda d: (d.mkdir(), _fold_set(d),
                    write_gray(d / "N1_CV2_Anger_heatmap.png", np.full((275, 224), 7, np.uint8))),
         "N1_CV2_Anger_heatmap.png: constant heatmap"),
    ],
    ids=["missing-folder", "empty-folder", "missing-fold", "not-an-image", "wrong-size", "constant"],
)
def test_bad_heatmap_sets(tmp_path, make, message):
    folder = tmp_path / "set"
    make(folder)
    with pytest.raises(FermapError, match=message):
        load_fold_heatmaps(folder, EXPR)


def test_as_unit_converts_each_stored_form_by_its_own_rule():
    from fermap_utils.heatmaps import as_unit, to_uint8

    f = np.linspace(0, 1, 11)
    assert np.abs(as_unit(to_uint8(f)) - f).max() <= 0.5 / 255  # uint8 back to [0, 1]: within half a level
    assert as_unit(np.array([True, False])).tolist() == [1.0, 0.0]
    for bad in (np.array([0.0, 2.0]), np.array([np.nan, 0.5]), np.array([-0.1, 0.5]), np.array([1, 2])):
        with pytest.raises(ValueError):
            as_unit(bad)
