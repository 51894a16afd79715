"""The ios target: Core ML packages built with coremltools, checked on the MIL emulator (Core ML itself
runs only on macOS; harness/ios/run.py is that path and cannot run here)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, assert_one_line_error, edge_pack

ct = pytest.importorskip("coremltools", reason="the ios extra (coremltools) is not installed")

from edge_pack.converters.ios import Converter  # noqa: E402
from edge_pack.errors import RunnerError  # noqa: E402
from edge_pack.pipeline import BuildOptions  # noqa: E402
from edge_pack.runners import RunOptions  # noqa: E402
from edge_pack.runners import coreml  # noqa: E402
from edge_pack.resources import harness_dir  # noqa: E402
from edge_pack.source import load_source  # noqa: E402
from edge_pack.targets import get_target  # noqa: E402

# The MIL emulator is a runtime (harness/ios/), not part of the package: the tests drive it in-process.
sys.path.insert(0, str(harness_dir() / "ios"))
from mil_emulator import Emulator, NotEmulated  # noqa: E402

PRECISIONS = ("fp32", "fp16", "int8", "int4", "palettize6", "palettize4")
# How each precision's compressed weights are stored in an iOS 18 program: (constexpr op, data type).
STORAGE = {"int8": ("constexpr_blockwise_shift_scale", "int8"), "int4": ("constexpr_blockwise_shift_scale", "int4"),
           "palettize6": ("constexpr_lut_to_dense", "uint6"), "palettize4": ("constexpr_lut_to_dense", "uint4")}


def _package(files: list[Path]) -> Path:
    return next(p for p in files[0].parents if p.suffix == ".mlpackage")


def _compressed_ops(package: Path) -> dict[tuple[str, str], int]:
    """(constexpr op, stored data type) -> count, read from the saved package's MIL program."""
    from coremltools.converters.mil.frontend.milproto.load import load
    from coremltools.converters.mil.mil import types

    model = ct.models.MLModel(str(package), skip_model_load=True)
    spec = model.get_spec()
    program = load(spec, spec.specificationVersion, str(package / "Data/com.apple.CoreML/weights"))
    found: dict = {}
    for op in program.functions["main"].operations:
        if op.op_type.startswith("constexpr_"):
            data = op.inputs.get("data", op.inputs.get("indices", op.inputs.get("quantized_data")))
            key = (op.op_type, types.builtin_to_string(data.dtype))
            found[key] = found.get(key, 0) + 1
    return found


def _cosine(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def converted(tmp_path_factory, topic_classifier, digits_cnn_dir):
    """Every ios precision of a tiny BERT classifier, a small CNN and a tiny Llama (iOS 18, so int4 too),
    with each model's torch reference outputs on its example inputs."""
    sys.path.insert(0, str(digits_cnn_dir))
    built = {}
    for spec in (str(topic_classifier), "digits_cnn:factory", "models:tiny_llama_module"):
        source = load_source(spec)
        out = tmp_path_factory.mktemp("ios")
        converter = Converter(source, get_target("ios"), out, BuildOptions(target_options={"min_ios": 18}))
        made = {p: converter.convert(p) for p in PRECISIONS}
        packages = {p: _package(m.files) for p, m in made.items()}
        recipes = {p: m.recipe for p, m in made.items()}
        inputs, reference = _reference(source)
        built[source.name if source.kind != "torch" else spec] = (recipes, packages, inputs, reference)
    return built


def _reference(source):
    if source.kind == "torch":
        module, args, names = source.torch_module()
        with torch.no_grad():
            return {n: a.numpy() for n, a in zip(names, args)}, module(*args).numpy()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source.path))
    inputs = {k: v.astype(np.int64) for k, v in tokenizer("the striker scored in the storm", return_tensors="np").items()}
    return inputs, source.reference()(inputs)["logits"]


def test_every_precision_is_an_ml_program_with_the_weights_it_is_named_for(converted):
    for name, (recipes, packages, _, _) in converted.items():
        for precision, package in packages.items():
            spec = ct.models.MLModel(str(package), skip_model_load=True).get_spec()
            assert spec.WhichOneof("Type") == "mlProgram", (name, precision)
            found = _compressed_ops(package)
            if precision in STORAGE:
                assert found.get(STORAGE[precision], 0) >= 1, (name, precision, found)
                assert set(found) == {STORAGE[precision]}, (name, precision, found)
            else:
                assert not found, (name, precision, found)
            storage = recipes[precision]["weights"]
            floats = {k: v for k, v in storage.items() if k.startswith("fp")}
            assert sum(storage.values()) - sum(floats.values()) > 0 if precision in STORAGE else storage == floats


def test_sizes_shrink_with_the_bits(converted):
    for name, (_, packages, _, _) in converted.items():
        size = {p: sum(f.stat().st_size for f in pkg.rglob("*") if f.is_file()) for p, pkg in packages.items()}
        assert size["fp16"] < 0.6 * size["fp32"], (name, size)
        assert size["int8"] < 0.75 * size["fp16"], (name, size)
        assert size["palettize4"] < size["palettize6"] < size["fp16"], (name, size)
        # digits_cnn's 16-channel conv has no 32-wide block: coremltools alone would leave it fp16 and int4
        # larger than int8; it is stored in blocks of 16 (ios_layers.compress_layers)
        assert size["int4"] < size["int8"], (name, size)


def test_emulator_reproduces_torch_on_fp32_packages(converted):
    for name, (_, packages, inputs, reference) in converted.items():
        out = next(iter(Emulator(packages["fp32"]).predict(inputs).values()))
        assert np.abs(out - reference).max() <= 1e-5, name


def test_compressed_packages_stay_close_to_torch(converted):
    floor = {"fp16": 0.9999, "int8": 0.999, "palettize6": 0.995, "int4": 0.98, "palettize4": 0.98}
    for name, (_, packages, inputs, reference) in converted.items():
        for precision, minimum in floor.items():
            typed = next(iter(Emulator(packages[precision]).predict(inputs).values()))
            assert np.isfinite(typed).all(), (name, precision)  # fp16 masks must not turn into NaN
            assert _cosine(typed, reference) >= minimum, (name, precision, _cosine(typed, reference))


def test_text_inputs_keep_a_flexible_sequence_length(converted):
    recipes, packages, inputs, _ = converted[next(k for k in converted if k.startswith("topic-classifier-"))]
    recipe = recipes["int8"]
    assert [i["name"] for i in recipe["inputs"]] == ["input_ids", "token_type_ids", "attention_mask"]
    assert all(i["dtype"] == "int32" and i["flexible"] == {"1": [1, 64]} for i in recipe["inputs"])
    emulator = Emulator(packages["fp32"])
    for length in (3, 40):
        out = emulator.predict({k: np.ones((1, length), dtype=np.int32) for k in inputs})
        assert out["logits"].shape == (1, 4)


def test_an_op_outside_the_emulator_is_named(tmp_path):
    from coremltools.converters.mil import Builder as mb

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 3, 4, 4))])
    def program(x):
        return mb.l2_pool(x=x, kernel_sizes=[2, 2], strides=[1, 1], pad_type="valid")

    package = tmp_path / "pool.mlpackage"
    ct.convert(program, convert_to="mlprogram", skip_model_load=True).save(str(package))
    with pytest.raises(NotEmulated, match="op l2_pool is not emulated yet"):
        Emulator(package)
    with pytest.raises(RunnerError, match="op l2_pool is not emulated yet"):
        coreml.run([package / "Manifest.json"], [{"x": np.ones((1, 3, 4, 4), np.float32)}], None, RunOptions())


def test_the_macos_runner_exists_and_linux_falls_back_to_the_emulator(converted):
    source = (ROOT / "harness/ios/run.py").read_text()
    assert "MLModel(" in source and "compute_units" in source and "common.measure" in source
    _, packages, inputs, reference = converted["digits_cnn:factory"]
    result = coreml.run(sorted(packages["fp32"].rglob("*.mlmodel")), [inputs], inputs, RunOptions(runs=3))
    assert result.runtime.startswith("Core ML emulator") and result.latency_note == "emulated — no device latency"
    assert result.latency_ms == []
    assert np.abs(result.outputs[0]["output"] - reference).max() <= 1e-5


# ---------------------------------------------------------------------------------------------- CLI, MiniLM

@pytest.fixture(scope="module")
def minilm_bundle(tmp_path_factory, minilm) -> Path:
    out = tmp_path_factory.mktemp("minilm-ios") / "bundle"
    run = edge_pack("build", "demo", "--target", "ios", "-p", "fp32", "-p", "int8", "--out", out)
    assert run.code == 0, run.stderr
    return out


def test_minilm_bundle_layout_and_manifest(minilm_bundle):
    ios = minilm_bundle / "ios"
    assert sorted(p.name for p in ios.glob("*.mlpackage")) == ["all-MiniLM-L6-v2_fp32.mlpackage",
                                                                "all-MiniLM-L6-v2_int8.mlpackage"]
    for name in ("config.json", "tokenizer.json", "vocab.txt"):
        assert (ios / name).is_file(), name
    manifest = json.loads((minilm_bundle / "manifest.json").read_text())
    artifacts = {a["precision"]: a for a in manifest["artifacts"]}
    assert artifacts["int8"]["bytes"] <= 0.30 * artifacts["fp32"]["bytes"]
    assert artifacts["int8"]["validation"]["cosine_min"] >= 0.999
    recipe = artifacts["int8"]["recipe"]
    assert recipe["min_ios"] == 16 and recipe["compress"]["dtype"] == "int8"
    assert recipe["weights"]["int8"] > 20_000_000  # linear weights and the embedding tables
    assert {i["name"]: i["flexible"] for i in recipe["inputs"]}["input_ids"] == {"1": [1, 512]}
    assert edge_pack("verify", minilm_bundle).code == 0


@pytest.mark.skipif(sys.platform == "darwin", reason="Core ML measures latency on macOS")
def test_minilm_bench_marks_latency_as_emulated_and_unverified(minilm_bundle, tmp_path):
    """issue 14, item 3: a latency limit the emulator cannot check made an ios candidate pass (exit 0, and
    report.html/md said every target meets the SLA). Now it is unverified (exit 5) until the job accepts
    it unmeasured, and then every output says so."""
    sla = tmp_path / "edge-pack.toml"
    sla.write_text("[sla]\nmin_accuracy_ratio = 0.98\nmax_latency_ms = 100\n")
    run = edge_pack("bench", minilm_bundle, "--sla", sla, "--runs", "2", "--json")
    assert run.code == 5, run.stderr
    results = run.json()
    rows = {r["precision"]: r for r in results["rows"]}
    assert rows["int8"]["metrics"]["cosine_min"] >= 0.999
    for row in rows.values():
        assert row["latency_note"] == "emulated — no device latency"
        assert row["latency_p50_ms"] is None and row["load_ms"] is None
        assert row["verdict"]["status"] == "unverified" and row["verdict"]["passed"] is False
        assert "max_latency_ms 100 not checked: emulated — no device latency" in row["verdict"]["unverified"][0]
    assert results["status"] == "unverified" and results["targets"]["ios"]["recommended"] is None
    assert "unverified" in (minilm_bundle / "report.md").read_text().splitlines()[0]
    assert "Every target has a candidate" not in (minilm_bundle / "report.html").read_text()
    table = edge_pack("bench", minilm_bundle, "--sla", sla, "--runs", "2", "-p", "int8")
    assert table.code == 5 and "unverified" in table.stdout and "emulated — no device latency" in table.stdout
    sla.write_text('[sla]\nmin_accuracy_ratio = 0.98\nmax_latency_ms = 100\n[sla.ios]\nunverified_ok = ["max_latency_ms"]\n')
    accepted = edge_pack("bench", minilm_bundle, "--sla", sla, "--runs", "2", "-p", "int8")
    assert accepted.code == 0, accepted.stderr
    said = "passes what was measured; latency accepted unmeasured"
    assert said in " ".join(accepted.stdout.split())
    for report in ("report.md", "report.html"):
        assert said in (minilm_bundle / report).read_text(), report
    assert edge_pack("verify", minilm_bundle).code == 0


def test_precisions_a_deployment_target_cannot_run_are_refused(minilm, tmp_path):
    out = tmp_path / "out"
    run = edge_pack("build", "demo", "-t", "ios", "-p", "int4", "-o", out)
    assert_one_line_error(run, 2, "int4 needs iOS 18", "iOS 16", "--min-ios 18")
    run = edge_pack("build", "demo", "-t", "ios", "-p", "int8", "-p", "int4", "--min-ios", "17", "-o", out)
    assert_one_line_error(run, 2, "int4 needs iOS 18", "iOS 17")
    assert not out.exists()
    assert edge_pack("build", "demo", "-t", "ios", "--min-ios", "15", "-o", out).code == 2
    assert edge_pack("bench", tmp_path, "--compute-units", "gpu").code == 2


def test_the_emulator_refuses_shapes_the_package_does_not_take(converted):
    name = next(k for k in converted if k.startswith("topic-classifier-"))
    emulator = Emulator(converted[name][1]["int8"])
    too_long = {k: np.ones((1, 65), dtype=np.int32) for k in ("input_ids", "token_type_ids", "attention_mask")}
    with pytest.raises(ValueError, match=r"input input_ids has shape \(1, 65\); the package takes 1..1 × 1..64"):
        emulator.predict(too_long)


def test_a_build_leaves_nothing_in_the_system_temp_folder(tmp_path, topic_classifier):
    """coremltools saves every converted program as a tmp*.mlpackage; the build's temporaries live in the
    staged bundle and go with it."""
    system_tmp = tmp_path / "tmp"
    system_tmp.mkdir()
    run = edge_pack("build", topic_classifier, "-t", "ios", "-p", "int8", "-o", tmp_path / "out",
                    env={"TMPDIR": str(system_tmp)})
    assert run.code == 0, run.stderr
    assert sorted(p.name for p in system_tmp.iterdir()) == []
    assert not (tmp_path / "out" / ".tmp").exists()
    assert edge_pack("verify", tmp_path / "out").code == 0  # nothing unlisted left in the bundle
