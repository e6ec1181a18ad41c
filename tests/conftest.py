"""Shared fixtures: real faces that ship in packages, and the authors' data shipped with the book."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

# The suite's own process computes without oneDNN (set before anything imports TensorFlow): the
# paper_small profile's jobs run their explainers eagerly there (quicker than tracing 75 tiny models),
# which oneDNN's eager backward pass cannot do. The smoke book's kernels, fermap's default path,
# run with oneDNN on (smoke_site).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

#: Session fixtures that cost a test more than the unit run's budget (the synthetic dataset's build,
#: the smoke book's execution): a test using one, directly or through another fixture, is ``slow``.
SLOW_FIXTURES = ("default_dataset", "small_run", "smoke_site")


def pytest_collection_modifyitems(config, items) -> None:
    """Refuse a test that uses a :data:`SLOW_FIXTURES` fixture without ``@pytest.mark.slow``, so that
    ``pytest -m "not slow"`` stays a unit run (plain ``pytest`` runs everything)."""
    unmarked = [f"{item.nodeid} (uses {', '.join(f for f in SLOW_FIXTURES if f in item.fixturenames)})"
                for item in items if item.get_closest_marker("slow") is None
                and any(f in getattr(item, "fixturenames", ()) for f in SLOW_FIXTURES)]
    if unmarked:
        raise pytest.UsageError("mark these tests @pytest.mark.slow:\n  " + "\n  ".join(unmarked))


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory) -> Iterator[Path]:
    """Every test caches into a temporary ``FERMAP_CACHE``, never into the user's home."""
    cache = tmp_path_factory.mktemp("fermap_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FERMAP_CACHE", str(cache))
        yield cache
        # a fixture or test that set its own cache gave the session's back (test_scale once popped it,
        # so every later module cached into ~/.cache/fermap)
        assert os.environ.get("FERMAP_CACHE") == str(cache), "a test left FERMAP_CACHE changed"


@pytest.fixture(autouse=True)
def cache_outside_the_home(private_cache) -> Iterator[None]:
    """Every test starts and ends with a cache outside ``~/.cache/fermap`` (the only place
    :func:`fermap_utils.config.cache_dir` names in the home), so the test that lost the private
    cache is the one that fails. Checked on the variable, not on the home folder, which other
    processes on the machine may write to."""
    from fermap_utils.config import cache_dir

    home = Path.home() / ".cache" / "fermap"
    assert os.environ.get("FERMAP_CACHE") and cache_dir() != home, "the test would cache into the home"
    yield
    assert os.environ.get("FERMAP_CACHE") and cache_dir() != home, "the test left the cache in the home"


@pytest.fixture(scope="session")
def reference() -> Path:
    """``book/data/authors``: the authors' heatmaps (``gray/``), masks (``ekman_masks/``) and the
    paper's Tables 3 and 4, shipped with the project, so no test skips for want of them."""
    from fermap_utils.run import authors_data_dir

    return authors_data_dir()


@pytest.fixture(scope="session")
def astronaut_face() -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's astronaut, in grey, with its dlib landmarks."""
    import cv2
    from skimage import data

    from fermap_utils.landmarks import detect_landmarks

    rgb = data.astronaut()
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), detect_landmarks(rgb, name="astronaut")


@pytest.fixture(scope="session")
def lfw_faces() -> list[tuple[np.ndarray, np.ndarray]]:
    """A few LFW faces from scikit-image, upscaled to 100x100, with landmarks predicted in the whole crop.

    As the authors did, the crop itself is the face rectangle (no detector).
    """
    import cv2
    from skimage import data

    from fermap_utils.landmarks import predict_landmarks

    faces = []
    for face in data.lfw_subset()[:6]:
        img = cv2.resize((face * 255).astype(np.uint8), (100, 100), interpolation=cv2.INTER_CUBIC)
        faces.append((img, predict_landmarks(img, (0, 0, 100, 100))))
    return faces


@pytest.fixture(scope="session")
def default_dataset(tmp_path_factory) -> Path:
    """The embedded synthetic default dataset, built once per test session in a private cache."""
    import os

    from fermap_utils.synthetic import build_default

    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("FERMAP_CACHE")
    os.environ["FERMAP_CACHE"] = str(cache)
    try:
        out = tmp_path_factory.mktemp("default")
        build_default(out, progress=False)
    finally:
        if old is None:
            os.environ.pop("FERMAP_CACHE", None)
        else:
            os.environ["FERMAP_CACHE"] = old
    return out


@pytest.fixture(scope="session")
def small_run(default_dataset, tmp_path_factory):
    """A run folder over a 4-subject slice of the default dataset (2 folds)."""
    import shutil

    import pandas as pd

    run = tmp_path_factory.mktemp("run")
    shutil.copytree(default_dataset, run / "data")
    table = pd.read_csv(run / "data" / "records.csv", dtype={"subject": str})
    keep = table[table.subject.isin(sorted(table.subject.unique())[:4])].copy()
    keep["fold"] = keep.subject.map({s: i % 2 + 1 for i, s in enumerate(sorted(keep.subject.unique()))})
    marks = np.load(run / "data" / "landmarks.npy")[keep.index.to_numpy()]
    keep = keep.reset_index(drop=True)
    keep["id"] = np.arange(len(keep))
    keep.to_csv(run / "data" / "records.csv", index=False)
    np.save(run / "data" / "landmarks.npy", marks)
    return run


def _copy_site(site: Path, mine: Path, parts=("run", "book", "_config.yml", "_toc.yml")) -> Path:
    """A copy of an executed site (its run folder, executed chapters and their stamps), so no
    test sees another's changes."""
    import shutil

    mine.mkdir(parents=True)
    for part in parts:
        (shutil.copytree if (site / part).is_dir() else shutil.copy)(site / part, mine / part)
    return mine


@pytest.fixture(scope="session")
def own_copy():
    """``own_copy(site, folder, parts=...)``: a test's own copy of an executed site."""
    return _copy_site


@pytest.fixture(scope="session")
def smoke_site(tmp_path_factory):
    """The smoke book's chapters executed once per session with papermill, then once more (every
    chapter then unchanged), in a private copy of the book's source tree: ``(site, first, again)``,
    the site folder (``run/``, ``book/``, ``_config.yml``, ``_toc.yml``) and the two tables of
    ``run_book``. Shared by the book's tests and the exercises' tests."""
    import shutil

    from fermap_utils.chapters import run_book
    from fermap_utils.config import section
    from fermap_utils.profiles import load_profile

    site = tmp_path_factory.mktemp("site")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, site / name)
    shutil.copytree(ROOT / "book", site / "book", ignore=shutil.ignore_patterns("chapters", "_build", "mathjax"))
    prof = load_profile("smoke")
    out = site / section("book")["executed"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TF_ENABLE_ONEDNN_OPTS", "1")  # the kernels compute as `fermap run` does by default
        first = run_book(prof, site / "run", progress=False, out_dir=out)
        again = run_book(prof, site / "run", progress=False, out_dir=out)
    return site, first, again


def _write_tiny_dataset(run: Path) -> Path:
    """Write ``run/data``: a tiny dataset (4 subjects x 6 expressions, 32 px, 2 folds) of random
    faces with the standard landmarks, enough to train one epoch. Returns ``run``."""
    import json

    import cv2
    import pandas as pd

    from fermap_utils.config import paper
    from fermap_utils.landmarks import mean_shape

    data = run / "data"
    (data / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    marks = (mean_shape() * (32 / 275)).astype(np.float32)
    rows = []
    for s in range(4):
        for e in paper()["expressions"]:
            name = f"images/{len(rows):05d}.png"
            cv2.imwrite(str(data / name), rng.integers(0, 256, (32, 32), dtype=np.uint8))
            rows.append({"id": len(rows), "image": name, "source": "random", "subject": f"s{s}", "dataset": "T",
                         "expression": e, "fold": s % 2 + 1})
    pd.DataFrame(rows).to_csv(data / "records.csv", index=False)
    np.save(data / "landmarks.npy", np.repeat(marks[None], len(rows), axis=0))
    (data / "summary.json").write_text(json.dumps({"synthetic": True, "folds": 2, "used": len(rows), "read": len(rows),
                                                   "crop_size": 32, "skipped": {}, "by_fold": {"1": 12, "2": 12}}))
    return run


@pytest.fixture(scope="session")
def tiny_dataset():
    """The writer of a tiny run dataset (:func:`_write_tiny_dataset`), for fixtures of any scope."""
    return _write_tiny_dataset

