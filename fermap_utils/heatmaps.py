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
    """The authors' file name for a heatmap of a class, a (network, class) or a (network, fold, class)."""
    if network is None:
        return f"{expression}_heatmap.png"
    if fold is None:
        return f"{network}_{expression}_heatmap.png"
    return f"{network}_CV{int(fold)}_{expression}_heatmap.png"


def mean_explanation(explanations: np.ndarray) -> np.ndarray:
    """Eq. 1: the pixel-wise mean of a stack of standardised explanations, (N, H, W) -> (H, W)."""
    explanations = np.asarray(explanations, dtype=np.float64)
    if explanations.ndim != 3 or len(explanations) == 0:
        raise ValueError(f"expected a non-empty (N, H, W) stack, got {explanations.shape}")
    return explanations.mean(axis=0)


def stretch(heatmap: np.ndarray) -> np.ndarray:
    """Min-max stretch to [0, 1]; a constant heatmap becomes all zeros."""
    h = np.asarray(heatmap, dtype=np.float64)
    lo, hi = float(h.min()), float(h.max())
    return np.zeros_like(h) if hi == lo else (h - lo) / (hi - lo)


def to_uint8(heatmap: np.ndarray) -> np.ndarray:
    """A [0, 1] heatmap as 8-bit grey, 0..255."""
    return np.clip(np.round(np.asarray(heatmap, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def heatmap(explanations: np.ndarray) -> np.ndarray:
    """Eq. 1 then the min-max stretch: the [0, 1] heatmap of a group of explanations."""
    return stretch(mean_explanation(explanations))


def pooled_heatmap(sums: list[np.ndarray], counts: list[int]) -> np.ndarray:
    """Eq. 2: the heatmap of several groups pooled, from each group's explanation sum and count.

    Pooling folds gives H_{n,c}; pooling networks and folds gives H_c. Every
    explanation weighs the same, whichever group it came from.
    """
    total = int(np.sum(counts))
    if total == 0:
        raise ValueError("no explanations to pool")
    return stretch(np.sum([np.asarray(s, dtype=np.float64) for s in sums], axis=0) / total)


def save_heatmap(path: str | os.PathLike, heatmap01: np.ndarray) -> None:
    """Save a [0, 1] heatmap as an 8-bit PNG (atomically)."""
    write_gray(path, to_uint8(heatmap01))


def load_heatmap(path: str | os.PathLike, require_contrast: bool = True) -> np.ndarray:
    """Read one 8-bit, 224x275 heatmap; a constant one is an error (Otsu is undefined on it)."""
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

    Returns
    -------
    dict ``(network, fold, expression) -> uint8 heatmap``, networks named as in the files.
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

    Returns
    -------
    dict ``(network, expression) -> uint8 heatmap``; every network must have every expression.
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
    """Load ``{Expression}_gt.png`` masks (white = mask) as booleans."""
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
) -> "pd.DataFrame":
    """Tables 3 and 4 from a folder of per-fold heatmaps (``fermap score``).

    Networks take the paper's names; masks are fermap's own unless ``mask_directory`` is given.
    With ``allow_missing``, a (network, expression) averages over the folds it has.
    """
    from .config import display_name, paper
    from .masks import ekman_masks
    from .metrics import score_table

    exprs = list(paper()["expressions"])
    maps = load_fold_heatmaps(directory, exprs, allow_missing)
    masks = load_masks(mask_directory, exprs) if mask_directory else ekman_masks()
    renamed = {(display_name(n), f, e): h for (n, f, e), h in maps.items()}
    return score_table(renamed, {e: masks[e] for e in exprs}, paper()["table_order"])


def similarity_folder(directory: str | os.PathLike) -> tuple["pd.DataFrame", dict[str, "pd.DataFrame"]]:
    """1 - NCC between the by-network heatmaps of each expression (``fermap similarity``).

    Returns the pairs as a long table (``expression, net_a, net_b, distance``) and
    each expression's square distance matrix.
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


def write_run_heatmaps(run_dir: str | os.PathLike, counts: "pd.DataFrame",
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

    from ._io import atomic_path

    from ._io import inside

    # A run folder may come from someone else: nothing is deleted or written outside it, even
    # through a symbolic link (inside() refuses in one line before anything is touched).
    out = inside(run_dir, folders[1])
    targets = [inside(run_dir, folders[1], folder) for folder in ("heatmaps_by_cv", "heatmaps_by_net", "heatmaps_total")]
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
    """Every heatmap a run wrote (``folder``: ``heatmaps``, or ``heatmaps_<method>``), keyed
    ``(grouping, network, expression)``.

    grouping is ``fold k`` (H_{n,t,c}), ``all folds`` (H_{n,c}) or ``global`` (H_c, network ``all``).
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
