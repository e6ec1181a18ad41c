"""Profiles: what a run does, by name, by file or as a run recorded it; checked before any work.

A profile is a mapping (``config.yaml``, ``profiles``) of the networks, folds, epochs and
explanation settings of a run. :func:`profile` takes a named one with ``-p key value``
overrides (:func:`parse_overrides`, :func:`apply_overrides`); :func:`load_profile` also reads a
``--config`` file; :func:`read_profile` and :func:`record_profile` read and write a run's
``run.json``. Every one is checked against ``data/profile_schema.yaml``
(:func:`validate_profile`): a bad key or value ends in one line naming the key, the value and
what is allowed.
"""
from __future__ import annotations

import difflib
import json
import math
import os
from importlib import resources
from pathlib import Path

import jsonschema
import yaml

from . import explainers
from ._io import atomic_path, read_json, read_yaml
from .config import expressions, section
from .errors import FermapError
from .layout import data_dir, profile_file, summary_file
from .models import paper_networks, registry

#: The profile a command runs without ``--profile``, and the base of a ``--config`` file without ``base``.
DEFAULT_PROFILE = "default"
#: What a profile's ``explain`` entry falls back to for a key it does not set: the paper's numbers
#: (an explainer's own settings fall back to ``config.yaml``'s ``explainers``).
EXPLAIN_DEFAULTS = {"images_per_class": 100, "batch_size": 1000, "seed": 0}


def profile(name: str, overrides: dict | None = None, validate: bool = True) -> dict:
    """A run profile from the configuration, with overrides applied (``-p name value``).

    With ``validate`` (the default) it is checked against the profile schema
    (:func:`validate_profile`): a bad key or value is one line.
    """
    profiles = section("profiles")
    if name not in profiles:
        raise FermapError(f"unknown profile {name!r}; known: {', '.join(profiles)}")
    merged = apply_overrides(profiles[name], overrides or {})
    merged["name"] = name
    if validate:
        validate_profile(merged, f"profile {name}")
    return merged


def apply_overrides(prof: dict, overrides: dict) -> dict:
    """A deep copy of a profile with ``key: value`` overrides; dotted keys reach inside."""
    merged = json.loads(json.dumps(prof))
    for key, value in overrides.items():
        target = merged
        *parents, leaf = key.split(".")
        for p in parents:
            target = target.setdefault(p, {})
            if not isinstance(target, dict):
                raise FermapError(f"-p {key}: {p!r} is not a mapping here, it holds {target!r}")
        target[leaf] = value
    return merged


def profile_networks(prof: dict) -> list[str]:
    """The networks a profile trains ("paper" stands for the paper's twelve)."""
    nets = prof["networks"]
    return paper_networks() if nets == "paper" else list(nets)


def explain_options(prof: dict) -> dict:
    """A profile's ``explain`` entry with :data:`EXPLAIN_DEFAULTS` under it (a copy).

    Examples
    --------
    >>> explain_options({"explain": {"images_per_class": 3}})["images_per_class"], explain_options({})["seed"]
    (3, 0)
    """
    return {**EXPLAIN_DEFAULTS, **(prof.get("explain") or {})}


def profile_folds(prof: dict, available: list[int]) -> list[int]:
    """The folds a profile runs: all, a count (the first N) or an explicit list."""
    folds = prof.get("folds", "all")
    if folds == "all":
        return sorted(available)
    if isinstance(folds, int):
        return sorted(available)[:folds]
    return [int(f) for f in folds]


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


def profile_schema(n_folds: int) -> dict:
    """The profile schema (``data/profile_schema.yaml``) with what only the installed package knows:
    the networks (:func:`fermap_utils.models.registry`), the explainers and the ``explain`` keys each
    reads with their schema (:mod:`fermap_utils.explainers`), the fold numbers and the number of
    expressions (the most classes a job can hold).

    Parameters
    ----------
    n_folds : int
        The dataset's fold count.

    Returns
    -------
    dict
        A JSON schema (draft 2020-12).
    """
    schema = yaml.safe_load(resources.files(__package__).joinpath("data", "profile_schema.yaml").read_text())
    schema["$defs"]["network"]["enum"] = list(registry())
    schema["$defs"]["fold"]["maximum"] = int(n_folds)
    explain = schema["properties"]["explain"]["properties"]
    explain["methods"]["items"]["enum"] = list(explainers.names())
    explain["classes_per_job"]["maximum"] = len(expressions())
    explain.update(explainers.options_schema())
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
    source = prof.get("data", "default")
    default = int(section("data")["folds"])  # the one fold count
    if source == "default" or not isinstance(source, str) or not Path(source).is_file():
        return default
    try:
        return int((yaml.safe_load(Path(source).read_text()) or {}).get("folds") or default)
    except (yaml.YAMLError, OSError, ValueError, TypeError, AttributeError):
        return default  # the datasets file's own check reports it, with its name


def check_finite(value, where: str, key: str = "") -> None:
    """Refuse, in one line naming the key, any NaN or infinite number anywhere in ``value``.

    JSON Schema's bounds cannot: every comparison with NaN is false, so ``minimum`` lets it through.
    """
    if isinstance(value, float) and not math.isfinite(value):
        raise FermapError(f"{where}: key {key or '(top)'!r} = {value!r} is not allowed; expected a finite number")
    if isinstance(value, dict):
        for k, v in value.items():
            check_finite(v, where, f"{key}.{k}" if key else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_finite(v, where, f"{key}[{i}]")


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
    if not isinstance(prof, dict):
        raise FermapError(f"{where}: expected a mapping of keys to values, found {type(prof).__name__}")
    check_finite(prof, where)
    n_folds = profile_fold_count(prof) if n_folds is None else int(n_folds)
    schema = profile_schema(n_folds)
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
    if config:
        path = Path(config)
        base = read_yaml(path, "profile file")
        name = base.pop("base", DEFAULT_PROFILE)
        if not isinstance(name, str):
            raise FermapError(f"{path}: key 'base' = {name!r} is not allowed; expected a profile name")
        prof = profile(name, {**base, **(overrides or {})}, validate=False)
        prof["name"] = path.stem
        return validate_profile(prof, str(path), check_data=True)
    prof = profile(name or DEFAULT_PROFILE, overrides, validate=False)
    return validate_profile(prof, f"profile {prof['name']}", check_data=True)


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


def read_profile(run_dir: str | os.PathLike, overrides: dict | None = None) -> dict:
    """The profile a run was made with (``RUN/run.json``), with overrides applied; validated.

    A run folder may come from someone else: its ``run.json`` is checked against the same
    schema as a profile, with the folds of the run's own dataset.
    """
    path = profile_file(run_dir)
    if not path.is_file():
        raise FermapError(f"{path}: not a fermap run folder (no run.json); start one with fermap train or fermap run")
    recorded = read_json(path, "run.json")
    if not isinstance(recorded, dict):
        raise FermapError(f"{path}: expected a mapping of keys to values")
    prof = apply_overrides(recorded, overrides or {})
    summary = summary_file(data_dir(run_dir))
    n_folds = None
    if summary.is_file():
        try:
            n_folds = int(read_json(summary, "dataset summary")["folds"])
        except (ValueError, KeyError, TypeError):
            raise FermapError(f"{summary}: not a fermap dataset summary (no fold count)") from None
    return validate_profile(prof, str(path), n_folds=n_folds)


def record_profile(run_dir: str | os.PathLike, prof: dict) -> None:
    """Write the profile a run used to ``RUN/run.json`` (checked first)."""
    validate_profile(prof, f"profile {prof.get('name')}")
    with atomic_path(profile_file(run_dir)) as tmp:
        tmp.write_text(json.dumps(prof, indent=2, default=str))
