"""`productlens.arrays.array` builds the same Arrow arrays as `pyarrow.array` (every type
it offers, nulls, empties, non-ASCII text, days before 1970), and the modules the CLI,
the dashboard and the report start with import neither pandas nor scipy."""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import date
from typing import Any

import pyarrow as pa
import pytest

from productlens.arrays import array

CASES: list[tuple[pa.DataType, list[Any]]] = [
    (pa.int64(), [1, None, -3, 2**62]),
    (pa.int64(), []),
    (pa.int64(), [None, None]),
    (pa.float64(), [1.5, None, -0.0, 1e300, 0.1]),
    (pa.date32(), [date(2026, 3, 1), None, date(1969, 12, 31), date(1, 1, 1)]),
    (pa.string(), ["a", None, "", "héllo ✓", "x" * 1000]),
    (pa.string(), []),
    (pa.bool_(), [True, None, False, True, True, False, False, False, True]),
]


@pytest.mark.parametrize(("kind", "values"), CASES)
def test_the_same_array_as_pyarrow_builds(kind: pa.DataType, values: list[Any]) -> None:
    got = array(values, kind)
    want = pa.array(values, kind)
    assert got.type == kind
    assert got.null_count == want.null_count
    assert got.equals(want)
    assert got.to_pylist() == values


def test_nan_stays_a_value_and_none_a_null() -> None:
    got = array([math.nan, None], pa.float64())
    assert math.isnan(got[0].as_py())
    assert got.is_null().to_pylist() == [False, True]


def test_a_type_without_builder_is_refused() -> None:
    with pytest.raises(TypeError, match="no Arrow builder for timestamp"):
        array([None], pa.timestamp("us"))


def test_startup_imports_neither_pandas_nor_scipy() -> None:
    # pyarrow imports pandas on its first `pa.array`; scipy comes with the statistics.
    script = (
        "import sys\n"
        "import pyarrow as pa\n"
        "import productlens.cli, productlens.config, productlens.report\n"
        "import productlens.dashboard.app, productlens.dashboard.pages\n"
        "from productlens.arrays import array\n"
        "pa.table({'n': array([1, None], pa.int64()), 's': array(['a', None], pa.string())})\n"
        "print(sorted(m for m in ('pandas', 'scipy', 'matplotlib') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stderr
