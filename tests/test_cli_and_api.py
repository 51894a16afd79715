"""The CLI surface (help, version, targets, JSON purity) and the Python API it is a thin layer over."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import edge_pack
from conftest import ROOT, edge_pack as run_cli

COMMANDS = ("build", "bench", "verify", "targets", "report", "bundle merge")


def test_version_and_help_on_every_command():
    run = run_cli("--version")
    assert run.code == 0 and edge_pack.__version__ in run.stdout
    assert run_cli("--help").code == 0
    for command in COMMANDS:
        run = run_cli(*command.split(), "--help")
        assert run.code == 0 and "Usage: edge-pack " + command in run.stdout, command


def test_usage_errors_exit_2():
    assert run_cli("build").code == 2  # missing SOURCE
    assert run_cli("bench", ".", "--runs", "many").code == 2
    assert run_cli("frobnicate").code == 2
    for number in ("nan", "inf", "0"):  # issue 14, item 1: a limit that cannot be compared is refused
        for command in ("build", "bench"):
            run = run_cli(command, ".", "--timeout", number)
            assert run.code == 2 and "--timeout" in run.stderr and "finite number" in run.stderr, run.stderr


def test_targets_lists_precisions_defaults_and_toolchain():
    run = run_cli("targets", "--json")
    assert run.code == 0
    web = next(t for t in run.json() if t["name"] == "web")
    assert web["precisions"] == ["fp32", "fp16", "q8", "int8", "uint8", "q4", "q4f16"]
    assert web["default_precisions"] == web["precisions"]
    assert web["missing"] == []  # onnx, onnxruntime and optimum are installed here
    table = run_cli("targets")
    assert "web" in table.stdout and "installed" in table.stdout


@pytest.mark.skipif(sys.platform == "darwin", reason="Core ML itself runs on macOS")
def test_targets_and_doctor_say_core_ml_does_not_run_here():
    """issue 14, item 9: `coreml ready` on Linux, where Core ML cannot run."""
    ios = next(t for t in run_cli("targets", "--json").json() if t["name"] == "ios")
    assert ios["runtimes_here"]["coreml"].startswith("macOS only — the emulator measures here")
    table = run_cli("targets").stdout
    assert "coreml ready" not in table and "macOS only" in table
    assert "runtime coreml (default): macOS only" in run_cli("doctor").stdout


def test_json_output_is_pure_json(tmp_path, topic_classifier):
    """--json prints one JSON document on stdout even though the converters are chatty."""
    run = run_cli("build", topic_classifier, "-t", "web", "-p", "fp32", "-o", tmp_path / "b", "--json")
    assert run.code == 0, run.stderr
    manifest = json.loads(run.stdout)
    assert manifest == json.loads((tmp_path / "b" / "manifest.json").read_text())
    run = run_cli("bench", tmp_path / "b", "--runs", "1", "--json")
    assert run.code == 0 and json.loads(run.stdout)["rows"][0]["precision"] == "fp32"
    run = run_cli("verify", tmp_path / "b", "--json")
    assert run.code == 0 and json.loads(run.stdout)["ok"] is True


def test_python_api_returns_what_the_cli_prints(tmp_path, topic_classifier):
    manifest = edge_pack.build(str(topic_classifier), ["web"], ["fp32", "q8"], tmp_path / "api")
    assert [a["precision"] for a in manifest["artifacts"]] == ["fp32", "q8"]
    results = edge_pack.bench(tmp_path / "api", runs=2, eval_path=topic_classifier.parent / "eval.jsonl")
    assert results["passed"] is True and results["targets"]["web"]["baseline"]["quality"]["name"] == "accuracy"
    assert json.loads((tmp_path / "api" / "results.json").read_text())["rows"] == json.loads(json.dumps(results["rows"]))
    assert edge_pack.verify(tmp_path / "api")["ok"] is True


def test_api_raises_user_errors(tmp_path):
    with pytest.raises(edge_pack.errors.UserError, match="does not exist"):
        edge_pack.build(str(tmp_path / "missing"), ["web"], None, tmp_path / "out")


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="builds the wheel from a checkout")
def test_wheel_carries_targets_and_harness(tmp_path):
    """An installed edge-pack finds its targets and the on-device harness inside the wheel."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
                    str(ROOT)], check=True)
    (wheel,) = tmp_path.glob("edge_pack-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "edge_pack/_targets/web.toml" in names
    assert {"edge_pack/_harness/protocol.py", "edge_pack/_harness/ort/run.py"} <= names
    web = {f"edge_pack/_harness/web/{n}" for n in ("package.json", "package-lock.json", "measure.mjs", "node.mjs",
                                                    "browser.mjs", "page.html")}
    assert web <= names
    assert "edge_pack/data/sentences.txt" in names
    assert {"edge_pack/templates/report.html.j2", "edge_pack/templates/report.md.j2"} <= names
    assert not [n for n in names if "node_modules" in n or n.startswith("tests/")]
