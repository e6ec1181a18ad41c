"""One-file archives of finished runs, so a chapter opens without retraining.

A teacher runs a profile once (``fermap run --profile default``), packs the run folder
(``fermap run --pack default.tar.gz``) and hands the archive out; a student unpacks it
(``fermap run --unpack default.tar.gz``) or simply puts it beside the run folder a chapter
expects (``runs/default.tar.gz`` for ``runs/default``): ``run.open_run`` unpacks it there.
Extraction uses tarfile's ``data`` filter, so no member can escape the target folder, be a
device or a link out of it, or carry its owner's permissions.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path

from ._io import TEMP_PREFIX, atomic_path
from .errors import FermapError
from .layout import PROFILE_FILE, profile_file
from .profiles import read_profile

SUFFIX = ".tar.gz"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")  # as profile_schema.yaml's ``name``
# Leftovers of an interrupted write (``_io.atomic_path``'s ``.name.*`` files), notebook
# checkpoints and byte code are not the run.
_SKIP = (".ipynb_checkpoints", "__pycache__")


def _kept(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    parts = Path(info.name).parts
    return None if any(p in _SKIP or p.startswith(".") for p in parts) else info


def pack_run(run_dir: str | os.PathLike, archive: str | os.PathLike | None = None) -> Path:
    """Pack a run folder into one gzipped tar archive.

    Parameters
    ----------
    run_dir : path
        A run folder (it holds ``run.json``).
    archive : path, optional
        The archive to write; default ``<run_dir>.tar.gz`` beside the folder.

    Returns
    -------
    Path
        The archive written. Its members are relative to the run folder, so it unpacks anywhere.
    """
    run_dir = Path(run_dir)
    if not profile_file(run_dir).is_file():
        raise FermapError(f"{run_dir}: not a fermap run folder (no run.json); nothing to pack")
    archive = Path(archive) if archive else run_dir.with_name(run_dir.name + SUFFIX)
    archive.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(archive) as tmp:
        with tarfile.open(tmp, "w:gz") as tar:
            for path in sorted(run_dir.iterdir()):
                tar.add(path, arcname=path.name, filter=_kept)
    umask = os.umask(0)
    os.umask(umask)
    archive.chmod(0o666 & ~umask)  # an archive is made to be handed out (atomic_path's temp file is private)
    return archive


def archive_profile(archive: str | os.PathLike) -> dict:
    """The profile recorded in an archive's ``run.json``, read without unpacking anything else."""
    archive = Path(archive)
    if not archive.is_file():
        raise FermapError(f"{archive}: no such run archive")
    try:
        with tarfile.open(archive, "r:*") as tar:
            member = tar.extractfile(PROFILE_FILE)
            recorded = json.loads(member.read().decode("utf-8")) if member else {}
    except KeyError:
        raise FermapError(f"{archive}: not a fermap run archive (no run.json at its top)") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise FermapError(f"{archive}: not a readable tar archive ({exc})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise FermapError(f"{archive}: its run.json is not valid JSON ({str(exc).splitlines()[0][:80]})") from None
    if not isinstance(recorded, dict):
        raise FermapError(f"{archive}: its run.json is not a mapping of keys to values")
    return recorded


def run_name(archive: str | os.PathLike) -> str:
    """The name of the run an archive holds (its ``run.json``'s ``name``, else the archive's own name),
    refused in one line unless it is a plain folder name: no ``..``, no separator, nothing hidden.

    The name chooses the folder the run is unpacked into (``runs/<name>``): a crafted archive
    must not choose a folder outside ``runs/``.
    """
    archive = Path(archive)
    name = archive_profile(archive).get("name") or archive.name.split(".")[0]
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in (".", ".."):
        raise FermapError(f"{archive}: its run is named {name!r}, not a plain folder name "
                          "(letters, digits, _ . -; no separator, no '..'); refused")
    return name


def unpack_run(archive: str | os.PathLike, run_dir: str | os.PathLike) -> Path:
    """Unpack a run archive into a run folder, refusing any member that would land outside it.

    The members go to a staging folder first (tarfile's ``data`` filter refuses absolute
    links, ``..``, links out of the folder and device files): a refused or broken archive
    leaves nothing behind.

    Parameters
    ----------
    archive : path
        An archive written by :func:`pack_run`.
    run_dir : path
        The folder to fill. It may exist, but must not hold a run already.

    Returns
    -------
    Path
        ``run_dir``, now a run folder.
    """
    archive, run_dir = Path(archive), Path(run_dir)
    if not archive.is_file():
        raise FermapError(f"{archive}: no such run archive")
    if profile_file(run_dir).is_file():
        raise FermapError(f"{run_dir} already holds a run; unpack into another folder or remove it first")
    run_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=run_dir))
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(staging, filter="data")
        if not profile_file(staging).is_file():
            raise FermapError(f"{archive}: not a fermap run archive (no run.json at its top)")
        try:  # checked as any run's profile, against the folds of its own dataset
            read_profile(staging)
        except FermapError as exc:
            raise FermapError(f"{archive}: {str(exc).replace(str(staging), 'its run')}") from None
        for item in staging.iterdir():
            item.rename(run_dir / item.name)
    except tarfile.FilterError as exc:
        raise FermapError(f"{archive}: refused an unsafe member ({exc})") from None
    except (tarfile.TarError, EOFError) as exc:
        raise FermapError(f"{archive}: not a readable tar archive ({exc})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return run_dir


def archive_beside(run_dir: str | os.PathLike) -> Path | None:
    """``<run_dir>.tar.gz`` if it exists: the archive a chapter unpacks when its run is missing."""
    candidate = Path(str(Path(run_dir)).rstrip("/\\") + SUFFIX)
    return candidate if candidate.is_file() else None
