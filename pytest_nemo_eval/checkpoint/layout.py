"""Which checkpoint format a path holds, and where its config, tokenizer and weights are.

Two layouts are served:
- NeMo 2.0: `<ckpt>/context/` (model.yaml, nemo_tokenizer/) and `<ckpt>/weights/` (torch_dist).
- Megatron-Bridge (NeMo 2.0's successor): a run root with `latest_checkpointed_iteration.txt`
  (Megatron-LM's tracker, which Megatron-Bridge also writes beside `latest_train_state.pt`) and
  `iter_NNNNNNN/` folders (or `release/`), each holding `run_config.yaml`, the torch_dist weights
  (`.metadata`, `*.distcp`, `metadata.json`), `train_state.pt` and `tokenizer/`. Passing one `iter_*`
  folder serves that iteration; passing the root serves the one the tracker names, as
  Megatron-Bridge's own loader does (megatron/bridge/training/checkpointing.py, get_checkpoint_name).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from .errors import CheckpointError

CheckpointFormat = Literal["nemo2", "megatron-bridge"]
TRACKER_FILE = "latest_checkpointed_iteration.txt"
BRIDGE_TRACKER_FILE = "latest_train_state.pt"
RUN_CONFIG_FILE = "run_config.yaml"
ITERATION_DIR = re.compile(r"^iter_(\d{7,})$")


class CheckpointLayout(BaseModel):
    """Where each part of one checkpoint lives, and what it is (the provenance others report)."""

    model_config = ConfigDict(frozen=True)

    format: CheckpointFormat
    root: Path  # the path the user names the model by (NeMo checkpoint dir, or the Megatron-Bridge run root)
    config_file: Path  # context/model.yaml (or io.json) / iter_*/run_config.yaml
    tokenizer_dir: Path  # context/ (nemo_tokenizer/ inside) / iter_*/tokenizer
    weights_dir: Path
    iteration: int | None = None  # Megatron-Bridge's iteration (None: NeMo 2.0, or a `release` folder)

    @property
    def description(self) -> str:
        if self.format == "nemo2":
            return "NeMo 2.0"
        return f"Megatron-Bridge iteration {self.iteration}" if self.iteration is not None else "Megatron-Bridge release"


def _is_bridge_root(path: Path) -> bool:
    return (path / TRACKER_FILE).is_file() or (path / BRIDGE_TRACKER_FILE).is_file() or any(
        child.is_dir() and (ITERATION_DIR.match(child.name) or child.name == "release") for child in path.iterdir())


def _is_iteration_dir(path: Path) -> bool:
    return (ITERATION_DIR.match(path.name) is not None or path.name == "release") and (path / RUN_CONFIG_FILE).is_file()


def _is_nemo2(path: Path) -> bool:
    return (path / "context").is_dir() and (path / "weights").is_dir()


def _iterations(root: Path) -> dict[int, Path]:
    return {int(m.group(1)): child for child in root.iterdir()
            if child.is_dir() and (m := ITERATION_DIR.match(child.name))}


def _tracked_iteration_dir(root: Path) -> Path:
    """The iteration the tracker names (Megatron-LM's text file: a number or `release`), else the latest iter_*."""
    iterations = _iterations(root)
    tracker = root / TRACKER_FILE
    if tracker.is_file():
        text = tracker.read_text(encoding="utf-8").strip()
        if text == "release":
            chosen = root / "release"
        elif text.isdigit():
            chosen = root / f"iter_{int(text):07d}"
        else:
            raise CheckpointError(f"{tracker} holds {text!r}, not an iteration number or `release`; write the "
                                  f"iteration to serve there, or pass one iter_* folder of {root}.")
        if not chosen.is_dir():
            found = ", ".join(sorted(p.name for p in iterations.values())) or "none"
            raise CheckpointError(f"{tracker} names {chosen.name}/, which {root} does not hold (iterations found: "
                                  f"{found}). Pass one iter_* folder, or correct the tracker file.")
        return chosen
    if (root / "release").is_dir() and not iterations:
        return root / "release"
    if not iterations:
        raise CheckpointError(
            f"{root} looks like a Megatron-Bridge run ({BRIDGE_TRACKER_FILE}) but holds no iter_NNNNNNN/ folder, so "
            "there are no weights to serve. Pass the run's root after a checkpoint was saved, or an iter_* folder."
        )
    return iterations[max(iterations)]  # Megatron-Bridge loads the latest


def _bridge_layout(root: Path, iteration_dir: Path) -> CheckpointLayout:
    if not (iteration_dir / RUN_CONFIG_FILE).is_file():
        raise CheckpointError(f"{iteration_dir} has no {RUN_CONFIG_FILE}, so the model architecture is unknown. A "
                              "Megatron-Bridge iteration folder holds run_config.yaml beside its weights.")
    if not ((iteration_dir / ".metadata").is_file() and (iteration_dir / "metadata.json").is_file()):
        raise CheckpointError(
            f"{iteration_dir} holds no weights (no torch_dist `.metadata` and `metadata.json` beside "
            f"{RUN_CONFIG_FILE}): the save was interrupted or the files were not copied. Copy the whole folder "
            "again, or pass another iteration."
        )
    match = ITERATION_DIR.match(iteration_dir.name)
    return CheckpointLayout(
        format="megatron-bridge", root=root.resolve(), config_file=(iteration_dir / RUN_CONFIG_FILE).resolve(),
        tokenizer_dir=(iteration_dir / "tokenizer").resolve(), weights_dir=iteration_dir.resolve(),
        iteration=int(match.group(1)) if match else None,
    )


def _nested_roots(path: Path) -> list[Path]:
    return sorted(child for child in path.iterdir() if child.is_dir() and (_is_nemo2(child) or _is_bridge_root(child)))


def detect_layout(path: Path | str) -> CheckpointLayout:
    """The layout at `path` (NeMo 2.0 dir, Megatron-Bridge root, or one of its iter_* folders); says what is missing."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"Checkpoint path {path} does not exist. Pass the directory of a NeMo 2.0 checkpoint "
                              "or of a Megatron-Bridge checkpoint (its root, or one iter_* folder).")
    if not path.is_dir():
        raise CheckpointError(
            f"Checkpoint path {path} is a file, not a directory. NeMo 2.0 checkpoints are directories with "
            "context/ and weights/ (unpack a .nemo/.tar archive first); Megatron-Bridge checkpoints are directories "
            "with iter_NNNNNNN/ folders."
        )
    if _is_nemo2(path):
        return CheckpointLayout(format="nemo2", root=path.resolve(), config_file=(path / "context").resolve(),
                                tokenizer_dir=(path / "context").resolve(), weights_dir=(path / "weights").resolve())
    if _is_iteration_dir(path):
        return _bridge_layout(path.parent, path)
    if _is_bridge_root(path):
        return _bridge_layout(path, _tracked_iteration_dir(path))
    nested = _nested_roots(path)
    if len(nested) > 1:
        raise CheckpointError(
            f"{path} holds {len(nested)} checkpoints ({', '.join(p.name for p in nested)}), not one: pass the one "
            "to serve."
        )
    if len(nested) == 1:
        raise CheckpointError(f"{path} is not a checkpoint but holds one: pass {nested[0]}.")
    missing = [name for name in ("context", "weights") if not (path / name).is_dir()]
    raise CheckpointError(
        f"{path} is not a NeMo 2.0 checkpoint: missing {' and '.join(f'{m}/' for m in missing)} (expected context/ "
        "with model.yaml and the tokenizer, and weights/ with the torch_dist shards); nor is it a Megatron-Bridge "
        f"checkpoint (no {TRACKER_FILE} and no iter_NNNNNNN/ folder with {RUN_CONFIG_FILE})."
    )
