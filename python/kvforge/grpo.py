"""The RLKV objective (SPEC.md §4), as pure functions of tensors so that each
rule can be checked on hand-computed batches."""
from __future__ import annotations

import math

import torch


def adaptive_beta(mean_reward: float, beta: float, tau: float) -> float:
    """beta' = 1(r > tau) * beta * (exp(r) - 1): the L1 pressure on alpha
    switches on only once the model solves more than tau of the batch, and
    grows with the reward."""
    return beta * (math.exp(mean_reward) - 1.0) if mean_reward > tau else 0.0


def advantages(rewards: torch.Tensor, group_size: int, batch_std: float, eps: float = 1e-6) -> torch.Tensor:
    """rewards [n_groups * group_size], G consecutive samples per prompt:
    reward minus its group's mean (the GRPO baseline), divided by the
    standard deviation of the rewards over the whole batch (all ranks)."""
    r = rewards.view(-1, group_size)
    return ((r - r.mean(dim=1, keepdim=True)) / (batch_std + eps)).view(-1)


def clipped_objective(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, clip: float) -> torch.Tensor:
    """PPO's clipped surrogate per token, to be maximised: min(ratio * A,
    clip(ratio, 1 - eps, 1 + eps) * A) with ratio = exp(logp - old_logp).
    logp, old_logp: [tokens]; adv: a scalar or [tokens]. Returns [tokens]."""
    ratio = torch.exp(logp - old_logp)
    return torch.minimum(ratio * adv, torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * adv)
