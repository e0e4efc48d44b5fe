"""dvc.yaml lists, for every stage, all the project code the stage runs.

DVC cannot know which modules a stage imports: a module missing from `deps` means a change to
it leaves `dvc status` "up to date" and DVC reuses stale outputs. The closure is computed from
the source: `python -m pipeline <stage>` runs `pipeline/__main__.py` and `pipeline/cli.py`
(their module-level imports; the CLI imports each command's module only when it runs), then
the stage module and everything it imports, at any depth and level, except imports that only
type checkers see. Package data a module reads is part of the code it runs.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import parse_yaml

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("ingest", "validate", "features", "train", "evaluate", "benchmark")
# Files a module reads at run time, as its code: a change to them changes what it does.
PACKAGE_DATA = {
    "pipeline/config.py": ["pipeline/schemas"],
    "pipeline/model_io.py": ["pipeline/trusted_types.txt"],
}


def _file(module: str) -> Path | None:
    for candidate in (ROOT / f"{module.replace('.', '/')}.py",
                      ROOT / module.replace(".", "/") / "__init__.py"):  # fmt: skip
        if candidate.is_file():
            return candidate
    return None


def imports(path: Path, *, module_level_only: bool = False) -> set[str]:
    """Project modules `path` imports (`pipeline...`), skipping `if TYPE_CHECKING:` blocks and,
    with `module_level_only`, the bodies of functions (they run only when called)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.split(".")[0] == "pipeline")
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                if child.module.split(".")[0] != "pipeline":
                    continue
                found.add(child.module)
                found.update(
                    f"{child.module}.{a.name}"
                    for a in child.names
                    if _file(f"{child.module}.{a.name}")
                )
            if module_level_only and isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def closure(stage: str) -> set[str]:
    """Repo-relative files `python -m pipeline <stage>` executes or reads as code."""
    entry = _file("pipeline.cli")
    assert entry is not None
    todo = [f"pipeline.{stage}", "pipeline.__main__", *imports(entry, module_level_only=True)]
    seen = {"pipeline", "pipeline.cli"}
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = _file(module)
        if path is not None:
            todo.extend(imports(path))
    files = {str(p.relative_to(ROOT)) for m in seen if (p := _file(m)) is not None}
    for source, data in PACKAGE_DATA.items():
        if source in files:
            files.update(data)
    return files


def declared_deps(stage: str) -> set[str]:
    dvc = parse_yaml((ROOT / "dvc.yaml").read_text(encoding="utf-8"), "dvc.yaml")
    deps = dvc["stages"][stage]["deps"]
    return {str(d if isinstance(d, str) else next(iter(d))).rstrip("/") for d in deps}


@pytest.mark.parametrize("stage", STAGES)
def test_stage_deps_cover_the_code_it_runs(stage: str) -> None:
    missing = sorted(closure(stage) - declared_deps(stage))
    assert missing == [], f"dvc.yaml stage {stage!r} does not list {missing}"


def test_closure_follows_imports_at_any_depth() -> None:
    """The check above can fail: it sees modules a stage reaches only through others, the
    CLI every stage runs and the schemas its config loader reads, and nothing more."""
    evaluate = closure("evaluate")
    direct = {f"pipeline/{m.split('.')[-1]}.py" for m in imports(ROOT / "pipeline/evaluate.py")}
    assert "pipeline/validate.py" not in direct
    assert "pipeline/validate.py" in evaluate
    assert {"pipeline/cli.py", "pipeline/__main__.py", "pipeline/config.py"} <= evaluate
    assert "pipeline/schemas" in evaluate
    assert "pipeline/report.py" not in closure("train")  # the CLI's other commands do not run


def test_code_directories_hash_the_same_on_every_machine() -> None:
    """A directory dependency (pipeline/schemas) gets bytecode caches as soon as its code runs:
    DVC must ignore them, or the lock a laptop commits never matches the one CI reproduces."""
    directories = sorted(
        {dep for stage in STAGES for dep in declared_deps(stage)
        if dep.startswith("pipeline/") and (ROOT / dep).is_dir()}
    )  # fmt: skip
    assert directories == ["pipeline/schemas"]
    for directory in directories:
        for cached in (f"{directory}/__pycache__/x.cpython-311.pyc", f"{directory}/x.pyc"):
            proc = subprocess.run(
                [sys.executable, "-m", "dvc", "check-ignore", cached],
                cwd=ROOT, capture_output=True, text=True, check=False,
            )  # fmt: skip
            assert proc.returncode == 0, f"{cached} is not in .dvcignore: {proc.stdout}"
