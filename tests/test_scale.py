"""The paper's experiment at scale: every network through every stage, the Dask executor (same
results as the sequential run, a killed worker loses nothing), the plan, and the paper profile's data."""
from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from fermap_utils import plan as P
from fermap_utils.cli import main
from fermap_utils.config import display_name, section
from fermap_utils.executor import Executor, Job, job_table
from fermap_utils.masks import ekman_masks
from fermap_utils.models import paper_networks
from fermap_utils.profiles import profile
from fermap_utils.run import pipeline_job, run_stages

ROOT = Path(__file__).resolve().parents[1]
# A slice of paper_small for the equality and worker-kill tests: two networks, two folds.
SLICE = {"networks": ["WeiNet", "SongNet"], "folds": 2}
EXPRESSIONS = list(section("paper")["expressions"])


def _files(run: Path, pattern: str) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.glob(pattern))}


@pytest.fixture(scope="module")
def cache(tmp_path_factory, default_dataset):
    """A private fermap cache holding the synthetic set (built once by the session fixture)."""
    import shutil

    cache = tmp_path_factory.mktemp("scale_cache")
    with pytest.MonkeyPatch.context() as mp:  # restores the session's private cache afterwards
        mp.setenv("FERMAP_CACHE", str(cache))
        yield cache
    shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture(scope="module")
def paper_small(tmp_path_factory, cache, default_dataset):
    """The paper_small profile, run on a Dask LocalCluster of 2 workers (1 thread each)."""
    import shutil

    run = tmp_path_factory.mktemp("paper_small")
    shutil.copytree(default_dataset, run / "data")
    prof = profile("paper_small")
    started = time.perf_counter()
    with Executor(workers=2, threads=1, timeout=120) as ex:
        run_stages(run, prof, ex, progress=False)
    print(f"paper_small on 2 workers: {time.perf_counter() - started:.0f} s")
    return run


@pytest.mark.slow
def test_paper_small_every_network_every_stage(paper_small, tmp_path, capsys):
    prof = profile("paper_small")
    assert set(paper_networks()) <= set(prof["networks"])  # the paper's twelve, and more
    jobs = job_table(paper_small)
    pipeline = jobs[jobs.kind == "pipeline"]  # the rest gathered the cached explanations afterwards
    assert len(pipeline) == 15 * 5 and set(pipeline.status) == {"done"}
    assert (pipeline.threads == 1).all()  # each job pinned its threads
    metrics = [json.loads(p.read_text()) for p in paper_small.glob("models/*/fold*/metrics.json")]
    assert len(metrics) == 75 and {m["fold"] for m in metrics} == {1, 2, 3, 4, 5}
    sizes = {m["network"]: m["input_size"] for m in metrics}
    assert sizes["InceptionV3"] == 75 and sizes["Xception"] == 71 and sizes["VGG16"] == 32 and sizes["FER2013"] == 64
    for method, folder in (("lime", "heatmaps"), ("cam", "heatmaps_cam"), ("gradcam", "heatmaps_gradcam"),
                           ("extremal", "heatmaps_extremal")):
        by_cv = {p.name.split("_CV")[0] for p in (paper_small / folder / "heatmaps_by_cv").glob("*.png")}
        flatten_heads = {"SilNet", "WeiNet", "AlexNet", "SongNet"}  # CAM needs a GAP head
        assert by_cv == set(prof["networks"]) - (flatten_heads if method == "cam" else set()), method
    out = tmp_path / "scores.csv"
    assert main(["score", "--heatmaps", str(paper_small / "heatmaps" / "heatmaps_by_cv"), "--out", str(out),
                 "--allow-missing"]) == 0
    scores = pd.read_csv(out)
    assert set(paper_networks()) <= set(scores.network)
    scored = scores[scores.iou.notna()]  # a class no test image was predicted as has no heatmap (--allow-missing)
    assert len(scored) > len(scores) / 2 and scored.iou.nunique() > 12
    # each cell (rounded to 4 digits) is the mean over the folds it has of Otsu's IoU (OpenCV's: scikit-image's
    # may take another of two equally good thresholds)
    files = {display_name(n): n for n in prof["networks"]}
    masks = {e: m.astype(bool) for e, m in ekman_masks().items()}
    for row in scored[(scored.network != "Average") & (scored.expression != "Average")].itertuples():
        ious = []
        for path in sorted((paper_small / "heatmaps" / "heatmaps_by_cv").glob(
                f"{files[row.network]}_CV*_{row.expression}_heatmap.png")):
            h = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            t, _ = cv2.threshold(h, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)  # OpenCV's Otsu, as the authors'
            kept = h > t
            ious.append((kept & masks[row.expression]).sum() / (kept | masks[row.expression]).sum())
        assert row.iou == pytest.approx(np.mean(ious), abs=5e-5), (row.network, row.expression)  # 4 digits
    sim = tmp_path / "similarity.csv"
    by_net = paper_small / "heatmaps" / "heatmaps_by_net"
    complete = {n for n in prof["networks"] if all((by_net / f"{n}_{e}_heatmap.png").is_file() for e in EXPRESSIONS)}
    code = main(["similarity", "--heatmaps", str(by_net), "--out", str(sim)])
    if complete == set(prof["networks"]):
        assert code == 0
    else:  # one-epoch networks predict few classes: similarity refuses in one line, writing nothing
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and not sim.exists()
        assert err[-1].startswith("fermap: error: ") and "incomplete heatmap set" in err[-1]
    # similarity for real: the networks with all six by-network heatmaps, and two networks explained
    # again in a copy of the run where each test image is explained as its true class (so every class
    # of every fold has an image); just their by-network heatmaps in a folder of their own
    relabelled = _explained_as_true_class(paper_small, tmp_path / "relabelled", SLICE["networks"])
    folder = tmp_path / "complete"
    folder.mkdir()
    for source, nets in ((by_net, complete - set(SLICE["networks"])), (relabelled, set(SLICE["networks"]))):
        for n, e in itertools.product(sorted(nets), EXPRESSIONS):
            assert (source / f"{n}_{e}_heatmap.png").is_file(), f"{source}: no {e} heatmap for {n}"
            shutil.copy(source / f"{n}_{e}_heatmap.png", folder)
    chosen = complete | set(SLICE["networks"])
    assert main(["similarity", "--heatmaps", str(folder), "--out", str(sim)]) == 0
    pairs = pd.read_csv(sim)
    names = {display_name(n) for n in chosen}
    assert set(pairs.net_a) | set(pairs.net_b) == names
    assert len(pairs) == len(EXPRESSIONS) * len(names) * (len(names) - 1) // 2
    assert pairs.distance.between(0, 2).all() and pairs.distance.nunique() > 1


def _explained_as_true_class(run: Path, copy: Path, networks: list[str]) -> Path:
    """``fermap explain`` (LIME) of ``networks`` in a copy of ``run`` whose predictions.csv name each
    image's true class; returns the copy's by-network heatmaps folder."""
    copy.mkdir()
    shutil.copytree(run / "data", copy / "data")
    shutil.copy(run / "run.json", copy / "run.json")
    for n in networks:
        shutil.copytree(run / "models" / n, copy / "models" / n)
        for predictions in (copy / "models" / n).glob("fold*/predictions.csv"):
            table = pd.read_csv(predictions, dtype={"id": str})
            table["pred"] = table["true"]
            table.to_csv(predictions, index=False)
    assert main(["explain", "--run", str(copy), "--method", "lime", "-p", "networks", json.dumps(networks)]) == 0
    return copy / "heatmaps" / "heatmaps_by_net"


def _initial_weights(foreign_draws: int, private: bool) -> list[np.ndarray]:
    """A small model's initial weights, seeded, after another thread drew from Python's ``random``
    between the seeding and the build, as a Dask worker's event loop does (dask.sizeof)."""
    import random

    import keras

    from fermap_utils.training import seeded

    def build() -> list[np.ndarray]:
        other = threading.Thread(target=lambda: [random.random() for _ in range(foreign_draws)])
        other.start()
        other.join()
        model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3), keras.layers.Dropout(0.5),
                                  keras.layers.Flatten(), keras.layers.Dense(3)])
        return model.get_weights()

    if private:
        with seeded(7):
            return build()
    keras.utils.set_random_seed(7)
    return build()


def test_seeded_build_ignores_other_threads_draws():
    """The cause of Dask runs differing from sequential ones: Keras draws each unseeded
    initialiser's seed from Python's process-wide ``random``, which other threads advance."""
    from fermap_utils.training import _ThreadRandom

    alone = _initial_weights(0, private=True)
    assert all(np.array_equal(a, b) for a, b in zip(alone, _initial_weights(5, private=True)))
    assert getattr(_ThreadRandom.local, "rng", None) is None  # the block gave the stream back
    # keras.utils.set_random_seed alone is not enough: the same draws change the weights
    shared = _initial_weights(0, private=False)
    assert all(np.array_equal(a, b) for a, b in zip(alone, shared))  # same seed, same stream
    assert not all(np.array_equal(a, b) for a, b in zip(shared, _initial_weights(5, private=False)))


@pytest.mark.slow
def test_dask_equals_sequential(paper_small, tmp_path, cache):
    """The same jobs run one after the other in a fresh process (1 thread, as each Dask worker)
    give byte-identical heatmaps and models' predictions, and equal accuracies."""
    import shutil

    run = tmp_path / "sequential"
    shutil.copytree(paper_small / "data", run / "data")
    code = ("import sys, json; from fermap_utils.profiles import profile; "
            "from fermap_utils.executor import Executor; from fermap_utils.run import run_stages; "
            "run_stages(sys.argv[1], profile('paper_small', json.loads(sys.argv[2])), Executor(threads=1), "
            "progress=False)")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", code, str(run), json.dumps(SLICE)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    sequential = _files(run, "heatmaps*/heatmaps_by_cv/*.png")
    # every (network, fold) has a heatmap for each class it predicted, by LIME, Grad-CAM and Extremal (no CAM)
    made = {(Path(k).parent.parent.name, Path(k).name.split("_CV")[0], Path(k).name.split("_")[1]) for k in sequential}
    assert made == {(f, n, f"CV{k}") for f in ("heatmaps", "heatmaps_gradcam", "heatmaps_extremal")
                    for n in SLICE["networks"] for k in (1, 2)}
    dask = _files(paper_small, "heatmaps*/heatmaps_by_cv/*.png")
    assert {k: dask[k] for k in sequential} == sequential
    for net, fold in itertools.product(SLICE["networks"], (1, 2)):
        a = json.loads((run / "models" / net / f"fold{fold}" / "metrics.json").read_text())
        b = json.loads((paper_small / "models" / net / f"fold{fold}" / "metrics.json").read_text())
        assert a["accuracy"] == b["accuracy"] and a["confusion"] == b["confusion"]
        pa = pd.read_csv(run / "models" / net / f"fold{fold}" / "predictions.csv")
        pb = pd.read_csv(paper_small / "models" / net / f"fold{fold}" / "predictions.csv")
        pd.testing.assert_frame_equal(pa, pb)


@pytest.fixture(scope="module")
def killed_run(paper_small, tmp_path_factory, cache):
    """A slice of paper_small on 2 workers, one of them SIGKILLed while it runs a job."""
    import shutil

    run = tmp_path_factory.mktemp("killed")
    shutil.copytree(paper_small / "data", run / "data")
    prof = profile("paper_small", SLICE)
    jobs = [pipeline_job(n, f, tuple(prof_classes()), ("lime",)) for n in SLICE["networks"] for f in (1, 2)]
    errors, killed, kept = [], {}, {}

    with Executor(workers=2, threads=1, timeout=120) as ex:
        def work():
            try:
                ex.run(jobs, run, prof, progress=False)
            except Exception as exc:  # reported by the test
                errors.append(exc)

        worker = threading.Thread(target=work)
        worker.start()
        deadline = time.time() + 300
        while not killed and time.time() < deadline and worker.is_alive():
            table = job_table(run)
            if len(table) and (table.status == "done").any() and (table.status == "running").any():
                done = table[table.status == "done"]
                kept = {j: (run / "models" / n / f"fold{f}" / "model.keras").stat().st_mtime_ns
                        for j, n, f in zip(done.job, done.network, done.fold)}
                victim = table[table.status == "running"].iloc[0]
                os.kill(int(victim.pid), 9)
                killed = {"job": victim.job, "pid": int(victim.pid)}
            time.sleep(0.2)
        worker.join(timeout=300)
    return run, jobs, errors, killed, kept


@pytest.mark.slow
def test_killed_worker_loses_nothing(killed_run):
    """A worker killed in the middle of a job: the job is redone on a new worker, and the jobs
    finished before are kept (not trained again)."""
    run, jobs, errors, killed, kept = killed_run
    assert not errors, errors
    assert killed, "no job was seen running after another had finished"
    table = job_table(run).set_index("job")
    assert len(table) == len(jobs) and table.status.isin(["done", "cached"]).all()
    assert table.loc[killed["job"], "starts"] == 2 and table.loc[killed["job"], "pid"] != killed["pid"]
    for job, stamp in kept.items():  # finished before the kill: never trained again
        n, f = table.loc[job, "network"], table.loc[job, "fold"]
        assert (run / "models" / n / f"fold{f}" / "model.keras").stat().st_mtime_ns == stamp
    assert len(list(run.glob("explanations/*/fold[12]/*.npz"))) == 24


@pytest.mark.slow
def test_killed_run_equals_uninterrupted(killed_run, paper_small):
    """The jobs of a run with a killed worker, one redone on a restarted worker, give the same
    predictions and explanations as the uninterrupted run, where other jobs ran before them."""
    run = killed_run[0]
    for net, fold in itertools.product(SLICE["networks"], (1, 2)):
        a = run / "models" / net / f"fold{fold}" / "predictions.csv"
        assert a.read_bytes() == (paper_small / a.relative_to(run)).read_bytes(), f"{net} fold {fold}"
    for key in _files(run, "explanations/*/fold[12]/*.npz"):  # npz bytes hold zip timestamps: compare arrays
        with np.load(run / key) as a, np.load(paper_small / key) as b:
            assert np.array_equal(a["ids"], b["ids"]) and str(a["key"]) == str(b["key"])
            assert np.array_equal(a["weights"], b["weights"], equal_nan=True)  # NaN pads unequal superpixel counts
            assert np.array_equal(a["sum"], b["sum"])


def prof_classes() -> list[str]:
    from fermap_utils.config import section

    return list(section("paper")["expressions"])


@pytest.mark.slow
def test_plan_counts_and_time(paper_small, cache):
    prof = profile("paper_small", {"networks": ["WeiNet", "FER2013"]})
    plan = P.plan_run(prof, workers=[1, 2], run_dir=paper_small)
    jobs = plan["jobs"]
    records = pd.read_csv(paper_small / "data" / "records.csv")
    assert list(plan["folds"].test) == list(records.fold.value_counts().sort_index())
    lime = jobs[jobs.stage == "lime"]
    assert (lime.forward_passes == lime.images * 20).all() and len(lime) == 10
    assert set(jobs.stage) == {"train", "lime", "cam", "gradcam", "extremal"}
    assert len(jobs[(jobs.stage == "cam") & (jobs.network == "WeiNet")]) == 0  # a flatten head: no CAM
    nets = plan["networks"].set_index("network")
    row = jobs[(jobs.stage == "train") & (jobs.network == "WeiNet")].iloc[0]
    c = nets.loc["WeiNet"]
    assert row.seconds == pytest.approx(c.build_s + row.images * 1 / c.train_rate
                                        + (row.forward_passes - row.images) / c.infer_rate)
    assert plan["time"][1] == pytest.approx(jobs.seconds.sum())  # one worker: everything in turn
    assert plan["time"][2] < plan["time"][1]
    assert plan["disk"]["models"] == 4 * int(nets.loc["WeiNet", "params"]) * 5
    text = P.format_plan(plan)
    assert "2 workers" in text and "WeiNet" in text


def test_makespan_is_longest_first_list_scheduling():
    assert P.makespan([5, 4, 3, 3, 3], 2) == 10  # LPT: {5, 3, 3}? no: 5+3=8, 4+3=7, then 3 -> 7+3=10
    assert P.makespan([1, 1, 1, 1], 4) == 1
    assert P.makespan([7, 1, 1], 1) == 9
    rng = np.random.default_rng(0)
    for _ in range(20):
        jobs = list(rng.uniform(1, 10, 7))
        best = min(max(sum(j for j, a in zip(jobs, assign) if a == w) for w in range(3))
                   for assign in itertools.product(range(3), repeat=7))
        assert best <= P.makespan(jobs, 3) <= 4 / 3 * best + 1e-9  # Graham's bound for LPT


def test_paper_profile_refuses_without_data(capsys):
    for command in (["run", "--profile", "paper"], ["train", "--profile", "paper"]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "-p data" in err[0] and "names no dataset" in err[0]
    assert main(["train", "--profile", "paper", "-p", "data", "/no/such.yaml"]) == 2
    assert "no such datasets file" in capsys.readouterr().err


@pytest.mark.slow
def test_keep_subjects(default_dataset, tmp_path):
    import shutil

    from fermap_utils.run import keep_subjects

    shutil.copytree(default_dataset, tmp_path / "d")
    before = pd.read_csv(tmp_path / "d" / "records.csv", dtype={"subject": str})
    marks = np.load(tmp_path / "d" / "landmarks.npy")
    kept = keep_subjects(tmp_path / "d", 2)
    after = pd.read_csv(tmp_path / "d" / "records.csv", dtype={"subject": str})
    assert kept == len(after) and after.groupby("fold").subject.nunique().tolist() == [2] * 5
    expected = before.groupby("fold").subject.apply(lambda s: sorted(s.unique())[:2]).explode()
    assert set(after.subject) == set(expected)
    rows = before.index[before.id.isin(after.id)]
    assert np.array_equal(np.load(tmp_path / "d" / "landmarks.npy"), marks[rows])
    assert keep_subjects(tmp_path / "d", 2) == kept  # idempotent


def test_executor_settings_and_errors():
    from fermap_utils.errors import FermapError
    from fermap_utils.explanations import explain_job
    from fermap_utils.training import training_job

    assert training_job("WeiNet", 3).name == "train-WeiNet-fold3"
    explain = Job("explain", "VGG16", 1, ("Anger",), ("lime", "cam"), func=explain_job)
    assert explain.name == "lime+cam-VGG16-fold1-Anger"
    assert pipeline_job("VGG16", 2, tuple(prof_classes()), ("lime",)).name == "pipeline-VGG16-fold2-all"
    assert Executor(workers=2).threads_per_job({}) == max(1, (os.cpu_count() or 1) // 2)
    assert Executor(workers=2).threads_per_job({"threads": 3}) == 3
    assert Executor(workers=2, threads=1).threads_per_job({"threads": 3}) == 1
    assert Executor().threads_per_job({}) is None  # sequential: the process's default
    with pytest.raises(FermapError, match="--workers"):
        Executor(workers=-1)
    with pytest.raises(FermapError, match="not both"):
        Executor(workers=2, scheduler="tcp://127.0.0.1:1")
    with pytest.raises(FermapError, match="could not reach tcp://127.0.0.1:1"):
        with Executor(scheduler="tcp://127.0.0.1:1", timeout=2):
            pass


@pytest.mark.parametrize("value, on", [(None, True), ("1", True), ("true", True), ("0", False), ("False", False)])
def test_explainers_run_eagerly_only_without_onednn(monkeypatch, value, on):
    """A run_eagerly profile runs the explainers eagerly, except under oneDNN (TensorFlow's default when
    TF_ENABLE_ONEDNN_OPTS is unset), whose eager backward pass crashes: there they are traced."""
    from fermap_utils.executor import explainers_run_eagerly, onednn_on

    if value is None:
        monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    else:
        monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", value)
    assert onednn_on() is on
    assert explainers_run_eagerly({"run_eagerly": True}) is (not on)
    assert explainers_run_eagerly({}) is False
