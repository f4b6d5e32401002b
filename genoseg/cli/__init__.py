"""The ``genoseg`` command: a click group whose subcommands load on first use.

Nothing heavy is imported here (no torch), so ``genoseg --help`` answers instantly. Problems the
user can fix (GenosegError, click usage errors) end as one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import click

from genoseg import __version__

SUBCOMMANDS = {
    "train": ("genoseg.cli.train", "train", "Train a model from an annotated genome."),
    "annotate": ("genoseg.cli.annotate", "annotate", "Annotate a genome with a model."),
    "models": ("genoseg.cli.models", "models", "List or describe the shipped models."),
    "evaluate": ("genoseg.cli.evaluate", "evaluate",
                 "Score predicted gene models against a reference (CDS level, as gt eval)."),
}


class LazyGroup(click.Group):
    """Imports a subcommand's module only when that subcommand runs or shows its help."""

    def list_commands(self, ctx):
        return list(SUBCOMMANDS)

    def get_command(self, ctx, name):
        if name not in SUBCOMMANDS:
            return None
        module, attr, _ = SUBCOMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx, formatter):
        # Short help from the table, so `genoseg --help` imports no subcommand module.
        rows = [(name, help_) for name, (_, _, help_) in SUBCOMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="genoseg")
@click.option("-v", "--verbose", is_flag=True, help="Log debugging detail to stderr.")
def cli(verbose: bool) -> None:
    """genoseg: genome segmentation with a neural encoder and an exact semi-Markov CRF.

    Reads FASTA genomes (plus optional BAM coverage and HDF5 tracks), writes GFF3/BED segment
    annotations and posterior tracks. Start with: genoseg annotate genome.fa -o genes.gff3
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="genoseg: %(message)s", stream=sys.stderr)


def check_output_path(path: str | None, option: str) -> None:
    """UsageError unless ``path`` could be created: its nearest existing ancestor must be a
    writable directory. Checked before any work, so a typo does not cost a whole run."""
    if path is None:
        return
    from pathlib import Path

    parent = Path(path).absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise click.BadParameter(f"cannot write {path}: {parent} is not a writable directory",
                                 param_hint=option)


def parse_sequences(text: str | None, option: str = "--sequences") -> tuple[str, ...]:
    """--sequences "chrI,chrII" -> ("chrI", "chrII"); None or "" -> () (all sequences)."""
    if not text:
        return ()
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if len(set(names)) != len(names):
        raise click.UsageError(f"{option} lists a sequence twice")
    return names


def _is_gpu_out_of_memory(exc: BaseException) -> bool:
    """torch's CUDA out-of-memory error (not a bug: the input is too large for the card)."""
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    return oom is not None and isinstance(exc, oom)


def main(argv=None) -> None:
    """Entry point: run the CLI, turning user-fixable errors into one line and exit status 1."""
    from genoseg.errors import GenosegError

    try:
        cli.main(args=argv, prog_name="genoseg", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("genoseg: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except GenosegError as exc:
        click.echo(f"genoseg: error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("genoseg: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(141)
    except Exception as exc:  # a bug: keep the traceback available, but say so in one line
        if _is_gpu_out_of_memory(exc):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            click.echo(f"genoseg: error: out of GPU memory ({first[:160]}): too large for this "
                       "card (annotate: fewer or shorter contigs, or no --posteriors; train: a "
                       "smaller [train] batch_size or window), or use --device cpu", err=True)
            sys.exit(1)
        if os.environ.get("GENOSEG_DEBUG"):
            raise
        click.echo(f"genoseg: internal error: {type(exc).__name__}: {exc} "
                   "(set GENOSEG_DEBUG=1 for the traceback; please report it)", err=True)
        sys.exit(2)
