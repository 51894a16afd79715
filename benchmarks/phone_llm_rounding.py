"""Why 8-bit phone decoders lose SmolLM2's greedy answers, and which 8-bit rounding keeps them: torch fp32
against torch with its weights rounded as the phone recipes round them (symmetric int8, one scale per output
row as LiteRT's weight-only-int8 and Core ML's int8, or per block of 32 as Core ML's int8-block32 and
llama.cpp's q8_0, or of 16 as Core ML's int8-block16 and the web target's 8-bit blocks of 16), asymmetric (a zero point
per row or block: coremltools' mode="linear", ai-edge-quantizer's symmetric=False, onnxruntime's 8-bit
blocks with zero points), component by component (linear weights of the blocks, the tied embedding/lm_head table,
attention or MLP kept float), and as the other roundings ai-edge-quantizer offers at 8 bits per channel:
Hadamard-rotated input axis (its hadamard_rotation), activations rounded on the fly (dynamic-int8, with
and without the rotation), and GPTQ (its gptq.py: each column's rounding error pushed onto the columns not
yet rounded, through the inverse Hessian of the float inputs, calibrated on tests/smollm2.py's 30 task
prompts, none of them measured here). No converter or runtime is involved: if a phone file's rows match
these, the loss is the rounding, not the toolchain. Per-channel and per-block rounding are written out here
(a few lines each: they are the experiment); the Hadamard matrix and GPTQ are ai-edge-quantizer's own functions
(hadamard_rotation._make_hadamard_matrix, gptq._apply_gptq), applied to torch's weights.

Run: nice -n 10 .venv/bin/python benchmarks/phone_llm_rounding.py [VARIANT ...] (prints same top-1 over the
348 positions of benchmarks/phone_llm.py, the answers keeping torch's first 16 tokens, the tokens agreeing
per prompt of up to 24, and torch's logit margin at each first difference; about 30 s a variant, GPTQ ones
a few minutes)."""
import copy
import re
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests")); sys.path.insert(0, str(ROOT / "benchmarks"))
from web_llm import PROMPTS, chat_row  # noqa: E402
import smollm2  # noqa: E402
from edge_pack import decoder_check  # noqa: E402
from edge_pack.generation import Prompter, torch_answers  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402
from ai_edge_quantizer import qtyping  # noqa: E402
from ai_edge_quantizer.algorithms.uniform_quantize import gptq as gptq_algorithm  # noqa: E402
from ai_edge_quantizer.algorithms.uniform_quantize import hadamard_rotation, uniform_quantize_tensor  # noqa: E402
from coremltools.converters.mil.mil import types as mil_types  # noqa: E402
from coremltools.optimize import _utils as coreml_quant  # noqa: E402

d = smollm2.smollm2()
tok = AutoTokenizer.from_pretrained(d)
pr = Prompter(tok, max_new_tokens=24, support_dir=d)
asks = [pr.ask(chat_row(i, p)) for i, p in enumerate(PROMPTS)]
base = decoder_check.load_torch(d)
greedy = [a.tokens for a in torch_answers(base, asks)]
seqs = [a.prompt + g for a, g in zip(asks, greedy)]
ref = [decoder_check.torch_logits(base, s) for s in seqs]


def ch(w, bits=8):
    m = 2 ** (bits - 1) - 1
    s = w.abs().amax(1, keepdim=True) / m
    return torch.round(w / s).clamp(-m, m) * s


def blk(w, block=32):
    r = w.reshape(w.shape[0], -1, block)
    s = r.abs().amax(-1, keepdim=True) / 127
    return (torch.round(r / s).clamp(-127, 127) * s).reshape(w.shape)


def blk16(w):
    return blk(w, 16)


def zp(w, block=0, dtype=np.float32):
    """int8 with a zero point (asymmetric): coremltools' own mode="linear" rounding (compute_qparams_by_dtype,
    dequantize_by_scale_and_zp) per block of `block` along the input axis, or per output row (0). The range
    is widened to hold 0, scale = (max - min) / 255, zero point = round(-128 - min / scale): the same formula
    as ai-edge-quantizer's symmetric=False (tensor_zp_scale_from_min_max). dtype=np.float16: as coremltools
    compresses the fp16 program's weights (fp16 weights in, fp16 scales and dequantized weights out)."""
    q, scale, zero = coreml_quant.compute_qparams_by_dtype(w.detach().numpy().astype(dtype), mil_types.int8,
                                                           "LINEAR", [1, block])
    return torch.from_numpy(coreml_quant.dequantize_by_scale_and_zp(q, scale, zero)).float()


def zp32(w):
    return zp(w, 32)


def zp16(w):
    return zp(w, 16)


def zp32h(w):
    return zp(w, 32, np.float16)


def zp16h(w):
    return zp(w, 16, np.float16)


def f16(w):
    return w.half().float()


def hadamard(n):
    """ai-edge-quantizer's own Hadamard matrix (normalised), as a torch tensor."""
    return torch.from_numpy(hadamard_rotation._make_hadamard_matrix(n)).float()


def had(w):
    """ai-edge-quantizer's Hadamard rotation: the largest power of 2 dividing the input axis (64 for 576,
    512 for 1536), block-diagonal; the rotated weights rounded per channel, rotated back."""
    n = int(np.gcd(w.shape[1], 2 ** 30))
    h = hadamard(n)
    q = ch((w.reshape(-1, n) @ h).reshape(w.shape))
    return (q.reshape(-1, n) @ h.T).reshape(w.shape)


def act_q(x):
    """Per-token asymmetric int8, as LiteRT's hybrid (dynamic-range) kernels round a float input."""
    lo, hi = x.amin(-1, keepdim=True).clamp(max=0), x.amax(-1, keepdim=True).clamp(min=0)
    s = (hi - lo).clamp(min=1e-12) / 255
    z = torch.round(-128 - lo / s)
    return (torch.round(x / s + z).clamp(-128, 127) - z) * s


def dynamic(mdl, rotate: bool):
    """Every Linear's input rounded on the fly (after the Hadamard rotation its weights got, if `rotate`)."""
    for mod in mdl.modules():
        if isinstance(mod, torch.nn.Linear):
            k = int(np.gcd(mod.in_features, 2 ** 30))
            h = hadamard(k)

            def pre(m, args, h=h, k=k):
                x = args[0]
                if not rotate:
                    return (act_q(x),)
                return ((act_q((x.reshape(-1, k) @ h).reshape(x.shape)).reshape(-1, k) @ h.T).reshape(x.shape),)
            mod.register_forward_pre_hook(pre)
    return mdl


HESSIANS = {}


def hessians() -> dict:
    """2/N XᵀX of each Linear's float input over the calibration prompts, as gptq.calibrate collects them."""
    if HESSIANS:
        return HESSIANS
    calib = [pr.ask(chat_row(i, r["prompt"])).prompt for i, r in enumerate(smollm2.task_rows())]
    sums, counts, hooks = {}, {}, []
    for n, mod in base.named_modules():
        if isinstance(mod, torch.nn.Linear):
            def pre(m, args, n=n):
                x = args[0].reshape(-1, args[0].shape[-1]).double()
                sums[n] = sums.get(n, 0) + x.T @ x
                counts[n] = counts.get(n, 0) + x.shape[0]
            hooks.append(mod.register_forward_pre_hook(pre))
    with torch.no_grad():
        for ids in calib:
            base(input_ids=torch.tensor([ids]))
    for h in hooks:
        h.remove()
    HESSIANS.update({n: 2.0 / counts[n] * sums[n] for n in sums})
    return HESSIANS


def gptq(w, h):
    """ai-edge-quantizer's own GPTQ (gptq._apply_gptq) at 8 bits per channel: per-row min/max scales,
    columns rounded in order, each error spread over the later columns by the inverse Hessian."""
    w = w.detach().numpy().astype(np.float32)
    scale = (np.abs(w).max(1, keepdims=True) / 127).astype(np.float32)
    params = qtyping.UniformQuantParams(num_bits=8, quantized_dimension=0, scale=scale, symmetric=True,
                                        zero_point=np.zeros_like(scale, dtype=np.int32))
    config = qtyping.TensorQuantizationConfig(num_bits=8, symmetric=True,
                                              granularity=qtyping.QuantGranularity.CHANNELWISE)
    done = gptq_algorithm._apply_gptq(w, params, {"hessian": h.numpy().astype(np.float32)}, config)
    return torch.from_numpy(uniform_quantize_tensor.uniform_dequantize(done.quantized_data, done)).float()


def by_gptq(name):
    return lambda w: gptq(w, hessians()[name])


def layer(n):
    m = re.search(r"layers\.(\d+)\.", n)
    return int(m.group(1)) if m else None


# name → (rounding of a block's Linear by its name, of the tied table ("embed"), extras). None: kept float.
VARIANTS = {
    "fp16-all": (lambda n: f16, f16, {}),
    "ch8-all": (lambda n: ch, ch, {}),
    "ch8-blocks-only": (lambda n: ch, None, {}),
    "ch8-emb-only": (lambda n: None, ch, {}),
    "blk32-8-all": (lambda n: blk, blk, {}),
    "blk32-8-blocks-only": (lambda n: blk, None, {}),
    "blk16-8-all": (lambda n: blk16, blk16, {}),
    "blk16-8-blocks-only": (lambda n: blk16, None, {}),
    "zp-ch8-all": (lambda n: zp, zp, {}),
    "zp-blk32-8-all": (lambda n: zp32, zp32, {}),
    "zp-blk16-8-all": (lambda n: zp16, zp16, {}),
    "zp-blk32-8-all-fp16": (lambda n: zp32h, zp32h, {}),
    "zp-blk16-8-all-fp16": (lambda n: zp16h, zp16h, {}),
    "ch8-attention-float": (lambda n: None if "self_attn" in n else ch, ch, {}),
    "ch8-mlp-float": (lambda n: None if "mlp" in n else ch, ch, {}),
    "ch8-v-o-float": (lambda n: None if re.search(r"[vo]_proj", n) else ch, ch, {}),
    "ch8-first2-last2-float": (lambda n: None if layer(n) < 2 or layer(n) > 27 else ch, ch, {}),
    "hadamard8-all": (lambda n: had, had, {}),
    "dynamic8-all": (lambda n: ch, ch, {"dynamic": False}),
    "dynamic8-hadamard-all": (lambda n: had, had, {"dynamic": True}),
    "gptq8-all": (by_gptq, ch, {}),
    "gptq8-blocks-fp16-table": (by_gptq, f16, {}),
    "gptq8-blocks-gptq8-lm_head": (by_gptq, ch, {"head": lambda w: gptq(w, hessians()["lm_head"])}),
}


def variant(blocks, table, extras):
    mdl = copy.deepcopy(base)
    with torch.no_grad():
        for n, mod in mdl.named_modules():
            rounding = blocks(n) if isinstance(mod, torch.nn.Linear) and n != "lm_head" else None
            if rounding:
                mod.weight.copy_(rounding(mod.weight))
        if "head" in extras:  # the lm_head rounded on its own: untied from the looked-up table
            mdl.lm_head.weight = torch.nn.Parameter(extras["head"](mdl.lm_head.weight.detach().clone()))
        if table:
            e = mdl.model.embed_tokens.weight
            e.copy_(table(e))
    if "dynamic" in extras:
        dynamic(mdl, extras["dynamic"])
    return mdl


def pref(r, f):
    return next((i for i, (a, b) in enumerate(zip(r, f)) if a != b), min(len(r), len(f)))


for name in sys.argv[1:] or VARIANTS:
    m = variant(*VARIANTS[name])
    found = [a.tokens for a in torch_answers(m, asks)]
    top1 = np.mean([decoder_check.agreement(r, decoder_check.torch_logits(m, s)).same_top1 for r, s in zip(ref, seqs)])
    p = [pref(r, f) for r, f in zip(greedy, found)]
    gaps = []
    for r, f, a, s in zip(greedy, found, asks, seqs):
        i = pref(r, f)
        row = decoder_check.torch_logits(base, s[:len(a.prompt) + i])[-1] if i < min(len(r), len(f)) else None
        gaps.append("—" if row is None else f"{row[r[i]] - row[f[i]]:.2f}")
    same = decoder_check.same_sequence_rate(greedy, found, 16)
    print(f"{name:<28} same top-1 {top1:.3f}  same 16 {round(same * len(asks))}/{len(asks)}  tokens agreeing per "
          f"prompt {p}  torch's margin at the first difference [{', '.join(gaps)}]", flush=True)
