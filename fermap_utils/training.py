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
from pathlib import Path

import numpy as np
import pandas as pd
import tqdm.auto

from ._io import atomic_path
from .augment import random_augment
from .config import expressions, section
from .data import Dataset, resize_images, scale_landmarks
from .errors import FermapError
from .executor import Executor, Job
from .layout import (
    history_file,
    metrics_file,
    model_dir,
    model_file,
    predictions_file,
    records_file,
    state_model_file,
)
from .models import build_network, epochs_for, load_trained, optimizer_for, prepare_weights, size_for, spec
from .profiles import profile_folds, profile_networks
from .rundata import (
    accuracy_table,
    cached_dataset,
    count_model,
    data_key,
    inference_model,
    keep_trained,
    models_made,
    run_data_folder,
)


def _settings_key(name: str, fold: int, prof: dict, data_key: str) -> str:
    keep = {k: prof.get(k) for k in ("input_size", "epochs_scale", "batch_size", "seed", "imagenet",
                                     "scratch_learning_rate", "augment", "bn_momentum")}
    keep["tune"] = (prof.get("tune") or {}).get(name)
    if prof.get("run_eagerly"):  # only when set, so that runs made before the key existed stay valid
        keep["run_eagerly"] = True
    if prof.get("states"):  # likewise: a run made without states is retrained once to keep them
        keep["states"] = [float(f) for f in prof["states"]]
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


def state_epochs(fractions: list[float] | tuple[float, ...] | None, epochs: int) -> list[int]:
    """The epochs after which a network's states are kept: each fraction of its ``epochs``, rounded,
    once each, the final model (``epochs``) left out (it is the run's model).

    Parameters
    ----------
    fractions : list of float in [0, 1)
        The profile's ``states`` (0: before any training).
    epochs : int
        The network's epochs.

    Returns
    -------
    list of int
        Sorted epoch counts below ``epochs``.

    Examples
    --------
    >>> state_epochs([0, 0.1, 0.3], 50), state_epochs([0, 0.1, 0.3], 2), state_epochs([0.5], 0)
    ([0, 5, 15], [0], [])
    """
    return sorted({int(round(float(f) * int(epochs))) for f in fractions or []} - {int(epochs)}
                  if epochs else set())


def confusion(true: np.ndarray, pred: np.ndarray, n: int | None = None) -> np.ndarray:
    """Confusion matrix, rows = true class, columns = predicted class; ``n`` classes (the paper's six by default)."""
    n = len(expressions()) if n is None else int(n)
    out = np.zeros((n, n), dtype=int)
    np.add.at(out, (true, pred), 1)
    return out


def train_fold(name: str, data: Dataset, fold: int, prof: dict, run_dir: str | os.PathLike,
               progress: bool = True) -> dict:
    """Train (or, for a fixed network, only evaluate) one network on one fold; write its results
    (model, history, predictions) under the run's ``models/<name>/fold<k>``; return its metrics."""
    import keras

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
            count_model()
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
            # the states' weights, copied as training passes them (no random draw: the final model is
            # the one trained without states); made into models after the final one is saved
            keep_at = state_epochs(prof.get("states"), epochs)
            kept = {0: inference_model(built.model).get_weights()} if 0 in keep_at else {}
            with tqdm.auto.tqdm(total=epochs * steps, desc=f"{name} fold {fold}", unit="batch", leave=False,
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
                    if epoch + 1 in keep_at:
                        kept[epoch + 1] = inference_model(built.model).get_weights()
        else:
            epochs, kept = 0, {}
        probs = built.model.predict(images[test][..., None].astype("float32"), batch_size=128, verbose=0)
    pred = probs.argmax(1)
    model_dir(run_dir, name, fold).mkdir(parents=True, exist_ok=True)
    if built.trainable:
        with atomic_path(model_file(run_dir, name, fold)) as tmp:
            inference_model(built.model).save(tmp)
        # one model kept: a job that explains what it trained need not reload it
        keep_trained(model_file(run_dir, name, fold), inference_model(built.model))
    states = save_states(run_dir, name, fold, kept, images[test], labels[test]) if kept else []
    with atomic_path(history_file(run_dir, name, fold)) as tmp:
        pd.DataFrame(history, columns=["epoch", "accuracy", "loss"] if not history else None).to_csv(tmp, index=False)
    table = pd.DataFrame({"id": data.table.id[test].to_numpy(), "true": labels[test], "pred": pred})
    for i, e in enumerate(expressions):
        table[f"p_{e}"] = probs[:, i]
    with atomic_path(predictions_file(run_dir, name, fold)) as tmp:
        table.to_csv(tmp, index=False)
    result = {
        "network": name, "fold": fold, "input_size": size, "pretrained": built.pretrained,
        "weights": built.weights, "trained": built.trainable, "epochs": epochs, "optimizer": opt_name,
        "learning_rate": lr,
        "accuracy": float((pred == labels[test]).mean()), "n_train": int(train.sum()), "n_test": int(test.sum()),
        "confusion": confusion(labels[test], pred).tolist(), "seconds": round(time.perf_counter() - started, 1),
        "synthetic": bool(data.summary.get("synthetic")), "warnings": notes,
    }
    if states:
        result["states"] = states
    return result


def save_states(run_dir: str | os.PathLike, name: str, fold: int, weights: dict[int, list[np.ndarray]],
                images: np.ndarray, labels: np.ndarray) -> list[dict]:
    """Save a network's earlier states beside its final model and measure each on the fold's test set.

    Each state is the final model (``model.keras``, already saved) loaded afresh with that state's
    weights: the final model in memory is not touched.

    Parameters
    ----------
    run_dir : path
        The run folder.
    name : str
        The network.
    fold : int
        The fold, from 1.
    weights : dict
        ``epochs trained -> the inference model's weights`` (``get_weights()``) at that point.
    images : (N, s, s) array
        The fold's test images at the network's input size.
    labels : (N,) int
        Their true classes.

    Returns
    -------
    list of dict
        One per state, by epoch: ``epoch``, ``accuracy`` (on the test images), ``file`` (relative
        to the model's folder).
    """
    rows = []
    for epoch, state in sorted(weights.items()):
        model = load_trained(run_dir, name, fold)
        model.set_weights(state)
        probs = model.predict(images[..., None].astype("float32"), batch_size=128, verbose=0)
        path = state_model_file(run_dir, name, fold, epoch)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            model.save(tmp)
        rows.append({"epoch": int(epoch), "accuracy": float((probs.argmax(1) == labels).mean()),
                     "file": path.relative_to(model_dir(run_dir, name, fold)).as_posix()})
    return rows


def train_job(run_dir: str | os.PathLike, name: str, fold: int, prof: dict, progress: bool = False) -> dict:
    """One (network, fold) of a run: train it, or return its recorded result if it is complete.

    The unit of work of ``fermap train``, sequential or on Dask: it reads the run's dataset and
    writes only under ``RUN/models/<name>/fold<k>``, ``metrics.json`` last (its presence means
    the fold is complete). The returned dict is ``metrics.json`` plus ``cached`` (True when
    nothing was trained).
    """
    run_dir = Path(run_dir)
    data_dir = run_data_folder(run_dir)
    key = data_key(data_dir)
    settings = _settings_key(name, int(fold), prof, key)
    done = metrics_file(run_dir, name, fold)
    finished = json.loads(done.read_text()) if done.is_file() else {}
    if finished.get("settings") == settings:
        return {**finished, "cached": True}
    result = train_fold(name, cached_dataset(str(data_dir), key), int(fold), prof, run_dir, progress)
    result["settings"] = settings
    with atomic_path(done) as tmp:  # written last: its presence means the fold is complete
        tmp.write_text(json.dumps(result, indent=1))
    return {**result, "cached": False}


def train_task(run_dir: str | os.PathLike, name: str, fold: int, prof: dict) -> dict:
    """A ``train`` job of the executor (:class:`fermap_utils.executor.Job`): :func:`train_job`
    without progress bars, and a line saying whether it trained, in the job's log.

    Parameters
    ----------
    run_dir : path
        The run folder.
    name : str
        The network.
    fold : int
        The fold, from 1.
    prof : dict
        The run's profile.

    Returns
    -------
    dict
        :func:`train_job`'s result, ``cached`` included.
    """
    started = time.perf_counter()
    result = train_job(run_dir, name, fold, prof, progress=False)
    print(f"train: {'cached' if result['cached'] else 'trained'}, {time.perf_counter() - started:.2f} s", flush=True)
    return result


def training_job(name: str, fold: int) -> Job:
    """The executor's job that trains one (network, fold) (:func:`train_task`).

    Parameters
    ----------
    name : str
        The network.
    fold : int
        The fold, from 1.

    Returns
    -------
    Job
        ``train-<name>-fold<k>``.
    """
    return Job("train", name, fold, func=train_task, args=(name, fold), models_made=models_made)


def train_jobs(run_dir: str | os.PathLike, prof: dict) -> list[tuple[str, int]]:
    """The (network, fold) jobs of a profile on a run's dataset, in the profile's order."""
    data_dir = run_data_folder(run_dir)
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
    jobs = [training_job(n, f) for n, f in train_jobs(run_dir, prof)]
    rows = (executor or Executor()).run(jobs, run_dir, prof, progress=progress, desc="training")
    return accuracy_table(rows)
