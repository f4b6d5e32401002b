"""genoseg annotate: segment a genome with a trained model."""

from __future__ import annotations

import click


@click.command()
@click.argument("genome", type=click.Path(dir_okay=False))
@click.option("--model", "-m", default=None,
              help="Model directory or shipped model name (default: the shipped default model).")
@click.option("--output", "-o", "gff3", default=None, type=click.Path(dir_okay=False),
              help="GFF3 gene models (gene-structure models). Default: stdout when no other "
                   "output is given.")
@click.option("--bed", default=None, type=click.Path(dir_okay=False),
              help="BED9 of predicted segments (non-background labels, itemRgb per label).")
@click.option("--posteriors", "posteriors", default=None,
              help="Prefix for posterior tracks: PREFIX.h5 plus PREFIX.<track>.bw per label and "
                   "for boundaries.")
@click.option("--bedgraph", is_flag=True, help="With --posteriors, also write bedGraph files.")
@click.option("--tracks", type=click.Path(dir_okay=False), default=None,
              help="HDF5 feature tracks, if the model was trained with them.")
@click.option("--bam", "bams", multiple=True, type=click.Path(dir_okay=False),
              help="BAM coverage inputs, if the model was trained with them.")
@click.option("--min-mapq", type=int, default=None,
              help="MAPQ filter for --bam coverage (default: the one the model was trained with).")
@click.option("--sequences", default=None, metavar="ID,ID,...",
              help="Annotate only these sequences of the genome (default: all).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--backend", type=click.Choice(["auto", "triton", "cpu", "torch"]), default="auto",
              show_default=True, envvar="GENOSEG_BACKEND", show_envvar=True,
              help="Semi-CRF implementation: auto (the Triton kernels on a CUDA device where "
                   "they can run, else the PyTorch reference), triton (the kernels or an error), "
                   "cpu (the compiled CPU twin of the reference, numba) or torch (the "
                   "reference).")
@click.option("--intergenic-bias", type=float, default=None, metavar="NATS",
              help="Gene models: nats per base added to the intergenic score (overrides the "
                   "model's [annotate] intergenic_bias). Higher: shorter, more separate genes; "
                   "lower: longer genes.")
@click.option("--intron-penalty", type=float, default=None, metavar="NATS",
              help="Gene models: nats per base subtracted from the intron score (overrides the "
                   "model's [annotate] intron_penalty). Higher: fewer genes joined through long "
                   "introns; exons are not penalised.")
@click.option("--min-gene-score", type=float, default=None, metavar="P",
              help="Gene models: leave out genes whose score (mean posterior of their exons' "
                   "labels, the GFF3 score column) is below P, in [0, 1] (overrides the "
                   "model's [annotate] min_gene_score; 0 keeps every decoded gene).")
@click.option("--orf-start-bonus", type=float, default=None, metavar="NATS",
              help="Gene models: nats added to the score of a start codon that opens the "
                   "longest open reading frame it lies in (overrides the model's [annotate] "
                   "orf_start_bonus; 0: off).")
@click.option("--gene-model", type=click.Choice(["complete", "partial"]), default=None,
              help="Gene models: complete (every contig starts and ends between genes) or "
                   "partial (a contig end may cut a gene, as in a draft assembly; a cut gene "
                   "is written as a partial gene model, NCBI-style: partial=true and "
                   "start_range/end_range, its CDS phases counted from the cut). Default: the "
                   "model's [annotate] gene_model, complete unless set.")
@click.option("--rc-average/--no-rc-average", default=None,
              help="Average the encoder's scores with its scores on the reverse-complemented "
                   "contig (test-time augmentation; twice the encoder's time; not with stranded "
                   "BAM coverage). Default: the model's [annotate] rc_average, off unless set.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def annotate(genome, model, gff3, bed, posteriors, bedgraph, tracks, bams, min_mapq, sequences,
             device, backend, intergenic_bias, intron_penalty, min_gene_score, orf_start_bonus,
             gene_model, rc_average, quiet):
    """Annotate GENOME (FASTA): each contig is decoded whole by the semi-CRF."""
    import sys
    import tempfile
    from pathlib import Path

    from genoseg.annotate.pipeline import AnnotateOutputs
    from genoseg.annotate.pipeline import annotate as run_annotate
    from genoseg.cli import check_output_path, parse_sequences
    from genoseg.crf import backend as crf
    from genoseg.models import load_model
    from genoseg.training.loop import pick_device

    if bedgraph and posteriors is None:
        raise click.UsageError("--bedgraph needs --posteriors PREFIX")
    check_output_path(gff3, "--output")
    check_output_path(bed, "--bed")
    check_output_path(posteriors and f"{posteriors}.h5", "--posteriors")
    dev = pick_device(device)
    crf.resolve(dev, backend)  # an unusable --backend fails before the model is loaded
    net, meta = load_model(model, device=str(dev))
    overrides = (("--intergenic-bias", "intergenic_bias", intergenic_bias),
                 ("--intron-penalty", "intron_penalty", intron_penalty),
                 ("--min-gene-score", "min_gene_score", min_gene_score),
                 ("--orf-start-bonus", "orf_start_bonus", orf_start_bonus),
                 ("--gene-model", "gene_model", gene_model),
                 ("--rc-average", "rc_average", rc_average))
    if any(value is not None for _, _, value in overrides):
        from genoseg.config import override
        from genoseg.errors import InputError

        if gene_model is not None and net.config.crf.grammar != "phase":
            raise InputError(f"--gene-model applies to gene-grammar models (crf grammar "
                             f"'phase'); this model's grammar is '{net.config.crf.grammar}'")
        for option, key, value in overrides:
            if value is not None:
                net.config = override(net.config, {f"annotate.{key}": value}, label=option)
    to_stdout = gff3 is None and bed is None and posteriors is None
    with tempfile.TemporaryDirectory() as tmp:
        target = str(Path(tmp) / "out.gff3") if to_stdout else gff3
        summary = run_annotate(net, meta, genome,
                               AnnotateOutputs(gff3=target, bed=bed, posteriors=posteriors,
                                               bedgraph=bedgraph),
                               device=dev, tracks=tracks, bams=tuple(bams), min_mapq=min_mapq,
                               progress=not quiet, backend=backend,
                               sequences=parse_sequences(sequences))
        if to_stdout:
            sys.stdout.write(Path(target).read_text())
            sys.stdout.flush()
    rate = summary.bases / summary.seconds if summary.seconds else float("nan")
    click.echo(f"genoseg: {summary.contigs} contigs, {summary.bases:,} bp in {summary.seconds:.1f} s "
               f"({rate:,.0f} bp/s); {summary.genes} genes, {summary.segments} segments"
               + (f"; wrote {', '.join(summary.outputs)}" if not to_stdout else ""), err=True)
