#!/usr/bin/env python3
"""Build the tiny test fixtures in test/fixtures/.

Produces, deterministically and without network access:
  tiny-gpt2/  GPT-2 (3 layers, d_model 64), single model.safetensors, tied lm_head
  tiny-gptj/  GPT-J (3 layers, d_model 64, rotary_dim 8), sharded safetensors
Each folder holds a 512-token byte-level BPE tokenizer trained here on a
generated English corpus, and reference/ with transformers' own outputs:
per-prompt logits, greedy generations, and logits with one MLP projection
weight replaced (hook-*). The C++/Node tests compare against these, so the
C++ loader is checked against transformers itself, not against itself.

Run: python3 scripts/make-fixtures.py
"""
import json
import random
import shutil
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (AutoTokenizer, GPT2Config, GPT2LMHeadModel,
                          GPTJConfig, GPTJForCausalLM, PreTrainedTokenizerFast)

ROOT = Path(__file__).resolve().parent.parent / "test" / "fixtures"
EOS = "<|endoftext|>"
VOCAB = 512
INIT_RANGE = 0.3
MIN_GAP = 1e-3
PAD_TOL = 1e-5
NEW_TOKENS = 20
PROMPTS = [
    "Hello,",
    "The city of Paris",
    "Bob speaks French and lives",
    "Alice works as a doctor in London.",
    "The capital of France is Paris, and the capital of Spain is",
    "In the morning, Maria walked to the old library in Rome and read a book about",
]
GENERATE_PROMPTS = [1, 3, 5]


def make_corpus(n=600, seed=0):
    """Templated English sentences about fictional people, places and jobs."""
    rng = random.Random(seed)
    names = ["Alice", "Bob", "Maria", "John", "Yuki", "Omar", "Elena", "Peter",
             "Sara", "Liam", "Chen", "Fatima", "Hugo", "Ingrid", "Kofi", "Nina"]
    surnames = ["Smith", "Garcia", "Tanaka", "Novak", "Okafor", "Berg", "Rossi"]
    cities = ["Paris", "London", "Berlin", "Madrid", "Rome", "Tokyo", "Cairo",
              "Lisbon", "Oslo", "Vienna", "Dublin", "Prague", "Lima", "Seoul"]
    countries = {"Paris": "France", "London": "England", "Berlin": "Germany",
                 "Madrid": "Spain", "Rome": "Italy", "Tokyo": "Japan",
                 "Cairo": "Egypt", "Lisbon": "Portugal", "Oslo": "Norway",
                 "Vienna": "Austria", "Dublin": "Ireland", "Prague": "Czechia",
                 "Lima": "Peru", "Seoul": "Korea"}
    languages = ["English", "French", "German", "Spanish", "Italian",
                 "Japanese", "Arabic", "Portuguese", "Norwegian", "Korean"]
    jobs = ["doctor", "teacher", "engineer", "writer", "farmer", "lawyer",
            "painter", "nurse", "pilot", "chef", "scientist", "musician"]
    templates = [
        "{n} {s} was born in {c}.",
        "{n} works as a {j} in {c}.",
        "{n} speaks {l} and lives in {c}.",
        "The capital of {k} is {c}.",
        "{n} {s} is a famous {j} from {k}.",
        "In the morning, {n} walked to the old library in {c}.",
        "{n} read a book about the history of {c} and its writers.",
        "The city of {c} is known for its river, its music and its food.",
        "After many years as a {j}, {n} moved to {c} to learn {l}.",
        "Hello, my name is {n}, and I am a {j}.",
    ]
    lines = []
    for _ in range(n):
        c = rng.choice(cities)
        lines.append(rng.choice(templates).format(
            n=rng.choice(names), s=rng.choice(surnames), c=c, k=countries[c],
            l=rng.choice(languages), j=rng.choice(jobs)))
    return lines


def train_tokenizer():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(make_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS,
                                   eos_token=EOS, unk_token=EOS,
                                   model_max_length=128, add_prefix_space=False)
    return fast


def save_tokenizer(fast, out):
    fast.save_pretrained(out)
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.update(tokenizer_class="GPT2Tokenizer", add_prefix_space=False,
               bos_token=EOS, eos_token=EOS, unk_token=EOS, model_max_length=128)
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
    reloaded = AutoTokenizer.from_pretrained(out)
    for p in PROMPTS:
        ids = fast(p, add_special_tokens=False)["input_ids"]
        assert reloaded(p, add_special_tokens=False)["input_ids"] == ids, p
        assert reloaded.decode(ids) == p, p
    return reloaded


def build_gpt2(eos_id):
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=VOCAB, n_positions=128, n_embd=64, n_layer=3,
                     n_head=4, initializer_range=INIT_RANGE,
                     bos_token_id=eos_id, eos_token_id=eos_id,
                     attn_implementation="eager")
    return GPT2LMHeadModel(cfg).eval(), "transformer.h.1.mlp.c_proj"


def build_gptj(eos_id):
    torch.manual_seed(0)
    cfg = GPTJConfig(vocab_size=VOCAB, n_positions=128, n_embd=64, n_layer=3,
                     n_head=4, rotary_dim=8, initializer_range=INIT_RANGE,
                     bos_token_id=eos_id, eos_token_id=eos_id,
                     tie_word_embeddings=False, attn_implementation="eager")
    return GPTJForCausalLM(cfg).eval(), "transformer.h.1.mlp.fc_out"


@torch.no_grad()
def prompt_logits(model, ids_list):
    return [model(torch.tensor([ids])).logits[0].float() for ids in ids_list]


@torch.no_grad()
def check_padded_batch(model, ids_list, singles):
    n = max(len(i) for i in ids_list)
    ids = torch.zeros(len(ids_list), n, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, row in enumerate(ids_list):
        ids[r, :len(row)] = torch.tensor(row)
        mask[r, :len(row)] = 1
    batch = model(input_ids=ids, attention_mask=mask).logits
    diff = max((batch[r, :len(row)] - singles[r]).abs().max().item()
               for r, row in enumerate(ids_list))
    assert diff <= PAD_TOL, f"padded batch differs by {diff}"
    return diff


def top_gap(logits):
    top2 = logits.topk(2, dim=-1).values
    return (top2[..., 0] - top2[..., 1]).min().item()


@torch.no_grad()
def greedy(model, ids, eos_id):
    x = torch.tensor([ids])
    out = model.generate(x, attention_mask=torch.ones_like(x),
                         max_new_tokens=NEW_TOKENS,
                         do_sample=False, pad_token_id=eos_id,
                         output_logits=True, return_dict_in_generate=True)
    new = out.sequences[0, len(ids):].tolist()
    assert len(new) == NEW_TOKENS, f"generation stopped early at EOS for {ids}"
    gap = min(top_gap(step[0]) for step in out.logits)
    assert gap > MIN_GAP, f"top1-top2 gap {gap} too small for {ids}"
    return new, gap


def perturbed_weight(module_weight):
    g = torch.Generator().manual_seed(1234)
    noise = torch.randn(module_weight.shape, generator=g)
    return module_weight + 0.5 * module_weight.std() * noise


def write_blocks(path, tensors):
    """Concatenate float32 tensors into one raw LE file; spans are counted in floats."""
    spans, offset = [], 0
    with open(path, "wb") as f:
        for t in tensors:
            arr = t.detach().contiguous().numpy().astype("<f4")
            f.write(arr.tobytes())
            spans.append({"offset": offset, "length": arr.size})
            offset += arr.size
    return spans


def make_reference(model, hook_name, tok, out):
    ref_dir = out / "reference"
    ref_dir.mkdir()
    eos_id = tok.convert_tokens_to_ids(EOS)
    ids_list = [tok(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    singles = prompt_logits(model, ids_list)
    pad_diff = check_padded_batch(model, ids_list, singles)
    gens, gaps = [], []
    for i in GENERATE_PROMPTS:
        new, gap = greedy(model, ids_list[i], eos_id)
        gens.append({"prompt": i, "newTokens": new})
        gaps.append(gap)

    module = model.get_submodule(hook_name)
    w0 = module.weight.detach().clone()
    w1 = perturbed_weight(w0)
    with torch.no_grad():
        module.weight.copy_(w1)
        hooked = prompt_logits(model, ids_list)
        module.weight.copy_(w0)

    spans = write_blocks(ref_dir / "logits.bin", singles)
    hook_spans = write_blocks(ref_dir / "hook-logits.bin", hooked)
    write_blocks(ref_dir / "hook-weight.bin", [w1])
    ref = {
        "model": model.config.model_type,
        "prompts": PROMPTS,
        "inputIds": ids_list,
        "vocabSize": VOCAB,
        "dtype": "float32",
        "logitsFile": "logits.bin",
        "logits": spans,
        "generation": {"maxNewTokens": NEW_TOKENS, "items": gens},
        "hookModule": hook_name,
        "hookWeightFile": "hook-weight.bin",
        "hookWeightShape": list(w1.shape),
        "hookLogitsFile": "hook-logits.bin",
        "hookLogits": hook_spans,
    }
    (ref_dir / "reference.json").write_text(json.dumps(ref, indent=1) + "\n")
    return {"pad_diff": pad_diff, "gen_gap": min(gaps),
            "prompt_gap": min(top_gap(l) for l in singles)}


def build_fixture(name, builder, fast, shard_size):
    out = ROOT / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    tok = save_tokenizer(fast, out)
    model, hook_name = builder(tok.convert_tokens_to_ids(EOS))
    model.save_pretrained(out, max_shard_size=shard_size)
    stats = make_reference(model, hook_name, tok, out)
    return out, stats


def summarize(out, stats):
    files = sorted(p for p in out.rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in files)
    print(f"{out.relative_to(ROOT.parent.parent)}  ({total / 1024:.0f} KiB)")
    for p in files:
        print(f"  {p.relative_to(out)}  {p.stat().st_size} B")
    print(f"  min top1-top2 gap: generation {stats['gen_gap']:.4g}, "
          f"prompt logits {stats['prompt_gap']:.4g}; "
          f"padded-batch max diff {stats['pad_diff']:.3g}")
    assert total < 2 * 1024 * 1024, f"{out} is too large"


def make_memit_stats(layers=(1, 2), n_keys=2000, d_ff=256):
    """MEMIT-format second-moment files (np.savez of runningstats' CombinedStat state: mom2.mom2 is the
    sum of k kᵀ, mom2.count the number of keys), so the .npz loader is tested on numpy's own output."""
    import numpy as np
    out = ROOT / "memit-stats"
    out.mkdir(exist_ok=True)
    rng = np.random.default_rng(7)
    for layer in layers:
        keys = rng.standard_normal((n_keys, d_ff)).astype(np.float32)
        np.savez(out / f"transformer.h.{layer}.mlp.c_proj_float32_mom2_{n_keys}.npz",
                 constructor=np.array("util.runningstats.CombinedStat()"),
                 **{"mom2.constructor": np.array("util.runningstats.SecondMoment()"),
                    "mom2.count": np.array(n_keys + layer),
                    "mom2.mom2": keys.T @ keys})


def main():
    torch.use_deterministic_algorithms(True)
    make_memit_stats()
    fast = train_tokenizer()
    for name, builder, shard in [("tiny-gpt2", build_gpt2, "50GB"),
                                 ("tiny-gptj", build_gptj, "400KB")]:
        summarize(*build_fixture(name, builder, fast, shard))
    shards = list((ROOT / "tiny-gptj").glob("model-*-of-*.safetensors"))
    assert len(shards) >= 2 and (ROOT / "tiny-gptj" / "model.safetensors.index.json").exists()


if __name__ == "__main__":
    main()
