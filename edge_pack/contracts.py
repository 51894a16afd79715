"""The two seams a target plugs into, stated once: a converter (source → artifact files, per precision)
and a runner (artifact files → outputs and timings), with the typed data that crosses them, and the
registry that ties each targets/<name>.toml to its code and checks they agree before any work starts.

A target is a TOML (targets.py reads it), a converter class (edge_pack/converters/<converter>.py, or any
importable module when the name is dotted), one runner module per runtime (edge_pack/runners/<runtime>.py,
likewise) and the harness script that runner starts (harness/<runtime>/). The core knows no target names.
"""
from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ClassVar, Protocol

import numpy as np

from .errors import UserError

if TYPE_CHECKING:
    from .source import SourceModel
    from .targets import Precision, Target


# ------------------------------------------------------------------------------------------------ converter

@dataclass(frozen=True)
class BuildOptions:
    """What the user told the converters beyond source, targets and precisions."""
    calibration: Path | None = None  # calibration data for full-integer quantization
    # The targets' declared options ([options.<name>] in their TOMLs), already checked: {"min_ios": 17}.
    target_options: dict = field(default_factory=dict)
    timeout_s: float | None = 3600.0  # bound on each export/conversion step and each validation run
    # The job's SLA (sla.Sla) and per-target SLAs, when there is a job file: `--precision auto` searches for
    # the smallest mix that meets its quality floor. None: the target's validation floor.
    sla: object = None
    target_sla: dict = field(default_factory=dict)
    # The job's eval data: --precision auto searches on the inputs bench will judge (None: the built-in ones).
    eval_path: Path | None = None

    def sla_for(self, target: str):
        return self.target_sla.get(target, self.sla)


@dataclass(frozen=True)
class Built:
    """One precision's artifact: its files (inside the target folder) and how they were made."""
    files: list[Path]
    recipe: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Layer:
    """One part of the model whose precision the target's toolchain can set on its own (an ONNX MatMul or
    embedding Gather, a GGUF tensor), with its stored size at each precision of the target's [mixed] pair
    and as float (estimates from its weight count, for ranking; the built file is measured)."""
    name: str  # the toolchain's own name for it (node or tensor name)
    kind: str  # "matmul", "embedding"...
    weights: int
    bytes: dict[str, int]  # precision name (and "float") -> stored bytes


def makes(*precisions: str):
    """Marks the converter method that makes these precisions: method(out: Path) -> recipe dict."""
    def mark(method):
        method.makes = precisions
        return method
    return mark


class Converter(ABC):
    """Builds one source's artifacts for one target into `folder` (the target's folder of the staged
    bundle; nothing is written elsewhere). The pipeline calls, in order: support_files() once, convert()
    per precision (a failure rejects that precision only), finish() once.

    What it makes is declared, and checked against the target's TOML when the target is loaded:
    - methods marked @makes("name") make those precisions by name (web, android);
    - RECIPE names the per-precision TOML keys that say how to make any precision giving them all
      (ios: compute; pi: ftype), for converters whose precisions are data.
    SETTINGS are every per-precision key the converter reads from its TOML (beyond file, bits, min_cosine,
    max_abs); any other key in a precision's table is a typo, refused at load."""

    RECIPE: ClassVar[tuple[str, ...]] = ()
    SETTINGS: ClassVar[tuple[str, ...]] = ()
    # True when the converter sets precisions layer by layer (layers() and convert_layers()): a target
    # whose TOML has a [mixed] table needs one.
    PER_LAYER: ClassVar[bool] = False
    makers: ClassVar[dict[str, str]] = {}  # precision -> method name, collected from @makes
    # "module:Class" of the converter that takes this target's text-generation sources (a decoder with its
    # KV cache is another program than an encoder): constructing this converter for one gives that one.
    DECODER: ClassVar[str | None] = None

    def __new__(cls, source: SourceModel, target: Target, folder: Path, options: BuildOptions):
        decoder = cls.decoder_for(source)
        if decoder is not None:
            return decoder(source, target, folder, options)
        return super().__new__(cls)

    @classmethod
    def decoder_for(cls, source: SourceModel) -> type[Converter] | None:
        if cls.DECODER is None or source.task != "text-generation":
            return None
        module, name = cls.DECODER.split(":")
        return getattr(importlib.import_module(module), name)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.makers = {name: attr for klass in reversed(cls.__mro__) for attr, value in vars(klass).items()
                      for name in getattr(value, "makes", ())}

    def __init__(self, source: SourceModel, target: Target, folder: Path, options: BuildOptions):
        self.source, self.target, self.dir, self.options = source, target, folder, options
        self.notes: list[str] = []  # what the user should know (e.g. little calibration data), kept in the manifest
        self.meta: dict = {}  # target-level facts for the manifest (e.g. the conventions an app must follow)

    @classmethod
    def unsupported(cls, source: SourceModel) -> str | None:
        """Why this target cannot build the model at all (the pipeline skips or refuses it), or None."""
        decoder = cls.decoder_for(source)
        return decoder.unsupported(source) if decoder is not None else None

    @classmethod
    def unmixable(cls, source: SourceModel) -> str | None:
        """Why a PER_LAYER converter cannot mix precisions for this model (None when it can)."""
        return None

    @classmethod
    def check(cls, source: SourceModel, target: Target, precisions: list[str], options: BuildOptions) -> None:
        """Refuse bad settings (UserError) before any work starts, e.g. a precision the chosen OS cannot run."""

    @abstractmethod
    def support_files(self) -> list[Path]:
        """The config, tokenizer and preprocessor files the artifacts need beside them, written into the folder."""

    @abstractmethod
    def convert(self, precision: str) -> Built:
        """Make one precision (raise NotApplicable when it does not apply to this model)."""

    def finish(self) -> list[Path]:
        """Files written once every precision is made (e.g. a description of them all)."""
        return []

    def layers(self) -> list[Layer]:
        """The layers whose precision convert_layers() sets one by one (PER_LAYER converters)."""
        raise NotImplementedError

    def convert_layers(self, levels: dict[str, str], out: Path | None = None) -> Built:
        """Write the model with each named layer at its precision (one of the target's [mixed] pair); layers
        not named stay float. `out` is a trial's file; None: the mix shipped, at its precision's file
        (recorded like every precision's recipe). PER_LAYER converters."""
        raise NotImplementedError

    def maker(self, precision: str) -> Callable[[Path], dict]:
        """The @makes method of `precision` (the registry checked at load that there is one)."""
        return getattr(self, self.makers[precision])

    @classmethod
    def problems(cls, precision: Precision) -> list[str]:
        """What is wrong with a precision's TOML table for this converter (empty when it can make it)."""
        found = []
        unknown = sorted(set(precision.settings) - set(cls.SETTINGS) - set(cls.RECIPE))
        if unknown:
            valid = ", ".join(sorted({*cls.SETTINGS, *cls.RECIPE})) or "none"
            found.append(f"unknown setting {', '.join(map(repr, unknown))} (valid settings: {valid})")
        if precision.name not in cls.makers and not (cls.RECIPE and all(k in precision.settings for k in cls.RECIPE)):
            if cls.RECIPE:
                found.append(f"it needs {', '.join(cls.RECIPE)} to say how it is made")
            else:
                found.append(f"the converter makes only {', '.join(cls.makers)}")
        return found


# ------------------------------------------------------------------------------------------------ runner

@dataclass(frozen=True)
class RunOptions:
    threads: int = 1
    warmup: int = 3
    runs: int = 20
    timeout_s: float = 900.0
    task: str | None = None  # the source's task (feature-extraction...), for runtimes that load by task
    # Runner-specific settings (a device address, compute units...), from the targets' declared options.
    extra: dict = field(default_factory=dict)


@dataclass
class RunResult:
    outputs: list[dict[str, np.ndarray]]  # one dict of named outputs per sample
    load_ms: float
    latency_ms: list[float]  # every timed run
    peak_rss_mb: float
    runtime: str  # what ran it, with its version
    host: dict = field(default_factory=dict)
    # True when outputs are already the task's primary output (e.g. pooled by Transformers.js).
    postprocessed: bool = False
    # Measures only the runtime can take (tokens/s, perplexity...), merged into the row's metrics.
    metrics: dict = field(default_factory=dict)
    # Set when this runtime's timings would not be the device's (an emulator): it takes none, and reports
    # show this note (e.g. "emulated — no device latency") where latency and load time would be.
    latency_note: str | None = None
    # How the numbers were obtained when not by running the artifact on its real runtime and device:
    # {"outputs": "emulated"} (e.g. a faithful emulator of the device runtime), {"latency": "estimated"}
    # (from device facts). Anything not named here was "measured".
    obtained: dict = field(default_factory=dict)
    # A text-generation runtime's answers to the request's asks (edge_pack/generation.py), in order.
    answers: list = field(default_factory=list)


class Runner(Protocol):
    """A runner is a module (edge_pack/runners/<runtime>.py) with run(); it may also offer missing() -> list
    of what this machine lacks, each with how to install it (`edge-pack doctor` and bench ask), and
    install(progress) (what `edge-pack setup TARGET` runs). Its device-side half lives in harness/."""

    def run(self, files: list[Path], samples: list[dict], latency_input: dict | None,
            options: RunOptions) -> RunResult: ...


# ------------------------------------------------------------------------------------------------ registry

def _module(kind: str, name: str):
    # A dotted name is a module of the user's own (e.g. converter = "mycompany.edge_converter"); a hyphen in
    # a built-in one's name is the module's underscore (runtime browser-webgpu: runners/browser_webgpu.py).
    return importlib.import_module(name if "." in name else f"edge_pack.{kind}.{name.replace('-', '_')}")


_CONVERTERS: dict[str, type[Converter]] = {}


def converter_class(name: str) -> type[Converter]:
    """The Converter class of a converter module, imported once (ImportError when its toolchain is missing)."""
    if name not in _CONVERTERS:
        found = getattr(_module("converters", name), "Converter", None)
        if not (isinstance(found, type) and issubclass(found, Converter)):
            raise UserError(f"converter {name} has no Converter class built on edge_pack.contracts.Converter")
        _CONVERTERS[name] = found
    return _CONVERTERS[name]


def converter_for(target: Target) -> type[Converter]:
    """The target's converter, checked against its TOML: every precision the TOML declares must be one
    the converter makes, with settings it reads; otherwise an error naming the file and the precision."""
    cls = converter_class(target.converter)
    if target.mixed is not None and not cls.PER_LAYER:
        raise UserError(f"{target.file or target.name}: target {target.name} has a [mixed] table, but its converter "
                        f"{target.converter} sets no precision layer by layer (PER_LAYER)")
    for precision in target.precisions.values():
        problems = cls.problems(precision)
        if problems:
            raise UserError(f"{target.file or target.name}: precision {precision.name!r} of target {target.name}: "
                            f"{'; '.join(problems)}")
    return cls


def get_runner(name: str) -> Runner:
    """The runner module of a runtime: edge_pack.runners.<name>, or a user's own module when dotted."""
    return _module("runners", name)


def runtime_missing(name: str) -> list[str]:
    """What this machine lacks to run the runner `name` (each item says how to install it); a runner
    declares it with a missing() function, a runner without one needs nothing beyond its target's modules."""
    try:
        runner = get_runner(name)
    except ImportError as exc:
        return [f"runner {name} cannot be imported ({exc})"]
    check = getattr(runner, "missing", None)
    return list(check()) if check else []
