"""Does a change of fermap's code change a result? Compare two run folders of the same profile and seed.

Run the same profile before and after the change, each into its own folder and with its own fresh
cache (the cache holds the synthetic dataset and ported weights, which must be rebuilt by the code
under test), then compare:

.. code-block:: bash

    git archive BEFORE | tar -x -C /tmp/before_src     # the code before the change, apart
    FERMAP_CACHE=$(mktemp -d) PYTHONPATH=/tmp/before_src .venv/bin/fermap run --profile smoke --run /tmp/before
    FERMAP_CACHE=$(mktemp -d) .venv/bin/fermap run --profile smoke --run /tmp/after
    .venv/bin/python benchmarks/refactor_equality.py /tmp/before /tmp/after

What must be equal:

- every table (``*.csv``) and every image (``*.png``: heatmaps, masks, the dataset's crops), byte for byte;
- every ``*.npz`` (cached explanations, planted maps) and ``*.npy``, array by array;
- every trained model (``model.keras``), weight by weight;
- every other JSON file (``metrics.json``, ``summary.json``, ``run.json``), key by key, except the
  wall-clock fields (``seconds``, timings) and the executor's job records (``jobs/``), which time a run.

Provenance is compared apart, since it names where a run's inputs were, not what it computed: the
dataset's ``source`` column (the generated images' paths, inside ``$FERMAP_CACHE``), and the
fingerprints built from it (``metrics.json``'s ``settings``, a cached explanation's ``key``), and the
synthetic dataset's ``source_key`` (a cache key that hashes the generator's source file, so any edit
of ``synthetic.py`` changes it, even one that changes no pixel). Two runs
with different caches differ there and nowhere else; a difference in provenance alone is reported and
does not fail the comparison.

The last line is the share of compared files whose results are equal, ``equal_files=N/M``; the lines
before it name each difference.

``--quick`` (CI, tests/test_benchmarks.py), without the two folders: the same comparison on two tiny run
folders it writes itself (one file of each kind compared, differing only in clock fields, job records and
provenance), in a second.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np

#: Fields that record how long something took or where it ran, not what it computed.
CLOCK_FIELDS = {"seconds", "cpu_seconds", "started", "finished", "worker", "pid", "threads", "starts"}
#: Folders that time a run rather than hold its results.
SKIPPED = ("jobs",)
#: Where a run's inputs were, not what it computed: JSON keys, npz arrays and CSV columns.
PROVENANCE = {"settings", "key", "source", "source_key"}


def _files(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*"))
            if p.is_file() and p.relative_to(root).parts[0] not in SKIPPED and not p.name.startswith(".")}


def _arrays_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray], skip: set[str] = frozenset()) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f")
                                        for k in a if k not in skip)


def _npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _keras_weights(path: Path) -> dict[str, np.ndarray]:
    """Every array of a ``.keras`` file's weights (an HDF5 file inside the zip)."""
    import h5py

    with zipfile.ZipFile(path) as z:
        blob = z.read("model.weights.h5")
    out = {}
    with h5py.File(io.BytesIO(blob), "r") as h5:
        h5.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def _without(value, fields: set[str]):
    if isinstance(value, dict):
        return {k: _without(v, fields) for k, v in value.items() if k not in fields}
    if isinstance(value, list):
        return [_without(v, fields) for v in value]
    return value


def _csv_without(path: Path, columns: set[str]):
    import pandas as pd

    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    return table.drop(columns=[c for c in table.columns if c in columns])


def same(a: Path, b: Path, provenance: bool = True) -> bool:
    """Whether two files of the same relative path hold the same result (with ``provenance``: and the
    same provenance, i.e. byte for byte where a file is compared as bytes)."""
    skip = set() if provenance else PROVENANCE
    if a.suffix == ".npz":
        return _arrays_equal(_npz(a), _npz(b), skip)
    if a.suffix == ".npy":
        return _arrays_equal({"": np.load(a)}, {"": np.load(b)})
    if a.suffix == ".keras":
        return _arrays_equal(_keras_weights(a), _keras_weights(b))
    if a.suffix == ".json":
        return _without(json.loads(a.read_text()), CLOCK_FIELDS | skip) == \
            _without(json.loads(b.read_text()), CLOCK_FIELDS | skip)
    if a.read_bytes() == b.read_bytes():
        return True
    return a.suffix == ".csv" and not provenance and _csv_without(a, skip).equals(_csv_without(b, skip))


def compare(before: Path, after: Path) -> tuple[list[str], int]:
    """The differences between two run folders (missing files, results, provenance alone) and how many
    files were compared; a line naming provenance alone starts with ``provenance``."""
    left, right = _files(before), _files(after)
    problems = [f"only in {before}: {k}" for k in sorted(left.keys() - right.keys())]
    problems += [f"only in {after}: {k}" for k in sorted(right.keys() - left.keys())]
    common = sorted(left.keys() & right.keys())
    for k in common:
        if not same(left[k], right[k], provenance=False):
            problems.append(f"differs: {k}")
        elif not same(left[k], right[k]):
            problems.append(f"provenance differs (not a result): {k}")
    return problems, len(common)


def _quick_runs(root: Path) -> tuple[Path, Path]:
    """Two tiny run folders holding the same results: a table, an image, arrays, a model's weights and
    JSON files, apart from their timings, job records and provenance (``--quick``)."""
    import h5py

    folders = []
    for k, name in enumerate(("before", "after")):
        run = root / name
        (run / "data" / "images").mkdir(parents=True)
        (run / "models" / "SongNet" / "fold1").mkdir(parents=True)
        (run / "jobs").mkdir()
        (run / "jobs" / "train-SongNet-fold1.json").write_text(json.dumps({"seconds": 1.5 + k}))
        (run / "run.json").write_text(json.dumps({"name": "smoke", "seed": 0}))
        (run / "data" / "records.csv").write_text(f"id,image,source\n0,images/00000.png,/cache{k}/raw/a.png\n")
        # a 1x1 grey PNG, byte for byte the same in both
        (run / "data" / "images" / "00000.png").write_bytes(bytes.fromhex(
            "89504e470d0a1a0a0000000d4948445200000001000000010800000000"
            "3a7e9b550000000a49444154789c6360000000020001e221bc330000000049454e44ae426082"))
        np.save(run / "data" / "landmarks.npy", np.arange(136, dtype=np.float32).reshape(68, 2))
        np.savez(run / "models" / "SongNet" / "fold1" / "explained.npz", maps=np.eye(3), key=np.array(f"k{k}"))
        (run / "models" / "SongNet" / "fold1" / "metrics.json").write_text(
            json.dumps({"accuracy": 0.5, "seconds": 10.0 + k, "settings": f"/cache{k}"}))
        weights = io.BytesIO()
        with h5py.File(weights, "w") as h5:
            h5["layers/dense/vars/0"] = np.ones((2, 3))
        with zipfile.ZipFile(run / "models" / "SongNet" / "fold1" / "model.keras", "w") as z:
            z.writestr("model.weights.h5", weights.getvalue())
        folders.append(run)
    return folders[0], folders[1]


def main(argv: list[str] | None = None) -> int:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, nargs="?")
    parser.add_argument("after", type=Path, nargs="?")
    parser.add_argument("--quick", action="store_true", help="compare two tiny run folders written here")
    args = parser.parse_args(argv)
    if args.quick and args.before is None:
        with tempfile.TemporaryDirectory(prefix="fermap_equality_") as tmp:
            return main([str(p) for p in _quick_runs(Path(tmp))])
    if args.before is None or args.after is None:
        parser.error("the two run folders to compare are required (or --quick)")
    problems, compared = compare(args.before, args.after)
    kinds: dict[str, int] = {}
    for k in _files(args.before):
        kinds[Path(k).suffix or "(none)"] = kinds.get(Path(k).suffix or "(none)", 0) + 1
    print("compared by kind:", ", ".join(f"{s} {n}" for s, n in sorted(kinds.items())))
    for line in problems:
        print(line)
    differing = sum(p.startswith("differs") for p in problems)
    provenance = sum(p.startswith("provenance") for p in problems)
    failed = [p for p in problems if not p.startswith("provenance")]
    print(f"equal_files={compared - differing}/{compared + len(failed) - differing}"
          + (f" ({provenance} differ in provenance alone)" if provenance else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
