"""Why 8-bit phone decoders lose SmolLM2's greedy answers: torch fp32 against torch with its weights rounded
as the phone recipes round them (symmetric int8, one scale per output row as LiteRT's weight-only-int8 and
Core ML's int8, or per block of 32 as Core ML's int8-block32 and llama.cpp's q8_0), component by component
(all linear weights and the tied embedding/lm_head table, the blocks only, the table only). No converter or
runtime is involved: if a phone file's rows match these, the loss is the rounding, not the toolchain.
The rounding is written out here (a few lines) because it is the experiment, not a shipped recipe.

Run: nice -n 10 .venv/bin/python benchmarks/phone_llm_rounding.py (prints same top-1 over the 348 positions
of benchmarks/phone_llm.py and the tokens agreeing per prompt, of up to 24)."""
import sys, copy
import numpy as np, torch
from pathlib import Path
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests")); sys.path.insert(0, str(ROOT / "benchmarks"))
from web_llm import PROMPTS, chat_row
import smollm2
from edge_pack import decoder_check
from edge_pack.generation import Prompter, torch_answers
from transformers import AutoTokenizer
d = smollm2.smollm2()
tok = AutoTokenizer.from_pretrained(d)
pr = Prompter(tok, max_new_tokens=24, support_dir=d)
asks = [pr.ask(chat_row(i, p)) for i, p in enumerate(PROMPTS)]
base = decoder_check.load_torch(d)
greedy = [a.tokens for a in torch_answers(base, asks)]
seqs = [a.prompt + g for a, g in zip(asks, greedy)]
ref = [decoder_check.torch_logits(base, s) for s in seqs]
def q(w, bits=8, block=None):
    m = 2 ** (bits - 1) - 1
    if block:
        r = w.reshape(w.shape[0], -1, block)
        s = r.abs().amax(-1, keepdim=True) / m
        return (torch.round(r / s).clamp(-m, m) * s).reshape(w.shape)
    s = w.abs().amax(1, keepdim=True) / m
    return torch.round(w / s).clamp(-m, m) * s
def variant(emb, blocks, block=None, bits=8):
    mdl = copy.deepcopy(base)
    with torch.no_grad():
        for n, mod in mdl.named_modules():
            if isinstance(mod, torch.nn.Linear) and n != "lm_head" and blocks:
                mod.weight.copy_(q(mod.weight, bits, block))
        if emb:
            e = mdl.model.embed_tokens.weight
            e.copy_(q(e, bits, block))
    return mdl
def pref(r, f):
    return next((i for i, (a, b) in enumerate(zip(r, f)) if a != b), min(len(r), len(f)))
for name, kw in [("ch8-all", dict(emb=True, blocks=True)), ("ch8-blocks-only", dict(emb=False, blocks=True)),
                 ("ch8-emb-only", dict(emb=True, blocks=False)), ("blk32-8-all", dict(emb=True, blocks=True, block=32)),
                 ("blk32-8-blocks-only", dict(emb=False, blocks=True, block=32))]:
    m = variant(**kw)
    found = [a.tokens for a in torch_answers(m, asks)]
    top1 = np.mean([decoder_check.agreement(r, decoder_check.torch_logits(m, s)).same_top1 for r, s in zip(ref, seqs)])
    p = [pref(r, f) for r, f in zip(greedy, found)]
    same = decoder_check.same_sequence_rate(greedy, found, 16)
    print(f"{name:<22} same top-1 {top1:.3f}  same 16 {same:.2f}  tokens agreeing per prompt {p}", flush=True)
