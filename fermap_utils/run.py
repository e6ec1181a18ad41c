"""Running a profile: its run folder, its dataset, and the book's chapters executed with papermill.

Where everything lives inside a run folder is :mod:`fermap_utils.layout`; what a profile is,
:mod:`fermap_utils.profiles`.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ._io import atomic_path
from .errors import FermapError
from .layout import RUN_PARTS, data_dir, landmarks_file, profile_file, records_file, summary_file
from .profiles import check_data_source, load_profile, profile_networks, read_profile, record_profile

if TYPE_CHECKING:  # for annotations only; imported where it is used
    import pandas as pd


def default_run_dir(prof: dict) -> Path:
    """``runs/<profile>`` in this checkout (beside ``_toc.yml``), else under the current folder."""
    root = project_root()
    return (root if (root / "_toc.yml").is_file() else Path()) / "runs" / prof["name"]


def prepare_data(run_dir: str | os.PathLike, prof: dict, progress: bool = True) -> dict:
    """Make sure ``RUN/data`` holds the profile's dataset: the synthetic default, or a datasets YAML;
    with the profile's ``subjects_per_fold``, only that many subjects of each fold."""
    from .data import build_from_config
    from .synthetic import build_default

    check_data_source(prof)
    out = data_dir(run_dir)
    summary_path = summary_file(out)
    source = prof["data"]
    per_fold = prof.get("subjects_per_fold")
    if summary_path.is_file() and json.loads(summary_path.read_text()).get("subjects_per_fold") \
            not in (None, per_fold):
        summary_path.unlink()  # a subset made for another profile: build the whole set again
    if source == "default":
        summary = build_default(out, progress=progress)
    elif summary_path.is_file():
        summary = json.loads(summary_path.read_text())
    else:
        summary = build_from_config(source, out, progress=progress)
    if per_fold and summary.get("subjects_per_fold") != per_fold:
        summary["kept"] = keep_subjects(out, int(per_fold))
        summary["subjects_per_fold"] = int(per_fold)
        with atomic_path(summary_path) as tmp:
            tmp.write_text(json.dumps(summary, indent=2))
    return summary


def keep_subjects(directory: str | os.PathLike, per_fold: int) -> int:
    """Keep only the first ``per_fold`` subjects (in sorted order) of each fold of a built dataset,
    rewriting its ``records.csv`` and ``landmarks.npy`` in step; returns the images kept.
    Idempotent; the images themselves stay where they are."""
    import numpy as np
    import pandas as pd

    directory = Path(directory)
    table = pd.read_csv(records_file(directory), dtype={"subject": str})
    first = table.groupby("fold").subject.apply(lambda s: sorted(s.unique())[:per_fold])
    keep = table.subject.isin([s for subjects in first for s in subjects]).to_numpy()
    if keep.all():
        return len(table)
    marks = np.load(landmarks_file(directory))[keep]
    with atomic_path(landmarks_file(directory)) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, marks)
    with atomic_path(records_file(directory)) as tmp:
        table[keep].to_csv(tmp, index=False)
    return int(keep.sum())


def project_root() -> Path:
    """The folder holding ``_toc.yml`` and ``notebooks/``: this checkout."""
    return Path(__file__).resolve().parents[1]


def authors_data_dir() -> Path:
    """The authors' published data shipped with the book: heatmaps, masks, Tables 3 and 4.

    Returns
    -------
    Path
        ``book/data/authors`` of this checkout (``book.authors`` in the configuration):
        ``gray/heatmaps_by_cv``, ``gray/heatmaps_by_net``, ``gray/heatmaps_total``,
        ``ekman_masks/{Expression}_gt.png``, ``ekman_masks_figure.png``,
        ``table3_iou_f1.csv`` and ``table4_precision_recall.csv``. It lives beside the
        book, not in the package, so an installed wheel does not carry it.
    """
    from .config import section

    return project_root() / section("book")["authors"]


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
            "reference": str(authors_data_dir()), "live_widgets": False}


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
             progress: bool = True, out_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """``fermap run``: execute the book's chapters in order with papermill, skipping unchanged ones.

    Stages share the run folder; each executed notebook goes to the book's source tree
    (``book/chapters``). A chapter is skipped when its notebook, its parameters, fermap's
    code and the run folder's state are what they were when it last ran. A failing chapter
    stops the run with its name; the executed notebook keeps the traceback.
    """
    import time

    import nbformat
    import pandas as pd
    import papermill as pm
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from tqdm.auto import tqdm

    from .book import finish_chapter
    from .config import section

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # the kernels inherit it: no TensorFlow banner in the book
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

    A folder that is not a run yet is unpacked from ``<run_dir>.tar.gz`` when that archive
    exists (``fermap run --pack``), else becomes a run of the named profile (a chapter
    opened by hand in JupyterLab starts its own run).
    """
    run_dir = Path(run_dir)
    from .archive import archive_beside, unpack_run

    if not profile_file(run_dir).is_file() and archive_beside(run_dir):  # a handed-out run: no retraining
        unpack_run(archive_beside(run_dir), run_dir)
    if not profile_file(run_dir).is_file() and profile:
        record_profile(run_dir, load_profile(profile))
    prof = read_profile(run_dir)
    summary_path = summary_file(data_dir(run_dir))
    if summary_path.is_file():
        s = json.loads(summary_path.read_text())
        data = (f"{'SYNTHETIC embedded dataset' if s.get('synthetic') else 'dataset ' + str(prof.get('data'))}"
                f" ({s['used']} images)")
    else:  # built later in the run (chapter 1), when its size will be known
        data = ("SYNTHETIC embedded dataset" if prof.get("data", "default") == "default"
                else f"dataset {prof.get('data')}")
    nets = ", ".join(profile_networks(prof))
    return prof, f"profile {prof['name']} · {data} · networks: {nets}"
