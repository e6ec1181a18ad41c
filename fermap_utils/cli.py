"""The ``fermap`` command line. Each subcommand calls the same functions as the notebooks."""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

import cv2
import pandas as pd

from . import (
    archive,
    book,
    chapters,
    data,
    executor,
    explainers,
    explanations,
    masks,
    models,
    plan,
    plots,
    profiles,
    run,
    scoring,
    synthetic,
    teaching,
    training,
)
from ._io import atomic_path, atomic_paths, check_output, folder_lock, user_path
from .config import section
from .errors import FermapError
from .layout import check_run_folder, heatmaps_dir, heatmaps_summary_file
from .parser import build_parser


def _csv_target(path: Path) -> Path:
    """An output CSV, checked before any work: a .csv name in a place that can be written."""
    if path.suffix.lower() != ".csv":
        raise FermapError(f"{path}: the output must be a .csv file")
    return check_output(path)


def _write_csv(frame, path: Path, decimals: int | None = 4) -> None:
    with atomic_path(_csv_target(path)) as tmp:
        frame.to_csv(tmp, index=False, float_format=None if decimals is None else f"%.{decimals}f")


def cmd_score(args: argparse.Namespace) -> None:
    """Score per-fold heatmaps against the Ekman masks (Tables 3 and 4)."""
    _csv_target(Path(args.out))
    table = scoring.score_folder(args.heatmaps, args.masks, args.allow_missing)
    _write_csv(table, Path(args.out), args.decimals)
    nets = table["network"].nunique() - 1
    print(f"scored {nets} networks x {table['expression'].nunique() - 1} expressions -> {args.out}")
    avg = table[(table.network == "Average") & (table.expression == "Average")].iloc[0]
    print(f"overall average: IoU {avg.iou:.4f}, F1 {avg.f1:.4f}, "
          f"precision {avg.precision:.4f}, recall {avg.recall:.4f}")


def cmd_masks(args: argparse.Namespace) -> None:
    """Write the six Ekman masks (or their action-unit unions) as PNGs, 255 = mask; all or none."""
    out = check_output(Path(args.out), folder=True)
    shapes = masks.au_masks() if args.from_aus else masks.ekman_masks()
    targets = [out / f"{expr}_gt.png" for expr in shapes]
    with atomic_paths(targets) as temps:
        for tmp, target, mask in zip(temps, targets, shapes.values()):
            ok, buf = cv2.imencode(".png", mask.astype("uint8") * 255)
            if not ok:
                raise FermapError(f"{target}: could not encode the mask")
            buf.tofile(tmp)
    print(f"wrote {len(shapes)} masks to {out}")


def cmd_similarity(args: argparse.Namespace) -> None:
    """Pairwise 1 - NCC distances of by-network heatmaps and their average-linkage dendrograms.

    The CSV and the PNG are written together or not at all.
    """
    out = _csv_target(Path(args.out))
    png = check_output(out.with_suffix(".png"))
    pairs, matrices = scoring.similarity_folder(args.heatmaps)
    figure = plots.dendrograms(matrices)
    with atomic_paths([out, png]) as (tmp_csv, tmp_png):
        pairs.to_csv(tmp_csv, index=False)
        figure.savefig(tmp_png, format="png", dpi=120, bbox_inches="tight")
    print(f"{len(pairs)} distances -> {out}; dendrograms -> {png}")


def cmd_data_build(args: argparse.Namespace) -> None:
    """Build a preprocessed dataset from a config file, or the embedded synthetic default."""
    check_output(args.out, folder=True)
    if args.default:
        synthetic.build_default(args.out)
    else:
        data.build_from_config(args.config, args.out)
    print(data.describe_dataset(args.out))


def cmd_data_show(args: argparse.Namespace) -> None:
    """Counts per dataset, subject and expression, and the skip report, of a built dataset."""
    print(data.describe_dataset(args.directory))


def cmd_models_summary(args: argparse.Namespace) -> None:
    """Every registered network at the paper's input size: parameters against Table 1, pre-training."""
    table = models.summary(check_weights=args.check_weights)
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        shown = table.assign(params=table.params.map("{:,}".format),
                             paper_params=table.paper_params.map(lambda v: "-" if pd.isna(v) else f"{v:,.0f}"),
                             ratio=table.ratio.map(lambda v: "-" if pd.isna(v) else f"{v:.3f}"))
        print(shown.to_string(index=False))
    paper = table.dropna(subset=["paper_params"])
    print(f"{int(paper.within_10pct.sum())} of {len(paper)} paper networks within 10 % of Table 1's parameter count")


def cmd_train(args: argparse.Namespace) -> None:
    """Train a profile's networks with subject-grouped cross-validation (resumes)."""
    prof = profiles.load_profile(args.profile, args.config, profiles.parse_overrides(args.param))
    run_dir = args.run or run.default_run_dir(prof)
    with folder_lock(run_dir, "fermap train"):
        run.prepare_data(run_dir, prof)
        profiles.record_profile(run_dir, prof)
        table = training.train_run(run_dir, prof, executor=_executor(args))
    print(table.to_string(index=False))
    if table.synthetic.any():
        print("(SYNTHETIC data: FACS-driven expressions on real faces; not the paper's datasets)")
    cold = table[~table.pretrained & table.weights.str.contains("unavailable")]
    if len(cold):
        print(f"pretrained=false (ImageNet weights unavailable here): {', '.join(sorted(cold.network.unique()))}")


def cmd_explain(args: argparse.Namespace) -> None:
    """LIME on every trained (network, fold) of a run, standardised, cached, and the heatmaps."""
    prof = profiles.read_profile(args.run, profiles.parse_overrides(args.param))
    with folder_lock(args.run, f"fermap explain --method {args.method}"):
        table = explanations.explain_run(args.run, prof, method=args.method, executor=_executor(args))
    for row in table[table.note.astype(bool)].itertuples():
        print(f"{row.network} fold {row.fold}: not explained by {args.method}: {row.note}")
    explained = table[table.expression.notna()]
    if len(explained):
        print(explained.pivot_table(index=["network", "fold"], columns="expression", values="images",
                                    sort=False).to_string())
    out = heatmaps_dir(args.run, args.method)
    summary = json.loads(heatmaps_summary_file(args.run, args.method).read_text())
    print(f"{summary['explanations']} explanations ({args.method}) -> {out}")
    if summary["missing"]:
        print(f"no heatmap (no image predicted as that class, or all weights <= 0): {len(summary['missing'])}: "
              + ", ".join(summary["missing"][:6]) + (" ..." if len(summary["missing"]) > 6 else ""))


def cmd_run(args: argparse.Namespace) -> None:
    """Execute the book's chapters with papermill for a profile (unchanged chapters are skipped)."""
    if args.unpack:  # a finished run, handed out as one file: no chapter is executed
        name = archive.run_name(args.unpack)
        run_dir = archive.unpack_run(args.unpack, args.run or run.default_run_dir({"name": name}))
        print(f"run {name} unpacked -> {run_dir}; its chapters open without retraining")
        return
    prof = profiles.load_profile(args.profile, args.config, profiles.parse_overrides(args.param))
    if args.pack:
        print(f"run packed -> {archive.pack_run(args.run or run.default_run_dir(prof), args.pack)}")
        return
    executor = _executor(args)
    with folder_lock(args.run or run.default_run_dir(prof), "fermap run"):
        if executor.distributed:  # every job on the cluster first; the chapters then find them done
            with executor:
                run.run_stages(args.run or run.default_run_dir(prof), prof, executor)
        table = chapters.run_book(prof, args.run, args.chapters)
    print(table.to_string(index=False))


def cmd_plan(args: argparse.Namespace) -> None:
    """What a profile's run would do and cost, without running it: jobs, disk, time."""
    prof = profiles.load_profile(args.profile, args.config, profiles.parse_overrides(args.param))
    planned = plan.plan_run(prof, workers=args.workers, calibrate_speed=not args.no_calibration, run_dir=args.run)
    print(plan.format_plan(planned))


def _executor(args: argparse.Namespace):
    """Where the jobs run: --workers N (a Dask LocalCluster here), --scheduler ADDRESS, else in-process."""
    return executor.Executor(workers=args.workers or 0, scheduler=args.scheduler, threads=args.threads)


def cmd_book(args: argparse.Namespace) -> None:
    """Build the HTML book from the executed chapters (jupyter-book 1.x, no execution)."""
    html = book.build_book()
    print(f"book -> {html}/index.html")
    if teaching.launch_repository() is None:  # fermap has no public repository: the buttons need the reader's own
        print("note: built without launch buttons (no repository configured); set `repository: url` in "
              "_config.yml to your fork or course copy (README, 'A book to teach from')")
    if args.check:
        problems = book.check_book(html) + teaching.check_teaching(html)  # as a reader, then as a teacher
        for p in problems:
            print(f"PROBLEM {p}")
        print(f"browser check: {len(problems)} problem(s); screenshots in {html.parent / 'screenshots'}")
        if problems:
            raise SystemExit(1)


#: Each subcommand's handler, by the name its parser gives (:func:`fermap_utils.parser.build_parser`).
HANDLERS = {
    "score": cmd_score,
    "masks": cmd_masks,
    "similarity": cmd_similarity,
    "data build": cmd_data_build,
    "data show": cmd_data_show,
    "models summary": cmd_models_summary,
    "train": cmd_train,
    "explain": cmd_explain,
    "run": cmd_run,
    "plan": cmd_plan,
    "book": cmd_book,
}


#: The bounds of the command line's numbers: (option, smallest, largest).
_BOUNDS = {"threads": (1, 1024), "workers": (0, 1024), "decimals": (0, 10)}


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse, in one line, a command line's out-of-range number or unknown chapter, before any work.

    Nothing is built, locked or written before this passes (``train --workers -1`` must not
    first build the dataset; ``--threads -1`` must not reach TensorFlow, which aborts on it).
    """
    for option, (low, high) in _BOUNDS.items():
        value = getattr(args, option, None)
        if value is None:
            continue
        low = 1 if (option == "workers" and args.command == "plan") else low  # a worker count to estimate
        for v in value if isinstance(value, list) else [value]:
            if not low <= v <= high:
                raise FermapError(f"--{option} {v}: not allowed; expected an integer from {low} to {high}")
    if getattr(args, "run", None):
        check_run_folder(args.run, tuple(explainers.names()))  # links out of the run: before the lock
    if getattr(args, "chapters", None):
        known = list(section("book")["chapters"])
        unknown = [n for n in args.chapters if n not in known]
        if unknown:
            raise FermapError(f"--chapters: unknown chapter(s) {', '.join(unknown)}; chapters: {', '.join(known)}")


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"fermap: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """``fermap``: parse the command line, run the subcommand's handler; errors as one line.

    Parameters
    ----------
    argv : list of str, optional
        The arguments (default: the process's).

    Returns
    -------
    int
        The exit status: 0, 2 for an error fermap explains, 130 when interrupted.
    """
    args = build_parser().parse_args(argv)
    # TensorFlow's C++ log (a banner, and with TF 2.21 a "NodeDef mentions attribute
    # use_unbounded_threadpool" line per training epoch): not for the user, as in the book's kernels
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with warnings.catch_warnings():
            # fermap's warnings are messages for the user: shown, whatever filter the caller set
            warnings.simplefilter("always", RuntimeWarning)
            warnings.showwarning = _one_line_warning  # one line too, without fermap's source line
            check_arguments(args)
            HANDLERS[args.command](args)
    except FermapError as exc:
        print(f"fermap: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a read-only folder, a path that is a folder: one line, no traceback
        where = user_path(exc.filename) if exc.filename else ""
        print(f"fermap: error: {where}{': ' if where else ''}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fermap: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
