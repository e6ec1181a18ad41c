"""Benchmark: do the synthetic expressions look like expressions to a real FER model?

The fixed FER2013 network (fer's mini-Xception, trained on real faces, never on
ours) classifies every image of the embedded default dataset, as the book feeds
it (the 128-px crops resized to its 64-px input). Chance is 1/6. The last line is
``fer2013_accuracy=<x>`` (target >= 0.60).

Run: .venv/bin/python benchmarks/realism.py [--data DIR] [--quick]

``--quick`` (CI, tests/test_benchmarks.py): the same code on a dataset of the first 4 identities only,
built in seconds; its accuracy means little.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a built default dataset (default: build one in a temporary folder)")
    parser.add_argument("--quick", action="store_true", help="a tiny dataset, to check that the benchmark runs")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from fermap_utils.config import section
    from fermap_utils.data import load_dataset, resize_images
    from fermap_utils.models import build_network
    from fermap_utils.synthetic import build_default

    data_dir = args.data
    if data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="fermap-realism-")) / "data"
        build_default(data_dir, progress=False, identities=4 if args.quick else None)
    ds = load_dataset(data_dir)
    expressions = list(section("paper")["expressions"])
    truth = ds.table.expression.map({e: i for i, e in enumerate(expressions)}).to_numpy()
    net = build_network("FER2013")
    images = resize_images(ds.images, net.input_size)[..., None].astype("float32")
    predicted = net.model.predict(images, batch_size=128, verbose=0).argmax(axis=1)
    per_class = pd.Series({e: float((predicted[truth == i] == i).mean()) for i, e in enumerate(expressions)})
    confusion = pd.crosstab(pd.Series(np.array(expressions)[truth], name="true"),
                            pd.Series(np.array(expressions)[predicted], name="FER2013 says"))
    print(f"SYNTHETIC default dataset at {data_dir}: {len(truth)} images, chance 1/6")
    print("recall per class:")
    print(per_class.round(3).to_string())
    print(confusion.to_string())
    print(f"fer2013_accuracy={(predicted == truth).mean():.3f}")


if __name__ == "__main__":
    main()
