"""What a bench found, as types: a Row per measured candidate (its Quality and Verdict), a TargetResult per
target (its baseline, SLA, Decision and cliff) and the Results of the whole bench. results.json is these
types written out, and read back here and nowhere else (to_json / from_json), so every module that judges,
decides, reports or ships reads the same fields by name.

A verdict has three states: "pass" (every limit was checked and met), "fail" (a limit was missed, or the
candidate did not run), and "unverified" (nothing failed, but a limit could not be checked here, e.g. an
emulator takes no device latency). Unverified is never shipped as a pass; a job can accept named limits
unmeasured (`[sla.ios] unverified_ok = ["max_latency_ms"]`), and the verdict then says so."""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from .errors import UserError

SCHEMA = 2
PASS, FAIL, UNVERIFIED = "pass", "fail", "unverified"
STATUSES = (PASS, FAIL, UNVERIFIED)
# What the terminal, report.html, report.md and the exit code say about a whole bench, in one place.
HEADLINES = {PASS: "every target has a candidate that meets the SLA",
             UNVERIFIED: "unverified: a target's best candidate passes what was measured, but a limit could not be "
                         "checked here",
             FAIL: "not every target has a candidate that meets the SLA"}
LIMIT_WORDS = {"max_latency_ms": "latency", "max_cost_per_month": "cost", "max_size_mb": "size",
               "max_memory_mb": "memory", "min_accuracy_ratio": "quality", "min_accuracy": "quality"}


@dataclass
class Quality:
    """The headline quality of a candidate (or the baseline) and how it compares."""
    name: str
    value: float
    baseline: float
    ratio: float | None  # value / baseline (None when the baseline is 0)
    delta: float
    # How sure (statistics.accuracy_certainty), for labeled accuracy: interval, paired test, ratio interval.
    certainty: dict | None = None


@dataclass
class Verdict:
    status: str  # pass | fail | unverified
    reasons: list[str] = field(default_factory=list)  # why it fails, each with the numbers
    unverified: list[str] = field(default_factory=list)  # limits that could not be checked, and why
    accepted_unmeasured: list[str] = field(default_factory=list)  # limits the job accepts unmeasured
    notes: list[str] = field(default_factory=list)  # how sure: e.g. the eval set is too small for the margin

    @property
    def passed(self) -> bool:
        return self.status == PASS

    def accepted_text(self) -> str:
        """'passes what was measured; latency accepted unmeasured', or '' when nothing was accepted."""
        if not self.accepted_unmeasured:
            return ""
        words = " and ".join(dict.fromkeys(LIMIT_WORDS.get(k, k) for k in self.accepted_unmeasured))
        return f"passes what was measured; {words} accepted unmeasured"

    def summary(self) -> str:
        """The result cell of every table: pass (and what was accepted unmeasured), or the reasons."""
        if self.status == PASS:
            accepted = self.accepted_text()
            return f"pass ({accepted})" if accepted else "pass"
        if self.status == UNVERIFIED:
            return "unverified: " + "; ".join(self.unverified)
        return "fail: " + "; ".join(self.reasons)

    def to_json(self) -> dict:
        # "passed" is written for pipelines that read results.json; the status is what edge-pack reads.
        return {"status": self.status, "passed": self.passed, "reasons": list(self.reasons),
                "unverified": list(self.unverified), "accepted_unmeasured": list(self.accepted_unmeasured),
                "notes": list(self.notes)}

    @classmethod
    def from_json(cls, data: dict) -> "Verdict":
        status = data.get("status") or (PASS if data.get("passed") else FAIL)
        return cls(status=status, reasons=list(data.get("reasons", [])), unverified=list(data.get("unverified", [])),
                   accepted_unmeasured=list(data.get("accepted_unmeasured", [])), notes=list(data.get("notes", [])))


@dataclass
class Row:
    """One candidate of one target as measured (or why it could not be)."""
    target: str
    precision: str
    format: str
    bits: float  # nominal bits per weight: the precision's label
    bytes: int
    size_mb: float
    files: list[str] = field(default_factory=list)
    content: str | None = None  # hash of what the files hold: identical bytes are one candidate
    build: dict | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    bits_per_weight: float | None = None  # what the file holds (weight_bits.py)
    runtime: str | None = None
    host: dict = field(default_factory=dict)
    threads: int | None = None
    obtained: dict = field(default_factory=dict)
    load_ms: float | None = None
    latency_p50_ms: float | None = None
    latency_p90_ms: float | None = None
    latency_runs: int = 0
    latency_note: str | None = None  # set when the runtime takes no device timings (an emulator)
    latency: dict | None = None  # spread: p50 interval, rounds, machine load while measured
    peak_rss_mb: float | None = None
    metrics: dict = field(default_factory=dict)
    quality: Quality | None = None
    estimates: dict = field(default_factory=dict)
    cost_per_month: float | None = None
    cost_terms: list[dict] = field(default_factory=list)  # estimated cost terms beside device time
    verdict: Verdict = field(default_factory=lambda: Verdict(FAIL, ["not measured"]))
    model: str | None = None  # which of the job's [[models]] (None in a job of one source)
    # Per labeled sample: {"id", "correct", "confidence"} (and "output" for generated text): what the
    # cascade routes on and what a candidate is compared on against another model's baseline.
    samples: list[dict] = field(default_factory=list)
    cascade: dict | None = None  # set on the cascade's row: its stages, threshold and curve (cascade_row.py)

    @property
    def ran(self) -> bool:
        return self.error is None and self.quality is not None

    @property
    def key(self) -> str:
        """The candidate's name in its target: the precision, or model:precision in a job of several models."""
        return f"{self.model}:{self.precision}" if self.model else self.precision

    @property
    def label(self) -> str:
        """The candidate as a sentence names it: 'large q4_k_m' (the precision alone for one source)."""
        return f"{self.model} {self.precision}" if self.model and not self.cascade else self.precision

    @property
    def bits_shown(self) -> float:
        """Bits per weight for charts and the cliff: what the file holds when known, else the label."""
        return self.bits_per_weight if self.bits_per_weight is not None else self.bits

    def to_json(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["quality"] = vars(self.quality).copy() if self.quality else None
        data["verdict"] = self.verdict.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict) -> "Row":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        quality = data.get("quality")
        values["quality"] = Quality(**{k: quality.get(k) for k in ("name", "value", "baseline", "ratio", "delta",
                                                                   "certainty")}) if quality else None
        values["verdict"] = Verdict.from_json(data.get("verdict") or {"passed": False,
                                                                      "reasons": [data.get("error") or "not measured"]})
        return cls(**values)


@dataclass
class Decision:
    """Which candidate a target ships, by which rule, and the sentence that says so."""
    recommended: str | None
    text: str
    rule: str = ""  # e.g. "the cheapest passing candidate by cost per month, then size"
    blocking: list[dict] = field(default_factory=list)  # limits every candidate misses, the nearest miss
    closest: str | None = None
    status: str = FAIL  # pass (ship), unverified (ship only what was measured), fail (nothing to ship)

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: dict) -> "Decision":
        status = data.get("status") or (PASS if data.get("recommended") else FAIL)
        return cls(recommended=data.get("recommended"), text=data.get("text", ""), rule=data.get("rule", ""),
                   blocking=list(data.get("blocking", [])), closest=data.get("closest"), status=status)


@dataclass
class TargetResult:
    """One target's measurement: how and where, against which baseline and SLA, and the decision."""
    name: str
    runtime: str
    measured_on: str
    threads: int
    sla: dict  # Sla.describe(): the limits that are set
    eval: str
    baseline: dict  # {"origin", "quality": {"name", "value"}, "metrics"}
    decision: Decision
    cliff: dict = field(default_factory=dict)
    cost: dict | None = None
    device: dict = field(default_factory=dict)
    rejected_at_build: list[dict] = field(default_factory=list)
    load: dict = field(default_factory=dict)  # the machine's load average before and while measuring
    options: dict | None = None  # bench settings, when they differ from the Results' (a merged bundle)
    tool: dict | None = None
    sensitivity: dict | None = None  # per-layer sensitivity measured by --precision auto (sensitivity.py)

    @property
    def recommended(self) -> str | None:
        return self.decision.recommended

    @property
    def status(self) -> str:
        return self.decision.status

    @property
    def passed(self) -> bool:
        return self.status == PASS

    @property
    def quality_name(self) -> str:
        return self.baseline["quality"]["name"]

    @property
    def baseline_value(self) -> float:
        return self.baseline["quality"]["value"]

    def to_json(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "name"}
        data["decision"] = self.decision.to_json()
        # Read by pipelines; edge-pack reads them from the decision.
        data.update(recommended=self.recommended, status=self.status, passed=self.passed)
        return data

    @classmethod
    def from_json(cls, name: str, data: dict) -> "TargetResult":
        known = {f.name for f in fields(cls)} - {"name", "decision"}
        decision = data.get("decision") or {"recommended": data.get("recommended"), "text": ""}
        if "status" not in decision and data.get("status"):
            decision = {**decision, "status": data["status"]}
        return cls(name=name, decision=Decision.from_json(decision), **{k: v for k, v in data.items() if k in known})


@dataclass
class Results:
    """Everything one bench (or a merge of benches) found; results.json is Results.to_json()."""
    source: dict
    targets: dict[str, TargetResult]
    rows: list[Row]
    edge_pack: str = ""
    bundle: str = ""
    created: str = ""
    tool: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    sla_file: str | None = None
    releases: dict[str, str] | None = None
    unmeasured: list[str] = field(default_factory=list)  # targets of a merged bundle that no bench measured
    models: dict = field(default_factory=dict)  # a job of several models: name -> its source, described
    baseline: str | None = None  # ...and the one whose fp32 accuracy the ratios are taken against
    schema: int = SCHEMA

    @property
    def status(self) -> str:
        """fail when a target has nothing to ship (or was not measured), else unverified when a target
        ships only what could be measured, else pass."""
        statuses = {t.status for t in self.targets.values()}
        if FAIL in statuses or self.unmeasured or not self.targets:
            return FAIL
        return UNVERIFIED if UNVERIFIED in statuses else PASS

    @property
    def passed(self) -> bool:
        return self.status == PASS

    def rows_of(self, target: str) -> list[Row]:
        return [r for r in self.rows if r.target == target]

    def only(self, target: str) -> "Results":
        """This bench's results for one target (what its release zip carries)."""
        return Results(**{**{f.name: getattr(self, f.name) for f in fields(self)},
                          "targets": {target: self.targets[target]}, "rows": self.rows_of(target),
                          "releases": None, "unmeasured": []})

    def to_json(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("targets", "rows")}
        data["targets"] = {name: t.to_json() for name, t in self.targets.items()}
        data["rows"] = [r.to_json() for r in self.rows]
        data.update(status=self.status, passed=self.passed)
        return plain(data)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"

    @classmethod
    def from_json(cls, data: dict) -> "Results":
        known = {f.name for f in fields(cls)} - {"targets", "rows"}
        return cls(targets={name: TargetResult.from_json(name, t) for name, t in data["targets"].items()},
                   rows=[Row.from_json(r) for r in data["rows"]], **{k: v for k, v in data.items() if k in known})


def read_results(folder: Path, name: str = "results.json") -> Results:
    """A bundle's results.json, or a UserError saying what to run."""
    from .manifest import read_document

    path = Path(folder) / name
    data = read_document(folder, name, f"measure the bundle first: edge-pack bench {folder}",
                         f"rerun edge-pack bench {folder}")
    if not isinstance(data, dict) or not isinstance(data.get("targets"), dict) or not isinstance(data.get("rows"), list):
        raise UserError(f"{path} is not an edge-pack results file (no targets and rows); rerun edge-pack bench")
    try:
        return Results.from_json(data)
    except (KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{path} is not an edge-pack results file ({type(exc).__name__}: {exc}); rerun edge-pack "
                        "bench") from None


def write_results_files(bundle: Path, manifest: dict, results: Results) -> None:
    """results.json and the reports, then the manifest with their hashes, so that `verify` and `bundle
    merge` refuse results edited after the bench (bench, report and bundle merge write them so)."""
    from .manifest import RESULTS, file_entry, write_manifest
    from .report_files import write_reports
    from .staging import write_atomic

    write_atomic(Path(bundle) / RESULTS, results.dumps())
    paths = write_reports(bundle, results)
    manifest["results_files"] = [file_entry(Path(bundle) / RESULTS, Path(bundle)),
                                 *(file_entry(p, Path(bundle)) for p in paths.values())]
    write_manifest(bundle, manifest)


def plain(value):
    """A JSON-only copy (numpy scalars become numbers, tuples lists)."""
    return json.loads(json.dumps(value, default=_jsonable))


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
