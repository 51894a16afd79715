"""Mixed precision on Core ML (issue 18, ios): `--precision auto` on the digits ViT classifier mixes an image
classifier's pair ([mixed.tasks.image-classification]: a 4-bit LUT per output channel and int8) per weight const
(coremltools op_name_configs), validated on the MIL emulator and benched as a row."""
from __future__ import annotations

import pytest
from conftest import assert_one_line_error, edge_pack

import models

MIXED = "mixed-4/8"
LOW, HIGH = "palettize4-channel", "int8"  # targets/ios.toml [mixed.tasks.image-classification]


@pytest.fixture(scope="module")
def ios_mixed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mixios")
    (tmp / "edge-pack.toml").write_text("[sla]\nmin_accuracy_ratio = 0.999\n")
    run = edge_pack("build", models.digits_classifier(), "-t", "ios", "-p", "auto", "--min-ios", "18",
                    "--budget", "4", "-c", tmp / "edge-pack.toml", "-o", tmp / "bundle", "--json")
    assert run.code == 0, run.stderr
    return tmp / "bundle", run.json()


def test_the_mix_is_built_validated_and_lists_its_promoted_ops(ios_mixed):
    _, manifest = ios_mixed
    artifacts = {a["precision"]: a for a in manifest["artifacts"]}
    mixed = artifacts[MIXED]
    ranking = [s["layer"] for s in manifest["targets"]["ios"]["sensitivity"]["layers"]]
    assert len(ranking) > 4
    assert set(mixed["recipe"]["promoted"]) <= set(ranking)
    counts = mixed["recipe"]["layers"]
    assert counts[LOW] + counts[HIGH] == len(ranking)
    assert counts[HIGH] == len(mixed["recipe"]["promoted"])
    assert mixed["validation"]["cosine_mean"] >= 0.99
    assert mixed["recipe"]["search"]["builds"][-1]["passed"] or mixed["recipe"]["search"]["builds"][0]["passed"]


def test_an_image_classifiers_low_ops_are_palettized_in_the_built_program(ios_mixed):
    import coremltools as ct

    from edge_pack.converters.ios import weight_storage

    bundle, manifest = ios_mixed
    mixed = next(a for a in manifest["artifacts"] if a["precision"] == MIXED)
    assert (mixed["recipe"]["search"]["low"], mixed["recipe"]["search"]["high"]) == (LOW, HIGH)
    assert manifest["targets"]["ios"]["sensitivity"]["precision"] == LOW
    low = {s["layer"]: s["weights"] for s in manifest["targets"]["ios"]["sensitivity"]["layers"]
           if s["layer"] not in mixed["recipe"]["promoted"]}
    assert low  # some ops stay at the low side
    package = bundle / next(f["path"] for f in mixed["files"]).split(".mlpackage")[0]
    stored = weight_storage(ct.models.MLModel(f"{package}.mlpackage", skip_model_load=True))
    assert stored["lut4"] == sum(low.values()) == mixed["recipe"]["weights"]["lut4"]
    assert "int4" not in stored


def test_the_mix_is_benched_as_a_row(ios_mixed):
    import edge_pack as api

    bundle, _ = ios_mixed
    results = api.bench(bundle, runs=1, warmup=0, sla_path=bundle.parent / "edge-pack.toml")
    rows = {r["precision"]: r for r in results["rows"]}
    assert MIXED in rows and rows[MIXED]["verdict"]["status"] == "pass"


@pytest.mark.bad_input
def test_auto_below_ios_18_is_a_one_line_error(tmp_path):
    (tmp_path / "edge-pack.toml").write_text("[sla]\nmin_accuracy_ratio = 0.99\n")
    run = edge_pack("build", models.digits_classifier(), "-t", "ios", "-p", "auto", "-c", tmp_path / "edge-pack.toml",
                    "-o", tmp_path / "bundle")
    assert_one_line_error(run, 2, "--min-ios 18")


@pytest.fixture(scope="module")
def digits_cnn_fp16(digits_cnn_dir, tmp_path_factory):
    """The ios converter of the digits CNN (a 16->32 conv of 4608 weights, a 512->10 head of 5120) and its
    fp16 program."""
    import sys

    from edge_pack.contracts import BuildOptions
    from edge_pack.converters.ios import Converter
    from edge_pack.source import load_source
    from edge_pack.targets import get_target

    sys.path.insert(0, str(digits_cnn_dir))
    converter = Converter(load_source("digits_cnn:factory"), get_target("ios"), tmp_path_factory.mktemp("ioscnn"),
                          BuildOptions(target_options={"min_ios": 18}))
    return converter, converter._converted("fp16")


def test_a_grouped_lut_is_fitted_to_a_channel_count_the_group_does_not_divide(digits_cnn_fp16):
    # coremltools only warns and leaves fp16 a weight whose output channels are not a multiple of group_size
    # (the head's 10 classes for groups of 16); ios_layers gives it the largest group that divides them (2)
    from edge_pack.converters.ios import WEIGHT_THRESHOLD, select_weights, weight_storage
    from edge_pack.converters.ios_layers import compress_layers

    _, model = digits_cnn_fp16
    grouped = {"compress": {"method": "palettize", "mode": "kmeans", "nbits": 4, "granularity": "per_grouped_channel",
                            "group_size": 16}}
    chosen = select_weights(model, False)
    compressed, _ = compress_layers(model, dict.fromkeys(chosen, "g16"), {"g16": grouped}, WEIGHT_THRESHOLD)
    assert weight_storage(compressed).get("lut4") == 4608 + 5120


def test_an_entry_point_and_an_image_classifier_get_the_lut_pair():
    from edge_pack.targets import get_target

    for task in ("generic", "image-classification"):
        assert (get_target("ios").for_task(task).mixed.low, get_target("ios").for_task(task).mixed.high) == (LOW, HIGH)
    assert get_target("ios").for_task("feature-extraction").mixed.low == "int4"


def test_the_size_estimate_counts_the_luts_and_scales(digits_cnn_fp16):
    # a LUT per output channel is 16 fp16 values: the conv's 32 channels add 1024 bytes to its 2304 of 4-bit
    # values, the 10-class head 320 to its 2560; int8 per channel adds a 2-byte scale per channel
    from edge_pack.converters.ios import select_weights
    from edge_pack.converters.ios_layers import layers

    converter, model = digits_cnn_fp16
    pair = {p: converter.target.precision(p) for p in (LOW, HIGH)}
    found = {l.weights: l.bytes for l in layers(model, select_weights(model, False), pair)}
    assert found[4608] == {"float": 9216, LOW: 2304 + 32 * 32, HIGH: 4608 + 32 * 2}
    assert found[5120] == {"float": 10240, LOW: 2560 + 10 * 32, HIGH: 5120 + 10 * 2}


def test_palettize4_channel_stores_every_chosen_weight_at_4_bits(digits_cnn_fp16):
    converter, _ = digits_cnn_fp16
    built = converter.convert("palettize4-channel")
    assert built.recipe["weights"].get("lut4") == 4608 + 5120


def test_the_mix_is_compared_with_uniform_candidates_on_its_own_inputs():
    # a uniform candidate's quality on the search's inputs decides, not its build-time validation
    from edge_pack.mixed import NOT_SMALLER, SMALLER, Trial, _outcome

    best = Trial(frozenset({"a"}), 300, {}, 0.97, True)
    int4 = {"precision": "int4", "bytes": 200, "validation": {"top1_agreement": 1.0}}
    assert _outcome(MIXED, best, [{**int4, "quality": 0.22, "passed": False}], "it", 4)["outcome"] == SMALLER
    assert _outcome(MIXED, best, [{**int4, "quality": 0.96, "passed": True}], "it", 4)["outcome"] == NOT_SMALLER
