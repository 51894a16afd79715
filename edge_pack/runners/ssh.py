"""Run a harness on a device over SSH with the system's OpenSSH client, so that the user's ~/.ssh/config,
keys, agent and jump hosts work as they do for `ssh` itself.

The harness and the artifact are copied to a folder on the device (files already there with the same
sha256 are not sent again; artifacts are stored by content hash), the harness runs with the device's own
Python under a time limit, and the JSON result and outputs are read back. Whatever happens, the run's
process group is ended and its folder removed: nothing is left running on the device.

Address: ssh://[user@]host[:port][?python=PATH&dir=PATH]; EDGE_PACK_SSH_CONFIG names an ssh_config file
(`ssh -F`) for setups that need one apart from ~/.ssh/config (the tests use it).
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

from ..errors import RunnerError, UserError
from ..hashing import file_sha256
from ..resources import harness_dir
from . import RunOptions, RunResult
from .local import harness_request, last_words, read_result, write_inputs

CONNECT_TIMEOUT_S = 15
COMMAND_TIMEOUT_S = 120  # each short command (probe, hashes, copies of small files)
DEFAULT_FOLDER = ".cache/edge-pack-device"  # under the device user's home
PIP_NAMES = {"llama_cpp": "llama-cpp-python", "onnxruntime": "onnxruntime", "numpy": "numpy"}
_ADDRESS = re.compile(r"ssh://(?:(?P<user>[^@/:?]+)@)?(?P<host>[^@/:?\[\]]+|\[[0-9a-fA-F:.]+\])(?::(?P<port>\d+))?/?"
                      r"(?:\?(?P<query>.*))?")
_PROBED: dict[tuple[str, tuple[str, ...]], dict] = {}


@dataclass(frozen=True)
class Device:
    address: str
    user: str | None
    host: str
    port: int | None
    python: str = "python3"
    folder: str | None = None

    @property
    def login(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host


def parse(address: str) -> Device:
    match = _ADDRESS.fullmatch(address.strip())
    if not match:
        raise UserError(f"--device {address!r} is not an SSH address; write ssh://user@host[:port]")
    query = parse_qs(match["query"] or "", keep_blank_values=False)
    unknown = sorted(set(query) - {"python", "dir"})
    if unknown:
        raise UserError(f"--device {address!r}: unknown setting {unknown[0]!r}; settings are python=PATH and dir=PATH")
    port = int(match["port"]) if match["port"] else None
    if port is not None and not 0 < port < 65536:
        raise UserError(f"--device {address!r}: port {port} is out of range")
    return Device(address=address, user=match["user"], host=match["host"].strip("[]"), port=port,
                  python=query.get("python", ["python3"])[0], folder=query.get("dir", [None])[0])


def _quote(path: str) -> str:
    """Quote for the device's shell, leaving a leading ~/ to be expanded there."""
    return "~/" + shlex.quote(path[2:]) if path.startswith("~/") else shlex.quote(path)


def ssh_argv(device: Device, command: str) -> list[str]:
    argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}",
            "-o", "ServerAliveInterval=10", "-o", "ServerAliveCountMax=3"]
    if os.environ.get("EDGE_PACK_SSH_CONFIG"):
        argv += ["-F", os.environ["EDGE_PACK_SSH_CONFIG"]]
    if device.port:
        argv += ["-p", str(device.port)]
    return [*argv, "--", device.login, command]


def _ssh(device: Device, command: str, stdin=None, timeout: float = COMMAND_TIMEOUT_S,
         text: bool = True) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(ssh_argv(device, command), input=stdin if isinstance(stdin, (str, bytes)) else None,
                              stdin=None if isinstance(stdin, (str, bytes)) else (stdin or subprocess.DEVNULL),
                              capture_output=True, text=text, timeout=timeout)
    except FileNotFoundError:
        raise UserError("--device needs the OpenSSH client (ssh), which is not installed here; install it with: "
                        "sudo apt install openssh-client") from None
    except subprocess.TimeoutExpired:
        raise RunnerError(f"{device.login} did not answer within {timeout:g} s over SSH") from None


def _stderr(proc: subprocess.CompletedProcess) -> str:
    text = proc.stderr if isinstance(proc.stderr, str) else (proc.stderr or b"").decode(errors="replace")
    return last_words(text)


def _probe_script(modules: tuple[str, ...]) -> str:
    checks = "".join(f"""
try:
    import {m}
    info["modules"]["{m}"] = getattr({m}, "__version__", "installed")
except Exception:
    info["modules"]["{m}"] = None
""" for m in modules)
    return ((harness_dir() / "device.py").read_text() + "\nimport json, os\ninfo = facts()\ninfo['modules'] = {}\n"
            + checks + "info['home'] = os.path.expanduser('~')\nprint('EDGE-PACK-PROBE ' + json.dumps(info))\n")


def probe(address: str, modules: tuple[str, ...] = ("numpy",)) -> dict:
    """Reach the device once and learn what it is (board, CPU, RAM, OS) and whether its Python has the
    modules the harness needs; a device that cannot run it is the user's to fix, said in one line."""
    key = (address, modules)
    if key in _PROBED:
        return _PROBED[key]
    device = parse(address)
    python = _quote(device.python)
    proc = _ssh(device, f"command -v {python} >/dev/null 2>&1 || exit 127; exec {python} -",
                stdin=_probe_script(modules))
    if proc.returncode == 255:
        raise UserError(f"cannot reach {device.login} over SSH ({_stderr(proc) or 'no answer'}); check that "
                        f"`ssh {f'-p {device.port} ' if device.port else ''}{device.login}` works without a password prompt")
    if proc.returncode == 127:
        raise UserError(f"{device.login} has no {device.python}; install it there with: sudo apt install python3 "
                        "python3-venv (or name one with ?python=PATH in the --device address)")
    line = next((l for l in proc.stdout.splitlines() if l.startswith("EDGE-PACK-PROBE ")), None)
    if proc.returncode != 0 or line is None:
        raise UserError(f"{device.python} on {device.login} failed to start ({_stderr(proc) or proc.returncode})")
    info = json.loads(line.split(" ", 1)[1])
    missing = [m for m in modules if not info["modules"].get(m)]
    if missing:
        packages = " ".join(PIP_NAMES.get(m, m) for m in missing)
        raise UserError(f"{device.python} on {device.login} lacks {', '.join(PIP_NAMES.get(m, m) for m in missing)}; "
                        f"install it there with: {device.python} -m pip install {packages} (on Raspberry Pi OS, in a "
                        f"venv: python3 -m venv ~/edge-pack && ~/edge-pack/bin/pip install {packages}, then use "
                        f"--device '{device.address.split('?')[0]}?python=~/edge-pack/bin/python')")
    _PROBED[key] = info
    return info


def _folder(device: Device, info: dict) -> str:
    folder = device.folder or f"{info['home']}/{DEFAULT_FOLDER}"
    return folder if not folder.startswith("~/") else f"{info['home']}/{folder[2:]}"


_HASHES = """import hashlib, json, os, sys
found = {}
for path in sys.argv[1:]:
    if os.path.isfile(path):
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        found[path] = digest.hexdigest()
print(json.dumps(found))
"""


def sync(device: Device, pairs: list[tuple[Path, str]], timeout: float) -> int:
    """Copy each local file to its path on the device unless a file with the same sha256 is there;
    returns the bytes sent."""
    if not pairs:
        return 0
    remote = " ".join(shlex.quote(r) for _, r in pairs)
    proc = _ssh(device, f"exec {_quote(device.python)} - {remote}", stdin=_HASHES)
    if proc.returncode != 0:
        raise RunnerError(f"could not list files on {device.login}: {_stderr(proc)}")
    there = json.loads(proc.stdout.strip().splitlines()[-1])
    sent = 0
    for local, path in pairs:
        if there.get(path) == file_sha256(local):
            continue
        part = f"{path}.part-{uuid.uuid4().hex[:8]}"
        command = (f"mkdir -p {shlex.quote(os.path.dirname(path))} && cat > {shlex.quote(part)} && "
                   f"mv -f {shlex.quote(part)} {shlex.quote(path)} || {{ rm -f {shlex.quote(part)}; exit 1; }}")
        with open(local, "rb") as handle:
            proc = _ssh(device, command, stdin=handle, timeout=timeout, text=False)
        if proc.returncode != 0:
            raise RunnerError(f"could not copy {local.name} to {device.login}: {_stderr(proc)}")
        sent += local.stat().st_size
    return sent


def _fetch(device: Device, path: str, to: Path) -> None:
    proc = _ssh(device, f"cat {shlex.quote(path)}", text=False)
    if proc.returncode != 0:
        raise RunnerError(f"could not read {os.path.basename(path)} back from {device.login}: {_stderr(proc)}")
    to.write_bytes(proc.stdout)


def run_harness(address: str, script: str, model_files: list[Path], samples: list[dict], latency_input: dict | None,
                options: RunOptions, extra: dict | None = None, modules: tuple[str, ...] = ("numpy",)) -> RunResult:
    """Run harness/<script> on the device for model_files[0] (its companions beside it), like
    local.run_harness does here."""
    device = parse(address)
    info = probe(address, modules)
    folder = _folder(device, info)
    harness = harness_dir()
    script_dir = Path(script).parts[0]
    code = [harness / "protocol.py", harness / "device.py", harness / "decoding.py",
            *sorted((harness / script_dir).glob("*.py"))]
    digest = file_sha256(model_files[0])[:16]
    model_paths = [f"{folder}/models/{digest}/{p.name}" for p in model_files]
    sync(device, [(p, f"{folder}/harness/{p.relative_to(harness).as_posix()}") for p in code], COMMAND_TIMEOUT_S)
    sync(device, list(zip(model_files, model_paths)), max(options.timeout_s, COMMAND_TIMEOUT_S))

    run_dir = f"{folder}/runs/{uuid.uuid4().hex}"
    started = False
    with tempfile.TemporaryDirectory(prefix="edge-pack-ssh-") as tmp:
        work = Path(tmp)
        try:
            write_inputs(work / "inputs.npz", samples, latency_input)
            request = harness_request(model_paths[0], run_dir, options, extra)
            (work / "request.json").write_text(json.dumps(request))
            sync(device, [(work / "inputs.npz", f"{run_dir}/inputs.npz"),
                          (work / "request.json", f"{run_dir}/request.json")], COMMAND_TIMEOUT_S)
            limit = int(options.timeout_s) + 1
            python, target = _quote(device.python), shlex.quote(f"{folder}/harness/{script}")
            # The shell's pid becomes timeout's, which leads its own process group: the cleanup ends it all.
            command = (f"cd {shlex.quote(run_dir)} && echo $$ > pid && if command -v timeout >/dev/null 2>&1; "
                       f"then exec timeout -k 5 {limit} {python} {target} request.json; "
                       f"else exec {python} {target} request.json; fi")
            started = True
            proc = _ssh(device, command, timeout=limit + 30)
            if proc.returncode == 124:
                raise RunnerError(f"timed out after {limit} s on {device.login}")
            if proc.returncode == 255:
                raise RunnerError(f"lost the SSH connection to {device.login}: {_stderr(proc)}")
            if proc.returncode != 0:
                raise RunnerError(f"on {device.login}: {_stderr(proc) or f'exit code {proc.returncode}'}")
            _fetch(device, f"{run_dir}/result.json", work / "result.json")
            _fetch(device, f"{run_dir}/outputs.npz", work / "outputs.npz")
            result = read_result(work / "result.json", work / "outputs.npz", len(samples))
            started = False  # finished: nothing of it runs any more
        finally:
            _cleanup(device, run_dir, kill=started)
    result.host = {**result.host, "address": device.login}
    return result


def _cleanup(device: Device, run_dir: str, kill: bool) -> None:
    """End the run's process group (after a failure or timeout) and remove its folder."""
    quoted = shlex.quote(run_dir)
    stop = f"test -f {quoted}/pid && kill -KILL -- -$(cat {quoted}/pid) 2>/dev/null; " if kill else ""
    try:
        _ssh(device, f"{stop}rm -rf {quoted}", timeout=COMMAND_TIMEOUT_S)
    except RunnerError:
        pass  # the device is gone: the run's own time limit ends it there
