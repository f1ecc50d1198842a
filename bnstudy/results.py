"""The vocabulary of results, declared once: the outcomes of a run, the test modes and the
columns of ``runs.csv``. The store writes these names, and the run, the report and the command
line use them rather than literals of their own. Adding a column or a test mode is one entry
here (the run still has to compute the value, the report to say something about it).

Outcomes of a run and of a test setting (result.json, runs.csv, the report, the CLI):

- ``ok``        trained (and, for a test setting, tested) to the end.
- ``error``     an exception; its message verbatim and where it happened are kept.
- ``diverged``  the training loss became NaN or infinite (bnstudy.train.Diverged).
- ``oom``       memory ran out (bnstudy.device.is_out_of_memory): the run (or test setting) did
                not fit on the device at that batch size; the message says where. A sweep
                going up in batch size shows where it stops fitting.
- ``crashed``   the worker process training the run died (a signal, a segfault, the kernel's OOM
                killer); the message says how. ``bnstudy run --retry crashed`` trains it again.

A test setting that was never reached is ``not run``.

Test modes: how a trained model is evaluated (``eval.test_modes``).

- ``eval``     norm layers in eval mode: BN normalizes with its running statistics (the moving
               average kept during training).
- ``train``    norm layers in train mode: each test batch normalizes with its own statistics,
               the choice pix2pix makes at test time (arXiv 1611.07004 §3.3); evaluated at each
               of ``eval.train_mode_batch_sizes``. Only the layers whose norm uses batch
               statistics go to train mode, as in TENT's BN adaptation (Wang et al. 2021,
               ``DequanWang/tent`` ``norm.py``); dropout and everything else stay in eval mode.
               A prediction then depends on the rest of its batch (the flip rate measures how
               much), so the test batches are drawn by a seeded permutation of the test split,
               never in its file order (a class-sorted folder would give single-class batches).
- ``pix2pix``  the whole model in train mode at test, dropout on (pix2pix, arXiv 1611.07004
               §3.3: its generator keeps dropout as the noise source; junyanz's ``test.py``
               calls ``model.eval()`` only with ``--eval``). As ``train`` otherwise; beside it,
               it shows what dropout adds. Its predictions are random even at a test batch of
               1, so its flip rate counts that randomness too.
- ``precise``  eval mode after PreciseBN: population statistics recomputed on training samples
               with frozen weights (Wu & Johnson 2021, arXiv 2105.07576; :mod:`bnstudy.precise`):
               the variance of all the values pooled, or with ``eval.precise_variance:
               batch_average`` the mean of per-batch variances (what the EMA converges to).
- ``adabn``    eval mode after the same recomputation on the test set: AdaBN (Li et al. 2016,
               arXiv 1603.04779), the test-set statistics that Schneider et al. 2020 (arXiv
               2006.16971) report to lower ResNet-50's ImageNet-C mCE from 76.7 to 62.2. Beside
               ``precise`` it shows whether the test set's statistics differ from the training
               set's (a covariate shift); beside ``train`` whether a population beats per-batch
               statistics.

For norms without running statistics ``eval``, ``train``, ``precise`` and ``adabn`` compute the
same thing. A run stores its predictions per test setting under :func:`setting_key`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

# ---------------------------------------------------------------------------------------------
# Outcomes.

OK, ERROR, DIVERGED, OOM, CRASHED = "ok", "error", "diverged", "oom", "crashed"
NOT_RUN = "not run"
FAILURES = (ERROR, DIVERGED, OOM, CRASHED)  # a run or setting without a result


def counts_text(counts: dict[str, int]) -> str:
    """``a ok, b error, c diverged`` plus ``d oom`` and any other status when present (a sweep
    that never runs out of memory is not told so on every line)."""
    counts = dict(counts)  # also a pandas value_counts Series
    always = (OK, ERROR, DIVERGED)
    rest = sorted(status for status in counts if status not in always and counts[status])
    shown = [*always, *sorted(rest, key=lambda status: status != OOM)]
    return ", ".join(f"{counts.get(status, 0)} {status}" for status in shown)


# ---------------------------------------------------------------------------------------------
# A run's length.

EPOCH, STEP, SAMPLE = "epoch", "step", "sample"  # units of a run's length (training_budget)


def training_budget(epochs: int, steps: float | None, samples: float | None) -> tuple[int, str]:
    """What sets a run's length, as (amount, unit): ``steps`` optimizer steps or ``samples``
    training samples when set (they replace epochs, bnstudy.config.TrainConfig), else
    ``epochs`` passes over the training split. None and NaN are unset."""
    for amount, unit in ((steps, STEP), (samples, SAMPLE)):
        if amount is not None and not (isinstance(amount, float) and math.isnan(amount)):
            return int(amount), unit
    return int(epochs), EPOCH


def duration_text(seconds: float) -> str:
    """A duration: in s (one decimal below 10 s) below two minutes, else in min with one
    decimal."""
    if seconds < 120:
        return f"{seconds:.{1 if seconds < 10 else 0}f} s"
    return f"{seconds / 60:.1f} min"


def count_text(count: object, noun: str) -> str:
    """``count noun`` with an s unless the count is ``1`` (``1 epoch``, ``4 steps``, ``1, 2
    epochs``); empty without a count."""
    text = str(count)
    return f"{text} {noun}{'' if text == '1' else 's'}" if text else ""


# ---------------------------------------------------------------------------------------------
# Test modes.


@dataclass(frozen=True)
class ModeSpec:
    """One test mode.

    description: what it does, for report labels.
    layers_train: norm layers are in train mode while testing (statistics of each test batch,
        in batches drawn by a seeded permutation of the test split).
    whole_model: with ``layers_train``, every module is in train mode, not only the norms
        (dropout on: pix2pix).
    per_test_batch: evaluated once per ``eval.train_mode_batch_sizes`` entry (the test batch
        changes the result); else once, labelled by its name.
    population: the split whose population statistics are recomputed before testing, or None.
    compare_with: the modes the report subtracts from this one within a run (this − that).
    """

    name: str
    description: str
    layers_train: bool = False
    whole_model: bool = False
    per_test_batch: bool = False
    population: Literal["train", "test"] | None = None
    compare_with: tuple[str, ...] = ()


EVAL, TRAIN, PRECISE, ADABN, PIX2PIX = "eval", "train", "precise", "adabn", "pix2pix"
TEST_MODES: dict[str, ModeSpec] = {
    mode.name: mode
    for mode in (
        ModeSpec(EVAL, "running stats", compare_with=(TRAIN,)),
        ModeSpec(TRAIN, "batch stats", layers_train=True, per_test_batch=True),
        ModeSpec(
            PRECISE,
            "population stats recomputed on the training set, PreciseBN",
            population="train",
            compare_with=(EVAL, TRAIN),
        ),
        ModeSpec(
            ADABN,
            "population stats recomputed on the test set, AdaBN",
            population="test",
            compare_with=(EVAL, PRECISE),
        ),
        ModeSpec(
            PIX2PIX,
            "whole model in train mode at test, dropout on (pix2pix, arXiv 1611.07004 §3.3)",
            layers_train=True,
            whole_model=True,
            per_test_batch=True,
        ),
    )
}
DEFAULT_TEST_MODES = (EVAL, TRAIN)  # eval.test_modes when a study names none
# the test-batch label of a per-test-batch mode at the training normalization batch size
SAME = "same"


def setting_key(mode: str, label: str) -> str:
    """The name of a test setting (``test_mode``, ``test_batch`` label) in a run's
    predictions.json: the label for modes evaluated once (their label is the mode's name) and
    for ``train`` (``same``, ``1``: the keys of runs stored before other modes had test
    batches); ``<mode>:<label>`` for the other modes evaluated per test batch
    (``pix2pix:same``), whose labels would otherwise collide with train mode's."""
    if mode == TRAIN or not TEST_MODES[mode].per_test_batch:
        return label
    return f"{mode}:{label}"


# ---------------------------------------------------------------------------------------------
# Columns of runs.csv: one row per run × test setting.


Part = Literal["run", "config", "result", "provenance", "test", "train", "diagnostics"]


@dataclass(frozen=True)
class Column:
    """One column of ``runs.csv``.

    name: its header.
    dtype: what a value is: ``str``, ``int``, ``float`` or ``bool``; empty when unknown
        (a run from before it was recorded, or a value that does not apply).
    meaning: what it holds, with its unit.
    part: where a run's value comes from: ``config`` or ``result`` (``key``, a dotted path in
        its config.json or result.json), ``run`` (derived from both by
        :func:`bnstudy.store.run_fields`), ``provenance``, ``train``, ``diagnostics`` (the entry
        ``name`` of that section of result.json) or ``test`` (of each entry of its ``tests``).
    key: the dotted path, for ``config`` and ``result`` columns.
    """

    name: str
    dtype: str
    meaning: str
    part: Part
    key: str | None = None


COLUMNS: dict[str, Column] = {}


def _column(name: str, dtype: str, meaning: str, part: Part, key: str | None = None) -> str:
    if (key is not None) != (part in ("config", "result")):
        raise ValueError(f"column {name!r}: a key is where a config or result column is read")
    COLUMNS[name] = Column(name, dtype, meaning, part, key)
    return name


def columns_of(*parts: Part) -> list[str]:
    """The columns whose values come from one of ``parts``, in table order."""
    return [column.name for column in COLUMNS.values() if column.part in parts]


# Declaration order is the table's order; swept keys follow these columns.
RUN_ID = _column("run_id", "str", "the run's identity: a hash of its resolved config", "run")
NAME = _column("name", "str", "the study's name", "config", "name")
DATASET = _column("dataset", "str", "the data set, data.name", "config", "data.name")
MODEL = _column("model", "str", "the architecture, model.name", "config", "model.name")
NORM = _column("norm", "str", "model.norm, a name in bnstudy.norm_catalog", "config", "model.norm")
BATCH_SIZE = _column(
    "batch_size", "int", "train.batch_size: images per forward pass", "config", "train.batch_size"
)
NORM_BATCH_SIZE = _column(
    "norm_batch_size",
    "int",
    "samples per BN statistic (ghost batches); empty for norms without batch statistics",
    "run",
)
ACCUMULATE = _column("accumulate", "int", "train.accumulate: forward passes per step", "run")
OPTIMIZER_BATCH_SIZE = _column(
    "optimizer_batch_size", "int", "images per optimizer step: batch_size × accumulate", "run"
)
LR = _column("lr", "float", "the learning rate used, after train.lr_scaling", "result", "train.lr")
SEED = _column("seed", "int", "the run's seed: initialization and data order", "config", "seed")
NUM_CLASSES = _column(
    "num_classes",
    "int",
    "classes of the data set (chance = 100 / it)",
    "result",
    "data.num_classes",
)
# Where and how a run computed, from its provenance (bnstudy.record); runs from before these
# were recorded have them empty.
DEVICE_NAME = _column(
    "device_name", "str", "GPU name, or CPU model and whether it has AVX-512", "provenance"
)
TORCH = _column("torch", "str", "torch version", "provenance")
DEVICE = _column("device", "str", "cpu or cuda:N", "provenance")
CUDA = _column("cuda", "str", "the CUDA version torch was built with", "provenance")
CPU_CAPABILITY = _column(
    "cpu_capability", "str", "torch's CPU kernel set: AVX2, AVX512, ...", "provenance"
)
PRECISION = _column("precision", "str", "train.precision as in effect", "provenance")
BNSTUDY_COMMIT = _column(
    "bnstudy_commit",
    "str",
    "git commit of the source, +dirty; empty outside a checkout",
    "provenance",
)
CHANNELS_LAST = _column(
    "channels_last", "bool", "channels-last memory format in effect", "provenance"
)
DETERMINISTIC = _column("deterministic", "bool", "deterministic algorithms in effect", "provenance")
PEAK_MEMORY_MIB = _column(
    "peak_memory_mib",
    "float",
    "MiB; CUDA: the run's peak of allocated tensors, its data included; CPU: the process's "
    "peak resident set",
    "provenance",
)
PACKED = _column(
    "packed",
    "int",
    "runs trained together as one packed network (bnstudy.packing), this one included; "
    "empty: alone",
    "provenance",
)
PACK_NOTE = _column(
    "pack_note", "str", "why the run trained alone though packing was asked", "provenance"
)
EVALUATED_LATER = _column(
    "evaluated_later",
    "bool",
    "tested after training from the saved model (bnstudy evaluate); its provenance columns "
    "are the evaluation's",
    "test",
)
STATUS = _column("status", "str", "the outcome of the test setting (or of training)", "test")
ERROR_MESSAGE = _column("error", "str", "a failure's message", "test")
ERROR_AT = _column("error_at", "str", "where a failure happened", "test")
TEST_MODE = _column("test_mode", "str", "a name in TEST_MODES", "test")
TEST_BATCH = _column(
    "test_batch",
    "str",
    "the setting's label: the mode's name, same, or a test batch size",
    "test",
)
TEST_BATCH_SIZE = _column("test_batch_size", "int", "images per test forward pass", "test")
PRECISE_VARIANCE = _column(
    "precise_variance",
    "str",
    "precise/adabn's running-variance estimator (eval.precise_variance: population or "
    "batch_average); empty for other test modes",
    "test",
)
TEST_ACC = _column("test_acc", "float", "test accuracy, a fraction in [0, 1]", "test")
TEST_LOSS = _column("test_loss", "float", "mean test cross-entropy (nats)", "test")
TEST_FLIP_RATE = _column(
    "test_flip_rate",
    "float",
    "fraction of test images whose prediction changes when the test batches are reshuffled",
    "test",
)
TRAIN_LOSS = _column("train_loss", "float", "mean training loss of the last epoch", "train")
TRAIN_ACC = _column(
    "train_acc", "float", "training accuracy of the last epoch, a fraction", "train"
)
EPOCHS = _column("epochs", "float", "epochs trained", "train")
STEPS = _column("steps", "int", "optimizer steps taken", "train")
TRAIN_SECONDS = _column("train_seconds", "float", "wall time of training (s)", "train")
SAMPLES_PER_SEC = _column("samples_per_sec", "float", "training throughput (images/s)", "train")
SKIPPED_STEPS = _column(
    "skipped_steps", "int", "fp16 optimizer steps skipped for inf/NaN gradients", "train"
)
CHECKPOINT_IGNORED = _column(
    "checkpoint_ignored",
    "str",
    "why a mid-run checkpoint was not used (trained from step 0)",
    "train",
)
RESUMED_AT_STEP = _column(
    "resumed_at_step",
    "int",
    "the optimizer step whose mid-run checkpoint training went on from; empty: from step 0",
    "train",
)
# Per-run diagnostics (bnstudy.diagnostics); init_* are taken before training.
MIN_VALUES_PER_STAT = _column(
    "min_values_per_stat", "int", "fewest values any BN statistic averages over", "diagnostics"
)
BN_MIN_VAR = _column("bn_min_var", "float", "smallest per-channel batch variance", "diagnostics")
BN_MEAN_NOISE = _column(
    "bn_mean_noise",
    "float",
    "spread of the batch means around the population mean, in population standard deviations",
    "diagnostics",
)
BN_MEAN_NOISE_BETWEEN_IMAGES = _column(
    "bn_mean_noise_between_images",
    "float",
    "the between-image prediction of bn_mean_noise",
    "diagnostics",
)
BN_MEAN_NOISE_VALUES_LAW = _column(
    "bn_mean_noise_values_law",
    "float",
    "the 1/√values prediction of bn_mean_noise",
    "diagnostics",
)
NOISE_IMAGES = _column("noise_images", "int", "images per statistic of the noise", "diagnostics")
BN_VAR_NOISE = _column(
    "bn_var_noise", "float", "relative spread of the batch variances", "diagnostics"
)
OUTPUT_STD = _column(
    "output_std",
    "float",
    "std of the train-mode outputs on a fixed probe batch, after training",
    "diagnostics",
)
ZERO_FRACTION = _column(
    "zero_fraction", "float", "fraction of those outputs exactly 0", "diagnostics"
)
BETA_FRACTION = _column(
    "beta_fraction",
    "float",
    "fraction of the last norm's outputs exactly equal to its β",
    "diagnostics",
)
OUTPUT_CHANGE = _column(
    "output_change",
    "float",
    "largest output change when the probe input is replaced (0: the input is ignored)",
    "diagnostics",
)
INIT_OUTPUT_STD = _column("init_output_std", "float", "output_std before training", "diagnostics")
INIT_ZERO_FRACTION = _column(
    "init_zero_fraction", "float", "zero_fraction before training", "diagnostics"
)
INIT_BETA_FRACTION = _column(
    "init_beta_fraction", "float", "beta_fraction before training", "diagnostics"
)
INIT_OUTPUT_CHANGE = _column(
    "init_output_change", "float", "output_change before training", "diagnostics"
)
