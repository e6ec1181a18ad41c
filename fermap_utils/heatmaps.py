"""Heatmaps: the paper's Eq. 1 and 2, and loading and saving with the authors' file names.

Names, as in the authors' repository:

- per (network, fold, class): ``{Net}_CV{k}_{Expression}_heatmap.png`` (H_{n,t,c})
- per (network, class): ``{Net}_{Expression}_heatmap.png`` (H_{n,c})
- per class: ``{Expression}_heatmap.png`` (H_c)
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ._io import read_gray, write_gray
from .errors import FermapError
from .landmarks import STANDARD_SIZE

if TYPE_CHECKING:
    import pandas as pd

_BY_CV = re.compile(r"^(?P<net>[A-Za-z0-9]+)_CV(?P<fold>\d+)_(?P<expr>[A-Za-z]+)_heatmap\.png$")
_BY_NET = re.compile(r"^(?P<net>[A-Za-z0-9]+)_(?P<expr>[A-Za-z]+)_heatmap\.png$")
_TOTAL = re.compile(r"^(?P<expr>[A-Za-z]+)_heatmap\.png$")

CANVAS_SHAPE: tuple[int, int] = (STANDARD_SIZE[1], STANDARD_SIZE[0])


def heatmap_filename(expression: str, network: str | None = None, fold: int | None = None) -> str:
    """The authors' file name for a heatmap.

    Parameters
    ----------
    expression : str
        The class.
    network : str, optional
        The network; without it, the name of the class's global heatmap H_c.
    fold : int, optional
        The fold (with ``network``); without it, the name of H_{n,c}.

    Returns
    -------
    name : str

    Examples
    --------
    >>> heatmap_filename("Fear"), heatmap_filename("Fear", "VGG16"), heatmap_filename("Fear", "VGG16", 3)
    ('Fear_heatmap.png', 'VGG16_Fear_heatmap.png', 'VGG16_CV3_Fear_heatmap.png')
    """
    if network is None:
        return f"{expression}_heatmap.png"
    if fold is None:
        return f"{network}_{expression}_heatmap.png"
    return f"{network}_CV{int(fold)}_{expression}_heatmap.png"


def mean_explanation(explanations: np.ndarray) -> np.ndarray:
    """Eq. 1: the pixel-wise mean of a stack of standardised explanations.

    Parameters
    ----------
    explanations : (N, H, W) array
        N >= 1 explanations on one canvas.

    Returns
    -------
    mean : (H, W) float64 array

    Raises
    ------
    ValueError
        When the stack is empty or not 3-D.
    """
    explanations = np.asarray(explanations, dtype=np.float64)
    if explanations.ndim != 3 or len(explanations) == 0:
        raise ValueError(f"expected a non-empty (N, H, W) stack, got {explanations.shape}")
    return explanations.mean(axis=0)


def stretch(heatmap: np.ndarray) -> np.ndarray:
    """Min-max stretch of a heatmap to [0, 1].

    Parameters
    ----------
    heatmap : array

    Returns
    -------
    stretched : float64 array of ``heatmap``'s shape
        Its minimum becomes 0 and its maximum 1; a constant heatmap becomes all zeros.

    Examples
    --------
    >>> stretch(np.array([2.0, 4.0, 6.0])).tolist(), stretch(np.ones(2)).tolist()
    ([0.0, 0.5, 1.0], [0.0, 0.0])
    """
    h = np.asarray(heatmap, dtype=np.float64)
    lo, hi = float(h.min()), float(h.max())
    return np.zeros_like(h) if hi == lo else (h - lo) / (hi - lo)


def to_uint8(heatmap: np.ndarray) -> np.ndarray:
    """A [0, 1] heatmap as 8-bit grey.

    Parameters
    ----------
    heatmap : array
        Values in [0, 1]; others are clipped.

    Returns
    -------
    grey : uint8 array of ``heatmap``'s shape
        round(255 x), so 0.5 becomes 128.

    Examples
    --------
    >>> to_uint8(np.array([0.0, 0.5, 1.0, 1.2])).tolist()
    [0, 128, 255, 255]
    """
    return np.clip(np.round(np.asarray(heatmap, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def heatmap(explanations: np.ndarray) -> np.ndarray:
    """Eq. 1 then the min-max stretch: the [0, 1] heatmap of a group of explanations.

    Parameters
    ----------
    explanations : (N, H, W) array
        The group's standardised explanations.

    Returns
    -------
    heatmap : (H, W) float64 array in [0, 1]
    """
    return stretch(mean_explanation(explanations))


def pooled_heatmap(sums: list[np.ndarray], counts: list[int]) -> np.ndarray:
    """Eq. 2: the heatmap of several groups pooled, from each group's explanation sum and count.

    Pooling folds gives H_{n,c}; pooling networks and folds gives H_c. Every
    explanation weighs the same, whichever group it came from.

    Parameters
    ----------
    sums : list of (H, W) arrays
        Each group's sum of standardised explanations.
    counts : list of int
        How many explanations each sum holds.

    Returns
    -------
    heatmap : (H, W) float64 array in [0, 1]
        The stretched mean of all explanations.

    Raises
    ------
    ValueError
        When the counts add up to 0.
    """
    total = int(np.sum(counts))
    if total == 0:
        raise ValueError("no explanations to pool")
    return stretch(np.sum([np.asarray(s, dtype=np.float64) for s in sums], axis=0) / total)


def save_heatmap(path: str | os.PathLike, heatmap01: np.ndarray) -> None:
    """Save a [0, 1] heatmap as an 8-bit PNG, atomically.

    Parameters
    ----------
    path : path
        The PNG to write; its folder is created.
    heatmap01 : (H, W) array in [0, 1]

    Returns
    -------
    None
    """
    write_gray(path, to_uint8(heatmap01))


def load_heatmap(path: str | os.PathLike, require_contrast: bool = True) -> np.ndarray:
    """Read one 8-bit, 224x275 heatmap.

    Parameters
    ----------
    path : path
        A grey PNG.
    require_contrast : bool, optional
        Refuse a constant heatmap, on which Otsu's threshold is undefined.

    Returns
    -------
    heatmap : (275, 224) uint8 array

    Raises
    ------
    FermapError
        Naming the file: unreadable, of another size, or constant.
    """
    image = read_gray(path, CANVAS_SHAPE)
    if require_contrast and image.min() == image.max():
        raise FermapError(f"{path}: constant heatmap (every pixel {image.min()}): nothing to threshold")
    return image


def _warn_other_expressions(directory: Path, paths: list[Path], expressions) -> None:
    """Say which heatmap files were left out for naming an expression outside the six."""
    if paths:
        import warnings

        names = ", ".join(p.name for p in paths[:5]) + (f" (and {len(paths) - 5} more)" if len(paths) > 5 else "")
        warnings.warn(f"{directory}: ignored {len(paths)} heatmap(s) of an expression outside "
                      f"{', '.join(expressions)}: {names}", RuntimeWarning, stacklevel=3)


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
        m = _BY_CV.match(path.name)
        if m and m["expr"] not in expressions:
            others.append(path)
        elif m:
            found[(m["net"], int(m["fold"]), m["expr"])] = path
    _warn_other_expressions(directory, others, expressions)
    if not found:
        raise FermapError(f"{directory}: no heatmaps named {{Net}}_CV{{k}}_{{Expression}}_heatmap.png")
    nets = sorted({k[0] for k in found})
    folds = sorted({k[1] for k in found})
    missing = [
        heatmap_filename(e, n, f) for n in nets for f in folds for e in expressions if (n, f, e) not in found
    ]
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        message = f"{directory}: incomplete heatmap set, missing {', '.join(missing[:5])}{more}"
        if not allow_missing:
            raise FermapError(message + " (score what exists with --allow-missing)")
        import warnings

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
        m = _BY_NET.match(path.name)
        if m and not _BY_CV.match(path.name):
            if m["expr"] in expressions:
                found[(m["net"], m["expr"])] = path
            else:
                others.append(path)
    _warn_other_expressions(directory, others, expressions)
    if not found:
        raise FermapError(f"{directory}: no heatmaps named {{Net}}_{{Expression}}_heatmap.png")
    nets = sorted({k[0] for k in found})
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
    from .config import display_name, paper
    from .masks import ekman_masks
    from .metrics import score_table

    exprs = list(paper()["expressions"])
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
    import pandas as pd

    from .config import display_name, paper
    from .metrics import distance_matrix

    exprs = list(paper()["expressions"])
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


def write_run_heatmaps(run_dir: str | os.PathLike, counts: pd.DataFrame,
                       folders: tuple[str, str] = ("explanations", "heatmaps")) -> dict:
    """The heatmaps of a run from its cached explanation sums, with the authors' folder layout.

    ``RUN/heatmaps/heatmaps_by_cv`` holds H_{n,t,c} (Eq. 1), ``heatmaps_by_net``
    H_{n,c} and ``heatmaps_total`` H_c (Eq. 2, every explanation weighing the same).
    A group with no explanation (no test image predicted as that class), or whose
    explanations are all zero, has no heatmap; ``RUN/heatmaps/summary.json`` lists
    them beside the counts.
    """
    import json
    import shutil

    from ._io import atomic_path, inside

    # A run folder may come from someone else: nothing is deleted or written outside it, even
    # through a symbolic link (inside() refuses in one line before anything is touched).
    out = inside(run_dir, folders[1])
    targets = [inside(run_dir, folders[1], folder)
               for folder in ("heatmaps_by_cv", "heatmaps_by_net", "heatmaps_total")]
    for target in targets:  # cheap to redo; no stale map may survive
        if target.is_symlink():
            target.unlink()  # the link, never what it points to
        elif target.exists():
            shutil.rmtree(target)
    sums: dict[tuple[str, int, str], tuple[np.ndarray, int]] = {}
    for row in counts.itertuples():
        path = inside(run_dir, folders[0], row.network, f"fold{int(row.fold)}", f"{row.expression}.npz")
        with np.load(path) as f:
            sums[(row.network, int(row.fold), row.expression)] = (f["sum"], int(f["count"]))
    missing = []

    def emit(folder: str, name: str, parts: list[tuple[np.ndarray, int]]) -> None:
        parts = [(s, n) for s, n in parts if n]
        h = pooled_heatmap([s for s, _ in parts], [n for _, n in parts]) if parts else None
        if h is None or h.max() == 0:
            missing.append(f"{folder}/{name}")
            return
        save_heatmap(out / folder / name, h)

    nets = list(dict.fromkeys(counts.network))
    exprs = list(dict.fromkeys(counts.expression))
    for (net, fold, expr), part in sums.items():
        emit("heatmaps_by_cv", heatmap_filename(expr, net, fold), [part])
    for net in nets:
        for expr in exprs:
            emit("heatmaps_by_net", heatmap_filename(expr, net),
                 [p for (n, _, e), p in sums.items() if n == net and e == expr])
    for expr in exprs:
        emit("heatmaps_total", heatmap_filename(expr), [p for (_, _, e), p in sums.items() if e == expr])
    summary = {"networks": nets, "folds": sorted({int(f) for f in counts.fold}),
               "explanations": int(counts.images.sum()), "missing": missing}
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    return summary


def load_run_heatmaps(run_dir: str | os.PathLike, folder: str = "heatmaps") -> dict[tuple[str, str, str], np.ndarray]:
    """Every heatmap a run wrote.

    Parameters
    ----------
    run_dir : path
        The run folder.
    folder : str, optional
        ``heatmaps`` (LIME's), or ``heatmaps_<method>``.

    Returns
    -------
    dict ``(grouping, network, expression) -> uint8 heatmap``
        grouping is ``fold k`` (H_{n,t,c}), ``all folds`` (H_{n,c}) or ``global``
        (H_c, network ``all``).

    Raises
    ------
    FermapError
        When the folder is missing or holds no heatmap.
    """
    base = _require_dir(Path(run_dir) / folder)
    out: dict[tuple[str, str, str], np.ndarray] = {}
    for path in sorted((base / "heatmaps_by_cv").glob("*_heatmap.png")):
        m = _BY_CV.match(path.name)
        if m:
            out[(f"fold {int(m['fold'])}", m["net"], m["expr"])] = load_heatmap(path)
    for path in sorted((base / "heatmaps_by_net").glob("*_heatmap.png")):
        m = _BY_NET.match(path.name)
        if m:
            out[("all folds", m["net"], m["expr"])] = load_heatmap(path)
    for path in sorted((base / "heatmaps_total").glob("*_heatmap.png")):
        out[("global", "all", path.name[: -len("_heatmap.png")])] = load_heatmap(path)
    if not out:
        raise FermapError(f"{base}: no heatmaps (run fermap explain first)")
    return out
