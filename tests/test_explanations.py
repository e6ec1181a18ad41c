"""The run's explain stage (fermap explain): which images, every method through one pipeline, the
cache, the heatmaps it writes; and the statistics on its explanations."""
import json
from pathlib import Path

import numpy as np
import pytest

from fermap_utils import explainers, layout, sanity
from fermap_utils import explanations as E
from fermap_utils import statistics as S
from fermap_utils.config import expressions
from fermap_utils.heatmaps import heatmap_filename
from fermap_utils.lime import LimeSettings
from fermap_utils.rundata import load_results


def test_choose_images_by_predicted_class():
    predicted = np.array([0] * 10 + [1] * 2 + [3] * 5)
    chosen = E.choose_images(predicted, 4, seed=0)
    assert len(chosen[0]) == 4 and (predicted[chosen[0]] == 0).all()
    assert len(chosen[1]) == 2 and len(chosen[2]) == 0
    again = E.choose_images(predicted, 4, seed=0)
    assert all(np.array_equal(chosen[c], again[c]) for c in chosen)


@pytest.fixture(scope="module")
def explained_run(small_run, tmp_path_factory):
    """A copy of the small run, with WeiNet (32 px, 1 epoch) and FER2013 on fold 1, explained cheaply."""
    import shutil

    from fermap_utils import training as T
    from fermap_utils.profiles import profile, record_profile

    run = tmp_path_factory.mktemp("explained") / "run"
    shutil.copytree(small_run / "data", run / "data")
    prof = profile("smoke", {"networks": ["WeiNet", "FER2013"], "input_size": 32, "folds": 1,
                               "epochs_scale": 0.1, "explain": {"images_per_class": 2, "num_samples": 60,
                                                                "batch_size": 100, "seed": 0}})
    record_profile(run, prof)
    T.train_run(run, prof, progress=False)
    table = E.explain_run(run, progress=False)
    return run, prof, table


def _stamps(run):
    return {p.relative_to(run): p.stat().st_mtime_ns for p in sorted((run / "explanations").rglob("*.npz"))}


@pytest.mark.slow
def test_explain_run_writes_heatmaps_the_scorer_reads(explained_run):
    import json

    from fermap_utils.config import paper
    from fermap_utils.scoring import score_folder

    run, prof, table = explained_run
    assert set(table.network) == {"WeiNet", "FER2013"} and (table.images <= 2).all()
    summary = json.loads((run / "heatmaps" / "summary.json").read_text())
    assert summary["explanations"] == int(table.images.sum()) > 0
    written = {p.name for p in (run / "heatmaps" / "heatmaps_by_cv").iterdir()}
    groups = {f"{r.network}_CV{r.fold}_{r.expression}_heatmap.png": r.images for r in table.itertuples()}
    missing = {Path(m).name for m in summary["missing"] if m.startswith("heatmaps_by_cv")}
    assert written | missing == set(groups) and not written & missing  # every group: a heatmap, or listed
    assert all(name in missing for name, n in groups.items() if n == 0)
    assert written
    assert (run / "heatmaps" / "heatmaps_total").is_dir()
    grid = {f"{n}_CV{k}_{e}_heatmap.png" for n in set(table.network) for k in set(table.fold)
            for e in paper()["expressions"]}
    if written < grid:  # scoring what exists must say what it lacks
        with pytest.warns(RuntimeWarning, match="incomplete heatmap set"):
            scores = score_folder(run / "heatmaps" / "heatmaps_by_cv", allow_missing=True)
    else:
        scores = score_folder(run / "heatmaps" / "heatmaps_by_cv", allow_missing=True)
    assert {"WeiNet", "FER2013"} <= set(scores.network)
    shapes = []
    for path in sorted((run / "explanations").rglob("*.npz")):
        with np.load(path) as f:
            assert f["sum"].shape == (275, 224)
            if len(f["segments"]):  # a class no image was predicted as keeps an empty stack
                shapes.append(f["segments"].shape[1:])
    assert shapes and set(shapes) <= {(32, 32), (64, 64)}


@pytest.mark.slow
def test_explain_run_caches_resumes_and_recomputes_what_changed(explained_run, tmp_path):
    import shutil

    run, prof, _ = explained_run
    run = Path(shutil.copytree(run, tmp_path / "run"))  # its own copy: the other tests see the fixture's run
    before = _stamps(run)
    E.explain_run(run, progress=False)
    assert _stamps(run) == before  # same parameters: nothing recomputed
    victim = next(iter(before))
    (run / victim).unlink()  # an interrupted run: one class never written
    E.explain_run(run, progress=False)
    after = _stamps(run)
    assert [k for k in before if after[k] != before[k]] == [victim]
    from fermap_utils.profiles import apply_overrides

    E.explain_run(run, apply_overrides(prof, {"explain.num_samples": 40}), progress=False)
    changed = _stamps(run)
    assert all(changed[k] != after[k] for k in after)  # a LIME setting changed: everything redone


@pytest.mark.slow
def test_explain_run_other_methods_use_the_same_pipeline(explained_run):
    run, prof, _ = explained_run
    table = E.explain_run(run, prof, progress=False, method="cam")
    wei = table[table.network == "WeiNet"]
    assert (wei.images == 0).all() and "global-average-pooling" in wei.note.iloc[0]  # said, not skipped silently
    maps = E.load_run_heatmaps(run, "cam")
    assert {n for n, _ in E.network_heatmaps(maps)} == {"FER2013"}
    grad = E.explain_run(run, prof, progress=False, method="gradcam")
    # Grad-CAM needs no GAP head: both networks, on the very images LIME explained (chosen by prediction)
    lime = E.explain_run(run, prof, progress=False)
    key = ["network", "fold", "expression"]
    assert grad.set_index(key).images.to_dict() == lime.set_index(key).images.to_dict()
    assert set(grad[grad.images > 0].network) == {"WeiNet", "FER2013"}
    with pytest.raises(Exception, match="unknown explanation method"):
        E.explain_run(run, prof, progress=False, method="shap")


@pytest.mark.slow
def test_explain_run_records_the_achieved_extremal_areas(explained_run):
    from fermap_utils.profiles import apply_overrides

    run, prof, _ = explained_run
    prof = apply_overrides(prof, {"explain.extremal_images_per_class": 1, "explain.extremal_steps": 60})
    table = E.explain_run(run, prof, progress=False, method="extremal")
    areas = E.load_details(run, "extremal")
    assert len(areas) == 2 * int(table.images.sum()) > 0  # one row per image and target area
    assert set(areas.area_target) == {0.1, 0.2} and set(areas.network) <= {"WeiNet", "FER2013"}
    assert (np.abs(areas.area_achieved - areas.area_target) <= 0.05).all(), areas
    assert areas.groupby(["network", "fold", "expression", "id"]).size().eq(2).all()


@pytest.mark.slow
def test_sanity_check_compares_trained_and_randomised_weights(explained_run):
    run, prof, _ = explained_run
    # LIME: Grad-CAM on the randomised FER2013 network segfaults inside TensorFlow (also before this change)
    check = sanity.sanity_check(run, "FER2013", 1, prof, method="lime", per_class=2)
    table = check.scores
    assert set(table.model) == {"trained", "random weights"}
    per_model = table.groupby("model").expression.apply(sorted)
    assert per_model["trained"] == per_model["random weights"]  # compared on the same expressions
    # every expression is either compared or reported as dropped, with its reason
    assert set(table.expression) | set(check.dropped) == set(expressions())
    assert not set(table.expression) & set(check.dropped) and all(check.dropped.values())
    # the randomised network explains differently (Adebayo et al.: a faithful explanation depends on the weights)
    assert list(check.similarity.index) == sorted(set(table.expression), key=list(table.expression).index)
    assert (check.similarity["rank correlation"] < 0.99).all()


@pytest.mark.slow
def test_per_image_explanations_rebuild_the_cached_heatmap(explained_run):
    from fermap_utils.heatmaps import heatmap, load_heatmap, to_uint8
    from fermap_utils.masks import ekman_masks

    run, _, table = explained_run
    row = table[(table.images >= 2) & (table.network == "FER2013")].iloc[0]
    stack = E.load_standardised(run, row.network, int(row.fold), row.expression)
    assert len(stack) == row.images
    cached = load_heatmap(run / "heatmaps" / "heatmaps_by_cv"
                          / f"{row.network}_CV{row.fold}_{row.expression}_heatmap.png")
    assert np.abs(to_uint8(heatmap(stack)).astype(int) - cached.astype(int)).max() <= 1
    authors = E.load_standardised(run, row.network, int(row.fold), row.expression,
                                  settings=LimeSettings(explanation_dtype="uint8", warp_interpolation="nearest"))
    assert authors.shape == stack.shape and np.array_equal(np.unique(authors), np.unique(np.rint(authors)))
    assert authors.max() == 255 and not np.allclose(to_uint8(heatmap(authors)), to_uint8(heatmap(stack)))
    ci = S.bootstrap_image_scores(stack, ekman_masks()[row.expression], n=30)
    assert (ci["low"] <= ci["high"]).all() and list(ci.index) == ["iou", "f1", "precision", "recall", "roc_auc"]


@pytest.mark.slow
def test_run_heatmaps_come_back_under_structured_keys(explained_run):
    run, _, table = explained_run
    maps = E.load_run_heatmaps(run)
    by_fold, by_net, total = E.fold_heatmaps(maps), E.network_heatmaps(maps), E.total_heatmaps(maps)
    assert len(by_fold) + len(by_net) + len(total) == len(maps)  # each heatmap in exactly one kind
    written = {p.name for p in layout.heatmap_group_dir(run, "heatmaps_by_cv").glob("*.png")}
    assert {heatmap_filename(e, n, f) for n, f, e in by_fold} == written
    assert all(isinstance(f, int) for _, f, _ in by_fold) and {n for n, _ in by_net} <= set(table.network)
    key = next(k for k in maps if k.fold is not None)
    assert np.array_equal(maps[key], by_fold[(key.network, key.fold, key.expression)])
    assert set(total) <= set(expressions())


@pytest.mark.slow
def test_worked_example_is_a_test_face_and_its_prediction(explained_run):
    import pandas as pd

    from fermap_utils.lime import explain_images, explain_one, keras_predictor

    run, prof, _ = explained_run
    example = E.worked_example(run, "FER2013", 1)
    preds = pd.read_csv(layout.predictions_file(run, "FER2013", 1), dtype={"id": str})
    row = preds[preds.id == example.id].iloc[0]
    assert (example.true, example.label) == (row.true, row.pred)
    assert example.true == example.label or not (preds.true == preds.pred).any()  # a face it got right
    assert example.face.shape == (64, 64) and example.landmarks.shape == (68, 2)
    assert int(np.asarray(example.model.predict_on_batch(example.face[None, ..., None])).argmax()) == example.label
    surprise = E.worked_example(run, "FER2013", 1, expression="Surprise")
    assert surprise.true == list(expressions()).index("Surprise")
    settings = LimeSettings(num_samples=30)
    one = explain_one(example.model, example.face, example.label, settings, seed=4)
    again = explain_images(keras_predictor(example.model), example.face[None], [example.label], [4], settings)[0]
    assert np.array_equal(one.weights, again.weights) and one.label == example.label


@pytest.mark.slow
def test_cli_train_and_explain_finish_a_run_without_redoing_it(explained_run, capsys):
    from fermap_utils.cli import main

    run, prof, _ = explained_run
    before = _stamps(run)
    args = ["--run", str(run), "-p", "networks", "[WeiNet, FER2013]", "-p", "input_size", "32", "-p", "folds", "1",
            "-p", "epochs_scale", "0.1", "-p", "explain", "{images_per_class: 2, num_samples: 60, batch_size: 100, "
            "seed: 0}"]
    assert main(["train", "--profile", "smoke", *args]) == 0
    out = capsys.readouterr().out
    assert "WeiNet" in out and "FER2013" in out and "SYNTHETIC" in out
    assert main(["explain", "--run", str(run)]) == 0
    out = capsys.readouterr().out
    summary = json.loads(layout.heatmaps_summary_file(run).read_text())
    assert f"{summary['explanations']} explanations (lime)" in out
    assert _stamps(run) == before  # everything was already done: nothing retrained or re-explained


@pytest.mark.slow
def test_cam_identity_holds_for_the_gap_networks_only(explained_run):
    run, _, _ = explained_run
    table = explainers.cam_identity(run, load_results(run), images=3)
    assert list(table.network) == ["FER2013"]  # WeiNet flattens: no CAM
    row = table.iloc[0]
    assert row["CAM / Grad-CAM"] == pytest.approx(row["h·w"], rel=1e-3)  # Grad-CAM = CAM / (h w)
    assert row["max relative residual"] < 1e-3


@pytest.mark.slow
def test_storage_comparison_scores_each_way_as_rebuilt(explained_run):
    from fermap_utils.heatmaps import heatmap, to_uint8
    from fermap_utils.masks import ekman_masks
    from fermap_utils.metrics import score_heatmap

    run, prof, _ = explained_run
    masks = ekman_masks()
    result = E.storage_comparison(run, masks, prof.get("explain"))
    assert len(result.scores) == 4 * len(result.deltas) > 0
    assert set(result.scores.way) == set(E.STORAGE_WAYS)
    row = result.scores[result.scores.way == E.AUTHORS_WAY].iloc[0]
    settings = LimeSettings.from_profile({**prof["explain"], **E.STORAGE_WAYS[E.AUTHORS_WAY]})
    stack = E.load_standardised(run, row.network, int(row.fold), row.expression, settings=settings)
    assert row.IoU == pytest.approx(score_heatmap(to_uint8(heatmap(stack)), masks[row.expression])["iou"])
    means = result.scores.groupby(["network", "way"]).IoU.mean().unstack()
    for net in means.index:  # one fold per network here: the table's cell is the fold's mean
        assert result.table.loc[net, E.FERMAP_WAY] == pytest.approx(means.loc[net, E.FERMAP_WAY])
    assert result.table.loc["Average", "authors − fermap"] == pytest.approx(
        result.table.loc["Average", E.AUTHORS_WAY] - result.table.loc["Average", E.FERMAP_WAY])
    avg = result.table.loc["Average"]
    assert result.by_warp == pytest.approx(np.mean([abs(avg["float, nearest"] - avg["float, linear"]),
                                                    abs(avg["uint8, nearest"] - avg["uint8, linear"])]))


def test_another_methods_settings_are_refused():
    empty = np.zeros((0, 64, 64, 3), np.float32)
    with pytest.raises(TypeError, match="extremal takes settings of type dict, not LimeSettings"):
        E.standardised_explanations(None, empty, np.zeros((0, 68, 2)), np.zeros(0, int), "extremal", LimeSettings())


def test_model_hash_follows_the_weights_not_the_save_time(tmp_path, monkeypatch):
    """A model saved twice (a killed job redone) hashes the same, although Keras writes the save
    time and object addresses into the archive; other weights, or a file that is no archive,
    hash otherwise."""
    import re
    import zipfile

    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    first, second, other = tmp_path / "a.keras", tmp_path / "b.keras", tmp_path / "c.keras"
    model.save(first)
    with zipfile.ZipFile(first) as z:
        saved = z.read("metadata.json")
    model.save(second)
    # Rewrite the second save's time so the two archives surely differ in bytes.
    with zipfile.ZipFile(second) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members["metadata.json"] = saved.replace(b"date_saved", b"date_saved_").replace(b"}", b', "x": 1}')
    # Keras writes Python object addresses as shared_object_id: another process, other numbers.
    members["config.json"] = re.sub(rb'("shared_object_id": )(\d+)', lambda m: m[1] + str(int(m[2]) + 8).encode(),
                                    members["config.json"])
    with zipfile.ZipFile(second, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    assert first.read_bytes() != second.read_bytes()
    assert E.model_hash(first) == E.model_hash(second) != ""
    model.layers[-1].set_weights([w + 1 for w in model.layers[-1].get_weights()])
    model.save(other)
    assert E.model_hash(other) != E.model_hash(first)
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"not a zip")
    assert E.model_hash(junk) not in ("", E.model_hash(first))
    assert E.model_hash(tmp_path / "absent.keras") == ""


def test_choose_images_draws_nested_samples():
    """A smaller per_class takes a subset of a larger one's images, for every class and seed: an explainer that
    explains fewer images per class explains images the others explained too (issue 20's same images)."""
    rng = np.random.default_rng(3)
    for seed in range(5):
        predicted = rng.integers(0, 6, 120)
        few, many = E.choose_images(predicted, 2, seed, 6), E.choose_images(predicted, 10, seed, 6)
        for c in range(6):
            assert len(few[c]) == 2 and set(few[c]) <= set(many[c]), (seed, c)
