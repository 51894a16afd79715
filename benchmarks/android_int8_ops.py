"""What breaks full-integer MiniLM on LiteRT (issue 18), op group by op group, with ai-edge-quantizer's own
recipe entries (update_quantization_recipe / add_static_config with a regex on the ops' scopes, op types,
AlgorithmName.NO_QUANTIZE for float) on the fp32 .tflite edge-pack converts, calibrated and judged on the demo's
48 sentences: mean cosine of the mean-pooled, normalised embedding against the fp32 file's.

1. calibration: Quantizer.calibrate's moving average of each sample's min/max against the calibrator's
   min_max_update (what edge-pack uses), every op at int8;
2. each op group alone at int8, every other op float: which ones int8 activations break;
3. every op at int16 activations (a16w8), each group alone back at int8: which ones need more than 8 bits;
4. the candidates: int8 and int8-a16 as edge-pack builds them, and int8 with the groups of step 3 at int16;
   with the LiteRT interpreter's p50 (1 thread) beside fp32's.
Ops reading Hugging Face's attention mask (finfo.min, which the calibrator ignores: android_layers.unranged)
stay float in every row but the first.

Run: .venv/bin/python benchmarks/android_int8_ops.py [--runs 10]   (~25 min on a busy 2-core machine: each
int16 build takes about a minute)
"""
from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

# Op groups of a Hugging Face BERT encoder, by op type and the torch module litert-torch names the op after
# (android_layers._owner; the FFN's first projection is named after the LayerNorm it reads).
GROUPS = {
    "embeddings (lookups, sums)": lambda k, o: "BertEmbeddings_embeddings" in o and "LayerNorm" not in o,
    "attention q/k/v projections": lambda k, o: k == "FULLY_CONNECTED" and "BertSelfAttention_self/Linear_" in o,
    "attention ops (matmuls, softmax)": lambda k, o: o.endswith("BertSelfAttention_self"),
    "attention output projection": lambda k, o: k == "FULLY_CONNECTED" and o.endswith("BertSelfOutput_output/Linear_dense"),
    "FFN input projection": lambda k, o: k == "FULLY_CONNECTED" and o.endswith("LayerNorm_LayerNorm"),
    "GELU": lambda k, o: k == "GELU",
    "FFN output projection": lambda k, o: k == "FULLY_CONNECTED" and o.endswith("BertOutput_output/Linear_dense"),
    "residual adds": lambda k, o: k == "ADD" and o.endswith("Linear_dense"),
    "LayerNorm ops": lambda k, o: k != "FULLY_CONNECTED" and o.endswith("LayerNorm_LayerNorm"),
    "LayerNorm SQUARED_DIFFERENCE": lambda k, o: k == "SQUARED_DIFFERENCE",
    "the output's last add": lambda k, o: o.startswith("serving_default"),
}


class Bench:
    def __init__(self, runs: int):
        from edge_pack.contracts import BuildOptions
        from edge_pack.converters import android_layers
        from edge_pack.converters.android import Converter
        from edge_pack.source import load_source
        from edge_pack.targets import builtin_targets

        demo = ROOT / "examples" / "demo" / "eval.jsonl"
        self.tmp = Path(tempfile.mkdtemp(prefix="int8-ops-"))
        self.converter = Converter(load_source("demo"), builtin_targets()["android"], self.tmp / "bundle",
                                   BuildOptions(calibration=demo))
        self.fp32, self.feeds, self.runs = self.converter.fp32, self.converter.calibration["feeds"], runs
        self.key = next(iter(self._interpreter(self.fp32).get_signature_list()))
        self.ops = [(kind, android_layers._owner(name), scope) for kind, name, scope, _ in android_layers._graph(self.fp32)]
        self.baseline = self.pooled(self.fp32)
        self.ranges = android_layers.calibrate(self.fp32, self.key, self.feeds)
        self.unranged = sorted(set(android_layers.unranged(self.fp32, self.ranges)))

    @staticmethod
    def _interpreter(path: Path):
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter(model_path=str(path), num_threads=1)

    def pooled(self, path: Path) -> np.ndarray:
        run = self._interpreter(path).get_signature_runner()
        found = []
        for feed in self.feeds:
            hidden = next(iter(run(**feed).values())).astype(np.float64)[0]
            mask = feed["attention_mask"][0][:, None].astype(np.float64)
            vector = (hidden * mask).sum(0) / mask.sum()
            found.append(vector / np.linalg.norm(vector))
        return np.stack(found)

    def regex(self, group: str) -> str:
        from edge_pack.converters.android_layers import _regex

        return _regex(sorted({s for k, o, s in self.ops if GROUPS[group](k, o)}))

    def build(self, base: str | None, entries: list[tuple[str, str]], ranges=None, mask_float: bool = True) -> Path:
        """base: "int8", "int16" or None (float) for every op; entries: (group, "int8" | "int16" | "float")
        after it, the latest winning (recipe_manager.get_quantization_configs)."""
        from ai_edge_quantizer import qtyping, quantizer
        from ai_edge_quantizer.algorithm_manager import AlgorithmName
        from edge_pack.converters.android_layers import _regex

        ops = qtyping.TFLOperationName
        q = quantizer.Quantizer(str(self.fp32))

        def static(regex: str, bits: int) -> None:
            q.add_static_config(regex=regex, operation_name=ops.ALL_SUPPORTED, activation_num_bits=bits,
                                weight_num_bits=8)

        if base:
            static(".*", 16 if base == "int16" else 8)
            q.add_weight_only_config(regex=".*", operation_name=ops.EMBEDDING_LOOKUP, num_bits=8)
        for group, level in entries:
            if level == "float":
                q.update_quantization_recipe(self.regex(group), ops.ALL_SUPPORTED, algorithm_key=AlgorithmName.NO_QUANTIZE)
            else:
                static(self.regex(group), 16 if level == "int16" else 8)
        if mask_float:
            for scope, kind in self.unranged:
                q.update_quantization_recipe(_regex([scope]), ops(kind), algorithm_key=AlgorithmName.NO_QUANTIZE)
        out = self.tmp / "candidate.tflite"
        out.write_bytes(bytes(q.quantize(ranges or self.ranges, enable_progress_report=False).quantized_model))
        return out

    def cosine(self, path: Path) -> tuple[float, float]:
        cosines = (self.pooled(path) * self.baseline).sum(axis=1)
        return float(cosines.mean()), float(cosines.min())

    def p50(self, path: Path) -> float:
        run = self._interpreter(path).get_signature_runner()
        for _ in range(2):
            run(**self.feeds[0])
        times = []
        for feed in self.feeds[:self.runs]:
            start = time.perf_counter()
            run(**feed)
            times.append(time.perf_counter() - start)
        return 1000 * float(np.median(times))

    def row(self, label: str, path: Path, timed: bool = False) -> None:
        mean, low = self.cosine(path)
        latency = f"{self.p50(path):>9.1f}" if timed else f"{'':>9}"
        print(f"  {label:<58}{mean:>8.4f}{low:>8.4f}{path.stat().st_size / 1e6:>8.1f}{latency}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="timed runs for each candidate's p50")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 3, 4], choices=[1, 2, 3, 4])
    args = parser.parse_args()
    from edge_pack.quiet import captured

    with captured():
        bench = Bench(args.runs)
    header = f"  {'':<58}{'cosine':>8}{'min':>8}{'MB':>8}{'p50 ms':>9}"
    print(f"MiniLM-L6 on LiteRT (ai-edge-quantizer recipe entries), {len(bench.feeds)} demo sentences, "
          f"{len(bench.ops)} ops; {len(bench.unranged)} ops read or write a tensor calibration gave no range "
          f"(the attention mask): {sorted({k for _, k in bench.unranged})}")
    if 1 in args.steps:
        calibration(bench, header)
    if 2 in args.steps:
        print("2. one op group at int8, every other op float\n" + header)
        for group in GROUPS:
            bench.row(group, bench.build(None, [(group, "int8")]))
    if 3 in args.steps:
        print("3. every op at int16 activations (a16w8), one group back at int8\n" + header)
        bench.row("none (all int16)", bench.build("int16", []))
        for group in GROUPS:  # SQUARED_DIFFERENCE has no int16 config: at "int16" it is float
            bench.row(f"{group} at int8", bench.build("int16", [(group, "int8")]))
    if 4 in args.steps:
        candidates(bench, header)


def calibration(bench: Bench, header: str) -> None:
    from ai_edge_quantizer import quantizer, recipe
    from edge_pack.quiet import captured

    print("1. calibration, every op at int8 (the mask ops too)\n" + header)
    with captured():
        average = quantizer.Quantizer(str(bench.fp32), recipe.static_wi8_ai8()).calibrate(
            {bench.key: bench.feeds}, num_threads=1)
    bench.row("Quantizer.calibrate (moving average of min/max)", bench.build("int8", [], average, mask_float=False))
    bench.row("min_max_update (edge-pack)", bench.build("int8", [], mask_float=False))
    bench.row("min_max_update, the mask ops float", bench.build("int8", []))


def candidates(bench: Bench, header: str) -> None:
    from edge_pack.quiet import captured

    print("4. candidates\n" + header)
    bench.row("fp32", bench.fp32, timed=True)
    for precision in ("int8", "int8-a16"):
        out = bench.tmp / f"{precision}.tflite"
        with captured():
            recipe_found = bench.converter.maker(precision)(out)
        bench.row(f"{precision} (edge-pack; float: {', '.join(recipe_found['float_ops'])})"[:58], out, timed=True)
    sensitive = ["FFN output projection", "residual adds", "LayerNorm ops", "the output's last add"]
    bench.row("int8; int16 on FFN output, residual adds, LayerNorm, last add",
              bench.build("int8", [(g, "int16") for g in sensitive]), timed=True)
    bench.row("int16; int8 on q/k/v, attention ops, attention output",
              bench.build("int16", [(g, "int8") for g in ("attention q/k/v projections",
                                                          "attention ops (matmuls, softmax)",
                                                          "attention output projection")]), timed=True)


if __name__ == "__main__":
    main()
