"""A run's data as the stages read it: its dataset (read once per process), its trained models
(loaded once), and its recorded training results.

Training (:mod:`fermap_utils.training`) writes what this module reads; the explainers
(:mod:`fermap_utils.explanations`) and the chapters read it through here, so neither reaches
into the other's private state.
"""
from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

import pandas as pd

from ._io import inside
from .data import Dataset, load_dataset
from .errors import FermapError
from .layout import (
    data_dir,
    fold_folder,
    landmarks_file,
    metrics_files,
    model_file,
    profile_file,
    records_file,
    summary_file,
)
from .models import load_trained, registry
from .profiles import profile_networks

_LAST_TRAINED: dict = {}
#: Models this process built or loaded for a job (training.train_fold, trained_model). A job that
#: made none left no Keras state, so executor.execute skips freeing it: a full garbage collection
#: costs seconds in a large process, and gathering a run's cached explanations is hundreds of jobs.
_MADE = {"models": 0}


def models_made() -> int:
    """How many models this process has built (:func:`fermap_utils.training.train_fold`) or loaded
    (:func:`trained_model`) so far; :func:`fermap_utils.executor.execute` compares it around a job.

    Returns
    -------
    int
        The count since the process started.
    """
    return _MADE["models"]


def count_model() -> None:
    """Count one model built or loaded by this process (:func:`models_made`)."""
    _MADE["models"] += 1


def _model_stamp(path: Path) -> tuple:
    st = path.stat()
    return str(path.resolve()), st.st_mtime_ns, st.st_size


def keep_trained(path: str | os.PathLike, model) -> None:
    """Remember the model just saved at ``path`` as the one :func:`trained_model` returns for it, so
    a job that explains what it trained need not reload it (one model kept).

    Parameters
    ----------
    path : path
        The saved model's file (``RUN/models/<network>/fold<k>/model.keras``).
    model : keras.Model
        The model in memory, the same layers and weights as the file.
    """
    _LAST_TRAINED.clear()
    _LAST_TRAINED[_model_stamp(Path(path))] = model


def trained_model(run_dir: str | os.PathLike, name: str, fold: int):
    """The model a run trained for (network, fold): the one this process last trained or loaded if
    it is still the file on disk, else loaded (:func:`fermap_utils.models.load_trained`) and kept.

    Parameters
    ----------
    run_dir : path
        The run folder.
    name : str
        The network.
    fold : int
        The fold, from 1.

    Returns
    -------
    keras.Model
        The trained model.
    """
    path = model_file(run_dir, name, fold)
    if not path.is_file():
        count_model()
        return load_trained(run_dir, name, fold)  # a fixed network, or the error saying what is missing
    stamp = _model_stamp(path)
    if stamp not in _LAST_TRAINED:
        count_model()
        model = load_trained(run_dir, name, fold)
        _LAST_TRAINED.clear()
        _LAST_TRAINED[stamp] = model
    return _LAST_TRAINED[stamp]


def inference_model(model):
    """The same layers and weights without the optimiser: what explanations need, a third of the
    disk of a model saved with Adam's two moment estimates (AlexNet: 0.13 GB instead of 0.4 GB).

    Parameters
    ----------
    model : keras.Model
        A compiled (trained) model.

    Returns
    -------
    keras.Model
        A model of the same layers, uncompiled.
    """
    import keras

    return keras.Model(model.input, model.output, name=model.name)


def data_key(directory: str | os.PathLike) -> str:
    """A fingerprint of a built dataset, for caching what depends on it.

    It covers what the networks and explainers read: the records (but not their ``source``
    column, the original files' paths, which only say where the images came from), the
    summary, the landmarks and every image's bytes. So a dataset moved or rebuilt from a
    moved cache keeps its key, and a changed image changes it.

    Parameters
    ----------
    directory : path
        A built dataset (``records.csv``, ``summary.json``, ``landmarks.npy``, ``images/``).

    Returns
    -------
    str
        16 hexadecimal digits.
    """
    directory = Path(directory)
    table = pd.read_csv(records_file(directory), dtype=str, keep_default_na=False)
    h = hashlib.sha256(table.drop(columns="source", errors="ignore").to_csv(index=False).encode())
    h.update(summary_file(directory).read_bytes())
    marks = landmarks_file(directory)
    if marks.is_file():
        h.update(marks.read_bytes())
    for name in table.image:
        h.update((directory / name).read_bytes())
    return h.hexdigest()[:16]


def run_data_folder(run_dir: str | os.PathLike) -> Path:
    """A run's dataset folder (``RUN/data``), refused in one line when no dataset was built there.

    Parameters
    ----------
    run_dir : path
        The run folder.

    Returns
    -------
    Path
        ``RUN/data``, holding ``records.csv``.
    """
    folder = data_dir(run_dir)
    if not records_file(folder).is_file():
        raise FermapError(f"{folder}: no dataset; build it first (fermap data build ... --out {folder})")
    return folder


@lru_cache(maxsize=2)
def cached_dataset(data_dir: str, key: str) -> Dataset:
    """A run's dataset, read once per process (and per content: ``key`` is its fingerprint).

    Parameters
    ----------
    data_dir : str
        The dataset folder (:func:`run_data_folder`).
    key : str
        Its fingerprint (:func:`data_key`), so a changed dataset is read again.

    Returns
    -------
    Dataset
        The loaded dataset, shared by every caller in this process: do not modify it.
    """
    return load_dataset(data_dir)


def accuracy_table(rows: list[dict], full: bool = False) -> pd.DataFrame:
    """One row per (network, fold) with accuracy and what produced it (``full``: every recorded field).

    Parameters
    ----------
    rows : list of dict
        Training results (``metrics.json`` contents).
    full : bool
        Keep every recorded field, not only the table's columns.

    Returns
    -------
    pandas.DataFrame
        network, fold, accuracy, pretrained, weights, input_size, epochs, n_test, seconds, synthetic.
    """
    cols = ["network", "fold", "accuracy", "pretrained", "weights", "input_size", "epochs", "n_test", "seconds",
            "synthetic"]
    table = pd.DataFrame(rows)
    return table if full else table[cols]


def read_metrics(run_dir: str | os.PathLike, path: str | os.PathLike) -> dict:
    """One ``metrics.json`` of a run, checked: it lies inside the run, names a registered network
    and the folder it is in (``models/<network>/fold<k>``), with a plausible input size.

    A run folder may come from someone else; its names become paths, so they are checked first.

    Parameters
    ----------
    run_dir : path
        The run folder.
    path : path
        The ``metrics.json`` file, inside ``run_dir``.

    Returns
    -------
    dict
        Its contents.
    """
    path = inside(run_dir, Path(path).relative_to(run_dir))
    try:
        m = json.loads(path.read_text())
        network, fold, size = m["network"], m["fold"], m["input_size"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise FermapError(f"{path}: not a fermap metrics file ({type(exc).__name__}: {exc})") from None
    if network not in registry() or path.parent.parent.name != network:
        raise FermapError(f"{path}: network {network!r} is not the registered network of its folder "
                          f"({path.parent.parent.name})")
    if not isinstance(fold, int) or path.parent.name != fold_folder(fold):
        raise FermapError(f"{path}: fold {fold!r} is not its folder's ({path.parent.name})")
    if not isinstance(size, int) or not 16 <= size <= 1024:
        raise FermapError(f"{path}: input_size {size!r} is not allowed; expected an integer from 16 to 1024")
    return m


def load_results(run_dir: str | os.PathLike, full: bool = False) -> pd.DataFrame:
    """The accuracy table of a run, from its ``metrics.json`` files, in the profile's network order.

    Parameters
    ----------
    run_dir : path
        The run folder.
    full : bool
        Every recorded field (:func:`accuracy_table`).

    Returns
    -------
    pandas.DataFrame
        One row per trained (network, fold).
    """
    rows = [read_metrics(run_dir, p) for p in metrics_files(run_dir)]
    if not rows:
        raise FermapError(f"{run_dir}: no trained networks (run fermap train first)")
    order = {}
    run_json = profile_file(run_dir)
    if run_json.is_file():
        order = {n: i for i, n in enumerate(profile_networks(json.loads(run_json.read_text())))}
    rows.sort(key=lambda r: (order.get(r["network"], len(order)), r["network"], r["fold"]))
    return accuracy_table(rows, full)
