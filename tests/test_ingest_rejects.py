"""Files that cannot be read at all: `productlens ingest` stays all or nothing and names
the file and what is wrong in one line; a reader's temporary copies left by a killed
process are removed by the next ingest. (`productlens run` rejects such files instead and
loads the others: tests/test_run_hard.py.)"""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from productlens.ingest import ingest_paths
from productlens.ingest.processor import LakeProcessor
from productlens.ingest.readers import COPIES_PREFIX
from tests.conftest import open_project_lake

REPO = Path(__file__).resolve().parents[1]
USERS_HEADER = "user_id,signup_ts,country,device,acquisition_channel,campaign_id,segment\n"
GOOD_USERS = USERS_HEADER + "u1,2026-01-05 10:00:00,DE,web,organic,,new\n"


def _truncated_parquet() -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"user_id": ["u2"], "country": ["FR"]}), sink)
    data = sink.getvalue().to_pybytes()
    return data[: len(data) // 2]  # the footer is cut off


def corrupt_page_parquet() -> bytes:
    """A users Parquet file whose footer reads but whose first data pages do not (bytes
    of its compressed pages overwritten): found only when its rows are read."""
    n = 2000
    users = pa.table(
        {
            "user_id": [f"u{i}" for i in range(n)],
            "signup_ts": pa.array([1_767_600_000_000_000] * n, pa.timestamp("us")),
            **{c: ["x"] * n for c in ("country", "device", "acquisition_channel", "segment")},
            "campaign_id": pa.array([None] * n, pa.string()),
        }
    )
    sink = pa.BufferOutputStream()
    pq.write_table(users, sink, compression="snappy", use_dictionary=False)
    data = bytearray(sink.getvalue().to_pybytes())
    data[64:1024] = b"\xab" * (1024 - 64)
    pq.read_metadata(pa.BufferReader(bytes(data)))  # the footer is whole...
    with pytest.raises(OSError, match=r"[Cc]orrupt"):  # ...the rows are not (pyarrow agrees)
        pq.read_table(pa.BufferReader(bytes(data)))
    return bytes(data)


# (file name in users/, its bytes, what the one line says): one row per kind of bad file.
BAD_FILES = [
    pytest.param("zero.parquet", b"", "Parquet file size is 0 bytes", id="zero-bytes"),
    pytest.param("cut.parquet", _truncated_parquet(), "magic bytes not found", id="truncated"),
    pytest.param("text.parquet", b"user_id\nu9\n", "magic bytes not found", id="not-parquet"),
    pytest.param(
        "latin1.csv",
        (USERS_HEADER + "u3,2026-01-05 10:00:00,Perú,web,organic,,new\n").encode("latin-1"),
        "cannot read the file as utf-8: it holds bytes that are no text in that encoding",
        id="wrong-encoding",
    ),
    pytest.param("empty.csv", b"", "the file is empty", id="empty-csv"),
    pytest.param("blank.csv", b"\n\n", "the file is empty", id="blank-csv"),
    pytest.param("array.jsonl", b'[{"user_id": "u4"}]\n', "not JSON Lines", id="not-json-lines"),
    pytest.param("page.parquet", corrupt_page_parquet(), "Failed to read file", id="corrupt-page"),
]


@pytest.mark.parametrize(("name", "data", "said"), BAD_FILES)
def test_ingest_stops_at_an_unreadable_file_naming_it_in_one_line(
    project_dir: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    data: bytes,
    said: str,
) -> None:
    from productlens.cli import main

    folder = project_dir / "in" / "users"
    folder.mkdir(parents=True)
    (folder / "good.csv").write_text(GOOD_USERS)
    bad = folder / name
    bad.write_bytes(data)
    code = main(["--project", str(project_dir), "ingest", str(project_dir / "in")])
    _, err = capsys.readouterr()
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error [ingest]: ")
    assert said in lines[0]
    assert f"file={bad}" in lines[0]
    lake = open_project_lake(project_dir)
    try:  # all or nothing: the good file was not loaded either
        assert lake.fetch_all("SELECT count(*) FROM ops.ingested_files") == [(0,)]
        assert lake.fetch_all("SELECT count(*) FROM ops.raw_files") == [(0,)]
    finally:
        lake.close()


# A process that makes a reader's copy folder, writes into it and is killed (`kill -9`):
# the folder stays behind, as it would after a real kill mid-read.
KILLED_READER = """
import os, signal, sys
from productlens.ingest.readers import copies_dir
with copies_dir() as folder:
    (folder / "0.txt").write_text("half a copy")
    print(folder, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_copies_a_killed_reader_left_are_swept_by_the_next_ingest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lake: LakeProcessor
) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_READER],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(temp)},
        timeout=120,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    left = Path(killed.stdout.strip())
    assert left.parent == temp
    assert (left / "0.txt").exists()
    live = temp / f"{COPIES_PREFIX}{os.getpid()}-live"  # this process's own: alive
    live.mkdir()
    others = [temp / "productlens-12345678", temp / f"{COPIES_PREFIX}x-1"]  # not ours
    for other in others:
        other.mkdir()

    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    users = tmp_path / "users.csv.gz"  # compressed: read through a copy of its own
    users.write_bytes(gzip.compress(GOOD_USERS.encode()))
    result = ingest_paths(lake, [users])
    assert result.total_rows == 1
    assert not left.exists()
    assert live.exists()
    assert all(other.exists() for other in others)
    assert sorted(p.name for p in temp.iterdir()) == sorted(p.name for p in [live, *others])
