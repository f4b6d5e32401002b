"""genoseg models: the shipped models and their cards."""

from __future__ import annotations

import click


@click.group()
def models():
    """List or describe models."""


@models.command("list")
def list_():
    """List the shipped models."""
    from genoseg.models import DEFAULT_MODEL, list_models

    for m in list_models():
        mark = " (default)" if m["name"] == DEFAULT_MODEL else ""
        click.echo(f"{m['name']}{mark}\t{m['status']}\t{m['summary']}")


@models.command("show")
@click.argument("model", required=False)
def show(model):
    """Print the model card of MODEL (a shipped name or a directory; default: the default)."""
    from pathlib import Path

    from genoseg.models import resolve_model_dir

    path = resolve_model_dir(model)
    card = Path(path) / "MODEL_CARD.md"
    click.echo(card.read_text() if card.exists() else f"{path}: no MODEL_CARD.md")
