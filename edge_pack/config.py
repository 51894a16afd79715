"""edge-pack.toml: the whole job written down before the build — source, targets, precisions, eval and
calibration data, output folder, bench settings, the SLA and what a candidate costs to run. Command-line
flags override its keys. Unknown keys and wrong types are errors that name the key and its line, because
a typo in an SLA silently loosens a release gate. Relative paths are relative to the file's folder."""
from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError
from .models import CascadeSpec, ModelReader, ModelSpec
from .sla import CONFIDENCES, LIMITS, SLA_KEYS, Sla, limit_problem
from .targets import AUTO, SWEEP, declared_options, load_targets

DEFAULT_FILE = "edge-pack.toml"
BENCH_KEYS = {"runs": 1, "warmup": 0, "seq_len": 1, "threads": 1,  # integer settings and their minimum
              "max_new_tokens": 1}
# How a decoder answers a task file (edge_pack/task_bench.py): the chat template on or off, the default scorer.
TASK_KEYS = ("chat_template", "scorer")
PRICE_KEYS = ("price_per_device_hour", "price_per_million_requests", "price_per_gb_downloaded")
COST_KEYS = ("requests_per_month", "downloads_per_month", *PRICE_KEYS, "currency")
VOLUME_OF = {"price_per_device_hour": "requests_per_month", "price_per_million_requests": "requests_per_month",
             "price_per_gb_downloaded": "downloads_per_month"}
TOP_KEYS = ("source", "models", "baseline", "targets", "target_files", "precisions", "runtimes", "eval", "calibration",
            "out", "options", "bench", "sla", "cost", "cascade")


@dataclass(frozen=True)
class Cost:
    """What a candidate costs per month, as a sum of terms, each an estimate from stated inputs: device
    time (requests × p50 latency × price per device-hour), a price per million requests, and the download
    of the model itself (bytes × downloads × price per GB: every new visitor of a web app downloads it, and
    a phone model ships in every app download)."""
    requests_per_month: float = 0.0
    price_per_device_hour: float | None = None
    price_per_million_requests: float | None = None
    downloads_per_month: float = 0.0
    price_per_gb_downloaded: float | None = None
    currency: str = "USD"

    def terms(self, latency_ms: float | None, size_bytes: int) -> list[dict] | None:
        """Each term with its amount and the inputs it came from; None when a term needs a latency that
        was not measured."""
        found = []
        if self.price_per_device_hour is not None:
            if latency_ms is None:
                return None
            found.append({"term": "device time", "amount": self.requests_per_month * latency_ms / 3_600_000
                          * self.price_per_device_hour,
                          "inputs": f"p50 {latency_ms:.1f} ms × {self.requests_per_month:,.0f} requests × "
                                    f"{self.price_per_device_hour:g} {self.currency}/device-hour"})
        if self.price_per_million_requests is not None:
            found.append({"term": "requests", "amount": self.requests_per_month / 1e6 * self.price_per_million_requests,
                          "inputs": f"{self.requests_per_month:,.0f} requests × {self.price_per_million_requests:g} "
                                    f"{self.currency}/million"})
        if self.price_per_gb_downloaded is not None:
            found.append({"term": "model download", "amount": size_bytes / 1e9 * self.downloads_per_month
                          * self.price_per_gb_downloaded,
                          "inputs": f"{size_bytes / 1e6:.1f} MB × {self.downloads_per_month:,.0f} downloads × "
                                    f"{self.price_per_gb_downloaded:g} {self.currency}/GB"})
        return found

    def per_month(self, latency_ms: float | None, size_bytes: int = 0) -> float | None:
        found = self.terms(latency_ms, size_bytes)
        return None if found is None else sum(t["amount"] for t in found)

    def describe(self) -> dict:
        terms = []
        if self.price_per_device_hour is not None:
            terms.append(f"p50 latency × {self.requests_per_month:,.0f} requests/month × "
                         f"{self.price_per_device_hour:g} {self.currency} per device-hour")
        if self.price_per_million_requests is not None:
            terms.append(f"{self.requests_per_month / 1e6:g} M requests/month × {self.price_per_million_requests:g} "
                         f"{self.currency} per million requests")
        if self.price_per_gb_downloaded is not None:
            terms.append(f"model size × {self.downloads_per_month:,.0f} downloads/month × "
                         f"{self.price_per_gb_downloaded:g} {self.currency} per GB downloaded")
        return {"requests_per_month": self.requests_per_month, "price_per_device_hour": self.price_per_device_hour,
                "price_per_million_requests": self.price_per_million_requests,
                "downloads_per_month": self.downloads_per_month,
                "price_per_gb_downloaded": self.price_per_gb_downloaded, "currency": self.currency,
                "formula": " + ".join(terms) + " (an estimate from these inputs)"}


@dataclass
class Config:
    path: Path | None = None
    source: str | None = None
    targets: tuple[str, ...] = ()
    target_files: tuple[Path, ...] = ()
    # None: each target's defaults; "sweep": every precision a target offers; a list; or per target.
    precisions: str | list[str] | dict[str, str | list[str]] | None = None
    eval: Path | None = None
    calibration: Path | None = None
    out: Path | None = None
    options: dict = field(default_factory=dict)  # the targets' declared options ([options.<name>] in their TOMLs)
    bench: dict = field(default_factory=dict)
    runtimes: dict[str, str] = field(default_factory=dict)  # target -> the runner bench measures it with
    sla: Sla = field(default_factory=Sla)
    target_sla: dict[str, Sla] = field(default_factory=dict)
    cost: Cost | None = None
    target_cost: dict[str, Cost] = field(default_factory=dict)
    models: tuple[ModelSpec, ...] = ()  # [[models]]: several sources in one job (edge_pack/models.py)
    baseline: str | None = None  # the model whose fp32 accuracy quality ratios are taken against
    cascade: CascadeSpec | None = None

    def sla_for(self, target: str) -> Sla:
        return self.target_sla.get(target, self.sla)

    def cost_for(self, target: str) -> Cost | None:
        return self.target_cost.get(target, self.cost)


def find_config(path: Path | None) -> Path | None:
    """The file given, or ./edge-pack.toml when there is one."""
    if path is not None:
        return Path(path)
    return Path(DEFAULT_FILE) if Path(DEFAULT_FILE).is_file() else None


def load_config(path: Path | None, target_files: tuple[Path, ...] = ()) -> Config:
    """Read and check an edge-pack.toml; `target_files` are extra target TOMLs given on the command line."""
    if path is None:
        return Config(target_files=tuple(target_files))
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist; write an edge-pack.toml (see examples/demo)")
    text = path.read_text(errors="replace")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: {exc}; fix the TOML syntax") from None
    return _Reader(path, text).read(data, tuple(target_files))


class _Reader:
    """Checks one file's values, failing with the file, line and dotted key of the first wrong one."""

    def __init__(self, path: Path, text: str):
        self.path, self.text, self.base = path, text, path.parent

    def fail(self, key: str, problem: str):
        where = locate(self.text, key)
        raise UserError(f"{self.path}{f':{where}' if where else ''}: {key} {problem}")

    def read(self, data: dict, extra_targets: tuple[Path, ...]) -> Config:
        for key in data:
            if key not in TOP_KEYS:
                self.fail(key, f"is not a known key; edge-pack.toml takes {', '.join(TOP_KEYS)}")
        files = tuple(self.path_value(f"target_files.{i}", v) for i, v in enumerate(self.strings("target_files", data)))
        for file in files:
            if not file.is_file():
                self.fail("target_files", f"names {file}, which does not exist")
        try:
            targets = load_targets(files + tuple(extra_targets))
            known = tuple(targets)
        except UserError as exc:
            self.fail("target_files", f"names a target file that cannot be used ({exc.message})")
        config = Config(path=self.path, target_files=files + tuple(extra_targets))
        models = ModelReader(self.fail, self.source)
        config.models = models.models(data)
        config.baseline = models.baseline(data, config.models)
        if "source" in data:
            config.source = self.source(self.string("source", data["source"]))
        if "targets" in data:
            value = data["targets"]
            config.targets = (self.string("targets", value),) if isinstance(value, str) else tuple(
                self.strings("targets", data))
            for name in config.targets:
                if name != "all" and name not in known:
                    self.fail("targets", f"names unknown target {name!r}; targets are {', '.join(known)} (add your "
                                         "own with target_files)")
        if "precisions" in data:
            config.precisions = self.precisions(data["precisions"], known)
        for key in ("eval", "calibration", "out"):
            if key in data:
                setattr(config, key, self.path_value(key, data[key]))
        config.options = self.options(self.table("options", data.get("options", {})), targets)
        config.bench = self.bench(self.table("bench", data.get("bench", {})))
        for name, runtime in self.table("runtimes", data.get("runtimes", {})).items():
            if name not in known:
                self.fail(f"runtimes.{name}", f"is not a target; targets are {', '.join(known)}")
            if self.string(f"runtimes.{name}", runtime) not in targets[name].runtimes:
                self.fail(f"runtimes.{name}", f"must be one of {', '.join(targets[name].runtimes)}, not {runtime!r}")
            config.runtimes[name] = runtime
        config.cascade = models.cascade(data, config.models, config.precisions)
        sla_table = self.table("sla", data.get("sla", {}))
        config.sla = Sla().override(self.sla_values(sla_table, "sla", known))
        config.target_sla = {name: config.sla.override(self.sla_values(self.table(f"sla.{name}", sub), f"sla.{name}", ()))
                             for name, sub in sla_table.items() if name in known}
        if "cost" in data:
            cost_table = self.table("cost", data["cost"])
            base = self.cost_values(cost_table, "cost", known)
            config.cost = self.cost(base, "cost") if base else None
            config.target_cost = {
                name: self.cost({**base, **self.cost_values(self.table(f"cost.{name}", sub), f"cost.{name}", ())},
                                f"cost.{name}")
                for name, sub in cost_table.items() if name in known}
        return config

    # ------------------------------------------------------------------------------------ value checks

    def string(self, key: str, value) -> str:
        if not isinstance(value, str) or not value:
            self.fail(key, f"must be a non-empty string, not {value!r}")
        return value

    def strings(self, key: str, data: dict) -> list[str]:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.fail(key, f"must be a list of strings, not {value!r}")
        return value

    def table(self, key: str, value) -> dict:
        if not isinstance(value, dict):
            self.fail(key, f"must be a table: [{key}]")
        return value

    def number(self, key: str, value, minimum: float = 0) -> float:
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                or value < minimum):
            self.fail(key, f"must be a number of at least {minimum:g}, not {value!r}" if minimum
                      else f"must be a non-negative number, not {value!r}")
        return float(value)

    def path_value(self, key: str, value) -> Path:
        return self.base / Path(self.string(key, value)).expanduser()

    def source(self, value: str) -> str:
        # 'demo' and package.module:factory entry points are names; anything else is a path.
        if value == "demo" or re.fullmatch(r"[\w.]+:\w+", value):
            return value
        return str(self.base / Path(value).expanduser())

    def precisions(self, value, known: tuple[str, ...]):
        def one(key: str, item):
            if isinstance(item, str):
                if item not in (SWEEP, AUTO):
                    self.fail(key, f"must be a list of precisions, {SWEEP!r} or {AUTO!r}, not {item!r}")
                return item
            if not isinstance(item, list) or not item or not all(isinstance(v, str) and v for v in item):
                self.fail(key, f"must be a list of precisions or {SWEEP!r}, not {item!r}")
            return item

        if isinstance(value, dict):
            for name in value:
                if name not in known:
                    self.fail(f"precisions.{name}", f"is not a target; targets are {', '.join(known)}")
            return {name: one(f"precisions.{name}", item) for name, item in value.items()}
        return one("precisions", value)

    def options(self, table: dict, targets: dict) -> dict:
        declared = declared_options(targets.values())
        values = {}
        for key, value in table.items():
            if key not in declared:
                self.fail(f"options.{key}", f"is not an option of the targets (options are {', '.join(declared)})")
            if declared[key].type == "path" and isinstance(value, str) and value:
                value = self.path_value(f"options.{key}", value)
            try:
                values[key] = declared[key].parse(value, f"options.{key}")
            except UserError as exc:
                self.fail(f"options.{key}", exc.message.removeprefix(f"options.{key} "))
        return values

    def bench(self, table: dict) -> dict:
        from .tasks import GENERATION_SCORERS

        values = {}
        for key, value in table.items():
            if key not in BENCH_KEYS and key not in TASK_KEYS:
                self.fail(f"bench.{key}", f"is not a known key (keys are {', '.join([*BENCH_KEYS, *TASK_KEYS])})")
            if key == "chat_template":
                if not isinstance(value, bool):
                    self.fail(f"bench.{key}", f"must be true or false, not {value!r}")
            elif key == "scorer":
                if value not in GENERATION_SCORERS:
                    self.fail(f"bench.{key}", f"must be one of {', '.join(GENERATION_SCORERS)} (rows with choices "
                                              f"are always ranked by likelihood), not {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int) or value < BENCH_KEYS[key]:
                self.fail(f"bench.{key}", f"must be a whole number of at least {BENCH_KEYS[key]}, not {value!r}")
            values[key] = value
        return values

    def own_keys(self, table: dict, prefix: str, keys, targets: tuple[str, ...]) -> list[tuple[str, object]]:
        """The table's own (key, value) pairs, leaving out its per-target sub-tables; an unknown key fails."""
        own = [(key, value) for key, value in table.items() if key not in targets]
        for key, _ in own:
            if key not in keys:
                hint = f"targets are {', '.join(targets)}; " if targets else ""
                self.fail(f"{prefix}.{key}", f"is not a known key ({hint}keys are {', '.join(keys)})")
        return own

    def sla_values(self, table: dict, prefix: str, targets: tuple[str, ...]) -> dict:
        values = {}
        for key, value in self.own_keys(table, prefix, SLA_KEYS, targets):
            if key == "unverified_ok":
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    self.fail(f"{prefix}.{key}", f"must be a list of limit names, e.g. [\"max_latency_ms\"], not {value!r}")
                names = value
                for name in names:
                    if name not in LIMITS:
                        self.fail(f"{prefix}.{key}", f"names {name!r}, which is not a limit ({', '.join(LIMITS)})")
                values[key] = tuple(names)
                continue
            if key == "confidence":
                low, high = CONFIDENCES
                if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                        or not low <= value <= high):
                    self.fail(f"{prefix}.{key}", f"must be a finite number from {low:g} to {high:g} (e.g. 0.95), "
                                                 f"not {value!r}")
                values[key] = float(value)
                continue
            problem = limit_problem(key, value)
            if problem:
                self.fail(f"{prefix}.{key}", problem)
            values[key] = float(value)
        return values

    def cost_values(self, table: dict, prefix: str, targets: tuple[str, ...]) -> dict:
        values = {}
        for key, value in self.own_keys(table, prefix, COST_KEYS, targets):
            values[key] = self.string(f"{prefix}.{key}", value) if key == "currency" else self.number(f"{prefix}.{key}", value)
        return values

    def cost(self, values: dict, prefix: str) -> Cost:
        if not any(k in values for k in PRICE_KEYS):
            self.fail(prefix, f"needs a price: {' or '.join(PRICE_KEYS)}")
        for price, volume in VOLUME_OF.items():
            if price in values and volume not in values:
                self.fail(prefix, f"sets {price} but not {volume} (how many a month)")
        return Cost(**values)


def locate(text: str, dotted: str) -> int | None:
    """The line of a TOML file that sets `dotted` (a.b.c): its `key =` line or its [table] header, else
    the line of the nearest enclosing key (an inline table or array holding it)."""
    want = tuple(dotted.split("."))
    table: tuple[str, ...] = ()
    nearest = None
    counts: dict[tuple[str, ...], int] = {}  # [[array]] tables seen so far: the n-th is key array.<n-1>
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        header = re.match(r"^\[\[?\s*([^\]]+?)\s*\]\]?", line)
        if header:
            table = _key_parts(header.group(1))
            if line.startswith("[["):
                counts[table] = counts.get(table, -1) + 1
                table = (*table, str(counts[table]))
            if table[:len(want)] == want and nearest is None:  # "models": the first [[models]]
                nearest = number
            if table == want:
                return number
            if want[:len(table)] == table and table:
                nearest = number
            continue
        assignment = re.match(r"""^((?:[\w-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[\w-]+|"[^"]*"|'[^']*'))*)\s*=""", line)
        if assignment:
            key = table + _key_parts(assignment.group(1))
            if key == want:
                return number
            if want[:len(key)] == key:
                nearest = number
    return nearest


def _key_parts(key: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in re.findall(r"""(?:"[^"]*"|'[^']*'|[^.]+)""", key))
