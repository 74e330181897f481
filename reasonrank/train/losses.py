"""Group losses for pointwise distillation (DeAR stage 1), and the label-weighted SFT loss.

Scores come as ``(batch, group)`` tensors: one row per query, one column per document of its group.

KL direction. ``distillation_kl`` is KL(P_teacher ‖ P_student) = Σ_i p_t,i · (log p_t,i − log p_s,i), where
P = softmax(scores / T) over the group, scaled by T² (Hinton et al., 2015) so that changing T does not change the
gradient scale. This is the "forward" KL that Hinton-style distillation uses (what is often written as
"KL(student ‖ teacher)", the divergence of the student from the teacher): it is the teacher-weighted cross-entropy
of the student up to a constant, its gradient w.r.t. the student scores is (p_s − p_t)·T, and it is mass-covering,
so the student is pushed to score every document the teacher likes highly rather than to pick one mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MAIN_LOSSES = ("ce", "ranknet", "mix", "dear-ranknet", "dear-ranknet-teacher", "dear-mix")
# Main losses whose targets are the teacher's scores rather than the qrels labels.
TEACHER_LOSSES = ("dear-ranknet-teacher",)


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


def soft_ranknet(scores: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
    """DeAR's RankNet: BCE with logits s_i − s_j and soft targets sigmoid(y_i − y_j), averaged over every pair
    i < j of every row (ties included, with target ½).

    Unlike :func:`ranknet`, negatives are paired with each other too, and a pair's target is a probability, so
    with the teacher's scores as ``relevance`` the student learns the teacher's margins.
    """
    diff = scores.unsqueeze(2) - scores.unsqueeze(1)
    target = torch.sigmoid(relevance.unsqueeze(2) - relevance.unsqueeze(1)).detach()
    upper = torch.triu(torch.ones_like(target, dtype=torch.bool), diagonal=1)
    return F.binary_cross_entropy_with_logits(diff[upper], target[upper])


def distillation_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(P_teacher ‖ P_student) over each group, averaged over rows (see the module docstring)."""
    log_student = F.log_softmax(student / temperature, dim=1)
    log_teacher = F.log_softmax(teacher / temperature, dim=1)
    kl = F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


def main_loss(
    kind: str, scores: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor | None = None
) -> torch.Tensor:
    """The supervised part of the loss; ``dear-ranknet-teacher`` takes the teacher's scores as its targets."""
    if kind == "ce":
        return softmax_cross_entropy(scores, labels)
    if kind == "ranknet":
        return ranknet(scores, labels)
    if kind == "mix":
        return 0.5 * (softmax_cross_entropy(scores, labels) + ranknet(scores, labels))
    if kind == "dear-ranknet":
        return soft_ranknet(scores, labels)
    if kind == "dear-ranknet-teacher":
        if teacher is None:
            raise ValueError("dear-ranknet-teacher needs teacher scores")
        return soft_ranknet(scores, teacher)
    if kind == "dear-mix":
        return 0.5 * (soft_ranknet(scores, labels) + softmax_cross_entropy(scores, labels))
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
    main = main_loss(kind, scores, labels, teacher)
    if alpha == 0.0:
        return main
    if teacher is None:
        raise ValueError("alpha > 0 needs teacher scores")
    return (1.0 - alpha) * main + alpha * distillation_kl(scores, teacher, temperature)


def completion_token_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token NLL of a causal LM's next-token predictions, and which tokens are learned (labels not −100).

    ``logits`` ``(batch, length, vocab)`` predict position t+1 from position t; ``labels`` ``(batch, length)`` hold
    the token ids to learn and −100 elsewhere (the prompt, padding). Both outputs are ``(batch, length − 1)``; the
    NLL is 0 where nothing is learned.
    """
    targets = labels[:, 1:]
    nll = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), targets, ignore_index=-100, reduction="none")
    return nll, targets != -100


def label_weighted_nll(
    logits: torch.Tensor, labels: torch.Tensor, label_ids: torch.Tensor, weight: float, label_first: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Completion NLL where each row's label token counts ``weight`` times; also the label tokens' mean NLL.

    Inputs as :func:`completion_token_nll`. A row's label token is its last learned token
    whose id is in ``label_ids`` (``2`` in ``…Relevance Label: 2 ##``: the stop after it is no label, and a digit in
    the explanation comes earlier), or its first with ``label_first`` (``Relevance Label: 2`` then the explanation).
    Loss = Σ_t w_t·NLL_t / Σ_t w_t with w_t = ``weight`` at the label token, 1 at other learned tokens. The
    explanation has tens of tokens and the verdict one, so with plain SFT the label is a small share of the gradient;
    a row without a label token keeps weights of 1.
    """
    nll, learned = completion_token_nll(logits, labels)
    targets = labels[:, 1:]
    positions = torch.arange(targets.shape[1], device=targets.device).expand_as(targets)
    is_candidate = learned & torch.isin(targets, label_ids)
    if label_first:
        chosen = torch.where(is_candidate, positions, targets.shape[1]).min(dim=1, keepdim=True).values
    else:
        chosen = torch.where(is_candidate, positions, -1).max(dim=1, keepdim=True).values
    is_label = (positions == chosen) & is_candidate
    weights = learned.float() + (weight - 1.0) * is_label.float()
    loss = (nll * weights).sum() / weights.sum().clamp_min(1.0)
    label_nll = nll[is_label].mean() if is_label.any() else nll.new_zeros(())
    return loss, label_nll
