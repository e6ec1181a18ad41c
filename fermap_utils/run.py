"""Run folders: one place where every stage of a profile reads and writes.

``RUN/run.json`` records the profile; ``RUN/data`` the dataset; ``RUN/models``
the trained networks; later stages add their own folders.
"""
from __future__ import annotations

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
    """``runs/<profile>`` under the current folder."""
    return Path("runs") / prof["name"]


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
