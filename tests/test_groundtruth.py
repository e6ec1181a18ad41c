"""Grading heatmaps against the planted truth, checked against the definitions computed here."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from fermap_utils import groundtruth as G

SHAPE = (275, 224)


def _disc(cx, cy, r):
    yy, xx = np.mgrid[0:SHAPE[0], 0:SHAPE[1]]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2


def test_grade_heatmap_against_the_definitions():
    region = _disc(100, 120, 30)
    planted = region * 40.0 + _disc(100, 120, 10) * 60.0  # a stronger core inside the region
    off = _disc(170, 60, 30).astype(float)                 # a heatmap that misses the region entirely
    half = np.where(_disc(70, 120, 30), 1.0, 0.0)         # overlaps part of it
    perfect = G.grade_heatmap(region.astype(float), region, planted)
    assert perfect["iou"] == perfect["f1"] == perfect["roc_auc"] == 1.0
    miss = G.grade_heatmap(off, region, planted)
    assert miss["iou"] == 0.0 and miss["roc_auc"] < 0.5 and miss["ncc"] < 0
    part = G.grade_heatmap(half, region, planted)
    pred = half > 0.5
    inter, union = (pred & region).sum(), (pred | region).sum()
    assert part["iou"] == pytest.approx(inter / union, abs=1e-9)
    assert part["precision"] == pytest.approx(inter / pred.sum(), abs=1e-9)
    assert part["recall"] == pytest.approx(inter / region.sum(), abs=1e-9)
    assert part["roc_auc"] == pytest.approx(roc_auc_score(region.ravel(), half.ravel()))
    expected_ncc = np.corrcoef(half.ravel(), planted.ravel())[0, 1]
    assert part["ncc"] == pytest.approx(expected_ncc, abs=1e-6)
    assert G.grade_heatmap(planted / planted.max(), region, planted)["ncc"] == pytest.approx(1.0, abs=1e-6)


def test_grade_heatmaps_and_summaries():
    regions = {"Happiness": _disc(100, 200, 25), "Surprise": _disc(110, 60, 40)}
    planted = {e: r * 10.0 for e, r in regions.items()}
    masks = {"Happiness": _disc(100, 190, 40), "Surprise": _disc(110, 60, 20)}
    maps = {("A", "Happiness"): regions["Happiness"] * 1.0, ("A", "Surprise"): regions["Happiness"] * 1.0,
            ("B", "Happiness"): masks["Happiness"] * 1.0, ("B", "Contempt"): masks["Happiness"] * 1.0}
    grades = G.grade_heatmaps(maps, regions, planted, masks)
    assert len(grades) == 6  # Contempt has no truth: left out
    a = grades.set_index(["network", "expression", "truth"])
    assert a.loc[("A", "Happiness", "planted"), "iou"] == 1.0
    assert a.loc[("A", "Surprise", "planted"), "iou"] == 0.0
    assert a.loc[("B", "Happiness", "Ekman"), "iou"] == 1.0 and np.isnan(a.loc[("B", "Happiness", "Ekman"), "ncc"])
    grades.insert(0, "method", "lime")
    table = G.summarise_grades(grades, ["method", "truth"])
    assert table.loc[("lime", "planted"), "n"] == 3
    assert table.loc[("lime", "planted"), "iou"] == pytest.approx(grades[grades.truth == "planted"].iou.mean())


def test_masks_against_truth_takes_the_planted_region_as_ground_truth():
    regions = {"Fear": _disc(100, 100, 20)}
    masks = {"Fear": _disc(100, 100, 40)}  # covers the region and more: full recall, low precision
    row = G.masks_against_truth(masks, regions).loc["Fear"]
    assert row["recall"] == 1.0
    assert row["precision"] == pytest.approx(regions["Fear"].sum() / masks["Fear"].sum())


def test_accuracy_against_truth_is_a_rank_correlation_per_method():
    grades = pd.DataFrame({"method": ["lime"] * 4 + ["cam"] * 4, "network": list("abcd") * 2,
                           "truth": "planted", "roc_auc": [0.6, 0.7, 0.8, 0.9, 0.9, 0.8, 0.7, 0.6]})
    acc = pd.Series({"a": 0.5, "b": 0.6, "c": 0.7, "d": 0.8})
    out = G.accuracy_against_truth(grades, acc)
    assert out.loc["lime", "r"] == pytest.approx(1.0) and out.loc["cam", "r"] == pytest.approx(-1.0)
    assert out.loc["lime", "p_value"] == pytest.approx(2 / 24)  # exact: 2 of the 24 orderings are as extreme
    assert out.loc["lime", "n"] == 4


@pytest.mark.slow
def test_grade_run_on_the_default_dataset_truth(default_dataset, tmp_path):
    """grade_run reads a run's planted maps and heatmaps; an explainer without heatmaps is named, not skipped."""
    from fermap_utils.heatmaps import heatmap_filename, save_heatmap
    from fermap_utils.masks import ekman_masks
    from fermap_utils.synthetic import load_planted_maps, planted_regions

    run = _run_with_truths(default_dataset, tmp_path / "run")
    planted = load_planted_maps(run / "data")
    for e, m in planted.items():  # a network whose heatmaps are the planted maps themselves
        save_heatmap(run / "heatmaps" / "heatmaps_by_net" / heatmap_filename(e, "Oracle"), m / m.max())
    grades = G.grade_run(run, ["lime", "cam"], ekman_masks())
    assert "cam" in grades.attrs["missing"]
    truth = grades[grades.truth == "planted"]
    assert len(truth) == 6 and (truth.ncc > 0.99).all() and (truth.roc_auc > 0.99).all()
    regions = planted_regions(planted)
    assert set(truth.expression) == set(regions)


def _run_with_truths(default_dataset, run):
    """A run folder with the dataset's truths: its planted maps and its discriminative maps, computed once
    from the images into the dataset's cache and copied with the records and landmarks they are keyed by."""
    import shutil

    G.load_discriminative_maps(default_dataset, progress=False)
    shutil.copytree(default_dataset / "planted", run / "data" / "planted")
    for name in ("records.csv", "landmarks.npy"):
        shutil.copy(default_dataset / name, run / "data" / name)
    return run


def _oracle_run(default_dataset, tmp_path, transform):
    """A run folder whose by-network heatmaps are ``transform(planted map in [0, 1])``, saved as a run saves them."""
    from fermap_utils.heatmaps import heatmap_filename, save_heatmap
    from fermap_utils.synthetic import load_planted_maps

    run = _run_with_truths(default_dataset, tmp_path / "run")
    planted = load_planted_maps(run / "data")
    for i, (e, m) in enumerate(sorted(planted.items())):
        save_heatmap(run / "heatmaps" / "heatmaps_by_net" / heatmap_filename(e, "Oracle"), transform(m / m.max(), i))
    return run, planted


@pytest.mark.slow
def test_grading_a_stored_oracle_equals_grading_the_float_map(default_dataset, tmp_path):
    """The planted map stored as uint8 (as a run stores it) scores as the float map graded directly.

    Before grading normalised its input, a uint8 map was multiplied by 255 and wrapped around.
    """
    from fermap_utils.heatmaps import to_uint8
    from fermap_utils.masks import ekman_masks
    from fermap_utils.metrics import score_heatmap
    from fermap_utils.synthetic import planted_regions

    run, planted = _oracle_run(default_dataset, tmp_path, lambda m, i: m)
    regions = planted_regions(planted)
    grades = G.grade_run(run, ["lime"], ekman_masks()).set_index(["expression", "truth"])
    for e, m in planted.items():
        direct = G.grade_heatmap(m / m.max(), regions[e], m)
        stored = grades.loc[(e, "planted")]
        for k in ("iou", "f1", "precision", "recall"):
            assert stored[k] == pytest.approx(direct[k], abs=1e-12), (e, k)
        # and the Otsu path computed here, from the definition: threshold the 8-bit map, compare sets
        assert stored["iou"] == pytest.approx(score_heatmap(to_uint8(m / m.max()), regions[e])["iou"], abs=1e-12)
        assert stored["roc_auc"] == pytest.approx(roc_auc_score(regions[e].ravel(), to_uint8(m / m.max()).ravel()))


@pytest.mark.slow
def test_random_smooth_maps_score_at_chance_and_the_inverted_truth_below(default_dataset, tmp_path):
    """Controls through the same path: random smooth maps at chance (ROC-AUC near 0.5), the inverted truth below."""
    from scipy.ndimage import gaussian_filter

    from fermap_utils.masks import ekman_masks

    aucs, ious = [], []
    for draw in range(5):
        def smooth(m, i, draw=draw):
            field = gaussian_filter(np.random.default_rng(100 * draw + i).normal(size=m.shape), 12)
            return (field - field.min()) / (field.max() - field.min())
        run, _ = _oracle_run(default_dataset, tmp_path / f"r{draw}", smooth)
        g = G.grade_run(run, ["lime"], ekman_masks())
        g = g[g.truth == "planted"]
        aucs += list(g.roc_auc)
        ious += list(g.iou)
    assert len(aucs) == 30
    assert abs(np.mean(aucs) - 0.5) < 0.1  # 30 maps: the mean's standard error is about 0.03
    inverted, _ = _oracle_run(default_dataset, tmp_path / "inv", lambda m, i: 1.0 - m)
    g = G.grade_run(inverted, ["lime"], ekman_masks())
    g = g[g.truth == "planted"]
    assert (g.roc_auc < 0.5).all()
    assert g.iou.mean() < np.mean(ious)


def test_grade_heatmap_refuses_a_float_map_outside_the_unit_range():
    region = _disc(100, 120, 30)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        G.grade_heatmap(region * 255.0, region, region * 1.0)


def test_chance_rows_score_what_no_explainer_would():
    """Random smooth maps sit at chance (ROC-AUC 0.5); a class's own mask, when it is the planted
    region, scores as the truth; the smoothness of the random maps is matched to the heatmaps'."""
    shape = (275, 224)
    region = np.zeros(shape, bool)
    region[100:180, 60:160] = True
    planted = region.astype(float) * 10.0
    out = G.chance_rows({"Anger": region}, {"Anger": planted}, {"Anger": region}, sigma=8.0, n=20, seed=1,
                        mean_face=np.tile(np.linspace(0, 1, shape[1]), (shape[0], 1)))
    rows = out.set_index("baseline")
    assert set(rows.index) == {"random smooth (sigma 8 px)", "centred Gaussian", "mean-face edges", "Ekman mask"}
    assert abs(rows.loc["random smooth (sigma 8 px)", "roc_auc"] - 0.5) < 0.1
    assert rows.loc["Ekman mask", "iou"] == 1.0 and rows.loc["Ekman mask", "roc_auc"] == 1.0
    assert rows.loc["centred Gaussian", "roc_auc"] > 0.5  # the region is central: a centre bias scores
    rng = np.random.default_rng(5)
    smooth = [G.smooth_noise(shape, 8.0, rng) for _ in range(3)]
    assert G.matched_smoothness(smooth) == 8.0
    assert G.matched_smoothness([G.smooth_noise(shape, 2.0, rng)]) == 2.0
    assert np.isnan(G.roughness(np.zeros(shape)))


def test_discriminative_maps_on_a_hand_made_case():
    """Two identities, three classes; class A alone adds a patch of height p. Known by construction:

    - without nuisance (two identical images per class): D_A = p on the patch, D_B = D_C = p / 2 (one of
      their two other classes differs), 0 elsewhere;
    - with a nuisance offset, 0 in m images of each class and 2a in m others (alike in every class): the
      between-class mean over all pairs of |p + n - n'| is p on the patch (p > 2a) and a elsewhere; the
      within-class mean over distinct pairs is 2a m / (2m - 1) (m^2 of the m(2m - 1) pairs differ by 2a).
      So D = a - 2a m / (2m - 1) elsewhere (-> 0, nuisance alone) and p - 2a m / (2m - 1) on the patch for A.
    """
    rng = np.random.default_rng(0)
    shape, p, a, m = (6, 7), 10.0, 2.0, 15
    patch = np.zeros(shape)
    patch[1:3, 2:5] = p
    faces = {s: rng.uniform(50, 200, shape) for s in ("ann", "bob")}
    within = 2 * a * m / (2 * m - 1)
    for offsets, off_patch, on_patch in (((0.0, 0.0), 0.0, p), ((0.0,) * m + (2 * a,) * m, a - within, p - within)):
        images, subjects, classes = [], [], []
        for s, face in faces.items():
            for c in ("A", "B", "C"):
                for off in offsets:
                    images.append(face + off + (patch if c == "A" else 0.0))
                    subjects.append(s)
                    classes.append(c)
        d = G.discriminative_maps(np.array(images), np.array(subjects), np.array(classes))
        assert set(d) == {"A", "B", "C"}
        on = patch > 0
        np.testing.assert_allclose(d["A"][on], on_patch, atol=1e-4)
        # B against A differs on the patch, B against C does not: the mean of the two
        np.testing.assert_allclose(d["B"][on], (on_patch + off_patch) / 2, atol=1e-4)
        np.testing.assert_allclose(d["C"][on], (on_patch + off_patch) / 2, atol=1e-4)
        for c in "ABC":
            np.testing.assert_allclose(d[c][~on], off_patch, atol=1e-4)


def test_discriminative_maps_need_every_class_twice_per_identity():
    from fermap_utils.errors import FermapError

    images = np.zeros((5, 3, 3))
    with pytest.raises(FermapError, match="at least twice"):
        G.discriminative_maps(images, np.array(["a"] * 5), np.array(["A", "A", "B", "B", "C"]))


def test_grade_heatmaps_grades_against_the_discriminative_truth():
    regions = {"Happiness": _disc(100, 200, 25)}
    planted = {"Happiness": regions["Happiness"] * 10.0}
    discriminative = {"Happiness": _disc(100, 230, 20) * 5.0}  # the mouth, say: another place than planted
    grades = G.grade_heatmaps({("A", "Happiness"): discriminative["Happiness"] / 5.0}, regions, planted,
                              _square_like(regions), discriminative).set_index("truth")
    assert list(grades.index) == ["planted", "discriminative", "Ekman"]
    assert grades.loc["discriminative", "iou"] == 1.0 and grades.loc["discriminative", "ncc"] == pytest.approx(1.0)
    assert grades.loc["planted", "iou"] < 1.0


def _square_like(regions):
    return {e: np.ones_like(r) for e, r in regions.items()}


@pytest.mark.slow
def test_discriminative_truth_of_a_run_end_to_end(default_dataset, tmp_path):
    """Through a run folder: the maps computed from the stored images equal the definition computed here by
    loops (class Fear), are cached, and the discriminative maps stored as a run stores heatmaps score as that
    truth (oracle)."""
    import shutil

    import cv2

    from fermap_utils.heatmaps import heatmap_filename, save_heatmap
    from fermap_utils.layout import discriminative_file
    from fermap_utils.masks import ekman_masks
    from fermap_utils.warping import warp_to_standard

    run = tmp_path / "run"
    shutil.copytree(default_dataset, run / "data")
    discriminative_file(run / "data").unlink(missing_ok=True)  # computed here, from the run's images
    maps = G.load_discriminative_maps(run / "data", progress=False)
    assert discriminative_file(run / "data").is_file()
    table = pd.read_csv(run / "data" / "records.csv", dtype={"subject": str})
    marks = np.load(run / "data" / "landmarks.npy")
    per_identity = []
    for _, group in table.groupby("subject"):
        x = {}
        for i in group.index:
            img = cv2.imread(str(run / "data" / table.image[i]), cv2.IMREAD_UNCHANGED).astype(np.float32)
            x.setdefault(table.expression[i], []).append(warp_to_standard(img, marks[i])[0].astype(np.float64))
        within = {c: np.mean([np.abs(u - v) for j, u in enumerate(v_) for v in v_[j + 1:]], axis=0)
                  for c, v_ in x.items()}
        per_identity.append(np.mean([np.mean([np.abs(u - v) for u in x["Fear"] for v in x[c]], axis=0)
                                     - within["Fear"] / 2 - within[c] / 2 for c in x if c != "Fear"], axis=0))
    np.testing.assert_allclose(maps["Fear"], np.mean(per_identity, axis=0), atol=1e-3)
    for e, m in maps.items():  # the discriminative maps, brought to [0, 1], as an oracle network's heatmaps
        save_heatmap(run / "heatmaps" / "heatmaps_by_net" / heatmap_filename(e, "Oracle"),
                     (m - m.min()) / (m.max() - m.min()))
    grades = G.grade_run(run, ["lime"], ekman_masks())
    truth = grades[grades.truth == "discriminative"]
    assert len(truth) == 6 and (truth.ncc > 0.99).all() and (truth.roc_auc > 0.99).all()


@pytest.mark.slow
def test_grading_images_one_by_one_oracle_and_noise_on_the_same_images(default_dataset, tmp_path):
    """grade_images through a run folder: an explainer whose every image's map is its class's planted map
    (stored as a run stores explanations, at another scale) scores that truth per image; an explainer of
    random smooth maps scores at chance; misclassified images are marked; the two pair on the same images and
    the paired comparison finds the oracle ahead."""
    from scipy.ndimage import gaussian_filter

    from fermap_utils.config import expressions
    from fermap_utils.explanations import save_class_explanations
    from fermap_utils.layout import class_file, predictions_file
    from fermap_utils.statistics import pairwise_comparisons
    from fermap_utils.synthetic import load_planted_maps, planted_regions

    run = _run_with_truths(default_dataset, tmp_path / "run")
    planted = load_planted_maps(run / "data")
    names = list(expressions())
    rng = np.random.default_rng(0)
    ids = {e: [f"{c}{k}" for k in range(4)] for c, e in enumerate(names)}
    truth_rows = [{"id": i, "true": (c + 1) % 6 if k == 0 else c, "pred": c}  # each class's first is wrong
                  for c, e in enumerate(names) for k, i in enumerate(ids[e])]
    predictions_file(run, "Net", 1).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(truth_rows).to_csv(predictions_file(run, "Net", 1), index=False)
    for e in names:
        oracle = np.stack([37.0 * planted[e]] * 4)
        noise = np.stack([gaussian_filter(rng.normal(size=SHAPE), 12) for _ in range(4)])
        if e == names[0]:
            noise[1] = 0.0  # a map with nothing in it (Grad-CAM's ReLU of all-negative evidence)
        save_class_explanations(class_file(run, "Net", 1, e, "lime"), "k", np.array(ids[e]), oracle)
        save_class_explanations(class_file(run, "Net", 1, e, "gradcam"), "k", np.array(ids[e][:2]), noise[:2])
    graded = G.grade_images(run, ["lime", "gradcam", "cam"], progress=False)
    assert "cam" in graded.attrs["missing"]
    regions = planted_regions(planted)
    lime = graded[(graded.method == "lime") & (graded.truth == "planted")]
    assert len(lime) == 24 and lime.correct.sum() == 18
    for row in lime.itertuples():
        direct = G.grade_heatmap(planted[row.expression] / planted[row.expression].max(), regions[row.expression],
                                 planted[row.expression])
        for k in ("roc_auc", "iou", "f1", "ncc"):
            assert getattr(row, k) == pytest.approx(direct[k], abs=2e-3), (row.expression, k)
    noise = graded[(graded.method == "gradcam") & (graded.truth == "planted")]
    assert len(noise) == 12 and abs(noise.roc_auc.mean() - 0.5) < 0.15
    flat = graded[graded.constant]  # graded as the chance it is, against both truths, not dropped
    assert list(flat.id) == [ids[names[0]][1]] * 2 and (flat.roc_auc == 0.5).all() and (flat.iou == 0).all()
    assert flat.ncc.isna().all() and not graded[~graded.constant].ncc.isna().any()
    wide = G.same_image_table(graded, "planted")
    assert len(wide) == 18 and wide.gradcam.notna().sum() == 6  # the first image of each class is misclassified
    pair = pairwise_comparisons(wide).iloc[0]
    assert (pair.a, pair.b, pair.n) == ("lime", "gradcam", 6) and pair.difference > 0.2


@pytest.mark.parametrize("value", [0, 255, 0.0, 0.7])
def test_a_constant_map_is_graded_as_no_evidence(value):
    """One value everywhere (uint8 or float, any level): nothing selected, ROC-AUC 0.5, NCC undefined,
    marked; never an error, never a score that depends on the value."""
    rng = np.random.default_rng(1)
    region = np.zeros(SHAPE, bool)
    region[100:160, 60:160] = True
    truth = rng.random(SHAPE)
    heatmap = np.full(SHAPE, value, np.uint8 if isinstance(value, int) else np.float64)
    got = G.grade_image(heatmap, region, truth)
    assert got["constant"] and got["roc_auc"] == 0.5 and np.isnan(got["ncc"])
    assert got["iou"] == got["f1"] == got["recall"] == 0.0
    # The class-average path follows the same rule (before, a non-zero constant selected the whole face).
    averaged = G.grade_heatmap(heatmap, region, truth)
    assert np.isnan(averaged["ncc"]) and averaged["roc_auc"] == 0.5
    assert {k: averaged[k] for k in ("iou", "f1", "precision", "recall")} == \
        {k: got[k] for k in ("iou", "f1", "precision", "recall")}
    varied = heatmap.astype(np.float64) * 0 + region * 0.5
    assert not G.grade_image(varied, region, truth)["constant"]
