"""The book's chapters: the setup call every chapter starts with, the chapters executed with papermill
(``fermap run``), and each executed chapter finished for the page.

The HTML build and its browser check are :mod:`fermap_utils.book`; the run a chapter reads,
:mod:`fermap_utils.run`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tqdm.auto
import tqdm.std
import wrapt
from matplotlib.figure import Figure

from . import __version__, models
from ._io import atomic_path
from .config import display_name, paper, project_root, section
from .errors import FermapError
from .groundtruth import grade_run, same_image_table
from .plots import describe_figure
from .profiles import check_data_source, record_profile
from .run import authors_data_dir, default_run_dir, open_run, run_fingerprint
from .statistics import bootstrap_ci, holm, paired_test, pairwise_comparisons


def quiet_libraries(book: bool = True) -> None:
    """Silence what libraries write to a chapter's outputs that is not meant for its reader.

    Always: deprecation and future warnings, TensorFlow's C++ log. In the built book
    (``book=True``) also every other Python warning, the TensorFlow, absl and Keras logs (retracing
    notes, "Downloading data from ...") and progress bars, which would be widget state or streams of
    carriage returns. What fermap means the reader to see, a chapter prints deliberately.

    Parameters
    ----------
    book : bool
        True in a chapter executed for the HTML book (papermill), False for a live session.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # read once, when TensorFlow's C++ loads
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
    if not book:
        return
    warnings.simplefilter("ignore")

    def quiet_tensorflow(tf):
        tf.get_logger().setLevel(logging.ERROR)  # TensorFlow sets INFO on stdout in a kernel otherwise

    def quiet_absl(absl_logging):
        absl_logging.set_verbosity(absl_logging.ERROR)

    def quiet_keras(keras):
        keras.config.disable_interactive_logging()  # Keras's prints go to absl, silenced above

    # Applied when each library is first imported, so a chapter that never needs TensorFlow
    # does not pay for loading it here.
    wrapt.register_post_import_hook(quiet_tensorflow, "tensorflow")
    wrapt.register_post_import_hook(quiet_absl, "absl.logging")
    wrapt.register_post_import_hook(quiet_keras, "keras")

    class Silent(tqdm.std.tqdm):
        """A progress bar that draws nothing: fermap's stages call tqdm.auto, a widget in a kernel."""

        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    tqdm.auto.tqdm = Silent


def _figure_png(fig) -> tuple[str, dict]:
    """A figure as PNG with its alt text and caption in the output's metadata (the runner moves them
    to the cell, where myst-nb reads them)."""
    from IPython.core.pylabtools import print_figure
    from matplotlib_inline.backend_inline import InlineBackend

    caption, alt = describe_figure(fig)
    kwargs = dict(InlineBackend.instance().print_figure_kwargs)
    return print_figure(fig, "png", base64=True, **kwargs), {"alt": alt, "caption": caption}


def setup_chapter(run_dir: str | os.PathLike | None, profile: str | None = None, live: bool = True,
                  source: str | None = None) -> tuple[dict | None, str, list[str]]:
    """The first call of every chapter: quiet libraries, inline figures, pandas display, the run.

    Parameters
    ----------
    run_dir : path or None
        The run folder the chapter reads and writes; None for a chapter that uses no run.
    profile : str, optional
        The profile to start the run with when ``run_dir`` is not a run yet.
    live : bool
        True in JupyterLab (live widgets, warnings shown), False in the built book.
    source : str, optional
        What the chapter's results come from, when it is not the run (e.g. the authors' heatmaps).

    Returns
    -------
    prof : dict or None
        The run's profile (None without a run).
    source : str
        The short label every table and figure of the chapter carries (``SYNTHETIC data, profile
        default``); the full source (profile, dataset, networks) is shown once, under the title.
    expressions : list of str
        The six expressions, in the paper's order.
    """
    from IPython import get_ipython
    from IPython.display import Markdown, display

    quiet_libraries(book=not live)
    shell = get_ipython()
    if shell is not None:
        shell.run_line_magic("matplotlib", "inline")  # each figure shown once, then closed
        shell.display_formatter.formatters["image/png"].for_type(Figure, _figure_png)
        if not live:
            # C libraries (TensorFlow's oneDNN and absl start-up notes, which no log level silences)
            # write to file descriptor 2, which the kernel forwards into the page. Python's own
            # sys.stderr is the kernel's stream and is unaffected.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
    pd.set_option("display.precision", 3)
    pd.set_option("styler.format.precision", 3)
    pd.set_option("display.max_columns", 40)
    pd.set_option("display.max_colwidth", None)  # a network's name is never cut ("EfficientNetLite0Scratc...")
    prof = None
    label = source
    if run_dir is not None:
        prof, run_source = open_run(run_dir, profile)
        # said once in full here; figures and tables carry the short label (what the data are)
        label = source or f"{'SYNTHETIC data' if 'SYNTHETIC' in run_source else 'data'}, profile {prof['name']}"
        source = source or run_source
    display(Markdown(f"*Source of every result in this chapter: {source}.*"))
    return prof, label, list(paper()["expressions"])


# The source of a cell that only carries outputs split from the cell above (a figure of its own).
OUTPUTS_ONLY_SOURCE = "# outputs of the cell above (this cell's input is hidden)"


def say(name: str, value, fmt: str = "{}") -> str:
    """A result of the run for the chapter's prose: glued as ``name``, cited with {glue:text}`name`.

    Prose never types a number the run computed (``fermap book --check`` fails on one); it cites the
    glued text, which is what this run computed.

    Parameters
    ----------
    name : str
        The key the prose cites (unique in the chapter).
    value : object
        The number (or phrase).
    fmt : str
        How it reads, a :meth:`str.format` pattern (``"{:.1%}"``, ``"{:.3f}"``).

    Returns
    -------
    str
        The text glued.
    """
    from myst_nb import glue  # the book's stack: loaded where a chapter runs

    # A str glues as its repr, which myst-nb reads back with literal_eval: the text exactly as formatted
    # ("1.000" stays "1.000"; a number glued as such would be re-printed, "1.0").
    text = fmt.format(value)
    glue(name, text, display=False)
    return text


@dataclass
class GroundTruthOutcome:
    """Chapter 12's verdict on the explainers (the file ``13_ground_truth``), for that chapter and the Discussion.

    Attributes
    ----------
    explainers : DataFrame
        Per explainer, over the networks this run trained: mean ``roc_auc`` against the planted
        truth, its ``low``/``high`` bounds (whole networks resampled), ``p_vs_chance`` (sign-flip
        over the (network, expression) cells against 0.5), ``p_holm`` (Holm over the explainers)
        and ``n`` (cells).
    pairs : DataFrame
        Every pair of explainers over the cells both graded
        (:func:`fermap_utils.statistics.pairwise_comparisons`, Holm over all pairs).
    transfer : DataFrame
        The same per-explainer scores on the fixed networks (FER2013: trained on real faces,
        never on these data), reported apart; empty when the run has none.
    sentences : list of str
        The outcome in words, with the numbers.
    """

    explainers: pd.DataFrame
    pairs: pd.DataFrame
    transfer: pd.DataFrame
    sentences: list[str]


def _fixed_networks() -> set[str]:
    fixed = models.fixed_networks()
    return set(fixed) | {display_name(n) for n in fixed}


def _per_explainer(wide: pd.DataFrame, networks: pd.Index, level: float = 0.95) -> pd.DataFrame:
    rows = {}
    for m in wide.columns:
        values = wide[m].to_numpy()
        keep = ~np.isnan(values)
        ci = bootstrap_ci(values[keep], clusters=networks[keep], level=level)
        chance = paired_test(values[keep], np.full(keep.sum(), 0.5))
        rows[m] = {"roc_auc": ci.estimate, "low": ci.low, "high": ci.high, "p_vs_chance": chance["p_value"],
                   "n": int(keep.sum())}
    table = pd.DataFrame(rows).T.sort_values("roc_auc", ascending=False) if rows else pd.DataFrame()
    if len(table):
        table.insert(len(table.columns) - 1, "p_holm", holm(table.p_vs_chance.to_numpy(dtype=float)))
    return table


def _auc(table: pd.DataFrame, m: str) -> str:
    r = table.loc[m]
    bounds = f" [{r.low:.3f}, {r.high:.3f}]" if np.isfinite(r.low) else ""
    return f"{m} {r.roc_auc:.3f}{bounds} (p = {r.p_holm:.2g})"


def ground_truth_outcome(run_dir: str | os.PathLike, methods: list[str], masks: dict, alpha: float = 0.05,
                         grades: pd.DataFrame | None = None) -> GroundTruthOutcome:
    """Which explainers recover the planted truth, and whether one does better than another.

    The same grades as the ground-truth chapter (:func:`~fermap_utils.groundtruth.grade_run` on the
    run's by-network heatmaps and its dataset's planted maps), ROC-AUC against the planted region.
    Only the networks the run trained enter the comparison; a fixed network (FER2013, trained on
    real faces) is reported apart, as the transfer question it is. An explainer passes the positive
    control when its mean ROC-AUC exceeds 0.5 with a Holm-corrected sign-flip p below ``alpha``
    over its (network, expression) cells. Every pair of explainers is compared (Holm over the
    pairs); one is called the best only when it is above every other with a corrected p below
    ``alpha``, else the sentences say which differences are shown and which are not.

    Parameters
    ----------
    run_dir : path
        The run folder (synthetic data: its planted maps).
    methods : list of str
        The explainers to grade (``lime`` and the profile's ``explain.methods``).
    masks : dict of str to array
        The Ekman masks (graded beside the truth, as in the chapter).
    alpha : float
        The level of every test.
    grades : DataFrame, optional
        :func:`~fermap_utils.groundtruth.grade_run`'s grades, when the caller has them.

    Returns
    -------
    GroundTruthOutcome
    """
    grades = grade_run(run_dir, methods, masks) if grades is None else grades
    empty = pd.DataFrame()
    if grades.empty:
        return GroundTruthOutcome(empty, empty, empty,
                                  ["No explainer's heatmaps could be graded against the planted truth in this run."])
    planted = grades[grades.truth == "planted"]
    wide = planted.pivot_table(index=["network", "expression"], columns="method", values="roc_auc")
    fixed = wide.index.get_level_values("network").isin(list(_fixed_networks()))
    trained, transfer_cells = wide[~fixed], wide[fixed]
    table = _per_explainer(trained.dropna(axis=1, how="all"), trained.index.get_level_values("network"))
    transfer = _per_explainer(transfer_cells.dropna(axis=1, how="all"),
                              transfer_cells.index.get_level_values("network"))
    if table.empty:
        return GroundTruthOutcome(table, empty, transfer,
                                  ["No network trained in this run has graded heatmaps: nothing to compare."])
    pairs = pairwise_comparisons(trained[table.index])
    passed = [m for m, r in table.iterrows() if r.roc_auc > 0.5 and r.p_holm < alpha]
    n_nets = trained.index.get_level_values("network").nunique()
    sentences = [
        f"Positive control (SYNTHETIC data, planted truth known; the {n_nets} networks trained here): "
        f"{len(passed)} of {len(table)} explainers recover the planted regions better than chance "
        f"(mean ROC-AUC [95 % interval over networks] above 0.5, Holm-corrected sign-flip p < {alpha:g}): "
        + (", ".join(_auc(table, m) for m in passed) or "none") + "."]
    failed = [m for m in table.index if m not in passed]
    if failed:
        sentences.append("Not shown to beat chance: " + ", ".join(_auc(table, m) for m in failed) + ".")
    shown = pairs[pairs.p_holm < alpha]
    top = table.index[0]
    top_pairs = pairs[pairs.a == top]
    if len(table) > 1 and len(top_pairs) == len(table) - 1 and (top_pairs.p_holm < alpha).all():
        sentences.append(f"{top} is the best explainer here: above every other with a Holm-corrected paired "
                         f"p < {alpha:g} (smallest difference {top_pairs.difference.min():+.3f}).")
    elif len(table) > 1:
        ties = pairs[(pairs.a == top) & ~(pairs.p_holm < alpha)]
        sentences.append(f"No explainer is shown to be the best: {top} has the highest mean, but "
                         + ", ".join(f"{r.b} ({r.difference:+.3f} [{r.low:+.3f}, {r.high:+.3f}], "
                                     f"p = {r.p_holm:.2g})" for r in ties.itertuples())
                         + f" {'does' if len(ties) == 1 else 'do'} not differ from it at a Holm-corrected "
                           f"p < {alpha:g}.")
        if len(shown):
            sentences.append("Differences shown: " + "; ".join(
                f"{r.a} above {r.b} ({r.difference:+.3f}, d_z = {r.effect_size:.2f}, p = {r.p_holm:.2g})"
                for r in shown.itertuples()) + ".")
    if len(table) > 1:
        sentences.append("The p-values treat the (network, expression) cells as exchangeable units; "
                         "the intervals of the means resample whole networks (wider for it), those of the "
                         "differences the cells.")
    if len(transfer):
        sentences.append("Reported apart, the fixed network trained on real faces (never on these data): "
                         + ", ".join(_auc(transfer, m) for m in transfer.index) + ".")
    return GroundTruthOutcome(table, pairs, transfer, sentences)


@dataclass
class SameImageOutcome:
    """Chapter 12's comparison on the same images, one by one (the file ``13_ground_truth``).

    Attributes
    ----------
    scores : DataFrame
        Per explainer and truth (``planted``, ``discriminative``), over the correctly classified images
        of the networks this run trained: mean ``roc_auc`` and Otsu ``iou`` with their ``*_low`` /
        ``*_high`` bounds (images resampled) and ``n`` (images).
    pairs : dict of str to DataFrame
        Per truth, every pair of explainers on the images both explained
        (:func:`fermap_utils.statistics.pairwise_comparisons` of ROC-AUC, Holm over the pairs).
    transfer : DataFrame
        ``scores`` for the fixed networks (FER2013), reported apart; empty when the run has none.
    excluded : int
        Explained images left out because the network misclassified them.
    sentences : list of str
        The outcome in words, with the numbers.
    """

    scores: pd.DataFrame
    pairs: dict[str, pd.DataFrame]
    transfer: pd.DataFrame
    excluded: int
    sentences: list[str]


def _image_scores(graded: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    rows = []
    for (method, truth), g in graded.groupby(["method", "truth"], sort=False):
        row = {"method": method, "truth": truth}
        for metric in ("roc_auc", "iou"):
            ci = bootstrap_ci(g[metric].to_numpy(dtype=float), level=level)
            row.update({metric: ci.estimate, f"{metric}_low": ci.low, f"{metric}_high": ci.high})
        rows.append({**row, "n": len(g)})
    return pd.DataFrame(rows).set_index(["method", "truth"]) if rows else pd.DataFrame()


def same_image_outcome(graded: pd.DataFrame, alpha: float = 0.05) -> SameImageOutcome:
    """The explainers compared on the same images, image by image, against each truth.

    Only correctly classified images of the networks this run trained count (a fixed network is
    reported apart); each pair of explainers is compared on the images both explained (the draws
    are nested, :func:`fermap_utils.explanations.choose_images`, so the smaller sample is shared),
    with the exact or Monte Carlo sign-flip test, Cohen's d_z and a bootstrap interval, Holm over
    the pairs of a truth. One explainer is called the best against a truth only when it is above
    every other at a corrected p below ``alpha``.

    Parameters
    ----------
    graded : DataFrame
        :func:`fermap_utils.groundtruth.grade_images`'s rows.
    alpha : float
        The level of every test.

    Returns
    -------
    SameImageOutcome
    """
    empty = pd.DataFrame()
    if graded.empty:
        return SameImageOutcome(empty, {}, empty, 0, ["No explained image could be graded in this run."])
    fixed = graded.network.isin(list(_fixed_networks()))
    trained = graded[~fixed & graded.correct]
    excluded = len(graded[~fixed & ~graded.correct][["network", "fold", "id"]].drop_duplicates())
    scores = _image_scores(trained)
    transfer = _image_scores(graded[fixed & graded.correct])
    networks = sorted(trained.network.unique())
    pairs, sentences = {}, []
    for truth in ("planted", "discriminative"):
        wide = same_image_table(graded, truth, networks=networks)
        if wide.shape[1] < 2:
            continue
        table = pairwise_comparisons(wide)
        pairs[truth] = table
        means = wide.mean().sort_values(ascending=False)
        top = means.index[0]
        top_pairs = table[table.a == top]
        head = (f"Against the {truth} truth, image by image ({len(wide)} correctly classified images of the "
                f"{len(networks)} networks trained here; each pair on the images both explained; differences with "
                "95 % bootstrap intervals not corrected for the number of pairs, p Holm-corrected): ")
        if len(top_pairs) == len(means) - 1 and (top_pairs.p_holm < alpha).all():
            sentences.append(head + f"{top} is the best, above every other explainer at a Holm-corrected p < "
                             f"{alpha:g} (" + "; ".join(f"{r.b} {r.difference:+.3f} [{r.low:+.3f}, {r.high:+.3f}], "
                                                       f"d_z = {r.effect_size:.2f}, n = {r.n}"
                                                       for r in top_pairs.itertuples()) + ").")
        else:
            ties = top_pairs[~(top_pairs.p_holm < alpha)]
            sentences.append(head + f"no explainer is shown to be the best; {top} has the highest mean ROC-AUC "
                             f"({means[top]:.3f}), but " + ", ".join(
                                 f"{r.b} ({r.difference:+.3f} [{r.low:+.3f}, {r.high:+.3f}], p = {r.p_holm:.2g}, "
                                 f"n = {r.n})" for r in ties.itertuples())
                             + f" {'does' if len(ties) == 1 else 'do'} not differ from it at a Holm-corrected "
                               f"p < {alpha:g}.")
        shown = table[(table.p_holm < alpha) & (table.a != top)]
        if len(shown):
            sentences.append("Other differences shown: " + "; ".join(
                f"{r.a} above {r.b} ({r.difference:+.3f}, d_z = {r.effect_size:.2f}, p = {r.p_holm:.2g})"
                for r in shown.itertuples()) + ".")
    if "constant" in trained:  # one row per image and truth: count each image once
        flat = trained[trained.truth == "planted"].groupby("method").constant.agg(["sum", "size"])
        if flat["sum"].any():
            sentences.append("Maps with one value everywhere, which rank no pixel above another (ROC-AUC 0.5, "
                             "nothing selected at Otsu's threshold, NCC undefined): " + ", ".join(
                                 f"{m} {int(r['sum'])} of {int(r['size'])}" for m, r in flat.iterrows() if r["sum"])
                             + ". They are kept in every score as the chance they are, not dropped.")
    if pairs:
        sentences.append(f"{excluded} explained images were misclassified and left out. The images of one "
                         "network share its weights, so they are not independent draws: the per-image p-values "
                         "are the optimistic ones, the per-network comparison above the conservative one.")
    return SameImageOutcome(scores, pairs, transfer, excluded, sentences)


# An executor job's log line ("train-SongNet-fold1: done in 11.8 s on host:pid"): provenance, not content.
_JOB_LOG = re.compile(r"^(?P<job>[\w.-]+): done in (?P<seconds>[\d.]+) s(?: on \S+)?$")
# The overview's "**Time.**" paragraph: its first sentence stays, the measurements move to "About this run".
_TIME = re.compile(r"^\*\*Time\.\*\* (?P<keep>[^.]*\.)(?P<rest>.*)$", re.M)


def about_this_run(nb, about: dict | None = None) -> None:
    """Gather a chapter's timing, provenance and job logs into one collapsed "About this run" block at its end.

    The executor's log lines (one per job, on stdout) leave the outputs; the overview's
    "**Time.**" paragraph keeps its first sentence (time to read) and moves the rest (measured run
    times); ``about`` adds the run's own facts (profile, execution time, version).

    Parameters
    ----------
    nb : nbformat.NotebookNode
        The executed notebook; changed in place.
    about : dict, optional
        Label to text, one line each.
    """
    import nbformat

    lines = [f"- **{k}:** {v}" for k, v in (about or {}).items()]
    jobs = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = _TIME.search(cell.source)
            if m and m.group("rest").strip():
                lines.append(f"- **When this chapter was written:** {m.group('rest').strip()}")
                cell.source = (cell.source[:m.start()] + f"**Time.** {m.group('keep')} How long it runs: "
                               "*About this run*, at the end of the chapter." + cell.source[m.end():])
            continue
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stdout":
                text = output["text"] if isinstance(output["text"], str) else "".join(output["text"])
                rows = text.splitlines()
                logs = [m for r in rows if (m := _JOB_LOG.match(r.strip()))]
                if logs:
                    jobs += [f"{m['job']}: {m['seconds']} s" for m in logs]
                    rest = [r for r in rows if not _JOB_LOG.match(r.strip())]
                    if not rest:
                        continue
                    output["text"] = "\n".join(rest) + "\n"
            kept.append(output)
        cell.outputs = kept
    if not lines and not jobs:
        return
    body = "\n".join(lines)
    if jobs:
        body += "\n\nJobs this chapter ran (the executor's log):\n\n```text\n" + "\n".join(jobs) + "\n```"
    nb.cells.append(nbformat.v4.new_markdown_cell(
        f"::::{{admonition}} About this run\n:class: dropdown about-this-run\n\n{body}\n::::",
        metadata={"tags": ["about-this-run"]}))


def _prose_only(cell) -> bool:
    """A code cell whose visible outputs are all Markdown: it only writes the chapter's sentences."""
    shown = [o for o in cell.get("outputs", []) if o.get("output_type") in ("display_data", "execute_result")
             and not o.get("metadata", {}).get("scrapbook")]
    return bool(shown) and all(set(o.get("data", {})) <= {"text/markdown", "text/plain"}
                               and "text/markdown" in o.get("data", {}) for o in shown) \
        and not [o for o in cell.get("outputs", []) if o.get("output_type") == "stream"]


def finish_chapter(nb, name: str, about: dict | None = None):
    """An executed chapter made ready for the book: parameter cells hidden, figures captioned, the code
    of cells that only write sentences folded, timing and logs in one "About this run" block.

    papermill's injected cell (tag ``injected-parameters``) and the ``parameters`` cell get
    ``remove-cell``, which jupyter-book removes from the page. Each figure whose alt text and caption
    :func:`setup_chapter` put in its output's metadata becomes a numbered figure: myst-nb reads them
    from the cell's ``mystnb`` metadata and applies them to every output of a cell, so a figure that
    shares its cell with other outputs moves to a cell of its own (input removed), in place. A cell
    that sets its own ``mystnb`` figure or image options keeps them.

    Parameters
    ----------
    nb : nbformat.NotebookNode
        The executed notebook; changed in place.
    name : str
        The chapter's name, for figure labels (``<name>-fig-<n>``).
    about : dict, optional
        The run's facts for the chapter's "About this run" block (:func:`about_this_run`).

    Returns
    -------
    nbformat.NotebookNode
        ``nb``.
    """
    import nbformat  # the Jupyter stack (1.5 s to import): loaded where a notebook is handled

    def described(output) -> dict | None:
        meta = output.get("metadata", {}).get("image/png", {})
        return meta if "image/png" in output.get("data", {}) and meta.get("alt") else None

    def outputs_only(outputs) -> nbformat.NotebookNode:
        # Not empty: myst-nb drops a cell whose source is blank, outputs and all, from the page.
        cell = nbformat.v4.new_code_cell(OUTPUTS_ONLY_SOURCE, metadata={"tags": ["remove-input"]})
        cell.outputs = outputs
        return cell

    cells, figures = [], 0
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if {"parameters", "injected-parameters"} & set(tags) and "remove-cell" not in tags:
            cell.metadata["tags"] = tags = [*tags, "remove-cell"]
        if cell.cell_type == "code" and _prose_only(cell) and not {"hide-input", "remove-input"} & set(tags):
            cell.metadata["tags"] = [*tags, "hide-input"]  # code that only writes sentences: folded
        own = {"image", "figure"} & set(cell.metadata.get("mystnb", {}))
        if cell.cell_type != "code" or own or not any(described(o) for o in cell.outputs):
            cells.append(cell)
            continue
        outputs, cell.outputs, current = list(cell.outputs), [], cell
        cells.append(cell)
        for output in outputs:
            meta = described(output)
            if meta is None:
                current.outputs.append(output)
                continue
            figures += 1
            # the figure: in the cell itself while that shows nothing yet, else in a cell of its own
            figure = current if current is cell and not cell.outputs else outputs_only([])
            figure.outputs.append(output)
            figure.metadata["mystnb"] = {"image": {"alt": meta["alt"]},
                                         "figure": {"caption": meta["caption"], "name": f"{name}-fig-{figures}"}}
            # the book theme's full width (over the page's margin): panel titles stay readable
            figure.metadata["tags"] = [*figure.metadata.get("tags", []), "full-width"]
            if figure is not cell:
                cells.append(figure)
            current = outputs_only([])  # what follows the figure is not part of it
            cells.append(current)
    nb.cells = [c for c in cells if c.cell_type != "code" or c.outputs or c.source not in ("", OUTPUTS_ONLY_SOURCE)]
    about_this_run(nb, about)
    return nb


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
    import nbformat
    import papermill as pm
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

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
    for name in tqdm.auto.tqdm(names, desc=f"book ({prof['name']})", unit="chapter", disable=not progress):
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
                                        progress_bar=False, kernel_name="python3",
                                        # ipykernel's "running over TCP" warning, once per chapter: noise
                                        extra_arguments=["--IPKernelApp.log_level=ERROR"])
                finally:
                    failed_copy = tmp.read_bytes() if tmp.is_file() and tmp.stat().st_size else None
                about = {"Profile": f"`{prof['name']}` (`fermap run --profile {prof['name']}`)",
                         "Executed": f"in {time.perf_counter() - started:.0f} s by papermill on this run's machine",
                         "fermap": __version__}
                nbformat.write(finish_chapter(nbformat.read(tmp, as_version=4), name, about), tmp)
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
