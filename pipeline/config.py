"""Load params.yaml and policies/*.yaml the way DVC does, validate, return frozen typed objects.

YAML is parsed as 1.2 with ruamel (what DVC uses), so `1e-3` is a float, `no` is a string and
duplicate keys are an error instead of last-one-wins. Each document is validated against a
Draft 2020-12 schema in pipeline/schemas/ and *every* violation is reported in one ConfigError.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import posixpath
import types
import typing
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TypeVar

from jsonschema import Draft202012Validator
from ruamel.yaml import YAML
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent

from pipeline.errors import ConfigError
from pipeline.io import is_url

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
    found: list[tuple[tuple[Any, ...], str]] = []
    for error in validator.iter_errors(doc):
        found.append((tuple(error.absolute_path), error.message))
    for parts, value in _non_finite(doc):
        found.append((parts, f"{value!r} is not a finite number"))
    # List indexes stay ints so they print as [0]; sorted by text, as mixed keys cannot compare.
    ordered = sorted(found, key=lambda hit: (tuple(str(p) for p in hit[0]), hit[1]))
    return [f"{file}: {_key_path(p)}: {msg}" for p, msg in ordered]


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
    source_sha256: str | None = None  # a URL source's pin (params.yaml says why)


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
    problems += [f"{file}: {p}" for p in path_problems(doc["paths"])]
    problems += [f"{file}: {p}" for p in source_problems(doc["ingest"], doc["paths"]["source_dir"])]
    return problems


# --------------------------------------------------------------------------- where data lives
# Every input of a stage must be something DVC hashes, and every output must land where git and
# DVC see it: otherwise `dvc status` and the lock gate say "up to date" while a rerun gives
# other data, or a stage overwrites files outside the repository. The text of params.yaml is
# checked here (pure); where the paths really point, symlinks followed, is checked against the
# directory the stages run in (`outside_the_repository`, called before any stage runs).

GENERATOR = "generator"  # ingest.source of the built-in dataset: no file, no URL


def under(rel: str, folder: str) -> bool:
    """`rel` names something strictly inside `folder` (both relative POSIX paths, as written)."""
    inner, outer = PurePosixPath(rel).parts, PurePosixPath(folder).parts
    return len(inner) > len(outer) and inner[: len(outer)] == outer


def tracked_source(source: str, source_dir: str) -> bool:
    """A local source DVC tracks: relative, normalized, no `..`, inside paths.source_dir (the
    folder the ingest stage lists as a dependency in dvc.yaml)."""
    path = PurePosixPath(source)
    return (
        not path.is_absolute()
        and ".." not in path.parts
        and posixpath.normpath(source) == source
        and under(source, source_dir)
    )


def copy_instruction(source: str, source_dir: str, then: str) -> str:
    """What to do with a file outside source_dir: the one message init and ingest both give."""
    return (
        f"{source} is not under {source_dir}/, the folder the ingest stage depends on in "
        f"dvc.yaml, so DVC would not see it change: copy it there (cp {source} {source_dir}/) "
        f"and {then}"
    )


def source_problems(ingest: Mapping[str, Any], source_dir: str) -> list[str]:
    """ingest.source / ingest.source_sha256 problems, as 'key: message' (no file prefix)."""
    source, pin = ingest["source"], ingest.get("source_sha256")
    if is_url(source):
        if pin is None:
            return [
                f"ingest.source_sha256: a URL source ({source}) must be pinned by the sha256 of "
                "its bytes, or a changed download would give other data while dvc status says "
                f"up to date: set it to the output of `curl -sL {source} | sha256sum`"
            ]
        return []
    problems = []
    if pin is not None:
        problems.append(
            f"ingest.source_sha256: only a URL source is pinned (DVC hashes the files in "
            f"{source_dir}/): set it to null"
        )
    if source != GENERATOR and not tracked_source(source, source_dir):
        clean = posixpath.normpath(source)
        if tracked_source(clean, source_dir):  # e.g. data/source/./x.csv: only the spelling
            problems.append(f"ingest.source: {source} is not a normalized path: write {clean}")
        else:
            name = PurePosixPath(source).name
            then = f"set ingest.source: {source_dir}/{name}"
            problems.append(f"ingest.source: {copy_instruction(source, source_dir, then)}")
    return problems


def path_problems(paths: Mapping[str, str]) -> list[str]:
    """paths.* spelled as DVC and the stages must both read them: normalized, relative (the
    schema already refuses absolute paths and `..`), naming something below the root."""
    problems = []
    for key, value in paths.items():
        clean = posixpath.normpath(value)
        if clean == ".":
            problems.append(f"paths.{key}: {value} names the repository root itself")
        elif clean != value:
            problems.append(f"paths.{key}: {value} is not a normalized path: write {clean}")
    return problems


def _inside(path: Path, folder: Path) -> bool:
    """Both absolute and real (os.path.realpath)."""
    return path == folder or folder in path.parents


def _real(root: Path, rel: str) -> Path:
    # os.path.realpath, not Path.resolve: it never raises, on a symlink loop either.
    return Path(os.path.realpath(root / rel))


def _symlink_on_the_way(root: Path, rel: str) -> str:
    """' (a/b is a symlink to /x)' for the first symlink among rel's components, else ''."""
    parts = PurePosixPath(rel).parts
    for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        if (root / prefix).is_symlink():
            return f" ({prefix} is a symlink to {(root / prefix).readlink()})"
    return ""


def outside_the_repository(params: Params, root: str | Path, file: str) -> list[str]:
    """Every paths.* value, and a local ingest.source, whose real location (symlinks followed,
    e.g. a data/ folder that is a symlink to /tmp) is not inside `root`, the repository the
    stages run in; a source must also really be inside paths.source_dir. Reads only links."""
    real_root = Path(os.path.realpath(root))
    problems = []
    fields = dataclasses.fields(typing.cast(Any, params.paths))  # `frozen` hides the dataclass
    paths = {f.name: getattr(params.paths, f.name) for f in fields}
    for key, rel in paths.items():
        real = _real(real_root, rel)
        if not _inside(real, real_root):
            problems.append(
                f"{file}: paths.{key}: {rel} is really {real}{_symlink_on_the_way(real_root, rel)}"
                f", outside the repository {real_root}: stages read and write only inside it; "
                "replace the symlink by a real folder or file"
            )
    source = params.ingest.source
    if source != GENERATOR and not is_url(source):
        escape = source_escape(real_root, source, params.paths.source_dir)
        if escape:
            problems.append(f"{file}: ingest.source: {escape}")
    return problems


def source_escape(root: str | Path, source: str, source_dir: str) -> str | None:
    """Why a source spelled inside source_dir really is not (a symlink on the way), or None."""
    real_root = Path(os.path.realpath(root))
    real, real_dir = _real(real_root, source), _real(real_root, source_dir)
    if _inside(real, real_dir) and _inside(real, real_root):
        return None
    return (
        f"{source} is really {real}{_symlink_on_the_way(real_root, source)}, outside "
        f"{source_dir}/ in the repository, so DVC would not see it change: put the file itself "
        "there, not a symlink"
    )
