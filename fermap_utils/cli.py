"""The ``fermap`` command line. Each subcommand calls the same functions as the notebooks."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from .errors import FermapError
from .explainers import names as explainer_names


def _csv_target(path: Path) -> Path:
    """An output CSV, checked before any work: a .csv name in a place that can be written."""
    from ._io import check_output

    if path.suffix.lower() != ".csv":
        raise FermapError(f"{path}: the output must be a .csv file")
    return check_output(path)


def _write_csv(frame, path: Path, decimals: int | None = 4) -> None:
    from ._io import atomic_path

    with atomic_path(_csv_target(path)) as tmp:
        frame.to_csv(tmp, index=False, float_format=None if decimals is None else f"%.{decimals}f")


def cmd_score(args: argparse.Namespace) -> None:
    """Score per-fold heatmaps against the Ekman masks (Tables 3 and 4)."""
    from .scoring import score_folder

    _csv_target(Path(args.out))
    table = score_folder(args.heatmaps, args.masks, args.allow_missing)
    _write_csv(table, Path(args.out), args.decimals)
    nets = table["network"].nunique() - 1
    print(f"scored {nets} networks x {table['expression'].nunique() - 1} expressions -> {args.out}")
    avg = table[(table.network == "Average") & (table.expression == "Average")].iloc[0]
    print(f"overall average: IoU {avg.iou:.4f}, F1 {avg.f1:.4f}, "
          f"precision {avg.precision:.4f}, recall {avg.recall:.4f}")


def cmd_masks(args: argparse.Namespace) -> None:
    """Write the six Ekman masks (or their action-unit unions) as PNGs, 255 = mask; all or none."""
    import cv2

    from ._io import atomic_paths, check_output
    from .masks import au_masks, ekman_masks

    out = check_output(Path(args.out), folder=True)
    masks = au_masks() if args.from_aus else ekman_masks()
    targets = [out / f"{expr}_gt.png" for expr in masks]
    with atomic_paths(targets) as temps:
        for tmp, mask in zip(temps, masks.values()):
            ok, buf = cv2.imencode(".png", mask.astype("uint8") * 255)
            if not ok:
                raise FermapError(f"{tmp}: could not encode a mask")
            buf.tofile(tmp)
    print(f"wrote {len(masks)} masks to {out}")


def cmd_similarity(args: argparse.Namespace) -> None:
    """Pairwise 1 - NCC distances of by-network heatmaps and their average-linkage dendrograms.

    The CSV and the PNG are written together or not at all.
    """
    from ._io import atomic_paths, check_output
    from .plots import dendrograms
    from .scoring import similarity_folder

    out = _csv_target(Path(args.out))
    png = check_output(out.with_suffix(".png"))
    pairs, matrices = similarity_folder(args.heatmaps)
    figure = dendrograms(matrices)
    with atomic_paths([out, png]) as (tmp_csv, tmp_png):
        pairs.to_csv(tmp_csv, index=False)
        figure.savefig(tmp_png, format="png", dpi=120, bbox_inches="tight")
    print(f"{len(pairs)} distances -> {out}; dendrograms -> {png}")


def cmd_data_build(args: argparse.Namespace) -> None:
    """Build a preprocessed dataset from a config file, or the embedded synthetic default."""
    from ._io import check_output
    from .data import build_from_config, describe_dataset
    from .synthetic import build_default

    check_output(args.out, folder=True)
    if args.default:
        build_default(args.out)
    else:
        build_from_config(args.config, args.out)
    print(describe_dataset(args.out))


def cmd_data_show(args: argparse.Namespace) -> None:
    """Counts per dataset, subject and expression, and the skip report, of a built dataset."""
    from .data import describe_dataset

    print(describe_dataset(args.directory))


def cmd_models_summary(args: argparse.Namespace) -> None:
    """Every registered network at the paper's input size: parameters against Table 1, pre-training."""
    import pandas as pd

    from .models import summary

    table = summary(check_weights=args.check_weights)
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        shown = table.assign(params=table.params.map("{:,}".format),
                             paper_params=table.paper_params.map(lambda v: "-" if pd.isna(v) else f"{v:,.0f}"),
                             ratio=table.ratio.map(lambda v: "-" if pd.isna(v) else f"{v:.3f}"))
        print(shown.to_string(index=False))
    paper = table.dropna(subset=["paper_params"])
    print(f"{int(paper.within_10pct.sum())} of {len(paper)} paper networks within 10 % of Table 1's parameter count")


def cmd_train(args: argparse.Namespace) -> None:
    """Train a profile's networks with subject-grouped cross-validation (resumes)."""
    from ._io import folder_lock
    from .profiles import load_profile, parse_overrides, record_profile
    from .run import default_run_dir, prepare_data
    from .training import train_run

    prof = load_profile(args.profile, args.config, parse_overrides(args.param))
    run_dir = args.run or default_run_dir(prof)
    with folder_lock(run_dir, "fermap train"):
        prepare_data(run_dir, prof)
        record_profile(run_dir, prof)
        table = train_run(run_dir, prof, executor=_executor(args))
    print(table.to_string(index=False))
    if table.synthetic.any():
        print("(SYNTHETIC data: FACS-driven expressions on real faces; not the paper's datasets)")
    cold = table[~table.pretrained & table.weights.str.contains("unavailable")]
    if len(cold):
        print(f"pretrained=false (ImageNet weights unavailable here): {', '.join(sorted(cold.network.unique()))}")


def cmd_explain(args: argparse.Namespace) -> None:
    """LIME on every trained (network, fold) of a run, standardised, cached, and the heatmaps."""
    from ._io import folder_lock
    from .explanations import explain_run
    from .layout import heatmaps_dir, heatmaps_summary_file
    from .profiles import parse_overrides, read_profile

    prof = read_profile(args.run, parse_overrides(args.param))
    with folder_lock(args.run, f"fermap explain --method {args.method}"):
        table = explain_run(args.run, prof, method=args.method, executor=_executor(args))
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
    from ._io import folder_lock
    from .profiles import load_profile, parse_overrides
    from .run import default_run_dir, run_book

    if args.unpack:  # a finished run, handed out as one file: no chapter is executed
        from .archive import archive_profile, unpack_run

        name = archive_profile(args.unpack).get("name") or args.unpack.name.split(".")[0]
        run_dir = unpack_run(args.unpack, args.run or default_run_dir({"name": name}))
        print(f"run {name} unpacked -> {run_dir}; its chapters open without retraining")
        return
    prof = load_profile(args.profile, args.config, parse_overrides(args.param))
    if args.pack:
        from .archive import pack_run

        print(f"run packed -> {pack_run(args.run or default_run_dir(prof), args.pack)}")
        return
    executor = _executor(args)
    with folder_lock(args.run or default_run_dir(prof), "fermap run"):
        if executor.distributed:  # every job on the cluster first; the chapters then find them done
            from .executor import run_stages

            with executor:
                run_stages(args.run or default_run_dir(prof), prof, executor)
        table = run_book(prof, args.run, args.chapters)
    print(table.to_string(index=False))


def cmd_plan(args: argparse.Namespace) -> None:
    """What a profile's run would do and cost, without running it: jobs, disk, time."""
    from .plan import format_plan, plan_run
    from .profiles import load_profile, parse_overrides

    prof = load_profile(args.profile, args.config, parse_overrides(args.param))
    plan = plan_run(prof, workers=args.workers, calibrate_speed=not args.no_calibration, run_dir=args.run)
    print(format_plan(plan))


def _executor(args: argparse.Namespace):
    """Where the jobs run: --workers N (a Dask LocalCluster here), --scheduler ADDRESS, else in-process."""
    from .executor import Executor

    return Executor(workers=args.workers or 0, scheduler=args.scheduler, threads=args.threads)


def cmd_book(args: argparse.Namespace) -> None:
    """Build the HTML book from the executed chapters (jupyter-book 1.x, no execution)."""
    from .book import build_book, check_book
    from .teaching import launch_repository

    html = build_book()
    print(f"book -> {html}/index.html")
    if launch_repository() is None:  # fermap has no public repository: the buttons need the reader's own
        print("note: the launch buttons open the placeholder repository; set `repository: url` in _config.yml "
              "to your fork or course copy (README, 'A book to teach from')")
    if args.check:
        from .teaching import check_teaching

        problems = check_book(html) + check_teaching(html)  # as a reader, then as a teacher
        for p in problems:
            print(f"PROBLEM {p}")
        print(f"browser check: {len(problems)} problem(s); screenshots in {html.parent / 'screenshots'}")
        if problems:
            raise SystemExit(1)


def _profile_arguments(p: argparse.ArgumentParser) -> None:
    """--profile | --config, -p overrides and --run: how train and run choose what to do."""
    src = p.add_mutually_exclusive_group()
    src.add_argument("--profile", default=None, help="smoke, default or paper (default: default)")
    src.add_argument("--config", type=Path, help="a YAML profile file (keys as in config.yaml; 'base' names a profile)")
    p.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"), help="override a profile key")
    p.add_argument("--run", type=Path, help="run folder (default: runs/<profile> in the project)")


def _executor_arguments(p: argparse.ArgumentParser) -> None:
    """--workers | --scheduler, --threads: where a run's jobs execute."""
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=0, metavar="N",
                       help="run the jobs on a Dask LocalCluster of N worker processes on this machine")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="run the jobs on an existing Dask cluster "
                            "(e.g. tcp://host:8786; dask-jobqueue, Kubernetes)")
    p.add_argument("--threads", type=int, default=None, metavar="T",
                   help="compute threads per job (default: the profile's, else cores / workers)")


def build_parser() -> argparse.ArgumentParser:
    from .config import section

    parser = argparse.ArgumentParser(prog="fermap", description=__doc__)
    parser.add_argument("--version", action="version", version=f"fermap {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    from .layout import authors_heatmaps_dir

    authors = section("book")["authors"]  # the authors' published data, shipped beside the book
    by_cv, by_net = (authors_heatmaps_dir(authors, g).as_posix() for g in ("heatmaps_by_cv", "heatmaps_by_net"))
    p = sub.add_parser("score", help="score per-fold heatmaps against Ekman masks (Tables 3 and 4)",
                       epilog=f"The paper's own heatmaps ship with fermap; from the project folder: fermap score "
                              f"--heatmaps {by_cv} --out t34.csv")
    p.add_argument("--heatmaps", required=True, type=Path,
                   help=f"folder of {{Net}}_CV{{k}}_{{Expression}}_heatmap.png "
                        f"(the authors': {by_cv})")
    p.add_argument("--masks", type=Path, help=f"folder of {{Expression}}_gt.png (default: fermap's own masks; "
                                              f"the authors': {authors}/ekman_masks)")
    p.add_argument("--out", required=True, type=Path, help="output CSV")
    p.add_argument("--decimals", type=int, default=4, help="decimals in the CSV (default 4, as the paper)")
    p.add_argument("--allow-missing", action="store_true",
                   help="score an incomplete set (a class no image was predicted as), averaging what exists")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("masks", help="write the six Ekman masks as PNGs (255 = mask)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--from-aus", action="store_true", help="build each mask as the union of its Table 2 AUs")
    p.set_defaults(func=cmd_masks)

    p = sub.add_parser("similarity", help="1 - NCC distances between by-network heatmaps, with dendrograms")
    p.add_argument("--heatmaps", required=True, type=Path,
                   help=f"folder of {{Net}}_{{Expression}}_heatmap.png (the authors': {by_net})")
    p.add_argument("--out", required=True, type=Path, help="output CSV; the dendrograms go beside it as .png")
    p.set_defaults(func=cmd_similarity)
    data = sub.add_parser("data", help="build or inspect a preprocessed dataset")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    p = data_sub.add_parser("build", help="preprocess datasets (or the embedded default) into DIR")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", type=Path, help="YAML file naming the datasets and their folders")
    src.add_argument("--default", action="store_true", help="the embedded synthetic dataset (offline)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.set_defaults(func=cmd_data_build)
    p = data_sub.add_parser("show", help="counts and skip report of a built dataset")
    p.add_argument("directory", type=Path)
    p.set_defaults(func=cmd_data_show)
    models = sub.add_parser("models", help="the network registry")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    p = models_sub.add_parser("summary", help="parameters of every network against Table 1, and pre-training")
    p.add_argument("--check-weights", action="store_true", help="try to load the ImageNet weights (slow offline)")
    p.set_defaults(func=cmd_models_summary)

    p = sub.add_parser("train", help="train a profile's networks with subject-grouped k-fold (resumes)")
    _profile_arguments(p)
    _executor_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("explain", help="LIME on a run's trained networks, standardised, cached; then the heatmaps")
    p.add_argument("--run", required=True, type=Path, help="the run folder fermap train wrote")
    p.add_argument("--method", default="lime", choices=explainer_names(),
                   help="the explainer (default lime, the paper's); others write RUN/heatmaps_<method>")
    p.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"),
                   help="override a profile key, e.g. -p explain.num_samples 500")
    _executor_arguments(p)
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("run", help="execute the book's chapters with papermill for a profile (skips unchanged ones)")
    _profile_arguments(p)
    p.add_argument("--chapters", nargs="*", help="only these chapters (names as in config.yaml), in order")
    packing = p.add_mutually_exclusive_group()
    packing.add_argument("--pack", type=Path, metavar="ARCHIVE",
                         help="instead of executing, pack the finished run into ARCHIVE (.tar.gz)")
    packing.add_argument("--unpack", type=Path, metavar="ARCHIVE",
                         help="instead of executing, unpack ARCHIVE into --run (default runs/<its profile>)")
    _executor_arguments(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("plan", help="what a profile's run would do and cost (jobs, disk, time), running nothing")
    _profile_arguments(p)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8, 16], metavar="N",
                   help="worker counts to estimate the time for (default 1 2 4 8 16)")
    p.add_argument("--no-calibration", action="store_true",
                   help="count jobs and disk only; no measured time (calibration builds each network once)")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("book", help="build the HTML book (_build/html) from the executed chapters")
    p.add_argument("--check", action="store_true",
                   help="then open every page in headless Chromium (missing images, errors, unrendered chapters) "
                        "and check every chapter's overview, exercises with solutions, summary and next step")
    p.set_defaults(func=cmd_book)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"fermap: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    import warnings

    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            # fermap's warnings are messages for the user: shown, whatever filter the caller set
            warnings.simplefilter("always", RuntimeWarning)
            warnings.showwarning = _one_line_warning  # one line too, without fermap's source line
            args.func(args)
    except FermapError as exc:
        print(f"fermap: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a read-only folder, a path that is a folder: one line, no traceback
        where = exc.filename or ""
        print(f"fermap: error: {where}{': ' if where else ''}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fermap: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
