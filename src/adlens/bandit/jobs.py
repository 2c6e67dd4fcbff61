"""Workspace-level bandit jobs behind ``adlens bandit ...``: arms table, decision-log export,
reweighting w1..w3 from logged outcomes, off-policy evaluation, simulation reports.

The numerical work lives in :mod:`adlens.bandit.policies`, :mod:`~adlens.bandit.ope`,
:mod:`~adlens.bandit.reweight` and :mod:`~adlens.bandit.simulate`; this module only reads the
service's tables, reshapes them, and writes reports.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from adlens.bandit.state import BanditStore
from adlens.errors import InvalidInput

__all__ = ["arms_table", "export_log", "service_log", "reweight", "ope", "simulate", "WEIGHTS_STATE"]

WEIGHTS_STATE = "weights"  # bandit_state row holding the current composite weights


def current_weights(store: BanditStore):
    """The workspace's composite weights: the last applied reweight, else the defaults."""
    from adlens.bandit.policies import Weights

    stored = store.get_state(WEIGHTS_STATE)
    return Weights.from_dict(stored["weights"]) if stored else Weights()


def arms_table(ws, ids: Sequence[str] | None = None, prior=None) -> list[dict[str, Any]]:
    """Counters, observed CTR, prior and posterior mean CTR of every arm (or ``ids``), best first."""
    from adlens.bandit.policies import Prior

    p = prior or Prior()
    out = []
    for a in BanditStore(ws.engine).arms(ids).values():
        q = np.array([np.nan if a.quality is None else a.quality])
        al, be = p.beta_params(q, np.array([a.clicks], float), np.array([a.impressions], float))
        out.append({"arm_id": a.arm_id, "quality": a.quality, "impressions": a.impressions, "clicks": a.clicks,
                    "conversions": a.conversions, "dwell_ms": a.dwell_ms,
                    "ctr": a.clicks / a.impressions if a.impressions else None,
                    "prior_mean": float(p.mean(q)[0]), "posterior_mean": float(al[0] / (al[0] + be[0]))})
    out.sort(key=lambda d: (-d["posterior_mean"], d["arm_id"]))
    return out


def export_log(ws, path: str | Path) -> int:
    """Write every decision as one JSON line (atomically: a temp file renamed). Returns the count."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    n = 0
    with open(tmp, "w") as f:
        for d in BanditStore(ws.engine).decisions():
            d = {**d, "created_at": d["created_at"].isoformat()}
            f.write(json.dumps(d, allow_nan=False) + "\n")
            n += 1
    tmp.replace(path)
    return n


def service_log(ws, only_impressions: bool = True):
    """The service's decisions as OPE input: ``(LoggedData, snapshots, action_names)``.

    Actions are the arms (creative ids, sorted); each row's ``mask`` marks its candidates and its
    :class:`ArmSnapshot` holds the counters and inputs *at decision time*, so any policy can be
    replayed on it. Per-candidate reward-model features: the logged quality, CTR estimate and
    novelty. Reward = click (0/1)."""
    from adlens.bandit.ope import LoggedData
    from adlens.bandit.policies import ArmSnapshot, normalise_quality

    rows = [d for d in BanditStore(ws.engine).decisions() if d["impression"] or not only_impressions]
    if not rows:
        raise InvalidInput("the service has logged no decisions yet (run `adlens serve` and send /v1/select)")
    names = sorted({c["id"] for d in rows for c in d["candidates"]})
    col = {a: j for j, a in enumerate(names)}
    n, A = len(rows), len(names)
    feats = ("quality", "ctr", "novelty")
    mask = np.zeros((n, A), bool)
    AF = np.zeros((n, A, len(feats)))
    actions = np.array([col[d["chosen"]] for d in rows])
    snaps = []
    for i, d in enumerate(rows):
        c = d["candidates"]
        js = [col[x["id"]] for x in c]
        mask[i, js] = True
        AF[i, js] = [[x.get(f) if x.get(f) is not None else 0.0 for f in feats] for x in c]
        score = np.array([np.nan if x.get("score") is None else x["score"] for x in c], float)
        snaps.append(ArmSnapshot(ids=tuple(x["id"] for x in c), quality=normalise_quality(score),
                                 clicks=np.array([x.get("clicks", 0.0) for x in c], float),
                                 impressions=np.array([x.get("impressions", 0.0) for x in c], float),
                                 duplicate=np.array([bool(x.get("duplicate")) for x in c]),
                                 brand_risk=np.array([x.get("brand_risk", 0.0) for x in c], float)))
    # the whole logging distribution: OPE then reports the target's mass where logging had none
    P = np.zeros((n, A))
    for i, d in enumerate(rows):
        P[i, [col[x["id"]] for x in d["candidates"]]] = [x.get("p") or 0.0 for x in d["candidates"]]
    log = LoggedData(actions=actions, rewards=np.array([float(d["clicked"]) for d in rows]),
                     propensities=np.array([d["propensity"] for d in rows]), mask=mask, action_features=AF,
                     logging_probs=P)
    return log, snaps, names


def reweight(ws, apply: bool = False, report: str | Path | None = None) -> dict[str, Any]:
    """Fit w1..w3 from the chosen candidates' logged components and whether they were clicked."""
    from adlens.bandit.reweight import fit_weights

    store = BanditStore(ws.engine)
    current = current_weights(store)
    rows = []
    for d in store.decisions():
        if not d["impression"]:
            continue
        c = next(x for x in d["candidates"] if x["id"] == d["chosen"])
        rows.append({"quality": c.get("quality"), "ctr": c.get("ctr"), "novelty": c.get("novelty"),
                     "duplicate": bool(c.get("duplicate")), "brand_risk": c.get("brand_risk", 0.0),
                     "click": int(d["clicked"]), "conversion": int(d["converted"])})
    weights, rep = fit_weights(rows, current)
    out = {"weights": weights.to_dict(), "previous": current.to_dict(), "applied": bool(apply), "report": rep}
    if apply:
        store.put_state(WEIGHTS_STATE, {"weights": weights.to_dict(), "fitted_at": datetime.now(UTC).isoformat(),
                                        "n": rep.get("n")})
    if report:
        _write_page(report, "adlens — bandit reweight", _kv_table(out["previous"], out["weights"], rep))
    return out


def ope(policy: str, *, ws=None, path: str | Path | None = None, n_boot: int = 1000, random_state: int = 0,
        weights=None) -> dict[str, Any]:
    """Off-policy value of ``policy`` on the service's log (``ws``) or a log file (``path``).

    ``policy``: ``uniform`` | ``greedy-model[:epsilon=E]`` (greedy on the DR reward model) | a bandit
    policy spec (service log only: replayed on each decision's logged snapshot with ``weights``, a
    :class:`~adlens.bandit.policies.Weights`; default the workspace's current ones) -- e.g. the
    weights ``bandit reweight`` proposes, evaluated before they are applied."""
    from adlens.bandit import ope as O
    from adlens.bandit.policies import policy_from_spec

    if (ws is None) == (path is None):
        raise InvalidInput("give a log file or a workspace")
    if weights is not None and path is not None:
        raise InvalidInput("weights apply to bandit policies replayed on the service's own log, not to a log file")
    if path is not None:
        log, names = O.read_log(path)
        snaps = None
    else:
        log, snaps, names = service_log(ws)
    name, _, params = policy.partition(":")
    if weights is not None and name in ("uniform", "greedy-model", "greedy_model"):
        raise InvalidInput(f"weights apply to bandit policies replayed on the own log, not to {name}")
    if name == "uniform":
        if params:
            raise InvalidInput(f"policy {policy!r}: uniform takes no parameters")
        target = O.target_uniform(log)
    elif name in ("greedy-model", "greedy_model"):
        target = O.target_greedy_model(log, _epsilon(policy, params))
    else:
        if snaps is None:
            raise InvalidInput(f"policy {policy!r} needs the service's own log (per-decision snapshots); "
                               "for a log file use uniform or greedy-model")
        if weights is None:
            weights = current_weights(BanditStore(ws.engine))
        target = O.target_from_policy(policy_from_spec(policy), snaps, weights,
                                      random_state=random_state, action_names=names)
    r = O.evaluate(log, target, n_boot=n_boot, random_state=random_state)
    return {"policy": policy, "source": str(path) if path else "service log",
            **({"weights": weights.to_dict()} if weights is not None else {}), **r}


def _epsilon(policy: str, params: str) -> float:
    """``epsilon=E`` of a ``greedy-model:epsilon=E`` spec (0 when absent), checked."""
    if not params:
        return 0.0
    key, eq, raw = params.partition("=")
    try:
        if key.strip() != "epsilon" or not eq:
            raise ValueError
        eps = float(raw)
        if not 0.0 <= eps <= 1.0:
            raise ValueError
    except ValueError:
        raise InvalidInput(f"policy {policy!r}: expected greedy-model or greedy-model:epsilon=E "
                           "with E in [0, 1]") from None
    return eps


#: the simulator's default comparison (UCB1 / LinUCB bonuses matched to click-rate variance)
SIM_POLICIES = ("thompson", "ucb1:alpha=0.2", "epsilon_greedy:epsilon=0.1", "linucb:alpha=0.1")


def simulate(policies: Sequence[str] = SIM_POLICIES, steps: int = 5000, seeds: int = 3, n_arms: int = 20,
             base_ctr: float = 0.03, arm_sd: float = 0.5, interaction: float = 0.3, batch_size: int = 1,
             report: str | Path | None = None) -> dict[str, Any]:
    """Compare policies on a simulated click environment; optional HTML report with the regret curves.

    ``interaction`` = how much the best creative depends on the page (0: one ranking for every
    context); ``arm_sd`` = spread of the creatives' CTRs (logit scale); ``batch_size`` = clicks fed
    back every N requests (faster long runs)."""
    from adlens.bandit import simulate as S
    from adlens.bandit.policies import policy_from_spec

    pols = {p: policy_from_spec(p) for p in policies}
    env = S.Environment(n_arms=n_arms, base_ctr=base_ctr, arm_sd=arm_sd, interaction=interaction, random_state=0)
    r = S.compare(pols, env, T=steps, seeds=tuple(range(seeds)), batch_size=batch_size)
    title = (f"Cumulative regret — {n_arms} arms, base CTR {base_ctr:.1%}, arm sd {arm_sd}, "
             f"context interaction {interaction}")
    svg = S.regret_svg(r, title=title)
    out = {**r, "svg": svg}
    if report:
        rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v['final_regret_mean']:.1f}</td>"
                       f"<td>{v['final_regret_sd']:.1f}</td><td>{v['ctr_mean']:.4f}</td></tr>"
                       for k, v in r["policies"].items())
        _write_page(report, "adlens — bandit simulation",
                    f"<p>{steps} requests, {seeds} seeds (same contexts and click draws for every policy).</p>{svg}"
                    "<table><tr><th>policy</th><th>final regret (mean)</th><th>sd</th><th>CTR</th></tr>"
                    f"{rows}</table>")
    return out


def _kv_table(before: dict, after: dict, rep: dict) -> str:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{before.get(k)}</td><td>{after.get(k)}</td></tr>" for k in after)
    return (f"<table><tr><th>weight</th><th>before</th><th>after</th></tr>{rows}</table>"
            f"<pre>{html.escape(json.dumps(rep, indent=2, default=str))}</pre>")


def _write_page(path: str | Path, title: str, body: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
                    "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 10px;text-align:right}"
                    f"</style><h1>{html.escape(title)}</h1>{body}")
