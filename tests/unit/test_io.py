"""pipeline/io.py: atomic writes, tables as pandas or Arrow, column-selective reads."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from pipeline import io
from pipeline.errors import InputError
from tests.conftest import git, make_template_repo, run

FRAME = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", None], "c": [0.5, 1.5, 2.5]})


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_tables_round_trip_and_read_selected_columns(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"t{suffix}"
    io.write_table(path, FRAME)
    pd.testing.assert_frame_equal(io.read_table(path), FRAME)
    subset = io.read_table(path, columns=["c", "a"])
    assert list(subset.columns) == ["c", "a"]  # the order asked for
    pd.testing.assert_frame_equal(subset, FRAME[["c", "a"]])


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_reading_a_missing_column_names_it(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"t{suffix}"
    io.write_table(path, FRAME)
    with pytest.raises(InputError, match=rf"t\{suffix}: lacks column\(s\) d, e"):
        io.read_table(path, columns=["a", "d", "e"])


def test_read_table_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.csv: file not found"):
        io.read_table(tmp_path / "nope.csv")
    (tmp_path / "empty.parquet").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.parquet: file is empty"):
        io.read_table(tmp_path / "empty.parquet")
    with pytest.raises(InputError, match=r"unsupported table format '\.xlsx'"):
        io.read_table(tmp_path / "t.xlsx")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_arrow_tables_round_trip_like_pandas_tables(tmp_path: Path, suffix: str) -> None:
    source = tmp_path / f"in{suffix}"
    io.write_table(source, FRAME)
    table = io.read_arrow(source)
    assert isinstance(table, pa.Table)
    assert table.num_rows == 3
    io.write_arrow(tmp_path / f"out{suffix}", table)
    pd.testing.assert_frame_equal(io.read_table(tmp_path / f"out{suffix}"), FRAME)


def test_read_arrow_refuses_missing_empty_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        io.read_arrow(tmp_path / "nope.parquet")
    (tmp_path / "empty.parquet").write_bytes(b"")
    with pytest.raises(InputError, match="file is empty"):
        io.read_arrow(tmp_path / "empty.parquet")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 but not really")
    with pytest.raises(InputError, match=r"bad\.parquet: cannot read as parquet"):
        io.read_arrow(tmp_path / "bad.parquet")


def test_a_failed_write_leaves_neither_the_file_nor_a_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "result.json"

    def killed_mid_write() -> None:
        with io.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed mid-write"):
        killed_mid_write()
    assert list((tmp_path / "out").iterdir()) == []


def test_json_is_canonical_and_rejects_non_finite_numbers(tmp_path: Path) -> None:
    assert io.dumps_json({"b": 1, "a": [1.5]}) == '{\n  "a": [\n    1.5\n  ],\n  "b": 1\n}\n'
    with pytest.raises(ValueError, match=r"non-finite value nan at \$\.a\[0\]"):
        io.write_json(tmp_path / "x.json", {"a": [float("nan")]})
    assert not (tmp_path / "x.json").exists()


def test_a_killed_writes_temp_file_stays_out_of_git_and_dvc(tmp_path: Path) -> None:
    """A process killed mid-write leaves its temp file beside the target: git and DVC ignore it
    (.gitignore and .dvcignore), so it never shows up in a commit."""
    repo = make_template_repo(tmp_path / "repo")
    killed = (
        "import os\n"
        "from pipeline.io import atomic_path\n"
        "handle = atomic_path('models/metrics.json')\n"
        "handle.__enter__().write_text('half a file')\n"
        "os._exit(9)\n"  # no cleanup, as under SIGKILL
    )
    proc = run([sys.executable, "-c", killed], repo, check=False)
    assert proc.returncode == 9
    [temp] = (repo / "models").glob(".metrics.json.*.tmp")
    assert temp.read_text() == "half a file"
    assert not (repo / "models" / "metrics.json").exists()
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert run(["dvc", "check-ignore", str(temp.relative_to(repo))], repo).returncode == 0


@pytest.mark.parametrize(
    ("header", "sep"),
    [
        ("a,b,c", ","),
        ("a;b;c", ";"),
        ("a\tb\tc", "\t"),
        ("a|b|c", "|"),
        ("only_one_column", ","),  # nothing to choose from: the default
        ("a;b,c", ","),  # a tie: the default
        ("id;name, title;amount", ";"),  # the most used wins: a comma inside a header name
    ],
)
def test_csv_separator_is_the_one_the_header_uses_most(header: str, sep: str) -> None:
    assert io.csv_dialect(header + "\n1,2,3\n")["sep"] == sep


def test_csv_dialect_drops_leading_spaces_and_reads_question_marks_as_missing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "adult.csv"
    path.write_bytes("\ufeffage; workclass; income\n39; State-gov; 77516\n50; ?; ?\n".encode())
    frame = io.read_table(path)
    assert list(frame.columns) == ["age", "workclass", "income"]
    assert frame["workclass"].tolist()[0] == "State-gov"
    assert frame.iloc[1].isna().tolist() == [False, True, True]
    assert frame["income"].dtype == "float64"
