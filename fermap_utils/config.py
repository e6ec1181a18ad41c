"""fermap's configuration (``data/config.yaml``): paper facts and run profiles, in one place."""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

import yaml


@lru_cache(maxsize=1)
def _config() -> dict:
    return yaml.safe_load(resources.files(__package__).joinpath("data").joinpath("config.yaml").read_text())


def paper() -> dict:
    """Facts of the paper: table order, name aliases, expressions, folds."""
    return _config()["paper"]


def display_name(network: str) -> str:
    """The paper's name of a network given the name used in file names."""
    return paper()["aliases"].get(network, network)
