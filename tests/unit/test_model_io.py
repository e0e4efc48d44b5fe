"""pipeline/model_io.py: canonical skops bytes; loading with the fixed trusted-type list only."""

from __future__ import annotations

import _pickle
import dataclasses
import hashlib
import io as stdio
import json
import os
import pickle
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio

from pipeline.config import Params, load_params
from pipeline.errors import InputError
from pipeline.ingest import generate
from pipeline.model_io import dumps_model, load_model, loads_model, save_model, trusted_types
from pipeline.train import ESTIMATORS, build_model, fit
from tests.conftest import DEMO_ROOT, REPO_ROOT, run


@pytest.fixture(scope="module")
def params() -> Params:
    return load_params(DEMO_ROOT / "params.yaml")


def sample(params: Params, rows: int = 400) -> pd.DataFrame:
    return generate(dataclasses.replace(params.ingest.generator, rows=rows), params.task)


def trained(params: Params) -> Any:
    return fit(
        build_model(params.features, params.train, params.task),
        sample(params),
        params.features,
        params.task,
    )


@pytest.fixture(scope="module")
def model(params: Params) -> Any:
    """The repository's default model (all declared features, hist_gradient_boosting)."""
    return trained(params)


def entries(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(stdio.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rezip(files: dict[str, bytes]) -> bytes:
    buffer = stdio.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, payload in files.items():
            archive.writestr(name, payload)
    return buffer.getvalue()


# --------------------------------------------------------------------------- canonical bytes

# Trains the default model in a fresh interpreter and prints the sha256 of the raw skops
# bytes and of the canonical bytes, then saves the canonical file at argv[1].
TRAIN_IN_SUBPROCESS = """
import dataclasses, hashlib, sys
import skops.io as sio
from pipeline.config import load_params
from pipeline.ingest import generate
from pipeline.model_io import dumps_model, save_model
from pipeline.train import build_model, fit

p = load_params("tests/demo/params.yaml")  # cwd: the repository root
frame = generate(dataclasses.replace(p.ingest.generator, rows=400), p.task)
model = fit(build_model(p.features, p.train, p.task), frame, p.features, p.task)
print(hashlib.sha256(sio.dumps(model)).hexdigest())
print(hashlib.sha256(dumps_model(model)).hexdigest())
save_model(model, sys.argv[1])
"""


def test_same_model_gives_same_bytes_across_processes(
    tmp_path: Path, params: Params, model: Any
) -> None:
    digests = []
    for i, (hash_seed, threads) in enumerate([("1", "1"), ("2", "2")]):
        proc = run(
            [sys.executable, "-c", TRAIN_IN_SUBPROCESS, tmp_path / f"model{i}.skops"],
            REPO_ROOT,
            env={"PYTHONHASHSEED": hash_seed, "OMP_NUM_THREADS": threads},
        )
        digests.append(proc.stdout.split())
    (raw_a, canonical_a), (raw_b, canonical_b) = digests
    assert raw_a != raw_b  # plain skops bytes embed object ids and timestamps
    assert canonical_a == canonical_b
    data = (tmp_path / "model0.skops").read_bytes()
    assert hashlib.sha256(data).hexdigest() == canonical_a
    assert data == (tmp_path / "model1.skops").read_bytes()
    # ... and equal to what this process makes of the same inputs.
    assert dumps_model(model) == data
    # The canonical file loads and predicts exactly like the in-memory model.
    frame = sample(params)
    loaded = load_model(tmp_path / "model0.skops")
    np.testing.assert_array_equal(loaded.predict_proba(frame), model.predict_proba(frame))
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))


def test_canonical_archive_layout(model: Any) -> None:
    data = dumps_model(model)
    with zipfile.ZipFile(stdio.BytesIO(data)) as archive:
        infos = archive.infolist()
        schema = json.loads(archive.read("schema.json"))
    names = [i.filename for i in infos]
    assert names == sorted(names)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.compress_type for i in infos} == {zipfile.ZIP_STORED}
    ids: list[int] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            if "__id__" in node:
                ids.append(node["__id__"])
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(schema)
    # Memory addresses are gone: ids are 1..N, numbered in document order.
    assert set(ids) == set(range(1, max(ids) + 1))
    npy = {n for n in names if n.endswith(".npy")}
    assert npy == {f"{i}.npy" for i in ids if f"{i}.npy" in npy}


def test_save_model_writes_canonical_bytes(tmp_path: Path, model: Any) -> None:
    save_model(model, tmp_path / "sub" / "m.skops")
    assert (tmp_path / "sub" / "m.skops").read_bytes() == dumps_model(model)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["m.skops"]  # no temp file left


# --------------------------------------------------------------------------- trusted types


def test_trusted_types_file_is_read_without_comments() -> None:
    names = trusted_types()
    assert "pipeline.transform.DatetimeParts" in names
    assert all(n and "#" not in n and " " not in n for n in names)


def test_trusted_list_is_exactly_what_the_allowlisted_models_need(params: Params) -> None:
    needed: set[str] = set()
    fast = {"max_iter": 5, "n_estimators": 3}  # logistic_regression's max_iter: see below
    for name, kind in ESTIMATORS:
        task_type = "regression" if kind == "regression" else "multiclass"
        for encoding in ("onehot", "ordinal"):
            cls = ESTIMATORS[(name, kind)]
            valid = cls().get_params()
            chosen = {k: v for k, v in fast.items() if k in valid}
            if name == "logistic_regression":
                chosen["max_iter"] = 1000  # fewer iterations warn (warnings are errors)
            kwargs = MappingProxyType(chosen)
            p = dataclasses.replace(
                params,
                train=dataclasses.replace(params.train, model=name, kwargs=kwargs),
                task=dataclasses.replace(params.task, type=task_type),
                features=dataclasses.replace(params.features, categorical_encoding=encoding),
            )
            data = dumps_model(trained(p))
            needed |= set(sio.get_untrusted_types(data=data))
            loads_model(data)  # and each of them loads with the fixed list
    assert needed == set(trusted_types())


def test_load_never_consults_get_untrusted_types(
    monkeypatch: pytest.MonkeyPatch, model: Any
) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("get_untrusted_types must not be used to decide what to trust")

    monkeypatch.setattr(sio, "get_untrusted_types", forbidden)
    assert loads_model(dumps_model(model)) is not None


def test_nothing_unpickles_during_load(
    monkeypatch: pytest.MonkeyPatch, params: Params, model: Any
) -> None:
    data = dumps_model(model)

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("something tried to unpickle")

    for module in (pickle, _pickle):
        for name in ("load", "loads", "Unpickler"):
            monkeypatch.setattr(module, name, forbidden)
    loaded = loads_model(data)
    frame = sample(params, rows=50)
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))


def test_untrusted_function_is_refused_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "evil.skops"
    path.write_bytes(sio.dumps({"payload": eval}))
    with pytest.raises(InputError, match=r"evil\.skops: refusing .*builtins\.eval"):
        load_model(path)


def edited(data: bytes, edit: Callable[[dict[str, Any]], bool]) -> bytes:
    """`data` with `edit` applied to every object node of its schema.json (what an attacker,
    or another library release, could have written); `edit` says whether it changed a node."""
    files = entries(data)
    schema = json.loads(files["schema.json"])
    found = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if edit(node):
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    assert found, "the edit matched no node"
    files["schema.json"] = json.dumps(schema).encode()
    return rezip(files)


def swapped(data: bytes, cls: str, module: str) -> bytes:
    """`data` with the DatetimeParts node relabelled as `module.cls` (what an attacker could do)."""

    def swap(node: dict[str, Any]) -> bool:
        if node.get("__class__") != "DatetimeParts":
            return False
        node.update({"__class__": cls, "__module__": module})
        return True

    return edited(data, swap)


def test_model_with_a_type_swapped_for_eval_is_refused(tmp_path: Path, model: Any) -> None:
    path = tmp_path / "tampered.skops"
    path.write_bytes(swapped(dumps_model(model), "eval", "builtins"))
    with pytest.raises(InputError, match=r"tampered\.skops: refusing .*'builtins\.eval'"):
        load_model(path)


def test_untrusted_module_is_refused_before_it_is_imported(model: Any) -> None:
    module = "no_such_module_xyz"  # importing it would raise ModuleNotFoundError
    with pytest.raises(InputError, match=rf"'{module}\.Payload'"):
        loads_model(swapped(dumps_model(model), "Payload", module))
    assert module not in sys.modules


def test_type_outside_the_list_is_refused_even_if_harmless(tmp_path: Path) -> None:
    path = tmp_path / "other.skops"
    path.write_bytes(sio.dumps(pd.Timestamp("2025-01-01").to_pydatetime()))
    with pytest.raises(InputError, match=r"datetime\.datetime"):
        load_model(path)


@pytest.mark.parametrize(
    ("payload", "message"),
    [(b"not a zip", "not a skops model file"), (rezip({"x.txt": b"1"}), "not a skops model")],
)
def test_non_skops_files_are_input_errors(tmp_path: Path, payload: bytes, message: str) -> None:
    path = tmp_path / "bad.skops"
    path.write_bytes(payload)
    with pytest.raises(InputError, match=message):
        load_model(path)


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="model file not found"):
        load_model(tmp_path / "absent.skops")
    assert not os.listdir(tmp_path)


def test_model_from_another_scikit_learn_release_is_an_error(tmp_path: Path, model: Any) -> None:
    """The version scikit-learn records in every estimator's state, changed as an older
    release would have written it: loading names both versions instead of warning."""
    import sklearn

    def older(node: dict[str, Any]) -> bool:
        # Every estimator records the release that saved it, as a JSON string node.
        version = node.get("_sklearn_version")
        if not isinstance(version, dict) or version.get("content") != f'"{sklearn.__version__}"':
            return False
        version["content"] = '"1.5.0"'
        return True

    path = tmp_path / "old.skops"
    path.write_bytes(edited(dumps_model(model), older))
    with pytest.raises(InputError) as exc:
        load_model(path)
    assert str(exc.value) == (
        f"{path}: saved with scikit-learn 1.5.0, this environment has {sklearn.__version__}: "
        "retrain it here (`dvc repro --force train`), or install the release requirements.lock "
        "pins"
    )
    same = tmp_path / "same.skops"
    save_model(model, same)
    assert type(load_model(same)) is type(model)  # this release's own file still loads
