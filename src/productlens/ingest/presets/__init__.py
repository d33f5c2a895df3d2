"""Presets: shipped mappings for the exports of other analytics tools, as data.

Each preset is a TOML file beside this module (`segment.toml`, `ga4.toml`, ...) written
as a fragment of `productlens.toml` (`[ingest.tables.events]` with the usual keys), so
it can be read, copied and changed. Its first comment line says what it loads; the
comments under it name the vendor's documentation it follows.

A project applies one with `productlens ingest PATH --preset NAME` or `[ingest] preset`.
The preset comes first; the project's own `[ingest.tables.TABLE]` keys override it key by
key: a scalar key (`where`, `timezone`, `timestamp_format`, `delimiter`) replaces the
preset's, the tables (`columns`, `expressions`, `formats`) are merged entry by entry, a
target the project renames a column onto (`columns` or `--map`) drops the preset's
expression for it, and `optional_columns` adds to the preset's.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from functools import cache
from importlib import resources

from pydantic import ValidationError

from productlens.config import IngestConfig, TableIngestConfig, describe_validation_error
from productlens.errors import IngestError

SUFFIX = ".toml"
MERGED_TABLES = ("columns", "expressions", "formats")


def names() -> tuple[str, ...]:
    """The shipped presets, by name."""
    files = resources.files(__name__).iterdir()
    return tuple(sorted(f.name.removesuffix(SUFFIX) for f in files if f.name.endswith(SUFFIX)))


def text(name: str) -> str:
    """A preset's file as it is shipped (comments included), to read or copy."""
    if name not in names():
        raise IngestError(f"unknown preset {name!r}; the presets are {', '.join(names())}")
    return resources.files(__name__).joinpath(name + SUFFIX).read_text(encoding="utf-8")


def summary(name: str) -> str:
    """A preset's first comment line: what it loads."""
    lines = text(name).splitlines()
    return lines[0].removeprefix("#").strip() if lines else ""


@cache
def load(name: str) -> dict[str, TableIngestConfig]:
    """A preset's table settings, validated like the project file's."""
    source = text(name)
    try:
        data = tomllib.loads(source)
        tables = data.pop("ingest", {}).pop("tables", None)
        if data or not isinstance(tables, dict) or not tables:
            raise IngestError(f"preset {name!r}: holds [ingest.tables.TABLE] sections only")
        return {t: TableIngestConfig.model_validate(v) for t, v in tables.items()}
    except tomllib.TOMLDecodeError as exc:
        raise IngestError(f"preset {name!r}: not valid TOML: {exc}") from None
    except ValidationError as exc:
        raise IngestError(f"preset {name!r}: {describe_validation_error(exc)}") from None


def default_table(name: str) -> str | None:
    """The table a preset's files load into when their names do not say (a preset that
    maps one table: exports are named by the vendor, not after a raw table)."""
    tables = load(name)
    return next(iter(tables)) if len(tables) == 1 else None


def merge(
    preset: TableIngestConfig, own: TableIngestConfig, renamed: frozenset[str] = frozenset()
) -> TableIngestConfig:
    """The preset's settings overridden by the keys the project set (see the module
    docstring); `renamed` are the contract columns the project maps a source column onto."""
    update: dict[str, object] = {}
    for key in own.model_fields_set:
        value = getattr(own, key)
        if key in MERGED_TABLES:
            update[key] = {**getattr(preset, key), **value}
        elif key == "optional_columns":
            update[key] = [*preset.optional_columns, *value]
        else:
            update[key] = value
    own_expressions = own.expressions if "expressions" in own.model_fields_set else {}
    update["expressions"] = {
        target: sql
        for target, sql in {**preset.expressions, **own_expressions}.items()
        if target not in renamed or target in own_expressions
    }
    return TableIngestConfig.model_validate({**preset.model_dump(), **update})


def apply(
    config: IngestConfig, name: str | None = None, extra: Mapping[str, str] | None = None
) -> IngestConfig:
    """`config` with a preset (`name`, else the configured one) applied under its own
    table settings; `extra` are the `--map` renames of this run. No preset: `config`."""
    name = name or config.preset
    if not name:
        return config
    tables = dict(config.tables)
    for table, settings in load(name).items():
        own = config.tables.get(table, TableIngestConfig())
        renamed = frozenset(own.columns.values()) | frozenset((extra or {}).values())
        tables[table] = merge(settings, own, renamed)
    return config.model_copy(update={"tables": tables, "preset": name})
