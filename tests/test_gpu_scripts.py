"""The GPU reproduction script runs end to end before a GPU is ever lent (`--smoke`)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_reproduce_smoke_prints_one_json_with_every_run(tmp_path):
    result = subprocess.run(
        ["bash", "benchmarks/gpu_reproduce.sh", "--smoke", "--epochs", "1",
         "--out", str(tmp_path / "logs")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        # the script calls `python3`: make it this interpreter
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    runs = {r["experiment"]: r for r in summary["runs"]}
    assert set(runs) == {"exp3", "exp3_center", "exp3_softmax"}
    for run in runs.values():
        assert 0 <= run["val_balanced_acc"] <= 1 and 0 <= run["val_acc"] <= 1
        assert run["epochs_done"] == 1 and run["fit_images_per_s"] > 0
        assert Path(run["best_checkpoint"]).is_file()
    assert "sized down" in summary["recipe"] and summary["smoke"] is True
