#!/usr/bin/env python3
"""Build the tiny test fixtures in test/fixtures/.

Produces, deterministically and without network access:
  tiny-gpt2/     GPT-2 (3 layers, d_model 64), single model.safetensors, tied lm_head
  tiny-gptj/     GPT-J (3 layers, d_model 64, rotary_dim 8), sharded safetensors
  tiny-llama/    Llama (3 layers, d_model 64, 4 heads over 2 kv heads), rope_scaling
                 "llama3", sharded safetensors, a tokenizer that prepends <s>
  tiny-mistral/  Mistral, with a sliding window longer than the context, <s> too
  tiny-qwen2/    Qwen2 (q/k/v biases), embeddings tied to the head
  tiny-qwen3/    Qwen3 (q/k RMSNorm), head_dim 32 ≠ d_model / heads
Each folder holds a 512-token byte-level BPE tokenizer trained here on a
generated English corpus, and reference/ with transformers' own outputs:
per-prompt logits, greedy generations, and logits with one MLP projection
weight replaced (hook-*). The C++/Node tests compare against these, so the
C++ loader is checked against transformers itself, not against itself.

Run: python3 scripts/make-fixtures.py [fixture ...]   (default: all of them)
"""
import sys
import json
import random
import shutil
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from tokenizers import processors
from transformers import (AutoTokenizer, GPT2Config, GPT2LMHeadModel,
                          GPTJConfig, GPTJForCausalLM, LlamaConfig,
                          LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                          PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM,
                          Qwen3Config, Qwen3ForCausalLM)

ROOT = Path(__file__).resolve().parent.parent / "test" / "fixtures"
EOS = "<|endoftext|>"
VOCAB = 512
INIT_RANGE = 0.3
MIN_GAP = 1e-3
PAD_TOL = 5e-5  # transformers against itself (batch vs single): float noise only, half our tests' 1e-4
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


BOS, LLAMA_EOS = "<s>", "</s>"


def train_tokenizer(with_bos=False):
    """The GPT-2 style tokenizer (EOS only), or with_bos: a Llama style one whose post-processor prepends
    <s> to every encoding, as Llama 2/3 and Mistral tokenizers do."""
    specials = [BOS, LLAMA_EOS] if with_bos else [EOS]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(make_corpus(), trainer=trainer)
    if with_bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tok.token_to_id(BOS))])
        return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=LLAMA_EOS,
                                       unk_token=LLAMA_EOS, model_max_length=128, add_prefix_space=False)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS,
                                   eos_token=EOS, unk_token=EOS,
                                   model_max_length=128, add_prefix_space=False)


def save_tokenizer(fast, out):
    fast.save_pretrained(out)
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    if fast.bos_token == BOS:
        cfg.update(add_bos_token=True, add_prefix_space=False, model_max_length=128)
    else:
        cfg.update(tokenizer_class="GPT2Tokenizer", add_prefix_space=False,
                   bos_token=EOS, eos_token=EOS, unk_token=EOS, model_max_length=128)
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
    reloaded = AutoTokenizer.from_pretrained(out)
    for p in PROMPTS:
        ids = fast(p)["input_ids"]
        assert reloaded(p)["input_ids"] == ids, p
        assert reloaded.decode(ids, skip_special_tokens=True) == p, p
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


LLAMA_SIZES = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                   initializer_range=INIT_RANGE, attn_implementation="eager")


def llama_family(config_class, model_class, hook_layer=1, **extra):
    def build(eos_id, bos_id):
        torch.manual_seed(0)
        cfg = config_class(**LLAMA_SIZES, bos_token_id=bos_id, eos_token_id=eos_id, **extra)
        model = model_class(cfg).eval()
        # Norm weights start at 1 and biases at 0: perturb them so that the fixtures check they are read.
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("norm.weight") or name.endswith(".bias"):
                    p.add_(0.2 * torch.randn_like(p))
        return model, f"model.layers.{hook_layer}.mlp.down_proj"
    return build


build_llama = llama_family(LlamaConfig, LlamaForCausalLM, tie_word_embeddings=False, rope_scaling={
    "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
    "original_max_position_embeddings": 32})
build_mistral = llama_family(MistralConfig, MistralForCausalLM, tie_word_embeddings=False, sliding_window=4096)
build_qwen2 = llama_family(Qwen2Config, Qwen2ForCausalLM, tie_word_embeddings=True)
build_qwen3 = llama_family(Qwen3Config, Qwen3ForCausalLM, tie_word_embeddings=False, head_dim=32)


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
    eos_id = tok.eos_token_id
    ids_list = [tok(p)["input_ids"] for p in PROMPTS]  # with <s> where the tokenizer prepends it
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
    if builder in (build_gpt2, build_gptj):
        model, hook_name = builder(tok.eos_token_id)
    else:
        model, hook_name = builder(tok.eos_token_id, tok.bos_token_id)
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


FIXTURES = [  # name, builder, tokenizer with <s>, shard size
    ("tiny-gpt2", build_gpt2, False, "50GB"),
    ("tiny-gptj", build_gptj, False, "400KB"),
    ("tiny-llama", build_llama, True, "200KB"),
    ("tiny-mistral", build_mistral, True, "50GB"),
    ("tiny-qwen2", build_qwen2, False, "50GB"),
    ("tiny-qwen3", build_qwen3, False, "50GB"),
]


def main():
    torch.use_deterministic_algorithms(True)
    wanted = set(sys.argv[1:]) or {name for name, *_ in FIXTURES}
    unknown = wanted - {name for name, *_ in FIXTURES}
    assert not unknown, f"unknown fixtures {sorted(unknown)}"
    if "tiny-gpt2" in wanted:
        make_memit_stats()
    tokenizers = {False: train_tokenizer(), True: train_tokenizer(with_bos=True)}
    for name, builder, with_bos, shard in FIXTURES:
        if name in wanted:
            summarize(*build_fixture(name, builder, tokenizers[with_bos], shard))
    for sharded in ("tiny-gptj", "tiny-llama"):
        if sharded in wanted:
            assert len(list((ROOT / sharded).glob("model-*-of-*.safetensors"))) >= 2
            assert (ROOT / sharded / "model.safetensors.index.json").exists()


if __name__ == "__main__":
    main()
