"""The rules in force: reference rows and exam-matching rules, loaded and checked as a whole.

:func:`load_rules` reads the built-in defaults (``defaults.toml`` beside this module, unless
``checks.defaults = false``), every table file in ``checks.tables`` and the rows written in the
configuration itself, and refuses the lot with :class:`RulesError` if any row is wrong
(unknown quantity or unit, a unit that is not one of its quantity, an id used twice …).
The daemon calls it again on SIGHUP (:meth:`agent.checks.ChecksStage.reload`) and keeps the
previous rules when it raises.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional

from pydantic import BaseModel, ConfigDict, ValidationError

from agent.checks.tables import DRL_KINDS, ExamRule, LevelRow

if TYPE_CHECKING:
    from agent.config import ChecksConfig

DEFAULTS = Path(__file__).with_name("defaults.toml")


class RulesError(Exception):
    """The tables cannot be used; the message names the file, row and problem."""


class _TableChecks(BaseModel):
    model_config = ConfigDict(extra="forbid")
    level: list[LevelRow] = []
    exam: list[ExamRule] = []


class _TableFile(BaseModel):
    """A table file: only ``[[checks.level]]`` and ``[[checks.exam]]`` rows."""

    model_config = ConfigDict(extra="forbid")
    checks: _TableChecks = _TableChecks()


@dataclass(frozen=True)
class Rules:
    """Everything the checks need, immutable: swap the whole object to reload."""

    levels: tuple[LevelRow, ...]
    exams: tuple[ExamRule, ...]
    enabled: bool = True
    median_window: int = 20
    exam_drl_factor: Decimal = Decimal(1)
    adult_age: Decimal = Decimal(18)
    stats_age_bands: tuple[Decimal, ...] = (Decimal(1), Decimal(5), Decimal(10), Decimal(15))
    stats_min_n: int = 20
    sources: tuple[str, ...] = ()
    by_kind: dict[str, tuple[LevelRow, ...]] = field(init=False, repr=False, compare=False)
    # exam matches already made (study.match): a department's few protocol names recur in every report
    matched: dict[tuple, Any] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        index: dict[str, list[LevelRow]] = {}
        for row in self.levels:
            index.setdefault(row.kind, []).append(row)
        object.__setattr__(self, "by_kind", {k: tuple(v) for k, v in index.items()})

    def select(self, kinds: Iterable[str], *, modality: str, quantity: Optional[str] = None,
               exam: Optional[str] = None, region: Optional[str] = None, age: Optional[float] = None,
               weight: Optional[float] = None, phantom: Optional[str] = None,
               body_part: Optional[str] = None) -> list[LevelRow]:
        """The rows of ``kinds`` that apply here.

        Per kind and quantity: a configured row replaces the built-in ones wherever it applies,
        and among the rest the most specific place wins (this exam > its region > any exam).
        Rows of equal standing all apply (two loaded tables for one exam give two checks).
        """
        groups: dict[tuple[str, str], list[tuple[int, LevelRow]]] = {}
        for row in (r for kind in kinds for r in self.by_kind.get(kind, ())):
            if quantity is not None and row.quantity != quantity:
                continue
            if body_part is not None and row.body_part != body_part:
                continue
            place = row.applies_to_place(exam, region)
            if not place or not row.applies_to_modality(modality) or not row.applies_to_phantom(phantom):
                continue
            if not row.applies_to_patient(age, weight, self.adult_age):
                continue
            groups.setdefault((row.kind, row.quantity), []).append((place, row))
        out: list[LevelRow] = []
        for found in groups.values():
            configured = [(p, r) for p, r in found if not r.default]
            found = configured or found
            best = max(p for p, _ in found)
            out.extend(r for p, r in found if p == best)
        return out

    def drl_rows(self) -> list[LevelRow]:
        return [r for kind in DRL_KINDS for r in self.by_kind.get(kind, ())]


def load_rules(checks: "ChecksConfig") -> Rules:
    """Rules from the ``[checks]`` configuration; raises :class:`RulesError` naming every problem."""
    levels: list[LevelRow] = []
    exams: list[ExamRule] = []
    sources: list[str] = []
    problems: list[str] = []
    origin: dict[str, str] = {}

    def add(rows: list[LevelRow], rules: list[ExamRule], where: str, default: bool = False) -> None:
        for row in rows:
            if row.id in origin:
                problems.append(f"{where}: rule id {row.id!r} is already used in {origin[row.id]}")
                continue
            origin[row.id] = where
            row._default = default
            levels.append(row)
        exams.extend(rules)
        sources.append(where)

    # Configured exam rules come first (first match wins); the built-in ones last.
    add(list(checks.level), list(checks.exam), "configuration")
    for path in checks.tables:
        table = _read_table(Path(path), problems)
        if table is not None:
            add(table.level, table.exam, str(path))
    if checks.defaults:
        table = _read_table(DEFAULTS, problems)
        if table is not None:
            add(table.level, table.exam, "built-in defaults", default=True)
    if problems:
        raise RulesError("\n".join(problems))
    return Rules(
        levels=tuple(levels), exams=tuple(exams), enabled=checks.enabled, median_window=checks.median_window,
        exam_drl_factor=checks.exam_drl_factor, adult_age=checks.adult_age_years,
        stats_age_bands=tuple(sorted(b for b in checks.stats_age_bands_years if b < checks.adult_age_years)),
        stats_min_n=checks.stats_min_n, sources=tuple(sources),
    )


def _read_table(path: Path, problems: list[str]) -> Optional[_TableChecks]:
    """One table file, or None with its problems appended (each naming the row's id where it has one)."""
    from agent.config import ConfigError, read_text

    try:
        data = tomllib.loads(read_text(path))  # UTF-8, a byte order mark allowed, as the configuration
    except OSError as exc:
        problems.append(f"{path}: cannot read table: {exc.strerror or exc}")
        return None
    except ConfigError as exc:
        problems.extend(f"{path}: {problem}" for problem in exc.problems)
        return None
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{path}: TOML syntax: {exc}")
        return None
    try:
        return _TableFile.model_validate(data).checks
    except ValidationError as exc:
        for err in exc.errors():
            problems.append(f"{path}: {_where(data, err['loc'])}: {err['msg']}")
        return None


def _where(data: dict[str, Any], loc: tuple[Any, ...]) -> str:
    """``checks.level[3] (id 'x').unit`` for an error location."""
    out = ""
    node: Any = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            try:
                node = node[part]
            except (IndexError, KeyError, TypeError):
                node = None
            if isinstance(node, dict) and "id" in node:
                out += f" (id {node['id']!r})"
        else:
            out += ("." if out else "") + str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out
