"""genoseg evaluate: CDS-level accuracy of predicted gene models against a reference."""

from __future__ import annotations

import click


@click.command()
@click.option("--reference", "-r", required=True, type=click.Path(dir_okay=False),
              help="Reference gene models (GFF3, plain or gzip).")
@click.argument("prediction", type=click.Path(dir_okay=False))
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False),
              help="Also write the counts and scores as JSON.")
@click.option("--tsv", "tsv_path", default=None, type=click.Path(dir_okay=False),
              help="Also write the table as TSV (the columns of eval_genes.sh).")
def evaluate(reference, prediction, json_path, tsv_path):
    """Score PREDICTION (GFF3) against --reference at the gene, mRNA, exon and nucleotide
    levels, CDS basis, counted as genometools `gt eval` counts it (sensitivity, specificity =
    precision, F1). Predictions on sequences without any reference gene are ignored."""
    from genoseg import evaluate as ev
    from genoseg.cli import check_output_path

    check_output_path(json_path, "--json")
    check_output_path(tsv_path, "--tsv")
    result = ev.evaluate(reference, prediction)
    if json_path:
        ev.write_json(json_path, result)
    if tsv_path:
        ev.write_tsv(tsv_path, result)
    click.echo(ev.format_table(result), nl=False)
