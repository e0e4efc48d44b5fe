"""pipeline.cli: how a stage is imported in its own process and in a caller's process."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import import_stage, main


def test_stage_process_freezes_its_imports_and_keeps_the_gc_on(workdir: Path) -> None:
    # What `python -m pipeline ingest` does, with the GC state printed after the stage ran.
    code = (
        "import gc, sys; from pipeline.cli import entry; sys.argv = ['ml-pipeline', 'ingest']; "
        "code = entry(); print(code, gc.isenabled(), gc.get_freeze_count())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=True,
    )
    exit_code, enabled, frozen = out.stdout.split()
    assert (exit_code, enabled) == ("0", "True")
    # pandas and numpy alone leave tens of thousands of objects behind their import.
    assert int(frozen) > 20_000
    assert (workdir / "data/raw/dataset.parquet").is_file()


def test_stage_in_a_callers_process_freezes_nothing(workdir: Path) -> None:
    before = gc.get_freeze_count()
    assert main(["ingest"]) == 0
    assert gc.isenabled()
    assert gc.get_freeze_count() == before
    assert (workdir / "data/raw/dataset.parquet").is_file()


def test_failed_stage_import_turns_the_gc_back_on_and_freezes_nothing() -> None:
    before = gc.get_freeze_count()
    with pytest.raises(ModuleNotFoundError, match=r"pipeline\.no_such_stage"):
        import_stage("no_such_stage", own_process=True)
    assert gc.isenabled()
    assert gc.get_freeze_count() == before
