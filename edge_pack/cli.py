"""The edge-pack command line: a thin layer over edge_pack.build / bench / verify."""
from __future__ import annotations

import json
import signal
import sys
import traceback
from pathlib import Path

import click

from . import __version__, quiet
from .errors import EXIT_FAILED, EXIT_OK, UserError

# Exit codes: 0 pass, 1 a gate failed, 2 bad input (errors.py), 3 a bug, 4 a step ran out of time
# (watchdog.py), 130/143 interrupted by SIGINT/SIGTERM.
EXIT_INTERNAL = 3
_signals: list[int] = []


def _on_sigterm(signum, frame):
    # Handled like Ctrl-C, so that work folders are removed on the way out (click turns it into Abort).
    _signals.append(signum)
    raise KeyboardInterrupt
DEFAULT_SLA = "edge-pack.toml"


def _emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def _show(renderable) -> None:
    from .report import print_to_stdout

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


@cli.command()
@click.argument("source")
@click.option("-t", "--target", "targets", multiple=True, help="Target to build (repeatable, or 'all'). Default: all.")
@click.option("-p", "--precision", "precisions", multiple=True, help="Precision to build (repeatable). "
              "Default: the target's default set (see `edge-pack targets`).")
@click.option("-o", "--out", type=click.Path(path_type=Path), default=Path("dist"), show_default=True,
              help="Bundle folder; written whole at the end, or left as it was.")
@target_file_flag
@click.option("--timeout", type=click.FloatRange(min=1), default=3600, show_default=True,
              help="Seconds allowed for each export, conversion and validation step.")
@click.option("--imatrix", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="pi: calibration text for an importance matrix that guides llama.cpp's quantizer.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON on stdout, nothing else.")
@_with(source_flags)
def build(source, targets, precisions, out, timeout, imatrix, as_json, allow_pickle, trust_remote_code) -> int:
    """Build the artifacts of SOURCE: a Hugging Face folder, an .onnx file, a PyTorch entry point
    package.module:factory, or 'demo' for the built-in all-MiniLM-L6-v2."""
    from .pipeline import BuildOptions, build as run_build
    from .report import build_table

    manifest = run_build(source, targets or ("all",), list(precisions) or None, out, allow_pickle=allow_pickle,
                         trust_remote_code=trust_remote_code, progress=not as_json,
                         options=BuildOptions(timeout_s=timeout,
                                              target_options={"imatrix": imatrix} if imatrix else {}))
    if as_json:
        _emit_json(manifest)
    else:
        _show(build_table(manifest))
        click.echo(f"bundle: {out}  (manifest.json lists every file with its sha256)")
    failed = [r for r in manifest["rejected"] if r["status"] == "failed"]
    return EXIT_FAILED if failed else EXIT_OK


@cli.command()
@click.argument("path")
@click.option("-t", "--target", "targets", multiple=True, help="Target(s) to measure. Default: all in the bundle.")
@click.option("-p", "--precision", "precisions", multiple=True, help="Only these precisions.")
@click.option("--eval", "eval_path", type=click.Path(path_type=Path),
              help="Labeled data: JSONL/CSV of {text|image, label}, or .npz of model inputs (+ labels); "
              "for a text-generation model, a .txt to measure perplexity on.")
@click.option("--sla", "sla_path", type=click.Path(path_type=Path),
              help=f"SLA file (default: ./{DEFAULT_SLA} when present).")
@click.option("--runs", default=20, show_default=True, help="Timed runs per artifact.")
@click.option("--warmup", default=3, show_default=True, help="Untimed runs before timing.")
@click.option("--threads", type=click.IntRange(1, 64), help="Runtime threads (default: the target's).")
@click.option("--seq-len", default=128, show_default=True, type=click.IntRange(1, 8192),
              help="Tokens in the latency input of text models.")
@click.option("--runtime", help="Runner to measure with (see `edge-pack targets`).")
@click.option("--device", help="Measure on a device instead of this machine: ssh://user@host[:port] (uses your "
              "OpenSSH client and ~/.ssh/config; add ?python=PATH for another Python there).")
@target_file_flag
@click.option("--timeout", type=click.FloatRange(min=1), default=900, show_default=True,
              help="Seconds allowed for each artifact's run; a runtime past it is a failed candidate.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout, nothing else.")
@_with(source_flags)
def bench(path, targets, precisions, eval_path, sla_path, runs, warmup, threads, seq_len, runtime, device, timeout,
          as_json, allow_pickle, trust_remote_code) -> int:
    """Measure every artifact of a bundle PATH (or build SOURCE with --target first), judge each against
    the SLA and print the verdict. Exit 1 when a target has no passing candidate."""
    from .benchmark import bench as run_bench
    from .report import verdict_table

    if sla_path is None and Path(DEFAULT_SLA).is_file():
        sla_path = Path(DEFAULT_SLA)
    results = run_bench(path, targets=list(targets) or None, precisions=list(precisions) or None,
                        eval_path=eval_path, sla_path=sla_path, runs=runs, warmup=warmup, threads=threads,
                        seq_len=seq_len, runtime=runtime, timeout_s=timeout, allow_pickle=allow_pickle,
                        trust_remote_code=trust_remote_code, progress=not as_json, device=device)
    if as_json:
        _emit_json(results)
    else:
        _show(verdict_table(results))
    return EXIT_OK if results["passed"] else EXIT_FAILED


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
    from .report import targets_table
    from .targets import load_targets

    rows = [{"name": t.name, "description": t.description, "format": t.format, "precisions": list(t.precisions),
             "default_precisions": list(t.default_precisions), "runtimes": list(t.runtimes),
             "missing": t.missing_modules(), "install_hint": t.install_hint} for t in load_targets().values()]
    if as_json:
        _emit_json(rows)
    else:
        _show(targets_table(rows))
    return EXIT_OK


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
    sys.exit(code if isinstance(code, int) else EXIT_OK)
