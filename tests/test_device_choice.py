"""Which device each process takes under torchrun and SLURM: one rule, a pure function of
(--device, LOCAL_RANK, processes on the node, visible GPUs), checked without a GPU."""

from __future__ import annotations

import pytest
import torch

from galaxalign.devices import choose_device, local_processes, process_group_backend
from galaxalign.errors import GalaxAlignError


def test_one_visible_gpu_per_task_is_cuda0_on_every_rank():
    """SLURM --gpus-per-task=1 (or CUDA_VISIBLE_DEVICES set per rank): each rank sees one GPU."""
    assert [choose_device("cuda", rank, 4, visible=1) for rank in range(4)] == ["cuda:0"] * 4
    assert [choose_device("auto", rank, 4, visible=1) for rank in range(4)] == ["cuda:0"] * 4
    # cuda:0 is then each rank's own GPU, not a contradiction
    assert [choose_device("cuda:0", rank, 4, visible=1) for rank in range(4)] == ["cuda:0"] * 4


def test_several_visible_gpus_are_indexed_by_local_rank():
    assert [choose_device("cuda", rank, 4, visible=4) for rank in range(4)] == [f"cuda:{r}" for r in range(4)]
    assert [choose_device("auto", rank, 2, visible=8) for rank in range(2)] == ["cuda:0", "cuda:1"]


def test_more_ranks_than_visible_gpus_is_one_line():
    with pytest.raises(GalaxAlignError, match="LOCAL_RANK 2 but this process sees 2 GPUs") as caught:
        choose_device("cuda", 2, 4, visible=2)
    assert "\n" not in str(caught.value)


def test_cuda_n_under_a_multi_rank_launch_is_refused_in_one_line():
    for rank in range(2):
        with pytest.raises(GalaxAlignError, match=r"--device cuda:1: 2 processes on this node would all use GPU 1"):
            choose_device("cuda:1", rank, 2, visible=4)
    # one process per node (several nodes), or no torchrun: cuda:N is that process's choice
    assert choose_device("cuda:1", 0, 1, visible=4) == "cuda:1"
    assert choose_device("cuda:3", None, 1, visible=4) == "cuda:3"
    with pytest.raises(GalaxAlignError, match="this machine has 4 CUDA device"):
        choose_device("cuda:4", None, 1, visible=4)


def test_without_torchrun_cuda_is_the_first_gpu_and_cpu_is_cpu():
    assert choose_device("cuda", None, 1, visible=4) == "cuda:0"
    assert choose_device("auto", None, 1, visible=0) == "cpu"
    assert [choose_device("cpu", rank, 2, visible=8) for rank in range(2)] == ["cpu", "cpu"]
    with pytest.raises(GalaxAlignError, match="CUDA is not available"):
        choose_device("cuda", 1, 2, visible=0)


def test_cpu_under_torchrun_runs_gloo_and_cuda_nccl():
    assert process_group_backend(torch.device("cpu")) == "gloo"
    assert process_group_backend(torch.device("cuda", 1)) == "nccl"


def test_the_launch_environment_is_read_as_torchrun_writes_it(monkeypatch):
    for name in ("LOCAL_RANK", "LOCAL_WORLD_SIZE", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert local_processes() == (None, 1)
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "8")
    assert local_processes() == (1, 8)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # 8 ranks over 4 nodes: this node runs 2
    assert local_processes() == (1, 2)
