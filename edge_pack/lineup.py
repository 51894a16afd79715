"""A job of several models (edge_pack/models.py): build each model as an ordinary bundle inside the job's
folder, measure each, then judge them as one field — every quality ratio against the baseline model's
fp32 accuracy on the same labeled samples, one recommendation per target across models — and write the
job's results, reports and release zips at the top.

    dist/manifest.json       the job: its models (folder, source), the baseline, the verdict, the zips
    dist/<model>/            one bundle per model, with its own manifest (verify, bench it on its own)
    dist/results.json, report.html, report.md, <model>-<target>.zip
"""
from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

from . import __version__, statistics
from .config import Config
from .contracts import BuildOptions
from .decide import cliff, recommendation
from .errors import UserError
from .files import safe_stem
from .hashing import text_sha256
from .manifest import SCHEMA, file_entry, read_manifest, write_manifest
from .models import ModelSpec
from .results import Quality, Results, Row, TargetResult, write_results_files
from .sla import Sla, judge
from .staging import locked, staged_folder

MODELS = "models"  # the key of a job manifest that holds several models


def is_job(manifest: dict) -> bool:
    return isinstance(manifest.get(MODELS), dict)


# ------------------------------------------------------------------------------------------------ build

def build_models(models: tuple[ModelSpec, ...], baseline: str, targets, precisions, out: Path, *,
                 allow_pickle: bool = False, trust_remote_code: bool = False, target_files: tuple[Path, ...] = (),
                 progress: bool = False, options: BuildOptions | None = None) -> dict:
    """Every model × target × precision into `out`, whole or not at all; returns {"manifest", "models"}."""
    from .pipeline import build
    from .source import load_source
    from .targets import add_target_files

    add_target_files(target_files)
    with locked(Path(out)) as out:
        # Every source loads before the first build: a wrong path fails in a second, not after a model.
        sources = {m.name: load_source(m.source, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
                   for m in models}
        tasks = {name: s.task for name, s in sources.items()}
        if len(set(tasks.values())) > 1:
            raise UserError("the models of one job must do one task, to be compared on one eval set: "
                            + ", ".join(f"{n} is {t}" for n, t in tasks.items()))
        with staged_folder(out) as work:
            built = {m.name: build(sources[m.name], targets, precisions, work / m.name, target_files=target_files,
                                   progress=progress, options=options) for m in models}
            manifest = _job_manifest(built, baseline, out)
            write_manifest(work, manifest)
    return {"manifest": manifest, "models": built}


def _job_manifest(built: dict[str, dict], baseline: str, out: Path) -> dict:
    sources = {name: m["source"] for name, m in built.items()}
    return {
        "schema": SCHEMA,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "source": {"name": " + ".join(built), "kind": "models", "task": sources[baseline]["task"],
                   "sha256": text_sha256(" ".join(s.get("sha256") or "" for s in sources.values())),
                   "path": ", ".join(str(s.get("path")) for s in sources.values())},
        "tool": built[baseline]["tool"],
        "artifacts": [], "rejected": [],
        MODELS: {name: {"path": name, "source": m["source"], "targets": list(m["targets"])} for name, m in built.items()},
        "baseline": baseline,
    }


# ------------------------------------------------------------------------------------------------ bench

def measure_models(bundle: Path, targets: list[str] | None, precisions: list[str] | None, options,
                   config: Config, write: bool = True) -> Results:
    """Bench every model's bundle, then judge them together (see the module's words)."""
    from .benchmark import measure_bundle
    from .cascade_row import add_cascades, check_built

    manifest = read_manifest(bundle)
    if options.eval_path is None:
        raise UserError("a job of several models compares them by accuracy on labeled data: give --eval FILE "
                        "(labeled JSONL/CSV) or eval in edge-pack.toml")
    wanted = list(dict.fromkeys(targets)) if targets and "all" not in targets else None
    check_built(config, {name: {a["precision"] for a in read_manifest(bundle / entry["path"])["artifacts"]
                                if not wanted or a["target"] in wanted}
                         for name, entry in manifest[MODELS].items()}, manifest["baseline"])
    per_model = {}
    for name, entry in manifest[MODELS].items():
        names = [t for t in wanted if t in entry["targets"]] if wanted else None
        if wanted and not names:
            continue  # this model did not build the targets asked for
        sub = bundle / entry["path"]
        per_model[name] = measure_bundle(sub, names, precisions, options, replace(config, cascade=None),
                                         source=_job_source(config, name, read_manifest(sub)), write=False)
    if not per_model:
        raise UserError(f"no model of {bundle} has the targets {', '.join(wanted)}; its models built "
                        + "; ".join(f"{n}: {', '.join(e['targets'])}" for n, e in manifest[MODELS].items()))
    if manifest["baseline"] not in per_model:
        raise UserError(f"the baseline model {manifest['baseline']} built none of {', '.join(wanted)}; measure a "
                        "target it has, or make another model the baseline")
    results = combine(per_model, manifest, config)
    add_cascades(results, config)
    if write:
        write_job(bundle, manifest, results)
    return results


def _job_source(config: Config, name: str, manifest: dict):
    """The model's source as the job names it, if it is the one its bundle was built from (its fp32
    reference); else None, and the bench finds it from the bundle's manifest."""
    from .source import load_source

    spec = next((m.source for m in config.models if m.name == name), None)
    if spec is None:
        return None
    try:
        source = load_source(spec)
    except UserError:
        return None
    return source if source.sha256 == manifest["source"].get("sha256") else None


def combine(per_model: dict[str, Results], manifest: dict, config: Config) -> Results:
    """One Results of every model's rows (each with its model), every quality against the baseline model's
    fp32 on the same samples, and a decision per target across models."""
    from .benchmark import _check_baseline

    baseline = manifest["baseline"]
    base_results = per_model[baseline]
    rows, targets = [], {}
    for name in dict.fromkeys(t for r in per_model.values() for t in r.targets):
        # The fp32 source runs in torch on this machine: the same answers whichever target it stands beside.
        base_target = base_results.targets.get(name) or next(iter(base_results.targets.values()))
        base = base_target.baseline
        if not base.get("samples"):
            raise UserError(f"{base_target.eval} has no labels: a job of several models compares them by accuracy "
                            "on labeled data (rows with a label, or task rows with an answer)")
        base_correct = {s["id"]: bool(s["correct"]) for s in base["samples"]}
        base_value = base["quality"]["value"]
        sla = config.sla_for(name)
        _check_baseline(name, base["quality"]["name"], base_value, sla, base_target.eval)
        target_rows, rejected, by_model = [], [], {}
        for model, results in per_model.items():
            if name not in results.targets:
                continue
            own = results.targets[name]
            by_model[model] = {"origin": own.baseline["origin"], "quality": own.baseline["quality"],
                               "samples": own.baseline.get("samples", [])}
            rejected += [{**x, "model": model} for x in own.rejected_at_build]
            for row in results.rows_of(name):
                row.model = model
                _rebase(row, base_correct, base_value, sla)
                row.verdict = judge(row, sla)
                target_rows.append(row)
        first = next(r.targets[name] for r in per_model.values() if name in r.targets)
        cost = first.cost
        decision = recommendation(name, target_rows, sla, cost and cost["currency"])
        targets[name] = TargetResult(
            name=name, runtime=first.runtime, measured_on=first.measured_on, threads=first.threads,
            sla=sla.describe(), eval=first.eval, decision=decision, cliff=_cliffs(target_rows, sla, base_value),
            cost=cost, device=first.device, rejected_at_build=rejected,
            baseline={**base, "origin": f"{base['origin']} of {baseline}", "by_model": by_model},
            load={"before": min((r.targets[name].load.get("before") or 0 for r in per_model.values()
                                 if name in r.targets), default=None),
                  "during": max((r.targets[name].load.get("during") or 0 for r in per_model.values()
                                 if name in r.targets), default=None)})
        rows += target_rows
    return Results(source=manifest["source"], targets=targets, rows=rows, edge_pack=__version__,
                   bundle=str(Path(base_results.bundle).parent), created=base_results.created,
                   tool=manifest.get("tool", {}), sla_file=base_results.sla_file, options=base_results.options,
                   models={name: entry["source"] for name, entry in manifest[MODELS].items()}, baseline=baseline)


def _cliffs(rows: list[Row], sla, base_value: float) -> dict:
    """The cliff of every model's candidates together, said model by model (bits mean little across models)."""
    found = cliff(rows, sla, base_value)
    models = dict.fromkeys(r.model for r in rows)
    found["by_model"] = {m: cliff([r for r in rows if r.model == m], sla, base_value)["text"] for m in models}
    found["text"] = "; ".join(f"{m}: {text}" for m, text in found["by_model"].items())
    return found


def _rebase(row: Row, base_correct: dict[str, bool], base_value: float, sla: Sla) -> None:
    """The row's accuracy against the baseline model's fp32, paired on the same samples."""
    if not row.ran or not row.samples:
        return
    value = row.quality.value
    right = [bool(s["correct"]) for s in row.samples]
    base = [base_correct[s["id"]] for s in row.samples]
    row.quality = Quality(row.quality.name, value, base_value, value / base_value if base_value else None,
                          value - base_value, statistics.accuracy_certainty(right, base, strict=sla.confidence))


# ------------------------------------------------------------------------------------------------ write

def release_name(model: str, target: str) -> str:
    return f"{safe_stem(model)}-{target}.zip"


def write_job(bundle: Path, manifest: dict, results: Results) -> None:
    """The verdict into the job's manifest, a release zip per target with a candidate to ship (the shipped
    model's artifact and support files, as a bundle of its own), results.json and the reports."""
    from .release import _release_contents, safe_member, write_zip

    manifest["verdict"] = {name: {"recommended": t.recommended, "status": t.status, "passed": t.passed, "sla": t.sla}
                           for name, t in results.targets.items()}
    releases = {}
    for name, target in results.targets.items():
        if not target.recommended:
            continue
        model, _, precision = target.recommended.partition(":")
        sub = bundle / manifest[MODELS][model]["path"]
        path = bundle / release_name(model, name)
        write_zip(path, sub, *_release_contents(read_manifest(sub), results, name, precision))
        releases[name] = file_entry(path, bundle)
    for old in manifest.get("releases", {}).values():
        if old["path"] not in {e["path"] for e in releases.values()}:
            (bundle / safe_member(old["path"], "manifest.json releases")).unlink(missing_ok=True)
    manifest["releases"] = releases
    results.releases = {name: entry["path"] for name, entry in releases.items()}
    write_results_files(bundle, manifest, results)


# ------------------------------------------------------------------------------------------------ merge

def merge_jobs(parts: list[tuple[Path, Path, dict, Results | None]], out: Path) -> dict:
    """Join job bundles of the same models, each holding other targets (one CI job per target): each
    model's bundles merge as single bundles do (release.merge), the zips are carried over, and the
    results join target by target. Returns {"manifest", "results"} as release.merge does."""
    from .files import link_or_copy
    from .release import merge

    first_given, _, first, _ = parts[0]
    models = {name: entry["source"].get("sha256") for name, entry in (first.get(MODELS) or {}).items()}
    targets: dict[str, Path] = {}
    for given, _, manifest, _ in parts:
        theirs = {name: entry["source"].get("sha256") for name, entry in (manifest.get(MODELS) or {}).items()}
        if theirs != models or manifest.get("baseline") != first.get("baseline"):
            found = ", ".join(theirs) or "one source"
            raise UserError(f"{given} is not a job of the same models as {first_given} ({found} vs "
                            f"{', '.join(models)}, baseline {manifest.get('baseline')} vs {first.get('baseline')}); "
                            "merge bundles of one job")
        for name in dict.fromkeys(t for e in manifest[MODELS].values() for t in e["targets"]):
            if name in targets:
                raise UserError(f"{targets[name]} and {given} both hold target {name}; merge bundles of different "
                                "targets (one CI job per target)")
            targets[name] = given
    measured = [r for _, _, _, r in parts if r is not None]
    with locked(Path(out)) as out, staged_folder(out) as work:
        for name, entry in first[MODELS].items():
            merge([folder / manifest[MODELS][name]["path"] for _, folder, manifest, _ in parts], work / entry["path"])
        manifest = {**first, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    MODELS: {name: {**entry, "targets": [t for _, _, m, _ in parts for t in m[MODELS][name]["targets"]]}
                             for name, entry in first[MODELS].items()},
                    "verdict": {}, "releases": {}, "merged_from": [str(given) for given, _, _, _ in parts]}
        manifest.pop("results_files", None)
        for _, folder, part, _ in parts:
            manifest["verdict"].update(part.get("verdict", {}))
            for name, entry in part.get("releases", {}).items():
                link_or_copy(folder / entry["path"], work / entry["path"])
                manifest["releases"][name] = entry
        results = None
        if measured:
            results = replace(measured[0], targets={n: t for r in measured for n, t in r.targets.items()},
                              rows=[row for r in measured for row in r.rows], edge_pack=__version__,
                              bundle=str(out), releases={n: e["path"] for n, e in manifest["releases"].items()},
                              unmeasured=[t for t in targets if not any(t in r.targets for r in measured)])
            write_results_files(work, manifest, results)
        else:
            write_manifest(work, manifest)
    return {"manifest": manifest, "results": results}
