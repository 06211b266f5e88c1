import numpy as np
import pytest
import torch

from sfnet.config import TrainConfig
from sfnet.optim import anneal_start, average_start, flat_cos_factor, make_scheduler, ranger


def _lr_and_beta1(
    cfg: TrainConfig, total: int, warmup_steps: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The learning rate and RAdam beta1 used at each of ``total`` steps."""
    p = torch.nn.Parameter(torch.zeros(3))
    opt = ranger([p], cfg)
    sched = make_scheduler(opt, cfg, total, warmup_steps=warmup_steps)
    lrs, betas = [], []
    for _ in range(total):
        group = opt.base.param_groups[0]
        lrs.append(group["lr"])
        betas.append(group["betas"][0])
        p.grad = torch.ones_like(p)
        opt.step()
        sched.step()
    return np.array(lrs), np.array(betas)


def test_flat_cos_schedule_shape():
    total = 100
    assert flat_cos_factor(0, total, 0.75) == 1.0
    assert flat_cos_factor(74, total, 0.75) == 1.0
    mid = flat_cos_factor(87, total, 0.75)
    assert 0.4 < mid < 0.6
    assert flat_cos_factor(100, total, 0.75) == pytest.approx(1e-5)


def test_one_cycle_warms_up_peaks_at_a_quarter_and_anneals_to_the_floor():
    lr, beta1 = _lr_and_beta1(TrainConfig(lr=0.1, schedule="one_cycle"), 100)
    peak = int(np.argmax(lr))
    assert peak == 24  # 25% warm-up (fastai's fit_one_cycle)
    assert lr[0] == pytest.approx(0.1 / 25) and lr[peak] == pytest.approx(0.1)
    assert (np.diff(lr[: peak + 1]) > 0).all()  # warm-up rises
    assert (np.diff(lr[peak:]) < 0).all()  # then anneals
    assert lr[-1] == pytest.approx(0.1 / 1e5, rel=1e-3)  # the floor: lr / 1e5
    # momentum moves against the rate: 0.95 -> 0.85 at the peak -> back to beta1
    assert beta1[0] == pytest.approx(0.95) and beta1[peak] == pytest.approx(0.85)
    assert beta1[-1] == pytest.approx(0.95, abs=1e-3)


def test_flat_cos_scheduler_holds_then_anneals_the_configured_lr():
    lr, _ = _lr_and_beta1(TrainConfig(lr=0.05, flat_fraction=0.5), 40)
    assert (lr[:20] == 0.05).all()
    assert (np.diff(lr[20:]) < 0).all() and lr[-1] < 0.05 * 0.01


def test_warmup_ramps_linearly_to_the_peak_then_follows_flat_cos():
    cfg = TrainConfig(lr=0.1, flat_fraction=0.5)
    lrs, _ = _lr_and_beta1(cfg, 40, warmup_steps=5)
    np.testing.assert_allclose(lrs[:5], [0.02, 0.04, 0.06, 0.08, 0.1])
    assert lrs[5:20].tolist() == [0.1] * 15
    plain, _ = _lr_and_beta1(cfg, 40)  # after the warm-up: the paper's schedule unchanged
    np.testing.assert_allclose(lrs[5:], plain[5:])


@pytest.mark.parametrize(
    "cfg,warmup",
    [
        (TrainConfig(lr=0.1, flat_fraction=0.5), 0),
        (TrainConfig(lr=0.1, flat_fraction=0.75), 5),
        (TrainConfig(lr=0.1, schedule="one_cycle"), 0),
        (TrainConfig(lr=0.1, recipe="paper"), 0),  # the paper's flat 75 %, whatever the field
    ],
)
def test_anneal_start_is_the_first_step_whose_rate_is_below_the_peak(cfg, warmup):
    lrs, _ = _lr_and_beta1(cfg, 40, warmup_steps=warmup)
    start = anneal_start(cfg, 40, warmup)
    assert lrs[start - 1] == pytest.approx(0.1)
    assert (np.diff(lrs[start - 1 :]) < 0).all()  # falls from there on
    if cfg.recipe == "paper":
        assert start == 31


def test_the_weight_average_begins_ema_start_of_the_way_down_the_cosine():
    cfg = TrainConfig(lr=0.1, flat_fraction=0.5)
    assert average_start(cfg, 40) == anneal_start(cfg, 40) == 21  # ema_start 0: at the fall
    late = TrainConfig(lr=0.1, flat_fraction=0.5, ema_start=0.5)
    assert average_start(late, 40) == 21 + 10  # half of the 19 falling steps, rounded
    lrs, _ = _lr_and_beta1(late, 40)
    assert lrs[average_start(late, 40)] < 0.1 / 2 < lrs[21]


def test_paper_recipe_keeps_the_papers_flat_phase_and_the_stable_one_halves_it():
    stable, _ = _lr_and_beta1(TrainConfig(lr=0.1), 40)
    paper, _ = _lr_and_beta1(TrainConfig(lr=0.1, recipe="paper"), 40)
    assert (paper[:31] == 0.1).all() and paper[31] < 0.1
    assert (stable[:21] == 0.1).all() and stable[21] < 0.1
