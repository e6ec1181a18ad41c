"""Small file helpers shared by the stages: reading images with clear errors, atomic writes."""
from __future__ import annotations

import contextlib
import fcntl
import glob
import io
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import yaml

from .errors import FermapError


def read_gray(path: str | os.PathLike, shape: tuple[int, int] | None = None,
              convert_16bit: bool = False) -> np.ndarray:
    """Read an 8-bit grey image, failing with the file's name and the reason.

    Parameters
    ----------
    path : path-like
        The image file.
    shape : (height, width), optional
        The size the image must have.
    convert_16bit : bool
        Accept a 16-bit image, scaled to 8 bits (value / 257, rounded: 65535 becomes 255).
        Heatmaps and masks must be 8-bit; a dataset's photographs may be either.

    Returns
    -------
    image : (H, W) uint8 array
    """
    path = Path(path)
    if not path.is_file():
        raise FermapError(f"{path}: no such file")
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise FermapError(f"{path}: not a readable image")
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    if image.dtype == np.uint16 and convert_16bit:
        image = np.round(image / 257.0).astype(np.uint8)
    if image.dtype != np.uint8:
        raise FermapError(f"{path}: expected an 8-bit image, got {image.dtype}")
    if shape is not None and image.shape != tuple(shape):
        raise FermapError(
            f"{path}: wrong size {image.shape[1]}x{image.shape[0]} (width x height), "
            f"expected {shape[1]}x{shape[0]}"
        )
    return image


TEMP_PREFIX = ".fermap-tmp."  # every temporary file fermap writes; any left by a killed process is stale
# What fermap 0.x named them (``.model.keras.k3j_x9qa.keras``): run folders made then may hold some.
_LEGACY_TEMP = re.compile(r"^\.(?P<base>.+)(?P<suffix>\.[A-Za-z0-9]+)\.[a-z0-9_]{8}(?P=suffix)$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_beside(target: Path) -> tuple[Path, int]:
    """An empty temporary file beside ``target``, with the mode a plain ``open`` would give it,
    and an open descriptor on it (closed by the caller). Its name carries the writer's process id,
    so :func:`remove_stale_beside` never takes a live writer's file for a killed process's leftover.
    (Not a lock on the file: HDF5 locks the files it writes itself, and two locks would clash.)"""
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{target.name}.{os.getpid()}-",
                               suffix="".join(target.suffixes), dir=target.parent)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are the user's to share
    return Path(tmp), fd


def _alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_TEMP_NAME = re.compile(r"^" + re.escape(TEMP_PREFIX)
                        + r"(?P<name>.+)\.(?P<pid>\d+)-[A-Za-z0-9_]{8}(?:\.[^/]*)?$")


def user_path(filename: str | os.PathLike) -> str:
    """The path a user asked for, given one that may be a temporary file beside it
    (``DIR/.fermap-tmp.out.csv.4242-k3j_x9qa.csv`` becomes ``DIR/out.csv``): messages name the user's path."""
    path = Path(filename)
    found = _TEMP_NAME.match(path.name)
    return str(path.with_name(found["name"])) if found else str(filename)


def remove_stale_beside(target: str | os.PathLike) -> int:
    """Delete the temporary files a killed fermap process left beside ``target``; return how many.

    Only ``.fermap-tmp.<target's name>.<pid>-*`` files are touched, and only those whose writer's
    process no longer runs.
    """
    target = Path(target)
    if not target.parent.is_dir():
        return 0
    removed = 0
    for path in target.parent.glob(f"{glob_escape(TEMP_PREFIX + target.name)}.*"):
        found = _TEMP_NAME.match(path.name)
        if path.is_symlink() or not path.is_file() or not found or found["name"] != target.name:
            continue
        if _alive(int(found["pid"])):
            continue  # a live writer's (or an unrelated process that took a dead writer's id: left alone)
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def glob_escape(name: str) -> str:
    """``name`` with glob's special characters made literal."""
    return glob.escape(name)


def check_output(target: str | os.PathLike, folder: bool = False, probe: bool = True) -> Path:
    """Refuse, in one line, an output location that cannot be written, before any work.

    Parameters
    ----------
    target : path-like
        The file (or, with ``folder``, the folder) a command will write.
    folder : bool
        ``target`` is a folder to create or fill, not a file.
    probe : bool
        Create and delete a file where ``target`` goes: the only sure test of a read-only
        file system, or of a folder only root may write (which ``os.access`` says root can).

    Returns
    -------
    target : Path
    """
    target = Path(target)
    if target.exists() or target.is_symlink():
        if folder and not target.is_dir():
            raise FermapError(f"{target}: is a file; the output must be a folder")
        if not folder and target.is_dir():
            raise FermapError(f"{target}: is a folder; the output must be a file name")
    parent = target if folder and target.is_dir() else target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise FermapError(f"{parent}: is a file, so {target} cannot be created inside it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise FermapError(f"{parent}: not writable, so {target} cannot be written")
    if not folder:
        remove_stale_beside(target)  # what a killed earlier write of this target left
    if probe:
        try:
            fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=parent)
            os.close(fd)
            os.unlink(name)
        except OSError as exc:
            raise FermapError(f"{parent}: not writable ({exc.strerror}), so {target} cannot be written") from None
    return target


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it into place only if the block succeeds.

    A killed or failed write never leaves a partial ``target`` behind.
    """
    with atomic_paths([target]) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_paths(targets: list[str | os.PathLike]) -> Iterator[list[Path]]:
    """Yield one temporary path per target; move them all into place only if the block succeeds.

    A command that writes several files writes all of them or none: every temporary file
    is written first, every target is checked, and only then are they moved into place. If a
    move fails part way, the targets already moved are put back as they were (the previous file,
    or none). Temporary files a killed earlier write left beside a target are removed first.
    Errors name the target, never a temporary file.
    """
    targets = [Path(t) for t in targets]
    temps: list[Path] = []
    fds: list[int] = []
    backups: dict[Path, Path | None] = {}
    published: set[Path] = set()
    try:
        for target in targets:
            check_output(target, probe=False)  # creating the temporary file below is the probe
            target.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_beside(target)
            try:
                tmp, fd = _temp_beside(target)
            except OSError as exc:
                raise FermapError(f"{target}: cannot be written ({exc.strerror or exc})") from None
            temps.append(tmp)
            fds.append(fd)
        try:
            yield temps
        except OSError as exc:  # a failed write: say which target, not which temporary file
            name = Path(exc.filename).name if exc.filename else ""
            target = next((t for t, tmp in zip(targets, temps) if tmp.name == name), None)
            if target is None:
                raise
            raise FermapError(f"{target}: cannot be written ({exc.strerror or exc})") from None
        for target in targets:
            if target.is_dir():  # appeared meanwhile: refuse before anything is replaced
                raise FermapError(f"{target}: is a folder; the output must be a file name")
        for tmp, target in zip(temps, targets):
            backups[target] = None
            if target.is_file() and not target.is_symlink():  # kept until all are in place
                backup, bfd = _temp_beside(target)
                fds.append(bfd)
                os.replace(target, backup)
                backups[target] = backup
            try:
                os.replace(tmp, target)
                published.add(target)
            except OSError as exc:
                raise FermapError(f"{target}: cannot be written ({exc.strerror or exc})") from None
        for backup in backups.values():
            if backup is not None:
                backup.unlink(missing_ok=True)
        backups.clear()
    finally:
        for target, backup in backups.items():  # a move failed: undo the ones done
            with contextlib.suppress(OSError):
                if backup is not None:
                    os.replace(backup, target)
                elif target in published:
                    target.unlink(missing_ok=True)
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        for fd in fds:
            os.close(fd)


def remove_stale_temps(root: str | os.PathLike) -> int:
    """Delete the temporary files a killed fermap process left under ``root``; return how many.

    Call it only while holding the folder's lock (:func:`folder_lock`): then no other fermap
    process is writing there. Symbolic links are not followed.
    """
    import shutil

    removed = 0
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in [d for d in dirs if d.startswith(TEMP_PREFIX)]:
            dirs.remove(name)
            path = Path(folder, name)
            path.unlink() if path.is_symlink() else shutil.rmtree(path, ignore_errors=True)
            removed += 1
        for name in files:
            if name.startswith(TEMP_PREFIX) or _LEGACY_TEMP.match(name):
                Path(folder, name).unlink(missing_ok=True)
                removed += 1
    return removed


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, command: str = "fermap") -> Iterator[Path]:
    """Hold an exclusive lock on a run folder for the duration of a command.

    A second process asking for the same folder is refused in one line naming the holder
    (process id, host, command, start time). The lock is the kernel's (``flock``): it goes
    with the process, so a killed holder never leaves the folder locked. Once held, the
    temporary files a killed earlier run left behind are removed.
    """
    import socket
    import time

    folder = check_output(folder, folder=True)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".fermap.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666 & ~_umask())
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace")
            try:
                h = json.loads(holder)
                who = f"process {h['pid']} on {h['host']} ({h['command']}, since {h['since']})"
            except (ValueError, KeyError, TypeError):
                who = "another process"
            raise FermapError(f"{folder}: in use by {who}; wait for it to finish") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                                  "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode(), 0)
        remove_stale_temps(folder)
        yield folder
    finally:
        os.close(fd)  # releases the lock


def inside(root: str | os.PathLike, *parts: str | os.PathLike) -> Path:
    """``root / parts``, refused in one line if it leads out of ``root``.

    A run folder may come from someone else: a name read from its files (``../x``, an
    absolute path) or a symbolic link inside it must never reach a file outside it.

    Parameters
    ----------
    root : path-like
        The folder everything must stay in.
    parts : path-like
        Path components, relative to ``root``.

    Returns
    -------
    path : Path
        ``root / parts`` (not resolved), once its resolved form is known to lie inside ``root``.
    """
    root = Path(root)
    path = root.joinpath(*parts)
    real_root = root.resolve()
    real = path.resolve()
    if real != real_root and real_root not in real.parents:
        raise FermapError(f"{path}: leads out of {root} (to {real}); refused")
    return path


def write_gray(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an 8-bit grey PNG atomically."""
    with atomic_path(path) as tmp:
        ok, buf = cv2.imencode(Path(path).suffix or ".png", image)
        if not ok:
            raise FermapError(f"{path}: could not encode image")
        buf.tofile(tmp)


def package_file(package: str, *parts: str, install_hint: str) -> Path:
    """A file shipped inside an installed package, found without importing the package.

    Raises FileNotFoundError saying how to install it when the package or the file is missing.
    """
    from importlib.util import find_spec

    found = find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(f"the package {package!r} is not installed ({install_hint})")
    path = Path(list(found.submodule_search_locations)[0]).joinpath(*parts)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {package} is installed without this file ({install_hint})")
    return path


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


def read_json(path: str | os.PathLike, what: str = "file") -> object:
    """JSON from a file, or one line naming the file and why it cannot be read (missing,
    unreadable, not UTF-8 text, truncated or malformed)."""
    path = Path(path)
    if not path.is_file():
        raise FermapError(f"{path}: no such {what}")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise FermapError(f"{path}: not a {what} (not UTF-8 text)") from None
    except ValueError as exc:
        raise FermapError(f"{path}: not a valid {what} ({str(exc).splitlines()[0][:120]})") from None
    except OSError as exc:
        raise FermapError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def read_csv(path: str | os.PathLike, what: str = "CSV file", columns: tuple[str, ...] = (), **kwargs):
    """A pandas table from a CSV file, or one line naming the file and why it cannot be read
    (missing, not UTF-8 text, binary, malformed, or without the ``columns`` it needs)."""
    path = Path(path)
    text = read_text(path, what)  # missing, unreadable, binary or not UTF-8: refused there
    try:
        table = pd.read_csv(io.StringIO(text), **kwargs)
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise FermapError(f"{path}: not a valid {what} ({str(exc).splitlines()[0][:120]})") from None
    except OSError as exc:
        raise FermapError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise FermapError(f"{path}: not a valid {what} (no column {', '.join(missing)})")
    return table


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """A UTF-8 text file's content, or one line naming the file and why it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise FermapError(f"{path}: no such {what}")
    try:
        raw = path.read_bytes()
        if b"\0" in raw:
            raise FermapError(f"{path}: not a {what} (binary data)")
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FermapError(f"{path}: not a {what} (not UTF-8 text)") from None
    except OSError as exc:
        raise FermapError(f"{path}: cannot be read ({exc.strerror or exc})") from None
