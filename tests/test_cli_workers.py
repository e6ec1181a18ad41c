"""``fermap train --workers N``: the CLI's path onto a Dask LocalCluster (issue 13), end to end.

The executor itself is tested in ``test_scale.py``; this checks the command a user types:
its jobs run on the cluster's workers (not in this process), each pinned to one thread, and
each leaves its log and timing record in the run folder beside the trained model."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from fermap_utils import layout
from fermap_utils.cli import main
from fermap_utils.executor import job_table


@pytest.mark.slow
def test_train_with_workers_runs_each_job_on_a_worker_and_keeps_its_log(default_dataset, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(default_dataset, layout.data_dir(run))
    networks = ["WeiNet", "SongNet"]
    code = main(["train", "--profile", "paper_small", "-p", "networks", json.dumps(networks), "-p", "folds", "1",
                 "--run", str(run), "--workers", "2"])
    assert code == 0
    jobs = job_table(run)
    assert sorted(jobs.network) == sorted(networks) and set(jobs.fold) == {1}
    assert set(jobs.status) == {"done"} and (jobs.threads == 1).all()  # pinned: 2 cores / 2 workers
    assert os.getpid() not in set(jobs.pid)  # ran in the cluster's worker processes, not here
    for name in jobs.job:
        log = (layout.jobs_dir(run) / f"{name}.log").read_text()
        assert f"--- {name}: start 1" in log and f"--- {name}: done in" in log
    for net in networks:
        metrics = json.loads(layout.metrics_file(run, net, 1).read_text())
        assert metrics["network"] == net and metrics["fold"] == 1 and layout.model_file(run, net, 1).is_file()
