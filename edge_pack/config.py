"""edge-pack.toml: the project's written-down expectations. Unknown keys and wrong types are errors that
name the key and its line, because a typo in an SLA silently loosens a release gate."""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError
from .sla import SLA_KEYS, Sla


@dataclass
class Config:
    path: Path | None = None
    sla: Sla = field(default_factory=Sla)
    target_sla: dict[str, Sla] = field(default_factory=dict)

    def sla_for(self, target: str) -> Sla:
        return self.target_sla.get(target, self.sla)


def _line(text: str, key: str) -> int | None:
    for number, line in enumerate(text.splitlines(), 1):
        if re.match(rf"\s*(\[+\s*)?[\w.\"]*\b{re.escape(key)}\b", line):
            return number
    return None


def load_config(path: Path | None, known_targets: tuple[str, ...]) -> Config:
    if path is None:
        return Config()
    path = Path(path)
    if not path.is_file():
        raise UserError(f"SLA file {path} does not exist; write an edge-pack.toml with an [sla] table")
    text = path.read_text(errors="replace")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: {exc}; fix the TOML syntax") from None

    def fail(key: str, problem: str):
        where = _line(text, key.split(".")[-1])
        raise UserError(f"{path}{f':{where}' if where else ''}: {key} {problem}")

    for key in data:
        if key != "sla":
            fail(key, "is not a known key; edge-pack.toml takes [sla] and [sla.<target>]")
    table = data.get("sla", {})
    if not isinstance(table, dict):
        fail("sla", "must be a table: [sla]")
    base = _sla_values(table, "sla", known_targets, fail)
    sla = Sla().override(base)
    per_target = {}
    for name, sub in table.items():
        if name in known_targets:
            if not isinstance(sub, dict):
                fail(f"sla.{name}", "must be a table: [sla." + name + "]")
            per_target[name] = sla.override(_sla_values(sub, f"sla.{name}", (), fail))
    return Config(path=path, sla=sla, target_sla=per_target)


def _sla_values(table: dict, prefix: str, targets: tuple[str, ...], fail) -> dict:
    values = {}
    for key, value in table.items():
        if key in targets:
            continue
        if key not in SLA_KEYS:
            hint = f"targets are {', '.join(targets)}; " if targets else ""
            fail(f"{prefix}.{key}", f"is not a known key ({hint}keys are {', '.join(SLA_KEYS)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            fail(f"{prefix}.{key}", f"must be a non-negative number, not {value!r}")
        if key == "min_accuracy_ratio" and value > 1.5:
            fail(f"{prefix}.{key}", f"is a share of the baseline (e.g. 0.98), not {value!r}")
        values[key] = float(value)
    return values
