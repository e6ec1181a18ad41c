"""Every path of a run folder, named once.

::

    RUN/run.json                                    the profile the run was made with
    RUN/data/                                       the dataset (a dataset folder, below)
    RUN/models/<network>/fold<k>/                   one trained (network, fold):
        model.keras, history.csv, predictions.csv, metrics.json (written last)
        states/epoch<e>.keras                       the model after e epochs (the profile's `states`)
    RUN/states/<network>/fold<k>/epoch<e>/<method>.npz   each state's per-image standardised maps
    RUN/explanations/<network>/fold<k>/<Expression>.npz    LIME's cached explanations
    RUN/explanations_<method>/...                   another explainer's (cam, gradcam, extremal)
    RUN/heatmaps/heatmaps_by_cv/                    H_{n,t,c} (Eq. 1), the authors' file names
    RUN/heatmaps/heatmaps_by_net/                   H_{n,c} (Eq. 2)
    RUN/heatmaps/heatmaps_total/                    H_c (Eq. 2)
    RUN/heatmaps/summary.json                       counts, and the heatmaps that could not be made
    RUN/heatmaps_<method>/...                       the same for another explainer
    RUN/statistics/<name>/                          what the statistics chapter saves for the discussion
    RUN/jobs/<job>.log, <job>.json                  each executor job's output and timing
    RUN/attention/                                  the click-to-reveal sessions (chapter 12)

A dataset folder (``RUN/data`` or any ``fermap data build --out``)::

    DATA/records.csv, landmarks.npy, summary.json   one row per image, its 68 landmarks, the counts
    DATA/skipped.csv                                the images left out, and why
    DATA/images/                                    the aligned grey images
    DATA/truth/, DATA/planted/planted_maps.npz      the synthetic set's true change maps and planted signal
    DATA/planted/discriminative_maps.npz            its discriminative truth, cached on first use

The authors' published heatmaps (``book/data/authors``): ``REF/gray/heatmaps_{by_cv,by_net,total}``.

A run folder may come from someone else: every path under ``models``, ``explanations*`` and
``heatmaps*`` is checked to stay inside the run (:func:`fermap_utils._io.inside`), so a name read
from its files or a symbolic link there never reaches a file outside it. ``data``, ``run.json``,
``statistics`` and ``jobs`` are plain paths: a dataset may be linked in from elsewhere.
"""
from __future__ import annotations

import os
from pathlib import Path

from ._io import inside
from .config import section
from .errors import FermapError

PROFILE_FILE = "run.json"
DATA = "data"
MODELS = "models"
STATISTICS = "statistics"
JOBS = "jobs"
ATTENTION = "attention"
#: The explanations of the trained networks' earlier states (:mod:`fermap_utils.states`).
STATES = "states"
#: A dataset folder's files.
RECORDS, LANDMARKS, SUMMARY, SKIPPED, IMAGES = "records.csv", "landmarks.npy", "summary.json", "skipped.csv", "images"
TRUTH, PLANTED, PLANTED_MAPS = "truth", "planted", "planted_maps.npz"
#: The discriminative-truth maps, computed from the images on first use (:mod:`fermap_utils.groundtruth`).
DISCRIMINATIVE_MAPS = "discriminative_maps.npz"
#: The three heatmap folders of a method, as the authors named them: per fold, per network, per class.
HEATMAP_GROUPS: tuple[str, str, str] = ("heatmaps_by_cv", "heatmaps_by_net", "heatmaps_total")
#: The paper's explainer: its folders are plain ``explanations`` and ``heatmaps``, every other's carry
#: its name. The explainers themselves are ``config.yaml``'s ``explainers`` (:mod:`fermap_utils.explainers`).
PAPER_METHOD = "lime"


def method_folders(method: str = PAPER_METHOD) -> tuple[str, str]:
    """Where a method's explanations and heatmaps live in a run.

    Parameters
    ----------
    method : str
        One of the explainers (``config.yaml``, ``explainers``; :mod:`fermap_utils.explainers`).

    Returns
    -------
    (str, str)
        The paper's explainer (:data:`PAPER_METHOD`): ``explanations`` and ``heatmaps``;
        another: ``explanations_<method>`` and ``heatmaps_<method>``.

    Raises
    ------
    FermapError
        For an unknown method.

    Examples
    --------
    >>> method_folders("lime"), method_folders("cam")
    (('explanations', 'heatmaps'), ('explanations_cam', 'heatmaps_cam'))
    """
    names = list(section("explainers"))
    if method not in names:
        raise FermapError(f"unknown explanation method {method!r}; one of {', '.join(names)}")
    return ("explanations", "heatmaps") if method == PAPER_METHOD else (f"explanations_{method}", f"heatmaps_{method}")


def fold_folder(fold: int) -> str:
    """The folder name of a fold: ``fold<k>``.

    Parameters
    ----------
    fold : int
        The fold, from 1.

    Returns
    -------
    str

    Examples
    --------
    >>> fold_folder(3)
    'fold3'
    """
    return f"fold{int(fold)}"


def profile_file(run_dir: str | os.PathLike) -> Path:
    """``RUN/run.json``: the profile the run was made with.

    Parameters
    ----------
    run_dir : path
        The run folder.

    Returns
    -------
    Path
    """
    return inside(run_dir, PROFILE_FILE)


def data_dir(run_dir: str | os.PathLike) -> Path:
    """``RUN/data``: the run's dataset.

    Parameters
    ----------
    run_dir : path
        The run folder.

    Returns
    -------
    Path
    """
    return inside(run_dir, DATA)


def model_dir(run_dir: str | os.PathLike, network: str, fold: int) -> Path:
    """``RUN/models/<network>/fold<k>``: one trained (network, fold).

    Parameters
    ----------
    run_dir : path
        The run folder.
    network : str
        The network's name, as in the run's file names.
    fold : int
        The fold, from 1.

    Returns
    -------
    Path
    """
    return inside(run_dir, MODELS, network, fold_folder(fold))


def model_file(run_dir: str | os.PathLike, network: str, fold: int) -> Path:
    """``RUN/models/<network>/fold<k>/model.keras`` (none for a fixed network).

    Parameters
    ----------
    run_dir : path
        The run folder.
    network : str
        The network's name, as in the run's file names.
    fold : int
        The fold, from 1.

    Returns
    -------
    Path
    """
    return inside(model_dir(run_dir, network, fold), "model.keras")


def state_model_file(run_dir: str | os.PathLike, network: str, fold: int, epoch: int) -> Path:
    """``RUN/models/<network>/fold<k>/states/epoch<e>.keras``: the model after ``e`` epochs of training
    (0: before any), one of the states a profile's ``states`` keeps (:mod:`fermap_utils.training`).

    Parameters
    ----------
    run_dir : path
        The run folder.
    network : str
        The network's name, as in the run's file names.
    fold : int
        The fold, from 1.
    epoch : int
        Epochs trained.

    Returns
    -------
    Path

    Examples
    --------
    >>> state_model_file("RUN", "SongNet", 1, 5).as_posix()
    'RUN/models/SongNet/fold1/states/epoch5.keras'
    """
    return inside(model_dir(run_dir, network, fold), STATES, f"epoch{int(epoch)}.keras")


def state_maps_file(run_dir: str | os.PathLike, network: str, fold: int, epoch: int, method: str) -> Path:
    """``RUN/states/<network>/fold<k>/epoch<e>/<method>.npz``: one state's per-image standardised maps by
    one explainer (:func:`fermap_utils.states.explain_states`).

    Parameters
    ----------
    run_dir : path
        The run folder.
    network : str
        The network's name, as in the run's file names.
    fold : int
        The fold, from 1.
    epoch : int
        Epochs trained (the final model: the network's epochs).
    method : str
        An explainer (:func:`method_folders`).

    Returns
    -------
    Path

    Examples
    --------
    >>> state_maps_file("RUN", "SongNet", 1, 0, "gradcam").as_posix()
    'RUN/states/SongNet/fold1/epoch0/gradcam.npz'
    """
    method_folders(method)  # an unknown method is refused here, as everywhere
    return inside(run_dir, STATES, network, fold_folder(fold), f"epoch{int(epoch)}", f"{method}.npz")


def metrics_file(run_dir: str | os.PathLike, network: str, fold: int) -> Path:
    """``RUN/models/<network>/fold<k>/metrics.json``, written last: the fold is complete.

    Parameters
    ----------
    run_dir : path
        The run folder.
    network : str
        The network's name, as in the run's file names.
    fold : int
        The fold, from 1.

    Returns
    -------
    Path
    """
    return inside(model_dir(run_dir, network, fold), "metrics.json")


def predictions_file(run_dir: str | os.PathLike, network: str, fold: int) -> Path:
    """``RUN/models/<network>/fold<k>/predictions.csv``: the test images' ids, labels and probabilities.

    Parameters
    ----------
    run_dir : path
        The run folder.
    network : str
        The network's name, as in the run's file names.
    fold : int
        The fold, from 1.

    Returns
    -------
    Path
    """
    return inside(model_dir(run_dir, network, fold), "predictions.csv")


def history_file(run_dir: str | os.PathLike, network: str, fold: int) -> Path:
    """``RUN/models/<network>/fold<k>/history.csv``: accuracy and loss per epoch.

    Parameters
    ----------
    run_dir : path
        The run folder.
    network : str
        The network's name, as in the run's file names.
    fold : int
        The fold, from 1.

    Returns
    -------
    Path
    """
    return inside(model_dir(run_dir, network, fold), "history.csv")


def metrics_files(run_dir: str | os.PathLike) -> list[Path]:
    """Every ``metrics.json`` of a run, sorted: the completed (network, fold)s.

    Parameters
    ----------
    run_dir : path
        The run folder.

    Returns
    -------
    list of Path
    """
    return sorted(Path(run_dir).glob(f"{MODELS}/*/fold*/metrics.json"))


def explanations_dir(run_dir: str | os.PathLike, method: str = PAPER_METHOD) -> Path:
    """``RUN/explanations`` (LIME) or ``RUN/explanations_<method>``.

    Parameters
    ----------
    run_dir : path
        The run folder.
    method : str
        ``lime`` (the paper's) or another explainer (:func:`method_folders`).

    Returns
    -------
    Path
    """
    return inside(run_dir, method_folders(method)[0])


def class_file(run_dir: str | os.PathLike, network: str, fold: int, expression: str,
               method: str = PAPER_METHOD) -> Path:
    """``RUN/explanations[_<method>]/<network>/fold<k>/<Expression>.npz``: one class's cached explanations.

    Parameters
    ----------
    run_dir : path
        The run folder.
    network : str
        The network's name, as in the run's file names.
    fold : int
        The fold, from 1.
    expression : str
        One of the six expressions.
    method : str
        ``lime`` (the paper's) or another explainer (:func:`method_folders`).

    Returns
    -------
    Path
    """
    return inside(run_dir, method_folders(method)[0], network, fold_folder(fold), f"{expression}.npz")


def class_files(run_dir: str | os.PathLike, method: str = PAPER_METHOD) -> list[tuple[str, int, str, Path]]:
    """Every cached class file of a method in a run, sorted.

    Parameters
    ----------
    run_dir : path
        The run folder.
    method : str
        ``lime`` (the paper's) or another explainer (:func:`method_folders`).

    Returns
    -------
    list of ``(network, fold, expression, path)``
    """
    folder = explanations_dir(run_dir, method)
    return [(p.parent.parent.name, int(p.parent.name[len("fold"):]), p.stem, p)
            for p in sorted(folder.glob("*/fold*/*.npz"))]


def heatmaps_dir(run_dir: str | os.PathLike, method: str = PAPER_METHOD) -> Path:
    """``RUN/heatmaps`` (LIME) or ``RUN/heatmaps_<method>``.

    Parameters
    ----------
    run_dir : path
        The run folder.
    method : str
        ``lime`` (the paper's) or another explainer (:func:`method_folders`).

    Returns
    -------
    Path
    """
    return inside(run_dir, method_folders(method)[1])


def heatmap_group_dir(run_dir: str | os.PathLike, group: str = "heatmaps_by_cv", method: str = PAPER_METHOD) -> Path:
    """One of a method's three heatmap folders (:data:`HEATMAP_GROUPS`).

    ``heatmaps_by_cv`` holds H_{n,t,c}, ``heatmaps_by_net`` H_{n,c}, ``heatmaps_total`` H_c.

    Parameters
    ----------
    run_dir : path
        The run folder.
    group : str
        One of :data:`HEATMAP_GROUPS`.
    method : str
        ``lime`` (the paper's) or another explainer (:func:`method_folders`).

    Returns
    -------
    Path
    """
    if group not in HEATMAP_GROUPS:
        raise FermapError(f"unknown heatmap folder {group!r}; one of {', '.join(HEATMAP_GROUPS)}")
    return inside(run_dir, method_folders(method)[1], group)


def heatmaps_summary_file(run_dir: str | os.PathLike, method: str = PAPER_METHOD) -> Path:
    """``RUN/heatmaps[_<method>]/summary.json``: networks, folds, counts and missing heatmaps.

    Parameters
    ----------
    run_dir : path
        The run folder.
    method : str
        ``lime`` (the paper's) or another explainer (:func:`method_folders`).

    Returns
    -------
    Path
    """
    return inside(heatmaps_dir(run_dir, method), "summary.json")


def statistics_dir(run_dir: str | os.PathLike, name: str) -> Path:
    """``RUN/statistics/<name>``: a result the statistics chapter saves for the discussion.

    Parameters
    ----------
    run_dir : path
        The run folder.
    name : str
        The result's name.

    Returns
    -------
    Path
    """
    return inside(run_dir, STATISTICS, name)


def jobs_dir(run_dir: str | os.PathLike) -> Path:
    """``RUN/jobs``: each executor job's log (``<job>.log``) and record (``<job>.json``).

    Parameters
    ----------
    run_dir : path
        The run folder.

    Returns
    -------
    Path
    """
    return inside(run_dir, JOBS)


def job_files(run_dir: str | os.PathLike, job: str) -> tuple[Path, Path]:
    """``RUN/jobs/<job>.json`` and ``RUN/jobs/<job>.log``: a job's record and its log.

    Parameters
    ----------
    run_dir : path
        The run folder.
    job : str
        The job's name.

    Returns
    -------
    record, log : Path
        Each refused in one line if it leads out of the run (a link planted in ``jobs/``).
    """
    return inside(run_dir, JOBS, f"{job}.json"), inside(run_dir, JOBS, f"{job}.log")


def attention_dir(run_dir: str | os.PathLike) -> Path:
    """``RUN/attention``: the click-to-reveal sessions a reader saves (chapter 12).

    Parameters
    ----------
    run_dir : path
        The run folder.

    Returns
    -------
    Path
    """
    return inside(run_dir, ATTENTION)


def check_run_folder(run_dir: str | os.PathLike, methods: tuple[str, ...] = (PAPER_METHOD,)) -> None:
    """Refuse, in one line, a run folder whose own entries lead out of it, before anything is read or
    written there: ``run.json``, ``data/``, ``models/``, ``jobs/``, ``statistics/``, ``attention/``, ``states/`` and
    each method's explanations and heatmaps folders (a symbolic link to elsewhere is refused).

    Parameters
    ----------
    run_dir : path-like
        The run folder; one that does not exist yet passes.
    methods : tuple of str
        The explainers whose folders are checked.

    Returns
    -------
    None
        Raises :class:`~fermap_utils.errors.FermapError` on the first entry that leads out.
    """
    if not Path(run_dir).exists():
        return
    for name in (PROFILE_FILE, DATA, MODELS, JOBS, STATISTICS, ATTENTION, STATES):
        inside(run_dir, name)
    for method in methods:
        for folder in method_folders(method):
            inside(run_dir, folder)


def records_file(data_dir: str | os.PathLike) -> Path:
    """``DATA/records.csv``: one row per image (id, image, source, subject, dataset, expression, fold).

    Parameters
    ----------
    data_dir : path
        A built dataset folder (``RUN/data``, or one of ``fermap data build``).

    Returns
    -------
    Path

    Examples
    --------
    >>> records_file("runs/smoke/data").as_posix()
    'runs/smoke/data/records.csv'
    """
    return inside(data_dir, RECORDS)


def landmarks_file(data_dir: str | os.PathLike) -> Path:
    """``DATA/landmarks.npy``: the images' 68 landmarks, in the records' order.

    Parameters
    ----------
    data_dir : path
        A built dataset folder (``RUN/data``, or one of ``fermap data build``).

    Returns
    -------
    Path
    """
    return inside(data_dir, LANDMARKS)


def summary_file(data_dir: str | os.PathLike) -> Path:
    """``DATA/summary.json``: the dataset's counts and where it came from.

    Parameters
    ----------
    data_dir : path
        A built dataset folder (``RUN/data``, or one of ``fermap data build``).

    Returns
    -------
    Path
    """
    return inside(data_dir, SUMMARY)


def skipped_file(data_dir: str | os.PathLike) -> Path:
    """``DATA/skipped.csv``: the images left out, and why.

    Parameters
    ----------
    data_dir : path
        A built dataset folder (``RUN/data``, or one of ``fermap data build``).

    Returns
    -------
    Path
    """
    return inside(data_dir, SKIPPED)


def images_dir(data_dir: str | os.PathLike) -> Path:
    """``DATA/images``: the aligned grey images.

    Parameters
    ----------
    data_dir : path
        A built dataset folder (``RUN/data``, or one of ``fermap data build``).

    Returns
    -------
    Path
    """
    return inside(data_dir, IMAGES)


def truth_dir(data_dir: str | os.PathLike) -> Path:
    """``DATA/truth``: each synthetic image's true change map (same file name as the image).

    Parameters
    ----------
    data_dir : path
        A built dataset folder (``RUN/data``, or one of ``fermap data build``).

    Returns
    -------
    Path
    """
    return inside(data_dir, TRUTH)


def planted_dir(data_dir: str | os.PathLike) -> Path:
    """``DATA/planted``: each class's planted-signal map on the standard face (synthetic set).

    Parameters
    ----------
    data_dir : path
        A built dataset folder (``RUN/data``, or one of ``fermap data build``).

    Returns
    -------
    Path
    """
    return inside(data_dir, PLANTED)


def planted_file(data_dir: str | os.PathLike) -> Path:
    """``DATA/planted/planted_maps.npz``: the planted-signal maps, one array per class.

    Parameters
    ----------
    data_dir : path
        A built dataset folder (``RUN/data``, or one of ``fermap data build``).

    Returns
    -------
    Path
    """
    return planted_dir(data_dir) / PLANTED_MAPS


def discriminative_file(data_dir: str | os.PathLike) -> Path:
    """``DATA/planted/discriminative_maps.npz``: the discriminative-truth maps, one array per class.

    Beside the planted maps, so that a rebuilt dataset (which empties ``planted/``) never keeps them.

    Parameters
    ----------
    data_dir : path
        A built dataset folder (``RUN/data``, or one of ``fermap data build``).

    Returns
    -------
    Path
    """
    return planted_dir(data_dir) / DISCRIMINATIVE_MAPS


def authors_heatmaps_dir(reference: str | os.PathLike, group: str = "heatmaps_by_cv") -> Path:
    """``REF/gray/<group>``: one of the authors' three published heatmap folders (:data:`HEATMAP_GROUPS`).

    Parameters
    ----------
    reference : path
        The authors' published outputs (``book/data/authors``).
    group : str
        ``heatmaps_by_cv``, ``heatmaps_by_net`` or ``heatmaps_total``.

    Returns
    -------
    Path

    Raises
    ------
    FermapError
        On another folder name.

    Examples
    --------
    >>> authors_heatmaps_dir("book/data/authors", "heatmaps_total").as_posix()
    'book/data/authors/gray/heatmaps_total'
    """
    if group not in HEATMAP_GROUPS:
        raise FermapError(f"unknown heatmap folder {group!r}; one of {', '.join(HEATMAP_GROUPS)}")
    return Path(reference) / "gray" / group


#: What each part of a run folder is (glob patterns), for deciding which chapters must rerun.
RUN_PARTS: dict[str, list[str]] = {
    "profile": [PROFILE_FILE],
    "data": [f"{DATA}/{SUMMARY}", f"{DATA}/{RECORDS}"],
    "models": [f"{MODELS}/*/fold*/metrics.json"],
    "explanations": ["heatmaps/summary.json", "heatmaps/*/*.png"],  # derived from every explanation
    "methods": ["heatmaps_*/summary.json", "heatmaps_*/*/*.png"],
    "statistics": [f"{STATISTICS}/*/*"],
    "states": [f"{STATES}/*/fold*/epoch*/*.npz"],
}
