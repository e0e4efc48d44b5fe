"""The one module that opens files. Every write is atomic: temp file + os.replace."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import InputError

if TYPE_CHECKING:  # imported where a table is read: stages without pandas start ~0.6 s sooner
    import pandas as pd
    import pyarrow as pa

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path beside `path`; move it into place only if the block succeeds.

    A killed or failing stage therefore never leaves a half-written file at the final path.
    """
    final = Path(path)
    with _naming(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600; give the final file the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o666 & ~umask)
    try:
        with _naming(final):
            yield tmp
            tmp.replace(final)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _naming(final: Path) -> Iterator[None]:
    """A write() that fails for lack of space names no file: name the output being written,
    so the CLI's one-line error says which (not the hidden temp file beside it)."""
    try:
        yield
    except OSError as exc:
        if exc.filename:  # already names a path (e.g. the directory that could not be made)
            raise
        raise OSError(exc.errno, exc.strerror or str(exc), str(final)) from exc


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def append_text(path: str | os.PathLike[str], text: str) -> None:
    """Add to a file another program owns and reads as it grows (a CI job summary): appended
    to, never replaced, so what others wrote stays."""
    with Path(path).open("a", encoding="utf-8") as handle:
        handle.write(text)


def _reject_non_finite(obj: Any, where: str = "$") -> None:
    """NaN/inf are never written silently: json.dumps would emit invalid JSON tokens."""
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"non-finite value {obj!r} at {where}")
    if isinstance(obj, dict):
        for key, value in obj.items():
            _reject_non_finite(value, f"{where}.{key}")
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            _reject_non_finite(value, f"{where}[{i}]")


def dumps_json(obj: Any) -> str:
    """Canonical JSON: sorted keys, fixed indent, trailing newline, finite numbers only."""
    _reject_non_finite(obj)
    return json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, dumps_json(obj))


def read_json(path: str | os.PathLike[str]) -> Any:
    try:
        with Path(path).open(encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError as exc:
        raise InputError(f"{path}: file not found") from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from exc


def is_url(source: str) -> bool:
    return urllib.parse.urlparse(source).scheme in {"http", "https"}


def _table_format(name: str) -> str:
    suffix = Path(urllib.parse.urlparse(name).path).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in {".parquet", ".pq"}:
        return "parquet"
    raise InputError(f"{name}: unsupported table format {suffix!r} (expected .csv or .parquet)")


def _existing_file(name: str) -> Path:
    """`name` as a Path to a non-empty local file, else an InputError saying which."""
    path = Path(name)
    if not path.is_file():
        raise InputError(f"{name}: file not found")
    if path.stat().st_size == 0:
        raise InputError(f"{name}: file is empty")
    return path


def download(url: str) -> bytes:
    """The bytes at an http(s) URL, whole: a caller that pins a source hashes what it parses."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - scheme checked
            payload: bytes = response.read()
    except (urllib.error.URLError, OSError) as exc:
        raise InputError(f"{url}: cannot download: {exc}") from exc
    if not payload:
        raise InputError(f"{url}: file is empty")
    return payload


def read_table(
    source: str | os.PathLike[str], columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """Read a CSV or Parquet table from a local path or an http(s) URL.

    With `columns`, only those are read (in that order): a stage reads what it uses, and a
    missing one is an InputError naming it.
    """
    name = os.fspath(source)
    _table_format(name)  # an unsupported suffix is refused before anything is downloaded
    if is_url(name):
        return read_table_bytes(name, download(name), columns)
    return _parse_table(_existing_file(name), name, columns)


def read_table_bytes(
    name: str, payload: bytes, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """A table from bytes already read (a download whose hash was checked); `name` gives the
    format (by suffix) and is the name errors give."""
    return _parse_table(BytesIO(payload), name, columns)


# Separators a CSV export commonly uses: a European spreadsheet writes ';'.
CSV_SEPARATORS = (",", ";", "\t", "|")
# Missing-value markers beyond pandas' own ('', 'NA', 'NaN', 'null', ...): UCI-style exports
# write '?'.
CSV_MISSING = ("?",)


def csv_dialect(head: str) -> dict[str, Any]:
    """read_csv options for a file whose first line is `head`: the separator that line uses most
    (',' on a tie or none), leading spaces after a separator dropped, '?' read as missing."""
    header = head.splitlines()[0] if head else ""
    counts = {sep: header.count(sep) for sep in CSV_SEPARATORS}
    best = max(CSV_SEPARATORS, key=lambda sep: (counts[sep], sep == ","))
    sep = best if counts[best] else ","
    return {"sep": sep, "skipinitialspace": True, "na_values": list(CSV_MISSING)}


def _head(local: Any, size: int = 1 << 16) -> str:
    """The first bytes of a path or a binary buffer (left at its start) as text."""
    if isinstance(local, BytesIO):
        data = local.getbuffer()[:size].tobytes()  # a view: no copy of the whole download
    else:
        with Path(local).open("rb") as handle:
            data = handle.read(size)
    return data.decode("utf-8", errors="replace").lstrip("\ufeff")


def _parse_table(local: Any, name: str, columns: Sequence[str] | None) -> pd.DataFrame:
    import pandas as pd

    fmt = _table_format(name)
    wanted = None if columns is None else set(columns)
    try:
        if fmt == "csv":
            usecols = None if wanted is None else wanted.__contains__
            frame: pd.DataFrame = pd.read_csv(local, usecols=usecols, **csv_dialect(_head(local)))
        else:
            frame = _read_parquet_columns(local, wanted)
    except pd.errors.EmptyDataError as exc:
        raise InputError(f"{name}: file is empty") from exc
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise InputError(f"{name}: cannot read as {fmt}: {exc}") from exc
    if columns is None:
        return frame
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{name}: lacks column(s) {', '.join(missing)}")
    return frame[list(columns)]


def _read_parquet_columns(local: Any, wanted: set[str] | None) -> pd.DataFrame:
    import pandas as pd
    import pyarrow.parquet as pq

    if wanted is None:
        return pd.read_parquet(local)
    present = [c for c in pq.read_schema(local).names if c in wanted]
    return pd.read_parquet(local, columns=present)


def write_table(path: str | os.PathLike[str], frame: pd.DataFrame) -> None:
    """Write CSV or Parquet atomically; Parquet without pandas metadata noise for stable bytes."""
    fmt = _table_format(os.fspath(path))
    with atomic_path(path) as tmp:
        if fmt == "csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False, engine="pyarrow", compression="zstd")


# Arrow tables: for stages that only move rows (features), without pandas' import and
# per-row object conversion. Parquet is read and written natively; CSV goes through pandas
# so it is parsed exactly as read_table parses it everywhere else.


def read_arrow(path: str | os.PathLike[str]) -> pa.Table:
    """A local CSV or Parquet file as an Arrow table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    name = os.fspath(path)
    if _table_format(name) == "csv":
        return pa.Table.from_pandas(read_table(name), preserve_index=False)
    file = _existing_file(name)
    try:
        # ParquetFile, not pq.read_table: the dataset API would import pandas (~0.6 s).
        with pq.ParquetFile(file) as parquet:
            return parquet.read()
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{name}: cannot read as parquet: {exc}") from exc


def write_arrow(path: str | os.PathLike[str], table: pa.Table) -> None:
    """Write an Arrow table atomically as CSV or Parquet (same format as write_table)."""
    import pyarrow.parquet as pq

    if _table_format(os.fspath(path)) == "csv":
        write_table(path, table.to_pandas())
        return
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
