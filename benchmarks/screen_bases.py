"""Screen the shipped real faces for neutral bases of the synthetic dataset.

Every identity of the embedded default dataset shows all six classes from one base face, so
a base that already smiles, or whose lips are parted, carries that expression into every class.
This script crops each face of ``synthetic.neutral_faces()`` as the generator does (no pose,
light or noise), asks the fixed FER2013 network (fer's mini-Xception, trained on real faces)
for its seven-class verdict, measures the mouth from the landmarks, and applies the rule
``synthetic.screen`` of ``config.yaml`` (:func:`fermap_utils.synthetic.screen_base_faces`).

It prints every dropped face with its reason, and ``kept=N`` last. ``--write`` stores the table
as ``fermap_utils/data/base_faces.csv``, which the generator reads (so every machine builds the
same dataset, whatever its floating-point round-off).

Run: .venv/bin/python benchmarks/screen_bases.py [--write] [--quick]

``--quick`` (CI, tests/test_benchmarks.py): the first 6 faces only, never written.
"""
from __future__ import annotations

import argparse
import os
from importlib import resources


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="store the table as the package's base_faces.csv")
    parser.add_argument("--quick", action="store_true", help="6 faces, to check that the script runs")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from fermap_utils import synthetic as S
    from fermap_utils.config import section
    from fermap_utils.models import FER2013_CLASSES, fer2013_seven_way

    faces = S.neutral_faces()[: 6 if args.quick else None]
    params = section("synthetic")
    crops, marks = S.base_crops(faces, params["size"])
    table = S.screen_base_faces([n for n, _, _ in faces], marks, fer2013_seven_way(crops), params["screen"],
                                FER2013_CLASSES)
    for row in table[~table.kept].itertuples():
        print(f"dropped {row.identity}: {row.reason}")
    print(f"FER2013's verdict on the kept bases: {table[table.kept].verdict.value_counts().to_dict()}")
    if args.write and not args.quick:
        path = resources.files("fermap_utils").joinpath("data", S.BASE_FACES_FILE)
        table.round(4).to_csv(str(path), index=False)
        print(f"written: {path}")
    print(f"faces={len(table)} kept={int(table.kept.sum())}")


if __name__ == "__main__":
    main()
