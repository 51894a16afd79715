"""What a machine is: board model, CPU, RAM, OS, cores. Standard library only, because edge-pack runs this
file with a device's Python before anything else is known about it (see edge_pack/runners/ssh.py)."""
from __future__ import annotations

import os
import platform


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def _cpuinfo(keys: tuple[str, ...]) -> str | None:
    for line in _read("/proc/cpuinfo").splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() in keys and value.strip():
            return value.strip()
    return None


def facts() -> dict:
    """Board model (a Raspberry Pi names itself in the device tree), CPU, RAM in MB, OS and core count."""
    model = _read("/proc/device-tree/model").strip("\x00\n ") or _read("/sys/firmware/devicetree/base/model").strip("\x00\n ")
    ram_mb = None
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            ram_mb = int(line.split()[1]) // 1024
    os_name = None
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            os_name = line.split("=", 1)[1].strip().strip('"')
    return {
        "device_model": model or None,
        "cpu": _cpuinfo(("model name", "hardware", "cpu model")) or platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "ram_mb": ram_mb,
        "os": os_name or f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "system": platform.system(),
        "release": platform.release(),
        "python": platform.python_version(),
    }
