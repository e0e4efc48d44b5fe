"""Save and load models with skops: canonical bytes out, a fixed allowlist of types in.

skops archives are not byte-stable: they embed Python object ids (`__id__` in schema.json and
the `<id>.npy` entry names) and zip timestamps, so saving one fitted model twice gives two
md5s. `dumps_model` rewrites the archive canonically (ids renumbered in first-seen order,
entries sorted, fixed timestamp/permissions, no compression), so the model's hash in dvc.lock
is a function of its inputs.

Loading trusts skops' defaults plus the types listed in pipeline/trusted_types.txt, nothing
else: the output of `skops.io.get_untrusted_types` is never fed back in. Nothing unpickles.
"""

from __future__ import annotations

import io as stdio
import json
import os
import re
import warnings
import zipfile
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import skops.io as sio
from skops.io.exceptions import UntrustedTypesFoundException

from pipeline import io
from pipeline.errors import InputError

# Every entry gets this timestamp (the earliest a zip can hold) and these permissions.
_EPOCH = (1980, 1, 1, 0, 0, 0)
_ENTRY_MODE = 0o644 << 16
_NPY_ENTRY = re.compile(r"^(\d+)\.npy$")


@cache
def trusted_types() -> tuple[str, ...]:
    """The fixed allowlist: pipeline/trusted_types.txt, one type per line, `#` comments."""
    text = resources.files("pipeline").joinpath("trusted_types.txt").read_text("utf-8")
    names = []
    for line in text.splitlines():
        name = line.split("#", 1)[0].strip()
        if name:
            names.append(name)
    return tuple(names)


# --------------------------------------------------------------------------- canonical bytes


def _renumber(schema: Any) -> tuple[Any, dict[int, int]]:
    """Replace object ids by 1, 2, 3... in first-seen (document) order; 0 means "no id" to skops."""
    mapping: dict[int, int] = {}

    def new_id(old: int) -> int:
        if old not in mapping:
            mapping[old] = len(mapping) + 1
        return mapping[old]

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out: dict[str, Any] = {}
            for key, value in node.items():
                if key == "__id__" and isinstance(value, int) and not isinstance(value, bool):
                    out[key] = new_id(value)
                elif key == "file" and isinstance(value, str) and _NPY_ENTRY.match(value):
                    out[key] = f"{new_id(int(value[:-4]))}.npy"
                else:
                    out[key] = walk(value)
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema), mapping


def canonicalize(archive: bytes) -> bytes:
    """Rewrite a skops archive so equal models give equal bytes in any process."""
    with zipfile.ZipFile(stdio.BytesIO(archive)) as src:
        schema = json.loads(src.read("schema.json"))
        renumbered, mapping = _renumber(schema)
        entries: dict[str, bytes] = {
            "schema.json": json.dumps(renumbered, indent=2, ensure_ascii=False).encode("utf-8")
        }
        for name in src.namelist():
            if name == "schema.json":
                continue
            match = _NPY_ENTRY.match(name)
            if not match or int(match.group(1)) not in mapping:
                # e.g. `<id>.npz` of a scipy sparse matrix, whose inner zip is not byte-stable
                raise ValueError(f"cannot canonicalize skops entry {name!r} (dense arrays only)")
            entries[f"{mapping[int(match.group(1))]}.npy"] = src.read(name)
    buffer = stdio.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as out:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3  # unix, whatever the platform that saves it
            info.external_attr = _ENTRY_MODE
            out.writestr(info, entries[name])
    return buffer.getvalue()


def dumps_model(model: Any) -> bytes:
    """The model as canonical skops bytes."""
    return canonicalize(sio.dumps(model))


def save_model(model: Any, path: str | os.PathLike[str]) -> None:
    """Write the model atomically as canonical skops bytes."""
    io.write_bytes(path, dumps_model(model))


# --------------------------------------------------------------------------- loading


def loads_model(data: bytes, *, source: str = "model") -> Any:
    """Load skops bytes trusting only the fixed allowlist; InputError names any other type,
    and any scikit-learn version other than the one that saved the model."""
    from sklearn.exceptions import InconsistentVersionWarning

    try:
        # scikit-learn only warns when an estimator comes from another release, and it may
        # then predict differently or not at all: here that is an error, before any scoring.
        with warnings.catch_warnings():
            warnings.simplefilter("error", InconsistentVersionWarning)
            return sio.loads(data, trusted=list(trusted_types()))
    except InconsistentVersionWarning as exc:
        raise InputError(
            f"{source}: saved with scikit-learn {exc.original_sklearn_version}, this "
            f"environment has {exc.current_sklearn_version}: retrain it here "
            "(`dvc repro --force train`), or install the release requirements.lock pins"
        ) from exc
    except UntrustedTypesFoundException as exc:
        found = re.search(r"\[(.*?)\]", str(exc))
        names = found.group(1) if found else str(exc)
        raise InputError(
            f"{source}: refusing to load types outside pipeline/trusted_types.txt: {names}"
        ) from exc
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, TypeError, ValueError) as exc:
        # No schema.json, bad JSON, an unknown protocol or node layout: not a file we wrote.
        raise InputError(f"{source}: not a skops model file ({exc})") from exc


def load_model(path: str | os.PathLike[str]) -> Any:
    """Load a model file written by `save_model` (see `loads_model`)."""
    name = os.fspath(path)
    try:
        data = Path(name).read_bytes()
    except FileNotFoundError as exc:
        raise InputError(f"{name}: model file not found") from exc
    return loads_model(data, source=name)
