"""The ``adlens`` command line: thin wrappers that parse, call one library function, print.

Every command that produces results accepts ``--json`` for machine use. The workspace comes from
``--workspace`` or ``ADLENS_WORKSPACE`` (default ``./workspace``).
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from adlens.errors import AdlensError

app = typer.Typer(help="adlens — ad-creative intelligence engine.", no_args_is_help=True, add_completion=False)
ingest_app = typer.Typer(help="Add ads, articles or products to the workspace.", no_args_is_help=True)
dedup_app = typer.Typer(help="Find duplicate creatives (ledger or plain folder).", no_args_is_help=True)
evaluate_app = typer.Typer(help="Evaluate a capability on labelled data.", no_args_is_help=True)
app.add_typer(ingest_app, name="ingest")
app.add_typer(dedup_app, name="dedup")
app.add_typer(evaluate_app, name="evaluate")

console = Console(stderr=True)
out = Console()

WorkspaceOpt = typer.Option(None, "--workspace", "-w", envvar="ADLENS_WORKSPACE", help="Workspace folder.")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")


def _print_json(obj) -> None:
    from adlens.output import json_safe

    sys.stdout.write(json.dumps(json_safe(obj), indent=2, default=str) + "\n")


@contextmanager
def _progress(enabled: bool = True):
    """Yield a factory ``description -> callback(done, total)`` backed by one Rich progress display."""
    if not enabled:
        yield lambda _desc: (lambda _done, _total: None)
        return
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    ) as prog:
        tasks: dict[str, int] = {}

        def factory(desc: str):
            def update(done: int, total: int) -> None:
                if desc not in tasks:
                    tasks[desc] = prog.add_task(desc, total=total)
                prog.update(tasks[desc], completed=done, total=total)

            return update

        yield factory


def _fail(e: Exception) -> None:
    console.print(f"[red]error:[/red] {escape(str(e))}", soft_wrap=True, highlight=False)
    raise typer.Exit(2)


def _workspace(path: Path | None):
    from adlens.workspace import open_workspace

    return open_workspace(path)


def _summary_table(title: str, summary: dict) -> None:
    t = Table(title=title)
    t.add_column("counter")
    t.add_column("value", justify="right")
    for k, v in summary.items():
        if k not in ("rejected", "run_id", "kind"):
            t.add_row(k, str(v))
    if "rejected" in summary:
        t.add_row("rejected", str(len(summary["rejected"])))
    out.print(t)
    for r in summary.get("rejected", [])[:50]:
        out.print(f"  [red]rejected[/red] {escape(r['path'])}: {escape(r['reason'])}", soft_wrap=True, highlight=False)


@app.command()
def init(
    workspace: Path = WorkspaceOpt,
    image_model: str = typer.Option(
        None, "--image-model",
        help="Image embedder the workspace is built on, pinned for its life: efficientnet-lite0-int8 "
             "(default, ADLENS_IMAGE_MODEL) or efficientnet-lite0 (fp32, 1.6x slower), or a registered plug-in. "
             "On an existing workspace it must match the pinned one."),
) -> None:
    """Create (or upgrade) a workspace: catalog database + artifact folders."""
    from adlens.config import get_settings
    from adlens.workspace import init_workspace

    try:
        ws = init_workspace(workspace, get_settings(image_model=image_model))
    except AdlensError as e:
        _fail(e)
    out.print(f"workspace ready at {ws.root} (catalog: {ws.engine.url.render_as_string(hide_password=True)}; "
              f"image model: {ws.image_model})")


@app.command()
def sample(
    out_dir: Path = typer.Argument(..., help="Folder to write the sample corpus into."),
    n_ads: int = typer.Option(240, help="Number of distinct creatives (variants come on top)."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives identical files."),
    as_json: bool = JsonOpt,
) -> None:
    """Render a synthetic demo corpus (ads, near-duplicates, articles, products, events)."""
    from adlens.sample import make_sample

    with _progress(not as_json) as factory:
        bar = factory("sample")
        summary = make_sample(out_dir, n_ads=n_ads, seed=seed, progress=lambda _s, d, t: bar(d, t))
    if as_json:
        _print_json(summary)
    else:
        out.print(f"sample corpus written to {out_dir}")
        _summary_table("sample", {k: v for k, v in summary["counts"].items() if not isinstance(v, (dict, list))})


@ingest_app.command("ads")
def ingest_ads_cmd(
    path: Path = typer.Argument(..., help="Folder (recursive) or CSV/JSONL manifest."),
    day: str = typer.Option(None, help="Day (YYYY-MM-DD) for rows without one; default today (UTC)."),
    workspace: Path = WorkspaceOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Ingest ad creatives and update the dedup ledger."""
    from adlens.ingest.ads import ingest_ads

    try:
        with _workspace(workspace) as ws, _progress(not as_json) as factory:
            summary = ingest_ads(ws, path, day=day, progress=factory("ingest ads")).to_dict()
    except AdlensError as e:
        _fail(e)
    _print_json(summary) if as_json else _summary_table("ingest ads", summary)


@ingest_app.command("articles")
def ingest_articles_cmd(
    path: Path = typer.Argument(..., help="JSONL or CSV with text (required), article_id, title, topic, ad_id, url."),
    workspace: Path = WorkspaceOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Ingest articles (contexts)."""
    from adlens.ingest.articles import ingest_articles

    try:
        with _workspace(workspace) as ws, _progress(not as_json) as factory:
            summary = ingest_articles(ws, path, progress=factory("ingest articles")).to_dict()
    except AdlensError as e:
        _fail(e)
    _print_json(summary) if as_json else _summary_table("ingest articles", summary)


@ingest_app.command("products")
def ingest_products_cmd(
    path: Path = typer.Argument(..., help="Folder (category = sub-folder) or CSV/JSONL manifest."),
    workspace: Path = WorkspaceOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Ingest a product catalogue."""
    from adlens.ingest.products import ingest_products

    try:
        with _workspace(workspace) as ws, _progress(not as_json) as factory:
            summary = ingest_products(ws, path, progress=factory("ingest products")).to_dict()
    except AdlensError as e:
        _fail(e)
    _print_json(summary) if as_json else _summary_table("ingest products", summary)


@dedup_app.command("check")
def dedup_check_cmd(
    images: list[Path] = typer.Argument(..., help="Image files to look up (not ingested)."),
    cascade: bool = typer.Option(False, "--cascade", help="Also compare embeddings with the stored ads' (crops, overlays)."),
    threshold: float = typer.Option(None, help="Cosine threshold with --cascade (default ADLENS_CASCADE_THRESHOLD, 0.97)."),
    verify_min: float = typer.Option(None, "--verify-min", help="With --cascade: stored ads from this cosine up to the threshold are pixel-checked and listed when one image is a crop of the other or the other with a sticker or strip over it (default ADLENS_CASCADE_VERIFY_MIN, 0.8)."),
    workspace: Path = WorkspaceOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Look images up in the ledger: seen before? which creative, when, how often?"""
    from adlens.dedup.lookup import check_images

    try:
        with _workspace(workspace) as ws:
            results = check_images(ws, images, cascade=cascade, threshold=threshold, verify_min=verify_min)
    except AdlensError as e:
        _fail(e)
    if as_json:
        _print_json(results)
        return
    for r in results:
        if r.get("error"):
            out.print(f"[red]{r['path']}[/red]: {r['error']}")
        elif not r["matches"] and r.get("embedding_matches"):
            m = r["embedding_matches"][0]
            how = f", {m.get('edit', 'crop')}: pixels agree {m['agreement']}" if m.get("pixel_check") else ""
            out.print(f"{r['path']}: [yellow]embedding duplicate[/yellow] of {', '.join(m['ad_ids']) or m['image_id']} "
                      f"(cosine {m['cosine']}{how}, first seen {m['first_seen']}, {len(r['embedding_matches'])} match(es))")
        elif not r["matches"]:
            out.print(f"{r['path']}: [green]new[/green] (not in the ledger)")
        else:
            m = r["matches"][0]
            out.print(
                f"{r['path']}: [yellow]{r['status']}[/yellow] of {', '.join(m['ad_ids']) or m['image_id']} "
                f"(first seen {m['first_seen']}, last seen {m['last_seen']}, seen {m['times_seen']}x, "
                f"pHash distance {m['phash_distance']}, {len(r['matches'])} match(es))"
            )


@dedup_app.command("find")
def dedup_find_cmd(
    folder: Path = typer.Argument(..., help="Folder of images (recursive)."),
    report: Path = typer.Option(None, "--report", help="Write an HTML page with every group's thumbnails."),
    phash_radius: int = typer.Option(None, help="Max pHash Hamming distance (default: tuned value)."),
    cascade: bool = typer.Option(False, "--cascade", help="Also find embedding duplicates hashes miss (crops, overlays)."),
    threshold: float = typer.Option(None, help="Cosine threshold of the embedding cascade (default 0.97)."),
    verify_min: float = typer.Option(None, "--verify-min", help="With --cascade: pairs from this cosine up to the threshold are pixel-checked and linked when one is a crop of the other or has an overlay (default 0.8; set it to the threshold to switch the check off)."),
    relayout: bool = typer.Option(False, "--relayout", help="Also link re-layouts: the same photo in another ad size (SIFT in photo regions; ~50 ms an image)."),
    min_inliers: int = typer.Option(None, "--min-inliers", help="SIFT inliers a re-layout link needs (default 12; 8 links more on lossless banners, with a small risk of false links on JPEG)."),
    as_json: bool = JsonOpt,
) -> None:
    """Deduplicate a plain folder, no workspace needed."""
    from adlens.dedup.folder import find_duplicates, write_folder_report

    try:
        with _progress(not as_json) as factory:
            result = find_duplicates(folder, phash_radius=phash_radius, progress=factory("hash"),
                                     cascade=cascade, cascade_threshold=threshold, verify_min=verify_min,
                                     cascade_progress=factory("pixel check") if cascade else None,
                                     relayout=relayout,
                                     relayout_min_inliers=min_inliers,
                                     relayout_progress=factory("re-layout pairs") if relayout else None)
        if report:
            write_folder_report(result, report)
    except AdlensError as e:
        _fail(e)
    if as_json:
        _print_json(result)
        return
    for g in result["groups"]:
        out.print(f"[bold]group[/bold] ({len(g)}): keep {g[0]}")
        for p in g[1:]:
            out.print(f"    duplicate {p}")
    for r in result["rejected"]:
        out.print(f"[red]rejected[/red] {r['path']}: {r['reason']}")
    for a, b, cos in result.get("embedding_pairs", []):
        out.print(f"[cyan]embedding duplicate[/cyan] (cosine {cos}): {a} ~ {b}")
    for edit in ("crop", "overlay"):
        for a, b, cos, agreement in result.get(f"{edit}_pairs", []):
            out.print(f"[cyan]{edit}[/cyan] (cosine {cos}, pixels agree {agreement}): {a} ~ {b}")
    for r in result.get("embedding_errors", []):
        out.print(f"[red]pixel check skipped[/red] {r['path']}: {r['reason']}")
    for a, b, n in result.get("relayout_pairs", []):
        out.print(f"[cyan]re-layout[/cyan] ({n} SIFT inliers): {a} ~ {b}")
    for r in result.get("relayout_errors", []):
        out.print(f"[red]re-layout stage skipped[/red] {r['path']}: {r['reason']}")
    out.print(f"{len(result['groups'])} groups, {result['files_in_groups']} files in groups, {len(result['rejected'])} rejected")
    if report:
        out.print(f"report: {report}")


@dedup_app.command("groups")
def dedup_groups_cmd(workspace: Path = WorkspaceOpt, as_json: bool = JsonOpt) -> None:
    """List the ledger's duplicate groups (>= 2 ads), canonical ad first."""
    from adlens.store.ledger import duplicate_groups

    try:
        with _workspace(workspace) as ws:
            groups = duplicate_groups(ws.engine)
    except AdlensError as e:
        _fail(e)
    if as_json:
        _print_json({"groups": groups})
        return
    def name(m: dict) -> str:  # members joined by a later stage say which
        return m["ad_id"] + (f" ({'+'.join(m['linked_by'])})" if m["linked_by"] else "")

    for g in groups:
        out.print(f"[bold]{g['canonical_ad_id']}[/bold]: " + ", ".join(name(m) for m in g["members"][1:]))
    out.print(f"{len(groups)} groups")


@app.command()
def run(
    ads: Path = typer.Option(None, help="Ads folder or manifest to ingest first."),
    articles: Path = typer.Option(None, help="Articles JSONL/CSV to ingest first."),
    products: Path = typer.Option(None, help="Products folder or manifest to ingest first."),
    day: str = typer.Option(None, help="Day for ads without one (YYYY-MM-DD)."),
    report: Path = typer.Option(None, help="Report path (default WORKSPACE/reports/<run_id>.html)."),
    workspace: Path = WorkspaceOpt,
    as_json: bool = JsonOpt,
) -> None:
    """The main job: ingest the given inputs, run every stage, write the HTML run report."""
    from adlens.pipeline import RunContext, run_pipeline

    try:
        with _workspace(workspace) as ws, _progress(not as_json) as factory:
            ctx = RunContext(ws, ads=ads, articles=articles, products=products, day=day, progress=factory)
            result = run_pipeline(ctx, report_path=report)
    except AdlensError as e:
        _fail(e)
    if as_json:
        _print_json(result)
        return
    for kind, s in result.get("ingest", {}).items():
        _summary_table(f"ingest {kind}", s)
    d = result["dedup"]
    out.print(
        f"dedup: {d['creatives']} ads, {d['unique_creatives']} unique, {d['groups']} duplicate groups, "
        f"{d['redundant_creatives']} redundant"
    )
    out.print(f"[bold]report:[/bold] {result['report']}")


@app.command()
def status(workspace: Path = WorkspaceOpt, as_json: bool = JsonOpt) -> None:
    """Counts of what the workspace holds and its recent runs."""
    from adlens.store.catalog import catalog_counts
    from adlens.store.runs import recent_runs

    try:
        with _workspace(workspace) as ws:
            counts = catalog_counts(ws.engine)
            runs = recent_runs(ws.engine, 10)
    except AdlensError as e:
        _fail(e)
    if as_json:
        _print_json({"image_model": ws.image_model, "counts": counts, "runs": runs})
        return
    _summary_table(f"workspace {ws.root} (image model {ws.image_model})", counts)
    for r in runs:
        out.print(f"{r['started_at']:%Y-%m-%d %H:%M} {r['run_id']} {r['status']}")


def _register_plugins() -> None:
    # capability modules add their own commands; imported here so `adlens --help` lists them
    from adlens import cli_similar

    cli_similar.register(app, evaluate_app)
    from adlens import cli_features

    cli_features.register(app)
    from adlens import cli_quality

    cli_quality.register(app, evaluate_app)
    from adlens import cli_bandit

    cli_bandit.register(app)


_register_plugins()


def main() -> None:  # pragma: no cover
    app()
