"""The embedded default dataset as a ground-truth benchmark: the class signal lies where it was planted."""
import json

import cv2
import numpy as np
import pandas as pd
import pytest

from fermap_utils import synthetic as S
from fermap_utils.config import section
from fermap_utils.data import describe_dataset, load_dataset
from fermap_utils.errors import FermapError

EXPRESSIONS = list(section("paper")["expressions"])


@pytest.fixture(scope="module")
def faces():
    return S.base_faces()


def _render(faces, i, j, k=0, **overrides):
    params = {**section("synthetic"), **overrides}
    name, image, marks = faces[i]
    nuisance_rng, au_rng = S.sample_rngs(params["seed"], i, j, k)
    nuisance = S.draw_nuisance(nuisance_rng, params, params["size"])
    return S.render(image, marks, EXPRESSIONS[j], S.draw_intensities(EXPRESSIONS[j], au_rng, params), nuisance, params)


@pytest.mark.slow
def test_default_dataset_counts(default_dataset):
    ds = load_dataset(default_dataset)
    t = ds.table
    assert set(t.expression) == set(EXPRESSIONS)
    identities = int(S.read_base_screening().kept.sum())
    per_identity = 6 * section("synthetic")["samples_per_expression"]
    assert t.subject.nunique() == identities and len(t) == identities * per_identity
    assert ds.images.shape[1:] == (128, 128)
    assert (t.groupby("subject").fold.nunique() == 1).all()
    summary = json.loads((default_dataset / "summary.json").read_text())
    assert summary["synthetic"] is True and summary["skipped"] == {}
    assert "SYNTHETIC" in describe_dataset(default_dataset)


@pytest.mark.parametrize("i", [0, 1, 7, 42])
def test_changes_lie_inside_the_expressions_au_regions(faces, i):
    """Every pixel that differs from the neutral twin (same pose, light, noise) is inside the AU union + 3 px."""
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    for j in range(6):
        out = _render(faces, i, j)
        changed = out.image != out.neutral
        allowed = cv2.dilate(out.union.astype(np.uint8), disc).astype(bool)
        assert changed.sum() > 150, EXPRESSIONS[j]  # the expression did something
        assert not (changed & ~allowed).any(), f"{EXPRESSIONS[j]}: {(changed & ~allowed).sum()} px outside"


def test_neutral_twin_does_not_depend_on_the_class(faces):
    """Pose, light and noise come from a stream of their own: the neutral twins of two classes may differ
    only through that stream, and rendering the neutral twin never looks at the expression."""
    a, b = _render(faces, 3, 0), _render(faces, 3, 5)
    params = section("synthetic")
    rng, _ = S.sample_rngs(params["seed"], 3, 0, 0)
    nuisance = S.draw_nuisance(rng, params, params["size"])
    face, _ = S.posed_face(faces[3][1], faces[3][2], params["size"], nuisance)
    np.testing.assert_array_equal(a.neutral, S.light_and_noise(face, nuisance))
    assert not np.array_equal(a.image, b.image)


@pytest.mark.slow
def test_pixels_outside_the_au_regions_carry_no_class(default_dataset):
    """A classifier given only the pixels outside every AU region of the face (drawn over its neutral landmarks,
    so the mask does not depend on the class) scores within 3 points of chance; the same classifier given the
    pixels inside is far above it (so the test can tell)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from fermap_utils.landmarks import with_border_points
    from fermap_utils.masks import action_units, au_mask

    ds = load_dataset(default_dataset)
    neutral = np.load(default_dataset / "truth" / "neutral_landmarks.npy")
    every_au = sorted(action_units())
    outside = np.stack([~au_mask(every_au, with_border_points(lm, 128, 128), (128, 128)) for lm in neutral])
    assert 0.2 < outside.mean() < 0.8

    def accuracy(masks):
        x = np.stack([cv2.resize(np.where(m, im, 0).astype(np.float32), (24, 24), interpolation=cv2.INTER_AREA)
                      for m, im in zip(masks, ds.images)]).reshape(len(ds.images), -1)
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=400))
        return cross_val_score(model, x, ds.table.expression, groups=ds.table.subject, cv=GroupKFold(5)).mean()

    assert abs(accuracy(outside) - 1 / 6) <= 0.03
    assert accuracy(~outside) > 0.5


def test_deterministic_for_a_seed(tmp_path):
    first = S.generate(tmp_path / "a", progress=False, identities=3, samples_per_expression=1)
    second = S.generate(tmp_path / "b", progress=False, identities=3, samples_per_expression=1)
    files = sorted(p.relative_to(first.parent) for p in first.parent.rglob("*") if p.is_file())
    assert len(files) == 3 + 3 * 6 * 4  # manifest, aus, params; image, change map, two landmark files per image
    for rel in files:
        assert (first.parent / rel).read_bytes() == (second.parent / rel).read_bytes(), rel


@pytest.mark.slow
def test_stored_truth_matches_a_rerender(default_dataset, faces):
    """The dataset's change map of an image is |image - neutral twin| of that image, re-rendered here."""
    t = pd.read_csv(default_dataset / "records.csv", dtype={"subject": str})
    row = t[(t.subject == faces[7][0]) & (t.expression == "Fear") & t.source.str.endswith("Fear_1.png")].iloc[0]
    out = _render(faces, 7, EXPRESSIONS.index("Fear"), k=1)
    stored = cv2.imread(str(default_dataset / "truth" / row.image.split("/")[-1]), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(stored, out.change)
    np.testing.assert_array_equal(cv2.imread(str(default_dataset / row.image), cv2.IMREAD_UNCHANGED), out.image)


@pytest.mark.slow
def test_planted_maps_are_the_class_mean_of_warped_changes(default_dataset):
    from fermap_utils.warping import warp_to_standard

    ds = load_dataset(default_dataset)
    maps = S.load_planted_maps(default_dataset)
    assert set(maps) == set(EXPRESSIONS)
    idx = np.flatnonzero(ds.table.expression == "Happiness")[:5]
    changes = [cv2.imread(str(default_dataset / "truth" / ds.table.image[i].split("/")[-1]), cv2.IMREAD_UNCHANGED)
               for i in idx]
    mine = S.planted_maps(np.stack(changes), ds.landmarks[idx], np.array(["Happiness"] * 5))["Happiness"]
    expected = np.mean([warp_to_standard(c.astype(np.float32), ds.landmarks[i])[0] for c, i in zip(changes, idx)],
                       axis=0)
    np.testing.assert_allclose(mine, expected, atol=1e-4)
    # the jaw drops in Surprise, not in Anger; the forehead lines rise in Surprise, never in Happiness
    from fermap_utils.masks import au_mask

    chin = au_mask([26]) & ~au_mask([23])  # below the lips, which Anger presses
    assert maps["Surprise"][chin].mean() > 2 * maps["Anger"][chin].mean()
    regions = S.planted_regions(maps)
    assert (regions["Surprise"] & au_mask([1])).sum() > 1000 and not (regions["Happiness"] & au_mask([1])).any()


def test_mouth_opening_is_confined_between_the_lips_and_the_floor():
    face = np.tile(np.linspace(0, 255, 64, dtype=np.float32)[:, None], (1, 64))
    lm = np.zeros((68, 2))
    lm[60:68] = [[20, 30], [26, 30], [32, 30], [38, 30], [44, 30], [38, 30], [32, 30], [26, 30]]
    floor = np.array([[18, 45], [32, 46], [46, 45]], float)
    out, marks, inside = S.open_mouth(face, lm, 6.0, floor)
    changed = out != face
    assert inside[31:36, 32].all() and not inside[:, :20].any() and not inside[:, 45:].any()
    rows = np.flatnonzero(changed.any(axis=1))
    assert rows.min() >= 30 and rows.max() <= 46  # between the line and the floor
    assert marks[66, 1] > lm[66, 1] + 3 and marks[62, 1] == lm[62, 1]  # the lower lip drops, the upper stays


def test_jaw_drop_moves_the_chin_and_squeezes_only_below_it():
    """With a jaw, everything from the lips to the jaw moves down whole (chin and jaw landmarks
    included) and only the skin between the jaw and the floor is squeezed; without one, the jaw stays."""
    face = np.tile(np.linspace(0, 255, 96, dtype=np.float32)[:, None], (1, 96))
    lm = np.zeros((68, 2))
    lm[60:68] = [[20, 30], [26, 30], [32, 30], [38, 30], [44, 30], [38, 30], [32, 30], [26, 30]]
    lm[4:13] = np.c_[np.linspace(8, 56, 9), [50, 56, 60, 62, 63, 62, 60, 56, 50]]  # the jaw, chin at (32, 63)
    jaw, floor = lm[4:13], np.c_[lm[4:13, 0], lm[4:13, 1] + 20]
    out, marks, _ = S.open_mouth(face, lm, 6.0, floor, jaw=jaw)
    assert marks[8, 1] == pytest.approx(lm[8, 1] + 6.0)  # the chin moved by the whole opening
    np.testing.assert_allclose(out[50:57, 32], face[44:51, 32], atol=1e-3)  # shifted whole, not squeezed
    rows = np.flatnonzero((out != face).any(axis=1))
    assert rows.min() >= 30 and rows.max() <= 83  # between the line and the floor
    _, still, _ = S.open_mouth(face, lm, 6.0, lm[[48, 59, 58, 57, 56, 55, 54]] + [0, 8])
    np.testing.assert_array_equal(still[4:13], lm[4:13])


def test_the_warp_never_folds_and_is_the_identity_where_nothing_moves():
    """A large displacement inside a small support folds a direct backward warp (Jacobian < 0);
    its exponential (scaling and squaring) does not, and is exactly zero away from the support."""
    size = 64
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    support = np.clip(1 - np.hypot(xs - 32, ys - 32) / 10, 0, 1) ** 2
    field = np.stack([np.zeros_like(support), 15 * support], axis=-1).astype(np.float32)

    def jacobian(u):
        dxy, dxx = np.gradient(u[..., 0])
        dyy, dyx = np.gradient(u[..., 1])
        return (1 + dxx) * (1 + dyy) - dxy * dyx

    assert jacobian(-field).min() < 0  # the direct warp folds
    backward = S.exponential_map(-field)
    assert jacobian(backward).min() > 0
    far = np.hypot(xs - 32, ys - 32) > 12
    assert not backward[far].any()
    np.testing.assert_allclose(S.exponential_map(np.full((size, size, 2), 0.5, np.float32))[20:40, 20:40], 0.5,
                               atol=1e-5)  # a constant velocity is a translation by itself
    assert S.area_change(backward)[30:34, 30:34].mean() != pytest.approx(1.0)


def test_screening_drops_smiles_surprise_and_parted_lips():
    lm = np.zeros((68, 2))
    lm[48], lm[54] = [40, 100], [80, 100]  # corners (49, 55): width 40
    lm[51], lm[57] = [60, 96], [60, 108]
    lm[[61, 62, 63]], lm[[67, 66, 65]] = [[50, 100], [60, 100], [70, 100]], [[50, 101], [60, 101], [70, 101]]
    parted = lm.copy()
    parted[[67, 66, 65], 1] = 110  # a 10-px gap: a quarter of the width
    classes = ("Happiness", "Surprise", "Neutral")
    probs = np.array([[0.1, 0.1, 0.8], [0.6, 0.1, 0.3], [0.1, 0.5, 0.4], [0.1, 0.1, 0.8]])
    table = S.screen_base_faces(["calm", "smiling", "surprised", "open"], np.stack([lm, lm, lm, parted]), probs,
                                {"max_p": {"Happiness": 0.5, "Surprise": 0.5}, "max_mouth_open": 0.2}, classes)
    assert table.kept.tolist() == [True, False, False, False]
    assert table.mouth_open.tolist() == pytest.approx([0.025, 0.025, 0.025, 0.25])
    assert "Happiness" in table.reason[1] and "Surprise" in table.reason[2] and "lips parted" in table.reason[3]
    assert table.verdict.tolist() == ["Neutral", "Happiness", "Surprise", "Neutral"]


def test_the_shipped_screening_is_what_the_rule_gives(faces):
    """base_faces.csv (shipped, so every machine builds the same set) agrees with a fresh screening wherever
    a face is not within round-off of a threshold; at least 50 identities remain; the smiling astronaut is out."""
    from fermap_utils.models import FER2013_CLASSES, fer2013_seven_way

    shipped = S.read_base_screening()
    every = S.neutral_faces()
    assert shipped.identity.tolist() == [n for n, _, _ in every]
    params = section("synthetic")
    crops, marks = S.base_crops(every, params["size"])
    fresh = S.screen_base_faces([n for n, _, _ in every], marks, fer2013_seven_way(crops), params["screen"],
                                FER2013_CLASSES)
    rule = params["screen"]
    near = np.abs(fresh.mouth_open - rule["max_mouth_open"]) < 0.01
    for name, limit in rule["max_p"].items():
        near |= np.abs(fresh[f"p_{name}"] - limit) < 0.02
    assert (fresh.kept[~near] == shipped.kept[~near]).all()
    assert shipped.kept.sum() >= 50 and len(faces) == shipped.kept.sum()
    assert not shipped.set_index("identity").kept["astronaut"]


def test_sharpness_and_edge_ratio_tell_a_drawn_glyph_from_shading():
    """detail_sigma inverts a blurred edge; a flat black polygon drawn on a textured face has edges far
    steeper than the face's own, the same change as soft shading of the face's texture does not."""
    step = np.zeros((96, 96), np.float32)
    step[:, 48:] = 100
    assert S.detail_sigma(cv2.GaussianBlur(step, (0, 0), 2.0)) == pytest.approx(2.0, abs=0.2)
    rng = np.random.default_rng(0)
    neutral = 128 + 40 * cv2.GaussianBlur(rng.normal(size=(128, 128)).astype(np.float32), (0, 0), 2.0)
    neutral = np.clip(neutral * 3 - 256, 20, 235).astype(np.float32)
    mask = np.zeros((128, 128), np.float32)
    cv2.rectangle(mask, (44, 80), (84, 96), 1.0, -1)
    region, face = cv2.dilate(mask, np.ones((7, 7))) > 0, np.ones((128, 128), bool)
    drawn = np.where(mask > 0, 15.0, neutral)
    shaded = neutral * (1 - 0.5 * cv2.GaussianBlur(mask, (0, 0), 2.5))
    assert S.edge_ratio(drawn, neutral, region, face) > 2.0
    assert S.edge_ratio(shaded, neutral, region, face) < 1.0


def test_rendered_changes_are_no_glyphs(faces):
    """The renderer's changes have edges far less steep than drawn shapes: the drawn renderer it replaced
    measured a median of 2.4 on this ratio, flat polygons about 3 (benchmarks/realism.py prints it for the
    whole set)."""
    params = section("synthetic")
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    ratios = []
    for i in (0, 5, 20, 40):
        for j, expr in enumerate(EXPRESSIONS):
            nuisance_rng, au_rng = S.sample_rngs(params["seed"], i, j, 0)
            nuisance = S.draw_nuisance(nuisance_rng, params, params["size"])
            face, lm = S.posed_face(faces[i][1], faces[i][2], params["size"], nuisance)
            expressive, _, union = S.apply_expression(face, lm, expr, S.draw_intensities(expr, au_rng, params), params)
            region = cv2.dilate(union.astype(np.uint8), disc).astype(bool)
            ratios.append(S.edge_ratio(expressive, face, region, S.face_hull(lm, params["size"])))
    assert np.median(ratios) < 1.8


def test_synthetic_params_merge_overrides_and_refuse_unknown_names():
    params = S.synthetic_params({"appearance_gain": 9.0})
    assert params["appearance_gain"] == 9.0
    assert {k: v for k, v in params.items() if k != "appearance_gain"} == \
        {k: v for k, v in section("synthetic").items() if k != "appearance_gain"}
    with pytest.raises(FermapError, match="apperance_gain"):
        S.synthetic_params({"apperance_gain": 9.0})
    with pytest.raises(FermapError, match="apperance_gain"):
        S.generate(progress=False, identities=1, apperance_gain=9.0)
