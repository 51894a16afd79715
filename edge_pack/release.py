"""Release bundles: after the verdict, one zip per target holding what ships (the recommended artifact,
its tokenizer/config files, a manifest and the target's results); and `merge`, which joins the bundles
that separate CI jobs (one per target) built from one source into one bundle with one verdict.

Zip entries are checked both ways: a path that is absolute or climbs out with '..' is never written
and never extracted."""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from . import __version__
from .errors import UserError
from .files import link_or_copy, safe_stem
from .lineup import is_job, merge_jobs
from .manifest import MANIFEST, RESULTS, SCHEMA, file_entry, listed_files, read_manifest, text_entry, write_manifest
from .results import Results, read_results, write_results_files
from .staging import locked, staged_folder, umask

ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed, so the same files give the same zip


def release_name(manifest: dict, target: str) -> str:
    return f"{safe_stem(manifest['source'].get('name') or 'model')}-{target}.zip"


def safe_member(name: str, where: str) -> str:
    """`name` as a zip entry, or a UserError when it is absolute or leaves its folder."""
    path = PurePosixPath(name)
    if (not name or "\\" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in path.parts
            or path.is_absolute()):
        raise UserError(f"{where}: entry {name!r} is an absolute path or leaves its folder ('..'); refusing it")
    return path.as_posix()


# ------------------------------------------------------------------------------------------- writing

def write_release_zips(bundle: Path, manifest: dict, results: Results) -> dict[str, dict]:
    """One zip per measured target with a recommended candidate; returns {target: manifest file entry}.
    Zips of an earlier bench that are no longer backed by a recommendation are removed."""
    written = {}
    for name, target in results.targets.items():
        if target.recommended:
            path = bundle / release_name(manifest, name)
            write_zip(path, bundle, *_release_contents(manifest, results, name, target.recommended))
            written[name] = file_entry(path, bundle)
    for old in manifest.get("releases", {}).values():
        if old["path"] not in {e["path"] for e in written.values()}:
            (bundle / safe_member(old["path"], "manifest.json releases")).unlink(missing_ok=True)
    return written


def _release_contents(manifest: dict, results: Results, name: str, precision: str) -> tuple[list[str], dict]:
    """The files of the shipped artifact, and the zip's own manifest and results.json (hashed in it)."""
    artifacts = [a for a in manifest["artifacts"] if a["target"] == name and a["precision"] == precision]
    target_results = results.only(name).dumps()
    own = {
        **{k: v for k, v in manifest.items()
           if k not in ("targets", "artifacts", "rejected", "verdict", "releases", "results_files")},
        "targets": {name: manifest["targets"][name]}, "artifacts": artifacts, "rejected": [],
        "verdict": {name: manifest.get("verdict", {}).get(name)},
        "results_files": [text_entry(RESULTS, target_results)],
    }
    files = [f["path"] for f in listed_files(own) if f["path"] != RESULTS]
    extra = {MANIFEST: json.dumps(own, indent=2) + "\n", RESULTS: target_results}
    return files, extra


def write_zip(path: Path, root: Path, files: list[str], extra: dict[str, str]) -> None:
    """Write `files` (paths relative to root) and `extra` ({name: text}) into the zip at `path`, whole or
    not at all."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.fchmod(fd, 0o666 & ~umask())  # mkstemp makes it private; a release is for sharing
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, text in extra.items():
                archive.writestr(_info(safe_member(name, str(path))), text)
            for name in files:
                with open(root / safe_member(name, str(path)), "rb") as source, \
                        archive.open(_info(name), "w", force_zip64=True) as sink:
                    shutil.copyfileobj(source, sink, 1 << 20)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    return info


# ------------------------------------------------------------------------------------------- reading

def extract_zip(path: Path, dest: Path) -> None:
    """Extract a release zip into the empty folder `dest`, refusing absolute, '..', duplicate and
    symbolic-link entries before anything is written."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UserError(f"{path} is not a readable zip ({exc}); give a bundle folder or a zip bench wrote") from None
    with archive:
        seen = set()
        members = []
        for info in archive.infolist():
            name = safe_member(info.filename.rstrip("/") if info.is_dir() else info.filename, str(path))
            if stat.S_ISLNK(info.external_attr >> 16):
                raise UserError(f"{path}: entry {name!r} is a symbolic link; refusing it")
            if name in seen:
                raise UserError(f"{path}: entry {name!r} appears twice; refusing the archive")
            seen.add(name)
            members.append((info, name))
        root = dest.resolve()
        for info, name in members:
            target = (dest / name).resolve()
            if not target.is_relative_to(root):
                raise UserError(f"{path}: entry {name!r} leaves the folder it is extracted to; refusing it")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, open(target, "wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)


# ------------------------------------------------------------------------------------------- merging

def merge(inputs: list[Path], out: Path) -> dict:
    """Join bundles (folders or release zips) of one source, each holding other targets, into `out`.
    Returns {"manifest", "results" (None when no input was measured)}."""
    from .verify import verify

    if not inputs:
        raise UserError("give the bundles to merge: edge-pack bundle merge DIR1 DIR2 ... --out DIR")
    with tempfile.TemporaryDirectory(prefix="edge-pack-merge-") as tmp:
        parts = []
        for index, given in enumerate(inputs):
            folder = _open_input(Path(given), Path(tmp) / str(index))
            report = verify(folder)
            if not report["ok"]:
                kind = next(k for k in ("missing", "altered", "unlisted") if report[k])
                raise UserError(f"{given} does not match its manifest ({kind}: {report[kind][0]}); rebuild it")
            results = read_results(folder) if (folder / RESULTS).is_file() else None
            manifest = read_manifest(folder)
            if folder != Path(given):  # a release zip is its target's release in the merged bundle too
                manifest["releases"] = {name: file_entry(Path(given), Path(given).parent)
                                        for name in manifest.get("targets", {})}
            parts.append((Path(given), folder, manifest, results))
        if any(is_job(manifest) for _, _, manifest, _ in parts):  # several models: lineup.py merges them
            return merge_jobs(parts, out)
        _check_compatible(parts)
        manifest = _merged_manifest(parts)
        results = _merged_results(parts, manifest, out)
        with locked(out) as out, staged_folder(out) as work:
            for given, folder, part, _ in parts:
                for entry in listed_files(part):
                    destination = work / entry["path"]
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    from_zip = folder != given and entry["path"] == given.name
                    link_or_copy(given if from_zip else folder / entry["path"], destination)
            if results is not None:
                write_results_files(work, manifest, results)
            else:
                write_manifest(work, manifest)
    return {"manifest": manifest, "results": results}


def _open_input(given: Path, scratch: Path) -> Path:
    if given.is_dir():
        return given
    if given.is_file() and given.suffix == ".zip":
        scratch.mkdir(parents=True)
        extract_zip(given, scratch)
        return scratch
    raise UserError(f"{given} is neither a bundle folder nor a release zip; give folders written by edge-pack "
                    "build/bench")


def _check_compatible(parts) -> None:
    first_given, _, first, _ = parts[0]
    holder = {}
    for given, _, manifest, _ in parts:
        if manifest["source"].get("sha256") != first["source"].get("sha256"):
            raise UserError(f"{given} was built from another source than {first_given} (sha256 "
                            f"{str(manifest['source'].get('sha256'))[:12]}… vs {str(first['source'].get('sha256'))[:12]}…); "
                            "merge bundles of one source")
        for name in manifest.get("targets", {}):
            if name in holder:
                raise UserError(f"{holder[name]} and {given} both hold target {name}; merge bundles of different "
                                "targets (one CI job per target)")
            holder[name] = given


def _merged_manifest(parts) -> dict:
    first = parts[0][2]
    libraries: dict[str, list[str]] = {}
    for _, _, manifest, _ in parts:
        for name, version in manifest.get("tool", {}).get("libraries", {}).items():
            libraries.setdefault(name, [])
            if version not in libraries[name]:
                libraries[name].append(version)
    merged = {
        "schema": SCHEMA,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "source": first["source"],
        "tool": {"edge_pack": __version__, "libraries": {k: " / ".join(v) for k, v in libraries.items()}},
        "targets": {}, "artifacts": [], "rejected": [], "verdict": {}, "releases": {},
        "merged_from": [str(given) for given, _, _, _ in parts],
    }
    for _, _, manifest, _ in parts:
        for name, meta in manifest.get("targets", {}).items():
            merged["targets"][name] = {**meta, "tool": meta.get("tool", manifest.get("tool", {}))}
        for key in ("artifacts", "rejected"):
            merged[key] += manifest.get(key, [])
        for key in ("verdict", "releases"):
            merged[key].update(manifest.get(key, {}))
    return merged


def _merged_results(parts, manifest: dict, out: Path) -> Results | None:
    measured = [results for _, _, _, results in parts if results is not None]
    if not measured:
        return None
    first = measured[0]
    targets, rows = {}, []
    for results in measured:
        for name, target in results.targets.items():
            target.options = target.options or results.options
            target.tool = manifest["targets"].get(name, {}).get("tool", results.tool)
            targets[name] = target
        rows += results.rows
    return Results(source=first.source, targets=targets, rows=rows, edge_pack=__version__,
                   bundle=str(Path(out).resolve()), created=first.created, tool=manifest["tool"],
                   options=first.options, sla_file=first.sla_file,
                   releases={name: entry["path"] for name, entry in manifest["releases"].items()},
                   unmeasured=[name for name in manifest["targets"] if name not in targets])
