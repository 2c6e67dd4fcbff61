"""``adlens features``: compute creative (M), article and pair (F) features; show one ad's.

Wired into the main CLI by ``register(app)`` (called from :mod:`adlens.cli`)::

    adlens features ads      [--workers N] [--limit N] [--json] [-w WS]
    adlens features articles [--workers N] [--limit N] [--json] [-w WS]
    adlens features pairs    [--pairs FILE.csv] [--limit N] [--json] [-w WS]
    adlens features all      [--workers N] [--json] [-w WS]      (ads, articles, then pairs)
    adlens features show AD_ID [--json] [-w WS]
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer

from adlens.output import json_safe

__all__ = ["register"]


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return ", ".join(map(str, v)) or "(none)"
    return str(v)


def register(app: typer.Typer) -> None:
    """Add the ``features`` command group to ``app``."""
    # Imported here, not at module level: adlens.cli calls register() while it is being imported.
    from adlens import cli as c
    from adlens.errors import AdlensError

    features_app = typer.Typer(help="Creative (M), article and ad x article (F) features: compute, cache, show.",
                               no_args_is_help=True)
    app.add_typer(features_app, name="features")

    WorkersOpt = typer.Option(None, "--workers", "-j", min=1,
                              help="Parallel worker threads, each with its own models (default: 1 for small jobs, else 2).")
    LimitOpt = typer.Option(None, "--limit", min=0, help="Compute at most N missing items this time.")

    def print_result(r: dict) -> None:
        from rich.markup import escape
        from rich.table import Table

        c._summary_table(f"features {r['kind']}", {k: r[k] for k in ("total", "computed", "cached", "pending", "seconds",
                                                                     "ms_per_item") if r.get(k) is not None})
        t = Table(title=f"{r['kind']}: coverage and distribution over {r['rows']} rows")
        for col, just in (("feature", "left"), ("coverage", "right"), ("min", "right"), ("median", "right"),
                          ("max", "right"), ("top values", "left")):
            t.add_column(col, justify=just)
        from adlens.features.jobs import NULL_BY_DESIGN

        for name, cov in r["coverage"].items():
            d = r["distribution"].get(name, {})
            top = escape(", ".join(f"{str(k)[:30]} ({n})" for k, n in d.get("top", [])[:3]))
            if not top and d.get("mean_chars") is not None:
                top = f"{d['distinct']} distinct, {d['mean_chars']:.0f} chars on average"
            if cov is not None and cov < 1 and name in NULL_BY_DESIGN:
                top = f"{top}  [dim]({escape(NULL_BY_DESIGN[name])})[/dim]".strip()
            t.add_row(escape(name), "–" if cov is None else f"{100 * cov:.1f} %", _fmt(d.get("min")),
                      _fmt(d.get("p50")), _fmt(d.get("max")), top)
        c.out.print(t)
        if r.get("joint"):
            c.out.print(f"joint image-text space: {r['joint'].get('status')} {r['joint'].get('id', '')}")
        for f in r["failed"][:50]:
            item = f.get("ad_id") or f.get("article_id") or f.get("pair")
            c.out.print(f"  [red]failed[/red] {escape(str(item))}: {escape(f['reason'])}", soft_wrap=True, highlight=False)
        if len(r["failed"]) > 50:
            c.out.print(f"  ... and {len(r['failed']) - 50} more (see --json)")

    def run(kinds: tuple[str, ...], workspace: Path | None, as_json: bool, **kw) -> None:
        from adlens.features.jobs import compute_features

        results = {}
        try:
            with c._workspace(workspace) as ws, c._progress(not as_json) as factory:
                for kind in kinds:
                    opts = {k: v for k, v in kw.items() if not (kind == "pairs" and k == "workers")}
                    results[kind] = compute_features(ws, kind, progress=factory(f"features {kind}"), **opts)
        except AdlensError as e:
            c._fail(e)
        if as_json:
            c._print_json(results[kinds[0]] if len(kinds) == 1 else results)
            return
        for r in results.values():
            print_result(r)

    @features_app.command("ads")
    def ads_cmd(workers: int = WorkersOpt, limit: int = LimitOpt, workspace: Path = c.WorkspaceOpt,
                as_json: bool = c.JsonOpt) -> None:
        """Creative (M) features of every ad not computed yet (resumable)."""
        run(("ads",), workspace, as_json, workers=workers, limit=limit)

    @features_app.command("articles")
    def articles_cmd(workers: int = WorkersOpt, limit: int = LimitOpt, workspace: Path = c.WorkspaceOpt,
                     as_json: bool = c.JsonOpt) -> None:
        """Context features (topic, entities, valence, arousal, embedding) of every article not computed yet."""
        run(("articles",), workspace, as_json, workers=workers, limit=limit)

    PairsOpt = typer.Option(None, "--pairs", help="CSV with columns ad_id, article_id (default: each ad with the "
                                                   "article written for it).")

    @features_app.command("pairs")
    def pairs_cmd(pairs: Path = PairsOpt, limit: int = LimitOpt, workspace: Path = c.WorkspaceOpt,
                  as_json: bool = c.JsonOpt) -> None:
        """The six F features of (ad, article) pairs; needs the ads' and articles' features first."""
        run(("pairs",), workspace, as_json, limit=limit, pairs=pairs)

    @features_app.command("all")
    def all_cmd(workers: int = WorkersOpt, workspace: Path = c.WorkspaceOpt, as_json: bool = c.JsonOpt) -> None:
        """Ads, articles, then each ad with the article written for it."""
        run(("ads", "articles", "pairs"), workspace, as_json, workers=workers)

    @features_app.command("show")
    def show_cmd(ad_id: str = typer.Argument(..., help="The ad to show."), workspace: Path = c.WorkspaceOpt,
                 as_json: bool = c.JsonOpt) -> None:
        """One ad's stored features (embedding vectors shown as their store keys, not the numbers)."""
        from rich.table import Table

        from adlens.errors import InvalidInput
        from adlens.features.jobs import ad_records, load_features

        try:
            with c._workspace(workspace) as ws:
                if not ad_records(ws, [ad_id]):
                    raise InvalidInput(f"unknown ad_id {ad_id!r}")
                rows = load_features(ws, "ads", [ad_id])
                if not rows:
                    raise InvalidInput(f"ad {ad_id!r} has no features yet; run `adlens features ads`")
        except AdlensError as e:
            c._fail(e)
        row = json_safe(rows[0])
        if as_json:
            c._print_json(row)
            return
        t = Table(title=f"features of {ad_id}")
        t.add_column("feature")
        t.add_column("value", overflow="fold")
        for k, v in row.items():
            t.add_row(k, _fmt(v))
        c.out.print(t)
