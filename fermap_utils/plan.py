"""``fermap plan``: what a profile's run will do and cost, before running it.

The plan counts the jobs (networks x folds for training; explanation jobs per method), the
images and the forward passes of each explainer, the disk the run will write, and the time
it will take on this machine. The time comes from a short calibration of each network at its
run size: a few training steps and a few inference batches on random inputs, timed, kept in
the cache (``$FERMAP_CACHE/calibration``) per network, size, batch and thread count.

Time model (stated, not hidden):

- training a (network, fold): epochs x training images / measured training rate, plus the
  test predictions / inference rate, plus the measured build time;
- explaining: images x the explainer's passes per image (:attr:`fermap_utils.explainers.Explainer.passes`:
  LIME its samples, CAM and Grad-CAM one, Extremal Perturbation areas x steps) / the inference
  rate, or the training rate for an explainer whose passes also run backward (a forward and a
  backward pass, as a training step);
- the networks' kept states (``states``, :mod:`fermap_utils.states`): each state before the final
  model explained by every explainer on ``explain.state_images_per_class`` images per class, as
  above, plus one model load (the build time) per state (the final model's maps are read from the
  run's own explanations);
- N workers: the jobs of each stage dealt, longest first, to N workers each as fast as this
  machine (N such machines; on one machine the workers share its cores).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from . import explainers
from .config import cache_dir, expressions, section
from .executor import onednn_on
from .explanations import explain_groups
from .layout import data_dir, records_file
from .models import build_network, count_params, epochs_for, optimizer_for, size_for, spec
from .profiles import explain_options, profile_folds, profile_networks
from .states import state_images_per_class
from .training import state_epochs

# bytes per image written for the dataset's preprocessed crop (PNG of 128x128 grey, measured on the
# synthetic set: about 12 kB), per stored heatmap PNG (275x224, at most), per LIME cache entry
# (a (network, fold, class) file holds Eq. 1's sum as float64, compressed) and per explained image
CROP_BYTES = 12_000
HEATMAP_BYTES = 40_000
CLASS_FILE_BYTES = 250_000


def dataset_counts(prof: dict, run_dir: str | os.PathLike | None = None) -> tuple[pd.DataFrame, str]:
    """Images per fold of the run's dataset (``RUN/data`` when built), else the estimate of the
    configuration's ``plan.images`` for the profile's kind of data; with where the counts came from."""
    records = records_file(data_dir(run_dir)) if run_dir else None
    if records and records.is_file():
        table = pd.read_csv(records, usecols=["fold"])
        counts = table.fold.value_counts().sort_index()
        source = f"{records.parent} (built)"
    else:
        estimate = section("plan")["images"]
        kind = "default" if prof.get("data") == "default" else "licensed"
        total = int(estimate[kind])
        k = int(section("data")["folds"])
        counts = pd.Series(np.full(k, total // k) + (np.arange(k) < total % k), index=np.arange(1, k + 1))
        source = (f"estimate: {total} images "
                  f"({'the synthetic set' if kind == 'default' else 'the paper' + chr(39) + 's five datasets'}; "
                  "build the data for exact counts)")
    folds = profile_folds(prof, [int(f) for f in counts.index])
    total = int(counts.sum())
    per_fold = pd.DataFrame({"fold": folds, "test": [int(counts[f]) for f in folds]})
    per_fold["train"] = total - per_fold.test
    return per_fold, source


def calibrate(name: str, size: int, batch: int = 8, threads: int | None = None, steps: int = 2,
              infer_batch: int = 16) -> dict:
    """Measured speed of one network on this machine: training images/s at ``batch``, inference
    images/s at ``infer_batch`` (``steps`` timed calls after one untimed), build seconds, parameters.
    Cached per network, size, batch, threads. Small batches keep the calibration short; a run's larger
    batches go at least as fast per image, so the estimate errs long."""
    import platform

    import keras


    key = hashlib.sha256(json.dumps([name, size, batch, infer_batch, threads, steps, keras.__version__,
                                     platform.node(), os.cpu_count(),
                                     onednn_on()]).encode()).hexdigest()[:16]
    path = cache_dir() / "calibration" / f"{name}_{size}_{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        built = build_network(name, size=size, imagenet=False)
    build_s = time.perf_counter() - started
    rng = np.random.default_rng(0)
    result = {"network": name, "size": built.input_size, "params": int(count_params(built.model)),
              "build_s": round(build_s, 2)}
    x = rng.uniform(0, 255, (max(batch, infer_batch), built.input_size, built.input_size, 1)).astype("float32")
    if built.trainable:
        opt, lr = optimizer_for(name, {}, False)
        built.model.compile(optimizer={"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop}[opt](lr),
                            loss="sparse_categorical_crossentropy")
        y = rng.integers(0, len(expressions()), batch)
        built.model.train_on_batch(x[:batch], y)  # the first step traces the graph: not timed
        t = time.perf_counter()
        for _ in range(steps):
            built.model.train_on_batch(x[:batch], y)
        result["train_rate"] = batch * steps / (time.perf_counter() - t)
    else:
        result["train_rate"] = None
    predict = built.model.predict_on_batch
    predict(x[:infer_batch])
    t = time.perf_counter()
    for _ in range(steps):
        predict(x[:infer_batch])
    result["infer_rate"] = infer_batch * steps / (time.perf_counter() - t)
    if not built.trainable:  # a fixed network: its backward pass costs about what a training step does
        result["train_rate"] = result["infer_rate"] / 3
    keras.backend.clear_session()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))
    return result


def _states_row(prof: dict, name: str, f, c: dict, methods: list[str], passes_per_image: dict[str, int],
                epochs: int, calibrate_speed: bool) -> dict:
    """The ``states`` stage of one (network, fold): each kept state before the final model explained
    by every applicable explainer on ``explain.state_images_per_class`` images per class (at most:
    only the correctly classified), one model load per state."""
    k = len(expressions())
    n_states = len(state_epochs(prof.get("states"), epochs))  # the final model's maps are the run's own
    n = min(state_images_per_class(prof), f.test // k) * k * n_states
    passes = seconds = 0.0
    for method in methods:
        if explainers.applicable(method, name):
            continue
        passes += n * passes_per_image[method]
        if calibrate_speed:
            seconds += n * passes_per_image[method] / (c["train_rate"] if explainers.get(method).backward
                                                       else c["infer_rate"])
    return {"stage": "states", "network": name, "fold": f.fold, "jobs": 1, "images": n,
            "forward_passes": int(passes), "seconds": seconds + n_states * c["build_s"] if calibrate_speed else None}


def makespan(seconds: list[float], workers: int) -> float:
    """Wall time of independent jobs dealt longest first to ``workers`` equal workers (LPT)."""
    loads = np.zeros(max(1, int(workers)))
    for s in sorted(seconds, reverse=True):
        loads[loads.argmin()] += s
    return float(loads.max())


def plan_run(prof: dict, workers: list[int] | tuple[int, ...] = (1, 2, 4, 8, 16), calibrate_speed: bool = True,
             run_dir: str | os.PathLike | None = None) -> dict:
    """The plan of a profile's run: jobs, images, forward passes, disk, and (calibrated) time.

    Parameters
    ----------
    prof : dict
        A profile (:func:`fermap_utils.profiles.profile`).
    workers : ints
        Worker counts to give the time for.
    calibrate_speed : bool
        Measure each network's speed on this machine (cached); else count jobs and disk only.
    run_dir : path, optional
        A run folder whose built dataset gives the exact images per fold.

    Returns
    -------
    dict with ``jobs`` (one row per (network, fold) and stage: images, forward passes, seconds),
    ``networks`` (calibration per network), ``disk`` (bytes per part), ``time`` (seconds per
    worker count), ``data`` (where the counts come from).
    """

    folds, source = dataset_counts(prof, run_dir)
    options = explain_options(prof)
    methods = explainers.profile_methods(prof)
    passes_per_image = {m: explainers.get(m).passes(explainers.get(m).settings(options)) for m in methods}
    groups = len(explain_groups(prof))
    nets, rows = [], []
    for name in profile_networks(prof):
        size = size_for(name, prof)
        if calibrate_speed:
            c = calibrate(name, size, threads=prof.get("threads"))
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                built = build_network(name, size=size, imagenet=False)
            c = {"network": name, "size": built.input_size, "params": count_params(built.model),
                 "build_s": None, "train_rate": None, "infer_rate": None}
        nets.append(c)
        epochs = epochs_for(name, prof)
        trainable = not spec(name).get("fixed")
        for f in folds.itertuples():
            train_passes = epochs * f.train
            seconds = None
            if calibrate_speed:
                seconds = (c["build_s"] + (train_passes / c["train_rate"] if trainable else 0)
                           + f.test / c["infer_rate"])
            rows.append({"stage": "train", "network": name, "fold": f.fold, "jobs": 1,
                         "images": f.train if trainable else 0,
                         "forward_passes": train_passes + f.test, "seconds": seconds})
            k = len(expressions())
            for method in methods:
                if explainers.applicable(method, name):
                    continue
                # about: per class at most what was predicted as it
                n = min(explainers.images_per_class(method, options), f.test // k) * k
                passes = n * passes_per_image[method]
                seconds = None
                if calibrate_speed:
                    rate = c["train_rate"] if explainers.get(method).backward else c["infer_rate"]
                    seconds = passes / rate + groups * c["build_s"]  # each job loads its model
                rows.append({"stage": method, "network": name, "fold": f.fold, "jobs": groups, "images": n,
                             "forward_passes": passes, "seconds": seconds})
            if trainable and state_images_per_class(prof) > 0:
                rows.append(_states_row(prof, name, f, c, methods, passes_per_image, epochs, calibrate_speed))
    jobs = pd.DataFrame(rows)
    n_models = sum(1 for n in profile_networks(prof) if not spec(n).get("fixed")) * len(folds)
    params = {c["network"]: c["params"] for c in nets}
    total_images = int(folds.test.iloc[0] + folds.train.iloc[0])
    n_classes = len(expressions())  # one class file and heatmap per expression
    disk = {
        "data": total_images * CROP_BYTES,
        "models": int(sum(4 * params[n] for n in profile_networks(prof) if not spec(n).get("fixed")) * len(folds)),
        "explanations": int(sum(len(jobs[jobs.stage == m]) * n_classes * CLASS_FILE_BYTES for m in methods)),
        "heatmaps": int(len(methods) * (len(jobs[jobs.stage == "train"]) + len(nets) + 1) * n_classes * HEATMAP_BYTES),
    }
    timing = {}
    if calibrate_speed:
        stages = [jobs[jobs.stage == s] for s in ["train", *methods, "states"]]
        for w in workers:
            # each row is one (network, fold); its explanation jobs split it evenly; the states run in
            # the main process after the workers' stages, one after the other
            timing[int(w)] = sum(makespan([s / j for s, j in zip(st.seconds, st.jobs) for _ in range(int(j))],
                                          1 if (st.stage == "states").all() else w)
                                 for st in stages if len(st))
    return {"profile": prof["name"], "data": source, "folds": folds, "networks": pd.DataFrame(nets),
            "jobs": jobs, "n_models": n_models, "disk": disk, "time": timing, "methods": methods,
            "machine": _machine()}


def _machine() -> str:
    import platform

    import tensorflow as tf

    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                      if line.startswith("model name")), "")
    gpus = tf.config.list_physical_devices("GPU")
    return (f"{os.cpu_count()} cores{' (' + model + ')' if model else ''}, "
            f"{len(gpus)} GPU(s), TensorFlow {tf.__version__}, {platform.system()}")


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"


def _duration(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 2 * 3600:
        return f"{s / 60:.0f} min"
    if s < 3 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def format_plan(plan: dict) -> str:
    """The plan as the text ``fermap plan`` prints."""
    jobs = plan["jobs"]
    lines = [f"plan for profile {plan['profile']} on {plan['machine']}",
             f"data: {plan['data']}; folds {', '.join(str(f) for f in plan['folds'].fold)}: "
             f"{', '.join(str(t) for t in plan['folds'].test)} test images"]
    per_stage = jobs.groupby("stage", sort=False).agg(jobs=("jobs", "sum"), images=("images", "sum"),
                                                      forward_passes=("forward_passes", "sum"),
                                                      seconds=("seconds", "sum"))
    lines.append("")
    lines.append(f"{'stage':<10}{'jobs':>7}{'images':>10}{'forward passes':>17}{'time, 1 worker':>17}")
    for stage, r in per_stage.iterrows():
        t = _duration(r.seconds) if plan["time"] else "-"
        lines.append(f"{stage:<10}{int(r.jobs):>7}{int(r.images):>10}{int(r.forward_passes):>17,}{t:>17}")
    nets = plan["networks"]
    lines.append("")
    lines.append("networks (size, parameters" + (", measured training / inference images per second)"
                                                 if plan["time"] else ")"))
    for c in nets.itertuples():
        speed = (f", {c.train_rate:.1f} / {c.infer_rate:.1f} img/s" if plan["time"] and c.train_rate else
                 (f", - / {c.infer_rate:.1f} img/s" if plan["time"] else ""))
        lines.append(f"  {c.network}: {c.size} px, {c.params:,} params{speed}")
    disk = plan["disk"]
    lines.append("")
    lines.append(f"disk: {_size(sum(disk.values()))} ("
                 + ", ".join(f"{k} {_size(v)}" for k, v in disk.items()) + f"; {plan['n_models']} models)")
    if plan["time"]:
        lines.append("time, stage by stage (N workers as fast as this machine; on this machine they share its cores):")
        lines.append("  " + ", ".join(f"{w} worker{'s' if w > 1 else ''}: {_duration(s)}"
                                      for w, s in plan["time"].items()))
    return "\n".join(lines)
