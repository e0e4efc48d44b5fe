"""Every chart the PR report draws parses with Mermaid's own parser, the library GitHub renders
comments with: a chart GitHub cannot parse shows as an error box in the PR.

Mermaid and jsdom come from the npm registry (pinned versions, once per session, ~20 s). Like
the act scenarios, they need node/npm: where those are required (REQUIRE_ACT=1, as `.ci/run`
sets it) a missing toolchain fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import pytest

from pipeline import report as rp
from tests.conftest import clone_of, git, run

pytestmark = pytest.mark.e2e

PACKAGES = ("mermaid@11.17.2", "jsdom@29.1.1")
# mermaid.parse validates a diagram without drawing it; it expects a DOM, which jsdom gives.
CHECK = """\
import { readFileSync } from 'node:fs';
import { JSDOM } from 'jsdom';
const { window } = new JSDOM('<!doctype html><html><body></body></html>');
globalThis.window = window;
globalThis.document = window.document;
const { default: mermaid } = await import('mermaid');
mermaid.initialize({ startOnLoad: false });
let failed = 0;
for (const file of process.argv.slice(2)) {
  try {
    const parsed = await mermaid.parse(readFileSync(file, 'utf8'));
    console.log(`OK ${file} ${parsed.diagramType}`);
  } catch (error) {
    failed++;
    console.log(`FAIL ${file} ${String(error?.message ?? error).split('\\n').join(' ')}`);
  }
}
process.exit(failed ? 1 : 0);
"""
FENCE = re.compile(r"```mermaid\n(.*?)```", re.DOTALL)


def unavailable(reason: str) -> NoReturn:
    if os.environ.get("REQUIRE_ACT") == "1":
        pytest.fail(f"REQUIRE_ACT=1 but Mermaid's parser cannot run: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def mermaid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        unavailable("node and npm are needed for Mermaid's parser")
    root = tmp_path_factory.mktemp("mermaid")
    proc = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--ignore-scripts", *PACKAGES],
        cwd=root, capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    if proc.returncode != 0:
        unavailable(f"npm install {' '.join(PACKAGES)} failed:\n{proc.stderr[-2000:]}")
    (root / "check.mjs").write_text(CHECK)
    return root


def parse(mermaid: Path, charts: list[str], tmp_path: Path) -> dict[str, str]:
    """Each chart's verdict line from Mermaid ("OK <file> xychart" or "FAIL <file> <error>")."""
    files = []
    for i, chart in enumerate(charts):
        path = tmp_path / f"chart{i}.mmd"
        path.write_text(chart)
        files.append(str(path))
    proc = subprocess.run(
        ["node", str(mermaid / "check.mjs"), *files],
        cwd=mermaid, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    verdicts = {line.split()[1]: line for line in proc.stdout.splitlines() if line[:3] in "OK FAI"}
    assert len(verdicts) == len(files), proc.stdout + proc.stderr
    return verdicts


def test_the_parser_rejects_a_broken_chart(mermaid: Path, tmp_path: Path) -> None:
    """The check can fail: a line series of words is no xychart."""
    (verdict,) = parse(
        mermaid, ['xychart-beta\n    title "x"\n    line [a, b]\n'], tmp_path
    ).values()
    assert verdict.startswith("FAIL")


def test_every_chart_of_a_real_report_parses(
    mermaid: Path, reproduced_repo: Path, tmp_path: Path
) -> None:
    """The report of a PR that changed the model, with hostile slice values: metric bars,
    slice bars and the ROC, precision-recall and calibration curves."""
    repo = clone_of(reproduced_repo, tmp_path / "repo")
    git(repo, "checkout", "-q", "-b", "pr")
    params = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(params.replace("learning_rate: 0.1", "learning_rate: 0.3"))
    run(["dvc", "repro", "-q"], repo)
    text = run([sys.executable, "-m", "pipeline", "report", "--base", "main"], repo).stdout
    charts = FENCE.findall(text)
    assert len(charts) >= 5, text  # metrics, slices, ROC, precision-recall, calibration
    assert sum("line [" in c and "bar [" not in c for c in charts) == 3
    hostile = rp.slice_chart(
        tuple(
            rp.SliceDelta("region", value, 500, 500, (rp.metric_delta("roc_auc", 0.7, 0.8),))
            for value in ('a"]; bar [9', "`x`\n```", "#12 @team")
        ),
        "region",
        "roc_auc",
    )
    assert hostile is not None
    assert hostile.count("```") == 2  # the values could not close the fence
    verdicts = parse(mermaid, [*charts, *FENCE.findall(hostile)], tmp_path)
    failed = [v for v in verdicts.values() if not v.startswith("OK")]
    assert failed == []
    assert all(v.endswith("xychart") for v in verdicts.values())
