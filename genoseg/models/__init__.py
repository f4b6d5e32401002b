"""Models: the network (encoder + semi-CRF head) and self-describing model directories.

A model directory holds
    config.toml     the resolved config (label scheme inline), enough to rebuild the network
    weights.pt      the state dict (torch.save)
    model.json      metadata: genoseg version, date, training data and command, metrics, sha256
                    of weights.pt
    MODEL_CARD.md   the same for people
Shipped models live beside this file, one directory each; ``genoseg annotate`` without
``--model`` uses ``DEFAULT_MODEL``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from genoseg.errors import ModelError

SHIPPED_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL = "default"
REQUIRED_FILES = ("config.toml", "weights.pt", "model.json")


def _torch_modules():
    # Imported lazily: the CLI must start without torch.
    import torch
    from torch import nn

    return torch, nn


def build_network(config):
    """The ``SegmentationModel`` a config describes (weights freshly initialised)."""
    from genoseg.models.network import SegmentationModel

    return SegmentationModel(config)


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_model_dir(name_or_path: str | os.PathLike | None) -> Path:
    """A shipped model's name, or a path to a model directory; None gives the default model."""
    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
    path = Path(name_or_path)
    if not path.exists() and (SHIPPED_DIR / str(name_or_path)).is_dir():
        path = SHIPPED_DIR / str(name_or_path)
    if not path.exists():
        known = ", ".join(m["name"] for m in list_models()) or "none"
        raise ModelError(f"{name_or_path}: no such model directory or shipped model "
                         f"(shipped: {known})")
    if not path.is_dir():
        raise ModelError(f"{path}: a model must be a directory holding "
                         f"{', '.join(REQUIRED_FILES)}")
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        raise ModelError(f"{path}: not a genoseg model directory (missing {', '.join(missing)})")
    return path


def read_metadata(model_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(model_dir) / "model.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: unreadable model metadata ({exc})") from None


def load_model(name_or_path: str | os.PathLike | None = None, device: str = "cpu"):
    """Load a model directory. Returns (model in eval mode on ``device``, metadata dict)."""
    torch, _ = _torch_modules()
    from genoseg.config import load_config
    from genoseg.errors import ConfigError

    model_dir = resolve_model_dir(name_or_path)
    meta = read_metadata(model_dir)
    try:
        config = load_config(model_dir / "config.toml")
    except ConfigError as exc:
        raise ModelError(f"{model_dir}: model config does not load: {exc}") from None
    expected = meta.get("weights_sha256")
    if expected and file_sha256(model_dir / "weights.pt") != expected:
        raise ModelError(f"{model_dir}: weights.pt does not match the checksum in model.json "
                         "(damaged or replaced file)")
    model = build_network(config)
    try:
        state = torch.load(model_dir / "weights.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:  # a state dict of another architecture or a damaged file
        # torch's message is a header line, then one tab-indented line per mismatched tensor:
        # show the first mismatch, not the header.
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = lines[1:] if lines and lines[0].startswith("Error(s) in loading") else lines
        first = (detail[0].rstrip(".") + (f"; {len(detail) - 1} more" if len(detail) > 1 else "")
                 if detail else type(exc).__name__)
        raise ModelError(f"{model_dir}: weights do not match config.toml ({first})") from None
    model.eval().to(device)
    meta["path"] = str(model_dir)
    return model, meta


def save_model_dir(model, out_dir: str | os.PathLike, metadata: dict[str, Any],
                   card: str) -> Path:
    """Write config.toml, weights.pt, model.json and MODEL_CARD.md (each atomically)."""
    torch, _ = _torch_modules()
    from genoseg.config import dump_config
    from genoseg.io.atomic import atomic_open

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(model.config, out / "config.toml")
    # Saved through a file object: given a path, torch names the zip's root folder after it (here
    # a random temporary name), so identical weights would get a different sha256 every time.
    with atomic_open(out / "weights.pt", "wb") as handle:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, handle)
    metadata = dict(metadata, weights_sha256=file_sha256(out / "weights.pt"))
    with atomic_open(out / "model.json") as handle:
        json.dump(metadata, handle, indent=2, sort_keys=True)
        handle.write("\n")
    with atomic_open(out / "MODEL_CARD.md") as handle:
        handle.write(card)
    return out


def average_models(paths: list[str | os.PathLike], out_dir: str | os.PathLike,
                   command: str = "") -> Path:
    """Write the weight average of models of one architecture (a "model soup" of runs that
    share their starting weights) to ``out_dir``; the config (and so its [annotate] settings)
    is the first model's. Returns the output directory.

    Averaging weights, not outputs, keeps annotate at one model's cost; it suits runs
    fine-tuned from the same weights, whose average lies in the same basin."""
    import datetime as _dt

    torch, _ = _torch_modules()
    import genoseg

    if len(paths) < 2:
        raise ModelError("averaging needs at least two models")
    loaded = [load_model(p) for p in paths]
    first, first_meta = loaded[0]
    base = first.config.to_dict()
    states = [m.state_dict() for m, _ in loaded]
    for (model, _), path in zip(loaded[1:], paths[1:]):
        other = model.config.to_dict()
        for section in ("scheme", "encoder", "crf"):
            # Dropout is a training setting, not part of the architecture.
            if {k: v for k, v in other[section].items() if k != "dropout"} != \
                    {k: v for k, v in base[section].items() if k != "dropout"}:
                raise ModelError(f"{path}: [{section}] differs from {paths[0]}'s; only models of "
                                 "one architecture can be averaged")
    average = {}
    for key, value in states[0].items():
        if value.is_floating_point():
            average[key] = sum(s[key].double() for s in states).div(len(states)).to(value.dtype)
            continue
        for path, state in zip(paths[1:], states[1:]):
            if not torch.equal(state[key], value):
                raise ModelError(f"{path}: integer tensor {key} differs from {paths[0]}'s")
        average[key] = value
    first.load_state_dict(average)
    sources = [{"path": str(resolve_model_dir(p)), "weights_sha256": meta.get("weights_sha256"),
                "steps": meta.get("metrics", {}).get("steps"),
                "best_validation": meta.get("metrics", {}).get("best_validation"),
                "command": meta.get("command")}
               for p, (_, meta) in zip(paths, loaded)]
    meta = {
        "genoseg_version": genoseg.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "status": first_meta.get("status", "trained"),
        "summary": f"weight average of {len(paths)} models: "
                   + first_meta.get("summary", "").split(", trained on")[0],
        "command": command,
        "averaged_from": sources,
        "training_data": first_meta.get("training_data"),
        "inputs": first_meta.get("inputs"),
        "torch_version": torch.__version__,
    }
    lines = [f"# genoseg model: weight average of {len(paths)} models", "",
             "The element-wise mean of the weights of these models (same architecture); the "
             "config is the first one's.", ""]
    for src in sources:
        lines.append(f"- `{src['path']}` (weights sha256 {str(src['weights_sha256'])[:12]}..., "
                     f"{src['steps']} steps): `{src['command']}`")
    return save_model_dir(first, out_dir, meta, "\n".join(lines) + "\n")


def list_models() -> list[dict[str, Any]]:
    """Shipped models: name, path and the summary line of their metadata."""
    out = []
    for path in sorted(SHIPPED_DIR.iterdir()):
        if path.is_dir() and all((path / f).is_file() for f in REQUIRED_FILES):
            meta = json.loads((path / "model.json").read_text())
            out.append({"name": path.name, "path": str(path),
                        "summary": meta.get("summary", ""), "status": meta.get("status", "")})
    return out
