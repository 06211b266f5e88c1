"""Ranger (RAdam + Lookahead) and the learning-rate schedules of the paper's recipe."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from sfnet.config import TrainConfig

ONE_CYCLE_PCT_START = 0.25  # fastai's fit_one_cycle: the share of steps spent warming up


class Lookahead:
    """Lookahead (Zhang et al. 2019) around any optimizer.

    Every ``k`` steps the slow weights move ``alpha`` of the way towards the fast weights and the
    fast weights are reset to them. Schedulers attach to ``self.base`` (a real torch optimizer).
    """

    def __init__(self, base: torch.optim.Optimizer, k: int = 6, alpha: float = 0.5) -> None:
        if k < 1 or not 0.0 < alpha <= 1.0:
            raise ValueError(
                f"Lookahead needs k >= 1 and alpha in (0, 1], got k={k}, alpha={alpha}"
            )
        self.base = base
        self.k = k
        self.alpha = alpha
        self.counter = 0
        self.slow = [[p.detach().clone() for p in group["params"]] for group in base.param_groups]

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.base.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self) -> None:
        self.base.step()
        self.counter += 1
        if self.counter % self.k:
            return
        for group, slows in zip(self.base.param_groups, self.slow, strict=True):
            for p, slow in zip(group["params"], slows, strict=True):
                slow.add_(p.detach() - slow, alpha=self.alpha)
                p.copy_(slow)

    def state_dict(self) -> dict[str, Any]:
        return {
            "base": self.base.state_dict(),
            "counter": self.counter,
            "slow": [[s.clone() for s in group] for group in self.slow],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base.load_state_dict(state["base"])
        self.counter = int(state["counter"])
        for slows, saved in zip(self.slow, state["slow"], strict=True):
            for s, v in zip(slows, saved, strict=True):
                s.copy_(v)


def ranger(params, cfg: TrainConfig) -> Lookahead:
    """Ranger = torch's RAdam (decoupled weight decay) wrapped in :class:`Lookahead`."""
    radam = torch.optim.RAdam(
        params,
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        decoupled_weight_decay=True,
    )
    return Lookahead(radam, k=cfg.lookahead_k, alpha=cfg.lookahead_alpha)


def flat_cos_factor(step: int, total: int, flat_fraction: float, final: float = 1e-5) -> float:
    """LR multiplier of fastai's ``fit_flat_cos``: 1 for the first ``flat_fraction`` of steps,
    then cosine annealing to ``final``."""
    flat = int(round(total * flat_fraction))
    if step < flat or total <= flat:
        return 1.0
    t = min(1.0, (step - flat) / max(1, total - flat))
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * t))


def anneal_start(cfg: TrainConfig, total_steps: int, warmup_steps: int = 0) -> int:
    """The first optimizer step (0-based) whose learning rate is below the peak, from where it
    falls to the end: just after ``flat_cos``'s flat phase (and after a warm-up longer than
    it), or after ``one_cycle``'s warm-up. Where SWA-style weight averaging begins."""
    if cfg.schedule == "flat_cos":
        flat = int(round(total_steps * cfg.remedies()["flat_fraction"]))
        return min(total_steps, max(flat, warmup_steps) + 1)
    return int(round(total_steps * ONE_CYCLE_PCT_START))


def average_start(cfg: TrainConfig, total_steps: int, warmup_steps: int = 0) -> int:
    """The optimizer step (0-based) where the weight average (``eval_weights = "ema"``) begins:
    :func:`anneal_start` plus ``cfg.ema_start`` of the steps from there to the end."""
    anneal = anneal_start(cfg, total_steps, warmup_steps)
    return anneal + int(round((total_steps - anneal) * cfg.ema_start))


def warmup_factor(step: int, warmup_steps: int) -> float:
    """LR multiplier of a linear warm-up: (step + 1) / warmup_steps for the first
    ``warmup_steps`` steps (0-based ``step``), then 1."""
    if step >= warmup_steps:
        return 1.0
    return (step + 1) / warmup_steps


def make_scheduler(
    opt: Lookahead, cfg: TrainConfig, total_steps: int, warmup_steps: int = 0
) -> LRScheduler:
    """The per-step schedule named by ``cfg.schedule`` (``flat_cos`` or ``one_cycle``); a
    ``flat_cos`` schedule is multiplied by a linear warm-up over ``warmup_steps`` steps (0: none,
    the paper's; ``one_cycle`` has its own warm-up)."""
    if cfg.schedule == "flat_cos":
        flat = cfg.remedies()["flat_fraction"]  # the paper's 0.75 under --recipe paper
        if warmup_steps <= 0:
            return LambdaLR(opt.base, lambda s: flat_cos_factor(s, total_steps, flat))
        return LambdaLR(
            opt.base,
            lambda s: warmup_factor(s, warmup_steps) * flat_cos_factor(s, total_steps, flat),
        )
    # fastai's fit_one_cycle: 25% warm-up from lr/25, cosine down to lr/1e5, momentum 0.95-0.85.
    return OneCycleLR(
        opt.base,
        max_lr=cfg.lr,
        total_steps=max(1, total_steps),
        pct_start=ONE_CYCLE_PCT_START,
        div_factor=25.0,
        final_div_factor=4000.0,
        base_momentum=0.85,
        max_momentum=cfg.beta1,
    )
