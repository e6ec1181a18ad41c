"""Benchmark: a profile's whole run (train, LIME and the other explainers) in this process, one job
after another, and on a Dask LocalCluster of 2 workers, in one run from the same built dataset.

Both paths run the same jobs through the same function (fermap_utils.executor.execute); on 2
workers each job gets cores / 2 threads, in the sequential run every core. The last line is
``speedup_2_workers=<sequential seconds / 2-worker seconds>``.

Run: .venv/bin/python benchmarks/scale.py [--profile paper_small] [--networks A B ...] [--folds N] [--quick]

``--quick`` (CI, tests/test_benchmarks.py): the same code with the smoke profile cut to SongNet, one epoch,
one fold, one subject per fold, LIME alone at 20 samples on one image per class (:data:`QUICK`); its
speedup means nothing.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: --quick: the profile and its overrides.
QUICK = {"profile": "smoke",
         "overrides": {"networks": ["SongNet"], "folds": 1, "subjects_per_fold": 1, "epochs_scale": 0.01,
                       "explain.images_per_class": 1, "explain.num_samples": 20, "explain.methods": []}}


def main() -> None:
    from fermap_utils.executor import Executor, job_table
    from fermap_utils.layout import data_dir
    from fermap_utils.profiles import profile
    from fermap_utils.run import prepare_data, run_stages

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", help="default: paper_small (--quick: smoke)")
    parser.add_argument("--networks", nargs="*", help="only these networks (default: the profile's)")
    parser.add_argument("--folds", type=int, help="only the first N folds (default: the profile's)")
    parser.add_argument("--quick", action="store_true", help="a tiny size, to check that the benchmark runs")
    args = parser.parse_args()
    overrides = {k: v for k, v in (("networks", args.networks), ("folds", args.folds)) if v}
    if args.quick:
        overrides = {**QUICK["overrides"], **overrides}
    prof = profile(args.profile or (QUICK["profile"] if args.quick else "paper_small"), overrides)
    with tempfile.TemporaryDirectory(prefix="fermap_scale_") as tmp:
        tmp = Path(tmp)
        prepare_data(tmp / "data_source", prof, progress=False)
        seconds = {}
        for label, executor in (("sequential", Executor()), ("2_workers", Executor(workers=2))):
            run = tmp / label
            shutil.copytree(data_dir(tmp / "data_source"), data_dir(run))
            started = time.perf_counter()
            with executor:
                run_stages(run, prof, executor, progress=False)
            seconds[label] = time.perf_counter() - started
            jobs = job_table(run)
            print(f"{label}: {seconds[label]:.1f} s wall, {len(jobs)} jobs, {jobs.seconds.sum():.1f} s in jobs, "
                  f"threads per job {sorted(set(jobs.threads))}")
    print(f"profile {prof['name']} ({len(prof['networks'])} networks), {os.cpu_count()} cores")
    print(f"speedup_2_workers={seconds['sequential'] / seconds['2_workers']:.2f}")


if __name__ == "__main__":
    main()
