"""Each distillation loss against a value worked out by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import pytest
import torch

from reasonrank.train.losses import (
    distillation_kl,
    distillation_loss,
    label_weighted_nll,
    main_loss,
    ranknet,
    soft_ranknet,
    softmax_cross_entropy,
)

ONE_POSITIVE = torch.tensor([[1.0, 0.0, 0.0]])


def test_softmax_cross_entropy_one_positive():
    # scores (2, 0, 0), positive first: -log(e^2 / (e^2 + 1 + 1)) = log(1 + 2/e^2)
    # = log(1.2706706) = 0.2395448
    loss = softmax_cross_entropy(torch.tensor([[2.0, 0.0, 0.0]]), ONE_POSITIVE)
    assert loss.item() == pytest.approx(0.2395448, abs=1e-6)


def test_softmax_cross_entropy_averages_rows_and_spreads_graded_labels():
    # row 1: uniform scores over 2 docs, both labelled 1 -> target (.5, .5):
    # -(.5 log .5 + .5 log .5) = log 2 = 0.6931472
    # row 2: scores (0, 0), positive first -> -log(1/2) = 0.6931472; mean 0.6931472
    scores = torch.zeros(2, 2)
    labels = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    assert softmax_cross_entropy(scores, labels).item() == pytest.approx(0.6931472, abs=1e-6)


def test_ranknet_pairs_of_the_positive():
    # scores (1, 0, 2), positive first: pairs (pos, neg1): log(1 + e^-1) = 0.3132617,
    # (pos, neg2): log(1 + e^1) = 1.3132617
    # mean over the 2 pairs = 0.8132617
    assert ranknet(torch.tensor([[1.0, 0.0, 2.0]]), ONE_POSITIVE).item() == pytest.approx(0.8132617, abs=1e-6)


def test_ranknet_ignores_ties():
    # labels (2, 1, 1): pairs (0,1), (0,2) only; scores all 0 -> log 2 each = 0.6931472
    labels = torch.tensor([[2.0, 1.0, 1.0]])
    assert ranknet(torch.zeros(1, 3), labels).item() == pytest.approx(math.log(2), abs=1e-6)


# DeAR's RankNet (DataScienceUIBK/DeAR-Reranking c31c739, pointwise_reranker/rank_loss.py, RankLoss.rank_net):
# BCE with logits d = s_i - s_j, target p = sigmoid(y_i - y_j), mean over pairs i < j. Per pair
# BCE(d, p) = p·softplus(-d) + (1 - p)·softplus(d); softplus(1) = 1.3132617, softplus(-1) = 0.3132617,
# softplus(2) = 2.1269280, softplus(-2) = 0.1269280; sigmoid(1) = 0.7310586, sigmoid(2) = 0.8807971.
SCORES = torch.tensor([[2.0, 0.0, 1.0]])


def test_soft_ranknet_pairs_every_document_with_soft_targets():
    # labels (1, 0, 0), DeAR's ranknet_binary: pairs (0,1) d=2 p=σ(1): .7310586·.1269280 + .2689414·2.1269280
    # = .6648109; (0,2) d=1 p=σ(1): .7310586·.3132617 + .2689414·1.3132617 = .5822031; (1,2), a tie of two
    # negatives, d=-1 p=.5: .5·(1.3132617 + .3132617) = .8132617; mean .6867586
    assert soft_ranknet(SCORES, ONE_POSITIVE).item() == pytest.approx(0.6867586, abs=1e-6)
    assert main_loss("dear-ranknet", SCORES, ONE_POSITIVE).item() == pytest.approx(0.6867586, abs=1e-6)
    # the hard-target one pairs the positive only: (.1269280 + .3132617) / 2 = .2200949
    assert ranknet(SCORES, ONE_POSITIVE).item() == pytest.approx(0.2200949, abs=1e-6)


def test_dear_ranknet_teacher_takes_its_targets_from_the_teacher_scores():
    # teacher (3, 1, 1), DeAR's ranknet_teacher: (0,1) d=2 p=σ(2): .8807971·.1269280 + .1192029·2.1269280
    # = .3653339; (0,2) d=1 p=σ(2): .8807971·.3132617 + .1192029·1.3132617 = .4324646; (1,2) p=σ(0)=.5, d=-1:
    # .8132617; mean .5370201. The labels play no part.
    teacher = torch.tensor([[3.0, 1.0, 1.0]])
    for labels in (ONE_POSITIVE, torch.tensor([[0.0, 0.0, 1.0]])):
        loss = main_loss("dear-ranknet-teacher", SCORES, labels, teacher)
        assert loss.item() == pytest.approx(0.5370201, abs=1e-6)
    with pytest.raises(ValueError, match="teacher scores"):
        main_loss("dear-ranknet-teacher", SCORES, ONE_POSITIVE)


def test_dear_mix_is_half_soft_ranknet_half_cross_entropy():
    # DeAR's ranknet_binary_softmax_ce, β = .5: CE = -log(e^2 / (e^2 + 1 + e)) = .4076060; (.6867586 + .4076060)/2
    assert main_loss("dear-mix", SCORES, ONE_POSITIVE).item() == pytest.approx(0.5471823, abs=1e-6)


def test_kl_teacher_to_student_at_temperature_one():
    # teacher (ln 3, 0) -> p_t = (.75, .25); student (0, 0) -> p_s = (.5, .5)
    # KL(p_t || p_s) = .75 ln 1.5 + .25 ln .5 = 0.3040988 - 0.1732868 = 0.1308120
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[math.log(3.0), 0.0]])
    assert distillation_kl(student, teacher, 1.0).item() == pytest.approx(0.1308120, abs=1e-6)


def test_kl_direction_is_teacher_first():
    # The reverse KL(p_s || p_t) = .5 ln(.5/.75) + .5 ln(.5/.25) = -0.2027326 + 0.3465736 = 0.1438410
    # must not be what we get.
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[math.log(3.0), 0.0]])
    assert distillation_kl(student, teacher, 1.0).item() != pytest.approx(0.1438410, abs=1e-4)


def test_kl_temperature_scales_by_t_squared():
    # teacher (2 ln 3, 0) at T=2 -> same p_t = (.75, .25); student 0 -> same p_s: T^2 * 0.1308120 = 0.5232481
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[2 * math.log(3.0), 0.0]])
    assert distillation_kl(student, teacher, 2.0).item() == pytest.approx(0.5232481, abs=1e-6)


def test_combined_loss_weights_main_and_kl():
    # scores (0, 0), positive first: CE = ln 2 = 0.6931472; teacher (ln 3, 0): KL = 0.1308120
    # alpha .25: .75 * 0.6931472 + .25 * 0.1308120 = 0.5198604 + 0.0327030 = 0.5525634
    scores = torch.zeros(1, 2)
    labels = torch.tensor([[1.0, 0.0]])
    teacher = torch.tensor([[math.log(3.0), 0.0]])
    loss = distillation_loss(scores, labels, teacher, kind="ce", alpha=0.25, temperature=1.0)
    assert loss.item() == pytest.approx(0.5525634, abs=1e-6)


def test_mix_is_the_mean_of_ce_and_ranknet():
    # scores (1, 0, 2): CE = -log(e / (e + 1 + e^2)) = log(1 + e^-1 + e) = log(4.0861613) = 1.4076059
    # RankNet = 0.8132617 (above); mix = (1.4076059 + 0.8132617) / 2 = 1.1104338
    scores = torch.tensor([[1.0, 0.0, 2.0]])
    assert main_loss("mix", scores, ONE_POSITIVE).item() == pytest.approx(1.1104338, abs=1e-6)


def test_alpha_without_teacher_is_an_error():
    with pytest.raises(ValueError, match="teacher"):
        distillation_loss(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), None, alpha=0.5)


def _two_completions() -> tuple[torch.Tensor, torch.Tensor]:
    """Vocabulary {0, 1, 2}, label token 2. Row 1 learns tokens (2, 0, 2, 1): the last 2 is the label, the first (a
    digit in the explanation) is not. Logits are 0 except ln 2 for token 2 at step 3, so the NLLs are log 3, log 3,
    log 2 (p = 2/(1+1+2)), log 3. Row 2 learns (0, 1) only, padding around, NLL log 3 each."""
    logits = torch.zeros(2, 5, 3)
    logits[0, 2, 2] = math.log(2.0)
    return logits, torch.tensor([[-100, 2, 0, 2, 1], [-100, -100, 0, 1, -100]])


def test_label_weighted_nll_counts_the_last_label_token_weight_times():
    # weight 3: loss = (log 3 + log 3 + 3·log 2 + log 3 + log 3 + log 3) / (1 + 1 + 3 + 1 + 1 + 1)
    # = (5 log 3 + 3 log 2) / 8 = (5.4930614 + 2.0794415) / 8 = 0.9465629; label NLL = log 2 = 0.6931472
    loss, label_nll = label_weighted_nll(*_two_completions(), torch.tensor([2]), weight=3.0)
    assert loss.item() == pytest.approx(0.9465629, abs=1e-6)
    assert label_nll.item() == pytest.approx(0.6931472, abs=1e-6)


def test_label_first_weights_the_first_label_token():
    # label_first: row 1's label is its first learned 2 (step 0, NLL log 3); the later 2 is explanation.
    # weight 3: (3·log 3 + log 3 + log 2 + log 3 + log 3 + log 3) / 8 = (7 log 3 + log 2) / 8
    # = (7.6902860 + 0.6931472) / 8 = 1.0479292; label NLL = log 3 = 1.0986123
    loss, label_nll = label_weighted_nll(*_two_completions(), torch.tensor([2]), weight=3.0, label_first=True)
    assert loss.item() == pytest.approx(1.0479292, abs=1e-6)
    assert label_nll.item() == pytest.approx(1.0986123, abs=1e-6)


def test_label_weight_one_is_the_mean_completion_nll():
    # weight 1: every learned token counts once, (5 log 3 + log 2) / 6 = (5.4930614 + 0.6931472) / 6 = 1.0310348
    loss, _ = label_weighted_nll(*_two_completions(), torch.tensor([2]), weight=1.0)
    assert loss.item() == pytest.approx(1.0310348, abs=1e-6)
