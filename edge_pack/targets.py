"""Targets are data: one TOML file per target under targets/ (or the user's own) read into `Target`."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError
from .resources import targets_dir

SWEEP = "sweep"  # asked for instead of precision names: every precision the target offers


@dataclass(frozen=True)
class Precision:
    name: str
    file: str  # path of the artifact inside the target folder
    bits: float  # nominal bits per weight, for the size/accuracy cliff
    min_cosine: float  # build-time validation floor against the fp32 source
    max_abs: float | None = None
    # Any other keys of the precision's table: how the target's converter makes it (e.g. a compression
    # recipe, the oldest OS that runs it); only that converter reads them.
    settings: dict = field(default_factory=dict)


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

    def precision(self, name: str) -> Precision:
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
            names += list(self.precisions) if name == SWEEP else [self.precision(name).name]
        return list(dict.fromkeys(names))

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
        unknown = [p for p in defaults if p not in precisions]
        if unknown:
            raise UserError(f"{path}: default_precisions names unknown precisions {unknown}")
        return Target(
            name=data["name"], description=data.get("description", ""), format=data["format"],
            converter=data["converter"], runtime=data["runtime"],
            runtimes=tuple(data.get("runtimes", [data["runtime"]])), requires=tuple(data.get("requires", [])),
            install_hint=data.get("install_hint", ""), threads=int(data.get("threads", 1)),
            default_precisions=defaults, tasks=tuple(data.get("tasks", [])), precisions=precisions,
            device=data.get("device", {}),
        )
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise UserError(f"target file {path} is invalid ({exc}); compare it with targets/web.toml") from None


# A user's own target files (--target-file, or EDGE_PACK_TARGET_FILES separated by os.pathsep).
_USER_FILES: list[Path] = []


def add_target_files(paths) -> None:
    _USER_FILES.extend(Path(p) for p in paths if Path(p) not in _USER_FILES)


def _user_files() -> list[Path]:
    from_env = [Path(p) for p in os.environ.get("EDGE_PACK_TARGET_FILES", "").split(os.pathsep) if p]
    return from_env + _USER_FILES


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
    names = ["edge-pack", "numpy", "torch", "transformers", "tokenizers", "onnx", "onnxruntime", "optimum-onnx",
             "optimum", *modules]
    versions = {}
    for name in dict.fromkeys(names):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions
