"""The training loop: windows -> encoder -> semi-CRF negative log-likelihood -> AdamW.

Resumable: ``out_dir/checkpoint.pt`` holds the model, optimiser, sampler and RNG states and is
rewritten atomically every ``checkpoint_every`` steps; running the same command again continues
where it stopped and gives the same weights as an uninterrupted run. At the end the weights with
the best validation loss are written as a model directory (see ``genoseg.models``).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import logging
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import genoseg
from genoseg.config import GenosegConfig
from genoseg.crf import backend as crf
from genoseg.errors import GenosegError, InputError
from genoseg.inputs import InputSource
from genoseg.models import build_network, save_model_dir
from genoseg.training.data import (WindowSampler, gold_labels, make_batch, training_split,
                                   tile_regions)

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"
VAL_WINDOWS = 16  # validation windows per evaluation: enough for a stable loss, cheap on a CPU


@dataclass(frozen=True)
class TrainInputs:
    genome: str
    annotation: str
    tracks: str | None = None
    bams: tuple[str, ...] = ()
    min_mapq: int = 0
    bam_stranded: bool = False
    sequences: tuple[str, ...] = ()  # train on these sequences only (empty: all)
    # validate on exactly these sequences (empty: [train] val_fraction of them, at random)
    val_sequences: tuple[str, ...] = ()


def check_sequences(wanted: tuple[str, ...], names: list[str], genome: str,
                    option: str = "--sequences") -> None:
    """InputError naming the first of ``wanted`` that is not a sequence of the genome."""
    known = set(names)
    missing = [s for s in wanted if s not in known]
    if missing:
        raise InputError(f"{genome}: no sequence {missing[0]!r} ({option}; the genome has "
                         f"{', '.join(names[:5])}{', ...' if len(names) > 5 else ''})")


def pick_device(name: str) -> torch.device:
    """torch device for 'auto', 'cpu', 'cuda' or 'cuda:N' (anything else: a one-line error)."""
    if name not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:\d+", name):
        raise GenosegError(f"device {name!r}: expected auto, cpu, cuda or cuda:N")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GenosegError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


# Settings a resumed run may change: more (or fewer) steps (the learning-rate schedule follows
# the new total from the step reached) and the device (a run may move between a GPU and a CPU).
RESUMABLE_CHANGES = ("steps", "device")


def _resume_key(table: dict) -> dict:
    """What a resumed run must share with its checkpoint: the config without the resumable
    train keys and without [annotate] (it does not touch training). A key the checkpoint's
    config lacks (added to genoseg since) counts with its default value."""
    from genoseg.config import _SECTIONS

    out = {}
    for name, value in table.items():
        if name == "annotate":
            continue
        if name in _SECTIONS:
            value = {**dataclasses.asdict(_SECTIONS[name]()), **value}
            value = {k: list(v) if isinstance(v, tuple) else v for k, v in value.items()}
        out[name] = value
    out["train"] = {k: v for k, v in out["train"].items() if k not in RESUMABLE_CHANGES}
    return out


def config_digest(cfg: GenosegConfig) -> str:
    """Hash of everything a resumed run must share with its checkpoint (all of the config but
    ``RESUMABLE_CHANGES``)."""
    return hashlib.sha256(json.dumps(_resume_key(cfg.to_dict()), sort_keys=True).encode()
                          ).hexdigest()[:16]


def _same_run(ckpt: dict, cfg: GenosegConfig) -> bool:
    """Whether a checkpoint belongs to this config: its stored config, else (older checkpoints)
    its digest."""
    if ckpt.get("config"):
        return json.dumps(_resume_key(ckpt["config"]), sort_keys=True) == json.dumps(
            _resume_key(cfg.to_dict()), sort_keys=True)
    return ckpt.get("config_digest") == config_digest(cfg)


def _config_changes(old: dict | None, new: dict) -> str:
    """'[train] steps 2 -> 4, ...': what differs between two ``to_dict`` configs ('' if unknown)."""
    if not old:
        return ""  # a checkpoint from before configs were stored in it
    old, new = _resume_key(old), _resume_key(new)
    changes = []
    for section in sorted(set(old) | set(new)):
        a, b = old.get(section, {}), new.get(section, {})
        if section == "scheme":
            if a != b:
                changes.append("[scheme] differs")
            continue
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                changes.append(f"[{section}] {key} {a.get(key)!r} -> {b.get(key)!r}")
    return ", ".join(changes[:3]) + (", ..." if len(changes) > 3 else "")


def _initial_weights(model, init_from: str) -> dict:
    """Load the weights of model ``init_from`` into ``model`` (same architecture). Returns what
    the model card records of it: path, weights checksum and steps."""
    from genoseg.models import load_model

    source, meta = load_model(init_from)
    try:
        # A coding content model (its table is fitted afresh anyway) may be new in this config.
        missing, unexpected = model.load_state_dict(source.state_dict(), strict=False)
        if unexpected or any(not k.startswith("head.content.") for k in missing):
            raise RuntimeError
    except RuntimeError:
        raise GenosegError(f"--init-from {init_from}: its architecture differs from this config's "
                           "(encoder or CRF head sizes)") from None
    return {"path": meta["path"], "weights_sha256": meta.get("weights_sha256"),
            "steps": (meta.get("metrics") or {}).get("steps")}


def _fit_content(content, source, annotation, labels, regions) -> None:
    """Count the coding content model's table on the training regions (never the validation
    ones), deterministically: a resumed or repeated run fits the same table."""
    from genoseg.crf.coding_content import fit
    from genoseg.training.data import content_records

    llr, bases = fit(content_records(source, annotation, labels, regions), content.order)
    content.llr.copy_(torch.from_numpy(llr))
    log.info("coding content model (order %d) fitted on %d coding and %d noncoding bases",
             content.order, bases["coding"], bases["noncoding"])


def _lr_factor(step: int, total: int, warmup: int = 50) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class WeightAverage:
    """An exponential moving average of a model's floating-point weights (parameters and
    buffers), held in a copy of the model so it can be evaluated and saved as one. The decay
    warms up as (1 + step) / (10 + step), so the average does not drag the random start along."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        import copy

        self.decay = float(decay)
        self.model = copy.deepcopy(model)
        self.model.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        own = self.model.state_dict()
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                own[name].lerp_(value, 1.0 - d)
            else:
                own[name].copy_(value)

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)


def _to_device(batch, device):
    x, y, lengths = batch
    return (torch.from_numpy(x).to(device), torch.from_numpy(y).to(device),
            torch.from_numpy(lengths).to(device))


@torch.no_grad()
def evaluate(model, source, labels, windows, device, batch_size: int) -> dict[str, float]:
    """Validation NLL per base (over the windows whose labelling the model allows) and Viterbi
    per-base label accuracy (over every labelled base: unlabelled positions, -1, not counted)."""
    model.eval()
    nll_sum, bases, correct, labelled = 0.0, 0, 0, 0
    for k in range(0, len(windows), batch_size):
        x, y, lengths = _to_device(make_batch(source, labels, windows[k:k + batch_size],
                                              model.config.train.window), device)
        emissions = model(x, lengths)
        extra = model.head_inputs(x)
        nll, ok = model.head.nll(emissions, y, lengths, **extra)
        nll_sum += float(nll[ok].sum())
        bases += int(lengths[ok].sum())
        _, paths = model.head.decode(emissions, lengths, **extra)
        for b, segs in enumerate(paths):
            pred = torch.zeros(int(lengths[b]), dtype=torch.int64)
            for s, e, c in segs.tolist():
                pred[s:e] = c
            gold = y[b, :int(lengths[b])].cpu()
            correct += int((pred == gold).sum())
            labelled += int((gold >= 0).sum())
    model.train()
    return {"val_nll_per_base": nll_sum / max(bases, 1),
            "val_accuracy": correct / max(labelled, 1)}


def train(cfg: GenosegConfig, inputs: TrainInputs, out_dir: str | os.PathLike, *,
          command: str = "", status: str = "trained", progress: bool = True,
          backend: str | None = None, init_from: str | None = None) -> dict:
    """Train a model and write it to ``out_dir``. Returns the final metrics.

    ``init_from``: a model (directory or shipped name) whose weights start the run instead of
    a random initialisation (fine-tuning); its architecture must be this config's.

    ``backend``: the semi-CRF backend for the whole run ("auto", "triton", "torch"; None keeps
    the choice in force, see ``genoseg.crf.backend``). It is checked before any input is read
    and is not part of the config, so a run may resume on another backend.
    """
    from genoseg.crf.threads import limit_torch_threads

    limit_torch_threads()
    device = pick_device(cfg.train.device)
    with crf.use(backend):
        return _train(cfg, inputs, out_dir, device, crf.resolve(device), command=command,
                      status=status, progress=progress, init_from=init_from)


def _train(cfg: GenosegConfig, inputs: TrainInputs, out_dir: str | os.PathLike,
           device: torch.device, crf_backend: str, *, command: str, status: str,
           progress: bool, init_from: str | None = None) -> dict:
    out = Path(out_dir)
    tc = cfg.train
    torch.manual_seed(tc.seed)
    np.random.seed(tc.seed)

    source = InputSource(inputs.genome, inputs.tracks, inputs.bams, inputs.min_mapq,
                         inputs.bam_stranded)
    if source.spec.n_tracks != cfg.encoder.n_tracks:
        cfg = dataclasses.replace(cfg, encoder=dataclasses.replace(
            cfg.encoder, n_tracks=source.spec.n_tracks))
    labels, counts = gold_labels(inputs.annotation, cfg.scheme, source.lengths)
    if inputs.sequences:
        check_sequences(inputs.sequences, source.names, inputs.genome)
        if not any(s in labels for s in inputs.sequences):
            raise InputError(f"{inputs.annotation}: no annotated feature on the --sequences "
                             f"given ({', '.join(inputs.sequences[:5])})")
    if inputs.val_sequences:
        check_sequences(inputs.val_sequences, source.names, inputs.genome, "--val-sequences")
        if inputs.sequences and not set(inputs.val_sequences) <= set(inputs.sequences):
            outside = next(s for s in inputs.val_sequences if s not in set(inputs.sequences))
            raise InputError(f"--val-sequences: {outside!r} is not among the --sequences given")
        if not any(s in labels for s in inputs.val_sequences):
            raise InputError(f"{inputs.annotation}: no annotated feature on the "
                             f"--val-sequences given ({', '.join(inputs.val_sequences[:5])})")
    train_regions, val_regions = training_split(source.names, source.lengths, labels,
                                                inputs.sequences, tc.val_fraction, tc.seed,
                                                inputs.val_sequences)
    rc_map = None
    if tc.rc_augment:
        if source.spec.bam_stranded:
            raise InputError("[train] rc_augment does not handle stranded BAM coverage yet")
        from genoseg.training.data import rc_label_map

        rc_map = rc_label_map(cfg.scheme)
    sampler = WindowSampler(source, labels, train_regions, tc.window, tc.seed, rc_map)
    val_windows = tile_regions(val_regions, tc.window, limit=VAL_WINDOWS)

    model = build_network(cfg)
    init = _initial_weights(model, init_from) if init_from else None
    if getattr(model.head, "content", None) is not None:
        _fit_content(model.head.content, source, inputs.annotation, labels, train_regions)
    model.to(device)
    model.train()
    averaged = WeightAverage(model, tc.ema_decay) if tc.ema_decay > 0 else None
    # Two rates: the encoder's, and a larger one for the CRF head (no weight decay there: it would
    # pull transition and duration scores towards 0, i.e. towards the flat prior).
    optim = torch.optim.AdamW([
        {"params": model.encoder.parameters(), "lr": tc.lr, "weight_decay": tc.weight_decay},
        {"params": model.head.parameters(), "lr": tc.head_lr, "weight_decay": 0.0},
    ])
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: _lr_factor(s, tc.steps))
    state = {"step": 0, "best": None, "best_weights": None, "history": [], "impossible": 0,
             "seconds": 0.0}

    # Created only once the inputs have been read and checked: bad input leaves nothing behind.
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT
    digest = config_digest(cfg)
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if not _same_run(ckpt, cfg):
            changed = _config_changes(ckpt.get("config"), cfg.to_dict())
            raise GenosegError(f"{ckpt_path}: checkpoint was made with another config"
                               + (f" ({changed})" if changed else "")
                               + "; use a new output directory or delete the checkpoint to start "
                               "over")
        if init and ckpt["state"].get("init_from", {}).get("weights_sha256") != \
                init["weights_sha256"]:
            raise GenosegError(f"{ckpt_path}: checkpoint was not started from {init_from}; use a "
                               "new output directory or delete the checkpoint to start over")
        model.load_state_dict(ckpt["model"])
        if averaged is not None:
            averaged.load_state_dict(ckpt["averaged"])
        optim.load_state_dict(ckpt["optim"])
        sched.load_state_dict(ckpt["sched"])
        sampler.set_state(ckpt["sampler"])
        torch.set_rng_state(ckpt["torch_rng"])
        state = ckpt["state"]
        log.info("resuming from step %d of %d", state["step"], tc.steps)
    elif init:
        state["init_from"] = init
    # Logged once inputs and checkpoint are known good, so such an error stays the only line.
    log.info("semi-CRF backend: %s", crf.describe(device))

    def save_checkpoint():
        from genoseg.io.atomic import atomic_path

        with atomic_path(ckpt_path) as tmp:
            torch.save({"config_digest": digest, "config": cfg.to_dict(),
                        "model": model.state_dict(),
                        **({"averaged": averaged.state_dict()} if averaged else {}),
                        "optim": optim.state_dict(), "sched": sched.state_dict(),
                        "sampler": sampler.state(), "torch_rng": torch.get_rng_state(),
                        "state": state}, tmp)

    def validate():
        if not val_windows:
            return None
        judged = averaged.model if averaged else model
        metrics = evaluate(judged, source, labels, val_windows, device, tc.batch_size)
        metrics["step"] = state["step"]
        state["history"].append(metrics)
        if state["best"] is None or metrics["val_nll_per_base"] < state["best"]["val_nll_per_base"]:
            state["best"] = metrics
            state["best_weights"] = {k: v.detach().cpu().clone()
                                     for k, v in judged.state_dict().items()}
        return metrics

    from tqdm import tqdm

    bar = tqdm(total=tc.steps, initial=state["step"], desc="train", unit="step",
               file=sys.stderr, disable=not progress, dynamic_ncols=True)
    running = None
    while state["step"] < tc.steps:
        t0 = time.perf_counter()
        x, y, lengths = _to_device(sampler.batch(tc.batch_size), device)
        loss, n_bad = model.head.loss(model(x, lengths), y, lengths, **model.head_inputs(x))
        optim.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        optim.step()
        sched.step()
        if averaged is not None:
            averaged.update(model, state["step"])
        state["step"] += 1
        state["impossible"] += n_bad
        state["seconds"] += time.perf_counter() - t0
        value = loss.item()
        running = value if running is None else 0.95 * running + 0.05 * value
        bar.update(1)
        bar.set_postfix(loss=f"{running:.4f}")
        if state["step"] % tc.checkpoint_every == 0 or state["step"] == tc.steps:
            metrics = validate()
            if metrics:
                bar.write(f"step {state['step']}: train loss {running:.4f}, val nll/base "
                          f"{metrics['val_nll_per_base']:.4f}, val accuracy "
                          f"{metrics['val_accuracy']:.4f}", file=sys.stderr)
            state["train_loss"] = running
            save_checkpoint()
    bar.close()
    if state["best"] is None and state["step"] == tc.steps:
        validate()  # no step ran (--steps 0, e.g. only a content model fitted): judge it as is
    if state["impossible"]:
        log.warning("%d training windows had a labelling the label scheme forbids and were "
                    "skipped", state["impossible"])

    if state["best_weights"] is not None:
        model.load_state_dict(state["best_weights"])
    elif averaged is not None:
        model.load_state_dict(averaged.model.state_dict())
    metrics = {
        "steps": state["step"],
        "train_loss_per_base": state.get("train_loss"),
        "best_validation": state["best"],
        "training_seconds": round(state["seconds"], 1),
        "skipped_windows": state["impossible"],
    }
    meta = {
        "genoseg_version": genoseg.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "status": status,
        "summary": f"{cfg.scheme.name} scheme"
                   f"{', codon-phase grammar' if cfg.crf.grammar == 'phase' else ''}, "
                   f"{cfg.encoder.kind} encoder "
                   f"(width {cfg.encoder.width}, depth {cfg.encoder.depth}), "
                   f"trained on {Path(inputs.genome).name}",
        "command": command,
        **({"initialized_from": state["init_from"]} if state.get("init_from") else {}),
        "training_data": {
            "genome": str(inputs.genome), "annotation": str(inputs.annotation),
            "tracks": inputs.tracks, "bams": list(inputs.bams),
            "train_sequences": len({r.seqid for r in train_regions}),
            "validation_sequences": len({r.seqid for r in val_regions}),
            "train_bases": sum(r.length for r in train_regions),
            "validation_bases": sum(r.length for r in val_regions),
            **counts,
        },
        "inputs": {"hdf5_tracks": list(source.spec.hdf5_tracks), "n_bam": source.spec.n_bam,
                   "bam_stranded": source.spec.bam_stranded, "min_mapq": inputs.min_mapq},
        "device": str(device),
        "crf_backend": crf_backend,
        "torch_version": torch.__version__,
        "metrics": metrics,
    }
    save_model_dir(model, out, meta, model_card(cfg, meta))
    source.close()
    return metrics


def model_card(cfg: GenosegConfig, meta: dict) -> str:
    """MODEL_CARD.md text."""
    td, m = meta["training_data"], meta["metrics"]
    best = m.get("best_validation") or {}
    lines = [
        f"# genoseg model: {cfg.scheme.name}",
        "",
        f"Status: **{meta['status']}**. Created {meta['created']} with genoseg "
        f"{meta['genoseg_version']} (torch {meta['torch_version']}, {meta['device']}).",
        "",
        "## Training data",
        f"- genome: `{td['genome']}`",
        f"- annotation: `{td['annotation']}` ({td['features']} features on {td['sequences']} "
        "sequences)",
        f"- split by sequence: {td['train_sequences']} train ({td['train_bases']:,} bp), "
        f"{td['validation_sequences']} validation ({td['validation_bases']:,} bp)",
        "",
        "## Command",
        "```",
        meta["command"] or "(library call)",
        "```",
        "",
        *([f"Fine-tuned from `{meta['initialized_from']['path']}` (weights sha256 "
           f"{meta['initialized_from']['weights_sha256']}, "
           f"{meta['initialized_from']['steps']} steps).", ""]
          if meta.get("initialized_from") else []),
        "## Model",
        f"- labels: {', '.join(cfg.scheme.labels)}; max segment length K = {cfg.K}"
        + ("; codon-phase gene grammar (80 CRF states, exact codon/splice constraints)"
           if cfg.crf.grammar == "phase" else ""),
        f"- encoder: dilated residual CNN, width {cfg.encoder.width}, depth {cfg.encoder.depth}, "
        f"kernel {cfg.encoder.kernel_size}, receptive field {cfg.encoder.receptive_field} bp",
        f"- training: {m['steps']} steps of {cfg.train.batch_size} x {cfg.train.window} bp "
        f"windows, AdamW lr {cfg.train.lr}, seed {cfg.train.seed}, "
        f"{m['training_seconds']} s",
        "",
        "## Metrics (validation windows, best checkpoint)",
        f"- NLL per base: {best.get('val_nll_per_base', float('nan')):.4f}",
        f"- Viterbi per-base label accuracy: {best.get('val_accuracy', float('nan')):.4f}",
        f"- at step: {best.get('step', '-')}",
        "",
    ]
    return "\n".join(lines)
