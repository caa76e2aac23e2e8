"""Checkpoint contents (pure torch): everything a resumed run needs to continue at the same step."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

STATE_FILE = "state.pt"


def rng_state() -> dict[str, Any]:
    # Stored as tensors and plain Python values so the checkpoint loads with weights_only=True.
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [name, torch.from_numpy(keys.copy()), pos, has_gauss, cached],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy(), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(directory: str | Path, *, student: torch.nn.Module, objective: torch.nn.Module,
               optimizer: torch.optim.Optimizer, scheduler: Any, step: int, config: dict,
               seen_text: torch.Tensor) -> Path:
    """Write ``state.pt`` into ``directory``: student, objective (latent generator + bank), optimizer,
    scheduler, step, RNG states, the resolved config and the seen text embeddings used in training."""
    path = Path(directory) / STATE_FILE
    torch.save({
        "student": student.state_dict(),
        "objective": objective.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": int(step),
        "rng": rng_state(),
        "config": config,
        "seen_text": seen_text.detach().cpu(),
    }, path)
    return path


def load_state(directory: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load ``state.pt`` written by :func:`save_state` (``weights_only=True``: tensors and plain values)."""
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {path} not found (expected a c2s checkpoint directory)")
    return torch.load(path, map_location=map_location, weights_only=True)


def latest_checkpoint(run_dir: str | Path) -> Path:
    """The newest ``checkpoint_*`` directory (holding ``state.pt``) that Ray Train wrote under a run."""
    found = [p.parent for p in Path(run_dir).glob("checkpoint_*/" + STATE_FILE)]
    if not found:
        raise FileNotFoundError(f"no checkpoint_*/{STATE_FILE} under {run_dir} (not a c2s run directory, "
                                "or no checkpoint was reported yet)")
    return max(found, key=lambda p: (p.stat().st_mtime, p.name))
