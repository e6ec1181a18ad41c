"""Run folders: one place where every stage of a profile reads and writes.

``RUN/run.json`` records the profile; ``RUN/data`` the dataset; ``RUN/models``
the trained networks; later stages add their own folders.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from ._io import atomic_path
from .errors import FermapError

if TYPE_CHECKING:  # for annotations only; imported where it is used
    import pandas as pd


def parse_overrides(pairs: list[list[str]] | None) -> dict:
    """``-p key value`` pairs into a dict; values are read as YAML (numbers, lists, null).

    A value that is not valid YAML is refused in one line naming the key.
    """
    out = {}
    for key, value in pairs or []:
        try:
            out[key] = yaml.safe_load(value)
            if isinstance(out[key], str):  # YAML 1.1 reads 1e-3 as text; a user means a number
                try:
                    out[key] = float(out[key]) if out[key].strip().lower() not in ("nan", "inf", "-inf") else out[key]
                except ValueError:
                    pass
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise FermapError(f"-p {key} {value!r}: not a valid value ({problem}); "
                              "write numbers, true/false, null, [a, b] or {k: v}") from None
    return out


def read_yaml(path: str | os.PathLike, what: str = "file") -> dict:
    """A YAML mapping from a file, or one line saying why it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FermapError(f"{path}: no such {what}")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise FermapError(f"{path}: malformed YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FermapError(f"{path}: cannot be read ({exc})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise FermapError(f"{path}: expected a mapping of keys to values, found a {type(loaded).__name__}")
    return loaded


def _schema(n_folds: int) -> dict:
    """The profile schema (``data/profile_schema.yaml``) with the installed networks, methods and folds."""
    from importlib import resources

    from .attribution import METHODS
    from .models import registry

    schema = yaml.safe_load(resources.files(__package__).joinpath("data", "profile_schema.yaml").read_text())
    schema["$defs"]["network"]["enum"] = list(registry())
    schema["$defs"]["fold"]["maximum"] = int(n_folds)
    schema["properties"]["explain"]["properties"]["methods"]["items"]["enum"] = list(METHODS)
    return schema


def _describe(schema: dict, defs: dict) -> str:
    """What a schema allows, in words (for the one-line error)."""
    if "$ref" in schema:
        return _describe(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    if "const" in schema:
        return repr(schema["const"])
    if "enum" in schema:
        values = schema["enum"]
        return "one of " + ", ".join(map(str, values)) if len(values) > 1 else repr(values[0])
    if "oneOf" in schema:
        return " or ".join(_describe(s, defs) for s in schema["oneOf"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " or ".join(_describe({**schema, "type": k}, defs) for k in kind)
    words = {"integer": "an integer", "number": "a number", "string": "a text", "boolean": "true or false",
             "null": "null", "object": "a mapping", "array": "a list"}.get(kind, "a value")
    bounds = [f"{op} {schema[k]}" for k, op in (("minimum", ">="), ("exclusiveMinimum", ">"),
                                                  ("maximum", "<="), ("exclusiveMaximum", "<")) if k in schema]
    if bounds:
        words += " " + " and ".join(bounds)
    if kind == "array" and "items" in schema:
        items = _describe(schema["items"], defs)
        words += " of " + (items.removeprefix("one of ") if items.startswith("one of ")
                           else items.removeprefix("an ").removeprefix("a ").replace("integer", "integers", 1))
        words += ", without repeats" if schema.get("uniqueItems") else ""
    return words


def _dotted(path) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def _schema_error(error, defs: dict) -> str:
    """One line for a jsonschema error: the key, the value, what is allowed."""
    import difflib

    if error.validator in ("oneOf", "anyOf") and error.context:
        # The alternative of the value's own kind says most (a list with an unknown network, say).
        deeper = [e for e in error.context if e.validator not in ("type", "const") and e.path]
        if deeper:
            return _schema_error(max(deeper, key=lambda e: len(e.path)), defs)
    key = _dotted(error.absolute_path)
    if error.validator == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(known))
        full = (key + "." if key else "") + str(extra[0])
        close = difflib.get_close_matches(str(extra[0]), known, n=1)
        hint = f" (did you mean {(key + '.' if key else '') + close[0]}?)" if close else ""
        return f"unknown key {full!r}{hint}; known here: {', '.join(known)}"
    if error.validator == "required":
        return f"missing key {error.message.split(' ')[0]}"
    if error.validator == "uniqueItems":
        return f"key {key!r} = {error.instance!r}: repeats a value; give each once"
    if error.validator == "minItems":
        return f"key {key!r} = {error.instance!r}: give at least {error.validator_value}"
    return f"key {key!r} = {error.instance!r} is not allowed; expected {_describe(error.schema, defs)}"


def profile_fold_count(prof: dict) -> int:
    """How many folds a profile's dataset has: the embedded set's, or its datasets YAML's ``folds``."""
    from .config import section

    source = prof.get("data", "default")
    default = int(section("data")["folds"])
    if source == "default" or not isinstance(source, str) or not Path(source).is_file():
        return default
    try:
        return int((yaml.safe_load(Path(source).read_text()) or {}).get("folds") or default)
    except (yaml.YAMLError, OSError, ValueError, TypeError, AttributeError):
        return default  # the datasets file's own check reports it, with its name


def validate_profile(prof: dict, where: str = "profile", n_folds: int | None = None,
                     check_data: bool = False) -> dict:
    """Check a profile against fermap's schema before anything is built or written.

    Parameters
    ----------
    prof : dict
        A profile (a named one with overrides, a ``--config`` file's, or a run's ``run.json``).
    where : str
        What to name in the error (the profile, the file).
    n_folds : int, optional
        The dataset's fold count; by default, that of the profile's ``data``.
    check_data : bool
        Also require a ``data`` file other than ``default`` to exist.

    Returns
    -------
    prof : dict
        The same profile, unchanged.

    Raises
    ------
    FermapError
        One line naming the key, its value and what is allowed.
    """
    import jsonschema

    if not isinstance(prof, dict):
        raise FermapError(f"{where}: expected a mapping of keys to values, found {type(prof).__name__}")
    n_folds = profile_fold_count(prof) if n_folds is None else int(n_folds)
    schema = _schema(n_folds)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(prof),
                    key=lambda e: (list(map(str, e.absolute_path)), e.validator))
    if errors:
        raise FermapError(f"{where}: {_schema_error(errors[0], schema['$defs'])}")
    data = prof.get("data", "default")
    if check_data and data not in ("default", None) and not Path(data).is_file():  # None: refused when run
        raise FermapError(f"{where}: key 'data' = {data!r}: no such datasets file; "
                          "expected 'default' or a datasets YAML (see book/datasets.example.yaml)")
    return prof


def load_profile(name: str | None = None, config: str | os.PathLike | None = None,
                 overrides: dict | None = None) -> dict:
    """A named profile, or one read from a YAML file (same keys), with overrides; validated."""
    from .training import profile

    if config:
        path = Path(config)
        base = read_yaml(path, "profile file")
        name = base.pop("base", "default")
        if not isinstance(name, str):
            raise FermapError(f"{path}: key 'base' = {name!r} is not allowed; expected a profile name")
        prof = profile(name, {**base, **(overrides or {})}, validate=False)
        prof["name"] = path.stem
        return validate_profile(prof, str(path), check_data=True)
    prof = profile(name or "default", overrides, validate=False)
    return validate_profile(prof, f"profile {prof['name']}", check_data=True)


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
    """The profile a run was made with (``RUN/run.json``), with overrides applied; validated.

    A run folder may come from someone else: its ``run.json`` is checked against the same
    schema as a profile, with the folds of the run's own dataset.
    """
    from .training import apply_overrides

    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise FermapError(f"{path}: not a fermap run folder (no run.json); start one with fermap train or fermap run")
    try:
        recorded = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise FermapError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(recorded, dict):
        raise FermapError(f"{path}: expected a mapping of keys to values")
    prof = apply_overrides(recorded, overrides or {})
    summary = Path(run_dir) / "data" / "summary.json"
    n_folds = None
    if summary.is_file():
        try:
            n_folds = int(json.loads(summary.read_text())["folds"])
        except (ValueError, KeyError, TypeError):
            raise FermapError(f"{summary}: not a fermap dataset summary (no fold count)") from None
    return validate_profile(prof, str(path), n_folds=n_folds)


def record_profile(run_dir: str | os.PathLike, prof: dict) -> None:
    """Write the profile a run used to ``RUN/run.json`` (checked first)."""
    validate_profile(prof, f"profile {prof.get('name')}")
    with atomic_path(Path(run_dir) / "run.json") as tmp:
        tmp.write_text(json.dumps(prof, indent=2, default=str))


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


# What each part of a run folder is, for deciding which chapters must rerun.
RUN_PARTS = {
    "profile": ["run.json"],
    "data": ["data/summary.json", "data/records.csv"],
    "models": ["models/*/fold*/metrics.json"],
    "explanations": ["heatmaps/summary.json", "heatmaps/*/*.png"],  # derived from every explanation
    "methods": ["heatmaps_*/summary.json", "heatmaps_*/*/*.png"],
    "statistics": ["statistics/*/*"],  # what the statistics chapter saves for the discussion
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

    if not (run_dir / "run.json").is_file() and archive_beside(run_dir):  # a handed-out run: no retraining
        unpack_run(archive_beside(run_dir), run_dir)
    if not (run_dir / "run.json").is_file() and profile:
        record_profile(run_dir, load_profile(profile))
    prof = read_profile(run_dir)
    summary_path = run_dir / "data" / "summary.json"
    if summary_path.is_file():
        s = json.loads(summary_path.read_text())
        data = (f"{'SYNTHETIC embedded dataset' if s.get('synthetic') else 'dataset ' + str(prof.get('data'))}"
                f" ({s['used']} images)")
    else:  # built later in the run (chapter 1), when its size will be known
        data = ("SYNTHETIC embedded dataset" if prof.get("data", "default") == "default"
                else f"dataset {prof.get('data')}")
    from .training import profile_networks

    nets = ", ".join(profile_networks(prof))
    return prof, f"profile {prof['name']} · {data} · networks: {nets}"
