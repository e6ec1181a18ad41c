"""Every benchmark runs (issue 24): each script in ``benchmarks/`` at its tiny ``--quick`` size, in a
subprocess, ends on its documented ``name=value`` line with finite values, so none can break unseen."""
from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "benchmarks").glob("*.py"))
#: The names each benchmark's last line gives a value to, as its docstring documents them.
LAST_LINE = {
    "lime": ["speedup_vs_lime", "overhead_vs_inference"],
    "models": ["slowest_training_images_per_s"],
    "realism": ["fer2013_accuracy", "edge_ratio"],
    "realism_probe": ["fer2013_accuracy"],
    "refactor_equality": ["equal_files"],
    "scale": ["speedup_2_workers"],
    "screen_bases": ["faces", "kept"],
    "train_probe": ["min_accuracy"],
    "warp": ["speedup_vs_skimage"],
}


def _value(text: str) -> float:
    """A number, or a share ``N/M`` (refactor_equality's ``equal_files``) as N / M."""
    if re.fullmatch(r"\d+/\d+", text):
        done, total = map(int, text.split("/"))
        assert total > 0 and done <= total, text
        return done / total
    return float(text)


def last_line_values(output: str) -> dict[str, float]:
    """The ``name=value`` pairs of an output's last line (a parenthesised remark may follow them)."""
    line = output.strip().splitlines()[-1]
    match = re.fullmatch(r"((?:\w+=\S+)(?:\s+\w+=\S+)*)(?:\s+\(.*\))?", line)
    assert match, f"the last line is not name=value: {line!r}"
    return {name: _value(value) for name, value in (pair.split("=", 1) for pair in match.group(1).split())}


def test_the_last_line_reader():
    assert last_line_values("x\nspeedup_vs_lime=2.60 overhead_vs_inference=-0.196\n") == \
        {"speedup_vs_lime": 2.6, "overhead_vs_inference": -0.196}
    assert last_line_values("equal_files=7/8 (3 differ in provenance alone)") == {"equal_files": 7 / 8}
    for bad in ("speedup 2.6", "done", "a=1 then b=2"):
        with pytest.raises(AssertionError):
            last_line_values(bad)


def test_every_benchmark_is_listed_and_has_a_quick_flag():
    assert sorted(p.stem for p in SCRIPTS) == sorted(LAST_LINE)
    for path in SCRIPTS:
        source = path.read_text()
        assert '"--quick"' in source and "``--quick``" in source, f"{path.name}: no documented --quick flag"
        assert all(name in source for name in LAST_LINE[path.stem]), path.name


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_benchmark_runs_quick_and_ends_on_its_result(script):
    """``python benchmarks/X.py --quick`` exits 0 and its last line names its documented results, finite.
    The subprocess uses this checkout's package and the session's private cache (conftest)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, str(script), "--quick"], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    values = last_line_values(done.stdout)
    assert list(values) == LAST_LINE[script.stem]
    assert all(math.isfinite(v) for v in values.values()), values
