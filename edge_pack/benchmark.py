"""bench: measure every artifact of a bundle on its runtime against the fp32 source, judge each against
the SLA, decide per target, and write results.json, the reports and one release zip per target (and the
results into the manifest, which hashes results.json and the reports).

Latency is measured so that a verdict does not depend on the moment a candidate ran: a target's
candidates are timed interleaved, in rounds (one process per candidate per round), so load drift hits
them alike; identical files are measured once; the machine's load average is recorded before and during;
and when a p50's interval still holds the latency limit after a bounded number of extra rounds, the
verdict says the timings cannot decide it (unverified) instead of flipping between runs."""
from __future__ import annotations

import datetime as dt
import math
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import __version__, metrics, statistics, task_eval
from .cascade_row import add_cascades, check_built
from .config import Config, load_config
from .contracts import BuildOptions
from .decide import cliff, recommendation
from .errors import RunnerError, UserError
from .evalset import LM_TASK, Preprocessor, label_names, make_evalset
from .hashing import text_sha256
from .lineup import is_job, measure_models
from .manifest import MANIFEST, read_manifest
from .measure import answers_asks, reference_vectors, run_artifact
from .pipeline import build
from .progress import steps
from .quiet import captured
from .release import write_release_zips
from .results import Quality, Results, Row, TargetResult, write_results_files
from .runners import RunOptions, get_runner, runtime_missing
from .scoring import classifier_confidence
from .sla import Sla, judge
from .source import InputSpec, SourceModel, load_source
from .staging import check_disk_full, locked
from .targets import get_target
from .task_bench import TaskSettings, correctness, task_eval_for, torch_baseline
from .tasks import is_task_file
from .weight_bits import bits_per_weight

MB = 1_000_000


@dataclass(frozen=True)
class BenchOptions:
    """How to measure, beside BuildOptions (how to build): from the command line, the job's [bench] table
    or the Python API."""
    eval_path: Path | None = None
    runs: int = 20  # timed runs per candidate, split over the rounds
    warmup: int = 3
    threads: int | None = None  # None: the target's
    seq_len: int = 128
    runtime: str | dict | None = None  # a runner name, or {target: runner}
    timeout_s: float = 900.0
    progress: bool = False
    runner_options: dict = field(default_factory=dict)  # runner-specific (device, compute_units...)
    # The converters' options (calibration, target options) when SOURCE is built first.
    build_options: BuildOptions | None = None
    # The fp32 source of a bundle (an entry point or a path) when the manifest's cannot be used: an entry
    # point is never re-imported from a manifest, since that would run code a bundle names.
    source: str | None = None
    rounds: int = 4  # interleaved latency rounds (at most `runs`)
    extra_rounds: int = 4  # at most this many more when a p50 is too noisy to decide a latency limit
    # How a decoder is asked a task file's rows (--eval tasks.jsonl): chat template, new tokens, scorer.
    tasks: TaskSettings = field(default_factory=TaskSettings)

    def check(self) -> None:
        if self.runs < 1 or self.warmup < 0:
            raise UserError("--runs must be at least 1 and --warmup at least 0")
        if not (isinstance(self.timeout_s, (int, float)) and math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise UserError(f"--timeout must be a finite number of seconds, not {self.timeout_s!r}")


def bench(path: str | Path, targets: list[str] | None = None, precisions: list[str] | None = None, *,
          sla_path: str | Path | None = None, config: Config | None = None, allow_pickle: bool = False,
          trust_remote_code: bool = False, target_files: tuple[Path, ...] = (), device: str | None = None,
          **settings) -> dict:
    """The Python API: measure a bundle (or build SOURCE with targets first) and return what `bench --json`
    prints. `settings` are BenchOptions fields (runs=, eval_path=, runtime=, ...); `sla_path` is an
    edge-pack.toml (its [sla] and [cost] tables apply); `device` (ssh://pi@host) runs there."""
    if isinstance(settings.get("tasks"), dict):  # tasks={"chat_template": False, "max_new_tokens": 16}
        settings["tasks"] = TaskSettings(**settings["tasks"])
    options = BenchOptions(**settings)
    if device:
        options = replace(options, runner_options={**options.runner_options, "device": device})
    return measure(path, targets, precisions, options, config or load_config(sla_path, tuple(target_files)),
                   allow_pickle=allow_pickle, trust_remote_code=trust_remote_code).to_json()


def measure(path: str | Path, targets: list[str] | None, precisions: list[str] | None, options: BenchOptions,
            config: Config, allow_pickle: bool = False, trust_remote_code: bool = False) -> Results:
    """Measure a bundle folder, or build SOURCE into a temporary folder first and measure that."""
    options.check()
    if (Path(path) / MANIFEST).is_file():
        with locked(Path(path)):  # a build swapping this folder meanwhile would mix two bundles' numbers
            if is_job(read_manifest(Path(path))):  # several models: one bundle each, judged together
                return measure_models(Path(path), targets, precisions, options, config)
            given = (_given_source(options.source, Path(path), allow_pickle, trust_remote_code) if options.source
                     else None)
            return measure_bundle(Path(path), targets, precisions, options, config, source=given)
    if not targets:
        raise UserError(f"{path} is not a bundle (no {MANIFEST}); to build and measure a source, add --target")
    runtime = options.runtime
    for name in [runtime] if isinstance(runtime, str) else (runtime or {}).values():
        _check_ready(name)  # before the build, not after it
    source = load_source(str(path), allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    with tempfile.TemporaryDirectory(prefix="edge-pack-bench-") as tmp:
        bundle = Path(tmp) / "bundle"
        build(source, targets, precisions, bundle, progress=options.progress, target_files=config.target_files,
              options=options.build_options)
        return measure_bundle(bundle, targets, precisions, options, config, source=source, write=False)


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


def measure_bundle(bundle: Path, targets: list[str] | None, precisions: list[str] | None, options: BenchOptions,
                   config: Config, source: SourceModel | None = None, write: bool = True) -> Results:
    manifest = read_manifest(bundle)
    options.check()
    names = list(dict.fromkeys(targets)) if targets and "all" not in targets else list(manifest.get("targets", {}))
    for name in names:
        if name not in manifest.get("targets", {}):
            raise UserError(f"{bundle} has no {name} artifacts; build them with: edge-pack build SOURCE --target {name}")
    runtime = options.runtime
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
    if config.cascade is not None and not config.models:
        check_built(config, {None: {a["precision"] for a in chosen}})
    plans = [_plan(name, manifest, bundle, chosen, source, specs, config, options) for name in names]
    rows, per_target = [], {}
    with steps(options.progress) as bar:
        bar.start("measuring", total=len(chosen))
        for plan in plans:
            target_rows, result = _measure_target(plan, manifest, bundle, source, task, bar)
            per_target[plan["name"]] = result
            rows += target_rows
    results = Results(source=manifest["source"], targets=per_target, rows=rows, edge_pack=__version__,
                      bundle=str(bundle.resolve()),
                      created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                      tool=manifest.get("tool", {}), sla_file=str(config.path) if config.path else None,
                      options={"runs": options.runs, "warmup": options.warmup, "seq_len": options.seq_len,
                               "rounds": min(options.rounds, options.runs)})
    if config.cascade is not None and not config.models:  # a job of several models routes in lineup.py
        add_cascades(results, config)
    if write:
        try:
            _write(bundle, manifest, results)
        except OSError as exc:
            check_disk_full(exc, bundle)
            raise
    return results


def _measure_target(plan: dict, manifest: dict, bundle: Path, source, task: str, bar) -> tuple[list[Row], TargetResult]:
    name, evalset, sla = plan["name"], plan["evalset"], plan["sla"]
    tasks = plan["tasks"]
    baseline, kind, origin, task_samples = _baseline(source, task, evalset, plan["artifacts"], bundle,
                                                     plan["runtime"], _why_no_source(manifest), tasks)
    labeled = evalset.labels is not None or tasks is not None
    base_correct = (correctness(task_samples) if tasks else metrics.correct(kind, baseline, evalset.labels)
                    if labeled else None)
    base_metrics = {"accuracy": float(base_correct.mean())} if labeled else {}
    base_samples = ([s.to_json() for s in task_samples] if tasks else labeled_samples(kind, baseline, base_correct)
                    if labeled else [])
    base_metrics.update(metrics.intrinsic(kind, baseline, evalset.samples))
    quality_name, base_value = metrics.headline(kind, {**base_metrics, "cosine_mean": 1.0,
                                                       "top1_agreement": 1.0, "same_top1": 1.0}, labeled)
    _check_baseline(name, quality_name, base_value, sla, evalset.origin)
    load_before = _load()
    rows = [_row(a, bundle, plan["device"]) for a in plan["artifacts"]]
    timings: dict[int, dict] = {}  # row index -> what its runs gave
    first_of: dict[str, int] = {}  # content hash -> the row measured for it
    for index, (artifact, row) in enumerate(zip(plan["artifacts"], rows)):
        bar.step(f"{name}: measuring {artifact['precision']} on {plan['runtime']}")
        if row.content in first_of:
            bar.advance()
            continue  # the same bytes as an earlier candidate: one measurement serves both
        first_of[row.content] = index
        try:
            result, vectors = run_artifact(plan["runtime"], _paths(bundle, artifact), task, evalset,
                                           _round_options(plan, 0), asks=tasks.asks if tasks else None)
        except RunnerError as exc:
            row.error = f"failed on {plan['runtime']}: {exc}"
            bar.advance()
            continue
        _fill(row, result, vectors, kind, evalset, baseline, base_correct, base_value, plan)
        timings[index] = {"result": result, "latency": list(result.latency_ms), "rounds": 1, "load": [_load()]}
        bar.advance()
    _more_rounds(plan, bundle, task, evalset, plan["artifacts"], timings)
    for index, found in timings.items():
        _latency(rows[index], found, sla)
    for index, row in enumerate(rows):
        if row.content in first_of and first_of[row.content] != index:
            _copy_measurement(row, rows[first_of[row.content]])
    for row in rows:
        if plan["cost"] is not None and not row.error:
            row.cost_terms = plan["cost"].terms(row.latency_p50_ms, row.bytes) or []
            row.cost_per_month = plan["cost"].per_month(row.latency_p50_ms, row.bytes)
        row.verdict = judge(row, sla)
    cost = plan["cost"].describe() if plan["cost"] else None
    decision = recommendation(name, rows, sla, cost and cost["currency"])
    measured_on = next((r.runtime for r in rows if r.runtime), plan["runtime"])
    result = TargetResult(
        name=name, runtime=plan["runtime"], measured_on=measured_on, threads=plan["options"].threads,
        sla=sla.describe(), eval=_eval_origin(evalset, tasks), decision=decision, cliff=cliff(rows, sla, base_value),
        cost=cost, device=manifest["targets"][name].get("device", {}),
        baseline={"origin": origin, "quality": {"name": quality_name, "value": base_value}, "metrics": base_metrics,
                  **({"samples": base_samples} if base_samples else {})},
        rejected_at_build=[r for r in manifest.get("rejected", []) if r["target"] == name],
        sensitivity=manifest["targets"][name].get("sensitivity"),
        load={"before": load_before, "during": max((l for t in timings.values() for l in t["load"]),
                                                   default=load_before)})
    return rows, result


def _check_baseline(name: str, quality_name: str, value: float, sla: Sla, origin: str) -> None:
    """A share of nothing is no limit: a ratio limit needs a baseline quality above 0."""
    if sla.min_accuracy_ratio and not (math.isfinite(value) and value > 0):
        raise UserError(f"{name}: the fp32 baseline's {quality_name} on {origin} is {value:g}, so min_accuracy_ratio "
                        f"(a share of it) cannot be checked; set an absolute floor with min_accuracy (and "
                        f"min_accuracy_ratio = 0) in [sla], or give eval data the source gets right")


def _paths(bundle: Path, artifact: dict) -> list[Path]:
    return [bundle / f["path"] for f in artifact["files"]]


def _round_options(plan: dict, round_index: int) -> RunOptions:
    """Round 0 runs every eval input and the warm-up; later rounds time the latency input only."""
    options, rounds = plan["options"], plan["rounds"]
    # the rounds share `runs` exactly (5 runs over 4 rounds: 2+1+1+1); an extra round times one more share
    per_round = options.runs // rounds + (round_index < options.runs % rounds)
    if round_index >= rounds:
        per_round = max(1, options.runs // rounds)
    if round_index == 0:  # a runtime's own benchmark tool, run once beside round 0, takes the whole count
        return replace(options, runs=per_round, extra={**options.extra, "cross_check_runs": options.runs})
    return replace(options, runs=per_round, warmup=min(options.warmup, 1))


def _more_rounds(plan, bundle, task, evalset, artifacts, timings) -> None:
    """The remaining latency rounds, interleaved across candidates; then, for a candidate whose p50
    interval holds the latency limit, up to `extra_rounds` more (it alone needs them)."""
    timed = {i: t for i, t in timings.items() if t["latency"] and t["result"].latency_note is None}
    one = evalset.head(1)  # later rounds: the outputs are known; one input keeps them cheap

    def another(indices, round_index):
        for index in indices:
            try:
                result, _ = run_artifact(plan["runtime"], _paths(bundle, artifacts[index]), task, one,
                                         _round_options(plan, round_index))
            except RunnerError:
                continue  # it ran in round 0; a later round that fails leaves fewer timings, not a verdict
            timed[index]["latency"] += result.latency_ms
            timed[index]["rounds"] += 1
            timed[index]["load"].append(_load())
            timed[index]["peak_rss_mb"] = max(timed[index].get("peak_rss_mb", 0.0), result.peak_rss_mb)

    for round_index in range(1, plan["rounds"]):
        another(list(timed), round_index)
    limit = plan["sla"].max_latency_ms
    for extra in range(plan["extra_rounds"]):
        undecided = [i for i, t in timed.items() if limit is not None and _straddles(t["latency"], limit)]
        if not undecided:
            break
        another(undecided, plan["rounds"] + extra)


def _straddles(latency: list[float], limit: float) -> bool:
    """The p50's interval holds the limit (too few timings for an interval: the point decides)."""
    interval = statistics.median_interval(latency)
    return interval is not None and interval[0] <= limit <= interval[1]


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):  # not every platform has a load average
        return None


def _row(artifact: dict, bundle: Path, device: dict) -> Row:
    size_mb = artifact["bytes"] / MB
    return Row(target=artifact["target"], precision=artifact["precision"], format=artifact["format"],
               bits=artifact["bits"], bytes=artifact["bytes"], size_mb=size_mb,
               files=[f["path"] for f in artifact["files"]], content=_content(artifact), build=artifact.get("build"),
               warnings=_warnings(size_mb, None, device), bits_per_weight=_bits_in_file(bundle, artifact))


def _bits_in_file(bundle: Path, artifact: dict) -> float | None:
    """What the file holds per weight; a file its reader cannot parse is the runtime's to reject."""
    models = []
    for entry in artifact["files"]:
        parts = Path(entry["path"]).parts
        package = next((i for i, part in enumerate(parts) if part.endswith(".mlpackage")), None)
        models.append(bundle.joinpath(*parts[:package + 1]) if package is not None else bundle / entry["path"])
    try:
        return bits_per_weight(list(dict.fromkeys(models)))
    except Exception:  # noqa: BLE001 — a label, not a gate: the measurement itself reports a broken file
        return None


def _fill(row: Row, result, vectors, kind, evalset, baseline, base_correct, base_value, plan) -> None:
    """The row's quality, metrics and first timings, from the first round on every eval input."""
    broken = sum(1 for v in vectors if not np.isfinite(v).all())
    if broken:
        row.error = (f"outputs are not finite numbers (NaN or inf) on {broken} of {len(vectors)} eval inputs "
                     f"on {result.runtime}")
        return
    found = {**metrics.fidelity(kind, vectors, baseline), **metrics.intrinsic(kind, vectors, evalset.samples),
             **result.metrics}
    certainty = correct = None
    if plan["tasks"] is not None:  # a task file: the runtime's answers, scored as the baseline's were
        try:
            samples = plan["tasks"].samples(result.answers)
        except ValueError as exc:
            row.error = f"failed on {result.runtime}: {exc}"
            return
        row.samples = [s.to_json() for s in samples]
        found.update(task_eval.answer_speed(result.answers))
        correct = correctness(samples)
    elif base_correct is not None:
        correct = metrics.correct(kind, vectors, evalset.labels)
        row.samples = labeled_samples(kind, vectors, correct)
    if correct is not None:
        found["accuracy"] = float(correct.mean())
        certainty = statistics.accuracy_certainty(correct, base_correct, strict=plan["sla"].confidence)
    name, value = metrics.headline(kind, found, base_correct is not None)
    note = result.latency_note  # timings that would not be the device's are not reported at all
    row.runtime, row.host, row.threads, row.metrics = result.runtime, result.host, plan["options"].threads, found
    row.obtained = {"size": "measured", "quality": result.obtained.get("outputs", "measured"),
                    "latency": result.obtained.get("latency", "measured")}
    row.load_ms = None if note else result.load_ms
    row.latency_note = note
    row.peak_rss_mb = result.peak_rss_mb
    row.warnings = _warnings(row.size_mb, result.peak_rss_mb, plan["device"])
    row.quality = Quality(name, value, base_value, value / base_value if base_value else None, value - base_value,
                          certainty)
    if kind == metrics.NEXT_TOKEN:
        row.estimates = _estimates(row.bytes, plan["device"], result.host, found)


def labeled_samples(kind: str, vectors, correct) -> list[dict]:
    """Per labeled sample: its id (its position in the eval file, from 1), whether it was answered right and
    the model's confidence (a classifier's maximum softmax probability; none for an embedder's centroids)."""
    return [{"id": str(index + 1), "correct": bool(right),
             "confidence": classifier_confidence(vector) if kind == metrics.LOGITS else None}
            for index, (vector, right) in enumerate(zip(vectors, correct))]


def _latency(row: Row, found: dict, sla: Sla) -> None:
    """p50 and p90 over every round's timings, the p50's interval, and whether it can decide the limit."""
    latency = found["latency"]
    row.latency_runs = len(latency)
    row.latency_p50_ms = metrics.percentile(latency, 50)
    row.latency_p90_ms = metrics.percentile(latency, 90)
    if found.get("peak_rss_mb"):
        row.peak_rss_mb = max(row.peak_rss_mb or 0.0, found["peak_rss_mb"])
    if not latency:
        return
    interval = statistics.median_interval(latency)
    row.latency = {"p50_interval": list(interval) if interval else None, "rounds": found["rounds"],
                   "load_during": found["load"],
                   "noisy": sla.max_latency_ms is not None and _straddles(latency, sla.max_latency_ms)}


def _copy_measurement(row: Row, measured: Row) -> None:
    """A candidate whose files are byte for byte another's gets that one's measurement, and says so."""
    for name in ("error", "runtime", "host", "threads", "obtained", "load_ms", "latency_p50_ms", "latency_p90_ms",
                 "latency_runs", "latency_note", "latency", "peak_rss_mb", "metrics", "quality", "estimates", "samples"):
        setattr(row, name, getattr(measured, name))
    row.warnings = [*measured.warnings, f"the same bytes as {measured.precision}: measured once"]


def _plan(name, manifest, bundle, chosen, source, specs, config: Config, options: BenchOptions) -> dict:
    """What measuring one target needs: its runtime, its inputs (the eval file read and checked now) and SLA."""
    target = get_target(name, config.target_files)
    runtime = options.runtime
    run_options = RunOptions(warmup=options.warmup, runs=options.runs, timeout_s=options.timeout_s,
                             extra=dict(options.runner_options), threads=options.threads or target.threads)
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
    tasks, eval_path = _task_eval(task, options, pre, support)
    if tasks is not None and not answers_asks(run_on):
        raise UserError(f"target {name}'s runtime {run_on} does not answer task rows (generation); choose one that "
                        f"does with --runtime, or give a .txt eval instead of {tasks.path}")
    evalset = make_evalset(pre, eval_path, options.seq_len, label_names(support, task), embedder=task == "feature-extraction")
    return {"name": name, "runtime": run_on, "evalset": evalset, "tasks": tasks, "sla": config.sla_for(name),
            "cost": config.cost_for(name), "device": target.device,
            "artifacts": [a for a in chosen if a["target"] == name],
            "options": run_options, "rounds": min(options.rounds, options.runs),
            "extra_rounds": options.extra_rounds}


def _task_eval(task: str, options: BenchOptions, pre: Preprocessor, support: Path | None):
    """(the task file's rows as asks, or None; the eval file for the label-free fidelity). With a task file,
    perplexity, KL and same-top-1 are measured on the built-in text: the prompts are too short to score
    next-token fidelity on."""
    path = options.eval_path
    if path is not None and is_task_file(Path(path)):
        if task != LM_TASK:
            raise UserError(f"{path} is a task file (rows with a \"prompt\"), which text-generation models answer; "
                            f"this model is {task}: give rows like {{\"text\": \"...\", \"label\": \"...\"}}")
        return task_eval_for(Path(path), pre.tokenizer, support, options.tasks), None
    if options.tasks.given:
        flags = ", ".join(f"--{k.replace('_', '-')}" for k in options.tasks.given)
        raise UserError(f"{flags} apply to a task file of a text-generation model (--eval tasks.jsonl with rows "
                        "like {\"prompt\": \"...\", \"answer\": \"...\"}); drop them or give one")
    return None, path


def _eval_origin(evalset, tasks) -> str:
    if tasks is None:
        return evalset.origin
    return f"{tasks.describe()}; perplexity, KL and same top-1 on the {evalset.origin}"


def _check_ready(runtime: str) -> None:
    missing = runtime_missing(runtime)
    if missing:
        raise UserError(f"the {runtime} runtime is not ready here: {'; '.join(missing)}")


def _why_no_source(manifest: dict) -> str:
    if manifest["source"].get("kind") == "torch":
        return "a PyTorch entry point is not re-imported from a manifest"
    return "the fp32 source is not where the manifest says, or it changed"


def _baseline(source, task, evalset, artifacts, bundle, runtime, why_not_source: str, tasks=None):
    """fp32 source outputs (torch, or onnxruntime for an ONNX source) and, with a task file, its samples
    (torch's answers, greedy as every runtime's); when the source is not available, the fp32 artifact
    stands in and the results say why."""
    if source is not None:
        with captured():  # loading a model can log (e.g. transformers probing optional quantization kernels)
            vectors, kind = reference_vectors(source.reference(), task, evalset.samples)
        engine = {"hf": "PyTorch", "onnx": "onnxruntime", "torch": "PyTorch"}[source.kind]
        return vectors, kind, f"fp32 source ({engine})", torch_baseline(tasks, source) if tasks else None
    fp32 = next((a for a in artifacts if a["bits"] >= 32), None)  # "fp32", "f32": named as its format does
    if fp32 is None:
        raise UserError(f"{why_not_source}, and the bundle has no fp32 artifact to stand in; name the source with "
                        "--source ENTRY_OR_PATH, or rebuild with the fp32 precision")
    result, vectors = run_artifact(runtime, [bundle / f["path"] for f in fp32["files"]], task, evalset,
                                   RunOptions(warmup=0, runs=0), asks=tasks.asks if tasks else None)
    samples = tasks.samples(result.answers) if tasks else None
    return (vectors, metrics.output_kind(task, result.outputs[0]),
            f"fp32 artifact on {result.runtime} ({why_not_source})", samples)


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




def _write(bundle: Path, manifest: dict, results: Results) -> None:
    """The measurements and verdict into the manifest, a release zip per target that has a candidate to
    ship (listed in the manifest), results.json and the reports (they name the zips), then the manifest,
    which hashes results.json and the reports so that `verify` refuses an edited verdict."""
    measured = {(r.target, r.precision): r.to_json() for r in results.rows}
    for artifact in manifest["artifacts"]:
        row = measured.get((artifact["target"], artifact["precision"]))
        if row:
            artifact["measured"] = {k: row.get(k) for k in ("runtime", "load_ms", "latency_p50_ms", "latency_p90_ms",
                                                            "latency_note", "latency", "peak_rss_mb", "quality",
                                                            "metrics", "verdict", "error", "obtained", "cost_per_month")}
    # Like results.json, the verdict and the release zips are the last bench's.
    manifest["verdict"] = {name: {"recommended": t.recommended, "status": t.status, "passed": t.passed, "sla": t.sla}
                           for name, t in results.targets.items()}
    manifest["releases"] = write_release_zips(bundle, manifest, results)
    results.releases = {name: entry["path"] for name, entry in manifest["releases"].items()}
    write_results_files(bundle, manifest, results)
