"""Fine-tuning: a run that starts from another run's trained model (``train.init_from``).

The question it asks is the practitioner's "I fine-tune a pretrained model at batch 2: should I
freeze BN?". detectron2 freezes BN by default when fine-tuning detectors (``FrozenBN``:
statistics and affine fixed, as torchvision's ``ops.FrozenBatchNorm2d``), because batch
statistics over 2 images per GPU are noise. A fine-tuning study asks it with the norm of the
fine-tuning runs: ``batch`` trains the pretrained BN as usual (at any normalization batch size),
``frozen_bn`` and ``frozen_stats`` (:mod:`bnstudy.norms.frozen`) take over its statistics and
keep them fixed, with γ and β fixed or trained, and a norm that loads nothing of the source's
norm layers (``group``) replaces them with fresh ones.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from torch import nn

from bnstudy import checkpoint, store
from bnstudy.config import InitFrom, StudyConfig
from bnstudy.norms import module_spec, norm_spec
from bnstudy.results import OK, RUN_ID, STATUS


def source_run(init: InitFrom, seed: int) -> tuple[Path, str]:
    """The folder and id of the run ``init`` names for a run with ``seed``: the finished run of
    sweep folder ``init.study`` whose config has every ``init.select`` value and the seed.
    ValueError saying what is wrong: no sweep folder, no run or several, a run that did not
    finish ok or kept no model."""
    sweep = Path(init.study)
    want = {**init.select, "seed": seed if init.seed == "same" else init.seed}
    wanted = ", ".join(f"{key}={value}" for key, value in want.items())
    try:
        entries = store.read_plan(sweep)
    except FileNotFoundError as error:
        raise ValueError(str(error)) from None
    matches = [e[RUN_ID] for e in entries if _has(sweep, e[RUN_ID], want)]
    if not matches:
        raise ValueError(f"no finished run of {sweep} has {wanted}")
    if len(matches) > 1:
        raise ValueError(
            f"{len(matches)} runs of {sweep} have {wanted} ({', '.join(matches)}): add "
            "select keys that tell them apart"
        )
    (run_id,) = matches
    folder = store.run_dir(sweep, run_id)
    result = store.read_result(sweep, run_id)
    if result is None or result[STATUS] != OK:
        raise ValueError(f"run {run_id} of {sweep} did not finish ok")
    if not (folder / store.MODEL).is_file():
        raise ValueError(f"run {run_id} of {sweep} kept no model (train.save_model false)")
    return folder, run_id


def _has(sweep_dir: Path, run_id: str, want: dict[str, Any]) -> bool:
    """Whether the run has a config with every dotted key of ``want`` at its value."""
    folder = store.run_dir(sweep_dir, run_id)
    if not (folder / store.CONFIG).is_file():
        return False
    config = store.read_config(folder)
    return all(store.value_at(config, key) == value for key, value in want.items())


def init_fingerprint(config: StudyConfig) -> str:
    """What a fine-tuning run's identity adds: its source run's id and the SHA-256 (16 hex
    digits) of its model.pt, so that a retrained source retrains the runs built on it."""
    folder, run_id = source_run(config.train.init_from, config.seed)
    digest = hashlib.sha256((folder / store.MODEL).read_bytes()).hexdigest()[:16]
    return f"{run_id}:{digest}"


def initialize_from_source(model: nn.Module, config: StudyConfig) -> dict[str, Any]:
    """Load the source run's trained weights and buffers into ``model`` (built for
    ``config``) where name and shape match, leaving its norm layers as initialized when the
    source trained a norm whose state this one does not load (:func:`loads_norm_state`); what
    the record says of it: the source run's folder (``initialized_from``) and the state names
    left as initialized (``fresh_state``). ValueError when a state entry that is not a norm
    layer's finds nothing to load (another architecture), when this norm needs the source's
    norm state and cannot have it, or when the model.pt does not load (bnstudy.checkpoint's
    line)."""
    folder, run_id = source_run(config.train.init_from, config.seed)
    try:
        weights, source = checkpoint.saved_model(folder, run_id)
    except checkpoint.CheckpointError as error:
        raise ValueError(str(error)) from None
    fresh = set() if loads_norm_state(config, source, run_id) else _norm_state_names(model)
    state = model.state_dict()
    loaded = {
        name: value
        for name, value in weights.items()
        if name in state and name not in fresh and value.shape == state[name].shape
    }
    unmatched = [name for name in state if name not in loaded and name not in fresh]
    if unmatched:
        raise ValueError(
            f"the model of run {run_id} ({folder}) has nothing of this name and shape for "
            f"{', '.join(unmatched[:3])}{' ...' if len(unmatched) > 3 else ''}: another "
            "architecture or number of classes"
        )
    model.load_state_dict(loaded, strict=False)
    return {"initialized_from": str(folder), "fresh_state": sorted(fresh)}


def loads_norm_state(config: StudyConfig, source: dict[str, Any], run_id: str) -> bool:
    """Whether a run of ``config`` loads the norm layers' state of source run ``run_id``
    (``source``: its config): when it trained the same norm, or one this norm takes over
    (``loads_state_of``: a frozen BN keeps a BN's statistics, with the same eps). ValueError
    when this norm must take over a source's state and cannot."""
    norm, trained = config.model.norm, source["model"]["norm"]
    spec = norm_spec(norm)
    if not spec.loads_state_of:
        return trained == norm
    if trained not in spec.loads_state_of:
        raise ValueError(
            f"{norm} takes over the statistics of a run of {source_norms(norm)}, and run "
            f"{run_id} trained {trained} (select the source run by model.norm)"
        )
    default_eps = norm_spec(trained).options().eps
    source_eps = source["model"].get(trained, {}).get("eps", default_eps)
    eps = config.model.norm_options.eps
    if eps != source_eps:
        raise ValueError(
            f"model.{norm}.eps {eps:g} differs from the eps of run {run_id}'s {trained} "
            f"({source_eps:g}): its statistics were used with that eps"
        )
    return True


def source_norms(norm: str) -> str:
    """The norms whose trained state ``norm`` takes over, as text: ``batch, frozen_bn or
    frozen_stats``."""
    *others, last = norm_spec(norm).loads_state_of
    return f"{', '.join(others)} or {last}" if others else last


def _norm_state_names(model: nn.Module) -> set[str]:
    """The state_dict names of the model's norm layers (the registry's modules)."""
    return {
        f"{owner}.{name}" if owner else name
        for owner, module in model.named_modules()
        if module_spec(module) is not None
        for name in module.state_dict()
    }
