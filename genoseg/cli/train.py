"""genoseg train: learn a model from an annotated genome."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click


@click.command()
@click.option("--genome", "-g", required=True, type=click.Path(dir_okay=False),
              help="FASTA genome (plain, gzip or bgzip).")
@click.option("--annotation", "-a", required=True, type=click.Path(dir_okay=False),
              help="Labels: GFF3/GTF gene models (gene schemes) or BED with label names.")
@click.option("--config", "-c", "config_path", required=True, type=click.Path(dir_okay=False),
              help="Training config TOML (see configs/).")
@click.option("--tracks", type=click.Path(dir_okay=False), default=None,
              help="HDF5 feature tracks laid out /{seqid}/{track}.")
@click.option("--bam", "bams", multiple=True, type=click.Path(dir_okay=False),
              help="BAM file whose log1p read coverage is an input track (repeatable).")
@click.option("--min-mapq", default=0, show_default=True, help="MAPQ filter for --bam coverage.")
@click.option("--bam-stranded", is_flag=True,
              help="Two coverage channels per BAM (reads on + and on - strand) instead of one.")
@click.option("--sequences", default=None, metavar="ID,ID,...",
              help="Train (and validate) on these sequences of the genome only, e.g. "
                   "chrI,chrII,... to hold out other chromosomes for testing.")
@click.option("--val-sequences", default=None, metavar="ID,ID,...",
              help="Validate on exactly these sequences (the other annotated ones train) "
                   "instead of a random [train] val_fraction of them, e.g. to compare runs on "
                   "the same held-out records.")
@click.option("--init-from", default=None, metavar="MODEL",
              help="Start from this model's weights (a directory or shipped name; same "
                   "architecture as the config) instead of a random initialisation.")
@click.option("--steps", type=int, default=None, help="Override [train] steps.")
@click.option("--device", default=None, help="Override [train] device: auto, cpu, cuda[:N].")
@click.option("--seed", type=int, default=None, help="Override [train] seed.")
@click.option("--status", default="trained", show_default=True,
              help="Status word recorded in the model card (e.g. provisional).")
@click.option("--backend", type=click.Choice(["auto", "triton", "cpu", "torch"]), default="auto",
              show_default=True, envvar="GENOSEG_BACKEND", show_envvar=True,
              help="Semi-CRF implementation: auto (the Triton kernels on a CUDA device where "
                   "they can run, else the PyTorch reference), triton (the kernels or an error), "
                   "cpu (the compiled CPU twin of the reference, numba) or torch (the "
                   "reference).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--output", "-o", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Model directory to write (checkpoints there make the run resumable).")
def train(genome, annotation, config_path, tracks, bams, min_mapq, bam_stranded, sequences,
          val_sequences, init_from, steps, device, seed, status, backend, quiet, out_dir):
    """Train a model: windows from GENOME labelled by ANNOTATION, semi-CRF likelihood.

    Rerunning the same command on the same output directory resumes from its last checkpoint
    (after completion: rewrites the same model); --steps may differ on resume (the run is
    extended or shortened). A checkpoint made with another config (another --seed, say) is
    refused: use a new directory or delete OUTPUT/checkpoint.pt.
    """
    from genoseg.cli import check_output_path, parse_sequences
    from genoseg.config import load_config, override
    from genoseg.training.loop import TrainInputs
    from genoseg.training.loop import train as run_train

    check_output_path(str(Path(out_dir) / "weights.pt"), "--output")
    cfg = load_config(config_path)
    changes = {k: v for k, v in {"train.steps": steps, "train.device": device,
                                 "train.seed": seed}.items() if v is not None}
    if changes:
        cfg = override(cfg, changes)
    command = "genoseg " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    metrics = run_train(cfg, TrainInputs(genome, annotation, tracks, tuple(bams), min_mapq,
                                            bam_stranded, parse_sequences(sequences),
                                            parse_sequences(val_sequences, "--val-sequences")),
                        out_dir, command=command, status=status, progress=not quiet,
                        backend=backend, init_from=init_from)
    best = metrics.get("best_validation")
    judged = (f"validation nll/base {best['val_nll_per_base']:.4f}, accuracy "
              f"{best['val_accuracy']:.4f}" if best else "no validation records")
    click.echo(f"genoseg: wrote model to {out_dir} ({metrics['steps']} steps; {judged})", err=True)
