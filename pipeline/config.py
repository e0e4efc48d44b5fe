"""Load params.yaml and policies/*.yaml the way DVC does, validate, return frozen typed objects.

YAML is parsed as 1.2 with ruamel (what DVC uses), so `1e-3` is a float, `no` is a string and
duplicate keys are an error instead of last-one-wins. Each document is validated against a
Draft 2020-12 schema in pipeline/schemas/ and *every* violation is reported in one ConfigError.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

from jsonschema import Draft202012Validator
from ruamel.yaml import YAML
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent

from pipeline.errors import ConfigError

T = TypeVar("T")

# --------------------------------------------------------------------------- loading


def _plain(node: Any) -> Any:
    """ruamel's round-trip-free safe loader still returns its own mapping types; normalise."""
    if isinstance(node, Mapping):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


# Far above any configuration file or dvc.lock this project writes; a file this large is a
# mistake or an attack, and parsing it would tie up CI.
MAX_YAML_CHARS = 1 << 20


def _refuse_aliases(yaml: YAML, text: str, name: str) -> None:
    """Anchors and aliases are refused before anything is built: a few nested aliases (a
    "billion laughs" document) expand to gigabytes and keep every command busy for minutes.
    The events are read in one linear pass; no configuration here needs an alias."""
    for event in yaml.parse(text):
        if isinstance(event, AliasEvent) or getattr(event, "anchor", None):
            mark = event.start_mark
            where = f"{name}:{mark.line + 1}" if mark else name
            raise ConfigError(
                [f"{where}: YAML anchors and aliases (&name, *name) are not allowed: "
                 "write each value out"]
            )  # fmt: skip


def parse_yaml(text: str, name: str) -> Any:
    """Parse YAML 1.2 text; raise ConfigError naming the file (and line) on any problem."""
    if len(text) > MAX_YAML_CHARS:
        raise ConfigError(
            [f"{name}: {len(text)} characters, more than a YAML file here may hold "
             f"({MAX_YAML_CHARS})"]
        )  # fmt: skip
    yaml = YAML(typ="safe", pure=True)
    yaml.version = (1, 2)
    yaml.allow_duplicate_keys = False
    try:
        _refuse_aliases(yaml, text, name)
        doc = yaml.load(text)
    except DuplicateKeyError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else "?"
        raise ConfigError([f"{name}:{line}: duplicate key ({exc.problem})"]) from exc
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}" if mark else name
        raise ConfigError([f"{where}: invalid YAML: {exc.problem or exc.context}"]) from exc
    except YAMLError as exc:
        raise ConfigError([f"{name}: invalid YAML: {exc}"]) from exc
    if doc is None:
        raise ConfigError([f"{name}: file is empty (expected a mapping)"])
    return _plain(doc)


def load_yaml(path: str | Path) -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError([f"{path}: file not found"]) from exc
    return parse_yaml(text, str(path))


# --------------------------------------------------------------------------- validation


@cache
def schema(name: str) -> dict[str, Any]:
    """A JSON Schema shipped in pipeline/schemas/, by file stem (e.g. 'params')."""
    text = resources.files("pipeline.schemas").joinpath(f"{name}.schema.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    # Not re-checked against the metaschema on every load (a tenth of a second per stage):
    # tests/unit/test_config.py checks every shipped schema once.
    return loaded


def _key_path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _non_finite(doc: Any, parts: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], float]]:
    """NaN passes `maximum` checks in jsonschema (NaN compares False both ways): reject it."""
    if isinstance(doc, float) and not math.isfinite(doc):
        return [(parts, doc)]
    if isinstance(doc, dict):
        return [hit for k, v in doc.items() for hit in _non_finite(v, (*parts, k))]
    if isinstance(doc, list):
        return [hit for i, v in enumerate(doc) for hit in _non_finite(v, (*parts, i))]
    return []


def violations(doc: Any, schema_name: str, file: str) -> list[str]:
    """Every schema violation as 'file: key.path: message', sorted by location."""
    validator = Draft202012Validator(schema(schema_name))
    found = []
    for error in validator.iter_errors(doc):
        found.append((tuple(str(p) for p in error.absolute_path), error.message))
    for parts, value in _non_finite(doc):
        found.append((tuple(str(p) for p in parts), f"{value!r} is not a finite number"))
    return [f"{file}: {_key_path(p)}: {msg}" for p, msg in sorted(found)]


def load_document(path: str | Path, schema_name: str) -> dict[str, Any]:
    """Load a YAML file and validate it; ConfigError lists every violation."""
    doc = load_yaml(path)
    problems = violations(doc, schema_name, str(path))
    if problems:
        raise ConfigError(problems)
    result: dict[str, Any] = doc
    return result


# --------------------------------------------------------------------------- typed objects


def build(cls: type[T], value: Any) -> T:
    """Turn validated plain data into frozen dataclasses, tuples and read-only mappings.

    The schema has already checked shapes, so this only converts; it never invents defaults.
    """
    return typing.cast(T, _convert(cls, value))


def _convert(tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = typing.get_type_hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            key = f.metadata.get("key", f.name)
            if key in value:
                kwargs[f.name] = _convert(hints[f.name], value[key])
            elif f.default is not dataclasses.MISSING:
                kwargs[f.name] = f.default
            else:
                kwargs[f.name] = None
        return tp(**kwargs)
    if origin in (types.UnionType, typing.Union):
        if value is None:
            return None
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        return _convert(options[0], value) if len(options) == 1 else value
    if origin is tuple:
        (item,) = typing.get_args(tp)[:1]
        return tuple(_convert(item, v) for v in value)
    if origin in (Mapping, dict) or tp in (Mapping, dict):
        args = typing.get_args(tp)
        inner = args[1] if args else Any
        return types.MappingProxyType({k: _convert(inner, v) for k, v in value.items()})
    if origin is Literal or tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def frozen(cls: type[T]) -> type[T]:
    """Shorthand: every config object is an immutable, slotted dataclass."""
    return dataclasses.dataclass(frozen=True, slots=True)(cls)


# --------------------------------------------------------------------------- params.yaml

TaskType = Literal["binary", "multiclass", "regression"]


@frozen
class Paths:
    source_dir: str
    raw: str
    validation: str
    train: str
    test: str
    feature_spec: str
    model: str
    predictions: str
    metrics: str
    slices: str
    fairness: str
    benchmark: str
    reference: str
    plots: str
    contract: str
    promotion: str
    monitoring: str
    registry: str
    production: str
    extra: str


@frozen
class Project:
    name: str
    model: str


@frozen
class Drift:
    covariate_shift: Mapping[str, float]
    category_shift: Mapping[str, Mapping[str, float]]
    prior_shift: float
    concept_drift: float


@frozen
class Generator:
    rows: int
    seed: int
    start: str
    days: int
    label_noise: float
    missing_rate: float
    drift: Drift


@frozen
class Ingest:
    source: str
    generator: Generator


@frozen
class Task:
    type: TaskType
    target: str
    positive_label: Any
    sensitive: str | None


@frozen
class Split:
    test_size: float
    seed: int
    stratify: bool


@frozen
class Features:
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    datetime: Mapping[str, tuple[str, ...]]
    numeric_impute: str
    scale: bool
    categorical_encoding: str
    max_categories: int


@frozen
class Train:
    model: str
    seed: int
    kwargs: Mapping[str, Any]


@frozen
class Benchmark:
    repeats: int
    batch_rows: int


@frozen
class Profile:
    bins: int
    top_categories: int


@frozen
class Evaluate:
    slices: tuple[str, ...]
    min_slice_size: int
    calibration_bins: int
    curve_points: int
    benchmark: Benchmark
    profile: Profile


@frozen
class Params:
    project: Project
    paths: Paths
    ingest: Ingest
    task: Task
    split: Split
    features: Features
    train: Train
    evaluate: Evaluate


def load_params(path: str | Path = "params.yaml") -> Params:
    """params.yaml, validated, as a frozen Params."""
    doc = load_document(path, "params")
    problems = cross_check_params(doc, str(path))
    if problems:
        raise ConfigError(problems)
    return build(Params, doc)


def cross_check_params(doc: dict[str, Any], file: str) -> list[str]:
    """Rules one schema cannot express: names that must refer to each other."""
    problems = []
    feats = doc["features"]
    declared = [*feats["numeric"], *feats["categorical"], *feats["datetime"]]
    seen: set[str] = set()
    for name in declared:
        if name in seen:
            problems.append(f"{file}: features: column {name!r} is declared twice")
        seen.add(name)
    target = doc["task"]["target"]
    if target in seen:
        problems.append(f"{file}: features: the target {target!r} cannot be a feature")
    if doc["task"]["type"] == "regression" and doc["split"]["stratify"]:
        problems.append(f"{file}: split.stratify: must be false for a regression task")
    return problems
