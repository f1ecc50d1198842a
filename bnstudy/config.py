"""The study config: YAML schema, command-line overrides and validation, done once at the edge.

A study file has the sections ``name``, ``seed``, ``data``, ``model``, ``train``, ``eval`` and
``sweep``. Every field below states its unit and convention. The typed config is frozen;
models, data and training receive plain values taken from it, never the file.
Invalid input raises :class:`ConfigError`, whose lines each name the file and the key path.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bnstudy.data import DATASETS
from bnstudy.models import MODELS
from bnstudy.norms import NORM_READS, NORMS, NormOptions


class ConfigError(Exception):
    """Invalid configuration: ``problems`` are (key path, message) pairs found in ``source``."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [f"{self.source}: {key}: {message}" for key, message in self.problems]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DataConfig(_Section):
    name: str = "synthetic2d"  # data set: synthetic2d | synthetic3d | cifar10 | npz
    train_size: int | None = Field(None, ge=1)  # training samples; null = the data set's default
    test_size: int | None = Field(None, ge=1)  # test samples; null = the data set's default
    image_size: int | None = Field(None, ge=1)  # pixels (voxels) per side; null = native (32)
    seed: int = 0  # generation seed of synthetic data, fixed across run seeds
    root: str | None = None  # file data sets: directory (cifar10) or .npz file, relative to cwd

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
        if spec.needs_root and root is None:
            raise ValueError(f"{info.data['name']} reads local files: set data.root")
        if not spec.needs_root and root is not None:
            raise ValueError(f"{info.data['name']} is generated and reads no files; remove it")
        if root is not None and not Path(root).exists():
            raise ValueError(f"no such file or directory: {root}")
        return root


class ModelConfig(_Section):
    name: str = "cnn"  # architecture (bnstudy.models.MODELS)
    widths: list[int] | None = None  # channels per conv block; null = the model's default
    # norm layer, a name in bnstudy.norms.NORMS: batch | group | instance | layer | none |
    # batch_manual | batch_keras
    norm: str = "batch"
    #                       | batch_manual | batch_keras
    norm_groups: int = Field(8, ge=1)  # group norm: channel groups (must divide every width)
    norm_eps: float = Field(1e-5, gt=0)  # added to the variance inside the sqrt (torch 1e-5)
    # BN running-stat update weight on the NEW batch, PyTorch convention:
    # running = (1 - m)·running + m·batch. Keras momentum 0.99 is 0.01 here; null = cumulative.
    bn_momentum: float | None = Field(0.1, gt=0, le=1)
    # how bn_momentum is written: torch (weight of the new batch, 0.1) or keras (weight of the
    # running value: Keras 0.99, old d2l 0.9); keras m is used as torch 1 - m
    bn_momentum_convention: Literal["torch", "keras"] = "torch"
    # batch_manual only (defaults are PyTorch's behaviour; see bnstudy.batchnorm):
    bn_running_var: Literal["unbiased", "biased"] = "unbiased"  # stored in running_var
    bn_stats: Literal["channel", "activation"] = "channel"  # per channel, or per position too
    bn_single_value: Literal["raise", "beta"] = "raise"  # one value per statistic: raise or β

    @field_validator("name")
    @classmethod
    def _known_model(cls, name: str) -> str:
        return _known(name, MODELS, "model")

    @field_validator("norm")
    @classmethod
    def _known_norm(cls, name: str) -> str:
        return _known(name, NORMS, "norm")

    @model_validator(mode="after")
    def _keras_momentum_below_one(self) -> ModelConfig:
        if self.bn_momentum_convention == "keras" and self.bn_momentum in (None, 1):
            raise ValueError("bn_momentum in the keras convention must be in (0, 1)")
        return self

    @model_validator(mode="before")
    @classmethod
    def _drop_settings_the_norm_ignores(cls, raw: Any) -> Any:
        """A run's config holds only the norm settings its norm uses: a file may set
        norm_groups for the group runs of a sweep, and the batch runs must not differ in
        identity by a setting they ignore (a sweep over only ignored values then fails as
        'resolve to the same config')."""
        norm = raw.get("norm", cls.model_fields["norm"].default) if isinstance(raw, dict) else None
        if norm not in NORM_READS:
            return raw
        reads = NORM_READS[norm]
        return {
            key: value
            for key, value in raw.items()
            if key not in _NORM_SETTINGS or _NORM_SETTINGS[key] in reads
        }

    def norm_options(self) -> NormOptions:
        """The norm settings as the registry's factories take them."""
        momentum = self.bn_momentum
        if momentum is not None and self.bn_momentum_convention == "keras":
            momentum = 1 - momentum
        return NormOptions(
            groups=self.norm_groups,
            eps=self.norm_eps,
            momentum=momentum,
            unbiased_running_var=self.bn_running_var == "unbiased",
            stats=self.bn_stats,
            single_value=self.bn_single_value,
        )


# config field -> the NormOptions field it sets
_NORM_SETTINGS = {
    "norm_groups": "groups",
    "norm_eps": "eps",
    "bn_momentum": "momentum",
    "bn_momentum_convention": "momentum",
    "bn_running_var": "unbiased_running_var",
    "bn_stats": "stats",
    "bn_single_value": "single_value",
}


class TrainConfig(_Section):
    batch_size: int = Field(32, ge=1)  # samples per optimizer step = per BN statistics batch
    epochs: int = Field(3, ge=1)  # passes over the training split (ignored when steps is set)
    steps: int | None = Field(None, ge=1)  # optimizer-step budget; replaces epochs when set
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.05, gt=0)  # learning rate at base_batch_size (before lr_scaling)
    # lr used = lr · (batch_size / base_batch_size)^p, p = 0 (none), 1 (linear), 1/2 (sqrt)
    lr_scaling: Literal["none", "linear", "sqrt"] = "none"
    base_batch_size: int = Field(32, ge=1)  # batch size at which lr applies unscaled
    momentum: float = Field(0.9, ge=0, lt=1)  # SGD momentum (the optimizer's, not BN's)
    weight_decay: float = Field(5e-4, ge=0)  # L2 penalty coefficient (SGD) / Adam weight decay
    drop_last: bool = False  # drop the last incomplete batch of each epoch (as DataLoader)


class EvalConfig(_Section):
    # eval: BN normalizes with running statistics; train: with the test batch's statistics
    test_modes: list[Literal["eval", "train"]] = Field(["eval", "train"], min_length=1)
    # test batch sizes for train mode; "same" = the run's training batch size
    train_mode_batch_sizes: list[int | Literal["same"]] = Field(["same"], min_length=1)
    batch_size: int = Field(500, ge=1)  # batch size in eval mode (does not change results)

    @field_validator("test_modes", "train_mode_batch_sizes")
    @classmethod
    def _unique(cls, values: list) -> list:
        if len(set(values)) != len(values):
            raise ValueError(f"values repeat: {values}")
        if any(isinstance(v, int) and v < 1 for v in values):
            raise ValueError("test batch sizes must be >= 1")
        return values


class StudyConfig(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # results/<name>/
    seed: int = 0  # seeds weight init and batch order of a run
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    sweep: dict[str, Any] = {}  # key path -> values; see bnstudy.sweep


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


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.1 wants ``1.0e-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str) -> Any:
    """Parse YAML text with the study loader."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader derives from SafeLoader


def read_config_file(path: Path) -> dict[str, Any]:
    """The raw mapping in a YAML study file."""
    try:
        raw = parse_yaml(path.read_text())
    except OSError as error:
        raise ConfigError(str(path), [("file", error.strerror or str(error))]) from None
    except UnicodeDecodeError as error:
        raise ConfigError(str(path), [("file", f"not UTF-8 text: {error.reason}")]) from None
    except yaml.YAMLError as error:
        raise ConfigError(str(path), [("yaml", " ".join(str(error).split()))]) from None
    if not isinstance(raw, dict):
        raise ConfigError(str(path), [("file", "a study file must be a YAML mapping")])
    return raw


def apply_overrides(raw: dict[str, Any], overrides: list[str], source: str) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as YAML) to a copy of ``raw``.

    Under ``sweep`` the rest of the path is one swept key: ``sweep.train.batch_size=[1,2]``.
    """
    result = _deep_copy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(source, [(item, "an override has the form key.path=value")])
        try:
            value = parse_yaml(text)
        except yaml.YAMLError as error:
            raise ConfigError(source, [(key, f"value is not YAML: {error}")]) from None
        set_path(result, _override_path(key), value)
    return result


def _override_path(key: str) -> list[str]:
    head, _, rest = key.partition(".")
    return [head, rest] if head == "sweep" and rest else key.split(".")


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


def validate_study(raw: dict[str, Any], source: str) -> StudyConfig:
    """Validate a raw mapping; raise :class:`ConfigError` listing every problem."""
    try:
        return StudyConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(source, [_describe(e) for e in error.errors()]) from None


def _describe(error: dict[str, Any]) -> tuple[str, str]:
    loc = [str(part) for part in error["loc"]]
    key = ".".join(loc) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        return key, "unknown key" + _suggestion(loc[-1], field_names(loc[:-1]))
    if kind == "missing":
        return key, "required key is missing"
    message = error["msg"].removeprefix("Value error, ")
    if kind.endswith("_type") or kind.startswith(("literal", "greater", "less", "too_")):
        message += f" (got {error['input']!r})"
    return key, message


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
    return "not a config key" + _suggestion(leaf, names)


def _all_key_paths() -> list[str]:
    paths = []
    for name in field_names([]):
        sub = field_names([name])
        paths += [f"{name}.{leaf}" for leaf in sub] if sub else [name]
    return paths
