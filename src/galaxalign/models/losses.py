"""Contrastive losses for aligning images, symbols and text.

`contrastive_loss` is the symmetric CLIP InfoNCE with optional label-aware targets: with
`labels` given, every pair of the same class counts as a positive and the target row is spread
evenly over them (multi-positive InfoNCE, as in SupCon/UniCL); without, the targets are the
identity (plain CLIP). Under DDP, `gather_features` all-gathers with gradients so that every
rank sees the global batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def gather_features(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from every rank along dim 0, keeping gradients (identity without DDP)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    if not x.requires_grad:  # labels and other constants: no autograd needed
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        return torch.cat(parts, dim=0)
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


def contrastive_targets(labels: torch.Tensor | None, n: int, device) -> torch.Tensor:
    """Row-normalised target matrix: identity, or same-label positives."""
    if labels is None:
        return torch.eye(n, device=device)
    same = (labels[:, None] == labels[None, :]).float()
    return same / same.sum(dim=1, keepdim=True)


def contrastive_loss(
    a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """Symmetric InfoNCE between L2-normalised `a` and `b` (N, D), one-hot or multi-positive."""
    logits = logit_scale.exp() * a @ b.t()
    targets = contrastive_targets(labels, a.shape[0], a.device)
    loss_ab = -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    loss_ba = -(targets.t() * F.log_softmax(logits.t(), dim=1)).sum(dim=1).mean()
    return (loss_ab + loss_ba) / 2


def distinct_text_loss(
    a: torch.Tensor,
    text: torch.Tensor,
    rows: torch.Tensor,
    logit_scale: torch.Tensor,
    once: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE of `a` (N, D) against the distinct texts of a batch: `text` (N, D) holds
    each sample's text embedding and `rows` (N,) which text it is. Samples that share a text share
    its one column, so they are positives of each other, not negatives; each text's targets are
    spread over the samples that have it. With distinct rows this is `contrastive_loss`.
    `once`, (distinct rows, inverse) found on the host, spares the device's torch.unique (a sync)."""
    unique, inverse = once if once is not None else torch.unique(rows, return_inverse=True)
    n = rows.shape[0]
    first = torch.zeros(len(unique), dtype=torch.long, device=rows.device).scatter_(
        0, inverse, torch.arange(n, device=rows.device)
    )
    logits = logit_scale.exp() * a @ text[first].t()  # (N, U)
    loss_a = F.cross_entropy(logits, inverse)
    members = (inverse[None, :] == torch.arange(len(unique), device=rows.device)[:, None]).float()
    targets = members / members.sum(dim=1, keepdim=True)
    loss_text = -(targets * F.log_softmax(logits.t(), dim=1)).sum(dim=1).mean()
    return (loss_a + loss_text) / 2
