"""The ``fermap`` command line. Each subcommand calls the same functions as the notebooks."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .errors import FermapError


def _expressions() -> list[str]:
    from .config import paper

    return list(paper()["expressions"])


def _write_csv(frame, path: Path, decimals: int | None = 4) -> None:
    from ._io import atomic_path

    if path.suffix.lower() != ".csv":
        raise FermapError(f"{path}: the output must be a .csv file")
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format=None if decimals is None else f"%.{decimals}f")


def cmd_score(args: argparse.Namespace) -> None:
    """Score per-fold heatmaps against the Ekman masks (Tables 3 and 4)."""
    from .config import display_name, paper
    from .heatmaps import load_fold_heatmaps, load_masks
    from .masks import ekman_masks
    from .metrics import score_table

    exprs = _expressions()
    heatmaps = load_fold_heatmaps(args.heatmaps, exprs)
    masks = load_masks(args.masks, exprs) if args.masks else ekman_masks()
    renamed = {(display_name(n), f, e): h for (n, f, e), h in heatmaps.items()}
    table = score_table(renamed, {e: masks[e] for e in exprs}, paper()["table_order"])
    _write_csv(table, Path(args.out), args.decimals)
    nets = table["network"].nunique() - 1
    print(f"scored {len(heatmaps)} heatmaps ({nets} networks) -> {args.out}")
    avg = table[(table.network == "Average") & (table.expression == "Average")].iloc[0]
    print(f"overall average: IoU {avg.iou:.4f}, F1 {avg.f1:.4f}, precision {avg.precision:.4f}, recall {avg.recall:.4f}")


def cmd_masks(args: argparse.Namespace) -> None:
    """Write the six Ekman masks (or their action-unit unions) as PNGs, 255 = mask."""
    from ._io import write_gray
    from .masks import au_masks, ekman_masks

    out = Path(args.out)
    masks = au_masks() if args.from_aus else ekman_masks()
    for expr, mask in masks.items():
        write_gray(out / f"{expr}_gt.png", mask.astype("uint8") * 255)
    print(f"wrote {len(masks)} masks to {out}")


def cmd_similarity(args: argparse.Namespace) -> None:
    """Pairwise 1 - NCC distances of by-network heatmaps and their average-linkage dendrograms."""
    import pandas as pd

    from ._io import atomic_path
    from .config import display_name
    from .heatmaps import load_network_heatmaps
    from .metrics import distance_matrix

    exprs = _expressions()
    heatmaps = load_network_heatmaps(args.heatmaps, exprs)
    rows, matrices = [], {}
    for e in exprs:
        dist = distance_matrix({display_name(n): h for (n, ex), h in heatmaps.items() if ex == e})
        matrices[e] = dist
        names = list(dist.index)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                rows.append({"expression": e, "net_a": a, "net_b": b, "distance": dist.loc[a, b]})
    out = Path(args.out)
    figure = plot_dendrograms(matrices)
    _write_csv(pd.DataFrame(rows), out, decimals=None)
    png = out.with_suffix(".png")
    with atomic_path(png) as tmp:
        figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    print(f"{len(rows)} distances -> {out}; dendrograms -> {png}")


def plot_dendrograms(matrices: dict):
    """One average-linkage dendrogram per expression, in a single figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.cluster.hierarchy import dendrogram

    from .metrics import average_linkage

    n = len(matrices)
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, (expr, dist) in zip(axes.ravel(), matrices.items()):
        dendrogram(average_linkage(dist), labels=list(dist.index), ax=ax, leaf_rotation=90)
        ax.set_title(expr)
        ax.set_ylabel("1 - NCC")
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fermap", description=__doc__)
    parser.add_argument("--version", action="version", version=f"fermap {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("score", help="score per-fold heatmaps against Ekman masks (Tables 3 and 4)")
    p.add_argument("--heatmaps", required=True, type=Path, help="folder of {Net}_CV{k}_{Expression}_heatmap.png")
    p.add_argument("--masks", type=Path, help="folder of {Expression}_gt.png (default: fermap's own masks)")
    p.add_argument("--out", required=True, type=Path, help="output CSV")
    p.add_argument("--decimals", type=int, default=4, help="decimals in the CSV (default 4, as the paper)")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("masks", help="write the six Ekman masks as PNGs (255 = mask)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--from-aus", action="store_true", help="build each mask as the union of its Table 2 AUs")
    p.set_defaults(func=cmd_masks)

    p = sub.add_parser("similarity", help="1 - NCC distances between by-network heatmaps, with dendrograms")
    p.add_argument("--heatmaps", required=True, type=Path, help="folder of {Net}_{Expression}_heatmap.png")
    p.add_argument("--out", required=True, type=Path, help="output CSV; the dendrograms go beside it as .png")
    p.set_defaults(func=cmd_similarity)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except FermapError as exc:
        print(f"fermap: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fermap: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
