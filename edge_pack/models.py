"""The job's models: several sources in one edge-pack.toml (`[[models]] name = ..., source = ...`, a top-level
`baseline = "name"` whose fp32 accuracy every quality ratio is taken against) and the `[cascade]` that routes
between two of them — read and checked here, with the line of the first wrong key.

A job of several models builds one ordinary bundle per model inside its folder (`dist/<name>/`, each with
its own manifest, verifiable and benchable on its own) and keeps the job's manifest, results and reports at
the top: edge_pack/lineup.py builds and measures it."""
from __future__ import annotations

import re
from dataclasses import dataclass

MODEL_KEYS = ("name", "source")
SERVICE_KEYS = ("name", "accuracy_from", "cost_per_request", "latency_ms")
CASCADE_KEYS = ("first", "fallback")
SOURCE = "source"  # a cascade stage: the fp32 source (in torch) rather than a built artifact
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a folder name and the left of "name:precision"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: str


@dataclass(frozen=True)
class StageRef:
    """`model:precision`, or a precision alone in a job of one source; precision "source" (or "fp32" when no
    artifact of that name was built) is the model's fp32 source."""
    model: str | None
    precision: str

    def __str__(self) -> str:
        return f"{self.model}:{self.precision}" if self.model else self.precision

    @property
    def is_source(self) -> bool:
        return self.precision == SOURCE


@dataclass(frozen=True)
class Service:
    """An external fallback stated in the job: answers like `accuracy_from`, at a stated price and latency."""
    name: str
    accuracy_from: StageRef
    cost_per_request: float
    latency_ms: float

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class CascadeSpec:
    first: StageRef
    fallback: StageRef | Service


def key_of(model: str | None, precision: str) -> str:
    """A candidate's name across models: 'large:q4_k_m' (the precision alone in a job of one source)."""
    return f"{model}:{precision}" if model else precision


class ModelReader:
    """Reads `baseline`, `[[models]]` and `[cascade]` of one edge-pack.toml; `fail(key, problem)` raises
    the reader's one-line error with the key's line."""

    def __init__(self, fail, source_value):
        self.fail, self.source_value = fail, source_value

    def models(self, data: dict) -> tuple[ModelSpec, ...]:
        value = data.get("models")
        if value is None:
            return ()
        if "source" in data:
            self.fail("source", "and [[models]] are both given; a job has one source, or several [[models]] "
                                "(each with name and source): remove one")
        if not isinstance(value, list) or not value or not all(isinstance(item, dict) for item in value):
            self.fail("models", "must be an array of tables: [[models]] with name = \"...\" and source = \"...\"")
        found: dict[str, ModelSpec] = {}
        for index, item in enumerate(value):
            where = f"models.{index}"
            for key in item:
                if key not in MODEL_KEYS:
                    self.fail(f"{where}.{key}", f"is not a key of [[models]] (keys are {', '.join(MODEL_KEYS)})")
            for key in MODEL_KEYS:
                if key not in item:
                    self.fail(where, f"(model {index + 1}) has no {key}; each [[models]] needs name and source")
            name = item["name"]
            if not isinstance(name, str) or not NAME.fullmatch(name):
                self.fail(f"{where}.name", f"must be a name of letters, digits, '_', '.' or '-' (it names a folder "
                                           f"and the left of model:precision), not {name!r}")
            if name in found:
                self.fail(f"{where}.name", f"{name!r} is the name of an earlier model too; give each model its own "
                                           "name")
            source = item["source"]
            if not isinstance(source, str) or not source:
                self.fail(f"{where}.source", f"must be a non-empty string, not {source!r}")
            found[name] = ModelSpec(name, self.source_value(source))
        return tuple(found.values())

    def baseline(self, data: dict, models: tuple[ModelSpec, ...]) -> str | None:
        names = [m.name for m in models]
        if "baseline" not in data:
            if len(models) > 1:
                self.fail("models", f"has {len(models)} models ({', '.join(names)}) but no top-level baseline; name "
                                    f"the one whose fp32 accuracy the ratio is taken against, e.g. baseline = "
                                    f"\"{names[-1]}\"")
            return names[0] if names else None
        value = data["baseline"]
        if not models:
            self.fail("baseline", "names a model, but the job has no [[models]]; add them, or remove baseline")
        if value not in names:
            self.fail("baseline", f"names {value!r}, which no [[models]] has; models are {', '.join(names)}")
        return value

    def cascade(self, data: dict, models: tuple[ModelSpec, ...], precisions) -> CascadeSpec | None:
        if "cascade" not in data:
            return None
        table = data["cascade"]
        if not isinstance(table, dict):
            self.fail("cascade", "must be a table: [cascade] with first and fallback")
        for key in table:
            if key not in CASCADE_KEYS:
                self.fail(f"cascade.{key}", f"is not a key of [cascade] (keys are {', '.join(CASCADE_KEYS)})")
        for key in CASCADE_KEYS:
            if key not in table:
                self.fail("cascade", f"has no {key}; [cascade] needs first = \"model:precision\" and fallback "
                                     "(\"model:precision\", \"source\" or a service table)")
        first = self.stage("cascade.first", table["first"], models, precisions)
        if first.is_source:
            self.fail("cascade.first", "must be a built candidate (model:precision), not the fp32 source")
        fallback = table["fallback"]
        if isinstance(fallback, dict):
            return CascadeSpec(first, self.service(fallback, models, precisions))
        return CascadeSpec(first, self.stage("cascade.fallback", fallback, models, precisions))

    def stage(self, key: str, value, models: tuple[ModelSpec, ...], precisions) -> StageRef:
        names = [m.name for m in models]
        if not isinstance(value, str) or not value:
            self.fail(key, f"must be \"model:precision\" (or \"source\"), not {value!r}")
        model, _, precision = value.rpartition(":")
        if not model:
            if value == SOURCE:  # the baseline model's fp32 source (the job's one source)
                return StageRef(None, SOURCE)
            if len(models) > 1:
                self.fail(key, f"{value!r} names no model; write model:precision, e.g. \"{names[0]}:{value}\"")
            model = names[0] if names else None
        elif model not in names:
            known = f"models are {', '.join(names)}" if names else "the job has no [[models]]"
            self.fail(key, f"names model {model!r}, which no [[models]] has; {known}")
        if not precision:
            self.fail(key, f"{value!r} has no precision; write model:precision")
        listed = _listed_precisions(precisions)
        if precision not in (SOURCE, "fp32") and listed is not None and precision not in listed:
            self.fail(key, f"names precision {precision!r}, which the job does not build (precisions: "
                           f"{', '.join(sorted(listed))})")
        return StageRef(model, precision)

    def service(self, table: dict, models: tuple[ModelSpec, ...], precisions) -> Service:
        key = "cascade.fallback"
        for name in table:
            if name not in SERVICE_KEYS:
                self.fail(f"{key}.{name}", f"is not a key of a fallback service (keys are {', '.join(SERVICE_KEYS)})")
        missing = [name for name in SERVICE_KEYS if name not in table]
        if missing:
            self.fail(key, f"is a service without {', '.join(missing)}; a service fallback needs "
                           "{ name, accuracy_from = \"model:precision\", cost_per_request, latency_ms }")
        if not isinstance(table["name"], str) or not table["name"]:
            self.fail(f"{key}.name", f"must be a non-empty string, not {table['name']!r}")
        numbers = {}
        for name, low_ok in (("cost_per_request", True), ("latency_ms", False)):
            value = table[name]
            if (isinstance(value, bool) or not isinstance(value, (int, float)) or value != value
                    or value in (float("inf"), float("-inf")) or value < 0 or (value == 0 and not low_ok)):
                self.fail(f"{key}.{name}", f"must be a finite number {'of at least 0' if low_ok else 'above 0'}, "
                                           f"not {value!r}")
            numbers[name] = float(value)
        return Service(table["name"], self.stage(f"{key}.accuracy_from", table["accuracy_from"], models, precisions),
                       **numbers)


def _listed_precisions(precisions) -> set[str] | None:
    """Every precision the job's `precisions` names, or None when it leaves them to the targets (defaults, sweep)."""
    if precisions is None or isinstance(precisions, str):
        return None
    if isinstance(precisions, dict):
        found = set()
        for value in precisions.values():
            if isinstance(value, str):
                return None
            found |= set(value)
        return found
    return set(precisions)
