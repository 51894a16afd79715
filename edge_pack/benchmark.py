"""bench: measure every artifact of a bundle on its runtime against the fp32 source, judge each against
the SLA, decide per target, and write results.json, the reports and one release zip per target (and the
results into the manifest)."""
from __future__ import annotations

import datetime as dt
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import __version__, metrics
from .config import Config, load_config
from .contracts import BuildOptions
from .decide import cliff, recommendation
from .report_files import write_reports
from .errors import RunnerError, UserError
from .evalset import Preprocessor, make_evalset
from .hashing import text_sha256
from .manifest import MANIFEST, RESULTS, read_manifest, write_manifest
from .measure import reference_vectors, run_artifact
from .pipeline import build
from .progress import steps
from .quiet import captured
from .release import write_release_zips
from .runners import RunOptions, get_runner, runtime_missing
from .sla import judge, unchecked
from .source import InputSpec, SourceModel, load_source
from .staging import check_disk_full, locked, write_atomic
from .targets import get_target

MB = 1_000_000


def bench(path: str | Path, *, targets: list[str] | None = None, precisions: list[str] | None = None,
          eval_path: str | Path | None = None, sla_path: str | Path | None = None, runs: int = 20,
          warmup: int = 3, threads: int | None = None, seq_len: int = 128, runtime: str | dict | None = None,
          timeout_s: float = 900.0, allow_pickle: bool = False, trust_remote_code: bool = False,
          progress: bool = False, target_files: tuple[Path, ...] = (), config: Config | None = None,
          runner_options: dict | None = None, device: str | None = None,
          build_options: BuildOptions | None = None, source: str | None = None) -> dict:
    """Measure a bundle folder, or build SOURCE into a temporary folder first and measure that.
    `sla_path` is an edge-pack.toml (its [sla] and [cost] tables apply); `config` an already loaded one.
    runner_options: runner-specific settings (RunOptions.extra), e.g. {"compute_units": "cpu-ne"}. `device`
    (e.g. ssh://pi@raspberrypi.local) runs the artifacts there, for runners that can. `build_options` are
    the converters' (calibration, target options) when SOURCE is built first. `source` names the fp32 source
    of a bundle (an entry point or a path) when the manifest's cannot be used: an entry point is never
    re-imported from a manifest, since that would run code a bundle names."""
    config = config or load_config(sla_path, tuple(target_files))
    options = dict(eval_path=eval_path, config=config, runs=runs, warmup=warmup, threads=threads,
                   seq_len=seq_len, runtime=runtime, timeout_s=timeout_s, progress=progress,
                   runner_options={**(runner_options or {}), **({"device": device} if device else {})})
    if (Path(path) / MANIFEST).is_file():
        with locked(Path(path)):  # a build swapping this folder meanwhile would mix two bundles' numbers
            given = _given_source(source, Path(path), allow_pickle, trust_remote_code) if source else None
            return bench_bundle(Path(path), targets=targets, precisions=precisions, source=given, **options)
    if not targets:
        raise UserError(f"{path} is not a bundle (no {MANIFEST}); to build and measure a source, add --target")
    for name in [runtime] if isinstance(runtime, str) else (runtime or {}).values():
        _check_ready(name)  # before the build, not after it
    source = load_source(str(path), allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    with tempfile.TemporaryDirectory(prefix="edge-pack-bench-") as tmp:
        bundle = Path(tmp) / "bundle"
        build(source, targets, precisions, bundle, progress=progress, target_files=config.target_files,
              options=build_options)
        return bench_bundle(bundle, targets=targets, precisions=precisions, source=source, write=False, **options)


def _given_source(spec: str, bundle: Path, allow_pickle: bool, trust_remote_code: bool) -> SourceModel:
    """The source named with --source, if it is the one the bundle was built from."""
    source = load_source(spec, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    if source.sha256 != read_manifest(bundle)["source"].get("sha256"):
        raise UserError(f"--source {spec} is not the source {bundle} was built from (its content differs from the "
                        "manifest's); name that source, or rebuild the bundle from this one")
    return source


def _baseline_source(manifest: dict) -> SourceModel | None:
    """The source the bundle was built from, if it is still where it was and unchanged. A PyTorch entry
    point is not re-imported from a manifest: that would run code a bundle names."""
    described = manifest["source"]
    if described.get("kind") not in ("hf", "onnx"):
        return None
    try:
        source = load_source(described["path"])
    except (UserError, KeyError):
        return None
    return source if source.sha256 == described.get("sha256") else None


def bench_bundle(bundle: Path, *, targets: list[str] | None = None, precisions: list[str] | None = None,
                 eval_path=None, config: Config | None = None, runs: int = 20, warmup: int = 3,
                 threads: int | None = None, seq_len: int = 128, runtime: str | dict | None = None,
                 timeout_s: float = 900.0, progress: bool = False, write: bool = True,
                 source: SourceModel | None = None,
                 runner_options: dict | None = None) -> dict:
    manifest = read_manifest(bundle)
    config = config or Config()
    names = list(dict.fromkeys(targets)) if targets and "all" not in targets else list(manifest.get("targets", {}))
    for name in names:
        if name not in manifest.get("targets", {}):
            raise UserError(f"{bundle} has no {name} artifacts; build them with: edge-pack build SOURCE --target {name}")
    if runs < 1 or warmup < 0:
        raise UserError("--runs must be at least 1 and --warmup at least 0")
    if isinstance(runtime, str) and not any(runtime in get_target(name).runtimes for name in names):
        offered = {name: get_target(name).runtimes for name in names}
        raise UserError(f"no target measured here runs on {runtime} ("
                        + "; ".join(f"{n}: {', '.join(r)}" for n, r in offered.items()) + ")")
    task = manifest["source"]["task"]
    source = source or _baseline_source(manifest)
    specs = [InputSpec(i["name"], i["dtype"], tuple(i["shape"])) for i in manifest["source"].get("inputs", [])]
    chosen = [a for a in manifest["artifacts"] if a["target"] in names
              and (not precisions or a["precision"] in precisions)]
    # Everything a user can get wrong is checked before the first measurement.
    run_options = RunOptions(warmup=warmup, runs=runs, timeout_s=timeout_s, extra=dict(runner_options or {}))
    plans = [_plan(name, manifest, bundle, chosen, source, specs, config, eval_path, seq_len, runtime, threads,
                   run_options) for name in names]
    rows, per_target = [], {}
    with steps(progress) as bar:
        bar.start("measuring", total=len(chosen))
        for plan in plans:
            name, evalset = plan["name"], plan["evalset"]
            baseline, kind, origin = _baseline(source, task, evalset, plan["artifacts"], bundle, plan["runtime"],
                                               _why_no_source(manifest))
            labeled = evalset.labels is not None
            base_metrics = {"accuracy": metrics.accuracy(kind, baseline, evalset.labels)} if labeled else {}
            base_metrics.update(metrics.intrinsic(kind, baseline, evalset.samples))
            quality_name, base_value = metrics.headline(kind, {**base_metrics, "cosine_mean": 1.0,
                                                               "top1_agreement": 1.0, "same_top1": 1.0}, labeled)
            target_rows = []
            for artifact in plan["artifacts"]:
                bar.step(f"{name}: measuring {artifact['precision']} on {plan['runtime']}")
                row = _measure(artifact, bundle, plan["runtime"], task, evalset, plan["options"], baseline, kind,
                               labeled, base_value, plan["device"])
                if plan["cost"] is not None and not row["error"]:
                    row["cost_per_month"] = plan["cost"].per_month(row["latency_p50_ms"])
                reasons = judge(row, plan["sla"])
                row["verdict"] = {"passed": not reasons, "reasons": reasons, "unchecked": unchecked(row, plan["sla"])}
                target_rows.append(row)
                bar.advance()
            cost = plan["cost"].describe() if plan["cost"] else None
            decision = recommendation(name, target_rows, plan["sla"], cost and cost["currency"])
            measured_on = next((r["runtime"] for r in target_rows if r.get("runtime")), plan["runtime"])
            per_target[name] = {
                "runtime": plan["runtime"], "measured_on": measured_on, "threads": plan["options"].threads,
                "sla": plan["sla"].describe(), "cost": cost, "device": manifest["targets"][name].get("device", {}),
                "eval": evalset.origin, "baseline": {"origin": origin, "quality": {"name": quality_name,
                                                                                 "value": base_value},
                                                     "metrics": base_metrics},
                "recommended": decision["recommended"], "passed": decision["recommended"] is not None,
                "decision": decision, "cliff": cliff(target_rows, plan["sla"], base_value),
                "rejected_at_build": [r for r in manifest.get("rejected", []) if r["target"] == name],
            }
            rows += target_rows
    results = {"schema": 1, "edge_pack": __version__, "bundle": str(bundle.resolve()),
               "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "source": manifest["source"],
               "tool": manifest.get("tool", {}), "options": {"runs": runs, "warmup": warmup, "seq_len": seq_len},
               "sla_file": str(config.path) if config.path else None,
               "targets": per_target, "rows": rows, "passed": all(t["passed"] for t in per_target.values())}
    if write:
        try:
            _write(bundle, manifest, results)
        except OSError as exc:
            check_disk_full(exc, bundle)
            raise
    return results


def _plan(name, manifest, bundle, chosen, source, specs, config, eval_path, seq_len, runtime, threads,
          run_options: RunOptions) -> dict:
    """What measuring one target needs: its runtime, its inputs (the eval file read and checked now) and SLA."""
    target = get_target(name, config.target_files)
    # One runtime name applies to the targets that offer it (others keep theirs); a dict names one per target.
    wanted = runtime.get(name) if isinstance(runtime, dict) else runtime if runtime in target.runtimes else None
    run_on = wanted or target.runtime
    if run_on not in target.runtimes:
        raise UserError(f"target {name} runs on {', '.join(target.runtimes)}, not {run_on}")
    _check_ready(run_on)
    if run_options.extra.get("device"):
        check_device = getattr(get_runner(run_on), "check_device", None)
        if check_device is None:
            raise UserError(f"target {name}'s runner ({run_on}) measures on this machine only; choose the targets "
                            "to measure on the device with --target (e.g. --target pi)")
        check_device(run_options.extra["device"])
    task = manifest["source"]["task"]
    target_dir = bundle / name
    support = target_dir if (target_dir / "config.json").is_file() else (source.support_dir if source else None)
    pre = Preprocessor(task, support, specs or None)
    evalset = make_evalset(pre, eval_path, seq_len, _label_names(support, task), embedder=task == "feature-extraction")
    return {"name": name, "runtime": run_on, "evalset": evalset, "sla": config.sla_for(name),
            "cost": config.cost_for(name), "device": target.device,
            "artifacts": [a for a in chosen if a["target"] == name],
            "options": replace(run_options, threads=threads or target.threads)}


def _check_ready(runtime: str) -> None:
    missing = runtime_missing(runtime)
    if missing:
        raise UserError(f"the {runtime} runtime is not ready here: {'; '.join(missing)}")


def _why_no_source(manifest: dict) -> str:
    if manifest["source"].get("kind") == "torch":
        return "a PyTorch entry point is not re-imported from a manifest"
    return "the fp32 source is not where the manifest says, or it changed"


def _label_names(folder: Path | None, task: str) -> list[str] | None:
    if folder is None or task not in ("text-classification", "image-classification"):
        return None
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
    id2label = config.get("id2label") or {}
    return [id2label[k] for k in sorted(id2label, key=int)] or None


def _baseline(source, task, evalset, artifacts, bundle, runtime, why_not_source: str):
    """fp32 source outputs (torch, or onnxruntime for an ONNX source); when the source is not available,
    the fp32 artifact stands in and the results say why."""
    if source is not None:
        with captured():  # loading a model can log (e.g. transformers probing optional quantization kernels)
            vectors, kind = reference_vectors(source.reference(), task, evalset.samples)
        engine = {"hf": "PyTorch", "onnx": "onnxruntime", "torch": "PyTorch"}[source.kind]
        return vectors, kind, f"fp32 source ({engine})"
    fp32 = next((a for a in artifacts if a["bits"] >= 32), None)  # "fp32", "f32": named as its format does
    if fp32 is None:
        raise UserError(f"{why_not_source}, and the bundle has no fp32 artifact to stand in; name the source with "
                        "--source ENTRY_OR_PATH, or rebuild with the fp32 precision")
    result, vectors = run_artifact(runtime, [bundle / f["path"] for f in fp32["files"]], task, evalset,
                                   RunOptions(warmup=0, runs=0))
    return vectors, metrics.output_kind(task, result.outputs[0]), f"fp32 artifact on {result.runtime} ({why_not_source})"


def _warnings(size_mb: float, peak_rss_mb: float | None, device: dict) -> list[str]:
    """What the device's RAM (targets/<name>.toml) says about this candidate."""
    ram = device.get("ram_mb")
    if not ram:
        return []
    found = []
    if size_mb > ram:
        found.append(f"{size_mb:.0f} MB of weights exceed the {device.get('name', 'device')}'s {ram} MB of RAM")
    elif peak_rss_mb and peak_rss_mb > ram:
        found.append(f"peak memory {peak_rss_mb:.0f} MB exceeds the {device.get('name', 'device')}'s {ram} MB of RAM")
    return found


def _content(artifact: dict) -> str:
    """What the artifact's files hold, whatever they are named: two precisions a format writes alike
    (web's q8 and int8 for a model without Conv) are one candidate."""
    return text_sha256(" ".join(sorted(f["sha256"] for f in artifact["files"])))


def _measure(artifact, bundle, runtime, task, evalset, opts, baseline, kind, labeled, base_value, device) -> dict:
    size_mb = artifact["bytes"] / MB
    row = {"target": artifact["target"], "precision": artifact["precision"], "format": artifact["format"],
           "bits": artifact["bits"], "bytes": artifact["bytes"], "size_mb": size_mb,
           "files": [f["path"] for f in artifact["files"]], "content": _content(artifact),
           "build": artifact.get("build"), "error": None,
           "warnings": _warnings(size_mb, None, device)}
    try:
        result, vectors = run_artifact(runtime, [bundle / f["path"] for f in artifact["files"]], task, evalset, opts)
    except RunnerError as exc:
        return {**row, "error": f"failed on {runtime}: {exc}"}
    found = {**metrics.fidelity(kind, vectors, baseline), **metrics.intrinsic(kind, vectors, evalset.samples),
             **result.metrics}
    if labeled:
        found["accuracy"] = metrics.accuracy(kind, vectors, evalset.labels)
    name, value = metrics.headline(kind, found, labeled)
    ratio = value / base_value if base_value else None
    note = result.latency_note  # timings that would not be the device's are not reported at all
    obtained = {"size": "measured", "quality": result.obtained.get("outputs", "measured"),
                "latency": result.obtained.get("latency", "measured")}
    estimates = _estimates(artifact["bytes"], device, result.host, found) if kind == metrics.NEXT_TOKEN else {}
    return {**row, "runtime": result.runtime, "host": result.host, "threads": opts.threads, "obtained": obtained,
            "load_ms": None if note else result.load_ms, "latency_p50_ms": metrics.percentile(result.latency_ms, 50),
            "latency_p90_ms": metrics.percentile(result.latency_ms, 90), "latency_runs": len(result.latency_ms),
            "latency_note": note, "peak_rss_mb": result.peak_rss_mb, "metrics": found,
            "warnings": _warnings(size_mb, result.peak_rss_mb, device),
            "quality": {"name": name, "value": value, "baseline": base_value, "ratio": ratio,
                        "delta": value - base_value}, **({"estimates": estimates} if estimates else {})}


def _estimates(size_bytes: int, device: dict, host: dict, found: dict) -> dict:
    """A decoder's generation ceiling on each board profile of the target (targets/<name>.toml): every
    token reads every weight once, so tokens/s <= bandwidth / bytes. An estimate, labelled as one; when the
    measurement ran on a board that matches a profile, the measured share of the ceiling is given too."""
    found_estimates = {}
    for key, profile in (device.get("profiles") or {}).items():
        bandwidth = profile.get("bandwidth_gb_s")
        if not bandwidth:
            continue
        ceiling = bandwidth * 1e9 / size_bytes
        entry = {"name": profile.get("name", key), "short": profile.get("short", profile.get("name", key)),
                 "bandwidth_gb_s": bandwidth, "tg_tokens_per_s": ceiling}
        measured_on = (host or {}).get("device_model") or ""
        if profile.get("match") and profile["match"] in measured_on and found.get("tg_tokens_per_s"):
            entry["measured_ratio"] = found["tg_tokens_per_s"] / ceiling
        found_estimates[key] = entry
    return found_estimates


def _write(bundle: Path, manifest: dict, results: dict) -> None:
    """The measurements and verdict into the manifest, a release zip per target that has a candidate to
    ship (listed in the manifest), results.json, and the reports (last: they name the zips)."""
    measured = {(r["target"], r["precision"]): r for r in _plain(results["rows"])}
    for artifact in manifest["artifacts"]:
        row = measured.get((artifact["target"], artifact["precision"]))
        if row:
            artifact["measured"] = {k: row.get(k) for k in ("runtime", "load_ms", "latency_p50_ms", "latency_p90_ms",
                                                            "latency_note", "peak_rss_mb", "quality", "metrics", "verdict", "error",
                                                            "obtained", "cost_per_month")}
    # Like results.json, the verdict and the release zips are the last bench's.
    manifest["verdict"] = {name: {"recommended": t["recommended"], "passed": t["passed"], "sla": t["sla"]}
                           for name, t in results["targets"].items()}
    manifest["releases"] = write_release_zips(bundle, manifest, _plain(results))
    results["releases"] = {name: entry["path"] for name, entry in manifest["releases"].items()}
    write_atomic(bundle / RESULTS, json.dumps(results, indent=2, default=_jsonable) + "\n")
    write_manifest(bundle, manifest)
    write_reports(bundle, _plain(results))


def _plain(value):
    """A JSON-only copy (numpy scalars become numbers), as readers of results.json see it."""
    return json.loads(json.dumps(value, default=_jsonable))


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
