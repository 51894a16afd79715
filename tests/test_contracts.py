"""The seams (edge_pack/contracts.py): every precision a target's TOML declares is one its converter makes,
complete (file name, bits, validation floor) and built on a tiny model; every runtime named exists; a TOML
that promises what its code does not make, or a mistyped setting or option, is refused at load, naming it."""
from __future__ import annotations

import json
import os

import pytest

from conftest import ROOT, assert_one_line_error, edge_pack
from edge_pack.contracts import BuildOptions, converter_for, get_runner
from edge_pack.errors import UserError
from edge_pack.targets import builtin_targets

TARGETS = builtin_targets()
WEB_SMALL = ROOT / "examples" / "release-pipeline" / "web-small.toml"


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_declared_precision_is_complete_and_made_by_the_converter(name):
    target = TARGETS[name]
    converter = converter_for(target)  # raises when a precision exists only in the TOML
    for precision in target.precisions.values():
        assert precision.file and precision.bits > 0 and 0 < precision.min_cosine <= 1, precision
        assert converter.problems(precision) == [], precision.name
    assert target.runtime in target.runtimes
    for runtime in target.runtimes:
        assert callable(get_runner(runtime).run), runtime
    for option in target.options.values():
        assert option.help and option.flag.startswith("--")
        assert option.default is None or option.parse(option.default) == option.default
    if target.mixed is not None:  # --precision auto: the converter sets precisions layer by layer
        assert converter.PER_LAYER and {target.mixed.low, target.mixed.high} <= set(target.precisions)


# One sweep per target on a tiny model: every precision is built and validated, or skipped with the
# converter's reason (e.g. an F32 file of an F32 baseline is not skipped; int8 without calibration would be).
SWEEPS = {"web": ("topic_classifier", []), "ios": ("topic_classifier", ["--min-ios", "18"]),
          "android": ("topic_classifier", ["--calibration", "CALIBRATION"]), "pi": ("tiny_llama", [])}


@pytest.mark.parametrize("name", sorted(SWEEPS))
def test_every_declared_precision_builds_on_a_tiny_model(name, request, tmp_path):
    fixture, flags = SWEEPS[name]
    model = request.getfixturevalue(fixture)
    flags = [str(model.parent / "eval.jsonl") if f == "CALIBRATION" else f for f in flags]
    run = edge_pack("build", model, "-t", name, "-p", "sweep", *flags, "-o", tmp_path / "b", "--json")
    assert run.code == 0, run.stderr
    manifest = run.json()
    built = {a["precision"] for a in manifest["artifacts"]}
    skipped = {r["precision"]: r["reason"] for r in manifest["rejected"] if r["status"] == "skipped"}
    assert built | set(skipped) == set(TARGETS[name].precisions), (built, skipped)
    assert len(built) >= len(TARGETS[name].precisions) - 1, skipped  # at most the odd one out


DECODER_DEFAULTS = {n: t.task_defaults["text-generation"] for n, t in TARGETS.items()
                    if "text-generation" in t.task_defaults}


def test_a_decoder_without_precisions_gets_its_tasks_defaults(tiny_llama, topic_classifier):
    """With no -p, a decoder is planned at [default_precisions_for] text-generation (no encoder precision such
    as web's int8 or android's calibrated int8, which a decoder converter skips), an encoder at the defaults."""
    from edge_pack.pipeline import plan
    from edge_pack.source import load_source

    assert set(DECODER_DEFAULTS) == {"web", "android", "ios"}  # pi's defaults are a decoder's already
    targets = [TARGETS[name] for name in (*DECODER_DEFAULTS, "pi")]
    decoder, _ = plan(load_source(str(tiny_llama)), targets, None)
    assert decoder == {**{n: list(p) for n, p in DECODER_DEFAULTS.items()}, "pi": list(TARGETS["pi"].default_precisions)}
    encoder, _ = plan(load_source(str(topic_classifier)), targets[:3], None)
    assert encoder == {n: list(TARGETS[n].default_precisions) for n in DECODER_DEFAULTS}


def test_android_builds_a_decoder_at_its_defaults(tiny_llama, tmp_path):
    """Each android decoder default is built and validated through its prefill/decode signatures (web's and
    ios's defaults are built by test_web_llm.py and test_phone_llm.py)."""
    run = edge_pack("build", tiny_llama, "-t", "android", "-o", tmp_path / "b", "--json")
    assert run.code == 0, run.stderr
    manifest = run.json()
    assert not manifest["rejected"], manifest["rejected"]
    assert [a["precision"] for a in manifest["artifacts"]] == list(DECODER_DEFAULTS["android"])
    assert all(a["validation"]["same_top1"] >= 0.9 for a in manifest["artifacts"]), manifest["artifacts"]


@pytest.mark.bad_input
@pytest.mark.parametrize("table, words", [
    ('text-classification = ["q2"]', ["[default_precisions_for] text-classification", "unknown precisions"]),
    ('text-generation = ["q8"]', ["[default_precisions_for]", "text-generation", "its tasks are"]),
    ('feature-extraction = []', ["[default_precisions_for] feature-extraction", "is empty"]),
])
def test_a_tasks_defaults_naming_what_the_target_lacks_are_refused(tmp_path, topic_classifier, table, words):
    path = _own_target(tmp_path, f"\n[default_precisions_for]\n{table}\n")  # web-small builds no decoder
    run = edge_pack("build", topic_classifier, "--target-file", path, "-t", "web-extra", "-o", tmp_path / "out")
    assert_one_line_error(run, 2, str(path), *words)
    assert not (tmp_path / "out").exists()


def _own_target(tmp_path, extra: str, name: str = "web-extra", base=WEB_SMALL):
    path = tmp_path / f"{name}.toml"
    path.write_text(base.read_text().replace('name = "web-small"', f'name = "{name}"') + extra)
    return path


@pytest.mark.bad_input
def test_a_precision_only_the_toml_declares_is_refused_at_load(tmp_path, topic_classifier):
    path = _own_target(tmp_path, '\n[precisions.q2]\nfile = "onnx/model_q2.onnx"\nbits = 2\nmin_cosine = 0.5\n')
    run = edge_pack("build", topic_classifier, "--target-file", path, "-t", "web-extra", "-p", "q8",
                    "-o", tmp_path / "out")
    assert_one_line_error(run, 2, str(path), "'q2'", "makes only fp32, fp16, q8")
    assert not (tmp_path / "out").exists()


@pytest.mark.bad_input
def test_a_mistyped_precision_setting_is_refused_naming_the_valid_ones(tmp_path, topic_classifier):
    ios = ROOT / "targets" / "ios.toml"
    path = tmp_path / "ios-mine.toml"
    path.write_text(ios.read_text().replace('name = "ios"', 'name = "ios-mine"')
                    .replace("quantize_embeddings = true", "quantise_embeddings = true"))
    run = edge_pack("build", topic_classifier, "--target-file", path, "-t", "ios-mine", "-o", tmp_path / "out")
    assert_one_line_error(run, 2, str(path), "'int8'", "'quantise_embeddings'", "quantize_embeddings")


@pytest.mark.bad_input
def test_a_per_layer_table_for_a_converter_without_per_layer_control_is_refused(tmp_path, topic_classifier):
    (tmp_path / "whole").mkdir()  # a converter of one's own that quantizes a model whole
    (tmp_path / "whole" / "__init__.py").write_text("")
    (tmp_path / "whole" / "converter.py").write_text(
        "from edge_pack.converters.web import Converter as Web\n\n\nclass Converter(Web):\n    PER_LAYER = False\n")
    path = _own_target(tmp_path, '\n[mixed]\nlow = "q4"\nhigh = "q8"\nfile = "onnx/model_mixed.onnx"\n',
                       name="web-mixed")
    path.write_text(path.read_text().replace('converter = "web"', 'converter = "whole.converter"'))
    run = edge_pack("build", topic_classifier, "--target-file", path, "-t", "web-mixed", "-o", tmp_path / "out",
                    env={"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])})
    assert_one_line_error(run, 2, str(path), "[mixed]", "PER_LAYER")
    assert not (tmp_path / "out").exists()


@pytest.mark.bad_input
def test_an_option_declaration_without_a_type_is_refused(tmp_path, topic_classifier):
    path = _own_target(tmp_path, '\n[options.speed]\ntype = "fast"\nhelp = "how fast"\n')
    run = edge_pack("build", topic_classifier, "--target-file", path, "-t", "web-extra", "-o", tmp_path / "out")
    assert_one_line_error(run, 2, str(path), "[options.speed]", "type")


@pytest.mark.bad_input
@pytest.mark.parametrize("options, words", [
    ('min_io = 17', ["options.min_io", "min_ios", "layout"]),
    ('min_ios = 15', ["options.min_ios", "16, 17, 18"]),
    ('layout = 3', ["options.layout", "nhwc, nchw"]),
    ('quantize_embeddings = "yes"', ["options.quantize_embeddings", "true or false"]),
    ('imatrix = "missing.txt"', ["options.imatrix", "missing.txt"]),
])
def test_a_mistyped_job_option_is_one_line_naming_it(tmp_path, options, words):
    job = tmp_path / "edge-pack.toml"
    job.write_text(f'source = "demo"\ntargets = ["ios"]\n\n[options]\n{options}\n')
    run = edge_pack("build", "-c", job, "-o", tmp_path / "out")
    assert_one_line_error(run, 2, str(job), *words)


def test_job_options_reach_the_converter_and_flags_override_them(tmp_path, digits_cnn_dir):
    job = tmp_path / "edge-pack.toml"
    job.write_text('targets = ["android"]\nprecisions = ["fp32"]\n\n[options]\nlayout = "nchw"\n')
    for flags, layout in (([], "NCHW"), (["--layout", "nhwc"], "NHWC")):
        run = edge_pack("build", "digits_cnn:factory", "-c", job, *flags, "-o", tmp_path / layout, "--json",
                        cwd=digits_cnn_dir)
        assert run.code == 0, run.stderr
        (image,) = run.json()["artifacts"][0]["recipe"]["io"]["inputs"]
        assert image["layout"] == layout, flags


def test_the_python_api_checks_target_options_too(tmp_path, topic_classifier):
    import edge_pack

    with pytest.raises(UserError, match="unknown option 'layuot'.*layout"):
        edge_pack.build(str(topic_classifier), ["web"], ["fp32"], tmp_path / "out",
                        options=BuildOptions(target_options={"layuot": "nchw"}))
    assert not (tmp_path / "out").exists()
