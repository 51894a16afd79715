"""Property-based: any edge-pack.toml and any eval file gives a result or a clean UserError, never
another exception (which the CLI would report as an internal error)."""
from __future__ import annotations

import json
import string

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_pack.config import load_config
from edge_pack.errors import UserError
from edge_pack.evalset import Preprocessor, make_evalset
from edge_pack.source import InputSpec

pytestmark = pytest.mark.bad_input
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

keys = st.sampled_from(["sla", "web", "ios", "min_accuracy_ratio", "max_latency_ms", "max_size_mb", "min_accuracy",
                        "cost", "source", "targets", "precisions", "runtimes", "bench", "runs", "eval", "out",
                        "requests_per_month", "price_per_device_hour", "x"])
values = st.one_of(st.integers(-5, 10**6), st.floats(allow_nan=True), st.text(max_size=5), st.booleans(),
                   st.lists(st.integers(), max_size=2))


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float):
        return "nan" if value != value else ("inf" if value == float("inf") else "-inf" if value == float("-inf")
                                              else repr(value))
    return json.dumps(value)


@st.composite
def toml_documents(draw):
    lines = [f"{draw(keys)} = {_toml_value(draw(values))}" for _ in range(draw(st.integers(0, 3)))]
    for _ in range(draw(st.integers(0, 4))):
        lines.append(f"[{'.'.join(draw(st.lists(keys, min_size=1, max_size=2)))}]")
        for _ in range(draw(st.integers(0, 3))):
            lines.append(f"{draw(keys)} = {_toml_value(draw(values))}")
    return "\n".join(lines)


@FUZZ
@given(text=st.one_of(toml_documents(), st.text(alphabet=string.printable, max_size=200)))
def test_config_parser_never_crashes(tmp_path, text):
    path = tmp_path / "edge-pack.toml"
    path.write_text(text)
    try:
        config = load_config(path)
    except UserError as exc:
        assert "\n" not in exc.message and str(path) in exc.message
    else:
        assert 0 <= (config.sla.min_accuracy_ratio or 0) <= 1.5


@pytest.fixture(scope="module")
def text_pre(topic_classifier):
    return Preprocessor("text-classification", topic_classifier, None)


row_values = st.one_of(st.none(), st.text(max_size=20), st.integers(-3, 12), st.floats(allow_nan=True),
                       st.lists(st.text(max_size=3), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
rows = st.lists(st.one_of(st.dictionaries(st.sampled_from(["text", "label", "image", "x"]), row_values, max_size=3),
                          st.text(max_size=10), st.integers()), max_size=6)


@FUZZ
@given(rows=rows, garbage=st.one_of(st.none(), st.text(max_size=30)))
def test_jsonl_parser_never_crashes(tmp_path, text_pre, rows, garbage):
    lines = [json.dumps(r) for r in rows] + ([garbage] if garbage is not None else [])
    path = tmp_path / "eval.jsonl"
    path.write_text("\n".join(lines))
    labels = ["food", "sports", "tech", "weather"]
    try:
        evalset = make_evalset(text_pre, path, 16, labels, embedder=False)
    except UserError as exc:
        assert "\n" not in exc.message
    else:
        assert len(evalset.samples) >= 1
        assert evalset.labels is None or set(evalset.labels) <= set(range(len(labels)))


@FUZZ
@given(text=st.text(alphabet=string.printable, max_size=200))
def test_csv_parser_never_crashes(tmp_path, text_pre, text):
    path = tmp_path / "eval.csv"
    path.write_text(text)
    try:
        make_evalset(text_pre, path, 16, ["food", "sports", "tech", "weather"], embedder=False)
    except UserError as exc:
        assert "\n" not in exc.message


arrays = st.dictionaries(st.sampled_from(["image", "labels", "other", "input"]),
                         st.sampled_from([np.zeros((3, 1, 8, 8), np.float32), np.zeros((2, 4), np.int64),
                                          np.array(["a", "b"]), np.zeros((0,), np.float32), np.ones(3, np.float64),
                                          np.zeros((3,), np.int32)]), max_size=3)


@FUZZ
@given(content=arrays)
def test_npz_parser_never_crashes(tmp_path, content):
    path = tmp_path / "eval.npz"
    np.savez(path, **content)
    pre = Preprocessor("generic", None, [InputSpec("image", "float32", (1, 1, 8, 8))])
    try:
        evalset = make_evalset(pre, path, 16, None, embedder=False)
    except UserError as exc:
        assert "\n" not in exc.message
    else:
        assert all(s["image"].shape[0] == 1 for s in evalset.samples)
