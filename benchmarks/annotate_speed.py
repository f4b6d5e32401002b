"""Annotation speed on one machine in one run: genoseg annotate next to AUGUSTUS.

Reads ../shared/data (not part of the test suite). Times, one after the other on the same
machine, ``augustus --species=fly --UTR=off --gff3=on`` (the peer the issue names; Debian
package ``augustus``) and ``genoseg annotate`` with the default model, on the fly test records
(625 kb), and appends one row per tool to benchmarks/results/annotate_speed.csv: date, commit,
machine, cores the run was allowed (``taskset -c 0 python benchmarks/annotate_speed.py`` pins
both tools to one core), tool, command, genome bp, wall and CPU seconds, peak RSS MB, genes.

    python benchmarks/annotate_speed.py [--genome ../shared/data/dmel_augustus/test.fa.gz]
        [--genoseg-args "--device cuda"] [--skip-augustus] [--keep-gff3 DIR]
"""

from __future__ import annotations

import argparse
import csv
import datetime
import gzip
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import commit, cpu_name  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ["date", "commit", "machine", "cores_allowed", "tool", "command", "bp", "wall_s", "cpu_s",
          "peak_rss_mb", "genes"]


def machine(genoseg_args: str) -> str:
    """The CPU and its core count, and the GPU when genoseg ran on one (``--device cuda``)."""
    name = f"{cpu_name()}, {os.cpu_count()} cores"
    if "cuda" in genoseg_args:
        import torch

        name += f", {torch.cuda.get_device_name(0)}"
    return name


def timed(cmd: list[str], stdout=None) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MB) of one command, from its own rusage (os.wait4)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=stdout)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def count_genes(gff3: Path) -> int:
    return sum(1 for line in gff3.read_text().splitlines() if "\tgene\t" in line)


def keep(gff3: Path, folder: Path | None) -> None:
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(gff3, folder / gff3.name)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--genome", default=str(ROOT.parent / "shared/data/dmel_augustus/test.fa.gz"))
    p.add_argument("--genoseg-args", default="", help="extra annotate arguments")
    p.add_argument("--skip-augustus", action="store_true")
    p.add_argument("--csv", type=Path, default=ROOT / "benchmarks/results/annotate_speed.csv")
    p.add_argument("--keep-gff3", type=Path, metavar="DIR",
                   help="copy each tool's GFF3 there (TOOL.gff3; replaced if present)")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        fasta = Path(tmp) / "genome.fa"
        opener = gzip.open if args.genome.endswith(".gz") else open
        with opener(args.genome, "rb") as src, fasta.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        bp = sum(len(line.strip()) for line in fasta.read_text().splitlines()
                 if not line.startswith(">"))
        # Warm-up (numba compile cache, file cache) so the timed run measures annotation.
        subprocess.run([sys.executable, "-m", "genoseg", "annotate", str(ROOT / "examples/dmel_tiny.fa"),
                        "-q", "-o", str(Path(tmp) / "warm.gff3"), *shlex.split(args.genoseg_args)],
                       check=True)
        out = Path(tmp) / "genoseg.gff3"
        cmd = [sys.executable, "-m", "genoseg", "annotate", str(fasta), "-q", "-o", str(out),
               *shlex.split(args.genoseg_args)]
        wall, cpu, rss = timed(cmd)
        rows.append(dict(tool="genoseg", command="genoseg annotate " + " ".join(cmd[4:]),
                         wall_s=f"{wall:.1f}", cpu_s=f"{cpu:.1f}", peak_rss_mb=f"{rss:.0f}",
                         genes=count_genes(out)))
        keep(out, args.keep_gff3)
        if not args.skip_augustus:
            if shutil.which("augustus") is None:
                p.error("augustus is not installed (apt-get install augustus), or --skip-augustus")
            out = Path(tmp) / "augustus.gff3"
            cmd = ["augustus", "--species=fly", "--UTR=off", "--gff3=on", str(fasta)]
            with out.open("w") as fh:
                wall, cpu, rss = timed(cmd, stdout=fh)
            rows.append(dict(tool="augustus", command=" ".join(cmd), wall_s=f"{wall:.1f}",
                             cpu_s=f"{cpu:.1f}", peak_rss_mb=f"{rss:.0f}", genes=count_genes(out)))
            keep(out, args.keep_gff3)
    new = not args.csv.exists()
    with args.csv.open("a", newline="") as fh:
        w = csv.DictWriter(fh, FIELDS)
        if new:
            w.writeheader()
        for r in rows:
            w.writerow(dict(date=datetime.date.today().isoformat(), commit=commit(),
                            machine=machine(args.genoseg_args),
                            cores_allowed=len(os.sched_getaffinity(0)),
                            bp=bp, **r))
            print(f"{r['tool']}: {r['wall_s']} s wall, {r['cpu_s']} s CPU, {r['genes']} genes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
