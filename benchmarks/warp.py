"""Benchmark: fermap's dense-map warp (cv2.remap) against scikit-image's PiecewiseAffineTransform + warp.

Both warp the same real faces (scikit-image's astronaut and LFW faces) and one
explanation of each to the 224x275 standard face, estimating the transform from
the 89 points each time. The last line is ``speedup_vs_skimage=<x>`` (target >= 50).

Run: .venv/bin/python benchmarks/warp.py [--repeats N] [--quick]

``--quick`` (CI, tests/test_benchmarks.py): the same code on two faces, one timed repeat, in seconds;
its numbers mean little.
"""
from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
from skimage import data
from skimage.transform import PiecewiseAffineTransform, warp

from fermap_utils.landmarks import (
    STANDARD_SIZE,
    detect_landmarks,
    predict_landmarks,
    standard_points,
    with_border_points,
)
from fermap_utils.warping import apply_map, piecewise_affine_map


def faces(lfw: int = 4) -> list[tuple[np.ndarray, np.ndarray]]:
    rgb = data.astronaut()
    out = [(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), detect_landmarks(rgb, name="astronaut"))]
    for face in data.lfw_subset()[:lfw]:
        img = cv2.resize((face * 255).astype(np.uint8), (224, 224), interpolation=cv2.INTER_CUBIC)
        out.append((img, predict_landmarks(img, (0, 0, 224, 224))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, help="timed repeats; the best is kept (default 5; --quick: 1)")
    parser.add_argument("--quick", action="store_true", help="a tiny size, to check that the benchmark runs")
    args = parser.parse_args()
    args.repeats = args.repeats or (1 if args.quick else 5)
    width, height = STANDARD_SIZE
    dst = standard_points()
    cases = []
    rng = np.random.default_rng(0)
    for gray, lm in faces(1 if args.quick else 4):
        src = with_border_points(lm, gray.shape[1], gray.shape[0])
        cases.append((gray, rng.random(gray.shape).astype(np.float32), src))

    def ours():
        for gray, expl, src in cases:
            maps = piecewise_affine_map(src, dst, (height, width))
            apply_map(gray, maps)
            apply_map(expl, maps)

    def skimage():
        for gray, expl, src in cases:
            tform = PiecewiseAffineTransform.from_estimate(dst, src)
            warp(gray, tform, output_shape=(height, width), order=1, preserve_range=True)
            warp(expl, tform, output_shape=(height, width), order=1, preserve_range=True)

    ours(), skimage()  # warm up both
    t_ours = min(_time(ours) for _ in range(args.repeats)) / len(cases)
    t_sk = min(_time(skimage) for _ in range(max(2, args.repeats // 2))) / len(cases)
    print(f"faces={len(cases)} canvas={width}x{height} (image + 1 explanation each, transform estimated each time)")
    print(f"fermap  (dense map + cv2.remap): {t_ours * 1e3:8.2f} ms per face")
    print(f"skimage (PiecewiseAffine + warp): {t_sk * 1e3:8.2f} ms per face")
    print(f"speedup_vs_skimage={t_sk / t_ours:.1f}")


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
