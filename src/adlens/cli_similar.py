"""CLI commands for embeddings and similar products (registered by ``adlens.cli``)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape


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
    from adlens.embed.finetune import TUNE_EPOCHS
    from adlens.errors import AdlensError

    @app.command()
    def embed(
        kind: str = typer.Argument("all", help="ads | articles | products | all"),
        model: str = typer.Option(None, help="Embedder name: efficientnet-lite0-int8 or efficientnet-lite0 (fp32) (default for images: the model the workspace was created with, see `adlens init --image-model`), efficientnet-lite0-torch, minilm (default for texts), minilm-torch, or one you registered without required arguments."),
        workspace: Path = WorkspaceOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Compute missing image/text embeddings (stored per content hash and model; resumable)."""
        from adlens.embed.base import get_embedder
        from adlens.embed.jobs import (
            DEFAULT_TEXT_MODEL,
            KINDS,
            embed_workspace,
            image_model,
        )

        results = []
        try:
            with _workspace(workspace) as ws, _progress(not as_json) as factory:
                jobs = []
                for k in (KINDS if kind == "all" else [kind]):
                    if model:
                        jobs.append((k, model))
                    else:
                        jobs += [(k, DEFAULT_TEXT_MODEL)] if k == "articles" else [(k, image_model(ws)), (k, DEFAULT_TEXT_MODEL)]
                embedders = {name: _embedder(get_embedder, name) for _, name in jobs}  # all checked before any work
                for k, name in jobs:
                    results.append(embed_workspace(ws, k, embedders[name], progress=factory(f"embed {k} ({name})")))
        except AdlensError as e:
            _fail(e)
        if as_json:
            _print_json(results)
            return
        for r in results:
            out.print(f"{r['kind']:9s} {r['model_id']}: {r['computed']} computed, {r['cached']} cached, {len(r['failed'])} failed")

    @app.command()
    def similar(
        query: str = typer.Argument(..., help="An ad_id in the workspace, or an image file."),
        k: int = typer.Option(10, "--k", help="Number of products."),
        category: str = typer.Option(None, help="Only products of this category."),
        mode: str = typer.Option("auto", help="auto | tuned | learned | raw"),
        report: Path = typer.Option(None, "--report", help="Write an HTML page with the ad and its products."),
        workspace: Path = WorkspaceOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Products that look like the product in an ad (cosine top-k)."""
        from adlens.similar import similar_products, write_similar_report

        try:
            with _workspace(workspace) as ws:
                result = similar_products(ws, query, k=k, category=category, mode=mode)
                if report:
                    write_similar_report(ws, [result], report)
        except AdlensError as e:
            _fail(e)
        if as_json:
            _print_json(result)
            return
        out.print(f"{result['mode']} similarity ({result['model_id']}) for {query}:")
        for r in result["results"]:
            out.print(f"  {r['score']:.3f}  {r['product_id']}  [{r['category']}] {r['title'] or ''}  {r['url'] or ''}")
        if report:
            out.print(f"report: {report}")

    @app.command("similar-fit")
    def similar_fit(
        method: str = typer.Option("mlp", help="mlp | linear | lda"),
        finetune: bool = typer.Option(False, "--finetune", help="Fine-tune the whole backbone (slow; resumable)."),
        epochs: int = typer.Option(TUNE_EPOCHS, help="Fine-tuning epochs."),
        seed: int = typer.Option(0, help="Random seed."),
        workspace: Path = WorkspaceOpt,
        as_json: bool = JsonOpt,
    ) -> None:
        """Learn a similarity from the catalogue's own categories (used by `similar` from then on)."""
        from adlens.similar import fit_projection, fit_tuned

        try:
            with _workspace(workspace) as ws, _progress(not as_json) as factory:
                result = (fit_tuned(ws, epochs=epochs, random_state=seed, progress=factory("fine-tune")) if finetune
                          else fit_projection(ws, method=method, random_state=seed, progress=factory("embed products")))
        except (AdlensError, ValueError) as e:  # ValueError: the library's argument checks (method, sizes)
            _fail(e)
        if as_json:
            _print_json(result)
            return
        out.print(f"learned similarity fitted on {result['products']} products, {result['categories']} categories -> {result['path']}")
        for s in result.get("skipped", []):
            out.print(f"  [red]skipped[/red] product {escape(str(s['product_id']))}: {escape(s['reason'])}", soft_wrap=True, highlight=False)

    @evaluate_app.command("similar")
    def evaluate_similar_cmd(
        test_manifest: Path = typer.Argument(..., help="CSV/JSONL with path and category (or label)."),
        train: Path = typer.Option(None, "--train", help="Catalogue to fit the learned similarity on."),
        k: int = typer.Option(10, "--k"),
        method: str = typer.Option("mlp", help="Learned similarity: mlp | linear | lda"),
        finetune: bool = typer.Option(False, "--finetune", help="Also fine-tune the backbone on --train (slow)."),
        epochs: int = typer.Option(TUNE_EPOCHS, help="Fine-tuning epochs."),
        tune_dir: Path = typer.Option(None, help="Keep the tuned model here (resumable)."),
        seed: int = typer.Option(0),
        as_json: bool = JsonOpt,
    ) -> None:
        """Seed 001's evaluation (label-match AUC, precision/recall@k) with baselines."""
        from adlens.similar import evaluate_similar

        try:
            with _progress(not as_json) as factory:
                result = evaluate_similar(test_manifest, train, k=k, method=method, random_state=seed,
                                          progress=factory("embed test"), finetune=finetune, epochs=epochs,
                                          tune_dir=tune_dir, tune_progress=factory("fine-tune"))
        except (AdlensError, ValueError) as e:  # ValueError: too few rows for --k, one label only, ...
            _fail(e)
        if as_json:
            _print_json(result)
            return
        out.print(f"{'method':18s} {'AUC':>6s} {'P@k':>6s} {'R@k':>6s}")
        for name, m in result["methods"].items():
            out.print(f"{name:18s} {m['auc']:6.3f} {m['precision']:6.3f} {m['recall']:6.3f}")
        out.print(f"{result['queries']} queries, {len(result['rejected'])} rejected")


def _embedder(get_embedder, name: str):
    """``get_embedder(name)`` with the failures a user can fix as clear errors: an unknown name, or a
    registered embedder that needs arguments the CLI cannot give (e.g. open_clip's checkpoint)."""
    from adlens.errors import InvalidInput

    try:
        return get_embedder(name)
    except KeyError as e:
        raise InvalidInput(str(e).strip("'\"")) from None
    except (TypeError, ImportError) as e:
        raise InvalidInput(f"--model {name}: cannot be built here ({e}); embedders that need arguments are "
                           "used from Python (adlens.embed.get_embedder(name, ...))") from None
