"""The decision end to end: a sweep of a small model on two targets (web and a user-defined web-small
target) driven by edge-pack.toml, the recommendation checked against the SLA by hand from results.json,
report.html rendered in headless Chromium without outside requests, report.md, and `edge-pack report`."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, edge_pack

WEB_SMALL = ROOT / "examples" / "release-pipeline" / "web-small.toml"
REQUESTS, PRICE = 10_000_000, 0.10
SIZE_LIMIT, SMALL_LATENCY_LIMIT = 0.2, 0.001


@pytest.fixture(scope="module")
def job(tmp_path_factory, topic_classifier) -> Path:
    """A project folder whose edge-pack.toml describes the whole job."""
    folder = tmp_path_factory.mktemp("project")
    shutil.copy(WEB_SMALL, folder / "web-small.toml")
    (folder / "edge-pack.toml").write_text(f"""
source = "{topic_classifier}"
targets = ["web", "web-small"]
target_files = ["web-small.toml"]
precisions = "sweep"
eval = "{topic_classifier.parent / 'eval.jsonl'}"
out = "bundle"

[bench]
runs = 5
warmup = 1

[sla]
min_accuracy_ratio = 0.98
max_size_mb = {SIZE_LIMIT}

[sla.web-small]
max_latency_ms = {SMALL_LATENCY_LIMIT}   # no candidate can answer this fast

[cost]
requests_per_month = {REQUESTS}
price_per_device_hour = {PRICE}
""")
    return folder


@pytest.fixture(scope="module")
def bench_run(job):
    build = edge_pack("build", cwd=job)  # no arguments: the job in ./edge-pack.toml
    assert build.code == 0, build.stderr
    return edge_pack("bench", "--json", cwd=job)


@pytest.fixture(scope="module")
def results(bench_run) -> dict:
    return bench_run.json()


def test_sweep_builds_every_precision_each_target_offers(results, job):
    manifest = json.loads((job / "bundle" / "manifest.json").read_text())
    built = {}
    for artifact in manifest["artifacts"]:
        built.setdefault(artifact["target"], []).append(artifact["precision"])
    skipped = {(r["target"], r["precision"]) for r in manifest["rejected"]}
    assert sorted(built["web"] + [p for t, p in skipped if t == "web"]) == sorted(
        ["fp32", "fp16", "q8", "int8", "uint8", "q4", "q4f16"])
    assert sorted(built["web-small"]) == ["fp32", "q4", "q8"]  # the user's target: its three precisions


def test_recommendation_matches_the_sla_computed_by_hand(bench_run, results, job):
    saved = json.loads((job / "bundle" / "results.json").read_text())
    assert saved["rows"] == results["rows"]
    for name, limits in (("web", {"size": SIZE_LIMIT, "latency": None}),
                         ("web-small", {"size": SIZE_LIMIT, "latency": SMALL_LATENCY_LIMIT})):
        rows = [r for r in saved["rows"] if r["target"] == name]
        base = saved["targets"][name]["baseline"]["quality"]["value"]
        assert rows and all(not r["error"] for r in rows)
        for row in rows:
            passes = (row["quality"]["value"] / base >= 0.98 and row["bytes"] / 1e6 <= limits["size"]
                      and (limits["latency"] is None or row["latency_p50_ms"] <= limits["latency"]))
            assert row["verdict"]["passed"] is passes, row
            assert row["cost_per_month"] == pytest.approx(row["latency_p50_ms"] / 3.6e6 * REQUESTS * PRICE)
            assert row["obtained"] == {"size": "measured", "quality": "measured", "latency": "measured"}
        passing = [r for r in rows if r["verdict"]["passed"]]
        # [cost] is set: cheapest means cost per month, then size (issue 14, item 6: it was size first)
        expected = min(passing, key=lambda r: (r["cost_per_month"], r["bytes"]))["precision"] if passing else None
        assert saved["targets"][name]["recommended"] == expected
    # web: something under 0.2 MB keeps the accuracy; web-small: nothing answers in 1 µs.
    assert saved["targets"]["web"]["recommended"] is not None
    assert "the cheapest candidate by cost per month (then the smallest) that meets the SLA" in (
        saved["targets"]["web"]["decision"]["text"])
    assert saved["targets"]["web-small"]["recommended"] is None
    assert bench_run.code == 1 and results["passed"] is False
    # ...and it says which limit failed and by how much: the fastest candidate's p50 minus the limit.
    small = [r for r in saved["rows"] if r["target"] == "web-small"]
    fastest = min(small, key=lambda r: r["latency_p50_ms"])
    decision = saved["targets"]["web-small"]["decision"]
    assert decision["blocking"] == [{"limit": "max_latency_ms", "precision": fastest["precision"],
                                     "by": pytest.approx(fastest["latency_p50_ms"] - SMALL_LATENCY_LIMIT),
                                     "text": f"p50 {fastest['latency_p50_ms']:.1f} ms > 0.001 ms"}]
    assert "every candidate misses the latency limit" in decision["text"]


def test_cliff_is_where_quality_falls_below_the_floor(results):
    for name, target in results["targets"].items():
        rows = [r for r in results["rows"] if r["target"] == name]
        for row in rows:  # the bits the file holds (issue 14, item 7), not the precision's label
            row["bits"] = round(row["bits_per_weight"], 2)
        floor = 0.98 * target["baseline"]["quality"]["value"]
        failing = [r["bits"] for r in rows if r["quality"]["value"] < floor]
        cliff = target["cliff"]
        assert cliff["floor"] == pytest.approx(floor)
        assert cliff["falls_at_bits"] == (max(failing) if failing else None)
        holding = [r["bits"] for r in rows if not failing or r["bits"] > max(failing)]
        assert cliff["holds_to_bits"] == (min(holding) if holding else None)
        assert [p["bits"] for p in cliff["points"]] == sorted((r["bits"] for r in rows), reverse=True)


def test_bench_writes_the_reports_and_a_zip_for_the_target_that_ships(results, job):
    bundle = job / "bundle"
    assert (bundle / "report.html").is_file() and (bundle / "report.md").is_file()
    web = results["targets"]["web"]["recommended"]
    (zip_name,) = [p.name for p in bundle.glob("*.zip")]  # web-small has nothing to ship: no zip
    assert zip_name.endswith("-web.zip") and results["releases"] == {"web": zip_name}
    names = set(zipfile.ZipFile(bundle / zip_name).namelist())
    shipped = next(a for a in json.loads((bundle / "manifest.json").read_text())["artifacts"]
                   if a["target"] == "web" and a["precision"] == web)
    assert {f["path"] for f in shipped["files"]} < names
    assert {"manifest.json", "results.json", "web/config.json", "web/tokenizer.json"} <= names
    assert not [n for n in names if n.startswith("web/onnx/") and n not in {f["path"] for f in shipped["files"]}]
    # the zip unpacks into a bundle that verifies on its own; the bundle (which lists the zip) verifies too
    extracted = job / "extracted"
    zipfile.ZipFile(bundle / zip_name).extractall(extracted)
    assert edge_pack("verify", extracted).code == 0
    assert json.loads((extracted / "manifest.json").read_text())["verdict"]["web"]["recommended"] == web
    assert edge_pack("verify", bundle).code == 0


def test_report_md_is_the_summary_a_ci_job_posts(results, job):
    text = (job / "bundle" / "report.md").read_text()
    assert text.startswith("## edge-pack: ❌")
    web = results["targets"]["web"]["recommended"]
    assert re.search(rf"^\| web \| ★ {web} \|", text, re.M)
    assert re.search(r"^\| web-small \| — \|.*every candidate misses the latency limit", text, re.M)
    assert "cost / month" in text and "<details>" in text


# ------------------------------------------------------------------------------------ Chromium rendering

def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("Debian chromium is not installed (make chromium installs it)")
    return found


def _render(page: Path, folder: Path, *args: str) -> tuple[str, list[str]]:
    """Open `page` in headless Chromium with a fresh profile and every host name unresolvable; return
    what the browser printed and the URLs the page itself requested (from Chromium's network log; the
    browser's own background requests carry the initiator 'not an origin')."""
    net_log = folder / f"{page.stem}-netlog.json"
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND", f"--log-net-log={net_log}",
             *args, page.resolve().as_uri()], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = json.loads(net_log.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    starts = [e["params"] for e in log["events"] if e["type"] == start and "url" in e.get("params", {})]
    return proc.stdout, [p["url"] for p in starts if p.get("initiator") != "not an origin"]


def test_the_outside_request_check_catches_a_page_that_fetches(tmp_path):
    page = tmp_path / "leaky.html"
    page.write_text('<!DOCTYPE html><img src="http://example.com/x.png"><script src="https://cdn.example.org/a.js">'
                    "</script>")
    _, requested = _render(page, tmp_path, "--dump-dom")
    assert "http://example.com/x.png" in requested and "https://cdn.example.org/a.js" in requested


def test_report_html_renders_in_chromium_with_charts_and_tables(results, job, tmp_path):
    page = job / "bundle" / "report.html"
    html = page.read_text()
    # self-contained: no URL of any kind to fetch, no external stylesheet, script or image
    assert not re.search(r"https?://", html)
    assert not re.search(r"<(script|link|img|iframe)\b", html)
    dom, requested = _render(page, tmp_path, "--dump-dom")
    assert requested == []
    for name, target in results["targets"].items():
        section = dom[dom.index(f'id="target-{name}"'):]
        section = section[:section.index("</section>")]
        charts = re.findall(r'<figure class="chart" id="chart-([^"]+)">.*?<svg[^>]*>(.*?)</svg>', section, re.S)
        assert [c[0] for c in charts] == [f"{name}-cliff", f"{name}-quality-size", f"{name}-latency-size"]
        for _, svg in charts:
            assert "<path" in svg and len(svg) > 2000  # axes, markers and lines were drawn
            for row in (r for r in results["rows"] if r["target"] == name):
                assert f">{row['precision']}<" in svg  # every candidate is labeled on every chart
        assert "SLA floor" in charts[0][1]
        table = re.search(r'<table class="candidates">(.*?)</table>', section, re.S).group(1)
        assert len(re.findall(r"<tr[ >]", table)) == 1 + len([r for r in results["rows"] if r["target"] == name]) + \
            len(target["rejected_at_build"])
        assert target["decision"]["text"].split(" — ")[0] in dom
    assert '<table class="verdict">' in dom and "How each number was obtained" in dom
    assert "onnxruntime 1.32" in dom or "onnxruntime" in dom
    assert results["source"]["sha256"] in dom
    # the screenshot, kept in the test's temp folder
    shot = tmp_path / "report.png"
    _, requested = _render(page, tmp_path, "--window-size=1280,1800", "--hide-scrollbars", f"--screenshot={shot}")
    assert requested == []
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1280, 1800)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 50  # text, tables and charts, not a blank page


def test_edge_pack_report_regenerates_both_files_from_results_json(job, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(job / "bundle", copy)
    before = {n: (copy / n).read_bytes() for n in ("report.html", "report.md")}
    for name in before:
        (copy / name).unlink()
    run = edge_pack("report", copy, "--json")
    assert run.code == 0, run.stderr
    written = run.json()  # stdout is one JSON document
    assert written["recommended"]["web-small"] is None and written["passed"] is False
    assert {n: (copy / n).read_bytes() for n in before} == before  # the same results give the same files


def test_report_screenshot_command(job, tmp_path):
    _chromium()
    shot = tmp_path / "shot.png"
    run = edge_pack("report", job / "bundle", "--screenshot", shot)
    assert run.code == 0, run.stderr
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(shot) in run.stdout


def test_report_of_a_folder_without_results(tmp_path):
    run = edge_pack("report", tmp_path)
    assert run.code == 2 and "no results.json" in run.stderr and "edge-pack bench" in run.stderr
