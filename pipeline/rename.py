"""The `rename` command: set the project and model names everywhere the template spells them.

Where they appear: params.yaml `project.name` / `project.model` (the registry name every GTO tag
carries), the `[project] name` of pyproject.toml (package metadata), the README title, the
"via <package>" annotations of requirements.lock, the default DVC remote directory in
.dvc/config (`../../<project>-dvc-storage`, so two forks side by side do not share storage) and
any mention of the project name in .github/CODEOWNERS (e.g. a team handle), and the model's key
in dvc.yaml's `artifacts:` (what `dvc artifacts get` names). Each edit is a pure
text function; `rename` applies them and writes only files that change, so it is idempotent.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from pipeline import io
from pipeline.config import parse_yaml
from pipeline.errors import ConfigError
from pipeline.init import edit_params, get_key

# The params schema's pattern for both names: lowercase letters, digits, inner dashes.
NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
MAX_LENGTH = 64


@dataclasses.dataclass(frozen=True, slots=True)
class RenameResult:
    text: str
    changed: tuple[str, ...]


def name_problems(project: str, model: str) -> list[str]:
    """Every invalid name, with the rule it breaks."""
    problems = []
    for flag, value in (("--project", project), ("--model", model)):
        if not NAME.match(value):
            problems.append(
                f"{flag}: {value!r} is not a valid name (lowercase letters, digits and "
                "dashes; starts and ends with a letter or digit)"
            )
        elif len(value) > MAX_LENGTH:
            problems.append(f"{flag}: {value!r} is longer than {MAX_LENGTH} characters")
    return problems


# --------------------------------------------------------------------------- text edits (pure)


def rename_params(text: str, project: str, model: str) -> str:
    """params.yaml with project.name and project.model set; comments and layout kept."""
    return edit_params(text, {"project.name": project, "project.model": model})


def rename_pyproject(text: str, project: str) -> str:
    """The `name = "..."` of the [project] table (package metadata)."""
    match = re.search(r"(?ms)^\[project\]\s*$(.*?)(?=^\[|\Z)", text)
    if match is None:
        return text
    table = re.sub(
        r'(?m)^(name\s*=\s*)"[^"]*"', lambda m: f'{m.group(1)}"{project}"', match.group(1), count=1
    )
    return text[: match.start(1)] + table + text[match.end(1) :]


def rename_readme(text: str, project: str) -> str:
    """The first `# ` heading is the title: it becomes the project name."""
    return re.sub(r"(?m)^# .*$", f"# {project}", text, count=1)


def rename_mentions(text: str, old: str, new: str) -> str:
    """Whole-word mentions of the old project name (lock annotations, CODEOWNERS, remote dir)."""
    if not old or old == new:
        return text
    return re.sub(rf"(?<![A-Za-z0-9_-]){re.escape(old)}(?![A-Za-z0-9_])", new, text)


def rename_artifact(text: str, old: str, new: str) -> str:
    """dvc.yaml's `artifacts:` key for the model (`dvc artifacts get . <model>`), which must be
    the registry's model name; DVC does not template keys, so it is spelt out there."""
    return re.sub(
        rf"(?m)^(artifacts:\n(?:[ \t]*#.*\n)*[ \t]+){re.escape(old)}:", rf"\g<1>{new}:", text
    )


def rename_remote(text: str, old: str, new: str) -> str:
    """The default local remote `<project>-dvc-storage` in .dvc/config (url lines only)."""
    return re.sub(r"(?m)^(\s*url\s*=\s*.*)$", lambda m: rename_mentions(m.group(1), old, new), text)


def rename_lock(text: str, old: str, new: str) -> str:
    """pip-compile's `# via <package> (pyproject.toml)` annotations."""
    return re.sub(
        rf"(?m)^(\s*#\s+(?:via\s+)?){re.escape(old)}(\s+\(pyproject\.toml\))",
        lambda m: f"{m.group(1)}{new}{m.group(2)}",
        text,
    )


# --------------------------------------------------------------------------- I/O


def _old_tags(root: Path, model: str) -> list[str]:
    """GTO tags of the old model name (they keep that name: the registry restarts)."""
    try:
        proc = subprocess.run(
            ["git", "tag", "--list", f"{model}@*", f"{model}#*"],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return []
    return proc.stdout.split() if proc.returncode == 0 else []


def rename(params_path: Path, project: str, model: str, *, dry_run: bool = False) -> RenameResult:
    """Apply every edit; write only the files whose text changes; report what changed."""
    problems = name_problems(project, model)
    if problems:
        raise ConfigError(problems)
    root = params_path.parent
    try:
        params_text = params_path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError([f"{params_path}: file not found"]) from exc
    doc = parse_yaml(params_text, str(params_path))
    old_project = str(get_key(doc, "project.name"))
    old_model = str(get_key(doc, "project.model"))

    edits: list[tuple[Path, Callable[[str], str]]] = [
        (params_path, lambda t: rename_params(t, project, model)),
        (root / "pyproject.toml", lambda t: rename_pyproject(t, project)),
        (root / "README.md", lambda t: rename_readme(t, project)),
        (root / "requirements.lock", lambda t: rename_lock(t, old_project, project)),
        (root / ".dvc" / "config", lambda t: rename_remote(t, old_project, project)),
        (root / ".github" / "CODEOWNERS", lambda t: rename_mentions(t, old_project, project)),
        (root / "dvc.yaml", lambda t: rename_artifact(t, old_model, model)),
    ]
    planned: list[tuple[Path, str]] = []
    for path, edit in edits:
        if not path.is_file():
            continue
        before = path.read_text(encoding="utf-8")
        after = edit(before)
        if after != before:
            planned.append((path, after))
    if not dry_run:
        for path, after in planned:
            io.write_text(path, after)

    changed = tuple(path.relative_to(root).as_posix() for path, _ in planned)
    verb = "would change" if dry_run else "changed"
    lines = [f"project: {old_project} -> {project}", f"model: {old_model} -> {model}"]
    lines.append(f"{verb}: {', '.join(changed)}" if changed else "already named so: no change")
    tags = _old_tags(root, old_model) if old_model != model else []
    if tags:
        lines.append(
            f"note: {len(tags)} existing registry tag(s) keep the old name {old_model!r} "
            f"(e.g. {tags[0]}); versions of {model!r} start afresh"
        )
    return RenameResult(text="\n".join(lines) + "\n", changed=changed)
