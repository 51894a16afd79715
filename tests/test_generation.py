"""Generation for task accuracy on the real runtime: the tiny Llama's F32 GGUF answers through llama.cpp
(harness/pi/run.py, by the protocol of edge_pack/generation.py) exactly as the fp32 source does greedily in
torch, and scores choices with the same log-likelihoods; the host-side prompt and stop handling."""
from __future__ import annotations

import json
import math

import pytest

import edge_pack
from edge_pack.generation import Answer, Ask, Prompter, encode_pair, torch_answers
from edge_pack.runners import RunOptions
from edge_pack.tasks import TaskRow

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (make install builds it)")

PROMPTS = ["def __init__(self", "import os\nimport ", "for i in range(", "class Error(Exception):\n    ",
           "    return self."]
# lm-eval's choices: the words alone; its target delimiter (a space) goes between prompt and choice
CHOICES = [("import os\nimport", ("sys", "re", "json", "xyzzy")), ("def f(x):\n    return", ("x", "None", "("))]


@pytest.fixture(scope="module")
def f32_gguf(tmp_path_factory, tiny_llama):
    out = tmp_path_factory.mktemp("gen") / "bundle"
    manifest = edge_pack.build(str(tiny_llama), ["pi"], ["f32"], out)
    (artifact,) = manifest["artifacts"]
    return out / artifact["files"][0]["path"]


@pytest.fixture(scope="module")
def prompter(tiny_llama):
    from transformers import AutoTokenizer

    return Prompter(AutoTokenizer.from_pretrained(str(tiny_llama)), max_new_tokens=12, support_dir=tiny_llama)


@pytest.fixture(scope="module")
def source_model(tiny_llama):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(tiny_llama), attn_implementation="eager").eval()


def _rows():
    rows = [TaskRow(id=f"g{i}", line=i + 1, prompt=p, answer="x", scorer="exact") for i, p in enumerate(PROMPTS)]
    rows += [TaskRow(id=f"c{i}", line=10 + i, prompt=p, answer=c[0], scorer="choice", choices=c)
             for i, (p, c) in enumerate(CHOICES)]
    return rows


def _llama_cpp(gguf, asks: list[Ask]) -> list[Answer]:
    from edge_pack.runners import llamacpp

    result = llamacpp.run([gguf], [], None, RunOptions(runs=0, warmup=0, timeout_s=300), asks=asks)
    return [Answer.from_json(a) for a in result.answers]  # RunResult keeps the protocol's JSON


def test_llama_cpp_f32_answers_as_torch_fp32_does(f32_gguf, prompter, source_model):
    asks = [prompter.ask(row) for row in _rows()]
    ours, theirs = torch_answers(source_model, asks), _llama_cpp(f32_gguf, asks)
    assert [a.id for a in theirs] == [a.id for a in asks]
    generated = 0
    for ask, torch_answer, runtime_answer in zip(asks, ours, theirs):
        assert runtime_answer.tokens == torch_answer.tokens, ask.id  # greedy: the same tokens
        assert runtime_answer.logprobs == pytest.approx(torch_answer.logprobs, abs=2e-3), ask.id
        generated += len(torch_answer.tokens)
        if ask.continuations is None:
            assert runtime_answer.continuation_logliks is None and 0 < len(torch_answer.tokens) <= 12
            assert runtime_answer.first_token_ms > 0 and torch_answer.first_token_ms > 0
            assert all(lp <= 0 for lp in torch_answer.logprobs)
        else:
            assert runtime_answer.continuation_logliks == pytest.approx(torch_answer.continuation_logliks, abs=5e-3)
            assert all(ll < 0 for ll in torch_answer.continuation_logliks) and not torch_answer.tokens
            assert runtime_answer.first_token_ms is None
    assert generated >= 30
    # the model learned Python: after "import os\nimport " a module name beats a nonsense word
    choice = next(a for a in ours if a.id == "c0")
    assert max(choice.continuation_logliks[:3]) > choice.continuation_logliks[3]


def test_choices_are_split_where_the_prompt_ends(prompter):
    row = _rows()[len(PROMPTS)]
    ask = prompter.ask(row)
    context_ids, _ = encode_pair(prompter.encode, row.prompt, " sys")
    assert ask.prompt == context_ids and ask.max_new_tokens == 0
    for continuation, choice in zip(ask.continuations, row.choices):
        assert ask.prompt + continuation == prompter.encode(row.prompt + " " + choice)
    assert json.loads(json.dumps(ask.to_json()))["continuations"] == ask.continuations


def test_the_chat_template_and_the_stops(tiny_llama):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama))
    plain = Prompter(tokenizer, support_dir=tiny_llama)
    assert not plain.chat and plain.stop_ids == [tokenizer.eos_token_id]
    assert plain.encode("x = 1")[0] == tokenizer.bos_token_id  # the model's own BOS, from its tokenizer
    tokenizer.chat_template = ("{{ bos_token }}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}"
                               "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}")
    chat = Prompter(tokenizer)
    assert chat.chat and chat.context("hi") == "<s><user>hi<assistant>"
    assert chat.encode(chat.context("hi")).count(tokenizer.bos_token_id) == 1  # BOS once, from the template
    assert not Prompter(tokenizer, chat_template=False).chat
    # stop strings cut the text; the confidence counts the tokens that made it
    ids = tokenizer("yes\n\nno more", add_special_tokens=False)["input_ids"]
    output = plain.output(Answer("1", ids, [math.log(0.5)] * len(ids)))
    assert output.text == "yes" and 1 <= len(output.logprobs) < len(ids)
    assert output.confidence == pytest.approx(0.5)


@pytest.mark.bad_input
def test_a_chat_template_asked_for_a_model_without_one_is_refused(tiny_llama):
    from transformers import AutoTokenizer

    from edge_pack.errors import UserError

    with pytest.raises(UserError, match="no chat template"):
        Prompter(AutoTokenizer.from_pretrained(str(tiny_llama)), chat_template=True)
