"""Benchmark: inference and training throughput of every network of a profile, on this machine.

For each network at the input size the profile gives it, it times predict()
over batches of 64 and train_on_batch() over batches of 32, after a warm-up,
and prints images per second. The default profile's plan (config.yaml) is made
from these numbers. The last line is ``slowest_training_images_per_s=<x>``.

Run: .venv/bin/python benchmarks/models.py [--profile default] [--networks A B ...] [--seconds 4] [--quick]

``--quick`` (CI, tests/test_benchmarks.py): the same code on two of the smoke profile's networks (SongNet,
trained, and FER2013, fixed) for 0.1 s each, in seconds; its numbers mean nothing.
"""
from __future__ import annotations

import argparse
import os
import time
import warnings
from functools import partial

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np


def throughput(fn, images_per_call: int, seconds: float) -> float:
    fn()  # warm-up (graph tracing)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or calls < 2:
        fn()
        calls += 1
    return calls * images_per_call / (time.perf_counter() - start)


def main() -> None:
    import keras

    from fermap_utils.models import build_network, size_for
    from fermap_utils.profiles import profile, profile_networks

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", help="default: default (--quick: smoke)")
    parser.add_argument("--networks", nargs="*")
    parser.add_argument("--seconds", type=float, help="timed seconds per network and task (default 4; --quick: 0.1)")
    parser.add_argument("--quick", action="store_true", help="a tiny size, to check that the benchmark runs")
    args = parser.parse_args()
    args.profile = args.profile or ("smoke" if args.quick else "default")
    args.seconds = args.seconds or (0.1 if args.quick else 4.0)
    prof = profile(args.profile)
    names = args.networks or (["SongNet", "FER2013"] if args.quick else profile_networks(prof))
    rng = np.random.default_rng(0)
    print(f"profile={args.profile} input cap={prof.get('input_size')} cores={os.cpu_count()}")
    print(f"{'network':26s} {'size':>5s} {'infer img/s':>12s} {'train img/s':>12s}")
    slowest = np.inf
    for name in names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            built = build_network(name, size=size_for(name, prof), imagenet=False)
        s = built.input_size
        x64 = rng.uniform(0, 255, (64, s, s, 1)).astype("float32")
        infer = throughput(partial(built.model.predict_on_batch, x64), 64, args.seconds)
        train = float("nan")
        if built.trainable:
            built.model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy")
            x32, y32 = x64[:32], rng.integers(0, 6, 32)
            train = throughput(partial(built.model.train_on_batch, x32, y32), 32, args.seconds)
            slowest = min(slowest, train)
        print(f"{name:26s} {s:5d} {infer:12.1f} {train:12.1f}", flush=True)
        del built
        keras.backend.clear_session()
    print(f"slowest_training_images_per_s={slowest:.1f}")


if __name__ == "__main__":
    main()
