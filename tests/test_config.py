"""edge-pack.toml as the whole job: every key read, flags override keys, and every mistake is one line
naming the key and its line (exit 2, nothing built)."""
from __future__ import annotations

import json

import pytest

from conftest import ROOT, assert_one_line_error, edge_pack
from edge_pack.config import Cost, load_config, locate
from edge_pack.targets import get_target

WEB_SMALL = ROOT / "examples" / "release-pipeline" / "web-small.toml"


def test_every_key_is_read_and_paths_are_relative_to_the_file(tmp_path):
    (tmp_path / "t.toml").write_text(WEB_SMALL.read_text())
    path = tmp_path / "edge-pack.toml"
    path.write_text("""
source = "models/mine"
targets = ["web", "web-small"]
target_files = ["t.toml"]
precisions = { web = "sweep", web-small = ["q8"] }
runtimes = { web = "node" }
eval = "data/eval.jsonl"
calibration = "data/calib.jsonl"
out = "dist/x"
[bench]
runs = 7
seq_len = 64
[sla]
min_accuracy_ratio = 0.95
max_latency_ms = 80
[sla.web-small]
max_size_mb = 10
[cost]
requests_per_month = 2_000_000
price_per_device_hour = 0.36
[cost.web-small]
price_per_million_requests = 1.5
currency = "EUR"
""")
    config = load_config(path)
    assert config.source == str(tmp_path / "models/mine")
    assert config.targets == ("web", "web-small") and config.target_files == (tmp_path / "t.toml",)
    assert config.precisions == {"web": "sweep", "web-small": ["q8"]}
    assert (config.eval, config.calibration, config.out) == (tmp_path / "data/eval.jsonl",
                                                             tmp_path / "data/calib.jsonl", tmp_path / "dist/x")
    assert config.bench == {"runs": 7, "seq_len": 64}
    assert config.runtimes == {"web": "node"}
    assert config.sla_for("web").max_latency_ms == 80 and config.sla_for("web").max_size_mb is None
    small = config.sla_for("web-small")
    assert (small.min_accuracy_ratio, small.max_latency_ms, small.max_size_mb) == (0.95, 80, 10)
    # 2M requests × 100 ms = 55.6 device-hours × 0.36 = 20.00 a month; per-target tables add to the base
    assert config.cost_for("web").per_month(100) == pytest.approx(20.0)
    assert config.cost_for("web-small").per_month(100) == pytest.approx(20.0 + 3.0)
    assert config.cost_for("web-small").currency == "EUR"
    assert Cost(requests_per_month=1e6, price_per_device_hour=1).per_month(None) is None
    assert get_target("web-small", config.target_files).choose("sweep") == ["fp32", "q8", "q4"]
    assert load_config(None).sla.min_accuracy_ratio == 0.98  # no file: the default SLA


def test_entry_points_and_demo_are_names_not_paths(tmp_path):
    path = tmp_path / "edge-pack.toml"
    for source in ("demo", "mypkg.models:factory"):
        path.write_text(f'source = "{source}"\n')
        assert load_config(path).source == source


def test_locate_finds_keys_in_tables_dotted_keys_and_inline_tables():
    text = 'a = 1\n[sla]\nmax_size_mb = 3\n\n[sla.web]\nmax_latency_ms = 2\n[cost]\nweb.currency = 5\nx = {y = 1}\n'
    assert locate(text, "a") == 1
    assert locate(text, "sla") == 2
    assert locate(text, "sla.max_size_mb") == 3
    assert locate(text, "sla.web") == 5 and locate(text, "sla.web.max_latency_ms") == 6
    assert locate(text, "cost.web.currency") == 8
    assert locate(text, "cost.x.y") == 9  # inside an inline table: its line
    assert locate(text, "nothing.here") is None


@pytest.mark.parametrize("content, words", [
    ('sorce = "demo"\n', ["edge-pack.toml:1", "sorce", "not a known key"]),
    ('source = "demo"\ntargets = ["web", "xbox"]\n', ["edge-pack.toml:2", "targets", "'xbox'", "target_files"]),
    ('targets = 3\n', ["edge-pack.toml:1", "targets", "list of strings"]),
    ('precisions = "all of them"\n', ["edge-pack.toml:1", "precisions", "'sweep'"]),
    ('precisions = { xbox = "sweep" }\n', ["edge-pack.toml:1", "precisions.xbox", "not a target"]),
    ('eval = 3\n', ["edge-pack.toml:1", "eval", "non-empty string"]),
    ('runtimes = { web = "safari" }\n', ["edge-pack.toml:1", "runtimes.web", "browser", "'safari'"]),
    ('runtimes = { xbox = "ort" }\n', ["edge-pack.toml:1", "runtimes.xbox", "not a target"]),
    ('\n[bench]\nruns = 0\n', ["edge-pack.toml:3", "bench.runs", "at least 1"]),
    ('\n[bench]\nrepeats = 3\n', ["edge-pack.toml:3", "bench.repeats", "not a known key"]),
    ('[sla]\nmax_size_mb = true\n', ["edge-pack.toml:2", "sla.max_size_mb", "finite number"]),
    # issue 14, item 1: a limit that cannot be compared would turn the gate off
    ('[sla]\nmax_latency_ms = nan\n', ["edge-pack.toml:2", "sla.max_latency_ms", "finite number", "nan"]),
    ('[sla]\nmin_accuracy_ratio = nan\n', ["edge-pack.toml:2", "sla.min_accuracy_ratio", "finite number"]),
    ('[sla]\n\n[sla.web]\nmax_size_mb = inf\n', ["edge-pack.toml:4", "sla.web.max_size_mb", "finite number", "inf"]),
    ('[sla]\nmax_latency_ms = 0\n', ["edge-pack.toml:2", "sla.max_latency_ms", "more than 0"]),
    ('[sla]\nmin_accuracy = 1.2\n', ["edge-pack.toml:2", "sla.min_accuracy", "between 0 and 1"]),
    ('[sla]\nmax_cost_per_month = -1\n', ["edge-pack.toml:2", "sla.max_cost_per_month", "0 or more"]),
    ('[sla]\nmax_memory_mb = nan\n', ["edge-pack.toml:2", "sla.max_memory_mb", "finite number", "peak RSS"]),
    ('[sla]\nconfidence = 1.5\n', ["edge-pack.toml:2", "sla.confidence", "0.95"]),
    ('[sla.ios]\nunverified_ok = ["latency"]\n', ["edge-pack.toml:2", "sla.ios.unverified_ok", "'latency'",
                                                   "max_latency_ms"]),
    ('[cost]\nrequests_per_month = 5\nprice_per_device_hour = nan\n',
     ["edge-pack.toml:3", "cost.price_per_device_hour", "nan"]),
    ('[cost]\nrequests_per_month = inf\nprice_per_device_hour = 1\n', ["edge-pack.toml:2", "cost.requests_per_month"]),
    ('[sla.web]\nmin_accuracy_ratio = 98\n', ["edge-pack.toml:2", "sla.web.min_accuracy_ratio", "share"]),
    ('[cost]\nprice_per_device_hour = 1\n', ["edge-pack.toml:1", "cost", "requests_per_month"]),
    ('[cost]\nrequests_per_month = 5\n', ["edge-pack.toml:1", "cost", "price"]),
    ('[cost]\nrequests_per_month = 5\nprice_per_device_hour = 1\n[cost.web]\ncurrency = 3\n',
     ["edge-pack.toml:5", "cost.web.currency", "string"]),
    ('[cost]\nrequests_per_month = 5\nprice_per_hour = 1\n', ["edge-pack.toml:3", "cost.price_per_hour", "not a known"]),
    ('target_files = ["missing.toml"]\n', ["edge-pack.toml:1", "target_files"]),
    ('source = "demo"\nsource = "x"\n', ["edge-pack.toml", "TOML"]),
])
def test_mistakes_name_the_key_and_line(tmp_path, content, words):
    (tmp_path / "edge-pack.toml").write_text(content)
    for command in ("build", "bench"):  # both read ./edge-pack.toml before doing anything
        assert_one_line_error(edge_pack(command, cwd=tmp_path), 2, *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edge-pack.toml"]


def test_a_config_named_with_config_must_exist(tmp_path):
    assert_one_line_error(edge_pack("build", "--config", tmp_path / "nope.toml"), 2, "nope.toml", "does not exist")


def test_without_source_or_out_the_commands_say_what_to_give(tmp_path):
    assert_one_line_error(edge_pack("build", cwd=tmp_path), 2, "SOURCE", "edge-pack.toml")
    assert_one_line_error(edge_pack("bench", cwd=tmp_path), 2, "bundle folder", "out")


def test_flags_override_keys(tmp_path, topic_classifier):
    (tmp_path / "edge-pack.toml").write_text(f'source = "{topic_classifier}"\ntargets = ["web"]\n'
                                             'precisions = ["fp32", "q8"]\nout = "from-config"\n')
    run = edge_pack("build", "-p", "fp32", "--out", tmp_path / "from-flag", "--json", cwd=tmp_path)
    assert run.code == 0, run.stderr
    assert [a["precision"] for a in run.json()["artifacts"]] == ["fp32"]
    assert not (tmp_path / "from-config").exists()
    # bench without PATH: the bundle at `out`, built first when it is not there yet
    run = edge_pack("bench", "-p", "fp32", "--runs", "2", "--json", cwd=tmp_path)
    assert run.code == 0, run.stderr
    assert [r["precision"] for r in run.json()["rows"]] == ["fp32"]
    built = json.loads((tmp_path / "from-config" / "manifest.json").read_text())
    assert [a["precision"] for a in built["artifacts"]] == ["fp32", "q8"]  # the file's precisions
    assert (tmp_path / "from-config" / "report.html").is_file()


def test_each_cost_term_is_an_estimate_from_its_stated_inputs():
    """Issue 14, 'cost means cost': a web model is downloaded by every new visitor, a phone model ships in
    every app download; each term sits beside device time with the inputs it came from."""
    cost = Cost(requests_per_month=5_000_000, price_per_device_hour=0.05, downloads_per_month=20_000,
                price_per_gb_downloaded=0.05)
    device, download = cost.terms(62.8, 22_900_000)
    assert device["term"] == "device time" and device["amount"] == pytest.approx(5e6 * 62.8 / 3.6e6 * 0.05)
    assert device["inputs"] == "p50 62.8 ms × 5,000,000 requests × 0.05 USD/device-hour"
    assert download["term"] == "model download" and download["amount"] == pytest.approx(22.9)  # GB × downloads × price
    assert download["inputs"] == "22.9 MB × 20,000 downloads × 0.05 USD/GB"
    assert cost.per_month(62.8, 22_900_000) == pytest.approx(device["amount"] + 22.9)
    assert cost.per_month(None, 22_900_000) is None  # device time needs a measured latency: no price at all
    assert cost.describe()["formula"] == ("p50 latency × 5,000,000 requests/month × 0.05 USD per device-hour + model "
                                          "size × 20,000 downloads/month × 0.05 USD per GB downloaded (an estimate "
                                          "from these inputs)")
