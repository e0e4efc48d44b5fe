"""The workflow harness itself: expressions, file commands, conditions, stubs, shims."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.harness import (
    Evaluator,
    ExpressionError,
    StepContext,
    cml_shim,
    evaluate_condition,
    gh_shim,
    hash_files,
    load_workflow,
    parse_command_file,
    read_record,
    run_job,
    substitute,
)

CONTEXTS: dict[str, Any] = {
    "github": {
        "event_name": "pull_request",
        "event": {
            "pull_request": {"number": 7, "title": "Tune", "labels": [{"name": "a"}]},
            "number": 7,
        },
        "repository": "Org/Repo",
    },
    "env": {"EMPTY": "", "NAME": "x"},
    "vars": {},
    "steps": {"s1": {"outputs": {"n": "3"}}},
}


def ev(text: str, *, failed: bool = False, workdir: Path = Path()) -> Any:
    return Evaluator(CONTEXTS, workdir=workdir, job_failed=failed).evaluate(text)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("github.event.pull_request.number", 7.0),
        ("github.event.pull_request.missing", None),
        ("github.EVENT.Pull_Request.title", "Tune"),
        ("github.event['pull_request']['title']", "Tune"),
        ("vars.OFF || 'default'", "default"),
        ("env.EMPTY && 'yes'", ""),
        ("env.NAME && 'yes'", "yes"),
        ("github.repository == 'org/repo'", True),  # string equality ignores case
        ("steps.s1.outputs.n == 3", True),  # different types compare as numbers
        ("steps.s1.outputs.n != '3'", False),
        ("1 < 2 && !false", True),
        ("contains('Hello world', 'WORLD')", True),
        ("contains(fromJSON('[\"a\",\"b\"]'), 'b')", True),
        ("contains(github.event.pull_request.labels.*.name, 'a')", True),
        ("startsWith(github.repository, 'org/')", True),
        ("endsWith('file.yml', '.YML')", True),
        ("format('{0}-{1} {{x}}', 'a', 1)", "a-1 {x}"),
        ("join(fromJSON('[1,2]'), '+')", "1+2"),
        ("'it''s'", "it's"),
        ("null", None),
        ("(false || 0) || 'z'", "z"),
    ],
)
def test_expressions(expression: str, expected: Any) -> None:
    assert ev(expression) == expected


def test_status_functions_follow_job_state() -> None:
    assert ev("success()") is True
    assert ev("failure()") is False
    assert ev("failure()", failed=True) is True
    assert ev("always()", failed=True) is True


def test_bad_expressions_are_errors() -> None:
    with pytest.raises(ExpressionError, match="unknown context"):
        ev("nope.x")
    with pytest.raises(ExpressionError, match="unknown function"):
        ev("eval('x')")
    with pytest.raises(ExpressionError, match="unterminated"):
        substitute("${{ github.repository", Evaluator(CONTEXTS, workdir=Path()))


def test_substitution_is_textual_and_unquoted() -> None:
    contexts = {"github": {"event": {"title": "$(touch x) `id` ' \""}}}
    text = substitute(
        "echo ${{ github.event.title }} ${{ '}}' }}", Evaluator(contexts, workdir=Path())
    )
    assert text == "echo $(touch x) `id` ' \" }}"


def test_conditions_wrap_in_success_unless_status_function() -> None:
    ok = Evaluator(CONTEXTS, workdir=Path())
    failed = Evaluator(CONTEXTS, workdir=Path(), job_failed=True)
    assert evaluate_condition(None, ok) is True
    assert evaluate_condition(None, failed) is False
    assert evaluate_condition("github.event.number == 7", ok) is True
    assert evaluate_condition("${{ github.event.number == 7 }}", failed) is False
    assert evaluate_condition("always() && github.event.number == 7", failed) is True
    assert evaluate_condition("${{ failure() }}", failed) is True
    assert evaluate_condition("vars.OFF != 'false'", ok) is True


def test_hash_files(tmp_path: Path) -> None:
    assert hash_files(tmp_path, ["dvc.lock"]) == ""
    (tmp_path / "dvc.lock").write_text("a")
    first = hash_files(tmp_path, ["dvc.lock"])
    (tmp_path / "dvc.lock").write_text("b")
    assert len(first) == 64
    assert hash_files(tmp_path, ["dvc.lock"]) != first


def test_parse_command_file() -> None:
    text = "a=1\nb<<EOF\nline1\nline=2\nEOF\nc=x=y\n"
    assert parse_command_file(text) == {"a": "1", "b": "line1\nline=2", "c": "x=y"}
    with pytest.raises(ValueError, match="not terminated"):
        parse_command_file("b<<EOF\nno end\n")


def test_load_workflow_keeps_on_as_a_key(tmp_path: Path) -> None:
    wf = tmp_path / "w.yml"
    wf.write_text("on: {pull_request: {}}\njobs: {}\n")
    assert "on" in load_workflow(wf)


WORKFLOW = """
name: Demo
on: pull_request
permissions: {}
env:
  WF: from-workflow
defaults:
  run:
    shell: bash
jobs:
  demo:
    runs-on: ubuntu-latest
    env:
      JOB: ${{ env.WF }}-job
    outputs:
      answer: ${{ steps.first.outputs.answer }}
    steps:
      - id: first
        run: |
          echo "answer=42" >> "$GITHUB_OUTPUT"
          { echo "multi<<EOF"; echo "l1"; echo "l2"; echo "EOF"; } >> "$GITHUB_OUTPUT"
          echo "LATER=set-by-env-file" >> "$GITHUB_ENV"
          mkdir -p "$PWD/tools" && printf '#!/bin/sh\\necho tool-ran\\n' > tools/mytool
          chmod +x tools/mytool && echo "$PWD/tools" >> "$GITHUB_PATH"
          echo "## hello summary" >> "$GITHUB_STEP_SUMMARY"
      - id: second
        env:
          ANSWER: ${{ steps.first.outputs.answer }}
          TITLE: ${{ github.event.pull_request.title }}
        run: |
          echo "answer=$ANSWER later=$LATER job=$JOB wf=$WF"
          echo "title=$TITLE"
          mytool
          echo "${{ steps.first.outputs.multi }}" | wc -l
      - id: sub
        working-directory: sub
        run: pwd
      - id: action
        uses: actions/download-artifact@0123456789abcdef0123456789abcdef01234567 # v0
        with:
          name: ${{ format('art-{0}', github.event.number) }}
      - id: unstubbed
        uses: actions/setup-python@0123456789abcdef0123456789abcdef01234567 # v0
      - id: fails
        continue-on-error: true
        run: exit 3
      - id: after-soft-failure
        run: echo "outcome=${{ steps.fails.outcome }} conclusion=${{ steps.fails.conclusion }}"
      - id: hard-failure
        run: |
          false
          echo never
      - id: skipped
        run: echo should-not-run
      - id: cleanup
        if: always()
        run: echo cleanup
      - id: on-failure
        if: failure()
        run: echo on-failure
"""


@pytest.fixture
def demo(tmp_path: Path) -> tuple[Path, Path]:
    wf = tmp_path / "demo.yml"
    wf.write_text(WORKFLOW)
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    return wf, work


def test_run_job_end_to_end(demo: tuple[Path, Path]) -> None:
    wf, work = demo
    seen: list[StepContext] = []

    def download(ctx: StepContext) -> dict[str, str]:
        seen.append(ctx)
        (ctx.workdir / "artifact.txt").write_text("payload")
        return {"download-path": str(ctx.workdir)}

    result = run_job(
        wf,
        "demo",
        workdir=work,
        event={"number": 5, "pull_request": {"number": 5, "title": "Hi $(id)"}},
        event_name="pull_request",
        stub_uses={"actions/download-artifact": download},
    )
    by_id = {s.id: s for s in result.steps}
    assert by_id["first"].returncode == 0, by_id["first"].stderr
    assert result.outputs["first"] == {"answer": "42", "multi": "l1\nl2"}
    second = by_id["second"].stdout.splitlines()
    assert second[0] == "answer=42 later=set-by-env-file job=from-workflow-job wf=from-workflow"
    assert second[1] == "title=Hi $(id)"  # passed through env: stays data
    assert second[2] == "tool-ran"  # GITHUB_PATH honoured
    assert second[3].strip() == "2"
    assert by_id["sub"].stdout.strip() == str((work / "sub").resolve())
    assert seen[0].with_ == {"name": "art-5"}
    assert (work / "artifact.txt").read_text() == "payload"
    assert result.outputs["action"] == {"download-path": str(work.resolve())}
    assert by_id["unstubbed"].skipped
    assert by_id["unstubbed"].uses is not None
    assert by_id["fails"].returncode == 3
    assert by_id["after-soft-failure"].stdout.strip() == "outcome=failure conclusion=success"
    assert by_id["hard-failure"].returncode == 1
    assert "never" not in by_id["hard-failure"].stdout  # -e: stops at the first failure
    assert by_id["skipped"].skipped
    assert by_id["cleanup"].stdout.strip() == "cleanup"
    assert by_id["on-failure"].stdout.strip() == "on-failure"
    assert result.ok is False
    assert result.summary == "## hello summary\n"
    assert result.env["LATER"] == "set-by-env-file"
    assert result.job_outputs == {"answer": "42"}


def test_pipefail_is_on(tmp_path: Path) -> None:
    wf = tmp_path / "w.yml"
    wf.write_text("on: push\njobs:\n  j:\n    steps:\n      - run: false | true\n")
    result = run_job(wf, "j", workdir=tmp_path, event={}, event_name="push")
    assert result.steps[0].returncode == 1
    assert not result.ok


def test_unsafe_expression_in_run_executes(tmp_path: Path) -> None:
    """The harness does NOT sanitize: this is what gives the hostile-event tests teeth."""
    sentinel = tmp_path / "sentinel"
    wf = tmp_path / "w.yml"
    wf.write_text(
        "on: pull_request\njobs:\n  j:\n    steps:\n"
        '      - run: echo "${{ github.event.pull_request.title }}"\n'
    )
    event = {"pull_request": {"title": f"$(touch {sentinel})"}}
    result = run_job(wf, "j", workdir=tmp_path, event=event, event_name="pull_request")
    assert result.ok
    assert sentinel.exists()


def test_job_if_false_skips_everything(tmp_path: Path) -> None:
    wf = tmp_path / "w.yml"
    wf.write_text(
        "on: pull_request\njobs:\n  j:\n    if: vars.ENABLED == 'true'\n    steps:\n"
        "      - run: touch ran\n"
    )
    result = run_job(wf, "j", workdir=tmp_path, event={}, event_name="pull_request")
    assert result.skipped
    assert result.steps == []
    assert not (tmp_path / "ran").exists()
    result = run_job(
        wf, "j", workdir=tmp_path, event={}, event_name="pull_request", vars={"ENABLED": "true"}
    )
    assert (tmp_path / "ran").exists()


def test_stub_raising_fails_the_step(tmp_path: Path) -> None:
    wf = tmp_path / "w.yml"
    wf.write_text(
        "on: push\njobs:\n  j:\n    steps:\n      - uses: actions/x@v1\n      - run: echo no\n"
    )

    def broken(ctx: StepContext) -> dict[str, str]:
        raise FileNotFoundError("artifact not found")

    result = run_job(
        wf, "j", workdir=tmp_path, event={}, event_name="push", stub_uses={"actions/x": broken}
    )
    assert result.steps[0].returncode == 1
    assert "artifact not found" in result.steps[0].stderr
    assert result.steps[1].skipped
    assert not result.ok


def test_github_env_variables_and_secrets(tmp_path: Path) -> None:
    wf = tmp_path / "w.yml"
    wf.write_text(
        "on: pull_request\njobs:\n  j:\n    steps:\n"
        "      - env:\n          TOKEN: ${{ secrets.GITHUB_TOKEN }}\n"
        "          REMOTE: ${{ secrets.REMOTE }}\n"
        '        run: echo "$GITHUB_EVENT_NAME $GITHUB_HEAD_REF ${TOKEN:+tok} [$REMOTE]"; '
        'cat "$GITHUB_EVENT_PATH"\n'
    )
    event = {"number": 1, "pull_request": {"head": {"ref": "feat", "sha": "a" * 40}}}
    result = run_job(wf, "j", workdir=tmp_path, event=event, event_name="pull_request")
    first, rest = result.steps[0].stdout.split("\n", 1)
    assert first == "pull_request feat tok []"
    assert json.loads(rest) == event


def test_missing_job_is_an_error(tmp_path: Path) -> None:
    wf = tmp_path / "w.yml"
    wf.write_text("on: push\njobs: {}\n")
    with pytest.raises(KeyError, match="no job"):
        run_job(wf, "j", workdir=tmp_path, event={}, event_name="push")


def test_cml_shim_records_argv_and_body(tmp_path: Path) -> None:
    record = tmp_path / "cml.jsonl"
    shim = cml_shim(tmp_path / "bin", record)
    (tmp_path / "report.md").write_text("# body")
    proc = subprocess.run(
        [shim, "comment", "update", "--watermark-title=x", "report.md"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "REPO_TOKEN": "secret"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "issuecomment" in proc.stdout
    [call] = read_record(record)
    assert call["argv"] == ["comment", "update", "--watermark-title=x", "report.md"]
    assert call["files"] == {"report.md": "# body"}
    assert call["env"]["REPO_TOKEN"] is True
    assert "secret" not in record.read_text()  # tokens are never stored


def test_gh_shim_answers_api_with_jq(tmp_path: Path) -> None:
    record = tmp_path / "gh.jsonl"
    shim = gh_shim(tmp_path / "bin", record, {"/repos/o/r/pulls/5": {"head": {"sha": "abc"}}})

    def gh(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([shim, *args], capture_output=True, text=True, check=False)

    assert gh("api", "repos/o/r/pulls/5", "--jq", ".head.sha").stdout == "abc\n"
    assert json.loads(gh("api", "/repos/o/r/pulls/5").stdout) == {"head": {"sha": "abc"}}
    missing = gh("api", "repos/o/r/pulls/6")
    assert missing.returncode == 1
    assert "404" in missing.stderr
    assert len(read_record(record)) == 3
