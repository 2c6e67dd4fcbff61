"""Bandit serving core (seed 000 steps 4-7; issue 6): pure numpy, no I/O except :func:`read_log`.

* :mod:`adlens.bandit.policies` -- ``Weights``, ``Prior``, ``ArmSnapshot``, the policies
  (``ThompsonSampling``, ``UCB1``, ``EpsilonGreedy``, ``LinUCB``), ``LinearState`` and the
  ``Selector`` façade that samples a ``Choice`` with an exact propensity;
* :mod:`adlens.bandit.ope`      -- ``LoggedData``, ``read_log``, ``evaluate`` (IPS / SNIPS / DR with
  bootstrap CIs) and target policies;
* :mod:`adlens.bandit.simulate` -- ``Environment``, ``run``, ``compare``, ``regret_svg``;
* :mod:`adlens.bandit.reweight` -- ``fit_weights`` (refit w1..w3 from logged clicks).

Example::

    >>> import numpy as np
    >>> from adlens.bandit import ArmSnapshot, Selector, normalise_quality
    >>> snap = ArmSnapshot(ids=("a", "b"), quality=normalise_quality([8.5, 6.0]),
    ...                    clicks=np.array([4.0, 1.0]), impressions=np.array([120.0, 40.0]))
    >>> Selector("thompson", random_state=0).select(snap).arm_id in ("a", "b")
    True
"""

from .ope import (
    LoggedData,
    cross_fit_rewards,
    evaluate,
    fit_reward_model,
    read_log,
    target_from_policy,
    target_greedy_model,
    target_uniform,
)
from .policies import (
    POLICIES,
    UCB1,
    ArmSnapshot,
    Choice,
    EpsilonGreedy,
    LinearState,
    LinUCB,
    Policy,
    Prior,
    Selector,
    ThompsonSampling,
    Weights,
    composite,
    default_features,
    duplicate_flags,
    normalise_quality,
    novelty_from_impressions,
    policy_from_spec,
    posterior_mean,
)
from .reweight import fit_weights
from .simulate import (
    DEFAULT_POLICIES,
    SIM_WEIGHTS,
    Environment,
    SimResult,
    compare,
    regret_svg,
    run,
)

__all__ = [
    "Weights", "Prior", "ArmSnapshot", "normalise_quality", "novelty_from_impressions", "duplicate_flags",
    "default_features", "posterior_mean", "composite", "Policy", "ThompsonSampling", "UCB1", "EpsilonGreedy",
    "LinUCB", "POLICIES", "policy_from_spec", "LinearState", "Choice", "Selector",
    "LoggedData", "read_log", "evaluate", "fit_reward_model", "cross_fit_rewards", "target_uniform",
    "target_greedy_model", "target_from_policy",
    "Environment", "SimResult", "run", "compare", "regret_svg", "SIM_WEIGHTS", "DEFAULT_POLICIES",
    "fit_weights",
]
