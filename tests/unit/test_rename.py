"""pipeline/rename.py: names set everywhere, validated, idempotent, other text untouched."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from pipeline import rename
from pipeline.cli import main
from pipeline.config import load_params
from tests.conftest import DEMO_ROOT, git

PYPROJECT = """[build-system]
name = "not-this-one"

[project]
name = "ml-gitops-template"
version = "0.1.0"

[tool.other]
name = "nor-this-one"
"""

CODEOWNERS = "policies/ @acme/ml-gitops-template-owners\n* @acme/ml\n"
LOCK = """numpy==2.4.6 \\
    # via ml-gitops-template (pyproject.toml)
foo==1
    # via
    #   ml-gitops-template (pyproject.toml)
"""
DVC_CONFIG = """['remote "storage"']
    # shared by ml-gitops-template clones
    url = ../../ml-gitops-template-dvc-storage
"""


@pytest.mark.parametrize("name", ["acme", "churn-2", "a", "x1-y2-z3"])
def test_valid_names(name: str) -> None:
    assert rename.name_problems(name, name) == []


@pytest.mark.parametrize("name", ["Acme", "acme_churn", "-acme", "acme-", "a b", "", "x" * 65])
def test_invalid_names(name: str) -> None:
    problems = rename.name_problems(name, "ok")
    assert len(problems) == 1
    assert problems[0].startswith("--project:")


def test_rename_pyproject_changes_only_the_project_table() -> None:
    out = rename.rename_pyproject(PYPROJECT, "acme")
    assert 'name = "acme"' in out
    assert 'name = "not-this-one"' in out
    assert 'name = "nor-this-one"' in out
    assert rename.rename_pyproject(out, "acme") == out


def test_rename_readme_title_only() -> None:
    text = "# ml-gitops-template\n\nText about ml-gitops-template.\n\n# Later heading\n"
    assert rename.rename_readme(text, "acme") == (
        "# acme\n\nText about ml-gitops-template.\n\n# Later heading\n"
    )


def test_rename_lock_remote_and_codeowners_mentions() -> None:
    lock = rename.rename_lock(LOCK, "ml-gitops-template", "acme")
    assert lock.count("acme (pyproject.toml)") == 2
    assert "ml-gitops-template" not in lock
    config = rename.rename_remote(DVC_CONFIG, "ml-gitops-template", "acme")
    assert "url = ../../acme-dvc-storage" in config
    assert "# shared by ml-gitops-template clones" in config  # only url lines
    owners = rename.rename_mentions(CODEOWNERS, "ml-gitops-template", "acme")
    assert owners == "policies/ @acme/acme-owners\n* @acme/ml\n"
    # whole names only: a longer name that merely starts with the old one is left alone
    assert rename.rename_mentions("ml-gitops-template2", "ml-gitops-template", "x") == (
        "ml-gitops-template2"
    )


DVC_YAML = "stages: {}\n\nartifacts:\n  # the model\n  credit-default:\n    path: ${paths.model}\n"


def test_rename_artifact_key_only() -> None:
    renamed = rename.rename_artifact(DVC_YAML, "credit-default", "churn")
    assert renamed == DVC_YAML.replace("  credit-default:", "  churn:")
    assert rename.rename_artifact("other:\n  credit-default: 1\n", "credit-default", "x") == (
        "other:\n  credit-default: 1\n"
    )


def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / ".dvc").mkdir(parents=True)
    (root / ".github").mkdir()
    shutil.copy(DEMO_ROOT / "params.yaml", root / "params.yaml")  # the template's names
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "README.md").write_text("# ml-gitops-template\n\nIntro.\n")
    (root / "requirements.lock").write_text(LOCK)
    (root / ".dvc" / "config").write_text(DVC_CONFIG)
    (root / ".github" / "CODEOWNERS").write_text(CODEOWNERS)
    (root / "dvc.yaml").write_text(DVC_YAML)
    return root


def digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


def test_rename_command_sets_names_everywhere_and_is_idempotent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = checkout(tmp_path)
    monkeypatch.chdir(root)
    params_before = (root / "params.yaml").read_text()
    assert main(["rename", "--project", "acme-churn", "--model", "churn", "--dry-run"]) == 0
    assert "would change: params.yaml, pyproject.toml" in capsys.readouterr().out
    assert main(["rename", "--project", "acme-churn", "--model", "churn"]) == 0
    out = capsys.readouterr().out
    assert "changed: params.yaml, pyproject.toml, README.md, requirements.lock, .dvc/config" in out
    assert ".github/CODEOWNERS" in out
    params = load_params(root / "params.yaml")
    assert (params.project.name, params.project.model) == ("acme-churn", "churn")
    # only the two values changed: every comment and every other line is as it was
    old_lines = params_before.splitlines()
    new_lines = (root / "params.yaml").read_text().splitlines()
    changed = [(a, b) for a, b in zip(old_lines, new_lines, strict=True) if a != b]
    assert [b.split("#")[0].strip() for _, b in changed] == ["name: acme-churn", "model: churn"]
    assert (root / "README.md").read_text().startswith("# acme-churn\n")
    assert "\n  churn:\n    path: ${paths.model}" in (root / "dvc.yaml").read_text()
    after = digest(root)
    assert main(["rename", "--project", "acme-churn", "--model", "churn"]) == 0
    assert "already named so: no change" in capsys.readouterr().out
    assert digest(root) == after


def test_rename_rejects_bad_names_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = checkout(tmp_path)
    monkeypatch.chdir(root)
    before = digest(root)
    assert main(["rename", "--project", "Acme Churn", "--model", "churn_v1"]) == 2
    err = capsys.readouterr().err
    assert "--project: 'Acme Churn' is not a valid name" in err
    assert "--model: 'churn_v1' is not a valid name" in err
    assert digest(root) == before


def test_rename_warns_about_tags_of_the_old_model_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = checkout(tmp_path)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    git(root, "tag", "credit-default@v0.1.0")
    monkeypatch.chdir(root)
    assert main(["rename", "--project", "acme", "--model", "churn"]) == 0
    assert "1 existing registry tag(s) keep the old name 'credit-default'" in (
        capsys.readouterr().out
    )
