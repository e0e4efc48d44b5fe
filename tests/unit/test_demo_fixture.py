"""tests/demo/ (the demo configuration the suite runs on) stays loadable and in step with the
template's shipped files, so a fork's `init` can rewrite the live files without breaking tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import config
from pipeline.init import GENERATOR_SOURCE, STATE_FILE
from pipeline.monitor import load_monitoring
from pipeline.policy import load_policy
from pipeline.registry import load_desired
from pipeline.validate import load_contract
from tests.conftest import DEMO_FILES, DEMO_ROOT, INIT_STATE, REPO_ROOT

DEMO_PARAMS = config.load_params(DEMO_ROOT / "params.yaml")
# Each demo file but params.yaml, with the schema that governs it and its typed loader.
DOCUMENTS = {
    DEMO_PARAMS.paths.contract: ("contract", load_contract),
    DEMO_PARAMS.paths.promotion: ("promotion", load_policy),
    DEMO_PARAMS.paths.monitoring: ("monitoring", load_monitoring),
    DEMO_PARAMS.paths.registry: ("registry", load_desired),
}
# The files `init` (and `rename`) rewrite for a fork. models/registry.yaml is not among them:
# promotions edit it, in the template's own repository too, and the tests need it empty.
SHIPPED = tuple(rel for rel in DEMO_FILES if rel != DEMO_PARAMS.paths.registry)


def test_every_fixture_file_is_laid_over_the_template_copy() -> None:
    files = {p.relative_to(DEMO_ROOT).as_posix() for p in DEMO_ROOT.rglob("*.yaml")}
    assert files == set(DEMO_FILES)
    assert set(DOCUMENTS) | {"params.yaml"} == set(DEMO_FILES)
    assert INIT_STATE == STATE_FILE


def test_demo_params_describe_the_built_in_generator() -> None:
    # a schema change fails load_params above (at import) with every violation listed
    assert DEMO_PARAMS.ingest.source == GENERATOR_SOURCE
    assert DEMO_PARAMS.task.type == "binary"
    assert (DEMO_PARAMS.task.target, DEMO_PARAMS.task.sensitive) == ("default", "sex")


@pytest.mark.parametrize("rel", sorted(DOCUMENTS))
def test_demo_policy_files_are_valid_against_the_current_schemas(rel: str) -> None:
    schema_name, load_typed = DOCUMENTS[rel]
    doc = config.load_document(DEMO_ROOT / rel, schema_name)
    assert doc, f"tests/demo/{rel} is empty"
    assert load_typed(DEMO_ROOT / rel) is not None
    if schema_name == "registry":
        assert doc["stages"] == {}, "the demo registry must start with no promoted version"


def fork_reason(root: Path) -> str | None:
    """Why the checkout at `root` is a fork's own setup rather than the template's untouched demo,
    or None when it is still the demo."""
    if (root / STATE_FILE).exists():
        return f"{STATE_FILE} exists: `init` configured this project for its own data"
    live = config.parse_yaml((root / "params.yaml").read_text(), "params.yaml")
    if live.get("ingest", {}).get("source") != GENERATOR_SOURCE:
        return "ingest.source is not the built-in generator"
    if live.get("project") != config.load_yaml(DEMO_ROOT / "params.yaml")["project"]:
        return "project.name / project.model were renamed"
    return None


@pytest.mark.parametrize("rel", SHIPPED)
def test_demo_fixture_equals_the_shipped_file_while_the_template_is_untouched(rel: str) -> None:
    reason = fork_reason(REPO_ROOT)
    if reason is not None:
        pytest.skip(f"a fork's own configuration ({reason}): the pinned demo may differ")
    live, demo = REPO_ROOT / rel, DEMO_ROOT / rel
    assert live.read_bytes() == demo.read_bytes(), (
        f"{rel} differs from tests/demo/{rel}. The tests run on the pinned copy in tests/demo/. "
        f"If you changed the demo configuration on purpose, copy it: cp {rel} tests/demo/{rel}"
    )


def test_fork_reason_tells_the_template_from_a_fork(tmp_path: Path) -> None:
    text = (DEMO_ROOT / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(text)
    assert fork_reason(tmp_path) is None
    (tmp_path / "params.yaml").write_text(text.replace("source: generator", "source: data/a.csv"))
    assert fork_reason(tmp_path) == "ingest.source is not the built-in generator"
    (tmp_path / "params.yaml").write_text(text.replace("model: credit-default", "model: churn"))
    assert fork_reason(tmp_path) == "project.name / project.model were renamed"
    (tmp_path / "params.yaml").write_text(text)
    (tmp_path / STATE_FILE).write_text("{}")
    assert (
        fork_reason(tmp_path)
        == f"{STATE_FILE} exists: `init` configured this project for its own data"
    )
