"""Mixed precision on LiteRT (issue 18, android): `--precision auto` sets each torch module's ops at its own
precision with ai-edge-quantizer recipe entries, built, validated on the LiteRT interpreter and benched as a row.
- the digits CNN (a CNN's pair, int4 with weight-only int8): its first convolution is a DEPTHWISE_CONV_2D, which
  the quantizer's policy gives no 4-bit weights, so that op stays int8 while the other convolution and the
  head store 4 bits (uniform int4 keeps every convolution at int8);
- the fragile embedder (a text encoder's pair, full-integer int8 with float): every module at int8 misses the
  floor, the search keeps the modules int8 activations break float and passes."""
from __future__ import annotations

import json

import pytest
from conftest import edge_pack

import models

pytest.importorskip("ai_edge_quantizer", reason="the android toolchain is not installed (pip install 'edge-pack[android]')")

CNN_MIXED, TEXT_MIXED = "mixed-4/8", "mixed-8/32"
TEXT_FLOOR = 0.9998  # between every module at int8 (0.9995 on the built-in inputs) and every one float (1.0)


def _job(folder, floor: float):
    path = folder / "edge-pack.toml"
    path.write_text(f"[sla]\nmin_accuracy_ratio = {floor}\n")
    return path


def _weight_types(path) -> dict[str, set[str]]:
    """Per op type of the file, the types its constant weights are stored in."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils

    model = tfl_flatbuffer_utils.read_model(str(path))
    ops = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    graph, found = model.subgraphs[0], {}
    producers = {o: op for op in graph.operators for o in op.outputs}  # a weight-only weight is DEQUANTIZE'd
    for op in graph.operators:
        kind = ops[model.operatorCodes[op.opcodeIndex].builtinCode]
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            index = op.inputs[1]
            source = producers.get(index)
            if source is not None:  # DEQUANTIZE of a stored weight
                index = source.inputs[0]
            found.setdefault(kind, set()).add(types[graph.tensors[index].type])
    return found


@pytest.fixture(scope="module")
def cnn_mixed(tmp_path_factory, digits_cnn_dir):
    tmp = tmp_path_factory.mktemp("mixdroid-cnn")  # fp32: bench compares with it (an entry point is not re-imported)
    run = edge_pack("build", "digits_cnn:factory", "-t", "android", "-p", "fp32", "-p", "int4", "-p", "auto",
                    "-c", _job(tmp, 0.99), "-o", tmp / "bundle", "--json", cwd=digits_cnn_dir)
    assert run.code == 0, run.stderr
    return tmp / "bundle", run.json()


@pytest.fixture(scope="module")
def text_mixed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mixdroid-text")
    embedder = models.fragile_embedder()
    run = edge_pack("build", embedder, "-t", "android", "-p", "int8", "-p", "auto", "--calibration",
                    embedder.parent / "eval.jsonl", "-c", _job(tmp, TEXT_FLOOR), "-o", tmp / "bundle", "--json")
    assert run.code == 0, run.stderr
    return tmp / "bundle", run.json()


def test_a_cnn_mix_stores_4_bits_where_the_quantizer_allows_them_and_int8_where_not(cnn_mixed):
    bundle, manifest = cnn_mixed
    artifacts = {a["precision"]: a for a in manifest["artifacts"]}
    mixed, int4 = artifacts[CNN_MIXED], artifacts["int4"]
    ranking = [s["layer"] for s in manifest["targets"]["android"]["sensitivity"]["layers"]]
    assert {name.rsplit("/", 1)[-1] for name in ranking} == {"Linear_head", "Conv2d_0", "Conv2d_2"}
    assert mixed["recipe"]["int4_kept_at_int8"] == ["DEPTHWISE_CONV_2D"]
    assert mixed["recipe"]["layers"]["int4"] == 3 - len(mixed["recipe"]["promoted"])
    assert _weight_types(bundle / "android" / "model_mixed.tflite") == {
        "DEPTHWISE_CONV_2D": {"INT8"}, "CONV_2D": {"INT4"}, "FULLY_CONNECTED": {"INT4"}}
    assert _weight_types(bundle / "android" / "model_int4.tflite")["CONV_2D"] == {"INT8"}
    assert mixed["bytes"] < int4["bytes"]
    assert mixed["validation"]["top1_agreement"] >= 0.99
    assert "model_mixed.tflite" in json.loads((bundle / "android" / "model_io.json").read_text())


def test_a_cnn_mix_stores_its_4_bit_convolution_weights_with_a_zero_point_per_channel(cnn_mixed):
    """Asymmetric per-channel int4 (the quantizer's weightonly_wi4_afp32 allows it): EfficientNet-Lite0 with every
    layer at int4 keeps top-1 agreement 0.19 where symmetric scales keep 0.09."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils

    bundle, _ = cnn_mixed
    model = tfl_flatbuffer_utils.read_model(str(bundle / "android" / "model_mixed.tflite"))
    int4 = [t for t in model.subgraphs[0].tensors if t.type == schema.TensorType.INT4 and len(t.shape) == 4]
    assert int4 and all(np.any(np.asarray(t.quantization.zeroPoint) != 0) for t in int4)


def test_a_cnn_promotes_its_layers_to_weight_only_int8(cnn_mixed):
    """A CNN's high side is weight-only int8 (dequantized at load, float compute), not fp16: promotions keep
    most weights at 4 bits (EfficientNet-Lite0's fp16 promotions left 35 % of them there)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils

    from edge_pack.converters.android_layers import modules, quantize_layers
    from edge_pack.targets import get_target

    for task in ("generic", "image-classification"):
        pair = get_target("android").for_task(task).mixed
        assert (pair.low, pair.high, pair.name(get_target("android"))) == ("int4", "weight-only-int8", CNN_MIXED)
    bundle, _ = cnn_mixed
    fp32, out = bundle / "android" / "model_fp32.tflite", bundle.parent / "promoted.tflite"
    names = list(modules(fp32))
    conv = next(n for n in names if n.endswith("Conv2d_2"))
    quantize_layers(fp32, {n: "weight-only-int8" if n == conv else "int4" for n in names}, out, None)
    assert _weight_types(out) == {"DEPTHWISE_CONV_2D": {"INT8"}, "CONV_2D": {"INT8"}, "FULLY_CONNECTED": {"INT4"}}
    model = tfl_flatbuffer_utils.read_model(str(out))
    graph = model.subgraphs[0]
    kind = lambda op: model.operatorCodes[op.opcodeIndex].builtinCode  # noqa: E731
    producers = {o: op for op in graph.operators for o in op.outputs}
    (convolution,) = [op for op in graph.operators if kind(op) == schema.BuiltinOperator.CONV_2D]
    assert kind(producers[convolution.inputs[1]]) == schema.BuiltinOperator.DEQUANTIZE  # float compute


def test_a_text_mix_keeps_float_what_int8_activations_break_and_passes_where_int8_fails(text_mixed):
    _, manifest = text_mixed
    artifacts = {a["precision"]: a for a in manifest["artifacts"]}
    mixed, int8 = artifacts[TEXT_MIXED], artifacts["int8"]
    ranking = [s["layer"] for s in manifest["targets"]["android"]["sensitivity"]["layers"]]
    promoted = mixed["recipe"]["promoted"]
    builds = mixed["recipe"]["search"]["builds"]
    assert builds[0]["promoted"] == 0 and not builds[0]["passed"]  # every module at int8 misses the floor
    assert promoted and set(promoted) <= set(ranking) and len(promoted) < len(ranking) / 2
    assert ranking[0] in promoted
    assert mixed["recipe"]["layers"] == {"int8": len(ranking) - len(promoted), "float": len(promoted)}
    assert int8["validation"]["cosine_mean"] < TEXT_FLOOR <= mixed["validation"]["cosine_mean"]
    assert mixed["recipe"]["calibration"]["samples"] > 0
    assert len(builds) <= 12


def test_the_mixes_are_benched_as_rows(cnn_mixed, text_mixed):
    import edge_pack as api

    for (bundle, _), mixed, uniform, verdict in ((cnn_mixed, CNN_MIXED, "int4", "pass"),
                                                  (text_mixed, TEXT_MIXED, "int8", "fail")):
        results = api.bench(bundle, runs=1, warmup=0, sla_path=bundle.parent / "edge-pack.toml")
        rows = {r["precision"]: r for r in results["rows"]}
        assert rows[mixed]["verdict"]["status"] == "pass", rows[mixed]["verdict"]
        assert rows[uniform]["verdict"]["status"] == verdict
        assert rows[mixed]["bits_per_weight"] < 32


def test_a_text_mix_without_calibration_is_not_built_and_says_what_to_pass(tmp_path):
    run = edge_pack("build", models.fragile_embedder(), "-t", "android", "-p", "auto", "-c", _job(tmp_path, 0.99),
                    "-o", tmp_path / "bundle", "--json")
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text()) if run.code == 0 else run.json()
    (rejected,) = manifest["rejected"]
    assert rejected["precision"] == TEXT_MIXED and "--calibration" in rejected["reason"], rejected


def test_int8_a16_keeps_what_int8_activations_lose_with_integer_compute(tmp_path):
    """int8-a16 (int8 weights, int16 activations) is closer to fp32 than int8 on the fragile embedder (its value
    channels scaled down 16x are resolved finer at 16 bits) while every matmul stays integer; the attention
    mask's ops (finfo.min, which calibration cannot range) stay float."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils

    embedder = models.fragile_embedder()
    run = edge_pack("build", embedder, "-t", "android", "-p", "int8", "-p", "int8-a16", "--calibration",
                    embedder.parent / "eval.jsonl", "-o", tmp_path / "bundle", "--json")
    assert run.code == 0, run.stderr
    artifacts = {a["precision"]: a for a in run.json()["artifacts"]}
    a16, int8 = artifacts["int8-a16"], artifacts["int8"]
    assert a16["validation"]["cosine_mean"] > max(int8["validation"]["cosine_mean"], 0.999)
    assert not {"FULLY_CONNECTED", "BATCH_MATMUL", "SOFTMAX", "GELU"} & set(a16["recipe"]["float_ops"])
    assert a16["recipe"]["float_unranged_ops"] > 0 and a16["recipe"]["calibration"]["samples"] > 0
    model = tfl_flatbuffer_utils.read_model(str(tmp_path / "bundle" / "android" / "model_int8_a16.tflite"))
    types = {t.type for t in model.subgraphs[0].tensors}
    assert {schema.TensorType.INT16, schema.TensorType.INT8} <= types


def test_the_search_judges_what_bench_judges_labeled_accuracy_as_a_share_of_fp32s():
    """On labeled eval data bench's verdict reads an embedder's centroid accuracy as a share of fp32's, not the
    mean cosine: the search's floor is that verdict (MiniLM before: a mix searched to cosine 0.980 failed bench
    while int8 at cosine 0.797 passed)."""
    import numpy as np

    from edge_pack.mixed import Floor
    from edge_pack.sla import Sla

    sla, base = Sla(min_accuracy_ratio=0.98), np.ones(20, dtype=bool)
    labeled = Floor(0.98, None, "the floor", sla, base)
    wrong_one = (False,) + (True,) * 19
    assert labeled.judge("embedding", {"cosine_mean": 0.999, "accuracy": 0.95, "correct": wrong_one}) == (0.95, False)
    assert labeled.judge("embedding", {"cosine_mean": 0.80, "accuracy": 1.0, "correct": (True,) * 20}) == (1.0, True)
    label_free = Floor(0.98, None, "the floor", sla)
    assert label_free.judge("embedding", {"cosine_mean": 0.979}) == (0.979, False)
    strict = Floor(0.9, None, "the floor", Sla(min_accuracy_ratio=0.9, confidence=0.95), base)
    assert not strict.judge("embedding", {"accuracy": 0.95, "correct": wrong_one})[1]  # its lower bound is < 0.9


def test_on_labeled_eval_data_the_search_stops_where_the_verdict_passes(tmp_path):
    """Every module at int8 misses TEXT_FLOOR on mean cosine but keeps fp32's centroid accuracy on the labeled
    eval file: the search passes it at its first build, as bench's verdict passes uniform int8, and ships no mix
    (int8 itself is as small)."""
    import edge_pack as api

    embedder = models.fragile_embedder()
    eval_path, job = embedder.parent / "eval.jsonl", tmp_path / "edge-pack.toml"
    job.write_text(f'eval = "{eval_path}"\n[sla]\nmin_accuracy_ratio = {TEXT_FLOOR}\n')
    run = edge_pack("build", embedder, "-t", "android", "-p", "int8", "-p", "auto", "--calibration", eval_path,
                    "-c", job, "-o", tmp_path / "bundle", "--json")
    assert run.code == 0, run.stderr
    search = json.loads((tmp_path / "bundle" / "manifest.json").read_text())["targets"]["android"]["mixed"]
    assert "centroid accuracy" in search["statement"], search
    assert search["builds"][0]["promoted"] == 0 and search["builds"][0]["passed"], search["builds"]
    assert search["outcome"] == "not smaller than a uniform candidate" and search["than"] == "int8"
    rows = {r["precision"]: r for r in api.bench(tmp_path / "bundle", eval_path=eval_path, runs=1, warmup=0,
                                                  sla_path=job)["rows"]}
    assert rows["int8"]["verdict"]["status"] == "pass" and rows["int8"]["metrics"]["cosine_mean"] < TEXT_FLOOR
    assert rows["int8"]["quality"]["name"] == "centroid accuracy"
