"""Running a run's jobs: one after the other in this process, or as Dask tasks.

A run is independent jobs: one per (network, fold) for training
(:func:`fermap_utils.training.train_task`) and one per (network, fold, group of classes)
and method for explanations (:func:`fermap_utils.explanations.explain_job`). A :class:`Job`
carries the module-level function it calls and that function's arguments: this module knows
jobs, not stages. Every job goes through :func:`execute`, in this process or on a
``dask.distributed`` worker, so both paths compute the same thing:

- each job pins its own thread count (TensorFlow's pools, OpenCV, BLAS), so N workers on
  one machine do not oversubscribe its cores, and seeds itself from its own (seed, fold);
- each job writes only its own files, atomically, last the one that marks it complete, so a
  job lost with a killed worker is redone and a finished one is kept;
- each job's output goes to ``RUN/jobs/<job>.log`` and its timing, worker and thread
  count to ``RUN/jobs/<job>.json``.
"""
from __future__ import annotations

import contextlib
import datetime
import gc
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import pandas as pd
import tqdm.auto
from threadpoolctl import threadpool_limits

from . import layout
from ._io import atomic_path
from .config import expressions
from .errors import FermapError


@dataclass(frozen=True)
class Job:
    """One unit of work of a run: ``train`` a (network, fold); ``explain`` some of its classes by
    some methods; or ``pipeline``, both in one job (the trained model is explained without reloading it).

    ``kind``, ``network``, ``fold``, ``classes`` and ``methods`` name the job (its log and record
    files); :func:`execute` calls ``func(run_dir, *args, prof=prof, **kwargs)``. ``func`` must be a
    module-level function, which Dask sends to a worker by reference. When ``func`` returns a dict
    with ``cached: True`` the job is recorded as cached (the key is removed from its result).
    ``models_made``, when given, counts the models the process has built or loaded
    (:func:`fermap_utils.rundata.models_made`): a job that changed it has its Keras state freed.
    """

    kind: str
    network: str
    fold: int
    classes: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    func: Callable[..., Any] = field(kw_only=True)
    args: tuple = field(default=(), kw_only=True)
    kwargs: dict = field(default_factory=dict, kw_only=True, hash=False)
    models_made: Callable[[], int] | None = field(default=None, kw_only=True)

    @property
    def name(self) -> str:
        """A file-name-safe identifier, e.g. ``train-WeiNet-fold1`` or ``lime-WeiNet-fold1-Anger``."""
        if self.kind == "train":
            return f"train-{self.network}-fold{self.fold}"
        classes = "all" if len(self.classes) == len(expressions()) else "-".join(self.classes)
        prefix = "+".join(self.methods) if self.kind == "explain" else "pipeline"
        return f"{prefix}-{self.network}-fold{self.fold}-{classes}"


def pin_threads(threads: int | None) -> int:
    """Limit this process's compute threads: TensorFlow's intra- and inter-op pools, OpenCV, BLAS.

    TensorFlow's pools can only be set before its runtime starts; a process where it already
    started keeps what it has. Returns TensorFlow's intra-op thread count in force (0: its
    default, every core).
    """
    import tensorflow as tf

    if threads:
        threadpool_limits(int(threads))
        cv2.setNumThreads(int(threads))
        for get, put in ((tf.config.threading.get_intra_op_parallelism_threads,
                          tf.config.threading.set_intra_op_parallelism_threads),
                         (tf.config.threading.get_inter_op_parallelism_threads,
                          tf.config.threading.set_inter_op_parallelism_threads)):
            if get() != int(threads):
                with contextlib.suppress(RuntimeError):  # the runtime already started
                    put(int(threads))
    return tf.config.threading.get_intra_op_parallelism_threads()


def onednn_on() -> bool:
    """Whether TensorFlow in this process (and every process it starts) uses its oneDNN kernels:
    ``TF_ENABLE_ONEDNN_OPTS`` unless set to 0 or false (TensorFlow's own default on x86-64 Linux: on)."""
    return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").strip().lower() not in ("0", "false")


def explainers_run_eagerly(prof: dict) -> bool:
    """Whether a job runs the explainers' ``tf.function`` s (Grad-CAM, Extremal Perturbation) eagerly.

    A profile with ``run_eagerly`` (a few images per network) asks for it: tracing a deep network's
    gradient graph costs more than the work (measured at load 10: InceptionV3's Grad-CAM and Extremal
    on one image, 28 s traced, 12 s eager). Never under oneDNN, whose eager convolution backward
    pass crashes the process (FER2013's Grad-CAM, a double free in a Dask worker; reproduced with
    ``TF_ENABLE_ONEDNN_OPTS=1`` on the ``paper_small`` profile): there they are traced.
    """
    return bool(prof.get("run_eagerly")) and not onednn_on()


def _record(path: Path, entry: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(entry, indent=1))


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def execute(job: Job, run_dir: str, prof: dict, threads: int | None = None) -> dict:
    """Run one job, logging its output to ``RUN/jobs/<job>.log`` and its timing to ``RUN/jobs/<job>.json``.

    Returns ``{"job", "status" (done or cached), "seconds", "worker", "threads", "result"}``;
    ``result`` is what the job function returned.
    """
    run_dir = Path(run_dir)
    jobs_dir = layout.jobs_dir(run_dir)
    jobs_dir.mkdir(parents=True, exist_ok=True)
    record_path, log_path = layout.job_files(run_dir, job.name)
    previous = json.loads(record_path.read_text()) if record_path.is_file() else {}
    entry = {"job": job.name, "kind": job.kind, "network": job.network, "fold": job.fold,
             "classes": list(job.classes), "methods": list(job.methods),
             "status": "running", "starts": int(previous.get("starts", 0)) + 1, "started": _now(),
             "worker": f"{socket.gethostname()}:{os.getpid()}", "pid": os.getpid()}
    entry["threads"] = pin_threads(threads)
    _record(record_path, entry)
    started, cpu = time.perf_counter(), time.process_time()
    import tensorflow as tf

    made, eager = (job.models_made() if job.models_made else 0), tf.config.functions_run_eagerly()
    with open(log_path, "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        print(f"--- {job.name}: start {entry['starts']} at {entry['started']} on {entry['worker']}, "
              f"{entry['threads'] or 'default'} threads", flush=True)
        try:
            if explainers_run_eagerly(prof):
                tf.config.run_functions_eagerly(True)
            result = job.func(run_dir, *job.args, prof=prof, **job.kwargs)
            cached = bool(result.pop("cached", False)) if isinstance(result, dict) else False
        except Exception as exc:
            print(f"--- {job.name}: failed: {type(exc).__name__}: {exc}", flush=True)
            _record(record_path, {**entry, "status": "failed", "error": f"{type(exc).__name__}: {exc}",
                                  "seconds": round(time.perf_counter() - started, 2), "finished": _now()})
            raise
        finally:
            tf.config.run_functions_eagerly(eager)
            # a worker runs many jobs: free the graphs and memory of each model a job made
            if job.models_made and job.models_made() != made:
                import keras

                keras.backend.clear_session(free_memory=False)
                gc.collect()
        seconds = round(time.perf_counter() - started, 2)
        print(f"--- {job.name}: {'cached' if cached else 'done'} in {seconds} s", flush=True)
    # CPU seconds of the process (every thread): the job's cost on a machine it had to itself
    entry.update(status="cached" if cached else "done", seconds=seconds, finished=_now(),
                 cpu_seconds=round(time.process_time() - cpu, 2))
    _record(record_path, entry)
    return {"job": job.name, "status": entry["status"], "seconds": seconds, "worker": entry["worker"],
            "threads": entry["threads"], "result": result}


def job_table(run_dir: str | os.PathLike) -> pd.DataFrame:
    """Every job a run recorded (``RUN/jobs/*.json``): status, starts, seconds, CPU seconds, worker, threads."""
    rows = [json.loads(layout.job_files(run_dir, p.stem)[0].read_text())
            for p in sorted(layout.jobs_dir(run_dir).glob("*.json"))]
    return pd.DataFrame(rows)


class Executor:
    """Where a run's jobs execute: in this process (``workers=0``, the default), on a Dask
    ``LocalCluster`` of ``workers`` processes on this machine, or on an existing Dask cluster
    (``scheduler``: its address, e.g. ``tcp://10.0.0.5:8786``).

    Parameters
    ----------
    workers : int
        Worker processes of a local cluster (0: no Dask).
    scheduler : str, optional
        Address of a running Dask scheduler (SLURM/PBS through dask-jobqueue, Kubernetes through
        the Dask operator). Its workers need fermap installed and the run folder at the same path.
    threads : int, optional
        Compute threads of each job; by default the profile's ``threads``, else on a local
        cluster this machine's cores divided among the workers, else the process's default.
    timeout : float
        Seconds to wait for a cluster to start or answer.

    Use it as a context manager to keep one cluster across several stages.
    """

    def __init__(self, workers: int = 0, scheduler: str | None = None, threads: int | None = None,
                 timeout: float = 120.0):
        if workers < 0:
            raise FermapError(f"--workers must be 0 or more, not {workers}")
        if workers and scheduler:
            raise FermapError("give --workers (a cluster on this machine) or --scheduler (an existing one), not both")
        self.workers, self.scheduler, self.threads, self.timeout = int(workers), scheduler, threads, timeout
        self.client = self.cluster = None

    @property
    def distributed(self) -> bool:
        return bool(self.workers or self.scheduler)

    def threads_per_job(self, prof: dict) -> int | None:
        if self.threads or prof.get("threads"):
            return int(self.threads or prof["threads"])
        if self.workers:
            return max(1, (os.cpu_count() or 1) // self.workers)
        return None

    def __enter__(self) -> Executor:
        if not self.distributed or self.client is not None:
            return self
        from distributed import Client, LocalCluster

        try:
            if self.scheduler:
                self.client = Client(self.scheduler, timeout=self.timeout)
            else:
                threads = self.threads or max(1, (os.cpu_count() or 1) // self.workers)
                pinned = {k: str(threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                                    "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")}
                # memory_limit=0: the nanny must not kill a worker for holding a large network.
                # The scheduler's HTTP server (metrics) on a free port: with its default, 8787, a
                # second cluster on the machine (another user's, another run) warns and moves
                self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                            memory_limit=0, dashboard_address=None, silence_logs=logging.ERROR,
                                            scheduler_kwargs={"dashboard_address": ":0"},
                                            env={**pinned, "TF_CPP_MIN_LOG_LEVEL": "2",
                                                 "TF_ENABLE_ONEDNN_OPTS": "1" if onednn_on() else "0"})
                self.client = Client(self.cluster, timeout=self.timeout)
        except (OSError, TimeoutError) as exc:
            self.__exit__()
            where = self.scheduler or f"a local cluster of {self.workers} workers"
            raise FermapError(f"could not reach {where}: {exc}") from None
        return self

    def __exit__(self, *exc) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        self.client = self.cluster = None

    def run(self, jobs: list[Job], run_dir: str | os.PathLike, prof: dict, progress: bool = True,
            desc: str = "jobs") -> list:
        """Execute jobs and return their results in the jobs' order; a line per finished job."""
        run_dir = str(Path(run_dir).resolve())
        threads = self.threads_per_job(prof)
        results = {}
        with tqdm.auto.tqdm(total=len(jobs), desc=desc, unit="job", disable=not progress) as bar:
            def finished(i: int, out: dict) -> None:
                results[i] = out["result"]
                bar.update(1)
                bar.set_postfix_str(jobs[i].name)
                if progress and out["status"] != "cached":
                    bar.write(f"{out['job']}: {out['status']} in {out['seconds']:.1f} s on {out['worker']}")

            if not self.distributed:
                for i, job in enumerate(jobs):
                    finished(i, execute(job, run_dir, prof, threads))
            else:
                opened = self.client is None  # inside `with executor:` the cluster outlives this call
                self.__enter__()
                try:
                    self._run_dask(jobs, run_dir, prof, threads, finished)
                finally:
                    if opened:
                        self.__exit__()
        return [results[i] for i in range(len(jobs))]

    def _run_dask(self, jobs, run_dir, prof, threads, finished) -> None:
        from distributed import as_completed
        from distributed.scheduler import KilledWorker

        token = uuid.uuid4().hex[:8]
        futures = {self.client.submit(execute, job, run_dir, prof, threads, key=f"{job.name}-{token}",
                                      pure=False): i for i, job in enumerate(jobs)}
        try:
            for future in as_completed(futures):
                i = futures[future]
                try:
                    finished(i, future.result())
                except KilledWorker:
                    raise FermapError(f"{jobs[i].name}: its worker died repeatedly (out of memory?); "
                                      f"see {layout.jobs_dir(run_dir) / (jobs[i].name + '.log')}") from None
        finally:
            self.client.cancel(list(futures))

