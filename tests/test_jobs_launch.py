"""The benchmark and the demo are one process each: started by torchrun (or srun with several
tasks) their copies would race on the same folders, so they stop in one line, writing nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import one_line_error


def benchmark_argv(data, out) -> list[str]:
    return ["benchmark", "--data", str(data), "--out", str(out), "--backbone", "tiny", "--quiet"]


@pytest.mark.parametrize("job", ["benchmark", "demo"])
def test_jobs_under_torchrun_are_refused_before_writing(job, easy_h5, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    argv = benchmark_argv(easy_h5, out) if job == "benchmark" else ["demo", "--out", str(out), "--quiet"]
    err = one_line_error(capsys, argv)
    assert f"{job}: started by torchrun with 2 processes" in err and "without torchrun" in err
    assert not out.exists()


def test_benchmark_in_srun_tasks_is_refused_before_writing(easy_h5, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("SLURM_PROCID", "0")
    err = one_line_error(capsys, benchmark_argv(easy_h5, tmp_path / "out"))
    assert "benchmark: started by srun with 4 tasks" in err
    assert not (tmp_path / "out").exists()


def test_one_process_in_a_slurm_allocation_is_not_refused(monkeypatch):
    """sbatch --ntasks=4 sets SLURM_NTASKS in the batch script too, where one process runs."""
    from galaxalign.jobs.config import refuse_several_processes

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("SLURM_PROCID", raising=False)
    monkeypatch.setenv("SLURM_NTASKS", "4")
    refuse_several_processes("benchmark")  # no error: SLURM_PROCID is set by srun's tasks only


def test_benchmark_started_by_torchrun_two_gloo_ranks_stops_in_one_line(easy_h5, tmp_path):
    out = tmp_path / "bench"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
    done = subprocess.run(
        [*torchrun, "galaxalign", "--", *benchmark_argv(easy_h5, out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.startswith("galaxalign: error:")]
    # torchrun's agent stops the other rank once one has failed, so it may not get to say so too.
    assert 1 <= len(lines) <= 2 and all("benchmark: started by torchrun with 2 processes" in x for x in lines)
    assert "galaxalign/jobs" not in done.stderr  # no traceback of ours (torchrun's agent prints its own)
    assert not out.exists()
