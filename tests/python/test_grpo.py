"""The RLKV objective's rules (kvforge.grpo) on hand-computed batches."""
import math

import pytest
import torch

from kvforge.grpo import adaptive_beta, advantages, clipped_objective


def test_adaptive_beta_switches_on_above_tau():
    assert adaptive_beta(0.5, 2e-3, 0.5) == 0.0  # not above tau
    assert adaptive_beta(0.0, 2e-3, 0.5) == 0.0
    assert adaptive_beta(0.75, 2e-3, 0.5) == pytest.approx(2e-3 * (math.exp(0.75) - 1))  # 2.2340e-3
    assert adaptive_beta(1.0, 1e-3, 0.55) == pytest.approx(1.718281828e-3)


def test_advantages_group_baseline_over_batch_std():
    # Two groups of G = 2: rewards (1, 0) and (1, 1); batch std of
    # (1, 0, 1, 1) = sqrt(0.75 - 0.5625) = 0.4330127.
    r = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    std = float(r.std(unbiased=False))
    assert std == pytest.approx(0.4330127, rel=1e-6)
    a = advantages(r, 2, std, eps=0.0)
    assert a.tolist() == pytest.approx([0.5 / 0.4330127, -0.5 / 0.4330127, 0.0, 0.0], rel=1e-6)
    # A group where every answer scores the same teaches nothing.
    assert advantages(torch.ones(4), 4, 0.0).tolist() == [0.0] * 4


def test_clipped_objective():
    old = torch.log(torch.tensor([0.5, 0.5, 0.5, 0.5]))
    new = torch.log(torch.tensor([0.75, 0.25, 0.75, 0.25]))  # ratios 1.5, 0.5, 1.5, 0.5
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0])
    got = clipped_objective(new, old, adv, 0.2)
    # A > 0: min(r, clip(r)) -> 1.2, 0.5; A < 0: min(-r, -clip(r)) -> -1.5, -0.8.
    assert got.tolist() == pytest.approx([1.2, 0.5, -1.5, -0.8], rel=1e-6)
    # The clipped side carries no gradient.
    new = new.clone().requires_grad_(True)
    clipped_objective(new, old, adv, 0.2).sum().backward()
    assert new.grad.tolist() == pytest.approx([0.0, 0.5, -1.5, 0.0], rel=1e-6)
