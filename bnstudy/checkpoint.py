"""A run's trained model and its mid-run training state, kept in its run folder.

``model.pt`` (``train.save_model``) is the trained model; ``checkpoint.pt``
(``train.checkpoint_every``) is the latest training state of an unfinished run, from which a
rerun goes on (bnstudy.train.Checkpoints); it is removed when the run finishes. Both are dicts
saved with ``torch.save`` that load with ``torch.load(path, weights_only=True)`` (containers,
numbers, strings and tensors; no pickled code)::

    {"format": 1, "run_id": "<run id>", "torch": "<version that wrote it>",
     "bnstudy": "<version (commit)>", "config": {...},   # the run's config.json
     "model": {<state_dict>}}         # model.pt: weights and buffers, on the CPU
     "training": {...}}               # checkpoint.pt: bnstudy.train's training state

Files are written atomically (bnstudy.store.atomic_file). One that does not load (missing,
truncated, not a checkpoint, another run's, another format) raises :class:`CheckpointError`,
one line naming the file: it is never silently reused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import nn

import bnstudy
from bnstudy import store
from bnstudy.record import source_commit

if TYPE_CHECKING:  # bnstudy.sweep plans fine-tuning runs from saved models
    from bnstudy.sweep import Run

FORMAT = 1


def code_version() -> str:
    """bnstudy's version and source commit (bnstudy.record.source_commit), as a checkpoint
    records them."""
    return f"{bnstudy.__version__} ({source_commit() or 'no git commit'})"


class CheckpointError(Exception):
    """A model or checkpoint file that cannot be used; the message names it."""


def save(path: Path, run_id: str, config: dict[str, Any], **content: Any) -> None:
    """Save ``content`` (``model=`` or ``training=``) with the run's identity and config to
    ``path``, atomically."""
    payload = {
        "format": FORMAT,
        "run_id": run_id,
        "torch": str(torch.__version__),
        "bnstudy": code_version(),
        "config": config,
    }
    with store.atomic_file(path) as file:
        torch.save(payload | content, file)


def load_checked(path: Path, run_id: str, part: str) -> dict[str, Any]:
    """The checkpoint at ``path``, its tensors on the CPU.

    Raises :class:`CheckpointError` (one line, naming the file) when it is missing, does not
    load with ``weights_only=True``, is not a bnstudy checkpoint of this format, belongs to
    another run than ``run_id``, or lacks ``part``."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except Exception as error:  # noqa: BLE001 - torch raises many kinds for a bad file
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckpointError(
            f"{path}: does not load with torch {torch.__version__} "
            f"({type(error).__name__}{': ' + reason if reason else ''})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a bnstudy checkpoint of format {FORMAT}")
    if payload.get("run_id") != run_id:
        raise CheckpointError(f"{path}: saved by run {payload.get('run_id')}, not by {run_id}")
    if part not in payload:
        raise CheckpointError(f"{path}: has no {part}")
    return payload


@dataclass(frozen=True)
class RunFiles:
    """Where one run keeps its trained model and training state: its folder, with its
    identity and config to stamp them with, and what its config asks to keep."""

    folder: Path
    run_id: str
    config: dict[str, Any]
    save_model: bool = True
    checkpoint_every: int | None = None

    @classmethod
    def of(cls, folder: Path, run: Run) -> RunFiles:
        train = run.config.train
        config = store.resolved_config(run.config)
        return cls(folder, run.run_id, config, train.save_model, train.checkpoint_every)

    @property
    def model_path(self) -> Path:
        return self.folder / store.MODEL

    @property
    def state_path(self) -> Path:
        return self.folder / store.CHECKPOINT

    def start_over(self) -> None:
        """Forget what the run wrote while it trained in a pack that failed: its history and
        its progress mark (it trains again, alone, from step 0)."""
        store.write_atomic(self.folder / store.HISTORY, "")
        (self.folder / store.PROGRESS).unlink(missing_ok=True)

    def keep_model(self, model: nn.Module) -> None:
        """Save the trained ``model``'s weights and buffers, if the run keeps its model."""
        if self.save_model:
            weights = {name: value.detach().cpu() for name, value in model.state_dict().items()}
            save(self.model_path, self.run_id, self.config, model=weights)

    def keep_state(self, state: dict[str, Any]) -> None:
        """Save a mid-run training state, replacing the one before."""
        save(self.state_path, self.run_id, self.config, training=state)

    def saved_state(self) -> dict[str, Any] | None:
        """The run's saved training state, None without one; :class:`CheckpointError` when
        it has one that cannot be used, or that another version of bnstudy saved (a run is
        trained by one version of the code)."""
        if not self.state_path.exists():
            return None
        payload = load_checked(self.state_path, self.run_id, "training")
        if payload.get("bnstudy") != code_version():
            raise CheckpointError(
                f"{self.state_path}: saved by bnstudy {payload.get('bnstudy')}, "
                f"this is {code_version()}"
            )
        return payload["training"]

    def discard_state(self) -> None:
        self.state_path.unlink(missing_ok=True)


class SavedModel(NamedTuple):
    """A finished run's model.pt: the model's weights and buffers, and the run's config."""

    weights: dict[str, torch.Tensor]
    config: dict[str, Any]


def saved_model(folder: Path, run_id: str) -> SavedModel:
    """The trained model in the folder of run ``run_id`` (:class:`CheckpointError` when there
    is none usable)."""
    payload = load_checked(folder / store.MODEL, run_id, "model")
    return SavedModel(payload["model"], payload["config"])
