"""The pi target measured on a device over SSH, for real: an OpenSSH server (Debian's openssh-server) runs
on 127.0.0.1 on a free port with a host key and a user key made here, in a temporary folder, and
`edge-pack bench --device ssh://...` goes through it with the system's ssh client. The "device" is this
machine, so its results must match the local ones."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import assert_one_line_error, edge_pack, eventually

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (make install builds it)")
SSHD = Path("/usr/sbin/sshd")
if not SSHD.is_file() or not shutil.which("ssh"):
    pytest.skip("OpenSSH server/client not installed (make test installs openssh-server)", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A real sshd on 127.0.0.1:<free port> that knows only a key made here; yields the ssh_config file
    the client uses (EDGE_PACK_SSH_CONFIG) and the login."""
    work = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / name)], check=True)
    (work / "authorized_keys").write_text((work / "user_key.pub").read_text())
    port = _free_port()
    (work / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {work / 'host_key'}\nPidFile {work / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {work / 'authorized_keys'}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\n"
        "PermitUserEnvironment no\nMaxStartups 50\n")
    host_key = (work / "host_key.pub").read_text().split()
    (work / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    (work / "ssh_config").write_text(
        f"Host 127.0.0.1\n  IdentityFile {work / 'user_key'}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {work / 'known_hosts'}\n  StrictHostKeyChecking yes\n  LogLevel ERROR\n")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder, absent without the service
    server = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(work / "sshd_config")], stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(f"sshd did not start: {server.stderr.read().decode()}")
                time.sleep(0.1)
        user = os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
        yield {"config": work / "ssh_config", "login": f"{user}@127.0.0.1:{port}", "work": work, "port": port}
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def device(sshd, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("device")
    # The device's Python is the one with llama-cpp-python here: sshd's PATH would give the system's.
    address = f"ssh://{sshd['login']}?python={sys.executable}&dir={folder}"
    return {"address": address, "folder": folder, "env": {"EDGE_PACK_SSH_CONFIG": str(sshd["config"])}}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tiny_llama) -> Path:
    out = tmp_path_factory.mktemp("remote") / "bundle"
    run = edge_pack("build", tiny_llama, "--target", "pi", "-p", "f16", "-p", "q4_k_m", "--out", out)
    assert run.code == 0, run.stderr
    return out


def _bench(bundle, tiny_llama, *extra, env=None):
    return edge_pack("bench", bundle, "--eval", tiny_llama.parent / "eval.txt", "--runs", "2", "--json", *extra,
                     env=env)


def test_remote_results_match_local_ones(bundle, tiny_llama, device):
    local = _bench(bundle, tiny_llama)
    remote = _bench(bundle, tiny_llama, "--device", device["address"], env=device["env"])
    assert local.code in (0, 1) and remote.code in (0, 1), remote.stderr
    local_rows = {r["precision"]: r for r in local.json()["rows"]}
    for row in remote.json()["rows"]:
        here = local_rows[row["precision"]]
        assert row["error"] is None
        # same code, same machine, same tokens: the same numbers
        for key in ("perplexity", "kl_divergence", "same_top1"):
            assert row["metrics"][key] == pytest.approx(here["metrics"][key], rel=1e-4), key
        assert row["metrics"]["tg_tokens_per_s"] > 0 and row["metrics"]["threads"] == 1
        # the device says what it is
        assert row["host"]["address"].endswith("@127.0.0.1")
        assert row["host"]["cpu"] and row["host"]["ram_mb"] > 0 and row["host"]["os"]
    # the artifacts are stored by content on the device; the runs' folders are gone
    stored = sorted(p.name for p in (device["folder"] / "models").rglob("*.gguf"))
    assert len(stored) == 2 and all(name.endswith(("F16.gguf", "Q4_K_M.gguf")) for name in stored)
    assert not list((device["folder"] / "runs").iterdir())


def test_files_with_the_same_sha256_are_not_sent_again(bundle, tiny_llama, device):
    assert _bench(bundle, tiny_llama, "-p", "f16", "--device", device["address"], env=device["env"]).code in (0, 1)
    (model,) = (device["folder"] / "models").rglob("*F16.gguf")
    before = model.stat().st_mtime_ns, model.stat().st_ino
    run = _bench(bundle, tiny_llama, "-p", "f16", "--device", device["address"], env=device["env"])
    assert run.code in (0, 1), run.stderr
    assert (model.stat().st_mtime_ns, model.stat().st_ino) == before


def test_a_run_past_its_time_leaves_nothing_running(bundle, tiny_llama, device):
    run = edge_pack("bench", bundle, "-p", "q4_k_m", "--eval", tiny_llama.parent / "eval.txt", "--runs", "100000",
                    "--timeout", "8", "--json", "--device", device["address"], env=device["env"])
    (row,) = run.json()["rows"]
    assert "timed out" in row["error"], row["error"]
    def nothing_left():
        return not subprocess.run(["pgrep", "-f", str(device["folder"])], capture_output=True, text=True).stdout.strip()

    assert eventually(nothing_left), subprocess.run(["pgrep", "-af", str(device["folder"])], capture_output=True,
                                                    text=True).stdout
    assert not list((device["folder"] / "runs").iterdir())


@pytest.mark.bad_input
def test_a_device_without_llama_cpp_python_says_how_to_install_it(bundle, sshd, tmp_path):
    python = shutil.which("python3", path="/usr/bin") or "/usr/bin/python3"
    address = f"ssh://{sshd['login']}?python={python}&dir={tmp_path}"
    run = edge_pack("bench", bundle, "--device", address, env={"EDGE_PACK_SSH_CONFIG": str(sshd["config"])})
    assert_one_line_error(run, 2, "lacks llama-cpp-python", "pip install llama-cpp-python numpy")


@pytest.mark.bad_input
def test_a_device_without_python_says_so(bundle, sshd, tmp_path):
    address = f"ssh://{sshd['login']}?python=/nonexistent/python3&dir={tmp_path}"
    run = edge_pack("bench", bundle, "--device", address, env={"EDGE_PACK_SSH_CONFIG": str(sshd["config"])})
    assert_one_line_error(run, 2, "has no /nonexistent/python3", "apt install python3")


@pytest.mark.bad_input
def test_an_unreachable_device_is_one_line(bundle, sshd):
    port = _free_port()
    run = edge_pack("bench", bundle, "--device", f"ssh://nobody@127.0.0.1:{port}",
                    env={"EDGE_PACK_SSH_CONFIG": str(sshd["config"])})
    assert_one_line_error(run, 2, "cannot reach nobody@127.0.0.1")


@pytest.mark.bad_input
def test_bad_device_addresses(bundle):
    for address, words in (("pi@raspberrypi", "not an SSH address"), ("ssh://pi@host:99999", "out of range"),
                           ("ssh://pi@host?pyhton=x", "unknown setting")):
        run = edge_pack("bench", bundle, "--device", address)
        assert_one_line_error(run, 2, words)


def test_a_runner_that_cannot_use_a_device_says_so(tmp_path, topic_classifier):
    out = tmp_path / "b"
    assert edge_pack("build", topic_classifier, "-t", "web", "-p", "fp32", "-o", out).code == 0
    run = edge_pack("bench", out, "--device", "ssh://pi@raspberrypi.local")
    assert_one_line_error(run, 2, "measures on this machine only", "--target pi")


def test_remote_results_name_the_device(bundle, tiny_llama, device):
    run = edge_pack("bench", bundle, "-p", "q4_k_m", "--eval", tiny_llama.parent / "eval.txt", "--runs", "1",
                    "--device", device["address"], env=device["env"])
    assert run.code in (0, 1), run.stderr
    assert "device: " in run.stdout and "@127.0.0.1" in run.stdout
    assert json.loads((bundle / "results.json").read_text())["rows"][0]["host"]["address"].endswith("127.0.0.1")
