"""verify: a bundle still is what its manifest says — every file present, unaltered and listed, results.json
and the reports as bench wrote them — and, with deep=True, every artifact still loads and runs on its
runtime."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import RunnerError
from .evalset import Preprocessor, make_evalset
from .hashing import file_sha256
from .manifest import OWN_FILES, RESULTS, listed_files, read_manifest
from .measure import run_artifact
from .runners import RunOptions
from .source import InputSpec
from .targets import get_target


def verify(folder: str | Path, deep: bool = False) -> dict:
    folder = Path(folder)
    manifest = read_manifest(folder)  # also checks the schema
    missing, altered, listed = [], [], set()
    for entry in listed_files(manifest):
        listed.add(entry["path"])
        path = folder / entry["path"]
        if not path.resolve().is_relative_to(folder.resolve()):
            altered.append(entry["path"])  # a manifest must never point outside its bundle
        elif not path.is_file():
            missing.append(entry["path"])
        elif path.stat().st_size != entry["bytes"] or file_sha256(path) != entry["sha256"]:
            altered.append(entry["path"])
    for entry in manifest.get("results_files", []):  # results.json and the reports, hashed after bench
        listed.add(entry["path"])
        path = folder / entry["path"]
        if not path.is_file():
            missing.append(entry["path"])
        elif not path.resolve().is_relative_to(folder.resolve()) or file_sha256(path) != entry["sha256"]:
            altered.append(entry["path"])
    if (folder / RESULTS).is_file() and RESULTS not in listed:
        altered.append(f"{RESULTS} (its hash is not in the manifest: rerun edge-pack bench)")
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    models = {entry["path"]: name for name, entry in (manifest.get("models") or {}).items()}
    present = {p for p in present if p.split("/", 1)[0] not in models}  # each model's bundle checks itself
    report = {"checked": len(listed), "missing": sorted(missing), "altered": sorted(altered),
              "unlisted": sorted(present - listed - OWN_FILES)}
    if deep:
        broken = set(missing) | set(altered)
        report["unloadable"] = _load_each(folder, manifest, broken)
    for path in models:  # a job of several models: a bundle per model inside it (edge_pack/lineup.py)
        if not (folder / path).resolve().is_relative_to(folder.resolve()) or "/" in path:
            report["altered"].append(f"models: {path} (a model's folder must be a folder of the bundle)")
            continue
        if not (folder / path / "manifest.json").is_file():
            report["missing"].append(f"{path}/manifest.json")
            continue
        own = verify(folder / path, deep)
        report["checked"] += own["checked"]
        for kind in ("missing", "altered", "unlisted"):
            report[kind] += [f"{path}/{name}" for name in own[kind]]
        if deep:
            report["unloadable"] += [{**f, "precision": f"{models[path]}:{f['precision']}"} for f in own["unloadable"]]
    report["ok"] = not any(report[k] for k in ("missing", "altered", "unlisted", "unloadable") if k in report)
    return report


def _load_each(folder: Path, manifest: dict, broken: set[str]) -> list[dict]:
    """Run each intact artifact once on its target's runtime; list the ones that fail."""
    task = manifest["source"]["task"]
    specs = [InputSpec(i["name"], i["dtype"], tuple(i["shape"])) for i in manifest["source"].get("inputs", [])]
    failures = []
    for name in manifest.get("targets", {}):
        target = get_target(name)
        support = folder / name
        pre = Preprocessor(task, support if (support / "config.json").is_file() else None, specs or None)
        sample = make_evalset(pre, None, seq_len=16, label_names=None, embedder=False).head(1)
        for artifact in (a for a in manifest["artifacts"] if a["target"] == name):
            paths = [f["path"] for f in artifact["files"]]
            if broken.intersection(paths):
                continue  # already reported as missing or altered
            try:
                _, vectors = run_artifact(target.runtime, [folder / p for p in paths], task, sample,
                                          RunOptions(warmup=0, runs=0))
                if not all(np.isfinite(v).all() for v in vectors):
                    raise RunnerError("outputs are not finite numbers")
            except RunnerError as exc:
                failures.append({"target": name, "precision": artifact["precision"], "error": str(exc)})
    return failures
