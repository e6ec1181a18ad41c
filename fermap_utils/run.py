"""Running a profile: its run folder, its dataset, and every job of its stages.

Where everything lives inside a run folder is :mod:`fermap_utils.layout`; what a profile is,
:mod:`fermap_utils.profiles`; the book's chapters executed with papermill,
:mod:`fermap_utils.chapters`.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ._io import atomic_path
from .archive import archive_beside, unpack_run
from .config import project_root, section
from .data import build_from_config
from .executor import Executor, Job
from .explanations import explain_groups, explain_job, explain_run
from .layout import RUN_PARTS, data_dir, landmarks_file, profile_file, records_file, summary_file
from .profiles import check_data_source, load_profile, profile_networks, read_profile, record_profile
from .rundata import load_results, models_made
from .states import explain_states_run
from .synthetic import build_default
from .training import train_jobs, train_run, train_task


def default_run_dir(prof: dict) -> Path:
    """``runs/<profile>`` in this checkout (beside ``_toc.yml``), else under the current folder."""
    root = project_root()
    return (root if (root / "_toc.yml").is_file() else Path()) / "runs" / prof["name"]


def prepare_data(run_dir: str | os.PathLike, prof: dict, progress: bool = True) -> dict:
    """Make sure ``RUN/data`` holds the profile's dataset: the synthetic default, or a datasets YAML;
    with the profile's ``subjects_per_fold``, only that many subjects of each fold."""
    check_data_source(prof)
    out = data_dir(run_dir)
    summary_path = summary_file(out)
    source = prof["data"]
    per_fold = prof.get("subjects_per_fold")
    if summary_path.is_file() and json.loads(summary_path.read_text()).get("subjects_per_fold") \
            not in (None, per_fold):
        summary_path.unlink()  # a subset made for another profile: build the whole set again
    if source == "default":
        summary = build_default(out, progress=progress)
    elif summary_path.is_file():
        summary = json.loads(summary_path.read_text())
    else:
        summary = build_from_config(source, out, progress=progress)
    if per_fold and summary.get("subjects_per_fold") != per_fold:
        summary["kept"] = keep_subjects(out, int(per_fold))
        summary["subjects_per_fold"] = int(per_fold)
        with atomic_path(summary_path) as tmp:
            tmp.write_text(json.dumps(summary, indent=2))
    return summary


def keep_subjects(directory: str | os.PathLike, per_fold: int) -> int:
    """Keep only the first ``per_fold`` subjects (in sorted order) of each fold of a built dataset,
    rewriting its ``records.csv`` and ``landmarks.npy`` in step; returns the images kept.
    Idempotent; the images themselves stay where they are."""
    directory = Path(directory)
    table = pd.read_csv(records_file(directory), dtype={"subject": str})
    first = table.groupby("fold").subject.apply(lambda s: sorted(s.unique())[:per_fold])
    keep = table.subject.isin([s for subjects in first for s in subjects]).to_numpy()
    if keep.all():
        return len(table)
    marks = np.load(landmarks_file(directory))[keep]
    with atomic_path(landmarks_file(directory)) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, marks)
    with atomic_path(records_file(directory)) as tmp:
        table[keep].to_csv(tmp, index=False)
    return int(keep.sum())


def authors_data_dir() -> Path:
    """The authors' published data shipped with the book: heatmaps, masks, Tables 3 and 4.

    Returns
    -------
    Path
        ``book/data/authors`` of this checkout (``book.authors`` in the configuration):
        ``gray/heatmaps_by_cv``, ``gray/heatmaps_by_net``, ``gray/heatmaps_total``,
        ``ekman_masks/{Expression}_gt.png``, ``ekman_masks_figure.png``,
        ``table3_iou_f1.csv`` and ``table4_precision_recall.csv``. It lives beside the
        book, not in the package, so an installed wheel does not carry it.
    """
    return project_root() / section("book")["authors"]


def run_fingerprint(run_dir: str | os.PathLike, parts: list[str] | tuple[str, ...] = tuple(RUN_PARTS)) -> str:
    """A hash of what a run holds in the named parts (profile, data, models, explanations)."""
    run_dir = Path(run_dir)
    h = hashlib.sha256()
    for part in parts:
        for pattern in RUN_PARTS[part]:
            for path in sorted(run_dir.glob(pattern)):
                h.update(str(path.relative_to(run_dir)).encode())
                h.update(path.read_bytes())
    return h.hexdigest()[:16]


def open_run(run_dir: str | os.PathLike, profile: str | None = None) -> tuple[dict, str]:
    """A run's profile and the caption every table and figure of the book carries:
    which profile, dataset and networks produced it (synthetic data said so).

    A folder that is not a run yet is unpacked from ``<run_dir>.tar.gz`` when that archive
    exists (``fermap run --pack``), else becomes a run of the named profile (a chapter
    opened by hand in JupyterLab starts its own run).
    """
    run_dir = Path(run_dir)
    if not profile_file(run_dir).is_file() and archive_beside(run_dir):  # a handed-out run: no retraining
        unpack_run(archive_beside(run_dir), run_dir)
    if not profile_file(run_dir).is_file() and profile:
        record_profile(run_dir, load_profile(profile))
    prof = read_profile(run_dir)
    summary_path = summary_file(data_dir(run_dir))
    if summary_path.is_file():
        s = json.loads(summary_path.read_text())
        data = (f"{'SYNTHETIC embedded dataset' if s.get('synthetic') else 'dataset ' + str(prof.get('data'))}"
                f" ({s['used']} images)")
    else:  # built later in the run (chapter 1), when its size will be known
        data = ("SYNTHETIC embedded dataset" if prof.get("data", "default") == "default"
                else f"dataset {prof.get('data')}")
    nets = ", ".join(profile_networks(prof))
    return prof, f"profile {prof['name']} · {data} · networks: {nets}"


def train_and_explain(run_dir: str | os.PathLike, network: str, fold: int, classes: list[str] | tuple[str, ...],
                      prof: dict, methods: list[str] | tuple[str, ...] = ("lime",)) -> dict:
    """A ``pipeline`` job of the executor: train one (network, fold)
    (:func:`fermap_utils.training.train_task`), then explain its classes by each method
    (:func:`fermap_utils.explanations.explain_job`) with the model still in memory.

    Parameters
    ----------
    run_dir : path
        The run folder.
    network : str
        The network.
    fold : int
        The fold, from 1.
    classes : list of str
        The expressions to explain.
    prof : dict
        The run's profile.
    methods : tuple of str
        The explainers.

    Returns
    -------
    dict
        ``{"train": training's result, "explain": the explanations' counts, "cached": True when
        nothing was trained}``.
    """
    trained = train_task(run_dir, network, fold, prof)
    cached = trained.pop("cached")
    explained = explain_job(run_dir, network, fold, list(classes), prof, methods)
    return {"train": trained, "explain": explained, "cached": cached}


def pipeline_job(network: str, fold: int, classes: tuple[str, ...], methods: tuple[str, ...]) -> Job:
    """The executor's job that trains one (network, fold) and explains its classes (:func:`train_and_explain`).

    Parameters
    ----------
    network : str
        The network.
    fold : int
        The fold, from 1.
    classes : tuple of str
        The expressions to explain.
    methods : tuple of str
        The explainers.

    Returns
    -------
    Job
        ``pipeline-<network>-fold<k>-<classes>``.
    """
    return Job("pipeline", network, fold, tuple(classes), tuple(methods), func=train_and_explain,
               args=(network, fold, tuple(classes)), kwargs={"methods": tuple(methods)}, models_made=models_made)


def run_stages(run_dir: str | os.PathLike, prof: dict, executor: Executor | None = None,
               progress: bool = True) -> None:
    """Every job of a profile's run on ``executor``: build the data, train, explain with LIME and the
    profile's other methods (``explain.methods``), write the heatmaps, then explain the networks'
    kept states (:func:`fermap_utils.states.explain_states_run`, in this process). The book's
    chapters then find all of it done.

    When a profile explains a (network, fold)'s six classes in one job (``explain.classes_per_job: 6``),
    training and explaining are one ``pipeline`` job per (network, fold) (:func:`pipeline_job`);
    otherwise training jobs come first, then one explanation job per (network, fold, group of
    classes) for all methods.

    Parameters
    ----------
    run_dir : path
        The run folder.
    prof : dict
        The profile.
    executor : Executor, optional
        Where the jobs run (default: one after the other in this process).
    progress : bool
        Show progress bars.
    """
    executor = executor or Executor()
    prepare_data(run_dir, prof, progress=progress)
    record_profile(run_dir, prof)
    methods = ("lime", *((prof.get("explain") or {}).get("methods") or []))
    groups = explain_groups(prof)
    if len(groups) == 1:
        jobs = [pipeline_job(n, f, tuple(groups[0]), methods) for n, f in train_jobs(run_dir, prof)]
        executor.run(jobs, run_dir, prof, progress=progress, desc="training and explaining")
    else:
        train_run(run_dir, prof, progress=progress, executor=executor)
        trained = load_results(run_dir)
        jobs = [Job("explain", n, int(f), tuple(g), methods, func=explain_job, args=(n, int(f), tuple(g)),
                    kwargs={"methods": methods}, models_made=models_made)
                for n, f in zip(trained.network, trained.fold) for g in groups]
        executor.run(jobs, run_dir, prof, progress=progress, desc="explaining")
    for method in methods:  # everything is cached now: this only gathers it into the heatmaps
        explain_run(run_dir, prof, progress=False, method=method)
    # the networks' earlier states on the same images (the profile's `states`; chapter 13's accuracy question)
    explain_states_run(run_dir, prof, progress=progress)
