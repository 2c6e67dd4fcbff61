"""CLI of the quality scorer (registered by ``adlens.cli``)::

    adlens pairs [--seed N] [--json] [-w WS]
    adlens teach [--teacher rubric|labels|openai]
                 labels: [--labels FILE --ad-column C --article-column C --score-column C --scale LO,HI]
                 openai: [--base-url URL --model M --api-key-env VAR --price-in USD --price-out USD
                          --budget USD --est-cost USD --workers N --timeout S --retries N --no-json-mode]
                 [--json] [-w WS]
    adlens train [--teacher T] [--seed N] [--json] [-w WS]
    adlens evaluate quality [--version vNNNN] [--report PATH] [--json] [-w WS]
    adlens score AD_ID ARTICLE_ID_OR_TEXT [--json] [-w WS]

The API key of the ``openai`` teacher is never a command-line argument (it would land in the shell
history and the process list): it is read from the environment variable named by ``--api-key-env``,
by default ``OPENAI_API_KEY`` then ``ADLENS_LLM_API_KEY``; local servers (vLLM, Ollama, llama.cpp)
need none.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer


__all__ = ["register"]


def _f(v: Any) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else (f"{v:.3f}" if isinstance(v, float) else str(v))


def _scale(s: str | None) -> tuple[float, float] | None:
    from adlens.errors import InvalidInput

    if not s:
        return None
    try:
        lo, hi = (float(x) for x in s.replace(":", ",").split(","))
    except ValueError:
        raise InvalidInput(f"--scale wants 'LO,HI' (e.g. 1,5), got {s!r}") from None
    if hi <= lo:
        raise InvalidInput(f"--scale: HI must be > LO, got {s!r}")
    return lo, hi


def register(app: typer.Typer, evaluate_app: typer.Typer) -> None:
    from adlens.cli import (
        JsonOpt,
        WorkspaceOpt,
        _fail,
        _print_json,
        _progress,
        _workspace,
        out,
    )
    from adlens.errors import AdlensError

    def print_metrics(m: dict) -> None:
        from rich.table import Table

        t = Table(title="held-out ads")
        for col in ("pairs", "n", "MAE", "RMSE", "R²", "Spearman"):
            t.add_column(col, justify="left" if col == "pairs" else "right")
        rows = [("all", m.get("overall") or {})] + sorted((m.get("per_pair_type") or {}).items())
        for name, d in rows:
            t.add_row(name, _f(d.get("n")), _f(d.get("mae")), _f(d.get("rmse")), _f(d.get("r2")), _f(d.get("spearman")))
        out.print(t)
        gap = m.get("gap_positive_vs_negative")
        if gap:
            out.print(f"positive - negative gap: teacher {_f(gap.get('true'))}, student {_f(gap.get('pred'))}")
        imp = list((m.get("feature_importance") or {}).items())[:8]
        if imp:
            out.print("top features: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in imp))

    @app.command()
    def pairs(seed: int = typer.Option(0, "--seed", help="Random state of the negatives."),
              workspace: Path = WorkspaceOpt, as_json: bool = JsonOpt) -> None:
        """Training pairs per ad: its article, 2 random negatives, 1 safe contrast (artifacts/quality/pairs.parquet)."""
        from adlens.quality.jobs import build_pairs

        try:
            with _workspace(workspace) as ws:
                r = build_pairs(ws, random_state=seed)
        except AdlensError as e:
            _fail(e)
        if as_json:
            _print_json(r)
            return
        out.print(f"{r['n_pairs']} pairs from {r['n_ads']} ads: "
                  + ", ".join(f"{k} {v}" for k, v in r["per_type"].items()) + f" -> {r['path']}")
        if r["ads_without_article"]:
            out.print(f"{r['ads_without_article']} ads without an article written for them were left out")

    @app.command()
    def teach(
        teacher: str = typer.Option("rubric", "--teacher", help="rubric | labels | openai"),
        labels: Path = typer.Option(None, "--labels", help="labels teacher: CSV / Parquet of ratings or clicks."),
        ad_column: str = typer.Option(None, "--ad-column", help="labels: column of the ad id (default ad_id)."),
        article_column: str = typer.Option(None, "--article-column", help="labels: column of the article id (default article_id)."),
        score_column: str = typer.Option(None, "--score-column", help="labels: column of the rating (default score)."),
        scale: str = typer.Option(None, "--scale", help="labels: rating scale 'LO,HI', e.g. 1,5 (default: observed min, max)."),
        base_url: str = typer.Option(None, "--base-url",
                                     help="openai: base URL of an OpenAI-compatible API, e.g. https://api.openai.com/v1 "
                                          "or http://127.0.0.1:8000/v1 (/chat/completions is appended)."),
        model: str = typer.Option(None, "--model", help="openai: model name (part of the answer-cache key)."),
        api_key_env: str = typer.Option(None, "--api-key-env", metavar="VAR",
                                        help="openai: environment variable holding the API key (default "
                                             "OPENAI_API_KEY, then ADLENS_LLM_API_KEY; none for local servers)."),
        price_in: float = typer.Option(0.0, "--price-in", min=0.0, help="openai: USD per million prompt tokens (cost report, budget)."),
        price_out: float = typer.Option(0.0, "--price-out", min=0.0, help="openai: USD per million completion tokens."),
        budget: float = typer.Option(None, "--budget", help="openai: stop before spending more than this (USD); needs a price."),
        est_cost: float = typer.Option(None, "--est-cost", help="openai: budget estimate per call in USD (default: 1500 "
                                                                "prompt + 300 completion tokens; raised to the dearest call seen)."),
        workers: int = typer.Option(4, "--workers", "-j", min=1, help="openai: concurrent requests."),
        timeout: float = typer.Option(120.0, "--timeout", help="openai: seconds per request (seed: 120)."),
        retries: int = typer.Option(4, "--retries", min=0, help="openai: retries per pair on 429 / 5xx / timeouts (exponential backoff)."),
        json_mode: bool = typer.Option(True, "--json-mode/--no-json-mode",
                                       help="openai: ask for response_format=json_object (turn off for servers that reject it)."),
        workspace: Path = WorkspaceOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Label the pairs with a teacher (artifacts/quality/labels-<teacher>.parquet); resumable."""
        from adlens.quality.jobs import teach as run

        cols = {k: v for k, v in (("ad_id", ad_column), ("article_id", article_column), ("score", score_column)) if v}
        try:
            sc = _scale(scale)
            with _workspace(workspace) as ws, _progress(not as_json) as factory:
                r = run(ws, teacher, labels_file=labels, columns=cols or None, scale=sc, base_url=base_url, model=model,
                        api_key_env=api_key_env, budget=budget, max_workers=workers, timeout=timeout,
                        max_retries=retries, price_in_per_mtok=price_in, price_out_per_mtok=price_out,
                        est_cost_per_call=est_cost, json_mode=json_mode, progress=factory(f"teach {teacher}"))
        except AdlensError as e:
            _fail(e)
        if as_json:
            _print_json(r)
            return
        out.print(f"{r['teacher_id']}: {r['n_scored']}/{r['n']} pairs scored, mean {_f(r['mean'])}, "
                  f"cost ${r['total_cost']:.4f} -> {r['path']}")
        if r["errors"]:
            out.print(f"errors: {r['errors']}")
        rep = r.get("report")
        if rep:
            budget_txt = f" of budget ${rep['budget_usd']:.4f}" if rep.get("budget_usd") is not None else ""
            out.print(f"cost report: {rep['http_attempts']} HTTP calls ({rep['ok']} ok, {rep['failed']} failed, "
                      f"{rep['retries']} retries), {rep['cached']} answers from the cache (not paid again), "
                      f"{rep['prompt_tokens']} prompt + {rep['completion_tokens']} completion tokens, "
                      f"spent ${rep['spent_usd']:.4f}{budget_txt}")
            if rep.get("stopped_by_budget"):
                out.print(f"[yellow]budget reached:[/yellow] {rep['skipped_budget']} pairs not sent; rerun with a larger "
                          "--budget to continue (answers so far are cached)")
        if r.get("note"):
            out.print(f"[yellow]note:[/yellow] {r['note']}")

    @app.command()
    def train(teacher: str = typer.Option(None, "--teacher", help="Labels to learn (default: the newest labels file)."),
              seed: int = typer.Option(0, "--seed", help="Random state (split and model)."),
              workspace: Path = WorkspaceOpt, as_json: bool = JsonOpt) -> None:
        """Train the XGBoost student on the teacher's labels (split by ad) and register it."""
        from adlens.quality.jobs import train as run

        try:
            with _workspace(workspace) as ws:
                r = run(ws, teacher=teacher, random_state=seed)
        except AdlensError as e:
            _fail(e)
        if as_json:
            _print_json(r)
            return
        out.print(f"model {r['version']} ({r['teacher_id']}, {len(r['features'])} features, {r['n_rows']} pairs, "
                  f"{r['n_ads']} ads) -> {r['model_path']}")
        print_metrics(r["metrics"])
        if r.get("note"):
            out.print(f"[yellow]note:[/yellow] {r['note']}")

    @evaluate_app.command("quality")
    def evaluate_quality(version: str = typer.Option(None, "--version", help="Model version (default: latest)."),
                         report: Path = typer.Option(None, "--report", help="Also write an HTML page (metrics, per pair "
                                                     "type, feature importance, calibration plot) to this path."),
                         workspace: Path = WorkspaceOpt, as_json: bool = JsonOpt) -> None:
        """Held-out metrics of the latest quality model (overall, per pair type, gap, importance, calibration)."""
        from adlens.quality.jobs import evaluate_latest, write_evaluation_report

        try:
            with _workspace(workspace) as ws:
                r = evaluate_latest(ws, version)
            if report is not None:
                r["report"] = str(write_evaluation_report(r, report))
        except AdlensError as e:
            _fail(e)
        except OSError as e:
            _fail(AdlensError(f"cannot write the report: {e}"))
        if as_json:
            _print_json(r)
            return
        out.print(f"model {r['version']} (teacher {r['teacher']})")
        print_metrics(r["metrics"])
        cal = r["metrics"].get("calibration") or []
        if cal:
            out.print("calibration (mean predicted -> mean teacher, pairs): "
                      + ", ".join(f"{b['mean_pred']:.2f}->{b['mean_true']:.2f} ({b['n']})" for b in cal))
        if report is not None:
            out.print(f"[bold]report:[/bold] {r['report']}")

    @app.command()
    def score(ad_id: str = typer.Argument(..., help="An ad_id of the workspace."),
              article: str = typer.Argument(..., help="An article_id of the workspace, or an article's text."),
              workspace: Path = WorkspaceOpt, as_json: bool = JsonOpt) -> None:
        """Score one ad x article with the latest quality model (1-10)."""
        from adlens.quality.jobs import score as run

        try:
            with _workspace(workspace) as ws:
                r = run(ws, ad_id, article)
        except AdlensError as e:
            _fail(e)
        if as_json:
            _print_json(r)
            return
        out.print(f"{ad_id} x {r['article_id'] or 'text'}: {r['score']:.2f} (model {r['version']}, {r['teacher']})")
        out.print(", ".join(f"{k}={_f(v)}" for k, v in r["features"].items()))
