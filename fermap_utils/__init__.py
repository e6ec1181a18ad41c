"""fermap_utils: the helper package behind the fermap book.

One module per stage of the pipeline, each a set of small functions on numpy arrays. From the
bottom up: ``config``, ``errors`` and ``layout`` (every path of a run folder); ``landmarks``,
``warping``, ``masks``, ``heatmaps``, ``metrics`` (the scores), ``statistics`` and ``specificity``
(statistics on scores), ``augment``, ``lime``, ``attribution``, ``efficientnet_lite`` and ``plots``;
``data``, ``synthetic`` and ``models``; ``explainers`` (the explainer registry) and ``profiles``;
``executor`` (jobs); ``rundata`` (a run's dataset and trained models), ``training``, ``explanations``,
``sanity``, ``scoring``, ``groundtruth``, ``states``, ``attention`` and ``widgets``; ``run``, ``plan`` and
``archive``; ``chapters``, ``book``, ``parser`` and ``teaching``; and ``cli``, the ``fermap``
command. The README's module list says what each does.
"""

#: fermap's version, defined only here: setuptools reads it for the package (pyproject.toml),
#: ``fermap --version`` prints it, and CITATION.cff must carry the same (a test checks).
__version__ = "0.1.0"

import os as _os

# TensorFlow 2.21's oneDNN kernels crash the process (segmentation fault, double free) in the eager
# convolution backward pass that Grad-CAM and Extremal Perturbation take, on this project's CI CPU
# (reproduced: tests/test_attribution.py's Grad-CAM on FER2013). Off unless the user chose: every
# fermap process (CLI, notebooks, Dask workers) imports this before TensorFlow, so all of them
# compute with the same kernels, which the sequential and the Dask paths need to agree bit for bit.
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
