"""Validation NLL per base and Viterbi label accuracy of trained models over ALL windows of one
training config's validation records (a training run's own log scores only
``genoseg.training.loop.VAL_WINDOWS`` of them, too few to rank runs). Used to pick the shipped
fly model among the stage-3 runs and their weight average (configs/recipes/fly.md).

    python benchmarks/validation_nll.py --config configs/models/fly_phase_ema.toml \\
        --genome ../shared/data/dmel_augustus/train.fa.gz \\
        --annotation ../shared/data/dmel_augustus/train.gff3.gz  MODEL [MODEL ...]

The split (records, ``val_fraction``, ``seed``) and the window length come from --config, so
every model is scored on the same windows; a model trained with another split or seed has seen
some of them and cannot be compared this way. Runs on the CPU (compiled CPU backend).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import config_split  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    import torch

    from genoseg.crf import backend as crf
    from genoseg.models import load_model
    from genoseg.training import loop
    from genoseg.training.data import tile_regions

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="training config whose split is scored")
    ap.add_argument("--genome", required=True)
    ap.add_argument("--annotation", required=True)
    ap.add_argument("--sequences", default="",
                    help="comma-separated: the training run's --sequences (e.g. yeast chrI-XII)")
    ap.add_argument("models", nargs="+")
    args = ap.parse_args()

    cfg, source, labels, _, val_regions = config_split(args.config, args.genome,
                                                       args.annotation, args.sequences)
    tc = cfg.train
    windows = tile_regions(val_regions, tc.window)
    print(f"# {len(val_regions)} validation records, {len(windows)} windows of {tc.window} bp "
          f"(split of {args.config}: val_fraction {tc.val_fraction}, seed {tc.seed})")
    print("model\tval_nll_per_base\tval_accuracy")
    for path in args.models:
        model, _ = load_model(path)
        # Windows of the config's length, whatever the model was trained with.
        model.config = cfg
        with crf.use("cpu"):
            metrics = loop.evaluate(model, source, labels, windows, torch.device("cpu"),
                                    tc.batch_size)
        print(f"{path}\t{metrics['val_nll_per_base']:.6f}\t{metrics['val_accuracy']:.4f}",
              flush=True)
    source.close()


if __name__ == "__main__":
    main()
