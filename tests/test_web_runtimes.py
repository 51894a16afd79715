"""The web target on its real runtimes: Transformers.js in Node (onnxruntime-node) and in a real headless
Chromium (onnxruntime-web, WASM), on fp32, q8 and q4 of a small embedder, against Python onnxruntime on the
same files and against the fp32 torch source."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

import edge_pack
from conftest import assert_one_line_error, edge_pack as cli, eventually
from edge_pack.evalset import Preprocessor, make_evalset
from edge_pack.measure import reference_vectors, run_artifact
from edge_pack.runners import RunOptions, transformers_js
from edge_pack.source import load_source

PRECISIONS = ("fp32", "q8", "q4")
JS_RUNTIMES = ("node", "browser")
FILES = {"fp32": "model.onnx", "q8": "model_quantized.onnx", "q4": "model_q4.onnx"}


@pytest.fixture(scope="module", autouse=True)
def web_runtimes_installed():
    missing = transformers_js.missing(browser=True)
    if missing:
        pytest.skip(f"web runtimes not installed here ({'; '.join(missing)}); `make web-runtimes` installs them")


@pytest.fixture(scope="module")
def bundle(bundle_of, tiny_embedder) -> Path:
    return bundle_of(tiny_embedder, ["web"], PRECISIONS)


@pytest.fixture(scope="module")
def evalset(bundle):
    pre = Preprocessor("feature-extraction", bundle / "web", None)
    return make_evalset(pre, None, seq_len=32, label_names=None, embedder=True).head(8)


@pytest.fixture(scope="module")
def measured(bundle, evalset) -> dict:
    """(runtime, precision) → (RunResult, vectors): each artifact run once on each runtime."""
    found = {}
    for runtime in ("ort", *JS_RUNTIMES):
        for precision in PRECISIONS:
            files = [bundle / "web" / "onnx" / FILES[precision]]
            found[runtime, precision] = run_artifact(runtime, files, "feature-extraction", evalset,
                                                     RunOptions(warmup=1, runs=3))
    return found


def _cosines(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    return np.array([np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y)) for x, y in zip(a, b)])


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("runtime", JS_RUNTIMES)
def test_transformers_js_agrees_with_onnxruntime_on_the_same_file(measured, runtime, precision):
    result, vectors = measured[runtime, precision]
    _, reference = measured["ort", precision]
    assert result.postprocessed  # pooled and normalised by Transformers.js, not by edge-pack
    assert result.runtime.startswith("Transformers.js ")
    assert ("Chromium" if runtime == "browser" else "Node") in result.runtime
    assert all(np.isclose(np.linalg.norm(v), 1.0, atol=1e-4) for v in vectors)
    assert _cosines(vectors, reference).min() >= 0.999
    assert len(result.latency_ms) == 3 and min(result.latency_ms) > 0 and result.load_ms > 0
    assert result.peak_rss_mb > 20


@pytest.mark.parametrize("runtime", JS_RUNTIMES)
def test_transformers_js_agrees_with_the_fp32_torch_source(measured, tiny_embedder, evalset, runtime):
    source = load_source(str(tiny_embedder))
    torch_vectors, _ = reference_vectors(source.reference(), source.task, evalset.samples)
    fp32 = _cosines(measured[runtime, "fp32"][1], torch_vectors)
    assert fp32.min() >= 0.9999
    for precision in ("q8", "q4"):  # quantized: close to the source, and exactly as close as onnxruntime says
        cosines = _cosines(measured[runtime, precision][1], torch_vectors)
        assert cosines.min() > 0.9
        assert abs(cosines.mean() - _cosines(measured["ort", precision][1], torch_vectors).mean()) < 1e-3


def test_the_browser_makes_no_request_outside_the_machine(measured):
    for precision in PRECISIONS:
        result, _ = measured["browser", precision]
        requests = result.host["requests"]
        assert result.metrics["outside_requests"] == 0
        assert result.metrics["local_requests"] == len(requests)
        hosts = {urlparse(url).hostname for url in requests}
        assert hosts == {"127.0.0.1"}, hosts
        paths = [urlparse(url).path for url in requests]
        # Transformers.js, the onnxruntime-web WASM and the model all came from this machine
        assert "/node_modules/@huggingface/transformers/dist/transformers.web.js" in paths
        assert any(p.startswith("/node_modules/onnxruntime-web/dist/") and p.endswith(".wasm") for p in paths)
        assert f"/models/web/onnx/{FILES[precision]}" in paths


def test_two_threads_in_the_browser(bundle, evalset):
    result, vectors = run_artifact("browser", [bundle / "web/onnx/model_quantized.onnx"], "feature-extraction",
                                   evalset.head(2), RunOptions(threads=2, warmup=0, runs=2))
    # COOP/COEP make the page cross-origin isolated, which WASM threads need
    assert result.host["cross_origin_isolated"] is True and result.host["threads"] == 2
    assert len(vectors) == 2 and result.metrics["outside_requests"] == 0


def test_bench_measures_the_web_rows_in_the_browser(bundle, tiny_embedder):
    run = cli("bench", bundle, "--runtime", "browser", "--threads", "2", "--runs", "3",
              "--eval", tiny_embedder.parent / "eval.jsonl", "--json")
    assert run.code in (0, 1), run.stderr
    results = run.json()
    web = results["targets"]["web"]
    assert web["runtime"] == "browser" and web["threads"] == 2 and "Chromium" in web["measured_on"]
    rows = {r["precision"]: r for r in results["rows"]}
    assert set(rows) == set(PRECISIONS)
    for row in rows.values():
        assert row["error"] is None and row["threads"] == 2 and row["host"]["threads"] == 2
        assert row["metrics"]["outside_requests"] == 0
        assert row["latency_runs"] == 3 and row["quality"]["name"] == "centroid accuracy"
    assert rows["fp32"]["metrics"]["cosine_min"] >= 0.9999


def test_a_precision_the_browser_cannot_run_is_a_failed_candidate(bundle, tmp_path):
    """A q4 file that also quantizes Gather loads in Python onnxruntime, but onnxruntime-web has no
    GatherBlockQuantized: the browser's own words land in the row, the other rows are measured."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    config = DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=True, op_types_to_quantize=("MatMul", "Gather"),
                                          quant_axes=(("MatMul", 0), ("Gather", 1)))
    quantizer = MatMulNBitsQuantizer(onnx.load(str(bundle / "web/onnx/model.onnx")), algo_config=config)
    with np.errstate(invalid="ignore"):  # the padding row of the embedding table is all zeros
        quantizer.process()
    assert "GatherBlockQuantized" in {n.op_type for n in quantizer.model.model.graph.node}
    onnx.save(quantizer.model.model, str(copy / "web/onnx/model_q4.onnx"))

    assert cli("bench", copy, "-p", "q4", "--runtime", "ort", "--runs", "1", "--json").json()["rows"][0]["error"] is None
    run = cli("bench", copy, "--runtime", "browser", "--runs", "2", "--json")
    assert run.code in (0, 1) and "Traceback" not in run.stderr, run.stderr
    rows = {r["precision"]: r for r in run.json()["rows"]}
    assert rows["q4"]["error"].startswith("failed on browser: ")
    assert "GatherBlockQuantized" in rows["q4"]["error"]
    assert rows["q4"]["verdict"]["passed"] is False
    assert rows["fp32"]["error"] is None and rows["q8"]["error"] is None
    table = cli("bench", copy, "-p", "q4", "--runtime", "browser", "--runs", "1")
    assert "GatherBlockQuantized" in table.stdout and table.code == 1


def test_bench_says_how_to_install_a_missing_browser(bundle, tiny_embedder, tmp_path):
    no_browser = {"EDGE_PACK_CHROMIUM": "/nonexistent/chromium"}
    run = cli("bench", bundle, "--runtime", "browser", env=no_browser)
    assert_one_line_error(run, 2, "browser runtime", "apt-get install chromium")
    # building a source first: the missing browser is found before the build, and nothing is written
    run = cli("bench", tiny_embedder, "--target", "web", "--runtime", "browser",
              env={**no_browser, "TMPDIR": str(tmp_path)})
    assert_one_line_error(run, 2, "browser runtime")
    assert not list(tmp_path.iterdir())


def test_doctor_and_targets_say_what_is_missing_and_how_to_install_it():
    ready = cli("doctor", "--json")
    assert ready.code == 0, ready.stdout
    web = next(r for r in ready.json() if r["name"] == "web")
    assert web["runtimes_missing"] == {"ort": [], "node": [], "browser": [], "browser-webgpu": []}

    # A machine without Node and Chromium on its PATH.
    bare = {"PATH": str(Path(sys.executable).parent), "EDGE_PACK_CHROMIUM": ""}
    run = cli("doctor", "--json", env=bare)
    assert run.code == 1
    missing = next(r for r in run.json() if r["name"] == "web")["runtimes_missing"]
    assert missing["ort"] == []
    assert any("Node.js" in m and "apt-get install nodejs" in m for m in missing["node"])
    assert any("apt-get install chromium" in m for m in missing["browser"])
    table = cli("targets", env=bare)
    assert table.code == 0 and "browser not ready" in table.stdout


def test_npm_packages_live_in_the_cache_named_by_the_lockfile(tmp_path, monkeypatch):
    """The packages are never beside the harness (a wheel's site-packages, a checkout's harness/): `edge-pack
    setup web` puts them in the cache, in a folder named by the lockfile; without them, edge-pack says so."""
    installed = transformers_js.packages_dir()
    harness = tmp_path / "_harness"  # as in a wheel: edge_pack/_harness, no node_modules
    shutil.copytree(transformers_js.web_dir(), harness / "web")
    assert not (harness / "web" / "node_modules").exists()
    monkeypatch.setattr(transformers_js, "harness_dir", lambda: harness)
    monkeypatch.setenv("EDGE_PACK_CACHE", str(tmp_path / "cache"))
    assert transformers_js.packages_dir() is None
    assert any("edge-pack setup web" in m for m in transformers_js.missing(browser=False))

    cached = transformers_js.install_dir()
    assert cached.is_relative_to(tmp_path / "cache") and cached.name == installed.name
    cached.mkdir(parents=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(harness / "web" / name, cached / name)
    (cached / "node_modules").symlink_to(installed / "node_modules")  # what `npm ci` there would have written
    assert transformers_js.packages_dir() == cached
    assert transformers_js.install(progress=lambda _: pytest.fail("nothing to install")) == cached

    # A lockfile that pins other versions is another folder: packages of an older lockfile are never used.
    lock = json.loads((harness / "web/package-lock.json").read_text())
    lock["packages"]["node_modules/playwright-core"]["version"] = "0.0.1"
    (harness / "web/package-lock.json").write_text(json.dumps(lock))
    assert transformers_js.install_dir() != cached and transformers_js.packages_dir() is None


@pytest.mark.parametrize("model, task", [("topic_classifier", "text-classification"),
                                         ("digits_classifier", "image-classification")])
def test_classifiers_give_onnxruntimes_logits_in_node_and_in_the_browser(request, tmp_path, model, task):
    """Text and image classifiers (a BERT; a ViT, whose Conv makes q8 uint8): Transformers.js' logits match
    Python onnxruntime's on the same files, and the labeled eval set keeps its accuracy."""
    source = request.getfixturevalue(model)
    out = tmp_path / "bundle"
    edge_pack.build(str(source), ["web"], ["fp32", "q8"], out)
    labels = [json.loads(line)["label"] for line in (source.parent / "eval.jsonl").read_text().splitlines()]
    pre = Preprocessor(task, out / "web", None)
    config = json.loads((out / "web/config.json").read_text())
    names = [config["id2label"][k] for k in sorted(config["id2label"], key=int)]
    evalset = make_evalset(pre, source.parent / "eval.jsonl", 32, names, embedder=False).head(24)
    for precision in ("fp32", "q8"):
        files = [out / "web/onnx" / FILES[precision]]
        _, reference = run_artifact("ort", files, task, evalset, RunOptions(warmup=0, runs=0))
        for runtime in JS_RUNTIMES:
            result, logits = run_artifact(runtime, files, task, evalset, RunOptions(warmup=0, runs=1))
            assert not result.postprocessed and len(logits[0]) == len(names)
            assert _cosines(logits, reference).min() >= 0.999, (runtime, precision)
            predicted = [names[int(np.argmax(v))] for v in logits]
            assert predicted == [names[int(np.argmax(v))] for v in reference]
            assert np.mean([p == l for p, l in zip(predicted, labels)]) > 0.6  # the models learned their task


def test_a_browser_past_its_timeout_fails_one_candidate_and_is_closed(bundle, evalset, tmp_path, monkeypatch):
    import subprocess
    import tempfile

    from edge_pack.errors import RunnerError

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the browser profile lands here: findable
    with pytest.raises(RunnerError, match="timed out after 5 s"):
        run_artifact("browser", [bundle / "web/onnx/model.onnx"], "feature-extraction", evalset,
                     RunOptions(warmup=0, runs=10_000_000, timeout_s=5))
    def nothing_left():
        return not subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()

    assert eventually(nothing_left)  # Chromium went with its driver
