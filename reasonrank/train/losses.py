"""Group losses for pointwise distillation (DeAR stage 1).

Scores come as ``(batch, group)`` tensors: one row per query, one column per document of its group.

KL direction. ``distillation_kl`` is KL(P_teacher ‖ P_student) = Σ_i p_t,i · (log p_t,i − log p_s,i), where
P = softmax(scores / T) over the group, scaled by T² (Hinton et al., 2015) so that changing T does not change the
gradient scale. This is the "forward" KL that Hinton-style distillation uses (what the task brief writes as
"KL(student ‖ teacher)", the divergence of the student from the teacher): it is the teacher-weighted cross-entropy
of the student up to a constant, its gradient w.r.t. the student scores is (p_s − p_t)·T, and it is mass-covering,
so the student is pushed to score every document the teacher likes highly rather than to pick one mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MAIN_LOSSES = ("ce", "ranknet", "mix")


def softmax_cross_entropy(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Listwise CE: −Σ_i y_i log softmax(s)_i with y the labels normalised to sum 1 per row, averaged over rows.

    With one positive per group this is the usual InfoNCE/"localized contrastive" loss.
    """
    target = labels.float() / labels.float().sum(dim=1, keepdim=True).clamp_min(1e-12)
    return -(target * F.log_softmax(scores, dim=1)).sum(dim=1).mean()


def ranknet(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """RankNet: mean over all pairs (i, j) of a row with y_i > y_j of log(1 + exp(−(s_i − s_j)))."""
    diff = scores.unsqueeze(2) - scores.unsqueeze(1)  # [b, i, j] = s_i - s_j
    better = (labels.unsqueeze(2) > labels.unsqueeze(1)).float()
    pairs = better.sum().clamp_min(1.0)
    return (F.softplus(-diff) * better).sum() / pairs


def distillation_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(P_teacher ‖ P_student) over each group, averaged over rows (see the module docstring)."""
    log_student = F.log_softmax(student / temperature, dim=1)
    log_teacher = F.log_softmax(teacher / temperature, dim=1)
    kl = F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


def main_loss(kind: str, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if kind == "ce":
        return softmax_cross_entropy(scores, labels)
    if kind == "ranknet":
        return ranknet(scores, labels)
    if kind == "mix":
        return 0.5 * (softmax_cross_entropy(scores, labels) + ranknet(scores, labels))
    raise ValueError(f"unknown main loss {kind!r}; use one of {', '.join(MAIN_LOSSES)}")


def distillation_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    teacher: torch.Tensor | None,
    *,
    kind: str = "ce",
    alpha: float = 0.5,
    temperature: float = 1.0,
) -> torch.Tensor:
    """(1 − α)·main + α·KL; with no teacher scores (α must then be 0) only the main loss."""
    main = main_loss(kind, scores, labels)
    if alpha == 0.0:
        return main
    if teacher is None:
        raise ValueError("alpha > 0 needs teacher scores")
    return (1.0 - alpha) * main + alpha * distillation_kl(scores, teacher, temperature)
