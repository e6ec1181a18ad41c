"""The book as a course text: every chapter's teaching apparatus, checked.

Each chapter opens with an *Overview* (what you will learn, prerequisites, time to read and
to run) and ends with *Exercises* (sphinx-exercise directives, solutions behind a toggle),
a *Summary* and *What's next*. Exercises come in three kinds, named by their ``:class:``:
``kind-figure`` (a question on the chapter's figures), ``kind-parameter`` (a parameter to
change and re-run, with the exact command) and ``kind-code`` (a short coding task that calls
``fermap_utils``). :func:`check_teaching` reads the built HTML; :func:`exercise_commands`
reads the commands of the parameter exercises from the notebooks, :func:`command_problems`
checks each (it parses, its keys exist, each ``-p`` changes something) and :func:`run_exercise`
runs one on a given run folder (``tests/test_exercises.py``).
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
from html.parser import HTMLParser
from pathlib import Path

import yaml

from .chapters import run_book
from .config import project_root, section
from .errors import FermapError
from .lime import LimeSettings
from .parser import build_parser
from .profiles import load_profile, parse_overrides

SECTIONS = ("overview", "exercises", "summary", "what's next")
KINDS = ("kind-figure", "kind-parameter", "kind-code")
MIN_EXERCISES = 3


class _Page(HTMLParser):
    """Headings (h2) and exercise / solution admonitions of one rendered chapter."""

    def __init__(self):
        super().__init__()
        self.headings: list[str] = []
        self.exercises: list[set[str]] = []
        self.solutions: list[set[str]] = []
        self.classes: set[str] = set()
        self._in_h2 = self._section = False
        self._text = ""

    def handle_starttag(self, tag, attrs):
        classes = set((dict(attrs).get("class") or "").split())
        self.classes |= classes
        if tag == "h2":
            self._in_h2, self._text, self._section = True, "", False
        if tag == "a" and self._in_h2 and "headerlink" in classes:
            self._section = True  # a section's title; the theme's own h2s ("Contents") have no anchor
        if tag == "div" and "admonition" in classes:
            if "exercise" in classes:
                self.exercises.append(classes)
            elif "solution" in classes:
                self.solutions.append(classes)

    def handle_endtag(self, tag):
        if tag == "h2" and self._in_h2:
            self._in_h2 = False
            if self._section:
                title = " ".join(self._text.replace("#", "").split()).lower().replace("’", "'")
                self.headings.append(re.sub(r"^\d+(\.\d+)*\.?\s+", "", title))  # numbered toc: "2.1. Overview"

    def handle_data(self, data):
        if self._in_h2:
            self._text += data


def teaching_problems(html: str, name: str, launch: bool = True) -> list[str]:
    """What one rendered chapter lacks as a course text.

    Parameters
    ----------
    html : str
        The chapter's HTML as built (or as a browser's DOM).
    name : str
        The chapter's name, to prefix each problem.
    launch : bool
        Whether launch buttons are expected (a repository is configured, :func:`launch_repository`).

    Returns
    -------
    list of str
        One line per problem: a missing section (overview, exercises, summary, what's next),
        fewer than three exercises, an exercise without its solution, a solution not hidden
        behind a toggle, no launch or download buttons, or a kind of exercise (figure,
        parameter, code) missing.
    """
    page = _Page()
    page.feed(html)
    problems = [f"{name}: no '{s}' section" for s in SECTIONS if s not in page.headings]
    if "overview" in page.headings and page.headings[0] != "overview":
        problems.append(f"{name}: the overview is not the first section")
    if len(page.exercises) < MIN_EXERCISES:
        problems.append(f"{name}: {len(page.exercises)} exercise(s), at least {MIN_EXERCISES} expected")
    if len(page.solutions) < len(page.exercises):
        problems.append(f"{name}: {len(page.exercises) - len(page.solutions)} exercise(s) without a solution")
    if any("dropdown" not in s for s in page.solutions):
        problems.append(f"{name}: a solution is shown, not hidden behind a toggle")
    # sphinx-book-theme's buttons: open the chapter on Binder / a JupyterHub, download it
    for button, what in (("dropdown-launch-buttons", "launch"), ("dropdown-download-buttons", "download")):
        if button not in page.classes and (launch or what != "launch"):
            problems.append(f"{name}: no {what} buttons")
    kinds = set().union(*page.exercises) if page.exercises else set()
    problems += [f"{name}: no {k[5:]} exercise" for k in KINDS if k not in kinds]
    return problems


PLACEHOLDER_REPOSITORY = "https://github.com/OWNER/REPOSITORY"


def launch_repository(root: str | os.PathLike | None = None) -> str | None:
    """The repository the book's launch buttons open (``repository: url`` in ``_config.yml``).

    Parameters
    ----------
    root : path, optional
        The book's source tree (default: this checkout).

    Returns
    -------
    str or None
        The URL; None while it is still the placeholder fermap ships (it has no public
        repository), or unset: the launch buttons then lead nowhere.
    """
    config = yaml.safe_load((Path(root or project_root()) / "_config.yml").read_text(encoding="utf-8")) or {}
    url = str((config.get("repository") or {}).get("url") or "").strip()
    return None if url in ("", PLACEHOLDER_REPOSITORY) else url


def check_teaching(html_dir: str | os.PathLike, chapters: list[str] | None = None) -> list[str]:
    """Every chapter of the built book has its overview, exercises with solutions, summary and next step.

    Parameters
    ----------
    html_dir : path
        The built HTML book (``_build/html``).
    chapters : list of str, optional
        Chapter names (default: the book's, from ``config.yaml``).

    Returns
    -------
    list of str
        The problems found (:func:`teaching_problems`), plus a missing glossary or lab page.
    """
    book = section("book")
    html_dir = Path(html_dir)
    # no repository configured: `fermap book` builds without launch buttons (book.launch_config)
    root = html_dir.resolve().parents[1]
    launch = launch_repository(root) is not None if (root / "_config.yml").is_file() else True
    problems = []
    for name in chapters or list(book["chapters"]):
        page = html_dir / book["executed"] / f"{name}.html"
        if page.is_file():  # a missing chapter is check_book's to report
            problems += teaching_problems(page.read_text(encoding="utf-8"), name, launch)
    for page in ("glossary", "teaching"):
        if not (html_dir / "book" / f"{page}.html").is_file():
            problems.append(f"book/{page}: not rendered")
    return problems


def _markdown(notebook: str | os.PathLike) -> list[str]:
    import nbformat  # the Jupyter stack (1.5 s to import): loaded where a notebook is read

    return [c.source for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "markdown"]


def _directives(text: str) -> list[str]:
    """The text from each ``:::{exercise}`` or ``:::{solution}`` fence to the next one."""
    return re.split(r"^(?=:{3,}\{(?:exercise|solution)\})", text, flags=re.M)[1:]


def exercise_commands(notebook: str | os.PathLike) -> list[list[str]]:
    """The ``fermap`` commands of a notebook's parameter exercises and their solutions.

    Parameters
    ----------
    notebook : path
        A chapter's notebook.

    Returns
    -------
    list of list of str
        Each command split as a shell would (``shlex``), without the leading ``fermap``;
        found on the lines starting with ``fermap `` inside markdown cells that hold a
        ``kind-parameter`` exercise or in the solution of one (``ex-<chapter>-parameter``).
    """
    commands = []
    for source in _markdown(notebook):
        for block in _directives(source):
            head = block.split("\n", 1)[0]
            # an exercise says its kind in :class:; a solution names its exercise, ex-<chapter>-<kind>
            if ":class: kind-parameter" not in block and not (head.startswith(":::{solution}") and
                                                               head.rstrip().endswith("-parameter")):
                continue
            for line in block.splitlines():
                line = line.strip()
                if line.startswith("fermap "):
                    commands.append(shlex.split(line)[1:])
    return commands


def command_problems(argv: list[str]) -> list[str]:
    """Why an exercise's ``fermap`` command would not do what it says (empty if it would).

    Parameters
    ----------
    argv : list of str
        The command's arguments, without ``fermap`` (as :func:`exercise_commands` gives them).

    Returns
    -------
    list of str
        Problems: arguments the command line rejects, an unknown profile or chapter, a
        ``-p KEY VALUE`` whose key no profile has (a typo would otherwise be applied silently),
        or one that sets the value the profile already has (the exercise would change nothing).
    """
    text = " ".join(argv)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            args = build_parser().parse_args(argv)
    except SystemExit:
        return [f"fermap {text}: the command line rejects it"]
    problems = []
    if getattr(args, "param", None) is not None or hasattr(args, "chapters"):
        profiles = section("profiles")
        top = set().union(*profiles.values()) | {"tune"}
        inner = set(section("explainers")["lime"]) | set(LimeSettings.__dataclass_fields__)
        inner |= set().union(*[p.get("explain") or {} for p in profiles.values()])
        for key, _ in args.param or []:
            head, *rest = key.split(".")
            if head not in top or (head == "explain" and rest and rest[0] not in inner):
                problems.append(f"fermap {text}: no profile has the key {key!r}")
        try:
            name, config = getattr(args, "profile", None), getattr(args, "config", None)
            changed = load_profile(name, config, parse_overrides(args.param))
            base = load_profile(name, config)
        except FermapError as exc:
            problems.append(f"fermap {text}: {exc}")
        else:  # an exercise that sets a key to the value it already has changes nothing
            for key, _ in args.param or []:
                if _effective(changed, key) == _effective(base, key):
                    problems.append(f"fermap {text}: -p {key} sets the value the profile already has "
                                    f"({_effective(base, key)!r}): nothing changes")
        unknown = [c for c in getattr(args, "chapters", None) or [] if c not in section("book")["chapters"]]
        if unknown:
            problems.append(f"fermap {text}: unknown chapter(s) {', '.join(unknown)}")
    return problems


def _effective(prof: dict, key: str):
    """The value a profile uses for a dotted key: its own, else (for ``explain.*``) the default
    settings every run starts from (``explainers: lime`` in ``config.yaml``)."""
    value = prof
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            head, *rest = key.split(".")
            return section("explainers")["lime"].get(rest[0]) if head == "explain" and len(rest) == 1 else None
        value = value[part]
    return value


def run_exercise(argv: list[str], run_dir: str | os.PathLike, out_dir: str | os.PathLike):
    """Run a parameter exercise's ``fermap run`` command on a given run folder and chapters folder.

    What ``fermap run`` does with the same arguments (the profile with its ``-p`` overrides, only
    the ``--chapters`` named, unchanged ones skipped, retraining only what the new settings
    demand), with the executed chapters written to ``out_dir`` instead of the book's source tree,
    so that a test or a script can run it on a copy of a finished run.

    Parameters
    ----------
    argv : list of str
        The command, without ``fermap`` (as :func:`exercise_commands` gives it); must be ``run``.
    run_dir, out_dir : path
        The run folder, and where the executed chapters (and their stamps) go.

    Returns
    -------
    tuple of (dict, pandas.DataFrame)
        The profile the command ran with, and ``run_book``'s table (chapter, status, seconds).
    """
    problems = command_problems(argv)
    if problems or argv[:1] != ["run"]:
        raise FermapError("; ".join(problems) or f"fermap {' '.join(argv)}: not a fermap run command")
    args = build_parser().parse_args(argv)
    prof = load_profile(args.profile, args.config, parse_overrides(args.param))
    return prof, run_book(prof, run_dir, args.chapters, progress=False, out_dir=out_dir)


def notebook_problems(notebook: str | os.PathLike) -> list[str]:
    """What a chapter's notebook lacks as a course text, read from its markdown source.

    The same requirements as :func:`teaching_problems` (which reads the built HTML), checked
    before any build: the sections as ``##`` headings, the exercises as ``:::{exercise}``
    directives with their kind in ``:class:``, and one ``:::{solution}`` with ``:class: dropdown``
    per exercise.

    Parameters
    ----------
    notebook : path
        The chapter to check (an ``.ipynb`` file).

    Returns
    -------
    list of str
        One line per problem, prefixed with the notebook's name.
    """
    name = Path(notebook).stem
    text = "\n".join(_markdown(notebook))
    headings = [h.strip().lower().replace("’", "'") for h in re.findall(r"^## (.+)$", text, flags=re.M)]
    problems = [f"{name}: no '{s}' section" for s in SECTIONS if s not in headings]
    if "overview" in headings and headings[0] != "overview":
        problems.append(f"{name}: the overview is not the first section")
    blocks = _directives(text)
    exercises = [b for b in blocks if b.startswith(":::{exercise}")]
    solutions = [b for b in blocks if b.startswith(":::{solution}")]
    labels = {m.group(1) for b in exercises for m in [re.search(r"^:label: (\S+)", b, flags=re.M)] if m}
    solved = {b.split("\n", 1)[0].split()[-1] for b in solutions}
    if len(exercises) < MIN_EXERCISES:
        problems.append(f"{name}: {len(exercises)} exercise(s), at least {MIN_EXERCISES} expected")
    problems += [f"{name}: exercise {label} has no solution" for label in sorted(labels - solved)]
    if any(not re.search(r"^:class: .*dropdown", b, flags=re.M) for b in solutions):
        problems.append(f"{name}: a solution is shown, not hidden behind a toggle")
    problems += [f"{name}: no {k[5:]} exercise" for k in KINDS if not any(f":class: {k}" in b for b in exercises)]
    return problems
