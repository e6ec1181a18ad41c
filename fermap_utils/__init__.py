"""fermap_utils: the helper package behind the fermap book.

One module per stage of the pipeline, each a set of small functions on numpy arrays. From the
bottom up: ``config`` and ``errors``; ``landmarks``, ``warping``, ``masks``, ``metrics``,
``heatmaps`` and ``augment``; ``data`` and ``synthetic``; ``models``, ``efficientnet_lite`` and
``training``; ``explain``, ``attribution`` and ``groundtruth``; ``plots`` and ``widgets``;
``run``; and ``cli``, the ``fermap`` command. The README's module list says what each does.
"""

#: fermap's version, defined only here: setuptools reads it for the package (pyproject.toml),
#: ``fermap --version`` prints it, and CITATION.cff must carry the same (a test checks).
__version__ = "0.1.0"
