"""Release pipelines: the example workflow's steps run locally (one build/bench per target, merge, verify,
gate), and merge refusing bundles that do not belong together (zips that would write or extract outside their
folder: tests/reliability/test_zips.py)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, assert_one_line_error, edge_pack

EXAMPLE = ROOT / "examples" / "release-pipeline"
WORKFLOW = EXAMPLE / "release.yml"


def _run_step(step: dict, cwd: Path, context: dict, outputs: dict, env: dict) -> int:
    """Run one workflow step's shell script as GitHub Actions would (bash -e, $GITHUB_OUTPUT,
    $GITHUB_STEP_SUMMARY), with its ${{ }} expressions filled in from `context` and earlier outputs."""
    def expression(match):
        name = match.group(1).strip()
        step_output = re.fullmatch(r"steps\.(\w+)\.outputs\.(\w+)", name)
        return outputs[step_output.group(1)][step_output.group(2)] if step_output else context[name]

    script = re.sub(r"\$\{\{(.*?)\}\}", expression, step["run"])
    output_file = cwd / f".output-{step['id']}"
    output_file.write_text("")
    proc = subprocess.run(["bash", "-e", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=1800,
                          env={**env, "GITHUB_OUTPUT": str(output_file),
                               "GITHUB_STEP_SUMMARY": str(cwd / "step-summary.md")})
    outputs[step["id"]] = dict(line.split("=", 1) for line in output_file.read_text().splitlines() if "=" in line)
    assert proc.returncode in (0, 1) or step["id"] == "gate", (step["id"], proc.stdout[-3000:], proc.stderr[-3000:])
    return proc.returncode


def test_the_example_workflow_runs_locally(tmp_path, topic_classifier):
    workflow = yaml.safe_load(WORKFLOW.read_text())
    jobs = workflow["jobs"]
    targets = jobs["target"]["strategy"]["matrix"]["target"]
    assert targets == ["web", "web-small"] and jobs["release"]["needs"] == "target"
    # The repository root of the example, with the small test model as its source.
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo)
    config = (repo / "edge-pack.toml").read_text()
    assert 'source = "demo"' in config and 'precisions = "sweep"' in config and "runs = 20" in config
    # (a smaller sweep and fewer runs keep the test short; the commands are the workflow's own)
    (repo / "edge-pack.toml").write_text(config.replace('source = "demo"', f'source = "{topic_classifier}"')
                                         .replace('precisions = "sweep"', 'precisions = ["fp32", "q8", "q4"]')
                                         .replace("runs = 20", "runs = 3"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    ran = []
    for target in targets:  # the matrix jobs, one after the other
        outputs = {}
        for step in (s for s in jobs["target"]["steps"] if "id" in s):
            _run_step(step, repo, {"matrix.target": target}, outputs, env)
            ran.append(f"{step['id']}:{target}")
        # the job's upload-artifact step, as download-artifact lays it out for the release job
        shutil.copytree(repo / "parts" / target, repo / "downloaded" / f"bundle-{target}")
    assert ran == ["build:web", "bench:web", "build:web-small", "bench:web-small"]
    shutil.rmtree(repo / "parts")
    (repo / "downloaded").rename(repo / "parts")
    outputs, codes = {}, {}
    for step in (s for s in jobs["release"]["steps"] if "id" in s):
        codes[step["id"]] = _run_step(step, repo, {}, outputs, env)
    assert list(codes) == ["merge", "verify", "summary", "gate"]
    release = repo / "release"
    results = json.loads((release / "results.json").read_text())
    manifest = json.loads((release / "manifest.json").read_text())
    assert set(results["targets"]) == set(manifest["targets"]) == {"web", "web-small"}
    assert {r["target"] for r in results["rows"]} == {"web", "web-small"}
    # the gate is the merged verdict: exit 0 exactly when every target has a candidate to ship
    expected = 0 if all(t["recommended"] for t in results["targets"].values()) else 1
    assert results["passed"] is (expected == 0)
    assert outputs["merge"]["code"] == str(expected) and codes["gate"] == expected
    assert codes["verify"] == 0
    for name, target in results["targets"].items():
        zip_path = release / f"{manifest['source']['name']}-{name}.zip"
        assert zip_path.is_file() is bool(target["recommended"])
    assert "## edge-pack:" in (repo / "step-summary.md").read_text()
    html = (release / "report.html").read_text()
    assert 'id="target-web"' in html and 'id="target-web-small"' in html


@pytest.fixture(scope="module")
def parts(tmp_path_factory, topic_classifier):
    """Two single-target bundles of one source, measured, and one of another source."""
    root = tmp_path_factory.mktemp("parts")
    small = EXAMPLE / "web-small.toml"
    for target in ("web", "web-small"):
        out = root / target
        run = edge_pack("build", topic_classifier, "-t", target, "-p", "fp32", "-p", "q8", "--target-file", small,
                        "-o", out)
        assert run.code == 0, run.stderr
        run = edge_pack("bench", out, "--runs", "2", "--target-file", small)
        assert run.code == 0, run.stderr
    other = tmp_path_factory.mktemp("other") / "model"
    shutil.copytree(topic_classifier, other)
    config = json.loads((other / "config.json").read_text())
    config["layer_norm_eps"] = 1e-6  # another model: another source hash
    (other / "config.json").write_text(json.dumps(config))
    assert edge_pack("build", other, "-t", "web-small", "-p", "fp32", "--target-file", small,
                     "-o", root / "other").code == 0
    return root


def test_merge_joins_manifests_results_and_zips(parts, tmp_path):
    out = tmp_path / "merged"
    zip_of_web = next((parts / "web").glob("*-web.zip"))
    run = edge_pack("bundle", "merge", zip_of_web, parts / "web-small", "--out", out, "--json")
    assert run.code == 0, run.stderr
    merged = run.json()
    assert set(merged["manifest"]["targets"]) == {"web", "web-small"}
    assert merged["results"]["passed"] is True and merged["results"]["unmeasured"] == []
    assert edge_pack("verify", out).code == 0
    assert {p.name for p in out.glob("*.zip")} == {zip_of_web.name, next((parts / "web-small").glob("*.zip")).name}
    # the zip held only the recommended web artifact; the folder all of web-small's
    web = [a["precision"] for a in merged["manifest"]["artifacts"] if a["target"] == "web"]
    assert web == [json.loads((parts / "web" / "results.json").read_text())["targets"]["web"]["recommended"]]
    assert (out / "report.html").is_file() and "web-small" in (out / "report.md").read_text()


def test_merge_of_an_unmeasured_bundle_fails_the_gate(parts, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(parts / "web-small", bare)
    for name in ("results.json", "report.html", "report.md"):
        (bare / name).unlink()
    manifest = json.loads((bare / "manifest.json").read_text())
    for entry in manifest.pop("releases").values():
        (bare / entry["path"]).unlink()
    manifest.pop("results_files")  # as a bundle that was never benched
    (bare / "manifest.json").write_text(json.dumps(manifest))
    run = edge_pack("bundle", "merge", parts / "web", bare, "--out", tmp_path / "merged")
    assert run.code == 1, run.stderr
    assert "web-small: built but not measured" in run.stdout


def test_merge_refuses_other_sources_and_repeated_targets(parts, tmp_path):
    out = tmp_path / "merged"
    assert_one_line_error(edge_pack("bundle", "merge", parts / "web", parts / "other", "--out", out), 2,
                          "another source", "merge bundles of one source")
    assert_one_line_error(edge_pack("bundle", "merge", parts / "web-small", parts / "web-small", "--out", out), 2,
                          "both hold target web-small")
    assert not out.exists()


def test_merge_refuses_a_bundle_that_does_not_verify(parts, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(parts / "web", broken)
    with open(broken / "web" / "onnx" / "model.onnx", "r+b") as handle:
        handle.write(b"tampered")
    assert_one_line_error(edge_pack("bundle", "merge", broken, parts / "web-small", "--out", tmp_path / "m"), 2,
                          "does not match its manifest", "altered")
