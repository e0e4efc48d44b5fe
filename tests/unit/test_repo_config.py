"""The repository's own configuration is valid: a fork starts from files that load."""

from __future__ import annotations

import pytest

from pipeline import config
from tests.conftest import REPO_ROOT

PARAMS = config.load_params(REPO_ROOT / "params.yaml")

# Each user-edited YAML file and the schema that governs it.
DOCUMENTS = {
    PARAMS.paths.contract: "contract",
    PARAMS.paths.promotion: "promotion",
    PARAMS.paths.monitoring: "monitoring",
    PARAMS.paths.registry: "registry",
}


@pytest.mark.parametrize(("path", "schema_name"), sorted(DOCUMENTS.items()))
def test_shipped_policy_files_are_valid(path: str, schema_name: str) -> None:
    doc = config.load_document(REPO_ROOT / path, schema_name)
    assert isinstance(doc, dict)
    assert doc, f"{path} is empty"


def test_every_policy_file_has_a_schema() -> None:
    shipped = {p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "policies").glob("*.yaml")}
    assert shipped <= set(DOCUMENTS), f"policy files without a schema: {shipped - set(DOCUMENTS)}"


def test_dvc_yaml_paths_come_from_params() -> None:
    # Paths are templated from params.yaml so the code and the DAG cannot disagree.
    dvc_yaml = config.parse_yaml((REPO_ROOT / "dvc.yaml").read_text(), "dvc.yaml")
    for name, stage in dvc_yaml["stages"].items():
        assert stage["cmd"] == f"python -m pipeline {name}"
        for section in ("outs", "metrics"):
            for out in stage.get(section, []):
                path = out if isinstance(out, str) else next(iter(out))
                assert path.startswith("${paths."), f"{name}: {path} is hard-coded"
        assert (REPO_ROOT / "pipeline" / f"{name}.py").is_file()
        assert (REPO_ROOT / "tests" / "unit" / f"test_{name}.py").is_file()


def test_the_model_is_a_dvc_artifact_named_as_in_the_registry() -> None:
    """`dvc artifacts get . <model>` works: one artifact, keyed by project.model, at the model
    path (rename keeps the key in step)."""
    dvc_yaml = config.parse_yaml((REPO_ROOT / "dvc.yaml").read_text(), "dvc.yaml")
    model = config.load_params(REPO_ROOT / "params.yaml").project.model
    assert dvc_yaml["artifacts"] == {
        model: {
            "path": "${paths.model}",
            "type": "model",
            "desc": "features and estimator in one skops file",
        }
    }
