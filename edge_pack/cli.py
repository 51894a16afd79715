"""The edge-pack command line: a thin layer over edge_pack.build / bench / verify."""
from __future__ import annotations

import json
import signal
import sys
import traceback
from pathlib import Path

import click

from . import __version__, quiet
from .errors import EXIT_FAILED, EXIT_OK, EXIT_UNVERIFIED, UserError
from .tasks import GENERATION_SCORERS

# Exit codes: 0 pass, 1 a gate failed, 2 bad input (errors.py), 3 a bug, 4 a step ran out of time
# (watchdog.py), 5 unverified: nothing failed but a limit could not be checked here, 130/143 interrupted
# by SIGINT/SIGTERM.
EXIT_INTERNAL = 3


def _verdict_exit(results) -> int:
    from .results import FAIL, PASS

    return {PASS: EXIT_OK, FAIL: EXIT_FAILED}.get(results.status, EXIT_UNVERIFIED)


class _Seconds(click.ParamType):
    """A finite number of seconds of at least 1 (click's FloatRange lets nan and inf through)."""
    name = "seconds"

    def convert(self, value, param, ctx):
        import math

        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(number) or number < 1:
            self.fail(f"{value!r} must be a finite number of seconds, at least 1", param, ctx)
        return number


SECONDS = _Seconds()
_signals: list[int] = []


def _on_sigterm(signum, frame):
    # Handled like Ctrl-C, so that work folders are removed on the way out (click turns it into Abort).
    _signals.append(signum)
    raise KeyboardInterrupt


def _emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def _show(renderable) -> None:
    from .terminal import print_to_stdout

    print_to_stdout(renderable)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edge-pack")
@click.option("-v", "--verbose", is_flag=True, help="Show the underlying tools' output and full tracebacks.")
def cli(verbose: bool) -> None:
    """Build quantized models for phones, browsers and small boards, measure them on their runtimes,
    and gate releases on an SLA written before the build."""
    quiet.VERBOSE = verbose


def _register_target_files(ctx, param, value):
    from .targets import add_target_files

    add_target_files(value)
    return value


target_file_flag = click.option(
    "--target-file", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), expose_value=False,
    callback=_register_target_files, is_eager=True, help="A target of your own (TOML, as in targets/); repeatable.")

source_flags = [
    click.option("--allow-pickle", is_flag=True, help="Allow pickle checkpoints (.bin/.pt), which can run code."),
    click.option("--trust-remote-code", is_flag=True, help="Allow model code shipped inside the model folder."),
]


def _with(options):
    def decorate(func):
        for option in reversed(options):
            func = option(func)
        return func
    return decorate


job_flags = [
    click.option("-c", "--config", "--sla", "config_path", type=click.Path(path_type=Path),
                 help="The job's edge-pack.toml (default: ./edge-pack.toml when present); flags override its keys."),
    target_file_flag,
]


def _job(config_path: Path | None):
    from .config import find_config, load_config

    return load_config(find_config(config_path))


calibration_flag = click.option(
    "--calibration", type=click.Path(path_type=Path),
    help="Data to calibrate full-integer quantization (android int8): JSONL/CSV rows, a folder of images, or an "
         ".npz of model inputs; 100+ samples. Default: calibration in edge-pack.toml.")


def _option_names(stages: tuple[str, ...]) -> set[str]:
    from .targets import builtin_targets, declared_options

    return set(declared_options(builtin_targets().values(), stages))


def _option_flags(stages: tuple[str, ...], when: str | None = None) -> list:
    """A flag per option the built-in targets declare ([options.<name>] in targets/*.toml); a job's
    [options] table sets them too (a target of your own: there only). Only flags given are passed on."""
    from .targets import builtin_targets, declared_options

    flags = []
    for option in declared_options(builtin_targets().values(), stages).values():
        default = "" if option.default in (None, False) else f" (default {option.default})"
        text = f"{', '.join(option.targets)}: {option.help}{default}{f'; when {when}' if when else ''}."
        if option.type == "bool":
            flags.append(click.option(option.flag, option.name, is_flag=True, default=None, help=text))
        else:
            kind = click.Choice([str(c) for c in option.choices]) if option.choices else \
                {"int": int, "float": float, "path": click.Path(), "str": str}[option.type]
            flags.append(click.option(option.flag, option.name, type=kind, help=text))
    return flags


def _given(flags: dict) -> dict:
    """The option flags given on the command line (not their defaults)."""
    from click.core import ParameterSource

    context = click.get_current_context()
    return {k: v for k, v in flags.items() if context.get_parameter_source(k) is ParameterSource.COMMANDLINE}


def _build_options(job, flags: dict, calibration: Path | None, timeout: float | None):
    """What build, bench SOURCE and bench of a job hand the converters: the job's calibration and
    [options], overridden by the flags given."""
    from .contracts import BuildOptions

    calibration = calibration or job.calibration
    if calibration is not None and not calibration.exists():
        raise UserError(f"calibration file {calibration} does not exist; give a .jsonl, .csv or .npz file or a "
                        "folder of images")
    # The job's SLA, when there is a job file: --precision auto searches for its quality floor.
    slas = {"sla": job.sla, "target_sla": dict(job.target_sla), "eval_path": job.eval} if job.path is not None else {}
    return BuildOptions(calibration=calibration, target_options=_stage_options(job, flags, "build"), **slas,
                        **({"timeout_s": timeout} if timeout is not None else {}))


def _stage_options(job, flags: dict, stage: str) -> dict:
    """The job's [options] of one stage (build or bench), overridden by the flags given, typed and checked."""
    from .targets import check_options, declared_options, load_targets

    targets = load_targets(job.target_files).values()
    declared = declared_options(targets, (stage,))
    return {**{k: v for k, v in job.options.items() if k in declared},
            **check_options(_given(flags), targets, (stage,))}


@cli.command()
@click.argument("source", required=False)
@click.option("-t", "--target", "targets", multiple=True,
              help="Target to build (repeatable, or 'all'). Default: targets in edge-pack.toml, else all.")
@click.option("-p", "--precision", "precisions", multiple=True, help="Precision to build (repeatable), 'sweep' "
              "for every precision a target offers, or 'auto' for the smallest per-layer mix that meets the SLA's "
              "quality floor (targets with per-layer control; --budget bounds its builds). Default: precisions in edge-pack.toml, else the target's "
              "default set (see `edge-pack targets`).")
@click.option("-o", "--out", type=click.Path(path_type=Path),
              help="Bundle folder, written whole at the end or left as it was. Default: out in edge-pack.toml, "
                   "else dist.")
@_with(job_flags)
@click.option("--timeout", type=SECONDS, default=3600, show_default=True,
              help="Seconds allowed for each export, conversion and validation step.")
@calibration_flag
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON on stdout, nothing else.")
@_with(_option_flags(("build",)))
@_with(source_flags)
def build(source, targets, precisions, out, config_path, timeout, calibration, as_json, allow_pickle,
          trust_remote_code, **option_flags) -> int:
    """Build the artifacts of SOURCE: a Hugging Face folder, an .onnx file, a PyTorch entry point
    package.module:factory, or 'demo' for the built-in all-MiniLM-L6-v2. Without SOURCE, the job in
    ./edge-pack.toml (or --config FILE) is built."""
    from . import staging
    from .pipeline import build as run_build
    from .terminal import build_table

    staging.HOLD_SIGNALS_AFTER_COMMIT = True  # once the bundle is in place, the exit code must say so
    job = _job(config_path)
    options = _build_options(job, option_flags, calibration, timeout)
    out = out or job.out or Path("dist")
    if not source and job.models:  # several models: a bundle each inside OUT (edge_pack/lineup.py)
        from .lineup import build_models

        built = build_models(job.models, job.baseline, targets or job.targets or ("all",),
                             list(precisions) or job.precisions, out, allow_pickle=allow_pickle,
                             trust_remote_code=trust_remote_code, target_files=job.target_files,
                             progress=not as_json, options=options)
        if as_json:
            _emit_json(built)
        else:
            for name, manifest in built["models"].items():
                _show(build_table(manifest, model=name))
            click.echo(f"bundle: {out}  (a bundle per model inside it; manifest.json names them)")
        failed = [r for m in built["models"].values() for r in m["rejected"] if r["status"] == "failed"]
        return EXIT_FAILED if failed else EXIT_OK
    source = source or job.source
    if not source:
        raise UserError("give SOURCE (a model folder, .onnx file, package.module:factory or 'demo'), or set "
                        "source (or [[models]]) in edge-pack.toml")
    manifest = run_build(source, targets or job.targets or ("all",), list(precisions) or job.precisions, out,
                         allow_pickle=allow_pickle, trust_remote_code=trust_remote_code,
                         target_files=job.target_files, progress=not as_json, options=options)
    if as_json:
        _emit_json(manifest)
    else:
        _show(build_table(manifest))
        click.echo(f"bundle: {out}  (manifest.json lists every file with its sha256)")
    failed = [r for r in manifest["rejected"] if r["status"] == "failed"]
    return EXIT_FAILED if failed else EXIT_OK


@cli.command()
@click.argument("path", required=False)
@click.option("-t", "--target", "targets", multiple=True, help="Target(s) to measure. Default: all in the bundle.")
@click.option("-p", "--precision", "precisions", multiple=True, help="Only these precisions.")
@click.option("--eval", "eval_path", type=click.Path(path_type=Path),
              help="Labeled data: JSONL/CSV of {text|image, label}, or .npz of model inputs (+ labels); for a "
                   "text-generation model, a task file (JSONL of {prompt, answer[, score, choices, id]}: task "
                   "accuracy) or a .txt to measure perplexity on. Default: eval in edge-pack.toml.")
@_with(job_flags)
@click.option("--runs", type=click.IntRange(min=1), help="Timed runs per artifact (default 20).")
@click.option("--warmup", type=click.IntRange(min=0), help="Untimed runs before timing (default 3).")
@click.option("--threads", type=click.IntRange(1, 64), help="Runtime threads (default: the target's).")
@click.option("--seq-len", type=click.IntRange(1, 8192), help="Tokens in the latency input of text models "
              "(default 128).")
@click.option("--runtime", help="Runner to measure with, for the targets that offer it (see `edge-pack targets`). "
              "Default: runtimes in edge-pack.toml, else each target's own.")
@click.option("--device", help="Measure on a device instead of this machine: ssh://user@host[:port] (uses your "
              "OpenSSH client and ~/.ssh/config; add ?python=PATH for another Python there).")
@click.option("--timeout", type=SECONDS, default=900, show_default=True,
              help="Seconds allowed for each artifact's run; a runtime past it is a failed candidate.")
@click.option("--chat-template/--no-chat-template", "chat_template", default=None,
              help="With a task file: wrap each prompt in the model's chat template. Default: on when the "
                   "tokenizer has one (bench.chat_template in edge-pack.toml).")
@click.option("--max-new-tokens", type=click.IntRange(min=1), help="With a task file: tokens generated at most per "
              "answer, greedily, before EOS or a stop string (default 32; bench.max_new_tokens).")
@click.option("--scorer", type=click.Choice(GENERATION_SCORERS), help="With a task file: how rows without their "
              "own \"score\" are scored (default exact; bench.scorer). Rows with choices are ranked by likelihood.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout, nothing else.")
@click.option("--source", "source_spec", metavar="ENTRY_OR_PATH",
              help="The fp32 source of the bundle (package.module:factory, or a model folder or .onnx) when the "
                   "manifest's cannot be used: an entry point is never re-imported from a manifest.")
@_with(_option_flags(("bench",)))
@calibration_flag
@_with(_option_flags(("build",), when="bench builds SOURCE"))
@_with(source_flags)
def bench(path, targets, precisions, eval_path, config_path, runs, warmup, threads, seq_len, runtime, device,
          timeout, chat_template, max_new_tokens, scorer, as_json, source_spec, calibration, allow_pickle,
          trust_remote_code, **option_flags) -> int:
    """Measure every artifact of a bundle PATH (or build SOURCE with --target first), judge each against
    the SLA, name the cheapest passing candidate per target, and write results.json, report.html,
    report.md and a release zip per target beside the bundle. Without PATH, the bundle at out in
    ./edge-pack.toml (built first from its source when it is not there yet). Exit 1 when a target has no
    passing candidate, 5 when one passes only what could be measured here (unverified)."""
    from .benchmark import BenchOptions, measure
    from .manifest import MANIFEST
    from .pipeline import build as run_build
    from .task_bench import TaskSettings
    from .terminal import verdict_table

    job = _job(config_path)
    given = _given(option_flags)
    run_flags = {k: v for k, v in given.items() if k in _option_names(("bench",))}
    build_flags = {k: v for k, v in given.items() if k not in run_flags}
    builds = not ((Path(path) if path else job.out or Path()) / MANIFEST).is_file()
    if not builds and (build_flags or calibration):
        named = ["--calibration"] * bool(calibration) + [f"--{k.replace('_', '-')}" for k in build_flags]
        raise UserError(f"{', '.join(named)} apply when bench builds from a source; {path or job.out} is a bundle "
                        "already (rebuild it with edge-pack build)")
    if builds and source_spec:
        raise UserError(f"--source names the fp32 source of a bundle; {path or job.out} is not a bundle (bench a "
                        "source directly: edge-pack bench SOURCE --target T)")
    options = _build_options(job, build_flags, calibration, None) if builds else None
    if path is None:
        if job.out is None:
            raise UserError("give a bundle folder (or SOURCE with --target), or set out in edge-pack.toml")
        path = str(job.out)
        if builds and job.models:
            from .lineup import build_models

            build_models(job.models, job.baseline, targets or job.targets or ("all",), job.precisions, job.out,
                         target_files=job.target_files, progress=not as_json, options=options)
        elif builds and job.source:
            run_build(job.source, targets or job.targets or ("all",), job.precisions, job.out,
                      target_files=job.target_files, progress=not as_json, options=options)
            source_spec = source_spec or job.source  # the job's own source, just built from: its fp32 reference
    settings = job.bench
    options = BenchOptions(eval_path=eval_path or job.eval, runs=runs or settings.get("runs", 20),
                           warmup=settings.get("warmup", 3) if warmup is None else warmup,
                           threads=threads or settings.get("threads"), seq_len=seq_len or settings.get("seq_len", 128),
                           runtime=runtime or job.runtimes or None, timeout_s=timeout, progress=not as_json,
                           runner_options={**_stage_options(job, run_flags, "bench"),
                                           **({"device": device} if device else {})},
                           build_options=options, source=source_spec,
                           tasks=TaskSettings(settings.get("chat_template") if chat_template is None else chat_template,
                                              max_new_tokens or settings.get("max_new_tokens"),
                                              scorer or settings.get("scorer")))
    results = measure(path, list(targets) or None, list(precisions) or None, options, job,
                      allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    if as_json:
        _emit_json(results.to_json())
    else:
        _show(verdict_table(results))
        _say_where(Path(path), results)
    return _verdict_exit(results)


def _say_where(folder: Path, results) -> None:
    from .report_files import REPORT_HTML

    if (folder / REPORT_HTML).is_file() and results.releases is not None:
        for name in results.releases.values():
            click.echo(f"release bundle: {folder / name}")
        click.echo(f"report: {(folder / REPORT_HTML).resolve()}")


@cli.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--screenshot", type=click.Path(dir_okay=False, path_type=Path),
              help="Also save a PNG of report.html as headless Chromium renders it.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON on stdout, nothing else.")
def report(folder, screenshot, as_json) -> int:
    """Regenerate FOLDER/report.html and FOLDER/report.md from FOLDER/results.json."""
    from .manifest import MANIFEST, read_manifest
    from .report_files import REPORT_HTML, REPORT_MD, write_reports
    from .results import read_results, write_results_files
    from .staging import locked

    results = read_results(folder)
    with locked(folder):
        if (folder / MANIFEST).is_file():  # the manifest hashes the reports: record the new ones
            write_results_files(folder, read_manifest(folder), results)
        else:
            write_reports(folder, results)
    paths = {"html": folder / REPORT_HTML, "md": folder / REPORT_MD}
    written = {"html": str(paths["html"]), "md": str(paths["md"]), "status": results.status, "passed": results.passed,
               "recommended": {n: t.recommended for n, t in results.targets.items()}}
    if screenshot:
        from .screenshot import screenshot as take

        written["screenshot"] = str(take(paths["html"], screenshot))
    if as_json:
        _emit_json(written)
    else:
        for kind in ("md", "screenshot", "html"):
            if kind in written:
                click.echo(f"{'report' if kind == 'html' else kind}: {Path(written[kind]).resolve()}")
    return EXIT_OK


@cli.group()
def bundle() -> None:
    """Release bundles: join the bundles that separate CI jobs (one per target) built."""


@bundle.command("merge")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path), help="The merged bundle folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the merged manifest and results as JSON on stdout.")
def merge(inputs, out, as_json) -> int:
    """Merge bundle folders (or release zips) of one source, each holding other targets, into OUT with
    one manifest, one results.json and the reports. Exit 1 when a merged target has no passing candidate
    or was not measured, 5 when one passes only what could be measured (unverified)."""
    from .release import merge as run_merge
    from .terminal import verdict_table

    merged = run_merge(list(inputs), out)
    results = merged["results"]
    if as_json:
        _emit_json({"manifest": merged["manifest"], "results": results and results.to_json()})
    else:
        if results is not None:
            _show(verdict_table(results))
            for name in results.unmeasured:
                click.echo(f"{name}: built but not measured")
        click.echo(f"merged {len(inputs)} bundles into {out}: {', '.join(merged['manifest']['targets'])}")
        if results is not None:
            _say_where(out, results)
    return EXIT_OK if results is None else _verdict_exit(results)


@cli.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--deep", is_flag=True, help="Also load and run every artifact once on its runtime.")
@target_file_flag
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def verify(folder, deep, as_json) -> int:
    """Re-hash every file of a bundle against its manifest (and check the manifest's schema); exit 1
    naming any missing, altered or unlisted file, or with --deep any artifact that no longer runs."""
    from .verify import verify as run_verify

    report = run_verify(folder, deep=deep)
    if as_json:
        _emit_json(report)
    else:
        for kind in ("missing", "altered", "unlisted"):
            for name in report[kind]:
                click.echo(f"{kind}: {name}")
        for failure in report.get("unloadable", []):
            click.echo(f"does not run: {failure['target']} {failure['precision']}: {failure['error']}")
        click.echo(f"{'ok' if report['ok'] else 'FAILED'}: {report['checked']} files checked in {folder}")
    return EXIT_OK if report["ok"] else EXIT_FAILED


@cli.command()
@target_file_flag
@click.option("--json", "as_json", is_flag=True, help="Print the targets as JSON.")
def targets(as_json) -> int:
    """List the targets, their precisions and defaults, and whether each toolchain is installed here."""
    from .terminal import targets_table

    rows = _target_rows()
    if as_json:
        _emit_json(rows)
    else:
        _show(targets_table(rows))
    return EXIT_OK


def _target_rows() -> list[dict]:
    """Each target with what this machine lacks: Python modules, and per runtime anything else (Node, a
    browser, a device), each with how to install it."""
    from .runners import runtime_here, runtime_missing
    from .targets import load_targets

    return [{"name": t.name, "description": t.description, "format": t.format, "precisions": list(t.precisions),
             "default_precisions": list(t.default_precisions),
             "default_precisions_for": {task: list(names) for task, names in t.task_defaults.items()},
             "runtime": t.runtime, "runtimes": list(t.runtimes),
             "missing": t.missing_modules(), "install_hint": t.install_hint,
             "runtimes_missing": {r: runtime_missing(r) for r in t.runtimes},
             "runtimes_here": {r: note for r in t.runtimes if (note := runtime_here(r))}}
            for t in load_targets().values()]


@cli.command()
@target_file_flag
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def doctor(as_json) -> int:
    """Check each target's toolchain and runtimes on this machine and say how to install what is missing.
    Exit 1 when anything is missing."""
    rows = _target_rows()
    if as_json:
        _emit_json(rows)
    else:
        for row in rows:
            modules = (f"[red]missing {', '.join(row['missing'])}[/] — {row['install_hint']}" if row["missing"]
                       else "[green]ok[/]")
            lines = [f"[bold]{row['name']}[/]: Python toolchain {modules}"]
            for runtime, missing in row["runtimes_missing"].items():
                here = row["runtimes_here"].get(runtime)
                status = "[red]not ready[/]" if missing else f"[yellow]{here}[/]" if here else "[green]ok[/]"
                lines.append(f"  runtime {runtime}{' (default)' if runtime == row['runtime'] else ''}: {status}")
                lines += [f"    - {item}" for item in missing]
            _show("\n".join(lines))
    ready = all(not r["missing"] and not any(r["runtimes_missing"].values()) for r in rows)
    return EXIT_OK if ready else EXIT_FAILED


@cli.command()
@click.argument("target")
@target_file_flag
def setup(target) -> int:
    """Install what TARGET's runtimes need beyond pip (e.g. `edge-pack setup web`: the pinned npm packages
    of Transformers.js and playwright-core, into the user's cache). System packages such as Node.js and
    Chromium are not installed: `edge-pack doctor` says which ones to install."""
    from .runners import get_runner, runtime_missing
    from .targets import get_target

    for runtime in get_target(target).runtimes:
        install = getattr(get_runner(runtime), "install", None)
        if install is not None:  # idempotent: runtimes that share packages install them once
            install(click.echo)
    missing = sorted({item for r in get_target(target).runtimes for item in runtime_missing(r)})
    for item in missing:
        click.echo(f"still missing: {item}")
    click.echo(f"{target}: {'ready' if not missing else 'not ready'}")
    return EXIT_OK if not missing else EXIT_FAILED


def main(argv: list[str] | None = None) -> None:
    """Run the CLI: user errors are one line on stderr with exit code 2, never a traceback."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        code = cli.main(args=argv, prog_name="edge-pack", standalone_mode=False)
    except UserError as exc:
        click.echo(f"edge-pack: error: {exc.message}", err=True)
        code = exc.exit_code
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("edge-pack: interrupted; output folders were left as they were", err=True)
        code = 128 + (_signals[0] if _signals else signal.SIGINT)
    except Exception as exc:  # a bug: say so in one line, the traceback with -v
        if quiet.VERBOSE:
            traceback.print_exc()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        click.echo(f"edge-pack: internal error: {type(exc).__name__}: {first} (rerun with -v for the traceback "
                   "and report it)", err=True)
        code = EXIT_INTERNAL
    # The outcome is decided: Python's shutdown restores the default signal handlers, and a signal arriving
    # now would end the process with a code that contradicts what was done.
    from .staging import hold_interrupts

    hold_interrupts()
    sys.exit(code if isinstance(code, int) else EXIT_OK)
