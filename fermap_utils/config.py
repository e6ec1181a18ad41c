"""fermap's configuration (``data/config.yaml``): paper facts and run profiles, in one place."""
from __future__ import annotations

import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml


@lru_cache(maxsize=1)
def _config() -> dict:
    return yaml.safe_load(resources.files(__package__).joinpath("data").joinpath("config.yaml").read_text())


def paper() -> dict:
    """Facts of the paper: table order, name aliases, expressions, reported accuracy."""
    return _config()["paper"]


def expressions() -> tuple[str, ...]:
    """The six expressions, in the paper's order (``paper.expressions``): the classes of every network,
    mask and table."""
    return tuple(paper()["expressions"])


def display_name(network: str) -> str:
    """The paper's name of a network given the name used in file names."""
    return paper()["aliases"].get(network, network)


def section(name: str) -> dict:
    """One top-level section of the configuration (``paper``, ``data``, ``synthetic``, ``profiles`` ...)."""
    cfg = _config()
    if name not in cfg:
        raise KeyError(f"no section {name!r} in fermap's configuration; sections: {', '.join(cfg)}")
    return cfg[name]


def cache_dir() -> Path:
    """Where fermap caches generated data: ``$FERMAP_CACHE``, else ``~/.cache/fermap``."""
    return Path(os.environ.get("FERMAP_CACHE") or Path.home() / ".cache" / "fermap")


def project_root() -> Path:
    """The folder holding ``_toc.yml`` and ``notebooks/``: this checkout.

    Returns
    -------
    Path
        The parent of the ``fermap_utils`` package folder.
    """
    return Path(__file__).resolve().parents[1]
