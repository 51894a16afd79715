"""Mixed precision on Core ML (issue 18, ios): `--precision auto` on the digits ViT classifier mixes int4 and
int8 per weight const (coremltools op_name_configs), validated on the MIL emulator and benched as a row."""
from __future__ import annotations

import pytest
from conftest import assert_one_line_error, edge_pack

import models

MIXED = "mixed-4/8"


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
    assert counts["int4"] + counts["int8"] == len(ranking)
    assert counts["int8"] == len(mixed["recipe"]["promoted"])
    assert mixed["validation"]["cosine_mean"] >= 0.99
    assert mixed["recipe"]["search"]["builds"][-1]["passed"] or mixed["recipe"]["search"]["builds"][0]["passed"]


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
