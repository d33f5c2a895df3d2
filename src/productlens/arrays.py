"""Arrow arrays from a few Python values, without importing pandas.

`pyarrow.array` (and `pa.table`, `pa.Table.from_pylist` over Python lists) asks pyarrow's
pandas shim whether the input is a pandas object, and the shim imports pandas to answer:
half a second of CPU, seconds on a busy machine, paid by the first dashboard page or
report section that builds a table. `array` builds the same array from its buffers
(NumPy), for the types the report and the dashboard build by hand. Inputs are small
(one value per day, step or category); engine results arrive as Arrow already.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

import numpy as np
import pyarrow as pa

EPOCH = date(1970, 1, 1)


def _validity(values: Sequence[Any]) -> tuple[pa.Buffer | None, int]:
    """The validity bitmap (None when every value is present) and the null count."""
    present = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
    nulls = len(values) - int(present.sum())
    if not nulls:
        return None, 0
    return pa.py_buffer(np.packbits(present, bitorder="little")), nulls


def _fixed(dtype: type[np.generic], convert: Callable[[Any], Any]) -> Callable[..., list[Any]]:
    """Buffers of a fixed-width type: the values as `dtype` (0 where null)."""

    def buffers(values: Sequence[Any]) -> list[Any]:
        data = np.array([0 if v is None else convert(v) for v in values], dtype=dtype)
        return [pa.py_buffer(data)]

    return buffers


def _days(value: date) -> int:
    return (value - EPOCH).days


def _bits(values: Sequence[Any]) -> list[Any]:
    data = np.array([bool(v) for v in values], dtype=bool)
    return [pa.py_buffer(np.packbits(data, bitorder="little"))]


def _utf8(values: Sequence[Any]) -> list[Any]:
    encoded = [b"" if v is None else str(v).encode("utf-8") for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return [pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]


# The value buffers (after the validity bitmap) per type.
BUFFERS: dict[pa.DataType, Callable[[Sequence[Any]], list[Any]]] = {
    pa.int64(): _fixed(np.int64, int),
    pa.float64(): _fixed(np.float64, float),
    pa.date32(): _fixed(np.int32, _days),
    pa.bool_(): _bits,
    pa.string(): _utf8,
}


def array(values: Sequence[Any], kind: pa.DataType) -> pa.Array:
    """`pa.array(values, kind)` for int64, float64, date32, bool and string, None as null."""
    build = BUFFERS.get(kind)
    if build is None:
        raise TypeError(f"no Arrow builder for {kind}: use one of {', '.join(map(str, BUFFERS))}")
    validity, nulls = _validity(values)
    out = pa.Array.from_buffers(kind, len(values), [validity, *build(values)], null_count=nulls)
    out.validate(full=True)
    return out
