"""Run folders: one place where every stage of a profile reads and writes.

``RUN/run.json`` records the profile; ``RUN/data`` the dataset; ``RUN/models``
the trained networks; later stages add their own folders.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import yaml

from ._io import atomic_path
from .errors import FermapError


def parse_overrides(pairs: list[list[str]] | None) -> dict:
    """``-p key value`` pairs into a dict; values are read as YAML (numbers, lists, null)."""
    return {key: yaml.safe_load(value) for key, value in (pairs or [])}


def load_profile(name: str | None = None, config: str | os.PathLike | None = None,
                 overrides: dict | None = None) -> dict:
    """A named profile, or one read from a YAML file (same keys), with overrides."""
    from .training import profile

    if config:
        path = Path(config)
        if not path.is_file():
            raise FermapError(f"{path}: no such profile file")
        base = yaml.safe_load(path.read_text()) or {}
        prof = profile(base.pop("base", "default"), {**base, **(overrides or {})})
        prof["name"] = path.stem
        return prof
    return profile(name or "default", overrides)


def default_run_dir(prof: dict) -> Path:
    """``runs/<profile>`` in this checkout (beside ``_toc.yml``), else under the current folder."""
    root = project_root()
    return (root if (root / "_toc.yml").is_file() else Path()) / "runs" / prof["name"]


def check_data_source(prof: dict) -> None:
    """A profile must say which data it runs on: ``default`` (the synthetic set) or a datasets YAML.

    The ``paper`` profile names none on purpose: it is for the licensed datasets, and running it
    on the synthetic set by accident would cost days for nothing.
    """
    source = prof.get("data")
    if not source:
        raise FermapError(f"profile {prof.get('name')!r} names no dataset: pass -p data DATASETS.yaml (your copies, "
                          "as in book/datasets.example.yaml) or -p data default (the synthetic set)")
    if source != "default" and not Path(source).is_file():
        raise FermapError(f"{source}: no such datasets file (-p data expects a YAML like book/datasets.example.yaml)")


def prepare_data(run_dir: str | os.PathLike, prof: dict, progress: bool = True) -> dict:
    """Make sure ``RUN/data`` holds the profile's dataset: the synthetic default, or a datasets YAML;
    with the profile's ``subjects_per_fold``, only that many subjects of each fold."""
    from .data import build_from_config
    from .synthetic import build_default

    check_data_source(prof)
    out = Path(run_dir) / "data"
    source = prof["data"]
    per_fold = prof.get("subjects_per_fold")
    if (out / "summary.json").is_file() and json.loads((out / "summary.json").read_text()).get("subjects_per_fold") \
            not in (None, per_fold):
        (out / "summary.json").unlink()  # a subset made for another profile: build the whole set again
    if source == "default":
        summary = build_default(out, progress=progress)
    elif (out / "summary.json").is_file():
        summary = json.loads((out / "summary.json").read_text())
    else:
        summary = build_from_config(source, out, progress=progress)
    if per_fold and summary.get("subjects_per_fold") != per_fold:
        summary["kept"] = keep_subjects(out, int(per_fold))
        summary["subjects_per_fold"] = int(per_fold)
        with atomic_path(out / "summary.json") as tmp:
            tmp.write_text(json.dumps(summary, indent=2))
    return summary


def keep_subjects(directory: str | os.PathLike, per_fold: int) -> int:
    """Keep only the first ``per_fold`` subjects (in sorted order) of each fold of a built dataset,
    rewriting its ``records.csv`` and ``landmarks.npy`` in step; returns the images kept.
    Idempotent; the images themselves stay where they are."""
    import numpy as np
    import pandas as pd

    directory = Path(directory)
    table = pd.read_csv(directory / "records.csv", dtype={"subject": str})
    first = table.groupby("fold").subject.apply(lambda s: sorted(s.unique())[:per_fold])
    keep = table.subject.isin([s for subjects in first for s in subjects]).to_numpy()
    if keep.all():
        return len(table)
    marks = np.load(directory / "landmarks.npy")[keep]
    with atomic_path(directory / "landmarks.npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, marks)
    with atomic_path(directory / "records.csv") as tmp:
        table[keep].to_csv(tmp, index=False)
    return int(keep.sum())


def read_profile(run_dir: str | os.PathLike, overrides: dict | None = None) -> dict:
    """The profile a run was made with (``RUN/run.json``), with overrides applied."""
    from .training import apply_overrides

    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise FermapError(f"{path}: not a fermap run folder (no run.json); start one with fermap train or fermap run")
    return apply_overrides(json.loads(path.read_text()), overrides or {})


def record_profile(run_dir: str | os.PathLike, prof: dict) -> None:
    """Write the profile a run used to ``RUN/run.json``."""
    with atomic_path(Path(run_dir) / "run.json") as tmp:
        tmp.write_text(json.dumps(prof, indent=2, default=str))


def project_root() -> Path:
    """The folder holding ``_toc.yml`` and ``notebooks/``: this checkout."""
    return Path(__file__).resolve().parents[1]


# What each part of a run folder is, for deciding which chapters must rerun.
RUN_PARTS = {
    "profile": ["run.json"],
    "data": ["data/summary.json", "data/records.csv"],
    "models": ["models/*/fold*/metrics.json"],
    "explanations": ["heatmaps/summary.json", "heatmaps/*/*.png"],  # derived from every explanation
    "methods": ["heatmaps_*/summary.json", "heatmaps_*/*/*.png"],
}


def run_fingerprint(run_dir: str | os.PathLike, parts: list[str] | tuple[str, ...] = tuple(RUN_PARTS)) -> str:
    """A hash of what a run holds in the named parts (profile, data, models, explanations)."""
    run_dir = Path(run_dir)
    h = hashlib.sha256()
    for part in parts:
        for pattern in RUN_PARTS[part]:
            for path in sorted(run_dir.glob(pattern)):
                h.update(str(path.relative_to(run_dir)).encode())
                h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _package_fingerprint() -> str:
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.rglob("*")):
        if path.suffix in {".py", ".yaml"}:
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def chapter_parameters(prof: dict, run_dir: Path) -> dict:
    """What papermill injects into every chapter: the run, its profile, and static widget fallbacks."""
    return {"run_dir": str(Path(run_dir).resolve()), "profile": prof["name"],
            "reference": str(project_root().parent / "shared" / "reference"), "live_widgets": False}


def run_book(prof: dict, run_dir: str | os.PathLike | None = None, chapters: list[str] | None = None,
             progress: bool = True, out_dir: str | os.PathLike | None = None) -> "pd.DataFrame":
    """``fermap run``: execute the book's chapters in order with papermill, skipping unchanged ones.

    Stages share the run folder; each executed notebook goes to the book's source tree
    (``book/chapters``). A chapter is skipped when its notebook, its parameters, fermap's
    code and the run folder's state are what they were when it last ran. A failing chapter
    stops the run with its name; the executed notebook keeps the traceback.
    """
    import time

    import pandas as pd
    import papermill as pm
    from tqdm.auto import tqdm

    from .config import section

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the kernels inherit it: no TensorFlow banner in the book
    check_data_source(prof)
    root = project_root()
    book = section("book")
    run_dir = Path(run_dir or default_run_dir(prof)).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    record_profile(run_dir, prof)
    out_dir = Path(out_dir or root / book["executed"])
    out_dir.mkdir(parents=True, exist_ok=True)
    names = chapters or list(book["chapters"])  # in the configuration's order
    unknown = [n for n in names if n not in book["chapters"]]
    if unknown:
        raise FermapError(f"unknown chapter(s) {', '.join(unknown)}; chapters: {', '.join(book['chapters'])}")
    params = chapter_parameters(prof, run_dir)
    # The stamps live beside the executed notebooks: another profile writing there changes the
    # parameters in the key, so its chapters never pass for this one's.
    stamps_file = out_dir / ".fermap_stamps.json"
    stamps = json.loads(stamps_file.read_text()) if stamps_file.is_file() else {}
    code = _package_fingerprint()  # fermap's own code does not change during a run
    rows = []
    for name in tqdm(names, desc=f"book ({prof['name']})", unit="chapter", disable=not progress):
        source = root / "notebooks" / f"{name}.ipynb"
        target = out_dir / f"{name}.ipynb"
        key = hashlib.sha256(json.dumps([source.read_text(), params, code,
                                         run_fingerprint(run_dir, book["chapters"][name])]).encode()).hexdigest()[:16]
        if target.is_file() and stamps.get(name) == key:
            rows.append({"chapter": name, "status": "unchanged", "seconds": 0.0})
            continue
        started = time.perf_counter()
        try:
            with atomic_path(target) as tmp:
                try:
                    pm.execute_notebook(str(source), str(tmp), parameters=params, cwd=str(source.parent),
                                        progress_bar=False, kernel_name="python3")
                finally:
                    failed_copy = tmp.read_bytes() if tmp.is_file() and tmp.stat().st_size else None
        except pm.PapermillExecutionError as exc:
            if failed_copy:
                target.write_bytes(failed_copy)  # keep the traceback where the reader will look
            raise FermapError(f"chapter {name} failed: {exc.ename}: {exc.evalue} (see {target})") from None
        stamps[name] = key
        with atomic_path(stamps_file) as tmp:
            tmp.write_text(json.dumps(stamps, indent=1))
        rows.append({"chapter": name, "status": "executed", "seconds": round(time.perf_counter() - started, 1)})
    return pd.DataFrame(rows)


def build_book(builder: str = "html", root: str | os.PathLike | None = None) -> Path:
    """``fermap book``: build the book with jupyter-book 1.x from the executed chapters (no execution).

    ``root`` holds ``_config.yml``, ``_toc.yml`` and ``book/`` (default: this checkout).
    """
    import subprocess
    import sys

    from .config import section

    root = Path(root or project_root())
    book = section("book")
    missing = [c for c in book["chapters"] if not (root / book["executed"] / f"{c}.ipynb").is_file()]
    if missing:
        raise FermapError(f"chapters not executed yet: {', '.join(missing)}; run `fermap run --profile ...` first")
    jb = Path(sys.executable).with_name("jupyter-book")
    command = [str(jb) if jb.is_file() else "jupyter-book", "build", str(root), "--builder", builder]
    done = subprocess.run(command, cwd=root)
    if done.returncode:
        raise FermapError(f"jupyter-book build failed (exit {done.returncode})")
    return root / "_build" / builder


def open_run(run_dir: str | os.PathLike, profile: str | None = None) -> tuple[dict, str]:
    """A run's profile and the caption every table and figure of the book carries:
    which profile, dataset and networks produced it (synthetic data said so).

    A folder that is not a run yet becomes one, with the named profile (a chapter
    opened by hand in JupyterLab starts its own run).
    """
    run_dir = Path(run_dir)
    if not (run_dir / "run.json").is_file() and profile:
        record_profile(run_dir, load_profile(profile))
    prof = read_profile(run_dir)
    summary_path = run_dir / "data" / "summary.json"
    if summary_path.is_file():
        s = json.loads(summary_path.read_text())
        data = (f"{'SYNTHETIC embedded dataset' if s.get('synthetic') else 'dataset ' + str(prof.get('data'))}"
                f" ({s['used']} images)")
    else:
        data = f"dataset {prof.get('data')} (not built yet)"
    from .training import profile_networks

    nets = ", ".join(profile_networks(prof))
    return prof, f"profile {prof['name']} · {data} · networks: {nets}"


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def find_chromium() -> str | None:
    """A headless-capable Chromium on this machine (Debian's ``chromium``), or None."""
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _render(chromium: str, url: str, profile_dir: Path, extra: list[str]) -> "subprocess.CompletedProcess":
    import subprocess

    return subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", *extra, url],
                          capture_output=True, text=True, timeout=120)


def check_book(html_dir: str | os.PathLike, chapters: list[str] | None = None,
               screenshots: list[str] = ("index", "07_scores")) -> list[str]:
    """Open the built book's pages in headless Chromium as a reader would; return the problems found.

    A problem is: a chapter of the book not rendered; an image whose file is missing, empty or
    not decodable; an output cell showing an error or a traceback. Screenshots of the pages named in
    ``screenshots`` go to ``<build>/screenshots``.
    """
    import base64
    import re
    import tempfile
    from html.parser import HTMLParser
    from urllib.parse import unquote, urlparse

    import cv2
    import numpy as np

    from .config import section

    chromium = find_chromium()
    if chromium is None:
        raise FermapError("no Chromium found (Debian: apt-get install chromium)")
    html_dir = Path(html_dir).resolve()
    chapters = chapters or list(section("book")["chapters"])
    executed = section("book")["executed"]
    pages = {"index": html_dir / "index.html", **{c: html_dir / executed / f"{c}.html" for c in chapters}}
    shots = html_dir.parent / "screenshots"
    shots.mkdir(exist_ok=True)

    class Page(HTMLParser):
        def __init__(self):
            super().__init__()
            self.images, self.errors, self.h1 = [], 0, 0

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            classes = (a.get("class") or "").split()
            if tag == "img" and a.get("src"):
                self.images.append(a["src"])
            if tag == "h1":
                self.h1 += 1
            if "traceback" in classes or ("output" in classes and "error" in classes):
                self.errors += 1

    problems = []
    with tempfile.TemporaryDirectory() as profile_dir:
        for name, page in pages.items():
            if not page.is_file():
                problems.append(f"{name}: not rendered ({page} missing)")
                continue
            done = _render(chromium, page.as_uri(), Path(profile_dir), ["--dump-dom", "--virtual-time-budget=5000"])
            dom = done.stdout
            if done.returncode or "<body" not in dom:
                problems.append(f"{name}: Chromium could not render it ({done.stderr.strip()[-200:]})")
                continue
            parsed = Page()
            parsed.feed(dom)
            if not parsed.h1:
                problems.append(f"{name}: no title rendered")
            if parsed.errors or "Traceback (most recent call last)" in dom:
                problems.append(f"{name}: an output shows an error or a traceback")
            for src in parsed.images:
                if src.startswith("data:"):
                    payload = src.split(",", 1)[1]
                    blob = base64.b64decode(payload) if ";base64" in src.split(",", 1)[0] else payload.encode()
                    if not blob or (not src.startswith("data:image/svg") and
                                    cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_UNCHANGED) is None):
                        problems.append(f"{name}: an inline image does not decode")
                    continue
                url = urlparse(src)
                if url.scheme in ("http", "https"):
                    continue  # remote badges etc. are not the book's own images
                target = (page.parent / unquote(url.path)).resolve() if url.scheme != "file" else Path(unquote(url.path))
                if not target.is_file() or target.stat().st_size == 0:
                    problems.append(f"{name}: image {src} is missing")
                elif target.suffix.lower() != ".svg" and cv2.imread(str(target), cv2.IMREAD_UNCHANGED) is None:
                    problems.append(f"{name}: image {src} does not decode")
            if name in screenshots:
                _render(chromium, page.as_uri(), Path(profile_dir),
                        [f"--screenshot={shots / (re.sub(r'[^A-Za-z0-9_]', '_', name) + '.png')}",
                         "--window-size=1280,2400", "--virtual-time-budget=5000"])
    return problems
