"""Unattended release pipelines: corrupt files, interrupts, a full disk, concurrent writers, runtimes that
hang or crash. Each case asserts the exit code, a one-line message without a traceback, and DIR's state."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import ROOT, assert_one_line_error, edge_pack

TESTS = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.bad_input


def _snapshot(folder: Path) -> dict | None:
    if not folder.exists():
        return None
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _leftovers(out: Path) -> list[str]:
    return [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


@pytest.fixture
def previous(tmp_path) -> Path:
    out = tmp_path / "dist"
    out.mkdir()
    (out / "manifest.json").write_text('{"schema": "previous"}')
    return out


# ------------------------------------------------------------------------------------- corrupt sources

CUTS = [1, 7, 0.1, 0.5, 0.99]


def _cut(data: bytes, cut) -> bytes:
    return data[: cut if isinstance(cut, int) else int(len(data) * cut)]


@pytest.mark.parametrize("cut", CUTS)
def test_truncated_safetensors(tmp_path, previous, topic_classifier, cut):
    folder = tmp_path / "model"
    shutil.copytree(topic_classifier, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(_cut(weights.read_bytes(), cut))
    before = _snapshot(previous)
    assert_one_line_error(edge_pack("build", folder, "-t", "web", "-o", previous), 2, "safetensors")
    assert _snapshot(previous) == before and not _leftovers(previous)


@pytest.fixture(scope="module")
def onnx_bytes(tmp_path_factory, topic_classifier) -> bytes:
    out = tmp_path_factory.mktemp("onnx") / "b"
    assert edge_pack("build", topic_classifier, "-t", "web", "-p", "fp32", "-o", out).code == 0
    return (out / "web/onnx/model.onnx").read_bytes()


@pytest.mark.parametrize("cut", CUTS)
def test_truncated_onnx(tmp_path, previous, onnx_bytes, cut):
    path = tmp_path / "model.onnx"
    path.write_bytes(_cut(onnx_bytes, cut))
    before = _snapshot(previous)
    assert_one_line_error(edge_pack("build", path, "-t", "web", "-o", previous), 2, "ONNX")
    assert _snapshot(previous) == before and not _leftovers(previous)


@pytest.mark.parametrize("suffix, size", [(".onnx", 0), (".onnx", 64), (".onnx", 100_000), (".safetensors", 0),
                                          (".safetensors", 64), (".safetensors", 100_000)])
def test_random_bytes(tmp_path, previous, topic_classifier, suffix, size):
    rng = np.random.default_rng(size)
    if suffix == ".onnx":
        source = noise = tmp_path / "model.onnx"
    else:  # the folder is the source; its weights are noise
        source = tmp_path / "model"
        shutil.copytree(topic_classifier, source)
        noise = source / "model.safetensors"
    noise.write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    before = _snapshot(previous)
    run = edge_pack("build", source, "-t", "web", "-o", previous)
    assert_one_line_error(run, 2)
    assert _snapshot(previous) == before


def test_truncated_pickle_with_consent(tmp_path, previous, topic_classifier):
    """--allow-pickle lets torch read a .bin; a broken one is still a clean error."""
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(topic_classifier / "config.json", folder)
    (folder / "pytorch_model.bin").write_bytes(b"PK\x03\x04 truncated")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(topic_classifier / name, folder)
    run = edge_pack("build", folder, "-t", "web", "-o", previous, "--allow-pickle")
    assert run.code == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("edge-pack: error: ")


def test_pickle_marker_never_appears(tmp_path, previous):
    """A pickle that runs `touch` when unpickled: without --allow-pickle nothing unpickles it."""
    marker = tmp_path / "executed"
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["BertModel"], "model_type": "bert"}))
    (folder / "pytorch_model.bin").write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    for source in (folder, folder / "pytorch_model.bin"):
        assert_one_line_error(edge_pack("build", source, "-t", "web", "-o", previous), 2, "pickle")
        assert_one_line_error(edge_pack("bench", source, "-t", "web"), 2, "pickle")
    assert not marker.exists()


def _onnx_with_external_data(folder: Path, location: str) -> Path:
    weight = numpy_helper.from_array(np.ones((4, 4), dtype=np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = folder / "model.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="w.bin",
              size_threshold=0)
    model = onnx.load(str(path), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = location
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../secret.bin"])
def test_onnx_external_data_outside_its_folder_is_refused(tmp_path, previous, location):
    (tmp_path / "secret.bin").write_bytes(np.ones(16, dtype=np.float32).tobytes())
    folder = tmp_path / "model"
    folder.mkdir()
    path = _onnx_with_external_data(folder, location)
    before = _snapshot(previous)
    assert_one_line_error(edge_pack("build", path, "-t", "web", "-o", previous), 2, "outside the model's folder")
    assert _snapshot(previous) == before


def test_onnx_external_data_inside_its_folder_works(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    path = _onnx_with_external_data(folder, "w.bin")
    run = edge_pack("build", path, "-t", "web", "-p", "fp32", "-o", tmp_path / "out")
    assert run.code == 0, run.stderr


# ------------------------------------------------------------------------------------- interrupts

@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("after", [1.0, 6.0, 12.0])
def test_interrupted_build_leaves_dir_as_it_was(tmp_path, minilm, previous, signum, code, after):
    before = _snapshot(previous)
    exe = Path(sys.executable).parent / "edge-pack"
    proc = subprocess.Popen([str(exe), "build", "demo", "-t", "web", "-o", str(previous)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    # `after` counts from the moment the build has started its work (its lock or work folder exists, so its
    # handlers are installed), not from the fork: on a busy core Python's own start-up can take seconds, and a
    # signal during `import` is Python's KeyboardInterrupt, not edge-pack's.
    deadline = time.monotonic() + 120
    while not _leftovers(previous) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(after)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    if proc.returncode == 0:  # the build won the race: then DIR is the new bundle, whole
        assert edge_pack("verify", previous).code == 0
    else:
        assert proc.returncode == code, stderr
        assert "Traceback" not in stderr and "interrupted" in stderr.strip().splitlines()[-1]
        assert _snapshot(previous) == before
    assert not _leftovers(previous)
    rerun = edge_pack("build", "demo", "-t", "web", "-p", "q8", "-o", previous)
    assert rerun.code == 0, rerun.stderr
    assert edge_pack("verify", previous).code == 0


def test_killed_build_is_cleaned_up_by_the_next_run(tmp_path, minilm, previous):
    """SIGKILL cannot be handled: DIR is untouched, and the next run removes the dead run's work folder."""
    before = _snapshot(previous)
    exe = Path(sys.executable).parent / "edge-pack"
    proc = subprocess.Popen([str(exe), "build", "demo", "-t", "web", "-o", str(previous)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not _leftovers(previous) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.kill()
    proc.wait()
    assert _snapshot(previous) == before
    assert edge_pack("build", "demo", "-t", "web", "-p", "fp32", "-o", previous).code == 0
    assert not _leftovers(previous)


# ------------------------------------------------------------------------------------- full disk

@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_full_disk_leaves_nothing_half_written(small_disk, minilm):
    out = small_disk / "dist"
    out.mkdir()
    (out / "manifest.json").write_text("previous")
    run = edge_pack("build", "demo", "-t", "web", "-p", "fp32", "-p", "q8", "-o", out)
    assert_one_line_error(run, 2, "is full", "free space")
    assert _snapshot(out) == {"manifest.json": b"previous"}
    assert not _leftovers(out)


# ------------------------------------------------------------------------------------- concurrency

def test_two_builds_into_one_folder(tmp_path, minilm):
    out = tmp_path / "dist"
    exe = Path(sys.executable).parent / "edge-pack"
    first = subprocess.Popen([str(exe), "build", "demo", "-t", "web", "-o", str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = tmp_path / ".dist.lock"
    deadline = time.monotonic() + 60
    while not lock.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    second = edge_pack("build", "demo", "-t", "web", "-p", "fp16", "-o", out)
    assert_one_line_error(second, 2, "another edge-pack process", str(first.pid))
    assert first.wait(timeout=600) == 0, first.stderr.read()
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["artifacts"]) == 7  # the first build's, whole; the second wrote nothing
    assert edge_pack("verify", out).code == 0 and not lock.exists()


def test_a_lock_file_removed_by_its_finishing_holder_is_not_the_one_locked(tmp_path, monkeypatch):
    """The window between opening the lock file and locking it, forced in-process (no second process can
    hit that instant reliably): the holder finishes and removes the file there, as its `finally` does."""
    import fcntl

    from edge_pack import staging

    out, real_flock, calls = tmp_path / "dist", fcntl.flock, []

    def holder_finishes_first(handle, flags):
        if not calls:
            (tmp_path / ".dist.lock").unlink()
        calls.append(flags)
        return real_flock(handle, flags)

    monkeypatch.setattr(staging.fcntl, "flock", holder_finishes_first)
    with staging.locked(out):
        monkeypatch.setattr(staging.fcntl, "flock", real_flock)
        assert len(calls) == 2  # locked the removed file, saw it, locked the one at the path
        with pytest.raises(staging.UserError, match="another edge-pack process"):
            with staging.locked(out):
                pass
    assert not (tmp_path / ".dist.lock").exists()


# ------------------------------------------------------------------------------------- faulty runtimes

@pytest.fixture(scope="module")
def faulty_bundle(tmp_path_factory, topic_classifier):
    folder = tmp_path_factory.mktemp("faulty")
    target = folder / "flaky.toml"
    web = (ROOT / "targets" / "web.toml").read_text()
    target.write_text(re.sub(r"^runtimes = \[.*\]$", 'runtimes = ["ort", "reliability.hangs", "reliability.crashes"]',
                             web.replace('name = "web"', 'name = "flaky"'), flags=re.MULTILINE))
    out = folder / "bundle"
    run = edge_pack("build", topic_classifier, "--target-file", target, "-t", "flaky", "-p", "fp32", "-p", "q8",
                    "-p", "int8", "-p", "uint8", "-o", out)
    assert run.code == 0, run.stderr
    return out, target


@pytest.mark.parametrize("runtime, message", [("reliability.crashes", "crashed (SIGSEGV)"),
                                              ("reliability.hangs", "timed out after 30 s")])
def test_a_runtime_that_crashes_or_hangs_fails_one_candidate(faulty_bundle, runtime, message):
    out, target = faulty_bundle
    env = {"PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    run = edge_pack("bench", out, "--target-file", target, "--runtime", runtime, "--timeout", "30", "--runs", "2",
                    "--json", env=env)
    assert run.code == 0, run.stderr  # the others pass, so the target still has a candidate
    rows = {r["precision"]: r for r in run.json()["rows"]}
    # a precision written byte for byte like q8 (int8 of a model without Conv) is one candidate, measured once:
    # the fault is its fault too; every other precision is measured as usual
    files = {a["precision"]: sorted(f["sha256"] for f in a["files"])
             for a in json.loads((out / "manifest.json").read_text())["artifacts"]}
    faulty = {p for p in rows if files[p] == files["q8"]}
    assert faulty < set(rows) and "fp32" not in faulty
    for precision in faulty:
        assert message in rows[precision]["error"] and rows[precision]["verdict"]["passed"] is False
        if "crash" in runtime:
            assert "fault injected: crash" in rows[precision]["error"]  # the runtime's stderr tail
    for other in set(rows) - faulty:  # whether it meets the SLA is not this test's concern
        assert rows[other]["error"] is None and rows[other]["metrics"]["samples"] > 0, rows[other]
    leftover = subprocess.run(["pgrep", "-f", "faulty_runtimes.py"], capture_output=True, text=True)
    assert leftover.stdout.strip() == ""  # nothing left running


# ------------------------------------------------------------------------------------- caches

def test_corrupted_cache_entry_is_rebuilt(tmp_path, topic_classifier):
    cache = tmp_path / "cache"
    env = {"EDGE_PACK_CACHE": str(cache)}
    assert edge_pack("build", topic_classifier, "-t", "web", "-p", "fp32", "-o", tmp_path / "a", env=env).code == 0
    (entry,) = (cache / "onnx-fp32").iterdir()
    model = entry / "model.onnx"
    model.write_bytes(model.read_bytes()[:1000])  # a torn write, a bad disk block
    run = edge_pack("build", topic_classifier, "-t", "web", "-p", "fp32", "-o", tmp_path / "b", env=env)
    assert run.code == 0, run.stderr
    assert (tmp_path / "a/web/onnx/model.onnx").read_bytes() == (tmp_path / "b/web/onnx/model.onnx").read_bytes()


# ------------------------------------------------------------------------------------- deep verify

def test_verify_deep_runs_every_artifact(tmp_path, topic_classifier):
    out = tmp_path / "b"
    assert edge_pack("build", topic_classifier, "-t", "web", "-p", "fp32", "-p", "q8", "-o", out).code == 0
    run = edge_pack("verify", out, "--deep", "--json")
    assert run.code == 0 and run.json()["unloadable"] == []
    # an artifact replaced by another valid file with the manifest updated to match still has to run
    manifest = json.loads((out / "manifest.json").read_text())
    q8 = out / "web/onnx/model_quantized.onnx"
    q8.write_bytes(b"\x08\x07garbage")
    from edge_pack.manifest import file_entry

    for artifact in manifest["artifacts"]:
        if artifact["precision"] == "q8":
            artifact["files"] = [file_entry(q8, out)]
    (out / "manifest.json").write_text(json.dumps(manifest))
    run = edge_pack("verify", out, "--deep", "--json")
    assert run.code == 1
    (failure,) = run.json()["unloadable"]
    assert failure["precision"] == "q8" and failure["error"]


# ------------------------------------------------------------------------------------- resources

def test_memory_per_build_step_and_device_ram_warning(tmp_path, topic_classifier):
    """A device with less RAM than the model needs gets a warning in the table; every build step's peak
    memory lands in the manifest and in results.json."""
    tiny = tmp_path / "tiny-device.toml"
    tiny.write_text((ROOT / "targets" / "web.toml").read_text().replace('name = "web"', 'name = "tiny"')
                    .replace("ram_mb = 4096", "ram_mb = 0.2"))
    out = tmp_path / "b"
    run = edge_pack("build", topic_classifier, "--target-file", tiny, "-t", "tiny", "-p", "fp32", "-p", "q8", "-o", out)
    assert run.code == 0, run.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["targets"]["tiny"]["export"]["peak_rss_mb"] > 100  # torch + the model were in memory
    for artifact in manifest["artifacts"]:
        assert artifact["build"]["seconds"] > 0 and artifact["build"]["peak_rss_mb"] > 50
    run = edge_pack("bench", out, "--target-file", tiny, "--runs", "1", "--json")
    rows = {r["precision"]: r for r in run.json()["rows"]}
    assert "exceed the" in rows["fp32"]["warnings"][0] and "0.2 MB of RAM" in rows["fp32"]["warnings"][0]
    assert rows["q8"]["warnings"] == [] or "peak memory" in rows["q8"]["warnings"][0]
    assert rows["fp32"]["build"] == next(a["build"] for a in manifest["artifacts"] if a["precision"] == "fp32")
    table = edge_pack("bench", out, "--target-file", tiny, "--runs", "1")
    assert "⚠" in table.stdout
