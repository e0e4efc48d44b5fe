"""Every action the workflows use is pinned to the commit of a published release whose tree
holds what its action.yml runs.

A pin that only looks right (a commit reachable from a pull-request ref, with no `dist/`) fails
on GitHub at the first run. RELEASES records each pin's release tag, checked against the action's
repository (`git ls-remote https://github.com/<owner>/<repo> refs/tags/<tag>`, the peeled commit
for an annotated tag) when it was added; the offline copies in ../shared/actions/ (the exact
trees of those commits) are checked for the files each action.yml runs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.act_runner import ACTIONS_DIR

WORKFLOWS = Path(__file__).resolve().parents[2] / ".github" / "workflows"
USES = re.compile(r"^\s*(?:-\s*)?uses:\s*(?P<ref>\S+)(?P<comment>.*)$", re.MULTILINE)
PIN = re.compile(r"(?P<action>[\w.-]+/[\w.-]+)@(?P<sha>[0-9a-f]{40})")

# owner/repo@commit -> release tag. To bump: pick the release, read its commit from
# `git ls-remote https://github.com/OWNER/REPO 'refs/tags/TAG^{}'` (or refs/tags/TAG for a
# lightweight tag), and change the workflows and this table together.
RELEASES = {
    "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683": "v4.2.2",
    "actions/setup-python@a26af69be951a213d495a4c3e4e4022e16d87065": "v5.6.0",
    "actions/cache@5a3ec84eff668545956fd18022155c47e93e2684": "v4.2.3",
    "actions/upload-artifact@ea165f8d65b6e75b540449e92b4886f43607fa02": "v4.6.2",
    "actions/download-artifact@d3f86a106a0bac45b974a628896c90dbdf5c8093": "v4.3.0",
    # v2.0.0 (f714cd2) asks GitHub for release "0.20.4" while CML's tags are "v0.20.4";
    # 097a56d, pinned before as "v2.0.0", is a pull-request commit with no dist/.
    "iterative/setup-cml@f12ea7685438c1fc438d50f77519b3860cf5fa98": "v2.0.1",
}


def uses() -> list[tuple[str, str, str]]:
    """(workflow file, `uses:` value, trailing comment) for every step that uses an action."""
    found = []
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for m in USES.finditer(path.read_text(encoding="utf-8")):
            found.append((path.name, m.group("ref"), m.group("comment").strip()))
    return found


def test_every_action_is_pinned_to_a_recorded_release() -> None:
    found = uses()
    assert found, "no `uses:` found: the pattern no longer matches the workflows"
    problems = []
    for workflow, ref, comment in found:
        if PIN.fullmatch(ref) is None:
            problems.append(f"{workflow}: {ref} is not pinned to a full commit SHA")
        elif ref not in RELEASES:
            problems.append(f"{workflow}: {ref} is no recorded release commit (see RELEASES)")
        elif comment != f"# {RELEASES[ref]}":
            problems.append(f"{workflow}: {ref} says {comment!r}, the release is {RELEASES[ref]}")
    assert problems == []


def test_one_pin_per_action() -> None:
    by_action: dict[str, set[str]] = {}
    for _, ref, _ in uses():
        action, _, sha = ref.partition("@")
        by_action.setdefault(action, set()).add(sha)
    assert {a: s for a, s in by_action.items() if len(s) > 1} == {}


def test_setup_cml_is_at_least_2_0_1_with_a_version_it_finds() -> None:
    """v2.0.1 is the first release that finds CML's `v`-prefixed tags; pin CML itself too."""
    seen = 0
    for path in sorted(WORKFLOWS.glob("*.yml")):
        data = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
        for job in data["jobs"].values():
            for step in job.get("steps", []):
                if not str(step.get("uses", "")).startswith("iterative/setup-cml@"):
                    continue
                tag = RELEASES[step["uses"]]
                assert tuple(map(int, tag.lstrip("v").split("."))) >= (2, 0, 1), path.name
                version = str(step.get("with", {}).get("version", "latest"))
                assert re.fullmatch(r"v?\d+\.\d+\.\d+", version), (path.name, version)
                seen += 1
    assert seen == 2  # pr-comment.yml and monitor.yml install CML


def _runs_files(action_yml: Path) -> list[str]:
    """The files an action's `runs:` executes (node `main`/`pre`/`post`, a Dockerfile)."""
    runs = YAML(typ="safe", pure=True).load(action_yml.read_text(encoding="utf-8"))["runs"]
    using = str(runs["using"])
    if using.startswith("node"):
        return [str(runs[key]) for key in ("pre", "main", "post") if key in runs]
    if using == "docker" and not str(runs.get("image", "")).startswith("docker://"):
        return [str(runs["image"])]
    return []  # composite: its steps are in action.yml itself


@pytest.mark.parametrize("pin", sorted(RELEASES))
def test_release_tree_holds_what_action_yml_runs(pin: str) -> None:
    copy = ACTIONS_DIR / pin
    if not copy.is_dir():
        pytest.skip(f"no offline copy of {pin} in {ACTIONS_DIR}")
    action_yml = copy / "action.yml" if (copy / "action.yml").is_file() else copy / "action.yaml"
    files = _runs_files(action_yml)
    assert files, f"{pin}: its action.yml runs nothing this test knows how to check"
    assert [f for f in files if not (copy / f).is_file()] == []


def test_runs_files_catches_a_tree_without_dist(tmp_path: Path) -> None:
    """The check above fails on the kind of commit that broke setup-cml: no dist/ in the tree."""
    (tmp_path / "action.yml").write_text("runs:\n  using: node16\n  main: dist/index.js\n")
    files = _runs_files(tmp_path / "action.yml")
    assert files == ["dist/index.js"]
    assert not (tmp_path / files[0]).is_file()
