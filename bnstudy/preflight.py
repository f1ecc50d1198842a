"""A run built without training it: its data set, its model and its test settings, from its
resolved config; and the checks planning (bnstudy.sweep) runs on every run of a sweep before
any trains: the data's size against the batch sizes, and the model built once on the CPU.

The run (bnstudy.run) builds from the same functions, so that what planning checked is what
trains. Nothing here imports the training loop or the test protocol.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bnstudy.config import DataConfig, ModelConfig, StudyConfig
from bnstudy.data import DATASETS, Dataset, data_fingerprint, download_dataset, load_dataset
from bnstudy.data.synthetic import NATIVE_SIZE
from bnstudy.external import build_external, is_external
from bnstudy.finetune import initialize_from_source, source_norms
from bnstudy.models import InputShape, build_model
from bnstudy.norms import NormOptions, conv_layer, create_norm, create_norm_act, norm_spec
from bnstudy.results import SAME, TEST_MODES, setting_key

# Bytes of float32 tensors (N·C·S^dims·4, train plus test) a generated data set may take,
# checked when planning: far above any study's data (quickstart: 50 MB), far below what a size
# typo asks for. Generation and standardization briefly need about twice as much.
GENERATED_BYTES_LIMIT = 16 * 2**30


def statistics_batch(config: StudyConfig) -> int:
    """Samples per norm statistic in training: the normalization batch of BN-family norms,
    else the batch size (for per-sample norms it only sets the probe and test batch)."""
    return config.norm_batch_size or config.train.batch_size


@dataclass(frozen=True)
class EvalSetting:
    """One way of evaluating a trained model: test ``mode`` (bnstudy.results) at a test
    ``batch_size``.

    ``label`` is the mode's name for modes evaluated once, else the configured test batch size
    (``same`` for the normalization batch size, or a number)."""

    mode: str
    label: str
    batch_size: int

    @property
    def key(self) -> str:
        """The setting's name in predictions.json (bnstudy.results.setting_key)."""
        return setting_key(self.mode, self.label)


def evaluation_settings(config: StudyConfig) -> list[EvalSetting]:
    """The test settings of a run, in the order of ``eval.test_modes``."""
    settings = []
    for mode in config.eval.test_modes:
        if not TEST_MODES[mode].per_test_batch:
            settings.append(EvalSetting(mode, mode, config.eval.batch_size))
            continue
        for spec in config.eval.train_mode_batch_sizes:
            size = statistics_batch(config) if spec == SAME else spec
            settings.append(EvalSetting(mode, str(spec), size))
    return settings


def make_model(model: ModelConfig, shape: InputShape, num_classes: int) -> nn.Module:
    """Build the configured model with its norm (and the convolution it pairs with) resolved
    from the registry: a built-in model gets norm-activation units, a torchvision or user
    model (bnstudy.external) a ``norm_layer`` or its own norms replaced."""
    dims = shape.spatial_dims
    if is_external(model.name):
        norm = functools.partial(_plain_norm, model.norm, model.norm_options)
        return build_external(
            model.name,
            shape.channels,
            dims,
            shape.size,
            num_classes,
            norm,
            model.replace_norms,
            norm_spec(model.norm).conv,
        )
    norm_act = functools.partial(_norm_act, model.norm, dims, model.norm_options)
    return build_model(
        model.name, shape, num_classes, model.widths, norm_act, conv_layer(model.norm, dims)
    )


def _norm_act(
    norm: str, spatial_dims: int, options: NormOptions, channels: int, activation: str
) -> nn.Sequential:
    return create_norm_act(norm, channels, spatial_dims, options, activation)


def _plain_norm(norm: str, options: NormOptions, channels: int, spatial_dims: int) -> nn.Module:
    return create_norm(norm, channels, spatial_dims, options)


# DataConfig fields the loaders do not read (augmentation happens per batch in training)
_NOT_READ_BY_LOADERS = {
    name: DataConfig.model_fields[name].default
    for name in ("augment", "augment_padding", "download")
}


@functools.lru_cache(maxsize=2)
def _dataset(data: DataConfig, device: str, fingerprint: str | None) -> Dataset:
    """``fingerprint`` (of the files read) is part of the cache key: an edited file reloads."""
    return load_dataset(
        data.name,
        train_size=data.train_size,
        test_size=data.test_size,
        seed=data.seed,
        root=data.root,
        image_size=data.image_size,
        intensity=data.intensity,
        device=device,
        layout=data.layout,
        validation_size=data.validation_size,
        classes=data.classes,
    )


def load_data(config: StudyConfig, device: torch.device) -> Dataset:
    """The run's data set on ``device``; the runs of a sweep in one process share it. With
    data.download the files are fetched first (if missing), so that they can be fingerprinted;
    with files missing the loader is left to say where it looked and how to get them."""
    data = config.data
    if data.download:
        download_dataset(data.name, data.root)
    data = data.model_copy(update=_NOT_READ_BY_LOADERS)  # one cache entry per loaded data set
    fingerprint = None
    if data.root is not None:
        try:
            fingerprint = data_fingerprint(data.name, data.root)
        except FileNotFoundError:  # the loader raises its own one-line message
            return _dataset.__wrapped__(data, str(device), None)
    return _dataset(data, str(device), fingerprint)


def input_shape(data: Dataset) -> InputShape:
    """The shape of one sample of ``data``, as models are built for it."""
    return InputShape(data.in_channels, data.spatial_dims, data.train.x.shape[-1])


def model_for_data(config: StudyConfig, data: Dataset) -> nn.Module:
    """The run's model for ``data``'s input shape and classes, initialized from the run's seed."""
    torch.manual_seed(config.seed)
    model = make_model(config.model, input_shape(data), data.num_classes)
    return model.to(data.train.x.device)


# ------------------------------------------------------------------- checks before any run


@dataclass(frozen=True)
class Problem:
    """A problem found by building a run: its key path, message, the key paths it depends on
    (which of the run's swept values to name), and other keys as much to blame as ``key``
    (the first of them that is swept is named when ``key`` is not)."""

    key: str
    message: str
    depends: tuple[str, ...]
    alternatives: tuple[str, ...] = ()


@dataclass(frozen=True)
class _DataFacts:
    """What planning needs to know of a run's data: input shape, classes, split sizes."""

    shape: InputShape
    num_classes: int
    train_size: int
    test_size: int


def build_problem(config: StudyConfig) -> Problem | None:
    """Check the data's size against the batch sizes, and build the run's model once on the
    CPU to catch errors such as groups not dividing a width before any run starts; a data set
    read from files is loaded for it (once per process: the runs reuse it), so a missing or
    malformed file is a problem here, not an error in every run."""
    facts = _data_facts(config)
    if isinstance(facts, Problem):
        return facts
    return (
        _split_problem(config, facts)
        or _model_problem(config, facts)
        or _init_problem(config, facts)
    )


def _data_facts(config: StudyConfig) -> _DataFacts | Problem:
    spec = DATASETS[config.data.name]
    if not spec.needs_root:
        return _generated_facts(config.data)
    try:
        data = load_data(config, torch.device("cpu"))
    except (OSError, ValueError) as error:
        return Problem("data", f"{config.data.root}: {error}", ("data",))
    return _DataFacts(input_shape(data), data.num_classes, len(data.train.y), len(data.test.y))


def _generated_facts(data: DataConfig) -> _DataFacts | Problem:
    """The facts of generated data, or a problem when its float32 tensors would take more than
    GENERATED_BYTES_LIMIT (a size typo must not become a huge allocation in every run)."""
    spec = DATASETS[data.name]
    shape = InputShape(spec.in_channels, spec.spatial_dims, data.image_size or NATIVE_SIZE)
    given = (data.train_size, data.test_size)
    train, test = (n or default for n, default in zip(given, spec.default_sizes, strict=True))
    need = (train + test) * shape.channels * shape.size**shape.spatial_dims * 4
    if need <= GENERATED_BYTES_LIMIT:
        return _DataFacts(shape, spec.num_classes, train, test)
    key, *others = _oversized_keys(data, train + test, shape) or ["data"]
    sample = "×".join(map(str, (shape.channels, *(shape.size,) * shape.spatial_dims)))
    return Problem(
        key,
        f"{train} + {test} generated samples of {sample} take {_binary(need)} as float32, "
        f"over the {_binary(GENERATED_BYTES_LIMIT)} limit "
        "(bnstudy.preflight.GENERATED_BYTES_LIMIT): lower data.image_size, or "
        "data.train_size / data.test_size",
        ("data",),
        tuple(others),
    )


def _oversized_keys(data: DataConfig, samples: int, shape: InputShape) -> list[str]:
    """The set keys of ``data`` that make generated data too large, the one to blame first:
    the larger sample count when ``samples`` would not fit even at the native image size (a
    size typo), else the image size."""
    sizes = sorted(
        (k for k in ("train_size", "test_size") if getattr(data, k)),
        key=lambda k: -getattr(data, k),
    )
    native = samples * shape.channels * NATIVE_SIZE**shape.spatial_dims * 4
    image = ["image_size"] if data.image_size else []
    order = sizes + image if native > GENERATED_BYTES_LIMIT else image + sizes
    return [f"data.{k}" for k in order]


def _binary(size: int) -> str:
    """Bytes in GiB, TiB or PiB with three significant digits: ``16 GiB``, ``655 TiB``."""
    for power, unit in ((50, "PiB"), (40, "TiB")):
        if size >= 2**power:
            return f"{size / 2**power:.3g} {unit}"
    return f"{size / 2**30:.3g} GiB"


def _split_problem(config: StudyConfig, facts: _DataFacts) -> Problem | None:
    """A training pass larger than the training split would be one short batch, so the batch
    size studied would not be the one trained with; a train-mode test batch size larger than
    the test split likewise (``same`` as the run resolves it: its statistics batch). Only a
    single pass is checked: the passes of an accumulated step may add up to more than the
    split (each epoch then ends its step early, as any epoch's last step may). Eval-mode test
    batches larger than the split are one batch: harmless."""
    batch = config.train.batch_size
    if batch > facts.train_size:
        return Problem(
            "train.batch_size",
            f"{batch} is larger than the training split ({facts.train_size} samples): a pass "
            f"would be one batch of {facts.train_size} (none with train.drop_last); lower "
            "train.batch_size or raise data.train_size",
            ("train.batch_size", "data"),
        )
    return _test_batch_problem(config, facts.test_size)


def _test_batch_problem(config: StudyConfig, test_size: int) -> Problem | None:
    """A train-mode test batch larger than the test split, ``same`` resolved as the run
    resolves it (:func:`evaluation_settings`)."""
    settings = [s for s in evaluation_settings(config) if TEST_MODES[s.mode].per_test_batch]
    too_big = next((s for s in settings if s.batch_size > test_size), None)
    if too_big is None:
        return None
    label = too_big.label
    what, fix, depends = label, "lower it", ("eval", "data")
    if label == SAME:  # set by the training batches: name the run's values that set it
        what = f"same (the statistics batch, {too_big.batch_size})"
        fix, depends = "test at a number instead", ("eval", "data", "train", "model.norm")
    return Problem(
        "eval.train_mode_batch_sizes",
        f"{what} is larger than the test split ({test_size} samples): train mode would test "
        f"one batch of {test_size} labelled {label}; {fix} or raise data.test_size",
        depends,
    )


def train_split_size(config: StudyConfig) -> int:
    """The number of training samples of the run's data (:func:`data_facts`)."""
    return data_facts(config).train_size


def data_facts(config: StudyConfig) -> _DataFacts:
    """The run's input shape, classes and split sizes, without generating its data (data read
    from files is loaded, once per process). Raises ValueError where :func:`build_problem`
    finds a problem with the data."""
    facts = _data_facts(config)
    if isinstance(facts, Problem):
        raise ValueError(facts.message)
    return facts


def forward_flops(config: StudyConfig) -> int:
    """Floating-point operations of the run's model in one forward pass of one sample (torch's
    FlopCounterMode: convolutions and matrix products), counted on the meta device."""
    facts = data_facts(config)
    shape = facts.shape
    with torch.device("meta"):
        model = make_model(config.model, shape, facts.num_classes).eval()
        sample = torch.empty(1, shape.channels, *(shape.size,) * shape.spatial_dims)
    with FlopCounterMode(display=False) as counter:
        model(sample)
    return counter.get_total_flops()


def _init_problem(config: StudyConfig, facts: _DataFacts) -> Problem | None:
    """A fine-tuning run's source run (train.init_from) exists, finished, and its model fits
    this run's (bnstudy.finetune.initialize_from_source); a norm that takes over a trained
    norm's state (a frozen BN) has one."""
    if config.train.init_from is None and norm_spec(config.model.norm).loads_state_of:
        return Problem(
            "train.init_from",
            f"model.norm {config.model.norm} keeps the statistics of a trained run of "
            f"{source_norms(config.model.norm)}: name it here (from scratch they are 0 and 1)",
            ("train.init_from", "model.norm"),
        )
    if config.train.init_from is None:
        return None
    try:
        initialize_from_source(make_model(config.model, facts.shape, facts.num_classes), config)
    except ValueError as error:
        return Problem("train.init_from", str(error), ("train.init_from", "seed", "model"))
    return None


def _model_problem(config: StudyConfig, facts: _DataFacts) -> Problem | None:
    try:
        make_model(config.model, facts.shape, facts.num_classes)
    except ValueError as error:
        return Problem("model", str(error), ("model", "data"))
    except Exception as error:  # noqa: BLE001 - a user factory that breaks its contract
        message = f"{config.model.name}: {type(error).__name__}: {error}"
        return Problem("model", message, ("model", "data"))
    return None
