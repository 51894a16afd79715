"""Targets are data: one TOML file per target under targets/ (or the user's own) read into `Target`."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import math
import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import UserError
from .resources import targets_dir

SWEEP = "sweep"  # asked for instead of precision names: every precision the target offers
AUTO = "auto"  # asked for instead of a precision: a per-layer mix searched for (edge_pack/mixed.py)
OPTION_TYPES = ("str", "int", "float", "bool", "path")
# build: the converter reads it (BuildOptions.target_options); bench: the runner (RunOptions.extra).
OPTION_STAGES = ("build", "bench")
_OPTION_KEYS = ("type", "default", "help", "choices", "stage")


@dataclass(frozen=True)
class Option:
    """A setting a target declares in its TOML ([options.<name>]): the flag --<name> of `build` and
    `bench SOURCE` (bench-stage ones of `bench`), and the key <name> of a job's [options] table."""
    name: str
    type: str
    help: str
    default: object = None
    choices: tuple = ()
    stage: str = "build"
    targets: tuple[str, ...] = ()  # the targets that declare it

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse(self, value, where: str | None = None):
        """The value as this option's type (from a flag's text or a TOML value), or a UserError that
        names the option (`where`, e.g. the flag or the job's key) and what it takes."""
        where = where or self.flag
        parsed = _typed(self.type, value)
        if self.choices and parsed not in self.choices:
            raise UserError(f"{where} must be one of {', '.join(map(str, self.choices))}, not {value!r}")
        if parsed is None:
            what = {"int": "a whole number", "float": "a finite number", "bool": "true or false",
                    "path": "a file path", "str": "a non-empty string"}[self.type]
            raise UserError(f"{where} takes {what}, not {value!r}")
        if self.type == "path" and not parsed.is_file():
            raise UserError(f"{where} names {parsed}, which is not a file; give an existing file")
        return parsed


def _typed(kind: str, value):
    """`value` (text from a flag, or a TOML value) as `kind`, or None when it is not one."""
    if isinstance(value, str) and kind != "str":
        value = value.strip()
        if kind == "bool":
            return {"true": True, "false": False}.get(value.lower())
        if kind in ("int", "float"):
            try:
                value = float(value) if kind == "float" else int(value)
            except ValueError:
                return None
    if kind == "bool":
        return value if isinstance(value, bool) else None
    if kind == "path":
        return Path(value).expanduser() if isinstance(value, (str, Path)) and str(value) else None
    if kind == "str":
        return value if isinstance(value, str) and value else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    if kind == "int":
        return int(value) if float(value).is_integer() else None
    return float(value)


@dataclass(frozen=True)
class Precision:
    name: str
    file: str  # path of the artifact inside the target folder
    bits: float  # nominal bits per weight, for the size/accuracy cliff
    min_cosine: float  # build-time validation floor against the fp32 source
    max_abs: float | None = None
    # Any other keys of the precision's table: how the target's converter makes it (e.g. a compression
    # recipe, the oldest OS that runs it); only that converter reads them, and it declares which it reads.
    settings: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Mixed:
    """A target whose toolchain sets each layer's precision on its own ([mixed] in its TOML): the two
    precisions `--precision auto` mixes layer by layer, and the file the mix is written to. One pair may not
    fit every model (a transformer encoder mixes full-integer int8 with float, a CNN int4 with int8):
    [mixed.tasks.<task>] gives a task its own pair, which Target.for_task() picks."""
    low: str  # every layer starts here...
    high: str  # ...and the sensitive ones are promoted to this
    file: str
    # The mix's build-time floor; None: the stricter of the pair's (too strict when high is the float one).
    min_cosine: float | None = None
    tasks: dict = field(default_factory=dict)  # task -> Mixed

    def name(self, target: "Target") -> str:
        bits = lambda p: f"{int(target.precisions[p].bits)}"  # noqa: E731 — q4_k_m's 4.89 reads as 4
        return f"mixed-{bits(self.low)}/{bits(self.high)}"

    def pairs(self) -> list["Mixed"]:
        return [self, *self.tasks.values()]


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    format: str
    converter: str  # module under edge_pack.converters
    runtime: str  # default module under edge_pack.runners
    runtimes: tuple[str, ...]
    requires: tuple[str, ...]  # importable modules the converter and runner need
    install_hint: str
    threads: int
    default_precisions: tuple[str, ...]
    tasks: tuple[str, ...]
    precisions: dict[str, Precision]
    device: dict = field(default_factory=dict)
    options: dict[str, Option] = field(default_factory=dict)
    file: Path | None = None  # the TOML it was read from, for errors that name it
    mixed: Mixed | None = None  # None: the toolchain has no per-layer control
    # A task's own defaults ([default_precisions_for] in its TOML): a decoder ships other precisions than an
    # encoder (e.g. no full-integer int8, which needs calibration and breaks a KV cache's activations).
    task_defaults: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def precision(self, name: str) -> Precision:
        for pair in self.mixed.pairs() if self.mixed is not None else []:
            if name == pair.name(self):
                return self.mixed_precision(pair)
        return self._precision(name)

    def mixed_precision(self, pair: Mixed | None = None) -> Precision:
        """The mix as a precision: its file, the low precision's bits and the stricter validation floor
        (unless [mixed] sets min_cosine)."""
        pair = pair or self.mixed
        low, high = self.precisions[pair.low], self.precisions[pair.high]
        floor = pair.min_cosine if pair.min_cosine is not None else max(low.min_cosine, high.min_cosine)
        return Precision(name=pair.name(self), file=pair.file, bits=low.bits, min_cosine=floor)

    def for_task(self, task: str) -> "Target":
        """This target as it builds models of `task`: the task's own default precisions
        ([default_precisions_for]) and [mixed] pair ([mixed.tasks.<task>]), where it has them."""
        target = self
        if task in self.task_defaults:
            target = replace(target, default_precisions=self.task_defaults[task])
        if self.mixed is not None and task in self.mixed.tasks:
            target = replace(target, mixed=self.mixed.tasks[task])
        return target

    def _precision(self, name: str) -> Precision:
        try:
            return self.precisions[name]
        except KeyError:
            raise UserError(
                f"target {self.name} has no precision {name!r}; choose from {', '.join(self.precisions)}"
            ) from None

    def choose(self, requested: list[str] | str | None) -> list[str]:
        """The precisions to build: the defaults when none are asked for, "sweep" for all of them."""
        if requested is None:
            return list(self.default_precisions)
        names = []
        for name in [requested] if isinstance(requested, str) else requested:
            names += list(self.precisions) if name == SWEEP else [AUTO] if name == AUTO else [self.precision(name).name]
        return list(dict.fromkeys(names))

    def option(self, name: str, values: dict):
        """The value of one of this target's declared options in `values` (BuildOptions.target_options or
        RunOptions.extra), else its declared default."""
        return values[name] if values.get(name) is not None else self.options[name].default

    def missing_modules(self) -> list[str]:
        return [m for m in self.requires if not _importable(m)]


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


_PRECISION_KEYS = ("file", "bits", "min_cosine", "max_abs")


def _parse(path: Path) -> Target:
    try:
        data = tomllib.loads(path.read_text())
        precisions = {
            name: Precision(name=name, file=p["file"], bits=float(p["bits"]), min_cosine=float(p["min_cosine"]),
                            max_abs=p.get("max_abs"),
                            settings={k: v for k, v in p.items() if k not in _PRECISION_KEYS})
            for name, p in data["precisions"].items()
        }
        defaults = tuple(data["default_precisions"])
        task_defaults = {task: tuple(names) for task, names in data.get("default_precisions_for", {}).items()}
        for where, names in [("default_precisions", defaults)] + [
                (f"[default_precisions_for] {task}", names) for task, names in task_defaults.items()]:
            unknown = [p for p in names if p not in precisions]
            if unknown or not names:
                raise UserError(f"{path}: {where} names unknown precisions {unknown}" if unknown
                                else f"{path}: {where} is empty; name at least one of its precisions")
        tasks = tuple(data.get("tasks", []))
        stray = [t for t in task_defaults if t not in tasks]
        if stray:
            raise UserError(f"{path}: [default_precisions_for] names tasks the target does not build {stray}; "
                            f"its tasks are {', '.join(tasks)}")
        return Target(
            name=data["name"], description=data.get("description", ""), format=data["format"],
            converter=data["converter"], runtime=data["runtime"],
            runtimes=tuple(data.get("runtimes", [data["runtime"]])), requires=tuple(data.get("requires", [])),
            install_hint=data.get("install_hint", ""), threads=int(data.get("threads", 1)),
            default_precisions=defaults, task_defaults=task_defaults, tasks=tasks, precisions=precisions,
            device=data.get("device", {}), file=path, options=_options(path, data["name"], data.get("options", {})),
            mixed=_mixed(path, data.get("mixed"), precisions),
        )
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"target file {path} is invalid ({exc}); compare it with targets/web.toml") from None


def _mixed(path: Path, table: dict | None, precisions: dict[str, Precision], task: str | None = None) -> Mixed | None:
    if table is None:
        return None
    where = f"[mixed.tasks.{task}]" if task else "[mixed]"
    allowed = {"low", "high", "file", "min_cosine"} | ({"tasks"} if task is None else set())
    needed = {"low", "high", "file"}  # a task's pair writes to [mixed]'s file
    if not needed <= set(table) <= allowed or not all(table[k] in precisions for k in ("low", "high")):
        raise UserError(f"target file {path}: {where} needs low and high (two of its precisions)"
                        + (" and file" if task is None else "") + ", optionally min_cosine"
                        + (" and tasks" if task is None else ""))
    floor = float(table["min_cosine"]) if "min_cosine" in table else None
    if task is not None:
        return Mixed(low=table["low"], high=table["high"], file=table["file"], min_cosine=floor)
    tasks = {name: _mixed(path, {"file": table["file"], **pair}, precisions, name)
             for name, pair in table.get("tasks", {}).items()}
    return Mixed(low=table["low"], high=table["high"], file=table["file"], min_cosine=floor, tasks=tasks)


def _options(path: Path, target: str, tables: dict) -> dict[str, Option]:
    options = {}
    for name, table in tables.items():
        unknown = [k for k in table if k not in _OPTION_KEYS]
        if unknown or table.get("type") not in OPTION_TYPES or table.get("stage", "build") not in OPTION_STAGES \
                or not table.get("help"):
            raise UserError(f"target file {path}: [options.{name}] needs type ({', '.join(OPTION_TYPES)}) and help, "
                            f"and may give default, choices and stage ({', '.join(OPTION_STAGES)})"
                            + (f"; {', '.join(unknown)} is not one of them" if unknown else ""))
        option = Option(name=name, type=table["type"], help=table["help"], choices=tuple(table.get("choices", ())),
                        stage=table.get("stage", "build"), targets=(target,))
        if "default" in table:
            option = replace(option, default=option.parse(table["default"], f"{path}: [options.{name}] default"))
        options[name] = option
    return options


def declared_options(targets, stages: tuple[str, ...] = OPTION_STAGES) -> dict[str, Option]:
    """The options the targets declare, by name; targets that declare one name must agree on its type."""
    found: dict[str, Option] = {}
    for target in targets:
        for name, option in target.options.items():
            if option.stage not in stages:
                continue
            if name in found:
                if (found[name].type, found[name].stage) != (option.type, option.stage):
                    raise UserError(f"targets {', '.join(found[name].targets)} and {target.name} declare option "
                                    f"{name} differently ({target.file}); give it one type")
                option = replace(option, targets=found[name].targets + (target.name,))
            found[name] = option
    return found


def check_options(values: dict, targets, stages: tuple[str, ...] = OPTION_STAGES, where=lambda o: o.flag) -> dict:
    """`values` typed and checked against the options the targets declare; an unknown name is an error
    naming the valid ones."""
    declared = declared_options(targets, stages)
    checked = {}
    for name, value in values.items():
        if name not in declared:
            valid = ", ".join(declared) or "none"
            raise UserError(f"unknown option {name!r}; the targets' options are: {valid} (see `edge-pack build --help`)")
        checked[name] = declared[name].parse(value, where(declared[name]))
    return checked


# A user's own target files (--target-file, or EDGE_PACK_TARGET_FILES separated by os.pathsep).
_USER_FILES: list[Path] = []


def add_target_files(paths) -> None:
    _USER_FILES.extend(Path(p) for p in paths if Path(p) not in _USER_FILES)


def _user_files() -> list[Path]:
    from_env = [Path(p) for p in os.environ.get("EDGE_PACK_TARGET_FILES", "").split(os.pathsep) if p]
    return from_env + _USER_FILES


def builtin_targets() -> dict[str, Target]:
    """The targets that ship with edge-pack (targets/*.toml), without the user's own."""
    return {t.name: t for t in map(_parse, sorted(targets_dir().glob("*.toml")))}


def load_targets(extra: tuple[Path, ...] = ()) -> dict[str, Target]:
    """Built-in targets plus the user's TOML files (a user's file may replace a built-in one)."""
    files = sorted(targets_dir().glob("*.toml")) + _user_files() + [Path(p) for p in extra]
    targets = {}
    for path in files:
        target = _parse(path)
        targets[target.name] = target
    return targets


def get_target(name: str, extra: tuple[Path, ...] = ()) -> Target:
    targets = load_targets(extra)
    if name not in targets:
        raise UserError(f"unknown target {name!r}; available targets: {', '.join(targets)} (a target of your "
                        "own: --target-file FILE.toml)")
    return targets[name]


def library_versions(modules: tuple[str, ...] = ()) -> dict[str, str]:
    """Versions of the libraries that shape an artifact, for the manifest."""
    return installed_versions(("edge-pack", "numpy", "torch", "transformers", "tokenizers", "onnx", "onnxruntime",
                               "optimum-onnx", "optimum", *modules))


def installed_versions(names) -> dict[str, str]:
    """The installed version of each distribution in `names`, leaving out those not installed."""
    versions = {}
    for name in dict.fromkeys(names):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions
