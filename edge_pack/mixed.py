"""`--precision auto`: the smallest per-layer mix of a target's two [mixed] precisions that meets the
quality floor on the target's runtime.

1. Sensitivity (sensitivity.py): each layer alone at the low precision, measured against fp32.
2. Every layer at the low precision; if that meets the floor, it is the answer. Else every layer at the
   high precision: if even that misses the floor, no mix will meet it.
3. Promote layers in order of fidelity lost per byte the promotion costs: the shortest such prefix that
   meets the floor, found by bisection (quality rises with every promotion, near enough).
4. A short greedy pass: demote each promoted layer again, least sensitive first, keeping what still passes.
Steps 2-4 together build at most `budget` candidates. When the SLA limits latency (max_latency_ms), each of
those builds is also timed on the target's runtime and passes only within the limit: on the web, a q4 MatMul
(MatMulNBits) runs slower than a q8 one (MatMulInteger, what the uniform q8 runs), so promotions buy speed as
well as fidelity. With an SLA the search stops where bench's verdict passes, on bench's metric: labeled
accuracy as a share of fp32's when the eval data has labels (an embedder's centroid accuracy), else label-free
agreement (mean cosine for an embedder, top-1 agreement for a classifier); without one, on the target's
validation floor. The mix is then validated like every other
precision, and bench measures it like every other row. Whether the mix beats the uniform candidates built
beside it (each run once more on the search's inputs, so both sides are judged alike) is said in the target's
manifest entry (`mixed.outcome`); when it does not, it is not shipped."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import metrics, sensitivity, statistics
from .contracts import BuildOptions, Built, Converter, Layer, converter_for
from .errors import ConversionError, NotApplicable, UserError
from .measure import run_artifact, validate
from .runners import RunOptions
from .results import Quality
from .sla import Sla, quality_floor, quality_shortfalls
from .source import SourceModel
from .targets import AUTO, Target

BUDGET_OPTION = "budget"
LATENCY_RUNS = 10  # timed runs per search build when the SLA limits latency (the p50 of these)


@dataclass(frozen=True)
class Floor:
    value: float
    metric: str | None  # a fidelity key ("cosine_min"), or None: the SLA's verdict on bench's headline quality
    text: str  # where it comes from, for the manifest and messages
    sla: Sla | None = None
    base_correct: np.ndarray | None = None  # labeled inputs: which ones fp32 gets right (bench's ratio is of these)

    def judge(self, kind: str, found: dict) -> tuple[float, bool]:
        """The quality the floor is on (a share of fp32's, as min_accuracy_ratio reads it) and whether it
        passes: with an SLA, whether bench's verdict on the same outputs would miss no quality limit."""
        if self.sla is None:
            return found[self.metric], found[self.metric] >= self.value
        labeled = self.base_correct is not None
        name, value = metrics.headline(kind, found, labeled)
        base = float(self.base_correct.mean()) if labeled else 1.0
        certainty = (statistics.accuracy_certainty(found["correct"], self.base_correct, strict=self.sla.confidence)
                     if labeled else None)
        quality = Quality(name, value, base, value / base if base else None, value - base, certainty)
        return quality.ratio if quality.ratio is not None else value, not quality_shortfalls(quality, self.sla)


def check(source: SourceModel, target: Target, options: BuildOptions) -> None:
    """Refuse `auto` before any work starts: a toolchain without per-layer control, a model its converter
    cannot mix, a pair of precisions the build could not make (e.g. an iOS too old for int4), a budget under
    1, an SLA with no quality limit to search for."""
    if target.mixed is None:
        raise UserError(f"--precision {AUTO}: target {target.name}'s toolchain sets no precision layer by layer "
                        f"(its TOML has no [mixed] table); choose its precisions by name")
    reason = converter_for(target).unmixable(source)
    if reason:
        raise UserError(f"--precision {AUTO} for target {target.name}: {reason}; choose its precisions by name")
    converter_for(target).check(source, target, [target.mixed.low, target.mixed.high], options)
    budget = target.option(BUDGET_OPTION, options.target_options)
    if not isinstance(budget, int) or budget < 1:
        raise UserError(f"--budget must be at least 1 (the builds --precision {AUTO} may try), not {budget!r}")
    floor_for(target, options)


def floor_for(target: Target, options: BuildOptions) -> Floor:
    sla = options.sla_for(target.name)
    if sla is None:
        value = target.mixed_precision().min_cosine
        return Floor(value, "cosine_min", f"the {target.name} target's validation floor (cosine_min ≥ {value:g})")
    value = quality_floor(sla, 1.0)
    if not value:
        raise UserError(f"--precision {AUTO} searches for the smallest mix that meets the SLA's quality floor, and "
                        f"the SLA for {target.name} sets none; set min_accuracy_ratio (e.g. 0.98) in [sla]")
    return Floor(value, None, f"the SLA's quality floor {value:g} on label-free agreement with fp32", sla)


def _labeled(floor: Floor, kind: str, evalset, baseline: list) -> Floor:
    """On labeled inputs bench judges labeled accuracy as a share of fp32's, so the search does too."""
    if floor.sla is None or evalset.labels is None:
        return floor
    base_correct = metrics.correct(kind, baseline, evalset.labels)
    name = metrics.headline_name(kind, labeled=True)
    return replace(floor, base_correct=base_correct,
                   text=f"the SLA's quality floor {floor.value:g} on {name} as a share of fp32's "
                        f"({base_correct.mean():.3f} on {len(base_correct)} labeled inputs)")


@dataclass
class Trial:
    promoted: frozenset
    bytes: int
    found: dict
    quality: float
    passed: bool
    p50_ms: float | None = None  # measured only when the SLA limits latency


@dataclass
class _Trials:
    """Builds a mix into a temporary folder, runs it on the target's runtime and compares it with fp32."""
    converter: Converter
    target: Target
    task: str
    evalset: object
    baseline: list
    kind: str
    floor: Floor
    timeout_s: float | None
    max_latency_ms: float | None = None  # the SLA's latency limit, when it has one
    seen: dict = field(default_factory=dict)

    def fidelity(self, levels: dict[str, str], timed: bool = False) -> tuple[dict, int, float | None]:
        """The build's fidelity to fp32, its size, and (timed) its p50 latency on the target's runtime."""
        with tempfile.TemporaryDirectory(prefix="mix-") as tmp:
            built = self.converter.convert_layers(levels, Path(tmp) / f"trial{Path(self.target.mixed.file).suffix}")
            return self.measure(built.files, timed)

    def measure(self, files: list[Path], timed: bool = False) -> tuple[dict, int, float | None]:
        """Built files' fidelity to fp32 on the search's inputs, their size, and (timed) their p50 latency."""
        size = sum(p.stat().st_size for p in files)
        options = RunOptions(threads=self.target.threads, warmup=2 if timed else 0, runs=LATENCY_RUNS if timed else 0,
                             **({"timeout_s": self.timeout_s} if self.timeout_s else {}))
        result, vectors = run_artifact(self.target.runtime, files, self.task, self.evalset, options)
        p50 = metrics.percentile(result.latency_ms, 50) if timed else None
        found = metrics.fidelity(self.kind, vectors, self.baseline)
        if self.evalset.labels is not None:  # what bench's labeled verdict scores
            correct = metrics.correct(self.kind, vectors, self.evalset.labels)
            found.update(accuracy=float(correct.mean()), correct=tuple(correct.tolist()))  # a tuple: Trials compare
        return found, size, p50

    def mix(self, layers: list[Layer], promoted: frozenset) -> Trial:
        if promoted not in self.seen:
            mixed = self.target.mixed
            timed = self.max_latency_ms is not None
            found, size, p50 = self.fidelity({l.name: mixed.high if l.name in promoted else mixed.low for l in layers},
                                             timed)
            quality, meets = self.floor.judge(self.kind, found)
            passed = (meets and found["cosine_min"] >= self.target.mixed_precision().min_cosine
                      and (p50 is None or p50 <= self.max_latency_ms))
            self.seen[promoted] = Trial(promoted, size, found, quality, passed, p50)
        return self.seen[promoted]


def _inputs(source: SourceModel, options: BuildOptions):
    """What the search measures on: the job's eval data, else the built-in inputs; that is, what bench judges
    the mix on (the build's own validation takes only the first few)."""
    from .evalset import Preprocessor, label_names, make_evalset
    from .measure import reference_vectors
    from .source import input_specs

    pre = Preprocessor(source.task, source.support_dir, input_specs(source))
    evalset = make_evalset(pre, options.eval_path, 128, label_names(source.support_dir, source.task),
                           embedder=source.task == "feature-extraction")
    baseline, _ = reference_vectors(source.reference(), source.task, evalset.samples)
    return evalset, baseline


def search(converter: Converter, target: Target, source: SourceModel, validation, options: BuildOptions,
           uniform: list[dict], bar) -> tuple[Built, dict]:
    """The mix to ship and its validation; NotApplicable when no mix is smaller than the smallest uniform
    candidate (of `uniform`, built beside it) that meets the floor, ConversionError when none meets it."""
    mixed, name = target.mixed, target.mixed.name(target)
    floor = floor_for(target, options)
    budget = target.option(BUDGET_OPTION, options.target_options)
    evalset, baseline = _inputs(source, options)
    floor = _labeled(floor, validation.kind, evalset, baseline)
    sla = options.sla_for(target.name)
    trials = _Trials(converter, target, source.task, evalset, baseline, validation.kind, floor, options.timeout_s,
                     getattr(sla, "max_latency_ms", None))
    layers = converter.layers()
    if not layers:
        raise NotApplicable("no layer whose precision can be set on its own")
    bar.step(f"{target.name}: sensitivity of {len(layers)} layers at {mixed.low}")
    ranking = sensitivity.rank(layers, mixed.low, lambda levels: trials.fidelity(levels)[0])
    by_name = {l.name: l for l in layers}
    cost = lambda s: by_name[s.layer].bytes[mixed.high] - by_name[s.layer].bytes[mixed.low]  # noqa: E731
    order = [s.layer for s in sorted(ranking, key=lambda s: -s.score / max(cost(s), 1))]
    converter.meta["sensitivity"] = {"precision": mixed.low, "measure": sensitivity.measure_text(ranking, mixed.low),
                                     "inputs": evalset.origin,
                                     "layers": [s.to_json() for s in ranking],
                                     "costliest_per_byte": [s.layer for s in sensitivity.costliest(ranking)]}
    steps: list[Trial] = []

    def trial(promoted) -> Trial:
        bar.step(f"{target.name}: {name} with {len(promoted)} of {len(layers)} layers at {mixed.high}")
        found = trials.mix(layers, frozenset(promoted))
        if found not in steps:
            steps.append(found)
        return found

    best = None
    if trial(()).passed:
        best = trials.seen[frozenset()]
    elif budget > 1 and trial(order).passed:
        low, high = 0, len(order)  # the prefix of `low` promotions fails, of `high` passes
        while high - low > 1 and len(steps) < budget:
            middle = (low + high) // 2
            low, high = (low, middle) if trial(order[:middle]).passed else (middle, high)
        promoted = list(order[:high])
        for layer in reversed(order[:high]):  # greedy demotion, least sensitive first
            if len(steps) >= budget:
                break
            fewer = frozenset(promoted) - {layer}
            if fewer in trials.seen and not trials.seen[fewer].passed:
                continue
            if trial(fewer).passed:
                promoted.remove(layer)
        best = trials.seen[frozenset(promoted)]
    record = [{"promoted": len(t.promoted), "bytes": t.bytes, "quality": t.quality, "passed": t.passed,
               **({"p50_ms": t.p50_ms} if t.p50_ms is not None else {})} for t in steps]
    limits = floor.text + (f" within p50 {trials.max_latency_ms:g} ms" if trials.max_latency_ms is not None else "")
    # the uniform candidates judged on the mix's inputs, not on their build's 8 validation inputs (EfficientNet-
    # Lite0 on ios: int4 kept every top-1 on those 8 and 0.22 of them on the 32 photo crops the mix is judged on)
    root = converter.dir.parent  # the manifest's file paths are relative to the build's folder

    def judged(artifact: dict) -> dict:
        quality, passed = floor.judge(validation.kind, trials.measure([root / f["path"] for f in artifact["files"]])[0])
        return {**artifact, "quality": quality, "passed": passed}

    outcome = _outcome(name, best, [judged(a) for a in uniform] if best is not None else [], limits, budget)
    converter.meta["mixed"] = {**outcome, "builds": record}
    if best is None:
        tried = "; ".join(f"{r['promoted']} at {mixed.high}: {r['quality']:.4f}"
                          + (f", p50 {r['p50_ms']:.1f} ms" if "p50_ms" in r else "") for r in record)
        raise ConversionError(f"{outcome['statement']} ({tried})")
    if outcome["outcome"] == NOT_SMALLER:
        raise NotApplicable(outcome["statement"])
    levels = {l.name: mixed.high if l.name in best.promoted else mixed.low for l in layers}
    built = converter.convert_layers(levels)
    check = validate(target.runtime, built.files, target.mixed_precision(), source.task, validation.evalset,
                     validation.baseline, validation.kind, options.timeout_s)
    recipe = {**built.recipe, "search": {"low": mixed.low, "high": mixed.high, "floor": floor.text,
                                         "budget": budget, "builds": record},
              "promoted": [l for l in order if l in best.promoted]}
    return Built(built.files, recipe), check


SMALLER, NOT_SMALLER, NONE_PASSED = "smaller", "not smaller than a uniform candidate", "no mix passed"


def _mb(size: int) -> str:
    """A size in a sentence: one decimal, or three significant digits under 1 MB (a test model's 0.04 MB)."""
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e6:.3g} MB"


def _outcome(name: str, best: Trial | None, uniform: list[dict], limits: str, budget: int) -> dict:
    """What the search found, said in one sentence (the manifest's mixed.statement, and the build's message
    when the mix is not shipped): a mix smaller than every uniform candidate built beside it that meets the
    floor, nothing smaller than the best of them, or no mix that passes at all."""
    if best is None:
        return {"outcome": NONE_PASSED, "statement": f"no mix met {limits} within {budget} builds"}
    passing = [a for a in uniform if a["passed"]]
    smallest = min(passing, key=lambda a: a["bytes"], default=None)
    mix = _mb(best.bytes)
    if smallest is not None and smallest["bytes"] <= best.bytes:
        return {"outcome": NOT_SMALLER, "than": smallest["precision"],
                "statement": f"nothing smaller than the best uniform candidate, {smallest['precision']} "
                             f"({_mb(smallest['bytes'])}), meets {limits}: the smallest passing mix is {mix}"}
    if smallest is not None:
        compared = (f"smaller than the best uniform candidate, {smallest['precision']} "
                    f"({_mb(smallest['bytes'])})")
    elif uniform:
        compared = f"and no uniform candidate built beside it ({', '.join(a['precision'] for a in uniform)}) does"
    else:
        compared = "(no uniform candidate was built beside it to compare with)"
    return {"outcome": SMALLER, **({"than": smallest["precision"]} if smallest else {}),
            "statement": f"{name} ({mix}) meets {limits}, {compared}"}
