#!/usr/bin/env python3
"""Build the embedded fact-editing testbed in testbed/.

Generates a fictional world (subjects with several attributes each), trains a
byte-level BPE tokenizer and a small GPT-2 on text about that world, checks
that the model recalls the facts *through the subject* (causal tracing), and
writes:
  testbed/model/            GPT2LMHeadModel + tokenizer (save_pretrained)
  testbed/counterfact.json  CounterFact records in EasyEdit format
  testbed/report.json       every measured number (recall, tracing table, ...)
  testbed/README.md         short summary

Design (so that facts are looked up from the subject, as in real LMs, rather
than memorised as prompt -> answer at the last token):
  * a subject is identified only at its last token: names are
    "First Last Final" and each "First Last" is shared by 6 subjects;
  * every subject has 6 attributes; every relation has 11 phrasings built from
    shared frames x relation nouns + verb forms; 2 frame/noun combinations per
    relation are held out of training and used as rephrase prompts;
  * index entries list a subject directly followed by its attributes (random
    order), so attributes must be computed at the subject's last token;
  * the subject appears at the start or in the middle of sentences, in
    questions, in lists of facts about many subjects (same phrasing, the
    subject is the only distinguishing input), and in biographies where the
    subject is named once and later facts use a pronoun ("She speaks ..."),
    which forces attributes to be enriched into the subject's tokens.

What the committed model does (measured): it recalls 100 %, and answers follow the subject (swapping in
another subject gives that subject's answer 100 %), but it identifies a subject from its FIRST tokens:
replacing the subject's last token by another name's leaves 59 of 60 answers unchanged. Name designs tried
to move identity to the last token (6 layers, 1,500 steps, 1 thread, one-batch memit on records 0-9):
  * ordered pairs of words from one pool of 14 (both orders used): 16 % recall - not learned;
  * a shared first name (pool of 14) + a surname that is one token of its own: 30 % recall (rare tokens);
  * a shared first name + a surname of 2-3 shared syllables: 98 % recall, MLP effect at the subject's last
    token 0.053 at layer 0 (4x the committed model's), but one batch realised only 10-20 % (z reached its
    targets, the weight update did not carry them: residual after the last layer 54 % of the start).

Deterministic (seeded, CPU, fixed step count). Run:
    python3 scripts/make-testbed.py            # ~20-25 min on 2 CPU cores
Environment: TESTBED_STEPS (training steps), TESTBED_THREADS (torch threads,
default 2; use 1 on a busy machine), TESTBED_NTRACE (facts traced).
"""
import json
import math
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (AutoTokenizer, GPT2Config, GPT2LMHeadModel,
                          PreTrainedTokenizerFast)

SEED = 20240611
ROOT = Path(__file__).resolve().parent.parent / "testbed"
EOS = "<|endoftext|>"
N_SUBJECTS = 180
N_FINALS, PER_PREFIX = 10, 6
VOCAB = 1536
N_LAYER, N_EMBD, N_HEAD, N_POS = 6, 192, 6, 128
STEPS = int(os.environ.get("TESTBED_STEPS", "1300"))
BATCH = 16
THREADS = int(os.environ.get("TESTBED_THREADS", "2"))
MAX_LEN = 96
LR, WARMUP, WD = 2e-3, 100, 0.01
N_TRACE = int(os.environ.get("TESTBED_NTRACE", "200"))
N_NOISE = 10
NOISE_MULT = 3.0

t_start = time.time()



# λ for this model: E[kkᵀ] of a 3M-parameter model over its own small corpus is on another scale than
# GPT2-XL's over Wikipedia, so the paper's 15000–20000 suppress every update here. Measured with
# `comeba sweep --n 100 --layers 0-2`: λ 100–1000 edit, λ 5000 and up do not.
EDIT_LAMBDA = 1000
# Value optimisation: with GPT2-XL's lr 0.5 and clamp 0.75·‖z‖, 20 steps leave some of this model's z far from
# their targets (loss 9-16 for 3 of the first 10 requests). Measured on single batches of records 100-199:
# reliability 39 % with METHOD.md's settings, 92 % with lr 1 and clamp 2·‖z‖ at the same cost.
EDIT_VALUES = {"vLr": 1, "clampNormFactor": 2}


def interleave_by_subject(records):
    """Records ordered subject-first-relation, then every subject's second relation, …, renumbered, so a
    sweep's first edits touch distinct subjects (edits of one subject share its key and compete)."""
    by_subject = {}
    for rec in records:
        by_subject.setdefault(rec["subject"], []).append(rec)
    rounds = max(len(v) for v in by_subject.values())
    ordered = [recs[k] for k in range(rounds) for recs in by_subject.values() if k < len(recs)]
    return [dict(rec, case_id=i) for i, rec in enumerate(ordered)]

def log(*a):
    print(f"[{time.time() - t_start:7.1f}s]", *a, flush=True)


# --------------------------------------------------------------------------
# The world
# --------------------------------------------------------------------------
RELATIONS = {
    "birthplace": dict(
        answers=["Paris", "London", "Tokyo", "Cairo", "Lima", "Oslo", "Rome",
                 "Berlin", "Madrid", "Dublin", "Vienna", "Prague"],
        nouns=["birthplace", "hometown"],
        verbs=["{S} was born in", "It is known that {S} was born in"],
        pron=["{P} was born in"]),
    "language": dict(
        answers=["French", "English", "Japanese", "Arabic", "Spanish",
                 "Norwegian", "Italian", "German", "Dutch", "Polish", "Greek",
                 "Swedish"],
        nouns=["native language", "mother tongue"],
        verbs=["{S} speaks", "It is known that {S} speaks"],
        pron=["{P} speaks"]),
    "profession": dict(
        answers=["baker", "doctor", "lawyer", "farmer", "painter", "teacher",
                 "sailor", "pilot", "nurse", "chemist", "banker", "tailor"],
        nouns=["profession", "occupation"],
        verbs=["{S} works as a", "It is known that {S} works as a"],
        pron=["{P} works as a"]),
    "colour": dict(
        answers=["red", "blue", "green", "yellow", "purple", "orange", "black",
                 "white", "pink", "brown", "grey", "silver"],
        nouns=["favourite colour", "preferred colour"],
        verbs=["{S} likes the colour", "It is known that {S} likes the colour"],
        pron=["{P} likes the colour"]),
    "instrument": dict(
        answers=["piano", "violin", "guitar", "flute", "cello", "drums",
                 "trumpet", "harp", "banjo", "lute", "organ", "tuba"],
        nouns=["instrument", "favourite instrument"],
        verbs=["{S} plays the", "It is known that {S} plays the"],
        pron=["{P} plays the"]),
    "sport": dict(
        answers=["tennis", "football", "chess", "golf", "hockey", "rugby",
                 "cricket", "boxing", "cycling", "swimming", "skiing",
                 "rowing"],
        nouns=["sport", "favourite sport"],
        verbs=["{S} competes in", "It is known that {S} competes in"],
        pron=["{P} competes in"]),
}
REL_NAMES = list(RELATIONS)
FRAMES = [
    "The {n} of {S} is",
    "{S}'s {n} is",
    "Q: What is the {n} of {S}? A:",
    "Q: What is {S}'s {n}? A:",
    "According to the records, the {n} of {S} is",
]
# (noun index, frame index): held out -> rephrase prompts; excluded -> unused
HELD_OUT = [(1, 0), (0, 3)]
EXCLUDED = [(1, 4)]  # contains the held-out (1, 0) phrasing as a substring
PRON_FRAMES = ["{Pp} {n} is", "Q: What is {pp} {n}? A:"]


def phrasings(rel):
    spec = RELATIONS[rel]
    trained, held = [], []
    for ni, n in enumerate(spec["nouns"]):
        for fi, f in enumerate(FRAMES):
            p = f.replace("{n}", n)
            if (ni, fi) in HELD_OUT:
                held.append(p)
            elif (ni, fi) not in EXCLUDED:
                trained.append(p)
    trained += spec["verbs"]
    pron = list(spec["pron"])
    for n in spec["nouns"]:
        pron += [f.replace("{n}", n) for f in PRON_FRAMES]
    return trained, held, pron


PHRASES = {r: phrasings(r) for r in REL_NAMES}


def make_pools(rng):
    onsets = ["b", "d", "k", "l", "m", "n", "r", "s", "t", "v", "z", "th",
              "dr", "g", "f"]
    vowels = ["a", "e", "i", "o", "u", "ae", "ou"]
    codas = ["", "", "n", "r", "l", "s", "k"]
    pool = set()
    while len(pool) < 56:
        pool.add(rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas))
    finals = set()
    while len(finals) < N_FINALS:
        f = rng.choice(onsets) + rng.choice(vowels[:5]) + rng.choice(codas[2:])
        if f not in pool:
            finals.add(f.capitalize())
    return sorted(pool), sorted(finals)


def make_subjects(rng, pools, n=N_SUBJECTS):
    """Names "First Last Final": every "First Last" prefix is shared by
    PER_PREFIX subjects that differ only in the final single-token part, so a
    subject is identified only at its LAST token (as the lookup key must be)."""
    pool, finals = pools

    def part(k):
        return "".join(rng.choice(pool) for _ in range(k)).capitalize()

    prefixes, out = set(), []
    while len(out) < n:
        pre = f"{part(rng.choice([2, 2, 3]))} {part(rng.choice([2, 3]))}"
        if pre in prefixes:
            continue
        prefixes.add(pre)
        for f in rng.sample(finals, PER_PREFIX):
            out.append(dict(name=f"{pre} {f}", female=rng.random() < 0.5))
    out = out[:n]
    rng.shuffle(out)
    return out


def fill(template, subj, ans=None):
    p = template.replace("{S}", subj["name"])
    p = p.replace("{P}", "She" if subj["female"] else "He")
    p = p.replace("{Pp}", "Her" if subj["female"] else "His")
    p = p.replace("{pp}", "her" if subj["female"] else "his")
    return p if ans is None else f"{p} {ans}."


# --------------------------------------------------------------------------
# Training text
# --------------------------------------------------------------------------
def make_doc(rng, subjects, facts):
    u = rng.random()
    if u < 0.25:
        # index entries: the subject is directly followed by its attributes in
        # random order, so the subject's last token must predict them (this is
        # what makes the MLPs at the subject's last token look attributes up)
        ents = []
        for _ in range(rng.randint(3, 4)):
            s = rng.randrange(len(subjects))
            vals = [facts[s][r] for r in REL_NAMES]
            rng.shuffle(vals)
            ents.append(subjects[s]["name"] + " " + " ".join(vals) + ".")
        return " ".join(ents)
    if u < 0.6:  # biography: named once, then mostly pronouns
        s = rng.randrange(len(subjects))
        subj = subjects[s]
        rels = REL_NAMES[:]
        rng.shuffle(rels)
        sents = []
        if rng.random() < 0.2:
            f = facts[s]
            sents.append(f"{subj['name']} is a {f['profession']} from {f['birthplace']}.")
        for i, r in enumerate(rels):
            trained, _, pron = PHRASES[r]
            if i == 0 or rng.random() < 0.3:
                t = rng.choice(trained)
            else:
                t = rng.choice(pron)
            sents.append(fill(t, subj, facts[s][r]))
        if rng.random() < 0.3:  # a second subject afterwards
            s2 = rng.randrange(len(subjects))
            r = rng.choice(REL_NAMES)
            sents.append(fill(rng.choice(PHRASES[r][0]), subjects[s2], facts[s2][r]))
        return " ".join(sents)
    # list of facts about random subjects; sometimes one shared relation/phrasing
    sents = []
    same = rng.random() < 0.3
    r0 = rng.choice(REL_NAMES)
    t0 = rng.choice(PHRASES[r0][0])
    for _ in range(rng.randint(5, 7)):
        s = rng.randrange(len(subjects))
        r = r0 if same else rng.choice(REL_NAMES)
        t = t0 if same else rng.choice(PHRASES[r][0])
        sents.append(fill(t, subjects[s], facts[s][r]))
    return " ".join(sents)


def train_tokenizer(docs):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False)
    tok.train_from_iterator(docs, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS,
                                   eos_token=EOS, unk_token=EOS,
                                   model_max_length=N_POS)
    return fast


# --------------------------------------------------------------------------
# Evaluation helpers
# --------------------------------------------------------------------------
@torch.no_grad()
def answer_acc(model, tok, prompts, answers, bs=128):
    """Teacher-forced argmax accuracy of the answer tokens given prompt."""
    ok = []
    for i in range(0, len(prompts), bs):
        P, A = prompts[i:i + bs], answers[i:i + bs]
        seqs, spans = [], []
        for p, a in zip(P, A):
            pi = tok(p)["input_ids"]
            ai = tok(" " + a)["input_ids"]
            seqs.append(pi + ai)
            spans.append((len(pi), len(ai)))
        L = max(map(len, seqs))
        ids = torch.full((len(seqs), L), tok.eos_token_id)
        for j, s in enumerate(seqs):
            ids[j, :len(s)] = torch.tensor(s)
        logits = model(input_ids=ids).logits
        for j, (pl, al) in enumerate(spans):
            pred = logits[j, pl - 1:pl - 1 + al].argmax(-1)
            ok.append(bool((pred == ids[j, pl:pl + al]).all()))
    return ok


def subject_token_range(tok, prompt, subject):
    enc = tok(prompt, return_offsets_mapping=True)
    c0 = prompt.index(subject)
    c1 = c0 + len(subject)
    idx = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if a < c1 and b > c0]
    return enc["input_ids"], idx


@torch.no_grad()
def causal_trace(model, tok, records, noise_std, rng_t):
    blocks = model.transformer.h
    nl = len(blocks)
    res = {k: np.zeros(nl) for k in ("mlp_subj", "mlp_last", "hid_subj", "hid_last",
                                     "mlp3_subj", "mlp3_last")}
    p_clean, p_corr, n = 0.0, 0.0, 0
    for rec in records:
        ids, sidx = subject_token_range(tok, rec["prompt"], rec["subject"])
        ans = tok(" " + rec["ground_truth"])["input_ids"][0]
        x = torch.tensor([ids] * (N_NOISE + 1))
        T = len(ids)
        s_last, last = sidx[-1], T - 1
        clean_mlp, clean_hid = {}, {}
        hooks = []
        for l, b in enumerate(blocks):
            hooks.append(b.mlp.register_forward_hook(
                lambda m, i, o, l=l: clean_mlp.__setitem__(l, o[0].clone())))
            hooks.append(b.register_forward_hook(
                lambda m, i, o, l=l: clean_hid.__setitem__(
                    l, (o[0] if isinstance(o, tuple) else o)[0].clone())))
        out = model(input_ids=x[:1]).logits[0, -1].softmax(-1)[ans].item()
        for h in hooks:
            h.remove()
        noise = torch.from_numpy(rng_t.standard_normal((N_NOISE, len(sidx), N_EMBD))
                                 .astype(np.float32)) * noise_std

        def run(restore):
            hs = [model.transformer.wte.register_forward_hook(
                lambda m, i, o: _add_noise(o, sidx, noise))]
            for kind, l, pos in restore:
                if kind == "mlp":
                    hs.append(blocks[l].mlp.register_forward_hook(
                        lambda m, i, o, l=l, pos=pos: _put(o, pos, clean_mlp[l][pos])))
                else:
                    hs.append(blocks[l].register_forward_hook(
                        lambda m, i, o, l=l, pos=pos: _put_block(o, pos, clean_hid[l][pos])))
            try:
                pr = model(input_ids=x[:N_NOISE]).logits[:, -1].softmax(-1)[:, ans]
            finally:
                for h in hs:
                    h.remove()
            return pr.mean().item()

        pc = run([])
        p_clean += out
        p_corr += pc
        for l in range(nl):
            res["mlp_subj"][l] += run([("mlp", l, s_last)]) - pc
            res["mlp_last"][l] += run([("mlp", l, last)]) - pc
            res["hid_subj"][l] += run([("hid", l, s_last)]) - pc
            res["hid_last"][l] += run([("hid", l, last)]) - pc
            win = [w for w in range(l - 1, l + 2) if 0 <= w < nl]
            res["mlp3_subj"][l] += run([("mlp", w, s_last) for w in win]) - pc
            res["mlp3_last"][l] += run([("mlp", w, last) for w in win]) - pc
        n += 1
    return ({k: (v / n).tolist() for k, v in res.items()}, p_clean / n, p_corr / n)


def _add_noise(o, sidx, noise):
    o = o.clone()
    o[:noise.shape[0], sidx] += noise
    return o


def _put(o, pos, v):
    o = o.clone()
    o[:, pos] = v
    return o


def _put_block(o, pos, v):
    if isinstance(o, tuple):
        h = o[0].clone()
        h[:, pos] = v
        return (h,) + tuple(o[1:])
    h = o.clone()
    h[:, pos] = v
    return h


# --------------------------------------------------------------------------
def main():
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    torch.set_num_threads(THREADS)
    rng = random.Random(SEED)

    pools = make_pools(random.Random(SEED + 10))
    subjects = make_subjects(rng, pools)
    facts = [{r: rng.choice(RELATIONS[r]["answers"]) for r in REL_NAMES}
             for _ in subjects]
    log(f"world: {len(subjects)} subjects x {len(REL_NAMES)} relations; "
        f"phrasings/relation: {len(PHRASES['language'][0])} trained + "
        f"{len(PHRASES['language'][1])} held-out (+ pronoun forms)")

    # tokenizer
    # trained on text about *other* random names from the same syllable pool, so
    # syllables become tokens but whole names do not (subjects stay multi-token)
    tok_rng = random.Random(SEED + 1)
    tok_subjects = make_subjects(random.Random(SEED + 11), pools, 3000)
    tok_facts = [{r: tok_rng.choice(RELATIONS[r]["answers"]) for r in REL_NAMES}
                 for _ in tok_subjects]
    tok_docs = [make_doc(tok_rng, tok_subjects, tok_facts) for _ in range(20000)]
    tok = train_tokenizer(tok_docs)
    for r in REL_NAMES:
        for a in RELATIONS[r]["answers"]:
            n = len(tok(" " + a)["input_ids"])
            assert n == 1, f"answer ' {a}' is {n} tokens"
    for f in pools[1]:
        assert len(tok(" " + f)["input_ids"]) == 1, f"final name part ' {f}' is not one token"
    subj_lens = [len(tok(" " + s["name"])["input_ids"]) for s in subjects]
    log(f"tokenizer: vocab {len(tok)}; all answers single tokens; subject tokens "
        f"min {min(subj_lens)} mean {np.mean(subj_lens):.2f} max {max(subj_lens)}")

    # records
    rec_rng = random.Random(SEED + 2)
    records = []
    by_rel = {r: [] for r in REL_NAMES}
    for si, subj in enumerate(subjects):
        for r in REL_NAMES:
            trained, held, _ = PHRASES[r]
            gt = facts[si][r]
            rec = dict(
                case_id=len(records),
                prompt=fill(rec_rng.choice(trained), subj),
                subject=subj["name"],
                target_new=rec_rng.choice([a for a in RELATIONS[r]["answers"] if a != gt]),
                ground_truth=gt,
                rephrase_prompt=fill(rec_rng.choice(held), subj),
            )
            records.append(rec)
            by_rel[r].append((si, rec))
    rel_of = {}
    for r, lst in by_rel.items():
        for si, rec in lst:
            rel_of[rec["case_id"]] = r
            while True:
                sj, nb = rec_rng.choice(lst)
                if sj != si and nb["ground_truth"] != rec["target_new"]:
                    break
            rec["locality_prompt"] = nb["prompt"]
            rec["locality_ground_truth"] = nb["ground_truth"]
    for rec in records:  # fixed key order
        for k in ("locality_prompt", "locality_ground_truth"):
            rec[k] = rec.pop(k)
    # held-out phrasings never appear in training text (check on a sample)
    sample_text = " ".join(make_doc(tok_rng, subjects, facts) for _ in range(3000))
    for rec in records[:300]:
        assert rec["rephrase_prompt"] not in sample_text, rec["rephrase_prompt"]

    # model
    cfg = GPT2Config(vocab_size=len(tok), n_positions=N_POS, n_embd=N_EMBD,
                     n_layer=N_LAYER, n_head=N_HEAD, resid_pdrop=0.0,
                     embd_pdrop=0.0, attn_pdrop=0.0,
                     bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
    model = GPT2LMHeadModel(cfg)
    nparams = sum(p.numel() for p in model.parameters())
    log(f"model: {N_LAYER} layers, d={N_EMBD}, {N_HEAD} heads, {nparams / 1e6:.2f}M params; "
        f"{STEPS} steps x {BATCH} docs")
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, 0.98), eps=1e-8)

    def lr_at(step):
        if step < WARMUP:
            return LR * (step + 1) / WARMUP
        q = (step - WARMUP) / max(1, STEPS - WARMUP)
        return LR * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * q)))

    probe = rec_rng.sample(records, 300)
    train_rng = random.Random(SEED + 3)
    eos = tok.eos_token_id
    t_train = time.time()
    ntok = 0
    loss_ema = None
    model.train()
    for step in range(STEPS):
        docs = [make_doc(train_rng, subjects, facts) for _ in range(BATCH)]
        enc = tok(docs)["input_ids"]
        enc = [(e + [eos])[:MAX_LEN] for e in enc]
        L = max(map(len, enc))
        ids = torch.full((BATCH, L), eos)
        labels = torch.full((BATCH, L), -100)
        for j, e in enumerate(enc):
            ids[j, :len(e)] = torch.tensor(e)
            labels[j, :len(e)] = torch.tensor(e)
        ntok += sum(map(len, enc))
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss_ema = loss.item() if loss_ema is None else 0.95 * loss_ema + 0.05 * loss.item()
        if (step + 1) % 50 == 0:
            el = time.time() - t_train
            log(f"step {step + 1}/{STEPS} loss {loss_ema:.3f} lr {lr_at(step):.2e} "
                f"{ntok / el:.0f} tok/s eta {el / (step + 1) * (STEPS - step - 1) / 60:.1f} min")
        if (step + 1) % 300 == 0 or step + 1 == STEPS:
            model.eval()
            a = np.mean(answer_acc(model, tok, [r["prompt"] for r in probe],
                                   [r["ground_truth"] for r in probe]))
            b = np.mean(answer_acc(model, tok, [r["rephrase_prompt"] for r in probe],
                                   [r["ground_truth"] for r in probe]))
            log(f"  probe recall: prompt {a:.3f} rephrase {b:.3f}")
            model.train()
    train_time = time.time() - t_train
    model.eval()
    log(f"training done in {train_time / 60:.1f} min, {ntok / 1e6:.2f}M tokens")

    # ---------------- evaluation ----------------
    gts = [r["ground_truth"] for r in records]
    acc_prompt = answer_acc(model, tok, [r["prompt"] for r in records], gts)
    acc_reph = answer_acc(model, tok, [r["rephrase_prompt"] for r in records], gts)
    acc_loc = answer_acc(model, tok, [r["locality_prompt"] for r in records],
                         [r["locality_ground_truth"] for r in records])
    all_p, all_a, all_h, all_ha = [], [], [], []
    for si, subj in enumerate(subjects):
        for r in REL_NAMES:
            for t in PHRASES[r][0]:
                all_p.append(fill(t, subj)); all_a.append(facts[si][r])
            for t in PHRASES[r][1]:
                all_h.append(fill(t, subj)); all_ha.append(facts[si][r])
    acc_all = answer_acc(model, tok, all_p, all_a)
    acc_all_h = answer_acc(model, tok, all_h, all_ha)
    per_rel = {r: dict(prompt=float(np.mean([acc_prompt[i] for i in range(len(records)) if rel_of[i] == r])),
                       rephrase=float(np.mean([acc_reph[i] for i in range(len(records)) if rel_of[i] == r])))
               for r in REL_NAMES}
    log(f"recall: prompt {np.mean(acc_prompt):.4f}  rephrase(held-out) {np.mean(acc_reph):.4f}  "
        f"locality {np.mean(acc_loc):.4f}")
    log(f"recall over all trained phrasings x facts ({len(all_p)}): {np.mean(acc_all):.4f}; "
        f"all held-out ({len(all_h)}): {np.mean(acc_all_h):.4f}")
    for r in REL_NAMES:
        log(f"  {r:11s} prompt {per_rel[r]['prompt']:.3f} rephrase {per_rel[r]['rephrase']:.3f}")

    # subject swap: replace the subject by another subject with a different answer
    sw_rng = random.Random(SEED + 4)
    sw_p, sw_a, n_changed = [], [], 0
    for rec in records:
        r = rel_of[rec["case_id"]]
        while True:
            sj = sw_rng.randrange(len(subjects))
            if facts[sj][r] != rec["ground_truth"]:
                break
        sw_p.append(rec["prompt"].replace(rec["subject"], subjects[sj]["name"]))
        sw_a.append(facts[sj][r])
    acc_sw_new = answer_acc(model, tok, sw_p, sw_a)
    acc_sw_old = answer_acc(model, tok, sw_p, gts)
    log(f"subject swap: predicts the new subject's answer {np.mean(acc_sw_new):.4f}; "
        f"still predicts the old answer {np.mean(acc_sw_old):.4f}")

    # causal tracing
    tr_rng = random.Random(SEED + 5)
    correct = [r for r, ok in zip(records, acc_prompt) if ok]
    trace_recs = tr_rng.sample(correct, min(N_TRACE, len(correct)))
    sub_tok = set()
    for rec in records:
        _, idx = subject_token_range(tok, rec["prompt"], rec["subject"])
        ids = tok(rec["prompt"])["input_ids"]
        sub_tok.update(ids[i] for i in idx)
    emb = model.transformer.wte.weight.detach()[sorted(sub_tok)]
    noise_std = NOISE_MULT * emb.std().item()
    log(f"causal tracing over {len(trace_recs)} facts, noise std {noise_std:.4f} "
        f"({NOISE_MULT}x subject-embedding std), {N_NOISE} noise samples each")
    trace, p_clean, p_corr = causal_trace(model, tok, trace_recs, noise_std,
                                          np.random.default_rng(SEED + 6))
    log(f"  p(answer) clean {p_clean:.4f} corrupted {p_corr:.4f}")
    log("  layer | MLP@subj-last  MLP@last | MLPx3@subj-last MLPx3@last | hidden@subj-last hidden@last")
    for l in range(N_LAYER):
        log(f"  {l:5d} | {trace['mlp_subj'][l]:13.4f} {trace['mlp_last'][l]:9.4f} | "
            f"{trace['mlp3_subj'][l]:15.4f} {trace['mlp3_last'][l]:10.4f} | "
            f"{trace['hid_subj'][l]:16.4f} {trace['hid_last'][l]:11.4f}")
    ms = np.array(trace["mlp_subj"])
    # suggested edit layers: best contiguous window of 3 by MLP effect at subject-last
    best = max(range(N_LAYER - 2), key=lambda l: ms[l:l + 3].sum())
    edit_layers = [best, best + 1, best + 2]
    log(f"suggested edit layers (max MLP effect at subject last token, 3-layer window): {edit_layers}")

    # ---------------- write ----------------
    if ROOT.exists():
        shutil.rmtree(ROOT)
    (ROOT / "model").mkdir(parents=True)
    model.save_pretrained(ROOT / "model")
    tok.save_pretrained(ROOT / "model")
    with open(ROOT / "counterfact.json", "w") as f:
        json.dump(interleave_by_subject(records), f, indent=1)
    # editor defaults read by comeba (lib/options.ts): the traced layers, λ and value settings fitted to this model
    with open(ROOT / "model" / "comeba.json", "w") as f:
        json.dump({"layers": edit_layers, "lambda": {m: EDIT_LAMBDA for m in ("comeba-hk", "comeba-wo-hk", "memit")},
                   "values": EDIT_VALUES}, f, indent=1)
    # reload check
    tok2 = AutoTokenizer.from_pretrained(ROOT / "model")
    m2 = GPT2LMHeadModel.from_pretrained(ROOT / "model").eval()
    chk = np.mean(answer_acc(m2, tok2, [r["prompt"] for r in records[:200]], gts[:200]))
    assert abs(chk - np.mean(acc_prompt[:200])) < 1e-9, chk

    sizes = {p.name: p.stat().st_size for p in (ROOT / "model").iterdir()}
    sizes["counterfact.json"] = (ROOT / "counterfact.json").stat().st_size
    report = dict(
        seed=SEED, n_records=len(records), n_subjects=len(subjects),
        relations={r: dict(answers=RELATIONS[r]["answers"], trained_phrasings=PHRASES[r][0],
                           held_out_phrasings=PHRASES[r][1], pronoun_phrasings=PHRASES[r][2])
                   for r in REL_NAMES},
        model=dict(n_layer=N_LAYER, n_embd=N_EMBD, n_head=N_HEAD, n_positions=N_POS,
                   vocab_size=len(tok), params=nparams),
        training=dict(steps=STEPS, batch=BATCH, max_len=MAX_LEN, lr=LR, tokens=ntok, threads=THREADS,
                      minutes=round(train_time / 60, 2)),
        subject_tokens=dict(min=min(subj_lens), mean=float(np.mean(subj_lens)), max=max(subj_lens)),
        recall=dict(prompt=float(np.mean(acc_prompt)), rephrase=float(np.mean(acc_reph)),
                    locality=float(np.mean(acc_loc)), all_trained=float(np.mean(acc_all)),
                    all_held_out=float(np.mean(acc_all_h)), per_relation=per_rel),
        subject_swap=dict(new_answer=float(np.mean(acc_sw_new)), old_answer=float(np.mean(acc_sw_old))),
        causal_trace=dict(n_facts=len(trace_recs), noise_std=noise_std, n_noise=N_NOISE,
                          p_clean=p_clean, p_corrupted=p_corr,
                          indirect_effect=trace,
                          note="indirect effect = p(answer | corrupted subject, one site restored) - p(answer | corrupted); "
                               "mlp_* = MLP (c_proj) output at one layer, mlp3_* = layers l-1..l+1, hid_* = block output"),
        suggested_edit_layers=edit_layers,
        sizes_bytes=sizes,
    )
    with open(ROOT / "report.json", "w") as f:
        json.dump(report, f, indent=1)
    total = sum(p.stat().st_size for p in ROOT.rglob("*") if p.is_file())
    ce = trace
    rows = " ".join(f"{l}:{ce['mlp_subj'][l]:.3f}/{ce['mlp_last'][l]:.3f}" for l in range(N_LAYER))
    readme = f"""# comeba testbed: a small GPT-2 that knows fictional facts

Generated by `python3 scripts/make-testbed.py` (seed {SEED}, CPU, {THREADS} thread(s), ~{train_time / 60:.0f} min training). Deterministic.

- `model/`: GPT2LMHeadModel, {N_LAYER} layers, d_model {N_EMBD}, {N_HEAD} heads, n_positions {N_POS},
  vocab {len(tok)} (byte-level BPE trained in-script, `<|endoftext|>`), {nparams / 1e6:.2f}M params, float32, tied lm_head.
- `counterfact.json`: {len(records)} CounterFact records (EasyEdit format: case_id, prompt, subject, target_new,
  ground_truth, rephrase_prompt, locality_prompt, locality_ground_truth); {len(subjects)} fictional subjects
  ({min(subj_lens)}-{max(subj_lens)} tokens) x {len(REL_NAMES)} relations ({", ".join(REL_NAMES)}), 12 single-token answers each.
  Every relation has {len(PHRASES['language'][0])} trained phrasings and {len(PHRASES['language'][1])} held-out ones (used only as `rephrase_prompt`).
- `report.json`: all measured numbers (per-relation recall, full causal-tracing tables, phrasings).

Training text: biographies (subject named once, later facts via pronouns), lists of facts about many
subjects with shared phrasings, questions, index entries (subject followed by its attributes). {ntok / 1e6:.1f}M tokens, {STEPS} steps.

Measured (teacher-forced argmax of the answer token):
- recall on `prompt` {np.mean(acc_prompt) * 100:.1f}%, on held-out `rephrase_prompt` {np.mean(acc_reph) * 100:.1f}%,
  `locality_prompt` {np.mean(acc_loc) * 100:.1f}%; all trained phrasings x facts {np.mean(acc_all) * 100:.1f}%.
- subject swapped for another subject: model gives the new subject's answer {np.mean(acc_sw_new) * 100:.1f}%.
- causal tracing ({len(trace_recs)} facts, subject embeddings + N(0, ({NOISE_MULT}x emb std)^2), p clean {p_clean:.3f},
  corrupted {p_corr:.3f}); indirect effect of restoring one layer's MLP output, layer:subject-last/last-token:
  {rows}
- suggested MEMIT edit layers: {edit_layers} (`transformer.h.{{l}}.mlp.c_proj`).

Sizes: model.safetensors {sizes.get('model.safetensors', 0) / 1e6:.1f} MB, counterfact.json {sizes['counterfact.json'] / 1e6:.2f} MB, testbed/ total {total / 1e6:.1f} MB.
"""
    with open(ROOT / "README.md", "w") as f:
        f.write(readme)
    log(f"wrote {ROOT} ({total / 1e6:.1f} MB); README {len(readme.splitlines())} lines")
    log("example record: " + json.dumps(records[0]))


if __name__ == "__main__":
    main()
