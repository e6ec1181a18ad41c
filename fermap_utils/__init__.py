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

# oneDNN: fermap leaves TensorFlow's own default (on, on x86-64 Linux) unless TF_ENABLE_ONEDNN_OPTS
# is set. It trains and explains 2-2.5x faster on 2 cores (SongNet, MobileNetV3, Lite0 epochs,
# measured). Its eager convolution backward pass crashes the process on this project's CPU (Grad-CAM
# on FER2013), so under oneDNN the explainers always run traced (executor.explainers_run_eagerly).
# Every fermap process (the CLI, the chapters' kernels, the Dask workers) inherits the same
# setting, so all of them compute with the same kernels.
