"""Under DDP the logged loss is the global batch's: the mean of the ranks' local losses.

The contrastive losses gather every rank's features, so each rank computes the global loss
already (tests/test_training.py compares 2 processes with 1 for `galaxalign`); a head's
cross-entropy is computed on each rank's own slice, and rank 0's value alone was up to a few
per cent off. With equal slices the mean over ranks is the one-process loss of the same batch.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import train_alone_and_on_two_ranks


def logged(run_dir, key: str = "loss") -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r[key] for r in map(json.loads, lines) if key in r]


@pytest.mark.slow
def test_ddp_logged_loss_is_the_mean_over_ranks(easy_h5, tmp_path):
    common = [
        *("--data", str(easy_h5), "--backbone", "tiny", "--image-size", "32", "--epochs", "2"),
        *("--batch-size", "12", "--method", "supervised", "--lr", "2e-3", "--head-lr", "5e-3"),
        *("--trainable-blocks", "-1", "--embed-dim", "32", "--warmup-fraction", "0"),
        *("--val-fraction", "0.2", "--test-fraction", "0.2", "--threads", "1", "--device", "cpu", "--quiet"),
    ]
    one_dir, two_dir = train_alone_and_on_two_ranks(tmp_path, common)
    one, two = logged(one_dir), logged(two_dir)
    assert len(one) == len(two) > 4
    # The same global batches and the same weights: the mean of the two slices' losses is the
    # one-process loss (rank 0's slice alone differs from it by far more than float noise).
    np.testing.assert_allclose(two, one, rtol=1e-5)
    np.testing.assert_allclose(logged(two_dir, "ce"), logged(one_dir, "ce"), rtol=1e-5)
