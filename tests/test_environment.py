"""pyproject.toml and environment.yml must pin the same packages at the same versions."""
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _norm(req: str) -> str:
    name, _, version = req.partition("==")
    return f"{name.strip().lower().replace('_', '-')}=={version.strip()}"


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {_norm(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    assert all("==" in p for p in pins), "every dependency is pinned exactly"
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda_pins = {_norm(r) for r in pip if not r.startswith("-")}
    assert conda_pins == pins
    assert "python=3.11" in env["dependencies"]
