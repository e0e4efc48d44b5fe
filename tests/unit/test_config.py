"""params.yaml is parsed like DVC parses it, validated fully, and returned frozen and typed."""

from __future__ import annotations

import dataclasses
import shutil
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from pipeline import config
from pipeline.cli import main
from pipeline.errors import ConfigError
from tests.conftest import DEMO_ROOT, REPO_ROOT, git, make_template_repo, run, set_param


@pytest.fixture
def params_file(tmp_path: Path) -> Path:
    target = tmp_path / "params.yaml"
    shutil.copy(DEMO_ROOT / "params.yaml", target)  # the edits below name the demo's columns
    return target


def _errors(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config.load_params(path)
    return info.value.violations


def test_shipped_params_load_as_frozen_typed_objects() -> None:
    params = config.load_params(REPO_ROOT / "params.yaml")
    assert params.task.type in {"binary", "multiclass", "regression"}
    assert isinstance(params.features.numeric, tuple)
    assert isinstance(params.evaluate.benchmark.repeats, int)
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.train.model = "ridge"  # type: ignore[misc]
    with pytest.raises(TypeError):
        params.train.kwargs["max_iter"] = 1  # type: ignore[index]


def test_misspelt_key_is_rejected_with_file_and_path(params_file: Path) -> None:
    params_file.write_text(params_file.read_text().replace("  test_size:", "  tset_size:"))
    errors = _errors(params_file)
    assert any(str(params_file) in e and "split" in e and "tset_size" in e for e in errors), errors
    assert any("test_size" in e and "required" in e for e in errors), errors


def test_wrong_type_names_key_and_value(params_file: Path) -> None:
    set_param(params_file, "rows", '"many"')
    errors = _errors(params_file)
    assert errors == [f"{params_file}: ingest.generator.rows: 'many' is not of type 'integer'"]


def test_out_of_range_number(params_file: Path) -> None:
    set_param(params_file, "test_size", "1.5")
    errors = _errors(params_file)
    assert len(errors) == 1
    assert "split.test_size" in errors[0]
    assert "1.5" in errors[0]


def test_every_violation_is_reported_at_once(params_file: Path) -> None:
    set_param(params_file, "test_size", "1.5")
    set_param(params_file, "rows", "-3")
    set_param(params_file, "type", "clustering")
    errors = _errors(params_file)
    assert len(errors) == 3, errors
    joined = "\n".join(errors)
    for key in ("split.test_size", "ingest.generator.rows", "task.type"):
        assert key in joined


def test_scientific_notation_is_a_float_as_in_yaml_1_2(params_file: Path) -> None:
    # PyYAML (YAML 1.1) would read 1e-3 as the *string* "1e-3"; DVC and we read a float.
    set_param(params_file, "learning_rate", "1e-3")
    params = config.load_params(params_file)
    assert params.train.kwargs["learning_rate"] == pytest.approx(0.001)
    assert isinstance(params.train.kwargs["learning_rate"], float)


def test_yaml_1_1_booleans_are_strings_in_1_2(params_file: Path) -> None:
    # `no` is a boolean in YAML 1.1 but a string in 1.2: a bool-typed key must reject it.
    set_param(params_file, "stratify", "no")
    errors = _errors(params_file)
    assert errors == [f"{params_file}: split.stratify: 'no' is not of type 'boolean'"]


def test_duplicate_key_is_an_error_naming_the_line(params_file: Path) -> None:
    text = params_file.read_text().replace("  seed: 42\n", "  seed: 42\n  seed: 43\n", 1)
    params_file.write_text(text)
    errors = _errors(params_file)
    assert len(errors) == 1
    assert "duplicate key" in errors[0]
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t == "  seed: 43")
    assert errors[0].startswith(f"{params_file}:{line}:")


def test_empty_file(params_file: Path) -> None:
    params_file.write_text("")
    assert _errors(params_file) == [f"{params_file}: file is empty (expected a mapping)"]


def test_invalid_yaml_names_file_and_line(params_file: Path) -> None:
    lines = params_file.read_text().splitlines()
    lines[5] = "project: [unclosed"
    params_file.write_text("\n".join(lines) + "\n")
    errors = _errors(params_file)
    assert len(errors) == 1
    assert errors[0].startswith(f"{params_file}:")
    assert "invalid YAML" in errors[0]
    reported_line = int(errors[0].split(":")[1])
    assert 6 <= reported_line <= 8


def test_nan_is_rejected_even_where_schema_would_accept_it(params_file: Path) -> None:
    # jsonschema lets NaN through `maximum` (NaN compares False both ways): fail closed.
    set_param(params_file, "label_noise", ".nan")
    errors = _errors(params_file)
    assert errors == [f"{params_file}: ingest.generator.label_noise: nan is not a finite number"]


def test_missing_file(tmp_path: Path) -> None:
    assert _errors(tmp_path / "nope.yaml") == [f"{tmp_path / 'nope.yaml'}: file not found"]


def test_cross_checks_feature_declarations(params_file: Path) -> None:
    set_param(params_file, "categorical", "[region, employment, age]")
    errors = _errors(params_file)
    assert errors == [f"{params_file}: features: column 'age' is declared twice"]


def test_cli_exits_2_and_writes_nothing_on_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(DEMO_ROOT / "params.yaml", tmp_path / "params.yaml")
    set_param(tmp_path / "params.yaml", "rows", "ten")
    monkeypatch.chdir(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(["ingest"]) == 2
    err = capsys.readouterr().err
    assert "ingest.generator.rows" in err
    assert "'ten'" in err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("name", ["params", "contract", "promotion", "monitoring", "registry"])
def test_shipped_schemas_are_strict_draft_2020_12(name: str) -> None:
    path = REPO_ROOT / "pipeline" / "schemas" / f"{name}.schema.json"
    if not path.exists():
        pytest.fail(f"{path} is missing")
    schema = config.schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)  # raises SchemaError on an invalid schema

    def objects(node: object) -> list[dict[str, object]]:
        if isinstance(node, dict):
            found = [node] if node.get("type") == "object" and "properties" in node else []
            return found + [o for v in node.values() for o in objects(v)]
        if isinstance(node, list):
            return [o for v in node for o in objects(v)]
        return []

    for obj in objects(schema):
        assert obj.get("additionalProperties") is False, obj


BOMB = (
    'a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]\n'
    "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
    "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    "e: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
)


@pytest.mark.parametrize(
    "text",
    [BOMB, "base: &base {x: 1}\nother: *base\n", "only_an_anchor: &a 1\n"],
)
def test_yaml_anchors_and_aliases_are_refused_before_building(text: str) -> None:
    with pytest.raises(ConfigError) as exc:
        config.parse_yaml(text, "params.yaml")
    assert exc.value.violations == [
        "params.yaml:1: YAML anchors and aliases (&name, *name) are not allowed: "
        "write each value out"
    ]


def test_oversized_yaml_is_refused_unparsed() -> None:
    text = "x: 1\n" * (config.MAX_YAML_CHARS // 5 + 1)
    with pytest.raises(ConfigError, match=r"big\.yaml: \d+ characters, more than"):
        config.parse_yaml(text, "big.yaml")


def test_config_check_refuses_an_alias_bomb_fast_and_writes_nothing(tmp_path: Path) -> None:
    """What CI runs before `dvc repro`: a pull request's alias bomb ends in exit 2 at once."""
    repo = make_template_repo(tmp_path / "repo")
    (repo / "params.yaml").write_text(
        (repo / "params.yaml").read_text() + "\nbomb:\n  " + BOMB.replace("\n", "\n  ")
    )
    before = sorted(p.relative_to(repo) for p in repo.rglob("*") if ".git" not in p.parts)
    # The timeout only turns a hang (what the bomb did before) into a failure.
    proc = run([sys.executable, "-m", "pipeline", "config-check"], repo, check=False, timeout=60)
    assert proc.returncode == 2
    assert "anchors and aliases (&name, *name) are not allowed" in proc.stderr
    assert sorted(p.relative_to(repo) for p in repo.rglob("*") if ".git" not in p.parts) == before
    ok = run(
        [sys.executable, "-m", "pipeline", "config-check"], make_template_repo(tmp_path / "ok")
    )
    assert "parse and validate" in ok.stdout


# --------------------------------------------------------------------------- paths that escape
# Issue 17, item 6. The rules on the text of params.yaml are checked by every command; where the
# paths really point (symlinks) by every stage and config-check (tests/unit/test_ingest.py).


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("raw", "./data/raw/dataset.parquet", "write data/raw/dataset.parquet"),
        ("plots", "models/plots/", "write models/plots"),
        ("fairness", "models//fairness.json", "write models/fairness.json"),
        ("source_dir", ".", "names the repository root itself"),
    ],
)
def test_paths_must_be_normalized_relative_paths(
    params_file: Path, key: str, value: str, message: str
) -> None:
    set_param(params_file, key, value)
    assert _errors(params_file) == [
        f"{params_file}: paths.{key}: {value} "
        + ("is not a normalized path: " if message.startswith("write") else "")
        + message
    ]


@pytest.mark.parametrize("value", ["/etc/passwd", "../outside", "data/../../outside"])
def test_paths_outside_the_repository_are_refused_by_the_schema(
    params_file: Path, value: str
) -> None:
    set_param(params_file, "raw", value)
    assert [e for e in _errors(params_file) if "paths.raw" in e and "does not match" in e]


@pytest.mark.parametrize(
    ("source", "pin", "message"),
    [
        ("generator", "ab" * 32, "ingest.source_sha256: only a URL source is pinned"),
        ("data/source/x.csv", "ab" * 32, "ingest.source_sha256: only a URL source is pinned"),
        ("https://example.com/x.csv", "null", "ingest.source_sha256: a URL source"),
        ("https://example.com/x.csv", "AB" * 32, "ingest.source_sha256: 'ABAB"),
        ("data/source/./x.csv", "null", "data/source/./x.csv is not a normalized path"),
        ("data/source", "null", "data/source is not under data/source/"),
    ],
)
def test_source_and_its_pin(params_file: Path, source: str, pin: str, message: str) -> None:
    set_param(params_file, "source", source)
    set_param(params_file, "source_sha256", pin)
    errors = _errors(params_file)
    assert len(errors) == 1, errors
    assert message in errors[0]


def work_tree(repo: Path) -> dict[str, str]:
    """Every file and symlink of a repository outside .git -> its sha256 or its target."""
    import hashlib

    return {
        p.relative_to(repo).as_posix(): (
            f"-> {p.readlink()}" if p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest()
        )
        for p in sorted(repo.rglob("*"))
        if (p.is_symlink() or p.is_file())
        and ".git" not in p.relative_to(repo).parts
        and "tmp" not in p.relative_to(repo).parts  # .dvc/tmp: DVC's own locks, git-ignored
    }


def test_dvc_repro_and_config_check_refuse_a_source_outside_the_repository(
    tmp_path: Path,
) -> None:
    """The issue's case in a real repository: a source DVC does not hash fails the run; nothing
    is written, in the repository (files, git status, dvc.lock) or beside it."""
    repo = make_template_repo(tmp_path / "repo")
    shutil.copy(REPO_ROOT / "dvc.lock", repo / "dvc.lock")  # any committed lock: it must stay
    outside = tmp_path / "mine.csv"
    outside.write_text("a,b\n1,2\n")
    set_param(repo / "params.yaml", "source", str(outside))
    before = (work_tree(tmp_path), git(repo, "status", "--porcelain"))
    message = (
        f"ingest.source: {outside} is not under data/source/, the folder the ingest stage "
        f"depends on in dvc.yaml, so DVC would not see it change: copy it there (cp {outside} "
        "data/source/) and set ingest.source: data/source/mine.csv"
    )
    config_check = run([sys.executable, "-m", "pipeline", "config-check"], repo, check=False)
    assert (config_check.returncode, config_check.stdout) == (2, "")
    assert message in config_check.stderr
    repro = run(["dvc", "repro", "ingest"], repo, check=False)
    assert repro.returncode != 0
    assert message in repro.stderr + repro.stdout
    assert (work_tree(tmp_path), git(repo, "status", "--porcelain")) == before


def test_a_data_folder_symlinked_out_of_a_repository_is_not_written_through(
    tmp_path: Path,
) -> None:
    repo = make_template_repo(tmp_path / "repo")
    elsewhere = tmp_path / "elsewhere"
    shutil.move(repo / "data", elsewhere)
    (repo / "data").symlink_to(elsewhere, target_is_directory=True)
    before = (work_tree(tmp_path), git(repo, "status", "--porcelain"))
    for command in ("config-check", "ingest"):
        proc = run([sys.executable, "-m", "pipeline", command], repo, check=False)
        assert proc.returncode == 2, command
        assert (
            f"paths.raw: data/raw/dataset.parquet is really {elsewhere}/raw/dataset.parquet "
            f"(data is a symlink to {elsewhere}), outside the repository {repo}"
        ) in proc.stderr
    assert not (elsewhere / "raw" / "dataset.parquet").exists()
    assert (work_tree(tmp_path), git(repo, "status", "--porcelain")) == before


def test_the_url_pin_is_a_params_dependency_of_the_ingest_stage() -> None:
    """A new pin must rerun ingest: dvc.yaml lists the whole `ingest` section, or the key."""
    params = config.load_yaml(REPO_ROOT / "dvc.yaml")["stages"]["ingest"]["params"]
    assert {"ingest", "ingest.source_sha256"} & set(params), params
