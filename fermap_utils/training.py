"""Training the networks with subject-grouped cross-validation, resumable.

Each (network, fold) writes, under ``RUN/models/<network>/fold<k>/``:
``model.keras`` (not for a fixed network), ``history.csv``, ``predictions.csv``
and, last, ``metrics.json`` (accuracy, confusion matrix, what was used). A
(network, fold) whose ``metrics.json`` matches the current settings is not
retrained; an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import threading
import time
import warnings
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from ._io import atomic_path
from .augment import random_augment
from .config import expressions, section
from .data import Dataset, load_dataset, resize_images, scale_landmarks
from .errors import FermapError
from .layout import data_dir as run_data_dir
from .layout import (
    fold_folder,
    landmarks_file,
    metrics_files,
    model_dir,
    model_file,
    profile_file,
    records_file,
    summary_file,
)
from .models import build_network, prepare_weights, spec
from .profiles import profile_folds, profile_networks


def epochs_for(name: str, prof: dict) -> int:
    """The paper's epochs for a network scaled by the profile (at least one), unless the profile's
    ``tune`` entry for the network sets ``epochs`` outright."""
    paper = spec(name)["paper"]["epochs"]
    if not paper:
        return 0  # a fixed network
    tuned = (prof.get("tune") or {}).get(name, {})
    if "epochs" in tuned:
        return int(tuned["epochs"])
    return max(1, int(round(paper * float(prof.get("epochs_scale", 1.0)))))


def size_for(name: str, prof: dict) -> int:
    """The input size a network trains at under a profile: its ``tune`` entry's ``input_size``,
    else the profile's cap, else the paper's."""
    from .models import input_size

    tuned = (prof.get("tune") or {}).get(name, {})
    return input_size(name, tuned.get("input_size", prof.get("input_size")))


def optimizer_for(name: str, prof: dict, pretrained: bool) -> tuple[str, float]:
    """The optimiser and learning rate a network trains with under a profile.

    The paper's setting, except: a network the paper fine-tuned from ImageNet that starts
    from scratch here uses the profile's ``scratch_learning_rate`` (the paper's rate is a
    fine-tuning rate); and a profile's ``tune: {Net: {optimizer, learning_rate}}`` wins over both.
    """
    s = spec(name)
    opt, lr = s["optimizer"]["name"], float(s["optimizer"]["learning_rate"])
    if s["paper"]["pretrained"] and not pretrained and prof.get("scratch_learning_rate"):
        lr = float(prof["scratch_learning_rate"])
    tuned = (prof.get("tune") or {}).get(name, {})
    return tuned.get("optimizer", opt), float(tuned.get("learning_rate", lr))


def _settings_key(name: str, fold: int, prof: dict, data_key: str) -> str:
    keep = {k: prof.get(k) for k in ("input_size", "epochs_scale", "batch_size", "seed", "imagenet",
                                     "scratch_learning_rate", "augment", "bn_momentum")}
    keep["tune"] = (prof.get("tune") or {}).get(name)
    if prof.get("run_eagerly"):  # only when set, so that runs made before the key existed stay valid
        keep["run_eagerly"] = True
    blob = json.dumps({"net": name, "fold": fold, "profile": keep, "data": data_key,
                       "spec": spec(name)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _progress_callback(bar):
    """A Keras callback that ticks a tqdm bar once per training batch."""
    import keras

    class Progress(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            bar.update(1)

    return Progress()


def set_bn_momentum(model, momentum: float) -> int:
    """Set the momentum of every BatchNormalization layer, nested models included; returns how many.

    With the few hundred steps of a CPU run, Keras' default (0.99) leaves the running
    statistics far from the data, and a network that fits its training set predicts one
    class at test time. A faster momentum fixes that (measured: MobileNetV3 from scratch).
    """
    import keras

    count = 0
    stack = [model]
    while stack:
        layer = stack.pop()
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum
            count += 1
        stack.extend(getattr(layer, "layers", []))
    return count


def seed_of(prof: dict, fold: int) -> int:
    """The seed of one (network, fold)'s training: the profile's seed and the fold, nothing else."""
    return int(prof.get("seed", 0)) * 1000 + int(fold)


class _ThreadRandom:
    """Stands in for the ``random`` module where Keras draws the seed of every unseeded
    initialiser and random layer: inside :func:`seeded`, a generator owned by that thread;
    anywhere else, the process-wide ``random`` as before."""

    local = threading.local()

    def __getattr__(self, name: str):
        rng = getattr(self.local, "rng", None)
        return getattr(random if rng is None else rng, name)


def _own_keras_default_seeds() -> None:
    # Keras 3 draws each unseeded initialiser's and layer's seed from Python's process-wide
    # ``random`` stream, which a Dask worker's event loop draws from concurrently (dask.sizeof's
    # random.sample): one such draw during a model's build changed its initial weights
    # (measured: README "Same results either way"). Its only reader is this module attribute.
    from keras.src.random import seed_generator

    if isinstance(seed_generator.python_random, _ThreadRandom):
        return
    if seed_generator.python_random is not random:  # a Keras that draws its seeds elsewhere
        raise RuntimeError("keras.src.random.seed_generator no longer draws default seeds from "
                           "`random`: fermap cannot make them private to a job; see training.seeded")
    seed_generator.python_random = _ThreadRandom()


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Within the block, every random stream a model's build and training draw from starts at
    ``seed`` and belongs to this thread: the result depends on ``seed`` alone.

    It seeds Python, NumPy, TensorFlow and Keras (``keras.utils.set_random_seed``) and makes
    TensorFlow's ops deterministic. Keras draws the seeds of unseeded initialisers and layers from
    Python's ``random``, which other threads of the process share (a Dask worker's event loop
    draws from it at any time); within the block they come from a ``random.Random(seed)`` of this
    thread instead, so a (network, fold) gives the same model whatever ran before it or beside it.

    Parameters
    ----------
    seed : int
        The seed, e.g. :func:`seed_of` a (profile, fold).

    Examples
    --------
    >>> import keras
    >>> with seeded(3):
    ...     a = keras.layers.Dense(2); a.build((None, 4))
    >>> with seeded(3):
    ...     b = keras.layers.Dense(2); b.build((None, 4))
    >>> bool((a.kernel.numpy() == b.kernel.numpy()).all())
    True
    """
    import keras
    import tensorflow as tf

    _own_keras_default_seeds()
    keras.utils.set_random_seed(int(seed))
    tf.config.experimental.enable_op_determinism()  # reductions on several threads in a fixed order
    previous = getattr(_ThreadRandom.local, "rng", None)
    _ThreadRandom.local.rng = random.Random(int(seed))
    try:
        yield
    finally:
        _ThreadRandom.local.rng = previous


_LAST_TRAINED: dict = {}
#: Models this process built or loaded for a job (train_fold, trained_model). A job that made
#: none left no Keras state, so executor.execute skips freeing it: a full garbage collection
#: costs seconds in a large process, and gathering a run's cached explanations is hundreds of jobs.
_MADE = {"models": 0}


def models_made() -> int:
    """How many models this process has built (:func:`train_fold`) or loaded
    (:func:`trained_model`) so far; :func:`fermap_utils.executor.execute` compares it around a job."""
    return _MADE["models"]


def _model_stamp(path: Path) -> tuple:
    st = path.stat()
    return str(path.resolve()), st.st_mtime_ns, st.st_size


def trained_model(run_dir: str | os.PathLike, name: str, fold: int):
    """The model a run trained for (network, fold): the one this process last trained or loaded if
    it is still the file on disk, else loaded (:func:`fermap_utils.models.load_trained`) and kept."""
    from .models import load_trained

    path = model_file(run_dir, name, fold)
    if not path.is_file():
        _MADE["models"] += 1
        return load_trained(run_dir, name, fold)  # a fixed network, or the error saying what is missing
    stamp = _model_stamp(path)
    if stamp not in _LAST_TRAINED:
        _MADE["models"] += 1
        model = load_trained(run_dir, name, fold)
        _LAST_TRAINED.clear()
        _LAST_TRAINED[stamp] = model
    return _LAST_TRAINED[stamp]


def inference_model(model):
    """The same layers and weights without the optimiser: what explanations need, a third of the
    disk of a model saved with Adam's two moment estimates (AlexNet: 0.13 GB instead of 0.4 GB)."""
    import keras

    return keras.Model(model.input, model.output, name=model.name)


def confusion(true: np.ndarray, pred: np.ndarray, n: int | None = None) -> np.ndarray:
    """Confusion matrix, rows = true class, columns = predicted class; ``n`` classes (the paper's six by default)."""
    n = len(expressions()) if n is None else int(n)
    out = np.zeros((n, n), dtype=int)
    np.add.at(out, (true, pred), 1)
    return out


def train_fold(name: str, data: Dataset, fold: int, prof: dict, out: Path, progress: bool = True) -> dict:
    """Train (or, for a fixed network, only evaluate) one network on one fold; write its results."""
    import keras
    from tqdm.auto import tqdm

    expressions = list(section("paper")["expressions"])
    seed = int(prof.get("seed", 0))
    fold = int(fold)
    imagenet = prof.get("imagenet", True)
    # Porting ImageNet weights (first use, empty cache) builds a throwaway model that draws from
    # the random state: do it first, then seed, so the model depends on its settings alone.
    prepare_weights(name, imagenet)
    # Everything random from the build to the predictions: the model's seeds, dropout, the
    # batches' shuffling (the augmentation has its own generator below)
    with seeded(seed_of(prof, fold)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _MADE["models"] += 1
            built = build_network(name, size=size_for(name, prof), imagenet=imagenet)
        notes = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        for note in notes:
            warnings.warn(note, RuntimeWarning, stacklevel=2)
        size = built.input_size
        images = resize_images(data.images, size)
        labels = data.table.expression.map({e: i for i, e in enumerate(expressions)}).to_numpy()
        test = (data.table.fold == fold).to_numpy()
        train = ~test
        history = []
        started = time.perf_counter()
        lr = opt_name = None
        if built.trainable:
            opt_name, lr = optimizer_for(name, prof, built.pretrained)
            if prof.get("bn_momentum") and not built.pretrained:
                set_bn_momentum(built.model, float(prof["bn_momentum"]))
            opt = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop}[opt_name]
            # run_eagerly: for a few steps, tracing a deep network's graph costs more than the steps
            built.model.compile(optimizer=opt(learning_rate=lr), loss="sparse_categorical_crossentropy",
                                metrics=["accuracy"], run_eagerly=bool(prof.get("run_eagerly", False)))
            epochs = epochs_for(name, prof)
            batch = int(prof.get("batch_size", 32))
            x_train, y_train = images[train], labels[train]
            marks = scale_landmarks(data.landmarks[train], data.images.shape[1], size)
            steps = -(-len(x_train) // batch)
            with tqdm(total=epochs * steps, desc=f"{name} fold {fold}", unit="batch", leave=False,
                      disable=not progress) as bar:
                for epoch in range(epochs):
                    rng = np.random.default_rng([seed, fold, epoch])
                    if prof.get("augment", True):
                        x_epoch = np.stack([random_augment(im, lm, rng)[0] for im, lm in zip(x_train, marks)])
                    else:
                        x_epoch = x_train
                    h = built.model.fit(x_epoch[..., None].astype("float32"), y_train, batch_size=batch, epochs=1,
                                        shuffle=True, verbose=0, callbacks=[_progress_callback(bar)])
                    history.append({"epoch": epoch + 1, **{k: float(v[-1]) for k, v in h.history.items()}})
        else:
            epochs = 0
        probs = built.model.predict(images[test][..., None].astype("float32"), batch_size=128, verbose=0)
    pred = probs.argmax(1)
    out.mkdir(parents=True, exist_ok=True)
    if built.trainable:
        with atomic_path(out / "model.keras") as tmp:
            inference_model(built.model).save(tmp)
        _LAST_TRAINED.clear()  # one model kept: a job that explains what it trained need not reload it
        _LAST_TRAINED[_model_stamp(out / "model.keras")] = inference_model(built.model)
    with atomic_path(out / "history.csv") as tmp:
        pd.DataFrame(history, columns=["epoch", "accuracy", "loss"] if not history else None).to_csv(tmp, index=False)
    table = pd.DataFrame({"id": data.table.id[test].to_numpy(), "true": labels[test], "pred": pred})
    for i, e in enumerate(expressions):
        table[f"p_{e}"] = probs[:, i]
    with atomic_path(out / "predictions.csv") as tmp:
        table.to_csv(tmp, index=False)
    result = {
        "network": name, "fold": fold, "input_size": size, "pretrained": built.pretrained,
        "weights": built.weights, "trained": built.trainable, "epochs": epochs, "optimizer": opt_name,
        "learning_rate": lr,
        "accuracy": float((pred == labels[test]).mean()), "n_train": int(train.sum()), "n_test": int(test.sum()),
        "confusion": confusion(labels[test], pred).tolist(), "seconds": round(time.perf_counter() - started, 1),
        "synthetic": bool(data.summary.get("synthetic")), "warnings": notes,
    }
    return result


def data_key(directory: Path) -> str:
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


def _run_data(run_dir: Path) -> Path:
    data_dir = run_data_dir(run_dir)
    if not records_file(data_dir).is_file():
        raise FermapError(f"{data_dir}: no dataset; build it first (fermap data build ... --out {data_dir})")
    return data_dir


@lru_cache(maxsize=2)
def _dataset(data_dir: str, key: str) -> Dataset:
    """A run's dataset, read once per process (and per content: ``key`` is its fingerprint)."""
    return load_dataset(data_dir)


def train_job(run_dir: str | os.PathLike, name: str, fold: int, prof: dict, progress: bool = False) -> dict:
    """One (network, fold) of a run: train it, or return its recorded result if it is complete.

    The unit of work of ``fermap train``, sequential or on Dask: it reads the run's dataset and
    writes only under ``RUN/models/<name>/fold<k>``, ``metrics.json`` last (its presence means
    the fold is complete). The returned dict is ``metrics.json`` plus ``cached`` (True when
    nothing was trained).
    """
    run_dir = Path(run_dir)
    data_dir = _run_data(run_dir)
    key = data_key(data_dir)
    out = model_dir(run_dir, name, fold)
    settings = _settings_key(name, int(fold), prof, key)
    done = out / "metrics.json"
    finished = json.loads(done.read_text()) if done.is_file() else {}
    if finished.get("settings") == settings:
        return {**finished, "cached": True}
    result = train_fold(name, _dataset(str(data_dir), key), int(fold), prof, out, progress)
    result["settings"] = settings
    with atomic_path(done) as tmp:  # written last: its presence means the fold is complete
        tmp.write_text(json.dumps(result, indent=1))
    return {**result, "cached": False}


def train_jobs(run_dir: str | os.PathLike, prof: dict) -> list[tuple[str, int]]:
    """The (network, fold) jobs of a profile on a run's dataset, in the profile's order."""
    data_dir = _run_data(Path(run_dir))
    table = pd.read_csv(records_file(data_dir), usecols=["fold"])
    available = sorted(int(f) for f in table.fold.unique())
    folds = profile_folds(prof, available)
    absent = [f for f in folds if f not in available]
    if absent:
        raise FermapError(f"profile {prof.get('name')}: key 'folds' = {prof.get('folds')!r}: no fold "
                          f"{', '.join(map(str, absent))} in {data_dir}; its folds: {', '.join(map(str, available))}")
    return [(n, int(f)) for n in profile_networks(prof) for f in folds]


def train_run(run_dir: str | os.PathLike, prof: dict, progress: bool = True, executor=None) -> pd.DataFrame:
    """Train every (network, fold) of a profile on the run's dataset (``RUN/data``), resuming.

    ``executor`` (:class:`fermap_utils.executor.Executor`) runs the jobs on Dask workers; by
    default they run one after the other in this process, through the same job function.
    Returns one row per (network, fold): accuracy, pretrained, input size, epochs, seconds.
    """
    from .executor import Executor, Job

    jobs = [Job("train", n, f) for n, f in train_jobs(run_dir, prof)]
    rows = (executor or Executor()).run(jobs, run_dir, prof, progress=progress, desc="training")
    return accuracy_table(rows)


def accuracy_table(rows: list[dict], full: bool = False) -> pd.DataFrame:
    """One row per (network, fold) with accuracy and what produced it (``full``: every recorded field)."""
    cols = ["network", "fold", "accuracy", "pretrained", "weights", "input_size", "epochs", "n_test", "seconds",
            "synthetic"]
    table = pd.DataFrame(rows)
    return table if full else table[cols]


def read_metrics(run_dir: str | os.PathLike, path: str | os.PathLike) -> dict:
    """One ``metrics.json`` of a run, checked: it lies inside the run, names a registered network
    and the folder it is in (``models/<network>/fold<k>``), with a plausible input size.

    A run folder may come from someone else; its names become paths, so they are checked first.
    """
    from ._io import inside
    from .models import registry

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
    """The accuracy table of a run, from its ``metrics.json`` files, in the profile's network order."""
    rows = [read_metrics(run_dir, p) for p in metrics_files(run_dir)]
    if not rows:
        raise FermapError(f"{run_dir}: no trained networks (run fermap train first)")
    order = {}
    run_json = profile_file(run_dir)
    if run_json.is_file():
        order = {n: i for i, n in enumerate(profile_networks(json.loads(run_json.read_text())))}
    rows.sort(key=lambda r: (order.get(r["network"], len(order)), r["network"], r["fold"]))
    return accuracy_table(rows, full)
