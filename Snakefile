"""genoseg workflow: train a model on an annotated genome, then annotate genomes with it.

    snakemake --cores 4                                   # defaults: workflows/config.yaml
    snakemake --cores 4 --config outdir=results threads=4 \
        'genomes_to_annotate={dmel: data/dmel.fa, dsim: data/dsim.fa}'
    snakemake --workflow-profile workflows/profiles/slurm  # on a SLURM cluster

Every rule calls the genoseg CLI (`genoseg_cmd`, default "python -m genoseg"). Each top-level
config key given with --config or --configfile replaces the default from workflows/config.yaml
as a whole (maps such as genomes_to_annotate are not merged). See workflows/README.md.
"""

import os
from pathlib import Path

import yaml

REPO = Path(workflow.basedir)

# Defaults fill only the keys the command line did not set, so a key given there replaces the
# default entirely (Snakemake's own configfile: would merge nested maps key by key).
with open(REPO / "workflows" / "config.yaml") as _handle:
    for _key, _value in yaml.safe_load(_handle).items():
        config.setdefault(_key, _value)

# `python -m genoseg` from any working directory, without installing the package.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])


def _flag(value) -> bool:
    return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")


GENOSEG = str(config["genoseg_cmd"])
TRAIN = _flag(config["train"])
MODEL_DIR = str(config["model_dir"]).rstrip("/")
OUTDIR = str(config["outdir"]).rstrip("/")
LOGDIR = f"{OUTDIR}/logs"
GENOMES = {str(k): str(v) for k, v in (config["genomes_to_annotate"] or {}).items()
           if v not in (None, "", "null")}
OUTPUTS = config["outputs"]
OUTPUTS = [OUTPUTS] if isinstance(OUTPUTS, str) else [str(o) for o in OUTPUTS]

_unknown = sorted(set(OUTPUTS) - {"gff3", "bed", "posteriors"})
if _unknown:
    raise ValueError(f"config outputs: unknown {_unknown} (allowed: gff3, bed, posteriors)")
if not GENOMES:
    raise ValueError("config genomes_to_annotate: empty (give {name: fasta, ...})")
if not OUTPUTS:
    raise ValueError("config outputs: empty (give some of gff3, bed, posteriors)")

wildcard_constraints:
    genome="[^/]+",


include: "workflows/rules/train.smk"
include: "workflows/rules/annotate.smk"


localrules:
    all,


rule all:
    input:
        (rules.train.output if TRAIN else []),
        [path for name in GENOMES for path in annotate_outputs(name).values()],
