"""fermap_utils: the helper package behind the fermap book.

One module per stage of the pipeline, each a set of small functions on numpy arrays:
``landmarks``, ``warping``, ``masks``, ``metrics``, ``heatmaps`` (and, as they land,
``data``, ``models``, ``explain``, ``widgets``, ``run``). ``cli`` is the ``fermap`` command.
"""
__version__ = "0.1.0"
