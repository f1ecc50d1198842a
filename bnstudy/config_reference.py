"""The study file's reference, generated from the schema (:class:`bnstudy.config.StudyConfig`):
every key with its type, default, allowed values and bounds, its description (the field's
docstring, pydantic's ``use_attribute_docstrings``) and an example. ``bnstudy config
--reference`` prints it as markdown (``docs/config.md``, kept equal by a test); ``bnstudy
init`` writes a starter study commented from the same descriptions.
"""

from __future__ import annotations

import json
import textwrap
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from bnstudy.config import StudyConfig
from bnstudy.norms import NORMS

BOUNDS = {
    annotated_types.Ge: "≥ {}",
    annotated_types.Gt: "> {}",
    annotated_types.Le: "≤ {}",
    annotated_types.Lt: "< {}",
    annotated_types.MinLen: "at least {} items",
    annotated_types.MaxLen: "at most {} characters",
}
BOUND_ATTRIBUTE = {
    annotated_types.Ge: "ge",
    annotated_types.Gt: "gt",
    annotated_types.Le: "le",
    annotated_types.Lt: "lt",
    annotated_types.MinLen: "min_length",
    annotated_types.MaxLen: "max_length",
}


@dataclass(frozen=True)
class Key:
    """One key of a study file."""

    path: str  # dotted, e.g. train.lr
    type: str
    default: str
    allowed: str  # choices or bounds; empty when any value of the type goes
    description: str
    example: str  # a YAML line setting it


def sections() -> Iterator[tuple[str, str, list[Key]]]:
    """Per section of a study file, in the file's order: its path (``data``, ``model.batch``,
    and ``""`` for the top-level keys), its description and its keys. The norms' option
    sections follow ``model``."""
    top = [key for name, field in _fields(StudyConfig) if (key := _key(name, field)) is not None]
    yield "", "The study's name, seed and sweep.", top
    for name, field in _fields(StudyConfig):
        section = _section_model(field)
        if section is None:
            continue
        yield name, field.description or "", _keys(section, f"{name}.")
        if name == "model":
            for norm, spec in NORMS.items():
                keys = _keys(spec.options, f"model.{norm}.")
                if keys:
                    yield f"model.{norm}", f"Options of `{norm}`: {spec.summary}.", keys


def _fields(model: type[BaseModel]) -> list[tuple[str, FieldInfo]]:
    return list(model.model_fields.items())


def _keys(model: type[BaseModel], prefix: str) -> list[Key]:
    """The keys of a section and of its sub-sections (``train.init_from.study``), but not the
    norms' option sections, which :func:`sections` lists on their own."""
    keys = []
    for name, field in _fields(model):
        if prefix == "model." and name in NORMS:
            continue
        nested = _section_model(field)
        if nested is None or field.default is None:  # a value, or a section that may be null
            keys.append(_key(f"{prefix}{name}", field))
        if nested is not None:
            keys += _keys(nested, f"{prefix}{name}.")
    return keys


def _key(path: str, field: FieldInfo) -> Key | None:
    """The row of a leaf key; None for a section (its keys are listed with it)."""
    if _section_model(field) is not None and "." not in path:
        return None
    default = "required" if field.default is PydanticUndefined else _yaml(_plain(field.default))
    return Key(
        path,
        _type_text(field.annotation),
        default,
        _allowed(field),
        " ".join((field.description or "").split()),
        _example(path, field),
    )


def _section_model(field: FieldInfo) -> type[BaseModel] | None:
    """The model of a section field (``train``, or ``train.init_from`` which may be null)."""
    for candidate in (field.annotation, *get_args(field.annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _type_text(annotation: Any) -> str:
    """A type in words: ``integer or null``, ``list of integer``, ``one of a, b``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        return " or ".join(dict.fromkeys(_type_text(arg) for arg in args))
    if origin is Literal:
        return "text"
    if origin in (list, tuple):
        return f"list of {_type_text(args[0])}"
    if origin is dict:
        return "mapping"
    if get_origin(annotation) is not None and args:  # Annotated[int, ...]
        return _type_text(args[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    names = {int: "integer", float: "number", str: "text", bool: "true or false"}
    return names.get(annotation, "null" if annotation is type(None) else str(annotation))


def _allowed(field: FieldInfo) -> str:
    """The choices of a Literal (besides null), else the bounds of the value or its items."""
    choices = [v for arg in _flat_args(field.annotation) for v in _literal_values(arg)]
    if choices:
        return ", ".join(f"`{c}`" for c in choices)
    bounds = [*field.metadata, *_item_metadata(field.annotation)]
    return ", ".join(
        BOUNDS[type(b)].format(getattr(b, BOUND_ATTRIBUTE[type(b)]))
        for b in bounds
        if type(b) in BOUNDS
    )


def _flat_args(annotation: Any) -> list[Any]:
    """The members of a union, or the annotation itself."""
    if get_origin(annotation) in (Union, types.UnionType):
        return list(get_args(annotation))
    return [annotation]


def _literal_values(annotation: Any) -> list[Any]:
    """The values of a Literal, also inside a list of them."""
    if get_origin(annotation) is Literal:
        return list(get_args(annotation))
    if get_origin(annotation) is list:
        return [v for arg in _flat_args(get_args(annotation)[0]) for v in _literal_values(arg)]
    return []


def _item_metadata(annotation: Any) -> list[Any]:
    """Bounds on the items of a list (``list[Annotated[int, Field(ge=1)]]``: each ≥ 1)."""
    for member in _flat_args(annotation):
        if get_origin(member) in (list, tuple):
            item = get_args(member)[0]
            return [b for b in getattr(item, "__metadata__", ()) for b in _unpacked(b)]
    return []


def _unpacked(bound: Any) -> list[Any]:
    """A ``Field(ge=1)`` inside ``Annotated`` carries its bounds as metadata."""
    return list(bound.metadata) if isinstance(bound, FieldInfo) else [bound]


def _example(path: str, field: FieldInfo) -> str:
    """A YAML line that sets the key: the field's declared example, else a value other than the
    default where the choices or a bool give one, else the default."""
    if field.examples:
        value = field.examples[0]
    else:
        choices = [v for arg in _flat_args(field.annotation) for v in _literal_values(arg)]
        others = [c for c in choices if c != field.default]
        if field.annotation is bool:
            value = not field.default
        elif others:
            value = others[0]
        elif field.default is PydanticUndefined:
            value = "my-study" if path == "name" else None
        else:
            value = _plain(field.default)
    return f"{path}: {_yaml(value)}"


def _plain(value: Any) -> Any:
    """A default as the JSON a study file would hold (a section model as its mapping)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return json.loads(json.dumps(value, default=str))


def _yaml(value: Any) -> str:
    """A value in YAML flow style on one line: ``[1, 2]``, ``null``, ``0.05``."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1000)
    return text.strip().removesuffix("...").strip()


HEADER = """# The study file

Generated from the schema (`bnstudy config --reference`; `tests/test_config_reference.py`
fails when this file and the schema differ). Every key is optional except `name`. A value is
validated once, when the file is read, and a mistake is one line naming its key.

- `bnstudy init` writes a commented starter study.
- `bnstudy config study.yaml [KEY=VALUE ...]` prints the study with every default filled in.
- `bnstudy config --schema` prints the JSON schema, which editors use to check YAML files: for
  example, VS Code's YAML extension with `# yaml-language-server: $schema=bnstudy.schema.json`
  on the first line.
- Overrides on the command line use the same dotted keys: `bnstudy run study.yaml
  train.lr=0.1 'sweep.seed=[0, 1, 2]'`.

Units and conventions are in each description: samples, optimizer steps, pixels; BN momentum is
the weight of the new batch (PyTorch's convention, 0.1), `momentum_convention: keras` reads it
as the weight of the running value (0.99).
"""


def study_schema() -> str:
    """The JSON schema of a study file (pydantic's, descriptions included), indented."""
    return json.dumps(StudyConfig.model_json_schema(), indent=2, ensure_ascii=False)


def reference_markdown() -> str:
    """docs/config.md: one table per section."""
    parts = [HEADER]
    for path, description, keys in sections():
        title = f"`{path}`" if path else "Top level"
        parts.append(f"## {title}\n\n{description}\n")
        parts.append("| key | type | default | allowed | what it is | example |")
        parts.append("| --- | --- | --- | --- | --- | --- |")
        parts += [_row(key) for key in keys]
        parts.append("")
    return "\n".join(parts)


def _row(key: Key) -> str:
    cells = (
        f"`{key.path}`",
        key.type,
        key.default if key.default == "required" else f"`{key.default}`",
        key.allowed,
        key.description,
        f"`{key.example}`",
    )
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


# the keys of a starter study and their values (bnstudy init): a small BN study at 1-32 images
# per statistic on generated data, with GroupNorm as the batch-independent control
STARTER = {
    "name": "my-study",
    "seed": 0,
    "data": {"name": "synthetic2d", "train_size": 3000, "test_size": 1000},
    "model": {"name": "cnn", "norm": "batch"},
    "train": {"batch_size": 32, "epochs": 8, "lr": 0.05, "schedule": "cosine"},
    "eval": {"test_modes": ["eval", "train", "precise"]},
    "sweep": {
        "model.norm": ["batch", "group"],
        "train.norm_batch_size": [1, 2, 4, 8, 32],
        "seed": [0, 1, 2],
    },
}


def starter_study() -> str:
    """A small study as YAML, each key under a comment that is its description (wrapped at 79
    columns), ready for ``bnstudy run``."""
    descriptions = {key.path: key.description for _, _, keys in sections() for key in keys}
    sections_text = {path: description for path, description, _ in sections() if path}
    lines = _comment(
        "A bnstudy study: `bnstudy run <file> --dry-run` lists its runs, `bnstudy run <file>` "
        "trains them, `bnstudy report results/<name>` writes the report. Every key is in "
        "docs/config.md (`bnstudy config --reference`).",
        "",
    )
    for name, value in STARTER.items():
        if isinstance(value, dict) and name != "sweep":
            lines += _comment(sections_text.get(name, ""), "") + [f"{name}:"]
            for key, item in value.items():
                lines += _comment(descriptions.get(f"{name}.{key}", ""), "  ")
                lines.append(f"  {key}: {_yaml(item)}")
        elif name == "sweep":
            lines += _comment(descriptions["sweep"], "") + ["sweep:"]
            lines += [f"  {key}: {_yaml(item)}" for key, item in value.items()]
        else:
            lines += _comment(descriptions.get(name, ""), "") + [f"{name}: {_yaml(value)}"]
    return "\n".join(lines) + "\n"


def _comment(text: str, indent: str) -> list[str]:
    """``text`` as YAML comment lines at ``indent``, at most 79 columns."""
    width = 79 - len(indent) - 2
    return [f"{indent}# {line}" for line in textwrap.wrap(text, width, break_on_hyphens=False)]
