"""Several states of each trained network: kept during training without changing the final model,
explained on the same images, graded; and the accuracy-vs-truthfulness relation over them."""
import json

import numpy as np
import pandas as pd
import pytest

from fermap_utils import states as S
from fermap_utils import statistics
from fermap_utils.config import expressions
from fermap_utils.explanations import choose_images
from fermap_utils.layout import metrics_file, model_file, predictions_file, state_maps_file, state_model_file
from fermap_utils.training import state_epochs


def test_state_epochs_are_fractions_of_the_epochs_without_the_final_one():
    assert state_epochs([0, 0.1, 0.3], 50) == [0, 5, 15]
    assert state_epochs([0, 0.1, 0.3], 12) == [0, 1, 4]
    assert state_epochs([0, 0.5, 0.9999], 1) == [0]  # 0.9999 of one epoch is the final model
    assert state_epochs([], 10) == [] and state_epochs(None, 10) == []


@pytest.fixture(scope="module")
def trained_twice(tmp_path_factory, tiny_dataset):
    """SongNet trained for 3 epochs on the tiny dataset, without states and with states [0, 0.34]."""
    from fermap_utils.training import train_job

    runs = {}
    for tag, states in [("plain", None), ("states", [0, 0.34])]:
        run = tiny_dataset(tmp_path_factory.mktemp(tag) / "run")
        over = {"input_size": 32, "networks": ["SongNet"], "tune": {"SongNet": {"epochs": 3}}}
        if states:
            over["states"] = states
        from fermap_utils.profiles import profile
        prof = profile("smoke", over)
        prof.pop("states", None) if not states else None
        runs[tag] = (run, prof, train_job(run, "SongNet", 1, prof))
    return runs


@pytest.mark.slow  # trains SongNet twice on the tiny dataset (module fixture, ~15 s)
def test_keeping_states_leaves_the_final_model_and_its_results_unchanged(trained_twice):
    import keras

    (plain, _, a), (kept, _, b) = trained_twice["plain"], trained_twice["states"]
    assert a["accuracy"] == b["accuracy"]
    pd.testing.assert_frame_equal(pd.read_csv(predictions_file(plain, "SongNet", 1)),
                                  pd.read_csv(predictions_file(kept, "SongNet", 1)))
    wa = keras.models.load_model(model_file(plain, "SongNet", 1), compile=False).get_weights()
    wb = keras.models.load_model(model_file(kept, "SongNet", 1), compile=False).get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(wa, wb, strict=True))
    # the states: after 0 and 1 (0.34 x 3) epochs, each saved with its test accuracy
    assert "states" not in a and [s["epoch"] for s in b["states"]] == [0, 1]
    recorded = json.loads(metrics_file(kept, "SongNet", 1).read_text())["states"]
    assert recorded == b["states"]
    first = keras.models.load_model(state_model_file(kept, "SongNet", 1, 0), compile=False).get_weights()
    assert not all(np.array_equal(x, y) for x, y in zip(first, wb))
    for s in b["states"]:
        assert state_model_file(kept, "SongNet", 1, s["epoch"]).is_file() and 0 <= s["accuracy"] <= 1


@pytest.mark.slow  # trains SongNet twice on the tiny dataset (module fixture, ~15 s)
def test_a_run_trained_without_states_is_retrained_to_keep_them(trained_twice):
    from fermap_utils.training import train_job

    run, prof, _ = trained_twice["plain"]
    again = train_job(run, "SongNet", 1, {**prof, "states": [0]})
    assert again["cached"] is False and [s["epoch"] for s in again["states"]] == [0]
    assert train_job(run, "SongNet", 1, {**prof, "states": [0]})["cached"] is True


def test_state_images_are_the_first_correct_ones_of_each_class_chosen_images():
    rng = np.random.default_rng(1)
    pred = rng.integers(0, 6, 120)
    true = np.where(rng.random(120) < 0.6, pred, rng.integers(0, 6, 120))
    table = pd.DataFrame({"pred": pred, "true": true})
    rows = S.state_images(table, 10, 2, 7, 6)
    chosen = choose_images(pred, 10, 7, 6)
    expected = np.concatenate([[r for r in chosen[c] if true[r] == c][:2] for c in range(6)])
    assert np.array_equal(rows, expected) and (true[rows] == pred[rows]).all()
    assert len(rows) == 12 and np.array_equal(np.bincount(true[rows], minlength=6), [2] * 6)


@pytest.fixture(scope="module")
def explained(trained_twice):
    """The states run's SongNet explained by LIME (few samples), Grad-CAM and CAM (not for SongNet's
    flatten head), 1 image per class; its predictions made all correct so that every class has one."""
    run, prof, _ = trained_twice["states"]
    table = pd.read_csv(predictions_file(run, "SongNet", 1))
    table.assign(pred=table.true).to_csv(predictions_file(run, "SongNet", 1), index=False)
    prof = {**prof, "explain": {**prof["explain"], "methods": ["cam", "gradcam"], "num_samples": 20,
                                "state_images_per_class": 1}}
    return run, prof, S.explain_states_run(run, prof, progress=False)


@pytest.mark.slow  # trains SongNet twice on the tiny dataset (module fixture, ~15 s)
def test_every_state_is_explained_on_the_same_images_by_every_applicable_explainer(explained):
    run, prof, first = explained
    assert first.explained.tolist() == [6] and first.images.tolist() == [6]  # 3 states x (lime, gradcam)
    maps = S.load_state_maps(run)
    assert sorted(set(maps.epoch)) == [0, 1, 3] and sorted(set(maps.method)) == ["gradcam", "lime"]
    assert maps.final.tolist().count(True) == 2  # the final model, by both explainers
    ids = {tuple(i) for i in maps.ids}
    assert len(ids) == 1 and all(m.shape == (6, 275, 224) for m in maps.maps)
    assert all(np.array_equal(lab, np.arange(6)) for lab in maps.labels)  # each for its true class
    # the states differ, so do their explanations
    g = maps[maps.method == "gradcam"].sort_values("epoch").maps.tolist()
    assert not np.allclose(g[0], g[-1])
    again = S.explain_states_run(run, prof, progress=False)
    assert again.explained.tolist() == [0] and again.cached.tolist() == [6]
    # another setting of an explainer is explained again; the other one stays cached
    other = {**prof, "explain": {**prof["explain"], "num_samples": 24}}
    assert S.explain_states_run(run, other, progress=False).explained.tolist() == [3]


@pytest.mark.slow  # trains SongNet twice on the tiny dataset (module fixture, ~15 s)
def test_the_final_models_maps_are_read_from_the_runs_own_explanations(explained):
    """Without the run's explanations the stage explains the final model itself; with them it reads
    the same maps (same images, seeds and settings) instead of explaining again."""
    from fermap_utils.explanations import explain_run
    from fermap_utils.heatmaps import stretch

    run, prof, _ = explained
    final = S.network_states(run, "SongNet", 1)[-1]
    files = [state_maps_file(run, "SongNet", 1, final["epoch"], m) for m in ("lime", "gradcam")]

    def final_maps():
        maps = S.load_state_maps(run)
        return {r.method: (r.ids, r.maps) for r in maps[maps.final].itertuples()}

    S.explain_states_run(run, prof, progress=False)  # every state current for this profile
    for f in files:
        f.unlink()
    own = S.explain_states_run(run, prof, progress=False)
    assert own.explained.tolist() == [2] and own.reused.tolist() == [0]
    explained_here = final_maps()
    for m in ("lime", "gradcam"):
        explain_run(run, prof, progress=False, method=m)
    for f in files:
        f.unlink()
    read = S.explain_states_run(run, prof, progress=False)
    assert read.explained.tolist() == [0] and read.reused.tolist() == [2] and read.cached.tolist() == [4]
    for m, (ids, maps) in final_maps().items():
        assert np.array_equal(ids, explained_here[m][0])
        expected = np.stack([stretch(x) for x in explained_here[m][1]])
        assert np.allclose(maps, expected, atol=2e-3)  # the run keeps its maps as float16


@pytest.mark.slow  # trains SongNet twice on the tiny dataset (module fixture, ~15 s)
def test_accuracy_points_grade_oracle_maps_as_the_truth(explained):
    """Oracle: each state's stored maps replaced by the truth map of each image's class (stored as the
    stage stores it) for the final model, and by the inverted map for the first state: ROC-AUC 1 and 0
    against that truth; the points carry each state's accuracy."""
    run, _, _ = explained
    yy, xx = np.mgrid[:275, :224]
    truth = {e: 10 * np.exp(-((yy - 40 - 35 * i) ** 2 + (xx - 112) ** 2) / 400.0) for i, e in enumerate(expressions())}
    states = S.network_states(run, "SongNet", 1)
    first, final = states[0], states[-1]
    for state, flip in [(first, True), (final, False)]:
        path = state_maps_file(run, "SongNet", 1, state["epoch"], "gradcam")
        with np.load(path) as f:
            stored = dict(f)
        oracle = np.stack([truth[expressions()[c]] for c in stored["labels"]]).astype(np.float32)
        stored["maps"] = oracle.max() - oracle if flip else oracle
        np.savez_compressed(path, **stored)
    points = S.accuracy_points(run, {"planted": truth})
    g = points[points.method == "gradcam"].set_index("epoch")
    assert g.loc[final["epoch"], "roc_auc_planted"] == pytest.approx(1.0)
    assert g.loc[first["epoch"], "roc_auc_planted"] == pytest.approx(0.0)
    assert g.n_images.tolist() == [6, 6, 6] and set(points.method) == {"gradcam", "lime"}
    assert g.loc[final["epoch"], "accuracy"] == json.loads(metrics_file(run, "SongNet", 1).read_text())["accuracy"]
    assert g.loc[first["epoch"], "accuracy"] == first["accuracy"] and bool(g.loc[final["epoch"], "final"])
    relation = statistics.accuracy_relation(points, "roc_auc_planted")
    assert set(relation.index) == {"gradcam", "lime"} and (relation.n == 3).all()
