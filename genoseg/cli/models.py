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


@models.command("average")
@click.argument("inputs", nargs=-1, required=True, metavar="MODEL MODEL [MODEL ...]")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False),
              help="Model directory to write.")
def average(inputs, output):
    """Average the weights of models of one architecture (runs fine-tuned from the same
    weights: a "model soup"). The config, with its [annotate] settings, is the first model's."""
    import shlex
    import sys

    from genoseg.models import average_models

    command = "genoseg " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    out = average_models(list(inputs), output, command=command)
    click.echo(f"genoseg: wrote the average of {len(inputs)} models to {out}", err=True)
