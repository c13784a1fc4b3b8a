import math

import torch

from galaxalign.models.losses import contrastive_loss, contrastive_targets


def _hand_loss(logits, targets):
    """Cross-entropy with soft targets, written out element by element."""
    total = 0.0
    for i in range(logits.shape[0]):
        row = logits[i]
        log_z = math.log(sum(math.exp(v) for v in row.tolist()))
        total += -sum(t * (v - log_z) for t, v in zip(targets[i].tolist(), row.tolist()))
    return total / logits.shape[0]


def test_one_hot_matches_hand_computation():
    a = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]), dim=1)
    b = torch.nn.functional.normalize(torch.tensor([[0.8, 0.6], [0.0, 1.0], [-1.0, 0.2]]), dim=1)
    scale = torch.tensor(math.log(10.0))
    logits = 10.0 * a @ b.t()
    eye = torch.eye(3)
    expected = (_hand_loss(logits, eye) + _hand_loss(logits.t(), eye)) / 2
    assert abs(contrastive_loss(a, b, scale).item() - expected) < 1e-5


def test_multi_positive_spreads_targets_over_same_class():
    labels = torch.tensor([0, 1, 0, 2])
    t = contrastive_targets(labels, 4, "cpu")
    assert torch.allclose(t[0], torch.tensor([0.5, 0.0, 0.5, 0.0]))
    assert torch.allclose(t[3], torch.tensor([0.0, 0.0, 0.0, 1.0]))
    torch.manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(4, 5), dim=1)
    b = torch.nn.functional.normalize(torch.randn(4, 5), dim=1)
    logits = a @ b.t()
    expected = (_hand_loss(logits, t) + _hand_loss(logits.t(), t.t())) / 2
    assert abs(contrastive_loss(a, b, torch.tensor(0.0), labels).item() - expected) < 1e-5


def test_multi_positive_does_not_punish_same_class_matches():
    # Two samples of one class whose embeddings are swapped: one-hot targets call that wrong,
    # label-aware targets do not.
    a = torch.eye(3)[[0, 1, 2]]
    b = torch.eye(3)[[1, 0, 2]]
    labels = torch.tensor([0, 0, 1])
    scale = torch.tensor(math.log(20.0))
    assert contrastive_loss(a, b, scale, labels) < contrastive_loss(a, b, scale)


def test_loss_falls_when_pairs_align():
    torch.manual_seed(1)
    a = torch.nn.functional.normalize(torch.randn(8, 16), dim=1)
    noise = torch.nn.functional.normalize(torch.randn(8, 16), dim=1)
    scale = torch.tensor(math.log(10.0))
    assert contrastive_loss(a, a, scale) < contrastive_loss(a, noise, scale)
