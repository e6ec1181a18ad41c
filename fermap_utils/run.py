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


def prepare_data(run_dir: str | os.PathLike, prof: dict, progress: bool = True) -> dict:
    """Make sure ``RUN/data`` holds the profile's dataset: the synthetic default, or a datasets YAML."""
    from .data import build_from_config
    from .synthetic import build_default

    out = Path(run_dir) / "data"
    source = prof.get("data", "default")
    if source == "default":
        return build_default(out, progress=progress)
    if (out / "summary.json").is_file():
        return json.loads((out / "summary.json").read_text())
    return build_from_config(source, out, progress=progress)


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


def relative_paths(params: dict, folder: str | os.PathLike) -> dict:
    """Parameters with every absolute path made relative to ``folder``, where the chapters execute.

    The executed notebooks, and so the book, then show no path of the machine that ran them.

    Parameters
    ----------
    params : dict
        Chapter parameters (:func:`chapter_parameters`).
    folder : path
        The chapters' working folder.

    Returns
    -------
    dict
        The same parameters; absolute path strings replaced by relative ones.
    """
    return {k: os.path.relpath(v, folder) if isinstance(v, str) and os.path.isabs(v) else v for k, v in params.items()}


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

    import nbformat
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    from .book import finish_chapter

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # the kernels inherit it: no TensorFlow banner in the book
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
    params = relative_paths(chapter_parameters(prof, run_dir), root / "notebooks")
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
                nbformat.write(finish_chapter(nbformat.read(tmp, as_version=4), name), tmp)
        except pm.PapermillExecutionError as exc:
            if failed_copy:
                target.write_bytes(failed_copy)  # keep the traceback where the reader will look
            raise FermapError(f"chapter {name} failed: {exc.ename}: {exc.evalue} (see {target})") from None
        except (DeadKernelError, CellTimeoutError) as exc:
            if failed_copy:
                target.write_bytes(failed_copy)
            raise FermapError(f"chapter {name} failed: {type(exc).__name__}: {str(exc).splitlines()[0]} "
                              f"(the kernel stopped: a crash or out of memory)") from None
        stamps[name] = key
        with atomic_path(stamps_file) as tmp:
            tmp.write_text(json.dumps(stamps, indent=1))
        rows.append({"chapter": name, "status": "executed", "seconds": round(time.perf_counter() - started, 1)})
    return pd.DataFrame(rows)


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
    else:  # built later in the run (chapter 1), when its size will be known
        data = "SYNTHETIC embedded dataset" if prof.get("data", "default") == "default" else f"dataset {prof.get('data')}"
    from .training import profile_networks

    nets = ", ".join(profile_networks(prof))
    return prof, f"profile {prof['name']} · {data} · networks: {nets}"
