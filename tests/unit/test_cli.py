"""pipeline.cli: how a stage is imported in its own process and in a caller's process."""

from __future__ import annotations

import gc
import resource
import subprocess
import sys
from collections.abc import Callable
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


def _can_mount_tmpfs() -> bool:
    """A private mount namespace (root, or unprivileged user namespaces) to fake a small disk."""
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=8k tmpfs /mnt"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def _stage_on_small_disk(workdir: Path, mount_options: str) -> subprocess.CompletedProcess[str]:
    """`python -m pipeline ingest` with data/ on its own tmpfs, in a private mount namespace."""
    data = workdir / "data"
    data.mkdir()
    script = f'mount -t tmpfs -o {mount_options} tmpfs "$1" && exec "$2" -m pipeline ingest'
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, "sh", str(data), sys.executable],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
    )


def _one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


needs_tmpfs = pytest.mark.skipif(
    not _can_mount_tmpfs(), reason="cannot mount a tmpfs in a private namespace here"
)


@needs_tmpfs
def test_disk_full_is_one_line_naming_the_output_and_leaves_no_file(workdir: Path) -> None:
    proc = _stage_on_small_disk(workdir, "size=16k")
    line = _one_line_error(proc)
    assert line.startswith("error: data/raw/dataset.parquet: ")
    assert line.endswith("No space left on device (ENOSPC) (run with -v for details)")
    # the tmpfs is gone with the namespace: nothing was written through to the real directory
    assert list((workdir / "data").iterdir()) == []


@needs_tmpfs
def test_read_only_file_system_is_one_line_naming_the_directory(workdir: Path) -> None:
    proc = _stage_on_small_disk(workdir, "ro")
    line = _one_line_error(proc)
    assert line == "error: data/raw: Read-only file system (EROFS) (run with -v for details)"


def _with_file_size_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:  # in the child: writes past `limit` bytes fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_file_size_limit_is_one_line_and_verbose_shows_the_traceback(workdir: Path) -> None:
    # Runs everywhere (no namespace needed): the kernel refuses the write as it would a full disk.
    def stage(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pipeline", *flags, "ingest"],
            cwd=workdir,
            capture_output=True,
            text=True,
            check=False,
            preexec_fn=_with_file_size_limit(4096),
        )

    line = _one_line_error(stage())
    assert line.startswith("error: data/raw/dataset.parquet: ")
    assert "(EFBIG)" in line
    assert list((workdir / "data" / "raw").iterdir()) == []  # the temp file is removed too
    verbose = stage("-v")
    assert verbose.returncode != 0
    assert "Traceback" in verbose.stderr
