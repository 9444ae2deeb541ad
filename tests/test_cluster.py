"""The cluster path: Hydra's submitit launcher runs the jobs in other processes, and the report still comes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from conftest import TINY, run_cli

pytest.importorskip("hydra_plugins.hydra_submitit_launcher")


@pytest.mark.slow
def test_a_submitit_sweep_ends_in_the_same_report(tmp_path: Path) -> None:
    # submitit_local is submitit_slurm's code path without SLURM: each job is pickled, run in a new
    # process, and its result collected; the report reads only the job folders.
    tiny = [t for t in TINY if not t.startswith("batch_size=")]
    proc = run_cli(tmp_path, "-m", "hydra/launcher=submitit_local", *tiny, "batch_size=16,32")
    assert proc.returncode == 0, proc.stderr
    sweep = next((tmp_path / "outputs" / "sweeps").iterdir())
    summary = pd.read_csv(sweep / "summary.csv")
    assert list(summary["batch_size"]) == [16, 32] and (summary["status"] == "ok").all()
    assert (sweep / "report.md").exists()
