"""CLI of serving and the bandit (registered by ``adlens.cli``)::

    adlens serve [--host H] [--port P] [--policy SPEC] [--weights FILE] [--model-version vNNNN] [...] [-w WS]
    adlens keys add NAME | list | revoke NAME [-w WS]
    adlens bandit arms [--json] [-w WS]
    adlens bandit export LOG.jsonl [-w WS]
    adlens bandit reweight [--apply] [--json] [-w WS]
    adlens bandit ope [LOG] --policy SPEC [--json] [-w WS]
    adlens bandit simulate [--policies a,b,c] [--steps T] [--seeds N] [--report FILE] [--json]
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    from adlens.cli import (
        JsonOpt,
        WorkspaceOpt,
        _fail,
        _print_json,
        _workspace,
        console,
        out,
    )
    from adlens.errors import AdlensError, InvalidInput

    bandit_app = typer.Typer(help="Bandit state, weights, off-policy evaluation, simulation.", no_args_is_help=True)
    keys_app = typer.Typer(help="API keys of `adlens serve` (stored hashed).", no_args_is_help=True)
    app.add_typer(bandit_app, name="bandit")
    app.add_typer(keys_app, name="keys")

    @app.command()
    def serve(
        host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0 for all)."),
        port: int = typer.Option(8000, "--port", min=1, max=65535),
        policy: str = typer.Option("thompson", "--policy",
                                   help="thompson[:n_mc=1000] | ucb1[:alpha=1] | epsilon_greedy[:epsilon=0.1] | linucb[:alpha=1,ridge=1]"),
        weights: Path = typer.Option(None, "--weights", help="JSON of composite weights (default: the workspace's "
                                                             "current ones from `adlens bandit reweight --apply`)."),
        model_version: str = typer.Option(None, "--model-version", help="Quality model (default: latest)."),
        max_candidates: int = typer.Option(200, "--max-candidates", min=1),
        max_body_bytes: int = typer.Option(8 * 1024 * 1024, "--max-body-bytes", min=1024),
        impression_on_select: bool = typer.Option(True, "--impression-on-select/--impression-on-event",
                                                  help="Count an impression when a decision is made, or only on "
                                                       "impression/click events."),
        feedback_window: float = typer.Option(7 * 24 * 3600.0, "--feedback-window",
                                              help="Seconds after a decision within which events still count (0 = no limit)."),
        seed: int = typer.Option(None, "--seed", help="Seed of the selector (default: fresh entropy)."),
        preload: bool = typer.Option(True, "--preload/--no-preload",
                                     help="Load every creative's and article's features at start."),
        precompute_pairs: int = typer.Option(2_000_000, "--precompute-pairs", min=0,
                                             help="With --preload: score every (creative, article) pair at start "
                                                  "when there are at most N (4 bytes each; 0 = never)."),
        workers: int = typer.Option(1, "--workers", min=1, max=64,
                                    help="Server processes (each preloads; counters re-read every --refresh s)."),
        refresh: float = typer.Option(1.0, "--refresh", min=0.01,
                                      help="With --workers > 1: seconds between re-reads of the arms' counters."),
        log_level: str = typer.Option("warning", "--log-level"),
        workspace: Path = WorkspaceOpt,
    ) -> None:
        """Run the HTTP service (OpenAPI docs at /docs)."""
        import uvicorn

        from adlens.serve import ServeConfig, Service, create_app
        from adlens.serve.worker import ENV, config_to_env, tune_gc

        try:
            ws = _workspace(workspace)
            cfg = ServeConfig(policy=policy, weights=_weights(weights), model_version=model_version,
                              max_candidates=max_candidates, max_body_bytes=max_body_bytes,
                              impression_on_select=impression_on_select, feedback_window_s=feedback_window,
                              random_state=seed, preload=preload, precompute_pairs=precompute_pairs,
                              refresh_s=refresh if workers > 1 else 0.0)
            if workers > 1:
                from adlens.bandit.policies import policy_from_spec

                if policy_from_spec(policy).contextual:
                    raise InvalidInput(f"--policy {policy} keeps its statistics in one process: use --workers 1")
                root = ws.root
                ws.close()
            else:
                service = Service(ws, cfg)
        except (AdlensError, ValueError) as e:
            _fail(e)
        console.print(f"adlens serve: http://{host}:{port}  policy {policy}  workers {workers}  docs /docs")
        if workers > 1:  # uvicorn starts each worker by import string: the settings go by environment
            os.environ[ENV] = config_to_env(str(root), cfg)
            uvicorn.run("adlens.serve.worker:app_from_env", factory=True, workers=workers, host=host, port=port,
                        log_level=log_level, access_log=False)
            return
        tune_gc()
        try:
            uvicorn.run(create_app(service), host=host, port=port, log_level=log_level, access_log=False)
        finally:
            service.close()  # last WAL checkpoint
            ws.close()

    @keys_app.command("add")
    def keys_add(name: str, workspace: Path = WorkspaceOpt) -> None:
        """Create an API key; it is printed once (only its sha256 is stored)."""
        from adlens.bandit.state import BanditStore

        try:
            with _workspace(workspace) as ws:
                key = BanditStore(ws.engine).add_key(name)
        except AdlensError as e:
            _fail(e)
        out.print(key)

    @keys_app.command("list")
    def keys_list(workspace: Path = WorkspaceOpt, as_json: bool = JsonOpt) -> None:
        """Names of the API keys (never the keys)."""
        from adlens.bandit.state import BanditStore

        with _workspace(workspace) as ws:
            rows = BanditStore(ws.engine).list_keys()
        if as_json:
            _print_json(rows)
            return
        for r in rows:
            out.print(f"{r['name']}\t{r['created_at']}\t{'revoked' if r['revoked'] else 'active'}")

    @keys_app.command("revoke")
    def keys_revoke(name: str, workspace: Path = WorkspaceOpt) -> None:
        """Revoke an API key (a running service stops accepting it within 10 s)."""
        from adlens.bandit.state import BanditStore

        try:
            with _workspace(workspace) as ws:
                BanditStore(ws.engine).revoke_key(name)
        except AdlensError as e:
            _fail(e)
        out.print(f"revoked {name}")

    @bandit_app.command("arms")
    def arms(workspace: Path = WorkspaceOpt, as_json: bool = JsonOpt) -> None:
        """Arms' counters, observed CTR and posterior mean (prior from predicted quality)."""
        from adlens.bandit.jobs import arms_table

        with _workspace(workspace) as ws:
            rows = arms_table(ws)
        if as_json:
            _print_json(rows)
            return
        from rich.table import Table

        t = Table(title=f"{len(rows)} arms")
        for c in ("arm", "quality", "impressions", "clicks", "ctr", "posterior"):
            t.add_column(c, justify="left" if c == "arm" else "right")
        for r in rows:
            t.add_row(r["arm_id"], _f(r["quality"]), str(r["impressions"]), str(r["clicks"]), _f(r["ctr"]),
                      _f(r["posterior_mean"]))
        out.print(t)

    @bandit_app.command("export")
    def export(path: Path, workspace: Path = WorkspaceOpt) -> None:
        """Write the service's decision log as JSONL (one decision per line, with propensities)."""
        from adlens.bandit.jobs import export_log

        with _workspace(workspace) as ws:
            n = export_log(ws, path)
        out.print(f"{n} decisions -> {path}")

    @bandit_app.command("reweight")
    def reweight(apply: bool = typer.Option(False, "--apply", help="Store the fitted weights as the workspace's "
                                                                   "current ones (used by the next `adlens serve`)."),
                 report: Path = typer.Option(None, "--report", help="Write an HTML report here."),
                 workspace: Path = WorkspaceOpt, as_json: bool = JsonOpt) -> None:
        """Fit w1..w3 of the composite from logged outcomes (the seed's monthly update)."""
        from adlens.bandit.jobs import reweight as run

        try:
            with _workspace(workspace) as ws:
                r = run(ws, apply=apply, report=report)
        except (AdlensError, ValueError) as e:
            _fail(e)
        if as_json:
            _print_json(r)
            return
        out.print(f"fitted on {r['report'].get('n')} decisions: {r['weights']}" + ("  (applied)" if apply else
                                                                                     "  (not applied; --apply)"))

    @bandit_app.command("ope")
    def ope(log: Path = typer.Argument(None, help="CSV / Parquet / JSONL with action, reward, propensity and context "
                                                  "feature columns; default: the service's own decision log."),
            policy: str = typer.Option(..., "--policy", help="uniform | greedy-model[:epsilon=0.1] | a bandit policy "
                                                             "spec (own log only), e.g. thompson, ucb1:alpha=0.5"),
            n_boot: int = typer.Option(1000, "--bootstrap", min=50),
            seed: int = typer.Option(0, "--seed"),
            weights: Path = typer.Option(None, "--weights", exists=True, dir_okay=False,
                                         help="Composite weights JSON for a bandit policy replayed on the own log "
                                              "(as `bandit reweight --json` prints them); default: the workspace's."),
            workspace: Path = WorkspaceOpt, as_json: bool = JsonOpt) -> None:
        """Off-policy value of a policy on logged decisions: IPS, SNIPS, DR with bootstrap CIs."""
        from adlens.bandit.jobs import ope as run

        try:
            w = _weights(weights)
            if log is None:
                with _workspace(workspace) as ws:
                    r = run(policy, ws=ws, n_boot=n_boot, random_state=seed, weights=w)
            else:
                r = run(policy, path=log, n_boot=n_boot, random_state=seed, weights=w)
        except (AdlensError, ValueError) as e:
            _fail(e)
        if as_json:
            _print_json(r)
            return
        out.print(f"{r['n']} logged decisions, logged mean reward {_f(r.get('logged_mean_reward'))}")
        for k in ("ips", "snips", "dr"):
            e = r[k]
            out.print(f"  {k.upper():5s} {_f(e['value'])}  95% CI [{_f(e['ci_low'])}, {_f(e['ci_high'])}]")

    @bandit_app.command("simulate")
    def simulate(policies: str = typer.Option("thompson;ucb1:alpha=0.2;epsilon_greedy:epsilon=0.1;linucb:alpha=0.1", "--policies",
                                              help="policy specs separated by ';'"),
                 steps: int = typer.Option(5000, "--steps", min=10),
                 seeds: int = typer.Option(3, "--seeds", min=1),
                 arms: int = typer.Option(20, "--arms", min=2),
                 base_ctr: float = typer.Option(0.03, "--base-ctr", help="CTR of an average creative."),
                 arm_sd: float = typer.Option(0.5, "--arm-sd", help="spread of creatives' CTRs (logit sd)."),
                 interaction: float = typer.Option(0.3, "--interaction",
                                                   help="how much the best creative depends on the page (0 = never)."),
                 batch_size: int = typer.Option(1, "--batch-size", min=1, help="feed clicks back every N requests."),
                 report: Path = typer.Option(None, "--report", help="HTML page with the regret curves."),
                 as_json: bool = JsonOpt) -> None:
        """Compare policies on a simulated click environment (regret curves)."""
        from adlens.bandit.jobs import simulate as run

        try:
            r = run(_specs(policies), steps=steps, seeds=seeds, n_arms=arms,
                    base_ctr=base_ctr, arm_sd=arm_sd, interaction=interaction, batch_size=batch_size,
                    report=report)
        except ValueError as e:
            _fail(e)
        if as_json:
            _print_json({k: v for k, v in r.items() if k != "svg"})
            return
        for name, v in r["policies"].items():
            out.print(f"{name:16s} regret {v['final_regret_mean']:.1f} ± {v['final_regret_sd']:.1f}  "
                      f"CTR {v['ctr_mean']:.4f}")
        if report:
            out.print(f"report: {report}")


def _specs(text: str) -> list[str]:
    """Policy specs separated by ';' ("thompson;ucb1:alpha=0.2"); plain names may use ','."""
    sep = ";" if (";" in text or ":" in text) else ","
    return [p.strip() for p in text.split(sep) if p.strip()]


def _f(v) -> str:
    return "–" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def _weights(path: Path | None):
    if path is None:
        return None
    from adlens.bandit.policies import Weights
    from adlens.errors import InvalidInput

    try:
        d = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InvalidInput(f"{path}: cannot read weights JSON ({e})") from None
    try:
        return Weights.from_dict(d.get("weights", d) if isinstance(d, dict) else d)
    except (TypeError, ValueError) as e:  # a list, a string, an unknown key, a non-number
        raise InvalidInput(f"{path}: not a weights object ({e})") from None
