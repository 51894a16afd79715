"""build: one source → the artifacts of each target, each validated on its runtime, written whole into
DIR with a manifest, or not written at all."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from pathlib import Path

from . import __version__, tokenizer_check
from .contracts import BuildOptions, Converter, converter_for
from .errors import ConversionError, NotApplicable, RunnerError, UserError
from .evalset import TEXT_TASKS, Preprocessor, make_evalset
from .manifest import SCHEMA, file_entry, read_manifest, write_manifest
from .measure import reference_vectors, validate
from .memory import step_usage
from .progress import steps
from .quiet import captured
from .source import SourceModel, input_specs, load_source
from .staging import check_disk_full, locked, staged_folder, temporaries_in
from .targets import AUTO, SWEEP, Target, add_target_files, check_options, get_target, library_versions, load_targets
from .watchdog import deadline

VALIDATION_SAMPLES = 8
TEMPORARIES = ".tmp"  # the build's temporary files, inside the staged bundle and removed before it is committed


def resolve_targets(names: tuple[str, ...] | list[str]) -> list[Target]:
    if not names or "all" in names:
        return list(load_targets().values())
    return [get_target(n) for n in dict.fromkeys(names)]


def check_toolchain(target: Target) -> None:
    missing = target.missing_modules()
    if missing:
        raise UserError(f"target {target.name} needs {', '.join(missing)}, not installed here; "
                        f"install it with: {target.install_hint}")


def _converter(target: Target) -> type[Converter] | None:
    try:
        return converter_for(target)
    except ImportError:
        return None  # the toolchain check names what is missing


def unfit(source: SourceModel, target: Target) -> str | None:
    """Why the target cannot build this model (its tasks, or its converter's own word), or None when it can."""
    converter = _converter(target)
    reason = converter.unsupported(source) if converter else None
    if reason is None and source.task not in target.tasks:
        reason = f"it takes {', '.join(target.tasks)} models, not {source.task}"
    return reason


def plan(source: SourceModel, targets: list[Target], precisions: list[str] | str | dict | None,
         options: BuildOptions | None = None, explicit: bool = True) -> tuple[dict[str, list[str]], list[dict]]:
    """The precisions to build per target, and the targets skipped. `precisions` may be one list for all
    targets, "sweep", or a dict per target. A target named on the command line that cannot build this
    model is an error naming the targets that can; one that came with 'all' is skipped with the reason. A
    precision a target lacks is an error, not a silent skip. The converter's check() refuses bad settings
    (e.g. a precision the chosen OS version cannot run) before any work starts."""
    chosen, skipped = {}, []
    for target in targets:
        reason = unfit(source, target)
        if reason and explicit:
            fits = [t.name for t in load_targets().values() if t.name != target.name and not unfit(source, t)]
            raise UserError(f"target {target.name} cannot build {source.name}: {reason}; "
                            + (f"targets that fit: {', '.join(fits)}" if fits else "no target fits it"))
        if reason:
            skipped.append({"target": target.name, "precision": "—", "reason": reason, "status": "skipped"})
            continue
        check_toolchain(target)
        target = target.for_task(source.task)  # its defaults and [mixed] pair for this kind of model
        wanted = precisions.get(target.name) if isinstance(precisions, dict) else precisions
        names = target.choose(wanted or None)
        swept = SWEEP in ([wanted] if isinstance(wanted, str) else wanted or [])
        if AUTO in names:  # a per-layer mix (mixed.py), refused now if it cannot be searched for
            from . import mixed

            mixed.check(source, target, options or BuildOptions())
        if not swept:  # a sweep takes what applies; the converter skips the rest
            converter_for(target).check(source, target, [n for n in names if n != AUTO], options or BuildOptions())
        chosen[target.name] = names
    if not chosen:
        raise UserError(f"no target can build {source.name}: "
                        + "; ".join(f"{s['target']}: {s['reason']}" for s in skipped))
    return chosen, skipped


def build(source: str | SourceModel, targets: list[str] | tuple[str, ...] = ("web",),
          precisions: list[str] | str | dict | None = None, out: str | Path = "dist", *, allow_pickle: bool = False,
          trust_remote_code: bool = False, target_files: tuple[Path, ...] = (), progress: bool = False,
          options: BuildOptions | None = None) -> dict:
    """Build every (target, precision) candidate of `source` into `out`; returns the manifest.
    `target_files` adds targets of the user's own (TOML files like those in targets/)."""
    add_target_files(target_files)
    with locked(Path(out)) as out:  # first: a second writer of the same folder fails before any work
        if isinstance(source, str):
            source = load_source(source, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
        explicit = bool(targets) and "all" not in targets
        return _build(source, resolve_targets(targets), precisions, out, progress, _checked(options), explicit)


def _checked(options: BuildOptions | None) -> BuildOptions:
    """The options with every target option typed and known (a typo is an error naming the valid ones)."""
    options = options or BuildOptions()
    values = check_options(options.target_options, load_targets().values(), ("build",), where=lambda o: o.name)
    return replace(options, target_options=values)


def _build(source: SourceModel, chosen_targets: list[Target], precisions: list[str] | None, out: Path,
           progress: bool, options: BuildOptions, explicit: bool = True) -> dict:
    chosen, skipped = plan(source, chosen_targets, precisions, options, explicit)
    chosen_targets = [t for t in chosen_targets if t.name in chosen]
    previous = _previous_manifest(out, source)
    kept = [name for name in (previous or {}).get("targets", {}) if name not in chosen]

    pre = Preprocessor(source.task, source.support_dir, input_specs(source))
    checks = make_evalset(pre, None, seq_len=128, label_names=None, embedder=False).head(VALIDATION_SAMPLES)

    with staged_folder(out, keep=tuple(kept)) as work, temporaries_in(work / TEMPORARIES), steps(progress) as bar:
        bar.start("preparing the fp32 reference", total=sum(map(len, chosen.values())) + 1)
        with captured():
            baseline, kind = reference_vectors(source.reference(), source.task, checks.samples)
        bar.advance()
        artifacts, rejected, target_meta = [], list(skipped), {}
        validation = Validation(checks, baseline, kind, tokenizer_check.reference(pre.tokenizer))
        for target in chosen_targets:
            built = _build_target(source, target, chosen[target.name], work, options, validation, bar)
            artifacts += built["artifacts"]
            rejected += built["rejected"]
            target_meta[target.name] = built["meta"]
        manifest = _manifest(source, checks, previous, kept, artifacts, rejected, target_meta, chosen_targets)
        write_manifest(work, manifest)
    return manifest


@dataclass(frozen=True)
class Validation:
    """The inputs every artifact is checked on after conversion, and the fp32 source's answers."""
    evalset: object
    baseline: list
    kind: str
    tokens: tokenizer_check.Reference | None = None  # real text through the source's tokenizer


def _build_target(source: SourceModel, target: Target, precisions: list[str], work: Path, options: BuildOptions,
                  validation: Validation, bar) -> dict:
    """Export once, then convert and validate each precision; a failed precision is recorded, not fatal."""
    target = target.for_task(source.task)  # the [mixed] pair for this kind of model
    target_dir = work / target.name
    target_dir.mkdir()
    bar.step(f"{target.name}: exporting")
    with step_usage() as export_usage, deadline(options.timeout_s, f"exporting {source.name} for {target.name}"):
        converter = converter_for(target)(source, target, target_dir, options)
        support = converter.support_files()
    shown = _show_notes(bar, target.name, converter.notes, 0)
    artifacts, rejected = [], []
    for name in sorted(precisions, key=lambda p: p == AUTO):  # a mix last: it is compared with the uniform ones
        bar.step(f"{target.name}: building {name}")
        files, check = [], None
        try:
            with step_usage() as usage, deadline(options.timeout_s, f"building {target.name} {name}"):
                if name == AUTO:  # searched for and validated on the runtime (mixed.py)
                    from .mixed import search

                    name = target.mixed.name(target)
                    built, check = search(converter, target, source, validation, options, artifacts, bar)
                else:
                    built = converter.convert(name)
                files = built.files
            # text through the artifact's own tokenizer first: a vocabulary that crashes fails at once
            tokens = tokenizer_check.check(target.format, files, validation.tokens, options.timeout_s)
            if check is None:
                bar.step(f"{target.name}: validating {name}")
                check = validate(target.runtime, files, target.precision(name), source.task, validation.evalset,
                                 validation.baseline, validation.kind, options.timeout_s)
            check = {**check, **({"tokenizer": tokens} if tokens else {})}
        except Exception as exc:  # one candidate fails (converter or runtime), the build goes on
            check_disk_full(exc, work)  # ...unless the disk is full: then nothing else will fit either
            for path in files:
                path.unlink(missing_ok=True)
            _remove_empty_folders(target_dir)  # an artifact that is a folder (e.g. .mlpackage) goes whole
            skipped = isinstance(exc, NotApplicable)
            rejected.append({"target": target.name, "precision": name, "reason": _reason(exc),
                             "status": "skipped" if skipped else "failed"})
            bar.note(f"{'[yellow]–[/] skipped' if skipped else '[red]✗[/] failed'} {target.name} {name}: {_reason(exc)}")
        else:
            artifacts.append({**_artifact(target, name, files, work, built.recipe, check),
                              "build": usage})
        shown = _show_notes(bar, target.name, converter.notes, shown)  # a precision may have added one
        bar.advance()
    support += converter.finish()
    notes = list(converter.notes)
    meta = {"description": target.description, "format": target.format, "runtime": target.runtime,
            "device": target.device, "export": export_usage, "files": [file_entry(p, work) for p in support],
            **converter.meta, **({"notes": notes} if notes else {})}
    return {"artifacts": artifacts, "rejected": rejected, "meta": meta}


def _show_notes(bar, target: str, notes: list[str], shown: int) -> int:
    """Show the converter's notes after the first `shown` (what the user should know, e.g. little calibration
    data); returns how many are shown now."""
    for note in notes[shown:]:
        bar.note(f"[yellow]![/] {target}: {note}")
    return len(notes)


def _remove_empty_folders(root: Path) -> None:
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, (ConversionError, RunnerError)):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _previous_manifest(out: Path, source: SourceModel) -> dict | None:
    """The manifest already in DIR, if it describes the same source: its other targets are kept."""
    if not (out / "manifest.json").is_file():
        return None
    try:
        previous = read_manifest(out)
    except UserError:
        return None
    return previous if previous["source"].get("sha256") == source.sha256 else None


def _artifact(target: Target, name: str, files: list[Path], root: Path, recipe: dict, check: dict) -> dict:
    entries = [file_entry(p, root) for p in files]
    return {"target": target.name, "precision": name, "format": target.format,
            "bits": target.precision(name).bits, "files": entries, "bytes": sum(e["bytes"] for e in entries),
            "recipe": recipe, "validation": check}


def _input_record(source: SourceModel, sample: dict) -> list[dict]:
    """Input names, dtypes and shapes (None where any size goes: a text model's sequence length)."""
    specs = input_specs(source)
    if specs:
        return [{"name": s.name, "dtype": s.dtype, "shape": list(s.shape)} for s in specs]
    text = source.task in TEXT_TASKS
    return [{"name": k, "dtype": str(v.dtype), "shape": [1, None] if text and v.ndim == 2 else list(v.shape)}
            for k, v in sample.items()]


def _manifest(source, checks, previous, kept, artifacts, rejected, target_meta, targets) -> dict:
    old = previous or {}
    requires = tuple(m.split(".")[0] for t in targets for m in t.requires)
    return {
        "schema": SCHEMA,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "source": {**source.describe(), "inputs": _input_record(source, checks.samples[0])},
        "tool": {"edge_pack": __version__, "libraries": library_versions(requires)},
        "targets": {**{k: v for k, v in old.get("targets", {}).items() if k in kept}, **target_meta},
        "artifacts": [a for a in old.get("artifacts", []) if a["target"] in kept] + artifacts,
        "rejected": [r for r in old.get("rejected", []) if r["target"] in kept] + rejected,
    }
