"""Folders of heatmaps in the authors' layout, loaded and scored: ``fermap score`` (the paper's
Tables 3 and 4) and ``fermap similarity`` (1 - NCC and the dendrograms); and the paper's own
Tables 3 and 4, read from the reference folder and laid out beside a run's.

A folder holds ``{Net}_CV{k}_{Expression}_heatmap.png`` (per fold) or
``{Net}_{Expression}_heatmap.png`` (per network) files (:func:`fermap_utils.heatmaps.heatmap_filename`),
as the authors published theirs and as a run writes its own
(:func:`fermap_utils.explanations.write_run_heatmaps`); masks are ``{Expression}_gt.png``.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ._io import read_gray
from .config import display_name, expressions, paper
from .errors import FermapError
from .heatmaps import CANVAS_SHAPE, heatmap_filename, load_heatmap, parse_heatmap_filename
from .masks import ekman_masks
from .metrics import METRICS, distance_matrix, score_table


def _warn_other_expressions(directory: Path, paths: list[Path], expressions) -> None:
    """Say which heatmap files were left out for naming an expression outside the six."""
    if paths:
        names = ", ".join(p.name for p in paths[:5]) + (f" (and {len(paths) - 5} more)" if len(paths) > 5 else "")
        warnings.warn(f"{directory}: ignored {len(paths)} heatmap(s) of an expression outside "
                      f"{', '.join(expressions)}: {names}", RuntimeWarning, stacklevel=3)


def _check_names(directory: Path, networks) -> None:
    """Refuse a folder where two file names stand for one network under the paper's names
    (``MobileNetV3Large_*`` beside ``MobileNetV3_*``): one set would silently replace the other."""
    by_paper: dict[str, list[str]] = {}
    for n in sorted(set(networks)):
        by_paper.setdefault(display_name(n), []).append(n)
    clash = {p: ns for p, ns in by_paper.items() if len(ns) > 1}
    if clash:
        p, ns = next(iter(clash.items()))
        raise FermapError(f"{directory}: heatmaps of {' and '.join(ns)} are both the paper's {p}; "
                          "keep one set of files in the folder")


def _require_dir(directory: Path) -> Path:
    directory = Path(directory)
    if not directory.is_dir():
        raise FermapError(f"{directory}: no such folder")
    return directory


def load_fold_heatmaps(
    directory: str | os.PathLike, expressions: list[str] | tuple[str, ...], allow_missing: bool = False
) -> dict[tuple[str, int, str], np.ndarray]:
    """Load a folder of ``{Net}_CV{k}_{Expression}_heatmap.png`` files.

    Every network must have the same folds, and every (network, fold) all the
    expressions; otherwise the error says which are missing. With
    ``allow_missing`` the gaps are listed in a warning instead, and only what
    exists is returned.

    Parameters
    ----------
    directory : path
        The folder (other files in it are ignored).
    expressions : sequence of str
        The expressions to load.
    allow_missing : bool, optional
        Warn about gaps (``RuntimeWarning``) instead of failing.

    Returns
    -------
    dict ``(network, fold, expression) -> uint8 heatmap``, networks named as in the files.

    Raises
    ------
    FermapError
        For a missing folder, no heatmaps, a gap (unless ``allow_missing``) or a bad file.
    """
    directory = _require_dir(Path(directory))
    found: dict[tuple[str, int, str], Path] = {}
    others = []
    for path in sorted(directory.iterdir()):
        key = parse_heatmap_filename(path.name)
        if key is None or key.fold is None:
            continue
        if key.expression not in expressions:
            others.append(path)
        else:
            found[(key.network, key.fold, key.expression)] = path
    _warn_other_expressions(directory, others, expressions)
    if not found:
        raise FermapError(f"{directory}: no heatmaps named {{Net}}_CV{{k}}_{{Expression}}_heatmap.png")
    nets = sorted({k[0] for k in found})
    _check_names(directory, nets)
    folds = sorted({k[1] for k in found})
    missing = [
        heatmap_filename(e, n, f) for n in nets for f in folds for e in expressions if (n, f, e) not in found
    ]
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        message = f"{directory}: incomplete heatmap set, missing {', '.join(missing[:5])}{more}"
        if not allow_missing:
            raise FermapError(message + " (score what exists with --allow-missing)")
        warnings.warn(message + "; scored without them", RuntimeWarning, stacklevel=2)
    return {key: load_heatmap(path) for key, path in found.items() if key[2] in expressions}


def load_network_heatmaps(
    directory: str | os.PathLike, expressions: list[str] | tuple[str, ...]
) -> dict[tuple[str, str], np.ndarray]:
    """Load a folder of by-network heatmaps ``{Net}_{Expression}_heatmap.png``.

    Parameters
    ----------
    directory : path
        The folder (per-fold heatmaps and other files in it are ignored).
    expressions : sequence of str
        The expressions every network must have.

    Returns
    -------
    dict ``(network, expression) -> uint8 heatmap``.

    Raises
    ------
    FermapError
        For a missing folder, no heatmaps, a missing (network, expression) or a bad file.
    """
    directory = _require_dir(Path(directory))
    found: dict[tuple[str, str], Path] = {}
    others = []
    for path in sorted(directory.iterdir()):
        key = parse_heatmap_filename(path.name)
        if key is None or key.network is None or key.fold is not None:
            continue
        if key.expression in expressions:
            found[(key.network, key.expression)] = path
        else:
            others.append(path)
    _warn_other_expressions(directory, others, expressions)
    if not found:
        raise FermapError(f"{directory}: no heatmaps named {{Net}}_{{Expression}}_heatmap.png")
    nets = sorted({k[0] for k in found})
    _check_names(directory, nets)
    missing = [heatmap_filename(e, n) for n in nets for e in expressions if (n, e) not in found]
    if missing:
        raise FermapError(f"{directory}: incomplete heatmap set, missing {', '.join(missing)}")
    return {(n, e): load_heatmap(found[(n, e)]) for n in nets for e in expressions}


def load_masks(directory: str | os.PathLike, expressions: list[str] | tuple[str, ...]) -> dict[str, np.ndarray]:
    """Load ``{Expression}_gt.png`` masks (white = mask) as booleans.

    Parameters
    ----------
    directory : path
        The folder holding the masks, 224x275 grey PNGs.
    expressions : sequence of str
        The expressions to load.

    Returns
    -------
    masks : dict of str to (275, 224) bool array
        True where the image is above 127.

    Raises
    ------
    FermapError
        For a missing folder or file, a wrong size or an empty mask.
    """
    directory = _require_dir(Path(directory))
    masks = {}
    for e in expressions:
        path = directory / f"{e}_gt.png"
        image = read_gray(path, CANVAS_SHAPE)
        if not image.any():
            raise FermapError(f"{path}: empty mask")
        masks[e] = image > 127
    return masks


def score_folder(
    directory: str | os.PathLike, mask_directory: str | os.PathLike | None = None, allow_missing: bool = False
) -> pd.DataFrame:
    """Tables 3 and 4 from a folder of per-fold heatmaps (``fermap score``).

    Parameters
    ----------
    directory : path
        A folder of ``{Net}_CV{k}_{Expression}_heatmap.png`` files.
    mask_directory : path, optional
        A folder of ``{Expression}_gt.png`` masks; fermap's own Ekman masks by default.
    allow_missing : bool, optional
        Score what exists: a (network, expression) averages over the folds it has.

    Returns
    -------
    DataFrame
        :func:`~fermap_utils.metrics.score_table`'s long table, networks under the paper's
        names and in its order.
    """
    exprs = list(expressions())
    maps = load_fold_heatmaps(directory, exprs, allow_missing)
    masks = load_masks(mask_directory, exprs) if mask_directory else ekman_masks()
    renamed = {(display_name(n), f, e): h for (n, f, e), h in maps.items()}
    return score_table(renamed, {e: masks[e] for e in exprs}, paper()["table_order"])


def similarity_folder(directory: str | os.PathLike) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """1 - NCC between the by-network heatmaps of each expression (``fermap similarity``).

    Parameters
    ----------
    directory : path
        A folder of ``{Net}_{Expression}_heatmap.png`` files.

    Returns
    -------
    pairs : DataFrame
        One row per expression and pair of networks: ``expression, net_a, net_b, distance``.
    matrices : dict of str to DataFrame
        Each expression's square distance matrix, networks under the paper's names.
    """
    exprs = list(expressions())
    maps = load_network_heatmaps(directory, exprs)
    nets = sorted({n for n, _ in maps})
    if len(nets) < 2:
        raise FermapError(f"{directory}: clustering needs at least two networks; found {len(nets)} "
                          f"({', '.join(nets)})")
    rows, matrices = [], {}
    for e in exprs:
        dist = distance_matrix({display_name(n): h for (n, ex), h in maps.items() if ex == e})
        matrices[e] = dist
        names = list(dist.index)
        rows += [{"expression": e, "net_a": a, "net_b": b, "distance": dist.loc[a, b]}
                 for i, a in enumerate(names) for b in names[i + 1:]]
    return pd.DataFrame(rows), matrices


# ---------------------------------------------------------------- the paper's tables

def load_paper_tables(reference: str | os.PathLike) -> pd.DataFrame | None:
    """The paper's Tables 3 and 4 as one long table, or None when the reference folder lacks them.

    Parameters
    ----------
    reference : path
        The folder holding ``table3_iou_f1.csv`` and ``table4_precision_recall.csv``.

    Returns
    -------
    DataFrame with columns ``network, expression, iou, f1, precision, recall`` (``Average``
    rows and columns included), the networks in the order of the paper's Table 3; or None.
    """
    reference = Path(reference)
    t3, t4 = reference / "table3_iou_f1.csv", reference / "table4_precision_recall.csv"
    if not (t3.is_file() and t4.is_file()):
        return None
    table3 = pd.read_csv(t3)
    merged = table3.merge(pd.read_csv(t4), on=["network", "expression"], how="outer", validate="one_to_one")
    # An outer merge sorts the networks by name; the paper's order is Table 3's (a network only in
    # Table 4 goes last).
    rank = {n: i for i, n in enumerate(dict.fromkeys(table3.network))}
    merged = merged.sort_values("network", key=lambda s: s.map(rank).fillna(len(rank)), kind="stable")
    return merged[["network", "expression", *METRICS]].reset_index(drop=True)


# The paper's names of the metrics, as its Tables 3 and 4 head their columns.
METRIC_LABELS = {"iou": "IoU", "f1": "F1", "precision": "Precision", "recall": "Recall"}


def paper_layout(table: pd.DataFrame, metrics: list[str], columns: list[str],
                 order: list[str] | None = None) -> pd.DataFrame:
    """A long score table in the layout of the paper's Tables 3 and 4: one row per network, each
    expression heading its metrics (two header rows).

    Parameters
    ----------
    table : DataFrame
        A long score table (``network, expression`` and the metrics).
    metrics : list of str
        The metrics under each expression, in order (``["iou", "f1"]`` for Table 3,
        ``["precision", "recall"]`` for Table 4).
    columns : list of str
        The expressions (and ``Average``), in order.
    order : list of str, optional
        The networks, in order (default: as they first appear in ``table``); one missing from
        ``table`` is a row of NaN.

    Returns
    -------
    DataFrame
        Indexed by network (unnamed, so the header is two rows); columns a MultiIndex of
        (expression, the metric's name in the paper: ``IoU``, ``F1``, ``Precision``, ``Recall``).
    """
    order = list(order or dict.fromkeys(table.network))
    wide = table.pivot(index="network", columns="expression", values=list(metrics))
    wide = wide.reorder_levels([1, 0], axis=1).reindex(
        index=order, columns=pd.MultiIndex.from_product([columns, metrics]))
    wide.columns = pd.MultiIndex.from_tuples([(e, METRIC_LABELS.get(m, m)) for e, m in wide.columns])
    wide.index.name = None
    return wide
