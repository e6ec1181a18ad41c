"""Benchmark: do the synthetic expressions look like expressions, to a real FER model and to the eye?

Every image of the embedded default dataset is rendered as ``fermap data build --default``
renders it (the same faces, seeds and parameters), with its neutral twin (same pose, light and
noise). Then:

1. **Recognition.** The fixed FER2013 network (fer's mini-Xception, trained on real faces,
   never on ours) classifies every image as the book feeds it (the 128-px crop resized to
   its 64-px input). Per class: its recall, and its **base rate**, how often it names that class
   on the neutral twins (what it says before any expression is drawn). Targets: overall
   >= 0.50, every class >= 0.30 and >= its base rate + 0.15.
2. **Edges.** Whether the changes are sharper than the face's own detail:
   :func:`fermap_utils.synthetic.edge_ratio`, the steepest gradients (99th percentile) of the
   change (expressive minus neutral face, before light and noise) inside the expression's AU
   regions over those of the neutral face inside its landmarks' hull. A drawn, hard-edged glyph
   (a flat black mouth) scores about 3; a face's own texture moved a little, below 1.
   Target: median <= 1.

The last line is ``fer2013_accuracy=<x> edge_ratio=<median>``.

Run: .venv/bin/python benchmarks/realism.py [--set NAME=VALUE ...] [--quick]

``--set`` overrides a parameter of the ``synthetic`` section of ``config.yaml`` (YAML values), to try
a rendering before changing the defaults.

``--quick`` (CI, tests/test_benchmarks.py): the same code on the first 4 identities, one sample each;
its numbers mean little.
"""
from __future__ import annotations

import argparse
import os

import numpy as np
import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 identities, to check that the benchmark runs")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a parameter of config.yaml's synthetic section")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import cv2
    import tqdm

    from fermap_utils import synthetic as S
    from fermap_utils.config import section
    from fermap_utils.data import resize_images
    from fermap_utils.errors import FermapError
    from fermap_utils.models import build_network
    from fermap_utils.profiles import parse_overrides

    try:
        params = S.synthetic_params(parse_overrides([item.partition("=")[::2] for item in args.set]))
    except FermapError as exc:
        parser.error(f"--set: {exc}")
    if args.quick:
        params["samples_per_expression"] = 1
    expressions = list(section("paper")["expressions"])
    faces = S.base_faces()[: 4 if args.quick else None]
    images, neutral, truth, ratios = [], [], [], []
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    total = len(faces) * len(expressions) * params["samples_per_expression"]
    with tqdm.tqdm(total=total, desc="rendering", unit="img", disable=args.quick) as bar:
        for i, (_, image, marks) in enumerate(faces):
            for j, expr in enumerate(expressions):
                for k in range(params["samples_per_expression"]):
                    nuisance_rng, au_rng = S.sample_rngs(params["seed"], i, j, k)
                    nuisance = S.draw_nuisance(nuisance_rng, params, params["size"])
                    intensities = S.draw_intensities(expr, au_rng, params)
                    face, lm = S.posed_face(image, marks, params["size"], nuisance)
                    expressive, _, union = S.apply_expression(face, lm, expr, intensities, params)
                    images.append(S.light_and_noise(expressive, nuisance))
                    neutral.append(S.light_and_noise(face, nuisance))
                    truth.append(j)
                    region = cv2.dilate(union.astype(np.uint8), disc).astype(bool)
                    ratios.append(S.edge_ratio(expressive, face, region, S.face_hull(lm, params["size"])))
                    bar.update()
    truth = np.asarray(truth)
    net = build_network("FER2013")

    def says(x: np.ndarray) -> np.ndarray:
        x = resize_images(np.asarray(x), net.input_size)[..., None].astype("float32")
        return net.model.predict(x, batch_size=256, verbose=0).argmax(axis=1)

    predicted, on_neutral = says(images), says(neutral)
    table = pd.DataFrame({
        "recall": [float((predicted[truth == c] == c).mean()) for c in range(len(expressions))],
        "base rate": [float((on_neutral == c).mean()) for c in range(len(expressions))],
    }, index=expressions)
    table["above base"] = table["recall"] - table["base rate"]
    table["met"] = (table["recall"] >= 0.30) & (table["above base"] >= 0.15)
    confusion = pd.crosstab(pd.Series(np.array(expressions)[truth], name="true"),
                            pd.Series(np.array(expressions)[predicted], name="FER2013 says"))
    accuracy = float((predicted == truth).mean())
    ratios = np.asarray(ratios)
    print(f"SYNTHETIC default dataset, rendered here: {len(faces)} identities, {len(truth)} images, chance 1/6")
    print("per class (base rate: FER2013 names the class on the neutral twins; target recall >= 0.30 and "
          ">= base rate + 0.15):")
    print(table.round(3).to_string())
    print(confusion.to_string())
    print(f"classes meeting the target: {int(table.met.sum())} of {len(table)}; overall accuracy target 0.50")
    print(f"steepest edges of the changes over the face's own (target <= 1): median {np.median(ratios):.2f}, "
          f"90th percentile {np.percentile(ratios, 90):.2f}")
    per_class = pd.Series(ratios).groupby(np.array(expressions)[truth]).median()
    print("edge ratio per class: " + ", ".join(f"{e} {v:.2f}" for e, v in per_class.items()))
    print(f"fer2013_accuracy={accuracy:.3f} edge_ratio={np.median(ratios):.3f}")


if __name__ == "__main__":
    main()
