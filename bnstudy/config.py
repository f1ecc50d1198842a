"""The study config: YAML schema, command-line overrides and validation, done once at the edge.

A study file has the sections ``name``, ``seed``, ``data``, ``model``, ``train``, ``eval``,
``analysis`` and ``sweep``. Every field below states its unit and convention. The typed config
is frozen; models, data and training receive plain values taken from it, never the file.
Invalid input raises :class:`ConfigError`, whose lines each name where the problem is (the
file, a line and column of it, or a command-line override) and the key path.
"""

from __future__ import annotations

import difflib
import re
import types
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from bnstudy.analysis_config import AnalysisConfig, Section
from bnstudy.data import DATASETS
from bnstudy.external import check_model_name, is_external
from bnstudy.models import MODELS
from bnstudy.norms import NORMS, NormOptions, uses_batch_statistics
from bnstudy.results import DEFAULT_TEST_MODES, TEST_MODES


class Problem(NamedTuple):
    """One problem of a study: where it is (the file, ``file:line:column``, or a command-line
    override), its key path ("" when it is about no one key) and what is wrong."""

    where: str
    key: str
    message: str

    def line(self) -> str:
        """``<where>: <key>: <message>``, without the key when there is none."""
        return ": ".join(part for part in self if part)


class ConfigError(Exception):
    """Invalid configuration: every :class:`Problem` found, one line each."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [problem.line() for problem in self.problems]


class DataConfig(Section):
    name: str = "synthetic2d"
    """data set (bnstudy.data.DATASETS): synthetic2d | synthetic3d | cifar10 | medmnist3d |
    fashion_mnist | mnist | imagefolder | npz
    """
    train_size: int | None = Field(None, ge=1, examples=[1000])
    """training samples; null = the data set's default"""
    test_size: int | None = Field(None, ge=1, examples=[500])
    """test samples; null = the data set's default"""
    image_size: int | None = Field(None, ge=1, validate_default=True, examples=[16])
    """pixels (voxels) per side; null = native (32 for generated data, the files' size for file
    data, which is never resized); imagefolder: required, every image is resized to it
    """
    validation_size: int | None = Field(None, ge=1, examples=[5000])
    """fashion_mnist, mnist: training images held out (class-balanced, drawn with data.seed) and
    tested on in place of the test split, to tune a protocol without the test set; null: none
    """
    classes: tuple[Annotated[int, Field(ge=0)], ...] | None = Field(
        None, min_length=2, examples=[[5, 6, 7, 8, 9]]
    )
    """fashion_mnist, mnist: keep only these classes (by their label in the files), relabelled by
    their position ([5, 6, 7, 8, 9] -> 0..4) and subsets drawn among them; another task from the
    same images (fine-tuning on classes a model was not pretrained on); null: all
    """
    seed: int = 0
    """seed of synthetic data, and of the class-balanced subsets drawn from the file data sets when
    train_size/test_size/validation_size are below a split's size; fixed across run seeds
    """
    download: bool = Field(False, exclude=True)
    """cifar10 only: fetch the files into root with torchvision when they are missing (needs
    internet; root is created). Not part of run identity (the files' fingerprint is)
    """
    root: str | None = Field(None, validate_default=True, examples=["data/cifar10"])
    """file data sets, relative to cwd: a directory (cifar10: holds cifar-10-batches-py;
    imagefolder: holds train/ and test/; fashion_mnist, mnist: the four IDX files, or torchvision's
    FashionMNIST/raw, MNIST/raw under it) or a .npz file (npz; medmnist3d, e.g. organmnist3d.npz).
    fashion_mnist without it: /usr/share/datasets/fashion-mnist
    """
    intensity: Literal["none", "per_sample_zscore"] = "none"
    """per-sample intensity normalization before anything else: none, or per_sample_zscore (each
    image/volume minus its mean over channels and pixels, divided by its std, as 3D pipelines
    normalize each volume); see bnstudy.data for what each data set builds in
    """
    layout: Literal["channels_first", "channels_last"] | None = Field(
        None, examples=["channels_last"]
    )
    """axis order in the file (npz): channels_first (N, C, ...) or channels_last (N, ..., C); null =
    channels_first, and a shape that looks channels-last (N, 24, 24, 3) is refused
    """
    augment: Literal["none", "crop", "crop_flip"] = "none"
    """training augmentation, on the device per batch (bnstudy.augment): none; crop (random crop of
    the zero-padded sample, every spatial axis); crop_flip (crop, then the last axis reversed with
    probability 1/2). Flips mirror anatomy: not for left/right labels (OrganMNIST3D's
    kidney-left/kidney-right)
    """
    augment_padding: int = Field(4, ge=0)
    """crop: zeros added on each side of every spatial axis, in pixels (voxels), after
    standardization (so the training mean of each channel); ignored (reset) with augment none
    """

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, name: str) -> str:
        return _known(name, DATASETS, "data set")

    @field_validator("root")
    @classmethod
    def _root_exists(cls, root: str | None, info: ValidationInfo) -> str | None:
        spec = DATASETS.get(info.data.get("name", ""))
        if spec is None:
            return root
        if root is None and spec.default_root is not None:
            return spec.default_root  # the loader says how to get files that are not there
        if spec.needs_root and root is None:
            raise ValueError(f"{info.data['name']} reads local files: set data.root")
        if not spec.needs_root and root is not None:
            raise ValueError(f"{info.data['name']} is generated and reads no files; remove it")
        if root is not None and not Path(root).exists() and not info.data.get("download"):
            raise ValueError(f"no such file or directory: {root}")
        return root

    @field_validator("validation_size")
    @classmethod
    def _held_out_where_the_loader_can(cls, size: int | None, info: ValidationInfo) -> int | None:
        spec = DATASETS.get(info.data.get("name", ""))
        if size is not None and spec is not None and not spec.validates:
            names = ", ".join(name for name, s in DATASETS.items() if s.validates)
            raise ValueError(f"only {names} hold out a validation split; remove it")
        return size

    @field_validator("classes", mode="before")
    @classmethod
    def _a_tuple(cls, classes: Any) -> Any:
        """YAML's list as a tuple: the data settings are hashable (runs share a loaded set)."""
        return tuple(classes) if isinstance(classes, list) else classes

    @field_validator("classes")
    @classmethod
    def _classes_where_the_loader_can(
        cls, classes: tuple[int, ...] | None, info: ValidationInfo
    ) -> tuple[int, ...] | None:
        spec = DATASETS.get(info.data.get("name", ""))
        if classes is not None and spec is not None and not spec.selects_classes:
            names = ", ".join(name for name, s in DATASETS.items() if s.selects_classes)
            raise ValueError(f"only {names} select classes; remove it")
        if classes is not None and len(set(classes)) < len(classes):
            raise ValueError(f"classes repeat: {list(classes)}")
        return classes

    @field_validator("image_size")
    @classmethod
    def _size_to_resize_to(cls, size: int | None, info: ValidationInfo) -> int | None:
        spec = DATASETS.get(info.data.get("name", ""))
        if size is None and spec is not None and spec.resizes:
            raise ValueError(f"{info.data['name']} resizes every image to it: set data.image_size")
        return size

    @field_validator("download")
    @classmethod
    def _downloadable(cls, download: bool, info: ValidationInfo) -> bool:
        spec = DATASETS.get(info.data.get("name", ""))
        if download and spec is not None and spec.download is None:
            raise ValueError(f"{info.data['name']} cannot be downloaded; remove data.download")
        return download

    @model_validator(mode="after")
    def _padding_only_with_a_crop(self) -> DataConfig:
        """augment_padding means nothing without a crop: reset, so it changes no run identity."""
        default = type(self).model_fields["augment_padding"].default
        if self.augment == "none":  # still being built: frozen only once validation returns
            object.__setattr__(self, "augment_padding", default)
        return self

    @field_validator("layout")
    @classmethod
    def _layout_of_a_file(cls, layout: str | None, info: ValidationInfo) -> str | None:
        spec = DATASETS.get(info.data.get("name", ""))
        if layout is not None and spec is not None and not spec.layouts:
            raise ValueError(f"{info.data['name']} has a fixed layout; remove it")
        return layout


class _ModelSettings(Section):
    name: str = "cnn"
    """architecture: a built-in name (bnstudy.models.MODELS), torchvision:<name> (a torchvision
    classification or video model), or <module.path>:<factory> (your own; bnstudy.external gives the
    factory contract)
    """
    widths: list[Annotated[int, Field(ge=1)]] | None = Field(
        None, min_length=1, examples=[[24, 48, 96]]
    )
    """channels per conv block of a built-in model, a non-empty list of positive integers; null =
    the model's default (a torchvision or user model sets its own: dropped from its runs' config, as
    other norms' options are)
    """
    norm: str = "batch"
    """norm layer, a name in bnstudy.norms.NORMS (`bnstudy norms` lists them)"""
    replace_norms: bool = False
    """torchvision and user models only: false = the norm is passed as norm_layer; true = the model
    is built with its own norms (norm_layer None), and every BatchNorm, GroupNorm, InstanceNorm and
    channels-first LayerNorm module is replaced by the norm, same channels
    """
    # model.<norm>: that norm's typed options (ModelConfig below adds one section per norm),
    # e.g. model.batch.momentum or model.group.groups; a run keeps only its own norm's section

    @field_validator("name")
    @classmethod
    def _known_model(cls, name: str) -> str:
        return check_model_name(name) if is_external(name) else _known(name, MODELS, "model")

    @field_validator("replace_norms")
    @classmethod
    def _only_for_external_models(cls, replace: bool, info: ValidationInfo) -> bool:
        if replace and not is_external(info.data.get("name", "")):
            raise ValueError("built-in models take the norm directly; remove it")
        return replace

    @field_validator("norm")
    @classmethod
    def _known_norm(cls, name: str, info: ValidationInfo) -> str:
        _known(name, NORMS, "norm")
        if NORMS[name].fused_activation and is_external(info.data.get("name", "")):
            raise ValueError(
                f"{name} normalizes as its activation (in place of the ReLU), and a torchvision "
                "or user model applies its own activation after norm_layer: use a built-in model"
            )
        return name

    @model_validator(mode="after")
    def _keep_only_the_norms_section(self) -> _ModelSettings:
        """A run's config holds only its norm's options (the others validated, then reset): a
        file may set model.group.groups for the group runs of a sweep, and the batch runs must
        not differ in identity by a setting they ignore (a sweep over only ignored values then
        fails as 'no run uses it')."""
        for name in NORMS:
            if name != self.norm:  # still being built: frozen only once validation returns
                object.__setattr__(self, name, NORMS[name].options())
        if is_external(self.name):
            object.__setattr__(self, "widths", None)
        return self

    @property
    def norm_options(self) -> NormOptions:
        """The options of the run's norm, as its registry factory takes them."""
        return getattr(self, self.norm)


ModelConfig = create_model(
    "ModelConfig",
    __base__=_ModelSettings,
    __doc__="model section: architecture, widths, norm, and one options section per norm.",
    **{
        name: (
            spec.options,
            Field(spec.options(), description=f"options of {name}: {spec.summary}"),
        )
        for name, spec in NORMS.items()
    },
)
# old flat model.* key -> where it lives now, for a helpful error
MOVED_KEYS = {
    legacy: [
        f"model.{spec.name}.{option}"
        for spec in NORMS.values()
        for option, old in spec.legacy_keys.items()
        if old == legacy
    ]
    for legacy in {old for spec in NORMS.values() for old in spec.legacy_keys.values()}
}


class InitFrom(Section):
    """The trained run a run starts from (fine-tuning): in the sweep folder ``study``
    (``results/<name>``, relative to the working directory), the finished run whose config has
    every ``select`` value (dotted keys: ``model.norm: batch``, ``train.norm_batch_size: 32``)
    and the seed ``seed`` (``same``: the fine-tuning run's own). Exactly one run must match."""

    study: str
    """the sweep folder of the runs to start from (``results/<name>``, relative to the working
    directory)"""
    select: dict[str, Any] = {}
    """dotted config keys and the values the source run has (``model.norm: batch``)"""
    seed: int | Literal["same"] = "same"
    """the source run's seed; same: the fine-tuning run's own"""


class TrainConfig(Section):
    batch_size: int = Field(32, ge=1)
    """samples per forward/backward pass, at most the training split's size (checked when planning,
    bnstudy.sweep); an optimizer step sees batch_size × accumulate
    """
    norm_batch_size: int | None = Field(None, ge=1, examples=[2])
    """samples per BN statistic (ghost batch norm, Hoffer et al. 2017): BN-family norms normalize
    each pass in sub-batches of this many samples; must divide batch_size; null = batch_size. Norms
    without batch statistics ignore it (dropped from their config)
    """
    accumulate: int = Field(1, ge=1)
    """passes whose gradients add up to one optimizer step"""
    epochs: int = Field(3, ge=1)
    """training budget in epochs (passes over the training split), unless steps or samples is set
    """
    steps: int | None = Field(None, ge=1, examples=[1000])
    """training budget in optimizer steps; replaces epochs when set (at most one of steps and
    samples)"""
    samples: int | None = Field(None, ge=1, examples=[64000])
    """training budget in training samples seen; replaces epochs when set (at most one of steps
    and samples)"""
    optimizer: Literal["sgd", "adam"] = "sgd"
    """sgd (with momentum, below) or adam"""
    lr: float = Field(0.05, gt=0)
    """peak learning rate at base_batch_size (before lr_scaling)"""
    lr_scaling: Literal["none", "linear", "sqrt"] = "none"
    """lr used = lr · (optimizer batch / base_batch_size)^p, p = 0 (none), 1 (linear), 1/2 (sqrt),
    optimizer batch = batch_size × accumulate
    """
    base_batch_size: int = Field(32, ge=1)
    """optimizer batch at which lr applies unscaled"""
    schedule: Literal["constant", "cosine", "step"] = "constant"
    """lr schedule after the warm-up: constant, cosine (toward 0, reached after the last step), or
    step (× step_gamma at each of step_milestones, fractions of the run's optimizer steps)
    """
    warmup_steps: int = Field(0, ge=0)
    """linear warm-up from lr/warmup to lr over this many optimizer steps (at most one of
    warmup_steps and warmup_fraction non-zero)"""
    warmup_fraction: float = Field(0.0, ge=0, lt=1)
    """linear warm-up over this fraction of the run's optimizer steps (at most one of
    warmup_steps and warmup_fraction non-zero)"""
    step_milestones: list[float] = [0.5, 0.75]
    """schedule step: fractions of the run in (0, 1)"""
    step_gamma: float = Field(0.1, gt=0)
    """schedule step: lr multiplier at each milestone"""
    momentum: float = Field(0.9, ge=0, lt=1)
    """SGD momentum (the optimizer's, not BN's)"""
    weight_decay: float = Field(5e-4, ge=0)
    """L2 penalty coefficient (SGD) / Adam weight decay"""
    drop_last: bool = False
    """drop the last incomplete batch of each epoch (as DataLoader)"""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """arithmetic of forward passes (bnstudy.train.Compute): fp32, or autocast to bf16 / fp16
    (torch.autocast(device type, dtype)) around forward and loss in training and around every
    evaluation, recalibration and diagnostic forward pass; parameters, gradients, optimizer state
    and norm statistics stay float32. fp16 also scales the loss (torch.amp.GradScaler): a step with
    inf/NaN gradients is skipped and counted, not a divergence; a non-finite epoch loss still is.
    Reduced precision changes results: compare runs of one precision
    """
    channels_last: bool = False
    """conv activations and weights in channels-last memory format (torch.channels_last for 2D data,
    channels_last_3d for 3D): the same arithmetic in another layout, often faster with reduced
    precision on GPUs; results equal up to float rounding
    """
    deterministic: bool = False
    """torch.use_deterministic_algorithms(True) (warn_only: ops without a deterministic kernel warn
    and are listed in the run's provenance), cudnn.deterministic on, cudnn.benchmark off; false:
    cudnn.benchmark on CUDA. Set for the run only, restored after it (bnstudy.device.run_flags).
    CUDA also needs CUBLAS_WORKSPACE_CONFIG=:4096:8: set if unset while CUDA has not started in the
    process; export it before bnstudy to cover every run
    """
    save_model: bool = True
    """keep the trained model (weights and buffers) in the run folder as model.pt
    (bnstudy.checkpoint; 81-390 kB for the shipped cnns, 1.1 MB for ResNet-20, 17 MB for zeros_net:
    scripts/checkpoint_sizes.py). Neither this nor checkpoint_every changes the run's identity
    """
    checkpoint_every: int | None = Field(None, ge=1, examples=[500])
    """save the training state (model, optimizer, lr schedule, RNG states, data order) every this
    many optimizer steps to checkpoint.pt, keeping only the latest; a rerun of a run killed mid-run
    resumes from it (trains alone: not packed). null: no mid-run checkpoints
    """
    init_from: InitFrom | None = Field(
        None, examples=[{"study": "results/pretrain", "select": {"model.norm": "batch"}}]
    )
    """start from another run's trained model (bnstudy.finetune): its weights and buffers where name
    and shape match, except its norm layers when this run's norm is another (GroupNorm replacing BN
    starts fresh; frozen_bn and frozen_stats take over a BN run's statistics, and need this); null:
    from the seeded initialization
    """

    @model_validator(mode="before")
    @classmethod
    def _frozen_bn_is_a_norm_now(cls, raw: Any) -> Any:
        """``train.frozen_bn`` (bnstudy 5ac6f70 and before; its default ``none`` is in every
        config.json of that time) became the norms frozen_stats and frozen_bn: ``none`` is
        dropped, so those runs' configs still validate; another value says where it went."""
        if not isinstance(raw, dict) or "frozen_bn" not in raw:
            return raw
        frozen = raw["frozen_bn"]
        if frozen != "none":
            norm = {"statistics": "frozen_stats", "all": "frozen_bn"}.get(frozen, "frozen_bn")
            raise ValueError(f"train.frozen_bn {frozen} is now model.norm: {norm}")
        return {key: value for key, value in raw.items() if key != "frozen_bn"}

    @model_validator(mode="before")
    @classmethod
    def _one_budget_unit(cls, raw: Any) -> Any:
        """steps or samples replace epochs: epochs set to another value than its default beside
        them would be ignored, so the pair is refused (a run's config.json, which holds every
        field, has the default)."""
        if not isinstance(raw, dict):
            return raw
        epochs, default = raw.get("epochs"), cls.model_fields["epochs"].default
        budget = next((k for k in ("steps", "samples") if raw.get(k) is not None), None)
        if budget and epochs is not None and epochs != default:
            raise ValueError(
                f"train.epochs {epochs} would be ignored: train.{budget} sets the length of "
                "training; remove one of them"
            )
        return raw

    @model_validator(mode="before")
    @classmethod
    def _whole_batch_is_the_default(cls, raw: Any) -> Any:
        """norm_batch_size equal to batch_size is the default: one identity for both."""
        if isinstance(raw, dict) and raw.get("norm_batch_size") == raw.get(
            "batch_size", cls.model_fields["batch_size"].default
        ):
            return {key: value for key, value in raw.items() if key != "norm_batch_size"}
        return raw

    @field_validator("norm_batch_size")
    @classmethod
    def _divides_batch(cls, size: int | None, info: ValidationInfo) -> int | None:
        batch = info.data.get("batch_size")
        if size is not None and batch is not None and batch % size:
            raise ValueError(f"{size} must divide batch_size {batch}")
        return size

    @field_validator("samples")
    @classmethod
    def _one_budget(cls, samples: int | None, info: ValidationInfo) -> int | None:
        if samples is not None and info.data.get("steps") is not None:
            raise ValueError("set at most one of steps and samples")
        return samples

    @field_validator("warmup_fraction")
    @classmethod
    def _one_warmup(cls, fraction: float, info: ValidationInfo) -> float:
        if fraction and info.data.get("warmup_steps"):
            raise ValueError("set at most one of warmup_steps and warmup_fraction")
        return fraction

    @field_validator("step_milestones")
    @classmethod
    def _fractions(cls, milestones: list[float]) -> list[float]:
        if not all(0 < m < 1 for m in milestones):
            raise ValueError(f"milestones must be fractions in (0, 1): {milestones}")
        return milestones

    @property
    def optimizer_batch_size(self) -> int:
        """Samples per optimizer step."""
        return self.batch_size * self.accumulate


class EvalConfig(Section):
    test_modes: list[str] = Field(list(DEFAULT_TEST_MODES), min_length=1)
    """names in bnstudy.results.TEST_MODES: eval (running statistics), train (each test batch's
    statistics: only the norm layers in train mode, dropout off, as TENT), precise (population
    statistics recomputed on the training set, PreciseBN), adabn (recomputed on the test set,
    AdaBN), pix2pix (the whole model in train mode at test, dropout on, pix2pix arXiv 1611.07004
    §3.3; at each train_mode_batch_sizes entry); the trained statistics are kept. Train-mode test
    batches are a seeded permutation of the test split (run seed)
    """
    train_mode_batch_sizes: list[int | Literal["same"]] = Field(["same"], min_length=1)
    """test batch sizes for train and pix2pix mode; "same" = the run's normalization batch size; a
    number must not exceed the test split (checked when planning: it would be one smaller batch)
    """
    batch_size: int = Field(500, ge=1)
    """batch size in eval mode (does not change results)"""
    precise_samples: int = Field(2048, ge=1)
    """precise/adabn: training/test samples averaged over (PreciseBN: 10^3-10^4 suffice; capped at
    the split), in batches of precise_batch_size
    """
    precise_batch_size: int | Literal["same"] = "same"
    """precise/adabn: samples per recalibration batch; same = the run's normalization batch size"""
    precise_variance: Literal["population", "batch_average"] = "population"
    """precise/adabn running variance (bnstudy.precise): population = the variance of all the
    recalibration values pooled (law of total variance: mean of the per-batch biased variances +
    variance of the batch means; fvcore's update_bn_stats, detectron2); batch_average = mean of the
    per-batch variances as the layer stores them, what the EMA converges to (pycls,
    torch.optim.swa_utils.update_bn), smaller at small batches. The pair separates "EMA noise"
    (batch_average) from "wrong estimator" (population)
    """
    test_order_seed: int = Field(0, ge=0)
    """seed of the permutation of the test split that makes the train-mode test batches (never the
    file order, which may be sorted by class); the same for every run, so that runs of different
    seeds are tested on the same batches and their disagreement is training alone
    """
    flip_reshuffles: int = Field(3, ge=1, lt=1000)
    """train mode: the test set is reshuffled this many times into other batches (independent seeded
    permutations per run, bnstudy.evaluation.reshuffle_seed); the flip rate is the mean fraction of
    predictions that change (predictions.json counts the changes per image)
    """

    @field_validator("test_modes")
    @classmethod
    def _known_modes(cls, modes: list[str]) -> list[str]:
        for mode in modes:
            _known(mode, TEST_MODES, "test mode")
        return modes

    @field_validator("test_modes", "train_mode_batch_sizes")
    @classmethod
    def _unique(cls, values: list) -> list:
        if len(set(values)) != len(values):
            raise ValueError(f"values repeat: {values}")
        if any(isinstance(v, int) and v < 1 for v in values):
            raise ValueError("test batch sizes must be >= 1")
        return values

    @field_validator("precise_batch_size")
    @classmethod
    def _positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be >= 1")
        return value


# train settings that only norms with batch statistics use: dropped from the other runs
BATCH_ONLY = ("norm_batch_size",)
BATCH_ONLY_KEYS = tuple(f"train.{key}" for key in BATCH_ONLY)


class StudyConfig(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)
    """results/<name>/: a folder name on any filesystem (at most 100 characters)"""
    seed: int = 0
    """seeds weight init and batch order of a run"""
    data: DataConfig = DataConfig()
    """the data set, its sizes and how it is prepared"""
    model: ModelConfig = ModelConfig()
    """the network and its norm, with one options section per norm (model.<norm>)"""
    train: TrainConfig = TrainConfig()
    """batches, budget, optimizer, lr schedule and numerics of training"""
    eval: EvalConfig = EvalConfig()
    """the test modes and how each is evaluated"""
    analysis: AnalysisConfig = AnalysisConfig()
    """the report's statistics (bnstudy.report.verdicts)"""
    sweep: dict[str, Any] = Field(
        {},
        examples=[{"model.norm": ["batch", "group"], "seed": [0, 1, 2]}],
    )
    """the runs: dotted key -> list of values, every combination a run (a value a run ignores,
    as GroupNorm ignores train.norm_batch_size, is dropped: it trains once); zip: [{key: list,
    ...}] advances lists together; exclude: [{key: value or list}] drops matching runs
    (bnstudy.sweep)"""

    @model_validator(mode="before")
    @classmethod
    def _drop_norm_batch_for_batch_independent_norms(cls, raw: Any) -> Any:
        """Norms without batch statistics compute the same thing at every normalization batch
        size: their runs drop train.norm_batch_size, so a sweep over it trains them once."""
        if not isinstance(raw, dict):
            return raw
        model, train = raw.get("model"), raw.get("train")
        norm = (
            model.get("norm", ModelConfig.model_fields["norm"].default)
            if isinstance(model, dict)
            else "batch"
        )
        if norm in NORMS and not uses_batch_statistics(norm) and isinstance(train, dict):
            train = {key: value for key, value in train.items() if key not in BATCH_ONLY}
            return {**raw, "train": train}
        return raw

    @property
    def norm_batch_size(self) -> int | None:
        """Samples per BN statistic in training; None for norms without batch statistics."""
        if not uses_batch_statistics(self.model.norm):
            return None
        return self.train.norm_batch_size or self.train.batch_size


def ignores(config: StudyConfig, key: str) -> bool:
    """Whether a run drops key path ``key`` from its config: another norm's options section,
    model.widths for a torchvision or user model, data.augment_padding without augmentation,
    or train.norm_batch_size for norms without batch statistics."""
    parts = key.split(".")
    if parts[0] == "model" and len(parts) > 1 and parts[1] in NORMS:
        return parts[1] != config.model.norm
    if key == "model.widths":
        return is_external(config.model.name)
    if key == "data.augment_padding":
        return config.data.augment == "none"
    return key in BATCH_ONLY_KEYS and not uses_batch_statistics(config.model.norm)


def _known(name: str, registry: dict, kind: str) -> str:
    if name not in registry:
        raise ValueError(
            f"unknown {kind} {name!r}{_suggestion(name, registry)}; "
            f"known: {', '.join(sorted(registry))}"
        )
    return name


def _suggestion(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class DuplicateKeyError(yaml.YAMLError):
    """Keys repeated within one YAML mapping: ``problems`` are (key path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{key}: {message}" for key, message in problems))


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.1 wants ``1.0e-3``) and refuses a
    key repeated within one mapping, where PyYAML would keep the last value silently."""

    def construct_document(self, node: yaml.Node) -> Any:
        problems = _duplicate_keys(node, "", set())
        if problems:
            raise DuplicateKeyError(problems)
        return super().construct_document(node)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)
_MERGE_TAG = "tag:yaml.org,2002:merge"  # ``<<: *anchor``: its keys may be overridden


def _duplicate_keys(node: yaml.Node, path: str, seen: set[int]) -> list[tuple[str, str]]:
    """(key path, message) for each scalar key that repeats an earlier one of its mapping,
    in this node and below (aliased nodes are walked once, where first seen)."""
    if id(node) in seen:
        return []
    seen.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        problems, items = [], [(f"{path}[{i}]", item) for i, item in enumerate(node.value)]
    elif isinstance(node, yaml.MappingNode):
        problems = _repeats(node, path)
        items = [(_join(path, key.value), value) for key, value in node.value]
    else:
        return []
    return problems + [p for where, item in items for p in _duplicate_keys(item, where, seen)]


def _repeats(node: yaml.MappingNode, path: str) -> list[tuple[str, str]]:
    first: dict[tuple[str, str], yaml.Mark] = {}
    problems = []
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE_TAG:
            continue
        earlier = first.setdefault((key.tag, key.value), key.start_mark)
        if earlier is not key.start_mark:
            where = _lines(earlier, key.start_mark)
            problems.append((_join(path, key.value), f"duplicate key ({where})"))
    return problems


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _lines(first: yaml.Mark, second: yaml.Mark) -> str:
    if first.line == second.line:
        return f"line {first.line + 1}, columns {first.column + 1} and {second.column + 1}"
    return f"lines {first.line + 1} and {second.line + 1}"


def parse_yaml(text: str) -> Any:
    """Parse YAML text with the study loader (:class:`DuplicateKeyError` on a repeated key)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader derives from SafeLoader


_YAML_SYNTAX_ERRORS = (yaml.MarkedYAMLError, yaml.reader.ReaderError)  # what parse_yaml raises


def _syntax_error(error: yaml.YAMLError, text: str) -> tuple[int, int, str]:
    """1-based line and column of a YAML syntax error in ``text``, and what is wrong in one line
    (PyYAML's own text spans lines, quotes the source and calls it "<unicode string>")."""
    if isinstance(error, yaml.reader.ReaderError):
        before = text[: error.position]
        column = len(before) - before.rfind("\n")
        what = f"unacceptable character #x{error.character:04x}: {error.reason}"
        return before.count("\n") + 1, column, what
    mark, context = error.problem_mark, error.context_mark
    what = error.problem
    if error.context and context and (context.line, context.column) != (mark.line, mark.column):
        what += f" ({error.context} from line {context.line + 1}, column {context.column + 1})"
    return mark.line + 1, mark.column + 1, what


def read_config_file(path: Path) -> dict[str, Any]:
    """The raw mapping in a YAML study file."""
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError([Problem(str(path), "file", error.strerror or str(error))]) from None
    except UnicodeDecodeError as error:
        raise ConfigError([Problem(str(path), "file", f"not UTF-8 text: {error.reason}")]) from None
    try:
        raw = parse_yaml(text)
    except DuplicateKeyError as error:
        raise ConfigError([Problem(str(path), *problem) for problem in error.problems]) from None
    except _YAML_SYNTAX_ERRORS as error:
        line, column, what = _syntax_error(error, text)
        where = f"{path}:{line}:{column}"
        raise ConfigError([Problem(where, "", f"YAML syntax error: {what}")]) from None
    if not isinstance(raw, dict):
        raise ConfigError([Problem(str(path), "file", "a study file must be a YAML mapping")])
    return raw


class RawStudy(dict[str, Any]):
    """A study file's mapping with command-line overrides applied. ``origins`` maps each key
    path an override set, or created on the way, to that override (``"train.epochs"`` to
    ``"train.epochs=2"``), so that a problem at or below that key names the override."""

    def __init__(self, raw: dict[str, Any]) -> None:
        super().__init__(_deep_copy(raw))
        self.origins: dict[str, str] = {}

    def override(self, path: list[str], value: Any, item: str) -> None:
        """Set ``path`` to ``value`` as override ``item`` says; it replaces the value, and the
        origin, of every key below what it sets."""
        created = _created_key(self, path)
        self.origins = {key: was for key, was in self.origins.items() if not within(key, created)}
        self.origins[created] = item
        set_path(self, path, value)


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> RawStudy:
    """Apply ``key.path=value`` overrides (values parsed as YAML) to a copy of ``raw`` that
    remembers which override set each key. An override that cannot be read (no ``=``, a value
    that is not YAML) raises :class:`ConfigError` naming it, with every other such override,
    before anything is validated: the study they describe is not known.

    Under ``sweep`` the rest of the path is one swept key: ``sweep.train.batch_size=[1,2]``.
    """
    result, problems = RawStudy(raw), []
    for item in overrides:
        try:
            key, value = _read_override(item)
        except ConfigError as error:
            problems += error.problems
        else:
            result.override(_override_path(key), value, item)
    if problems:
        raise ConfigError(problems)
    return result


def _read_override(item: str) -> tuple[str, Any]:
    """Key path and YAML value of override ``item``; :class:`ConfigError` naming it when it has
    no ``=``, its value is not YAML, or a key repeats inside its value."""
    key, sep, text = item.partition("=")
    where = f"override {item!r}"
    if not sep or not key:
        raise ConfigError([Problem(where, "", "an override has the form key.path=value")])
    try:
        return key, parse_yaml(text)
    except DuplicateKeyError as error:
        problems = [Problem(where, _join(key, at), why) for at, why in error.problems]
        raise ConfigError(problems) from None
    except _YAML_SYNTAX_ERRORS as error:
        line, column, what = _syntax_error(error, text)
        message = f"YAML syntax error at line {line}, column {column} of the value: {what}"
        raise ConfigError([Problem(where, key, message)]) from None


def _override_path(key: str) -> list[str]:
    head, _, rest = key.partition(".")
    return [head, rest] if head == "sweep" and rest else key.split(".")


def _created_key(raw: dict[str, Any], path: list[str]) -> str:
    """The key path that setting ``path`` in ``raw`` creates or replaces: the first mapping
    missing on the way, else ``path`` itself."""
    node = raw
    for depth, part in enumerate(path[:-1]):
        if not isinstance(node.get(part), dict):
            return ".".join(path[: depth + 1])
        node = node[part]
    return ".".join(path)


def set_path(raw: dict[str, Any], path: list[str], value: Any) -> None:
    """Set ``raw[path[0]][path[1]]... = value``, creating mappings on the way."""
    node = raw
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[path[-1]] = value


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def within(key: str, path: str) -> bool:
    """Whether key path ``key`` is ``path`` or below it (``model.widths[0]`` is below
    ``model.widths``)."""
    return key == path or key.startswith((f"{path}.", f"{path}["))


def locate(problems: list[tuple[str, str]], source: str, raw: dict[str, Any]) -> list[Problem]:
    """Each (key path, message) problem of ``raw`` as a :class:`Problem` of the override that
    set its key or a key above it (:class:`RawStudy`), else of the file ``source``, naming the
    overrides that set keys below it (a section's problem may come from them)."""
    origins = raw.origins if isinstance(raw, RawStudy) else {}
    return [_locate(key, message, source, origins) for key, message in problems]


def _locate(key: str, message: str, source: str, origins: dict[str, str]) -> Problem:
    owners = [path for path in origins if within(key, path)]
    if owners:
        return Problem(f"override {origins[max(owners, key=len)]!r}", key, message)
    below = [repr(item) for path, item in origins.items() if within(path, key)]
    if below:
        message += f" (with override{'s' * (len(below) > 1)} {', '.join(below)})"
    return Problem(source, key, message)


def check_study(raw: dict[str, Any]) -> tuple[StudyConfig | None, list[tuple[str, str]]]:
    """The validated study and no problems, or None and every (key path, message) problem."""
    try:
        return StudyConfig.model_validate(raw), []
    except ValidationError as error:
        return None, _problems(error.errors())


def validate_study(raw: dict[str, Any], source: str) -> StudyConfig:
    """Validate a raw mapping; raise :class:`ConfigError` listing every problem."""
    study, problems = check_study(raw)
    if study is None:
        raise ConfigError(locate(problems, source, raw))
    return study


def _problems(errors: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """One (key path, message) per mistake. pydantic reports a value that fits no member of a
    union (``int | Literal["same"]``) once per member, under a key path that names the member
    (``eval.precise_batch_size.int``); those errors become one problem of the field."""
    grouped: dict[Any, list[dict[str, Any]]] = {}
    for index, error in enumerate(errors):
        loc, member = _without_union_members(error["loc"])
        grouped.setdefault(loc if member else index, []).append({**error, "loc": loc})
    return [_describe(_merged(group)) for group in grouped.values()]


def _without_union_members(loc: tuple[int | str, ...]) -> tuple[tuple[int | str, ...], bool]:
    """pydantic's ``loc`` without the parts that name the member of a union it tried, found by
    following the config's types along it, and whether there was one."""
    kept: list[int | str] = []
    node, member = _unwrapped(StudyConfig), False
    for part in loc:
        if get_origin(node) in (Union, types.UnionType):  # more than one member: a tag
            node, member = Any, True
            continue
        kept.append(part)
        node = _unwrapped(_inner(node, part))
    return tuple(kept), member


def _unwrapped(node: Any) -> Any:
    """``node`` without Annotated and without None in a union (pydantic names no member of
    ``X | None``)."""
    while True:
        if get_origin(node) is Annotated:
            node = get_args(node)[0]
            continue
        members = [m for m in get_args(node) if m is not type(None)]
        if get_origin(node) in (Union, types.UnionType) and len(members) == 1:
            node = members[0]
            continue
        return node


def _inner(node: Any, part: int | str) -> Any:
    """The type at ``part`` of ``node`` (a field of a section, an item of a list)."""
    origin = get_origin(node)
    if origin is list:
        return get_args(node)[0]
    if origin is dict:
        return get_args(node)[1]
    if origin is None and isinstance(node, type) and issubclass(node, BaseModel):
        field = node.model_fields.get(str(part))
        return field.annotation if field else Any
    return Any


def _merged(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """The errors of one value's union members as one, their messages joined with "or"
    ("Input should be a valid integer or 'same'")."""
    first, *others = errors
    joined = [first["msg"], *(e["msg"].removeprefix("Input should be ") for e in others)]
    return {**first, "msg": " or ".join(joined)}


def _describe(error: dict[str, Any]) -> tuple[str, str]:
    loc = [str(part) for part in error["loc"]]
    key = _key_path(error["loc"]) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        return key, "unknown key" + _moved_or_suggestion(loc)
    if kind == "missing":
        return key, "required key is missing"
    message = error["msg"].removeprefix("Value error, ")
    if kind.endswith("_type") or kind.startswith(("literal", "greater", "less", "too_", "finite")):
        message += f" (got {error['input']!r})"
    return key, message


def _key_path(loc: tuple[int | str, ...]) -> str:
    """``model.widths[0]`` for pydantic's ("model", "widths", 0)."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def _moved_or_suggestion(loc: list[str]) -> str:
    if loc[:-1] == ["model"] and loc[-1] in MOVED_KEYS:
        return f" (norm options moved to per-norm sections: {' or '.join(MOVED_KEYS[loc[-1]])})"
    return _suggestion(loc[-1], field_names(loc[:-1]))


def field_names(path: list[str]) -> list[str]:
    """Names of the config fields under ``path`` (empty when path isn't a section)."""
    section: type[BaseModel] = StudyConfig
    for part in path:
        field = section.model_fields.get(part)
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        section = annotation
    return list(section.model_fields)


def check_key_path(dotted: str) -> str | None:
    """None if ``dotted`` names a config field, else a message with a suggestion."""
    *parents, leaf = dotted.split(".")
    names = field_names(parents)
    if leaf in names and leaf != "sweep":
        return None
    if not names:
        return "not a config key" + _suggestion(dotted, _all_key_paths())
    return "not a config key" + _moved_or_suggestion(dotted.split("."))


def _all_key_paths() -> list[str]:
    paths = []
    for name in field_names([]):
        sub = field_names([name])
        paths += [f"{name}.{leaf}" for leaf in sub] if sub else [name]
    return paths
