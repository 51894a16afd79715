"""What the Transformers.js runners (node.py, browser.py) share: where Node, the npm packages and Chromium
are, how to install the packages, and one measurement as a child process speaking JSON.

The npm packages are pinned by harness/web/package.json + package-lock.json and installed with `npm ci`
(`edge-pack setup web`, which `make web-runtimes` runs) into edge-pack's cache folder, never beside the
harness: the same place for a checkout and an installed wheel (whose site-packages only pip should write,
and whose wheel must not carry 500 MB of node_modules). The folder is named by the lockfile's hash, so an
edge-pack with another lockfile never runs against packages installed for an older one.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..cache import cache_root
from ..errors import RunnerError, UserError
from ..hashing import file_sha256
from ..resources import harness_dir
from . import RunOptions, RunResult, with_asks
from .local import last_words

# The packages the harness imports; the lockfile pins them and everything they pull in.
PACKAGES = ("@huggingface/transformers", "playwright-core")
NODE_MAJOR = 20  # playwright-core 1.65 and Transformers.js 4 need Node 20 or later
INSTALL_NODE = "install Node.js 20+ (Debian: apt-get install nodejs npm)"
INSTALL_CHROMIUM = "install Chromium (Debian: apt-get install chromium)"
SETUP = "edge-pack setup web"
# The dtypes Transformers.js names files by (onnx/model<suffix>.onnx; its utils/dtypes.js), as the web target does.
DTYPES = ("fp32", "fp16", "int8", "uint8", "q8", "q4", "q4f16", "bnb4")


def web_dir() -> Path:
    return harness_dir() / "web"


def node() -> str | None:
    return shutil.which("node")


def node_version() -> tuple[int, ...] | None:
    exe = node()
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
        return tuple(int(p) for p in out.strip().lstrip("v").split("."))
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def chromium() -> str | None:
    """The Debian chromium binary (EDGE_PACK_CHROMIUM names another one)."""
    chosen = os.environ.get("EDGE_PACK_CHROMIUM")
    if chosen:
        return chosen if os.access(chosen, os.X_OK) else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _locked_versions(folder: Path) -> dict[str, str]:
    lock = json.loads((folder / "package-lock.json").read_text())["packages"]
    return {name: lock[f"node_modules/{name}"]["version"] for name in PACKAGES}


def _installed(folder: Path) -> bool:
    """node_modules holds the versions the lockfile pins (a stale or partial install is not used)."""
    try:
        for name, version in _locked_versions(folder).items():
            found = json.loads((folder / "node_modules" / name / "package.json").read_text())["version"]
            if found != version:
                return False
        return True
    except (OSError, ValueError, KeyError):
        return False


def install_dir() -> Path:
    """Where `npm ci` puts the packages this harness's lockfile pins (EDGE_PACK_CACHE, else ~/.cache/edge-pack)."""
    return cache_root() / "web-packages" / file_sha256(web_dir() / "package-lock.json")[:16]


def packages_dir() -> Path | None:
    """The folder whose node_modules holds the pinned packages, or None before `edge-pack setup web`."""
    folder = install_dir()
    return folder if _installed(folder) else None


def missing(browser: bool) -> list[str]:
    """What this machine lacks to run Transformers.js (in Chromium when `browser`), each with its fix."""
    found = []
    version = node_version()
    if version is None or version[0] < NODE_MAJOR:
        found.append(f"Node.js {NODE_MAJOR}+ ({'found ' + '.'.join(map(str, version)) if version else 'not found'}) — "
                     f"{INSTALL_NODE}")
    if packages_dir() is None:
        found.append(f"npm packages {', '.join(PACKAGES)} — run: {SETUP}")
    if browser and chromium() is None:
        found.append(f"Chromium — {INSTALL_CHROMIUM}")
    return found


def check(browser: bool) -> None:
    found = missing(browser)
    if found:
        raise UserError(f"the {'browser' if browser else 'node'} runtime needs: {'; '.join(found)}")


def install(progress=print) -> Path:
    """npm ci the pinned packages into install_dir(), unless they are there already."""
    ready = packages_dir()
    if ready is not None:
        return ready
    if shutil.which("npm") is None:
        raise UserError(f"npm is not installed; {INSTALL_NODE}")
    folder = install_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(web_dir() / name, folder / name)
    progress(f"installing {', '.join(PACKAGES)} with npm ci into {folder} (about 500 MB)")
    # The postinstall of onnxruntime-node downloads a CUDA add-on and fails offline; the CPU binding is inside.
    env = {**os.environ, "ONNXRUNTIME_NODE_INSTALL": "skip"}
    proc = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=folder, env=env, capture_output=True,
                          text=True)
    if proc.returncode != 0 or not _installed(folder):
        raise UserError(f"npm ci in {folder} failed: {last_words(proc.stderr or proc.stdout)}")
    return folder


# ------------------------------------------------------------------------------------------ measuring

class Runtime:
    """What a Transformers.js runner module (node.py, browser.py) offers: harness/web/<script>, in Chromium
    when `browser`."""

    def __init__(self, script: str, browser: bool):
        self.script, self.browser = script, browser

    def missing(self) -> list[str]:
        return missing(self.browser)

    def run(self, files: list[Path], samples: list[dict], latency_input: dict | None, options: RunOptions,
            asks=None) -> RunResult:
        options = with_asks(options, asks)  # a decoder's generation asks: greedy generate() (harness/web/generate.mjs)
        return measure(self.script, files, samples, latency_input, options, self.browser)


def _encode(arrays: dict[str, np.ndarray]) -> dict:
    encoded = {}
    for name, value in arrays.items():
        value = np.ascontiguousarray(value)
        dtype = "float32" if value.dtype.kind == "f" else "int64" if value.dtype.kind in "iu" else "bool"
        value = value.astype({"float32": np.float32, "int64": np.int64, "bool": np.uint8}[dtype])
        encoded[name] = {"dtype": dtype, "dims": list(value.shape), "data": base64.b64encode(value.tobytes()).decode()}
    return encoded


def _decode(encoded: dict) -> dict[str, np.ndarray]:
    return {name: np.frombuffer(base64.b64decode(v["data"]), dtype=np.float32).reshape(v["dims"])
            for name, v in encoded.items()}


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM first: playwright closes the browser it launched on SIGTERM, a SIGKILL would orphan it."""
    proc.terminate()
    try:
        proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def measure(script: str, files: list[Path], samples: list[dict], latency_input: dict | None,
            options: RunOptions, browser: bool) -> RunResult:
    """Run harness/web/<script> on the artifact `files` (an onnx/model_<dtype>.onnx inside a target folder)."""
    check(browser)
    model = files[0]
    target_dir = model.parent.parent  # <target>/onnx/model_<dtype>.onnx, as Transformers.js lays it out
    dtype = model.stem.removeprefix("model").lstrip("_") or "fp32"
    dtype = {"quantized": "q8"}.get(dtype, dtype)
    file_name = None
    if dtype not in DTYPES:  # a file of its own name (a per-layer mix): loaded as that name + fp32's empty suffix
        dtype, file_name = "fp32", model.stem
    with tempfile.TemporaryDirectory(prefix="edge-pack-js-") as tmp:
        request = {
            "model_root": str(target_dir.parent.resolve()) + os.sep, "model_id": target_dir.name, "dtype": dtype,
            "task": options.task, "external_data": len(files) > 1, "model_file_name": file_name, "threads": options.threads,
            "warmup": options.warmup, "runs": options.runs, "samples": [_encode(s) for s in samples],
            "latency": _encode(latency_input) if latency_input else None, "result": str(Path(tmp) / "result.json"),
            "packages": str(packages_dir()), "chromium": chromium(), "profile": str(Path(tmp) / "profile"),
            **options.extra,
        }
        (Path(tmp) / "request.json").write_text(json.dumps(request))
        argv = [node(), str(web_dir() / script), str(Path(tmp) / "request.json")]
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
            try:
                stdout, stderr = proc.communicate(timeout=options.timeout_s)
            except subprocess.TimeoutExpired:
                _stop(proc)
                raise RunnerError(f"timed out after {options.timeout_s:.0f} s") from None
        if proc.returncode != 0 or not (Path(tmp) / "result.json").is_file():
            raise RunnerError(last_words(stderr or stdout) or f"exited with code {proc.returncode}")
        result = json.loads((Path(tmp) / "result.json").read_text())
    measured = {}
    if browser:
        outside = result["outside_requests"]
        if outside:  # the numbers would not be those of a self-contained page
            raise RunnerError(f"the page requested {len(outside)} outside address(es), e.g. {outside[0]}")
        measured = {"outside_requests": len(outside), "local_requests": result["local_requests"]}
    host = {**result.get("host", {}), **({"requests": result["requests"]} if browser else {})}
    # A software WebGPU adapter's timings are a CPU emulating a GPU: labelled so, never as GPU speed.
    obtained = {"latency": "on a software adapter"} if result.get("software_adapter") else {}
    return RunResult(outputs=[_decode(o) for o in result["outputs"]], load_ms=result["load_ms"],
                     latency_ms=result["latency_ms"], peak_rss_mb=result["peak_rss_mb"], runtime=result["runtime"],
                     host=host, postprocessed=result["postprocessed"], metrics=measured, obtained=obtained,
                     answers=result.get("answers", []))
