"""manifest.json: what a bundle holds (every file with its sha256 and size), how it was made, and what it
measured. `verify` re-checks a bundle against it."""
from __future__ import annotations

import json
from pathlib import Path

from .errors import UserError
from .hashing import file_sha256, text_sha256
from .staging import write_atomic

SCHEMA = 1
MANIFEST = "manifest.json"
RESULTS = "results.json"
# Files edge-pack itself writes and rewrites beside the artifacts; they describe the bundle.
OWN_FILES = frozenset({MANIFEST, RESULTS, "report.html", "report.md"})
REQUIRED = {"schema": int, "source": dict, "tool": dict, "artifacts": list}


def file_entry(path: Path, root: Path) -> dict:
    return {"path": path.relative_to(root).as_posix(), "sha256": file_sha256(path), "bytes": path.stat().st_size}


def text_entry(name: str, text: str) -> dict:
    """The entry of a file not written yet, from its text."""
    data = text.encode()
    return {"path": name, "sha256": text_sha256(text), "bytes": len(data)}


def read_document(folder: Path, name: str, missing: str, remedy: str):
    """One of the JSON files edge-pack writes into a bundle; `missing` and `remedy` finish the error lines."""
    path = Path(folder) / name
    if not path.is_file():
        raise UserError(f"{folder} has no {name}; {missing}")
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); {remedy}") from None


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    manifest = read_document(folder, MANIFEST, "give a folder written by `edge-pack build`", "rebuild the bundle")
    problems = schema_problems(manifest)
    if problems:
        raise UserError(f"{path} does not follow the manifest schema ({problems[0]}); rebuild the bundle")
    return manifest


def schema_problems(manifest) -> list[str]:
    if not isinstance(manifest, dict):
        return ["not a JSON object"]
    problems = [f"{key} must be {kind.__name__}" for key, kind in REQUIRED.items()
                if not isinstance(manifest.get(key), kind)]
    if not problems and manifest["schema"] != SCHEMA:
        problems.append(f"schema {manifest['schema']} is not {SCHEMA}")
    for artifact in manifest.get("artifacts", []) if not problems else []:
        if not isinstance(artifact, dict) or not isinstance(artifact.get("files"), list):
            problems.append("an artifact has no files list")
            break
        if any(not isinstance(f, dict) or not {"path", "sha256", "bytes"} <= set(f) for f in artifact["files"]):
            problems.append(f"an artifact of {artifact.get('target')} lists a file without path/sha256/bytes")
            break
    return problems


def write_manifest(folder: Path, manifest: dict) -> None:
    write_atomic(Path(folder) / MANIFEST, json.dumps(manifest, indent=2) + "\n")


def listed_files(manifest: dict) -> list[dict]:
    entries = [f for a in manifest["artifacts"] for f in a["files"]]
    entries += [f for t in manifest.get("targets", {}).values() for f in t.get("files", [])]
    entries += list(manifest.get("releases", {}).values())  # the per-target zips bench writes
    return entries
