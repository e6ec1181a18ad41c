"""Benchmark: how well the default profile's networks learn a rendering, before it becomes the default.

Builds the synthetic dataset with ``--set`` overrides of ``config.yaml``'s ``synthetic``
section (as ``benchmarks/realism.py`` takes them) into a scratch run folder, then trains the
named networks on fold 1 exactly as ``fermap run --profile default`` would (same profile,
epochs, seed), and prints each one's test accuracy. Pair it with ``benchmarks/realism.py``
with the same ``--set``: the renderer is changed in ``config.yaml`` only when both hold up
(issue 21: networks >= 90 %, FER2013 >= 0.50).

The last line is ``min_accuracy=<x>`` (the lowest of the networks), their accuracies after it.

Run: .venv/bin/python benchmarks/train_probe.py [--set NAME=VALUE ...] [--networks SongNet ...]
[--run DIR] (minutes per network; the dataset is cached per parameter set)

``--quick`` (CI, tests/test_benchmarks.py): 3 identities, SongNet for one epoch; numbers mean nothing.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a parameter of config.yaml's synthetic section")
    parser.add_argument("--networks", nargs="+", default=["SongNet"], help="networks of the default profile")
    parser.add_argument("--run", default=None, help="scratch run folder (default: a new temporary one)")
    parser.add_argument("--quick", action="store_true", help="3 identities, 1 epoch, to check that it runs")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from fermap_utils.errors import FermapError
    from fermap_utils.layout import data_dir
    from fermap_utils.profiles import parse_overrides, profile
    from fermap_utils.synthetic import build_default, synthetic_params
    from fermap_utils.training import train_job

    try:
        overrides = parse_overrides([item.partition("=")[::2] for item in args.set])
        synthetic_params(overrides)  # refuses a name the synthetic section lacks
    except FermapError as exc:
        parser.error(f"--set: {exc}")
    prof = profile("default")
    unknown = [n for n in args.networks if n not in prof["networks"]]
    if unknown:
        parser.error(f"--networks: {unknown} are not in the default profile's {prof['networks']}")
    if args.quick:
        prof = {**prof, "epochs_scale": 0.01}
    run = Path(args.run or tempfile.mkdtemp(prefix="train_probe-"))
    summary = build_default(data_dir(run), progress=not args.quick, identities=3 if args.quick else None,
                            **overrides)
    print(f"SYNTHETIC rendering {overrides or 'as config.yaml'}: {summary['used']} images; run folder {run}")
    results = {}
    for name in args.networks:
        start = time.perf_counter()
        result = train_job(run, name, 1, prof, progress=not args.quick)
        results[name] = result["accuracy"]
        print(f"{name}: fold-1 test accuracy {result['accuracy']:.3f} in {time.perf_counter() - start:.0f} s")
    print(f"min_accuracy={min(results.values()):.3f} (" + ", ".join(f"{n} {a:.3f}" for n, a in results.items())
          + ")")


if __name__ == "__main__":
    main()
