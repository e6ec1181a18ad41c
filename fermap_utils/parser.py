"""The ``fermap`` command line's parser (argparse only): every subcommand and its arguments.

Each subcommand names its handler by a string (``command``); :mod:`fermap_utils.cli` runs it.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from . import __version__
from .config import section
from .explainers import PAPER_METHOD
from .explainers import names as explainer_names
from .layout import authors_heatmaps_dir

#: The command line's description (``fermap --help``).
DESCRIPTION = "The ``fermap`` command line. Each subcommand calls the same functions as the notebooks."


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
    """The ``fermap`` command line's parser: every subcommand, its arguments and help.

    Each subcommand names its handler by a string, ``command`` (e.g. ``"score"``, ``"data build"``),
    which :mod:`fermap_utils.cli` maps to the function that runs it.

    Returns
    -------
    argparse.ArgumentParser
        The parser; ``parse_args`` gives a namespace with ``command`` and the subcommand's arguments.
    """
    parser = argparse.ArgumentParser(prog="fermap", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"fermap {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

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
    p.set_defaults(command="score")

    p = sub.add_parser("masks", help="write the six Ekman masks as PNGs (255 = mask)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--from-aus", action="store_true", help="build each mask as the union of its Table 2 AUs")
    p.set_defaults(command="masks")

    p = sub.add_parser("similarity", help="1 - NCC distances between by-network heatmaps, with dendrograms")
    p.add_argument("--heatmaps", required=True, type=Path,
                   help=f"folder of {{Net}}_{{Expression}}_heatmap.png (the authors': {by_net})")
    p.add_argument("--out", required=True, type=Path, help="output CSV; the dendrograms go beside it as .png")
    p.set_defaults(command="similarity")
    data = sub.add_parser("data", help="build or inspect a preprocessed dataset")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    p = data_sub.add_parser("build", help="preprocess datasets (or the embedded default) into DIR")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", type=Path, help="YAML file naming the datasets and their folders")
    src.add_argument("--default", action="store_true", help="the embedded synthetic dataset (offline)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.set_defaults(command="data build")
    p = data_sub.add_parser("show", help="counts and skip report of a built dataset")
    p.add_argument("directory", type=Path)
    p.set_defaults(command="data show")
    models = sub.add_parser("models", help="the network registry")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    p = models_sub.add_parser("summary", help="parameters of every network against Table 1, and pre-training")
    p.add_argument("--check-weights", action="store_true", help="try to load the ImageNet weights (slow offline)")
    p.set_defaults(command="models summary")

    p = sub.add_parser("train", help="train a profile's networks with subject-grouped k-fold (resumes)")
    _profile_arguments(p)
    _executor_arguments(p)
    p.set_defaults(command="train")

    p = sub.add_parser("explain", help="LIME on a run's trained networks, standardised, cached; then the heatmaps")
    p.add_argument("--run", required=True, type=Path, help="the run folder fermap train wrote")
    p.add_argument("--method", default=PAPER_METHOD, choices=explainer_names(),
                   help="the explainer (default lime, the paper's); others write RUN/heatmaps_<method>")
    p.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"),
                   help="override a profile key, e.g. -p explain.num_samples 500")
    _executor_arguments(p)
    p.set_defaults(command="explain")

    p = sub.add_parser("run", help="execute the book's chapters with papermill for a profile (skips unchanged ones)")
    _profile_arguments(p)
    p.add_argument("--chapters", nargs="*", help="only these chapters (names as in config.yaml), in order")
    packing = p.add_mutually_exclusive_group()
    packing.add_argument("--pack", type=Path, metavar="ARCHIVE",
                         help="instead of executing, pack the finished run into ARCHIVE (.tar.gz)")
    packing.add_argument("--unpack", type=Path, metavar="ARCHIVE",
                         help="instead of executing, unpack ARCHIVE into --run (default runs/<its profile>)")
    _executor_arguments(p)
    p.set_defaults(command="run")

    p = sub.add_parser("plan", help="what a profile's run would do and cost (jobs, disk, time), running nothing")
    _profile_arguments(p)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8, 16], metavar="N",
                   help="worker counts to estimate the time for (default 1 2 4 8 16)")
    p.add_argument("--no-calibration", action="store_true",
                   help="count jobs and disk only; no measured time (calibration builds each network once)")
    p.set_defaults(command="plan")

    p = sub.add_parser("book", help="build the HTML book (_build/html) from the executed chapters")
    p.add_argument("--check", action="store_true",
                   help="then open every page in headless Chromium (missing images, errors, unrendered chapters) "
                        "and check every chapter's overview, exercises with solutions, summary and next step")
    p.set_defaults(command="book")
    return parser
