"""training.loss.contrastive_loss against values worked out by hand.

    L = (1 - Y) * 1/2 * D^2  +  Y * 1/2 * max(0, m - D)^2,   Y = 0 same person, 1 different
"""
from __future__ import annotations

import pytest
import torch

from training.loss import contrastive_loss, pair_distance


def loss_of(d, y, margin):
    return contrastive_loss(torch.tensor(d, dtype=torch.float64), torch.tensor(y), margin).item()


@pytest.mark.parametrize("d, expected", [(0.0, 0.0), (0.5, 0.125), (1.0, 0.5), (2.0, 2.0)])
def test_same_pair_is_half_squared_distance(d, expected):
    assert loss_of([d], [0], 1.0) == pytest.approx(expected)


@pytest.mark.parametrize("d, margin, expected", [
    (0.0, 1.0, 0.5),         # 0.5 * 1^2
    (0.4, 1.0, 0.18),        # 0.5 * 0.6^2
    (1.0, 1.0, 0.0),         # exactly at the margin
    (1.7, 1.0, 0.0),         # beyond the margin: left alone
    (0.5, 2.0, 1.125),       # 0.5 * 1.5^2
])
def test_different_pair_is_half_squared_hinge(d, margin, expected):
    assert loss_of([d], [1], margin) == pytest.approx(expected)


def test_mean_over_the_batch():
    # same 0.5 -> 0.125; same 1.0 -> 0.5; different 0.4 (m=1) -> 0.18; different 1.5 -> 0
    assert loss_of([0.5, 1.0, 0.4, 1.5], [0, 0, 1, 1], 1.0) == pytest.approx((0.125 + 0.5 + 0.18 + 0.0) / 4)


def test_labels_may_be_bool_int_or_float():
    d = torch.tensor([0.5, 0.4])
    expected = (0.125 + 0.18) / 2
    for y in (torch.tensor([False, True]), torch.tensor([0, 1]), torch.tensor([0.0, 1.0])):
        assert contrastive_loss(d, y, 1.0).item() == pytest.approx(expected)


def test_returns_a_scalar_of_the_distance_dtype():
    out = contrastive_loss(torch.rand(7, dtype=torch.float64), torch.randint(0, 2, (7,)), 1.2)
    assert out.shape == () and out.dtype == torch.float64


@pytest.mark.parametrize("margin", [0.0, -1.0])
def test_margin_must_be_positive(margin):
    with pytest.raises(ValueError, match="margin"):
        contrastive_loss(torch.tensor([0.5]), torch.tensor([1]), margin)


def test_gradient_pulls_same_together_and_pushes_different_apart():
    d = torch.tensor([0.8, 0.3, 1.5], requires_grad=True)
    contrastive_loss(d, torch.tensor([0, 1, 1]), 1.0).backward()
    grad = d.grad
    assert grad[0] > 0             # same: descending the loss shrinks the distance
    assert grad[1] < 0             # different, inside the margin: descending grows it
    assert grad[2] == 0            # different, beyond the margin: no force
    # dL/dD = D / N for same, -(m - D) / N for different inside the margin (N = 3)
    assert grad[0].item() == pytest.approx(0.8 / 3)
    assert grad[1].item() == pytest.approx(-0.7 / 3)


def test_gradient_through_embeddings_moves_them_the_right_way():
    a = torch.tensor([[0.0, 0.0], [0.0, 0.0]], requires_grad=True)
    b = torch.tensor([[1.0, 0.0], [0.5, 0.0]])
    loss = contrastive_loss(pair_distance(a, b), torch.tensor([0, 1]), 2.0)
    loss.backward()
    step = -a.grad
    assert step[0, 0] > 0          # same pair: a moves towards b (+x)
    assert step[1, 0] < 0          # different pair: a moves away from b (-x)


def test_pair_distance_is_euclidean_with_finite_gradient_at_zero():
    a = torch.tensor([[3.0, 4.0], [1.0, 1.0]], requires_grad=True)
    b = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    d = pair_distance(a, b)
    assert d[0].item() == pytest.approx(5.0) and d[1].item() == pytest.approx(0.0, abs=1e-4)
    d.sum().backward()
    assert torch.isfinite(a.grad).all()
