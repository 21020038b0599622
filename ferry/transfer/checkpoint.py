"""Checkpoints a re-run resumes from: written atomically, loaded without pickle.

Each checkpoint holds the model, optimizer, scheduler and RNG state, the epoch, the early
stopping record, the strategy's freeze state, the config and the data version. It is written
to a temporary file and renamed, so a kill mid-write never leaves a file that cannot load, and
it is loaded with ``weights_only=True``. A checkpoint made for another config or data version is
refused rather than silently reused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ferry.errors import CheckpointError
from ferry.files import content_key, write_atomic

LAST = "last.pt"
BEST = "best.safetensors"


def identity_key(identity: dict[str, Any]) -> str:
    """Stable short hash of what must match for a checkpoint to be reused."""
    return content_key(16, **identity)


class Checkpointer:
    """Reads and writes one run's checkpoints in ``folder``."""

    def __init__(self, folder: Path, identity: dict[str, Any]) -> None:
        self.folder = folder
        self.identity = identity
        self.key = identity_key(identity)

    def load(self) -> dict[str, Any] | None:
        """The last checkpoint, or None; CheckpointError if it belongs to another run setup."""
        path = self.folder / LAST
        if not path.is_file():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated file or a pickle payload: never execute it
            raise CheckpointError(f"{path}: cannot be loaded safely ({exc}); delete it to start "
                                  "over") from None
        if state.get("key") != self.key:
            raise CheckpointError(f"{path} was written for another config or data version "
                                  f"(key {state.get('key')} != {self.key}); refusing to resume "
                                  "from it. Delete the folder or change paths.checkpoints.")
        return state

    def save(self, state: dict[str, Any]) -> Path:
        """Atomically replace the last checkpoint."""
        state = {**state, "key": self.key, "identity": json.dumps(self.identity, default=str)}
        return write_atomic(self.folder / LAST, lambda tmp: torch.save(state, tmp))

    def save_best(self, model: nn.Module) -> Path:
        """Keep the best-so-far weights (safetensors) for the final model."""
        from safetensors.torch import save_file

        tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        return write_atomic(self.folder / BEST, lambda tmp: save_file(tensors, str(tmp)))

    def load_best(self, model: nn.Module) -> bool:
        """Load the best weights into ``model`` if they exist."""
        from safetensors.torch import load_file

        path = self.folder / BEST
        if not path.is_file():
            return False
        model.load_state_dict(load_file(str(path)))
        return True



def rng_state() -> dict[str, Any]:
    """The CPU generator's state, and this process's GPU's (not every visible GPU's: a
    resume on a host with fewer GPUs could not restore those)."""
    state: dict[str, Any] = {"rng": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state(torch.cuda.current_device())
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` saved. Older checkpoints hold a list (one state per GPU
    of the saving host): as many as this host has are restored, the rest dropped."""
    torch.set_rng_state(state["rng"])
    saved = state.get("cuda_rng")
    if saved is None or not torch.cuda.is_available():
        return
    if torch.is_tensor(saved):
        torch.cuda.set_rng_state(saved, torch.cuda.current_device())
        return
    for index, one in enumerate(saved[:torch.cuda.device_count()]):
        torch.cuda.set_rng_state(one, index)
