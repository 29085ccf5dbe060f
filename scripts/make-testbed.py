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

Design (so that facts are looked up at the subject, as in GPT-2 XL, GPT-J and Llama, rather than at the
last prompt token as every small model trained freely on facts does: ../shared/TESTBED.md):
  * the architecture is a plain GPT-2 (6 layers, d 256); training keeps some weights fixed (build_model):
    a positional code in 64 residual dims that nothing else writes, layers 0-2 attend only at fixed
    relative offsets (self, previous token: previous-token heads, as early layers of large LMs have), and
    layers 3-5 attend freely but have no MLP (zero weights). A fact can therefore only be computed by an MLP
    that sees the whole name: at the subject's tokens, in layers 0-2; the answer position reads it from
    there by attention in layers 3-5. This is ROME's picture of a large LM, built in;
  * names are "First Last" from two pools of 45 single-token names, each part shared by several subjects,
    so a subject is identified only at its last token (the surname sees the first name through a
    previous-token head);
  * an auxiliary training loss (enrichment_loss) reads the residual after layer 2 at the subject's last
    token through the final norm and the tied unembedding and asks it to predict the subject's attributes:
    it only shapes training (without it: 21 % recall after 1,200 steps; with it 99 %);
  * every subject has 3 of the 6 attributes; every relation has 11 phrasings built from shared frames x relation
    nouns + verb forms; 2 frame/noun combinations per relation are held out of training (rephrase prompts);
    edit prompts have 8+ tokens, as CounterFact's (eq. 19 needs them: see the records);
  * training text: index entries (a subject followed by its attributes), biographies (named once, then
    pronouns), lists of facts about many subjects, questions;
  * 1,500 subjects: 1,300 are edited, the other 200 appear only in the records' locality prompts, so no sweep
    edits what locality measures. counterfact.json starts with one relation of each of the 1,300 (a 1,000-edit
    sweep edits 1,000 different people once, as the paper's CounterFact sweeps do), then their other relations;
    counterfact-reedit.json edits 334 of them for all three relations in turn (the re-edit protocol);
  * MLPs of width 2,048 so that the key load stays low (1,000 edits over 3 x 2,048 key dimensions: 0.16 edits per
    dimension; GPT2-XL's 1,000 over 5 x 6,400 is 0.03); wider is slower to train on a CPU. Stored in float16
    except the constructed weights (positional code, local attention, layer norms), for the 25 MB budget.

Measured on the committed model (report.json): recall, held-out recall, subject swap, and causal tracing
(restoring one layer's MLP output at the subject's last token vs at the last token, and whole residuals).
Earlier designs (free attention; all tried in the 1,500-step, 6-layer setting): the last token looked facts
up itself in layer 0 (MLP effect at the subject's last token <= 0.013), and one MEMIT batch realised 10-60 %.

Seeded (CPU, fixed step count; another torch build or thread count may give other weights). Run:
    python3 scripts/make-testbed.py            # about an hour on 2 CPU cores (6,000 steps: 59.9 min), minutes more for the checks
TESTBED_LAYOUT=reedit builds the earlier world instead: 200 subjects with all 6 relations (170 edited 6 times each,
30 for locality), d_ff 1,024, float32, 1,800 steps. Both report the whitened key similarity of distinct subjects
(Hu et al.'s measure of superposition) in report.json.
Environment: TESTBED_STEPS (training steps), TESTBED_THREADS (torch threads,
default 2; use 1 on a busy machine), TESTBED_NTRACE (facts traced), TESTBED_AUX (weight of the
enrichment loss, default 1; 0 turns it off), TESTBED_OUT (write there instead of testbed/),
TESTBED_CHECK=1 (no training: re-measure recall and causal tracing of the model in testbed/ against report.json),
TESTBED_TRAINED (where the trained float32 weights are kept and reused; default <out>.<layout>.trained-f32.pt),
TESTBED_RETRAIN=1 (train even when those weights exist).
"""
import hashlib
import json
import math
import os
import platform
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
ROOT = Path(os.environ.get("TESTBED_OUT", Path(__file__).resolve().parent.parent / "testbed"))
EOS = "<|endoftext|>"
# Two worlds (TESTBED_LAYOUT): "distinct" (the committed testbed/: 1,500 subjects with 3 relations each, so a
# 1,000-edit sweep edits 1,000 different people once, as the paper's CounterFact sweeps do, on wider MLPs so that the
# key load stays low) and "reedit" (the earlier one: 200 subjects with all 6 relations, so a sweep edits each person
# 5-6 times).
LAYOUT = os.environ.get("TESTBED_LAYOUT", "distinct")
assert LAYOUT in ("reedit", "distinct"), LAYOUT
DISTINCT = LAYOUT == "distinct"
N_SUBJECTS = 1500 if DISTINCT else 200
REL_PER_SUBJECT = 3 if DISTINCT else 6   # relations a subject has (of the 6)
N_REEDIT_SUBJECTS = 334                  # distinct: counterfact-reedit.json edits these, each for all its relations
# The last 30 subjects are never edited: their facts are the records' locality prompts (as CounterFact's
# neighbourhood prompts are about unedited subjects), so a 1,000-edit sweep never edits what locality checks.
N_PROBE_SUBJECTS = 200 if DISTINCT else 30
N_FIRST, N_LAST = (45, 45) if DISTINCT else (20, 20)  # name pools: a subject is "First Last", each part shared by several
VOCAB = 1536
N_LAYER, N_EMBD, N_HEAD, N_POS = 6, 256, 8, 128
N_INNER = 2048 if DISTINCT else 1024
STORE_HALF = DISTINCT             # trained weights stored as float16 (the 25 MB budget), measured after the round trip;
                                  # the constructed ones (positional code, local attention) and layer norms stay float32
# The trained float32 weights are kept beside the output (an 80-minute run is not lost to a later failure) and
# reused by the next run with the same settings instead of training again (TESTBED_RETRAIN=1 trains anyway).
TRAINED = Path(os.environ.get("TESTBED_TRAINED", str(ROOT) + f".{LAYOUT}.trained-f32.pt"))
# The architecture is a plain GPT-2; training keeps some of its weights fixed so that facts can only be
# looked up at the subject, as in large LMs (see build_model):
POS_DIMS = 64                     # the last 64 residual dims hold a fixed positional code, nothing else writes there
POS_NORM = 32.0                   # its norm (token embeddings start at about the same norm)
N_FREQ = POS_DIMS // 4            # (cos, sin, -cos, -sin) per frequency: zero-sum, so layer norm's mean drops out
LOCAL_LAYERS = (0, 1, 2)          # attention at fixed relative offsets only (previous-token heads), no lookup by content
HEAD_OFFSETS = (0, 0, 1, 1, 1, 1, 1, 1)  # per head of a local layer: attend to position i - offset
ATTN_SHARPNESS = 1000.0           # score at the intended offset × σ_i σ_j (layer-norm scales); others ≤ 0.35 of it
MLP_LAYERS = (0, 1, 2)            # layers above have no MLP (zero weights): attention reads what the subject holds
AUX_WEIGHT = float(os.environ.get("TESTBED_AUX", "1.0"))  # enrichment_loss
STEPS = int(os.environ.get("TESTBED_STEPS", "6000" if DISTINCT else "1800"))
MIN_PROMPT_TOKENS = 8
BATCH = 16
THREADS = int(os.environ.get("TESTBED_THREADS", "2"))
MAX_LEN = 96
LR, WARMUP, WD = 2e-3, 100, 0.01
N_TRACE = int(os.environ.get("TESTBED_NTRACE", "200"))
CHECK = os.environ.get("TESTBED_CHECK") == "1"  # re-measure recall and tracing of the committed model, write nothing
N_STATS_DOCS = 4000               # model/stats-corpus.txt: E[kkᵀ] text (the sweep's default corpus)
N_SUPERPOSITION_DOCS = 2000       # of them, for C in the superposition measure
N_NOISE = 10
NOISE_MULT = 3.0

t_start = time.time()



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
    """Two pools of invented two-syllable names (first names, surnames), each a single token."""
    onsets = ["b", "d", "k", "l", "m", "n", "r", "s", "t", "v", "z", "th", "dr", "g", "f", "p"]
    vowels = ["a", "e", "i", "o", "u"]
    codas = ["n", "r", "l", "s", "k", "m"]
    names = set()
    while len(names) < N_FIRST + N_LAST:
        names.add((rng.choice(onsets) + rng.choice(vowels) + rng.choice(onsets) + rng.choice(vowels)
                   + rng.choice(codas)).capitalize())
    names = sorted(names)
    rng.shuffle(names)
    return sorted(names[:N_FIRST]), sorted(names[N_FIRST:])


def make_subjects(rng, pools, n=N_SUBJECTS):
    """Names "First Last": every first name and every surname is shared by several subjects, so a subject is
    identified only by the pair, i.e. at its LAST token, which sees the first name through a previous-token head."""
    firsts, lasts = pools
    pairs = [(f, l) for f in firsts for l in lasts]
    rng.shuffle(pairs)
    out = [dict(name=f"{f} {l}", female=rng.random() < 0.5) for f, l in pairs[:n]]
    return out


def make_facts(rng, n):
    """Each subject's relations (all 6, or REL_PER_SUBJECT of them in REL_NAMES order) and an answer for each."""
    if REL_PER_SUBJECT == len(REL_NAMES):
        return [{r: rng.choice(RELATIONS[r]["answers"]) for r in REL_NAMES} for _ in range(n)]
    out = []
    for _ in range(n):
        rels = sorted(rng.sample(REL_NAMES, REL_PER_SUBJECT), key=REL_NAMES.index)
        out.append({r: rng.choice(RELATIONS[r]["answers"]) for r in rels})
    return out


_having = {}


def subjects_having(facts, r):
    """Indices of the subjects that have relation r (cached per facts list)."""
    key = (id(facts), r)
    if key not in _having:
        _having[key] = [i for i, f in enumerate(facts) if r in f]
    return _having[key]


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
            vals = list(facts[s].values())
            rng.shuffle(vals)
            ents.append(subjects[s]["name"] + " " + " ".join(vals) + ".")
        return " ".join(ents)
    if u < 0.6:  # biography: named once, then mostly pronouns
        s = rng.randrange(len(subjects))
        subj = subjects[s]
        rels = list(facts[s])
        rng.shuffle(rels)
        sents = []
        if rng.random() < 0.2 and "profession" in facts[s] and "birthplace" in facts[s]:
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
            r = rng.choice(list(facts[s2]))
            sents.append(fill(rng.choice(PHRASES[r][0]), subjects[s2], facts[s2][r]))
        return " ".join(sents)
    # list of facts about random subjects; sometimes one shared relation/phrasing
    sents = []
    same = rng.random() < 0.3
    r0 = rng.choice(REL_NAMES)
    t0 = rng.choice(PHRASES[r0][0])
    having = subjects_having(facts, r0)
    for _ in range(rng.randint(5, 7)):
        s = having[rng.randrange(len(having))] if same else rng.randrange(len(subjects))
        r = r0 if same else rng.choice(list(facts[s]))
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
# The model: a plain GPT-2 whose training keeps some weights fixed
# --------------------------------------------------------------------------
# Small models trained on facts answer through the LAST prompt token: its first attention layer gathers the
# raw subject tokens and its first MLP looks the fact up there (../shared/TESTBED.md; 6 designs measured).
# Large LMs instead enrich the subject's last token in early MLPs and read the attribute from there by
# attention later. This model gets that route by construction, with weights a plain GPT-2 can hold:
#   * the last POS_DIMS residual dims hold a fixed positional code p_i (token embeddings and every block
#     output are zero there), so layer norm sees the same positions in every layer;
#   * in LOCAL_LAYERS each head's query/key read only that code and score A·Σ_k cos(ω_k (i - j - offset)):
#     every head looks at one fixed relative position (self or the previous token), whatever the content;
#   * MLPs exist only in MLP_LAYERS (= LOCAL_LAYERS); the layers above attend freely but have no MLP.
# So a fact can only be computed where the whole name is in view of an MLP, i.e. at the subject's tokens
# (the last one sees the first through a previous-token head), and the answer position reads it from there.
TOK_DIMS = N_EMBD - POS_DIMS


def position_frequencies():
    """N_FREQ frequencies whose mean cosine is small at every non-zero offset (seeded random search)."""
    rng = np.random.default_rng(SEED + 7)
    d = np.arange(1, N_POS)
    best, best_side = None, 9.0
    for _ in range(4000):
        w = np.sort(rng.uniform(0.3, np.pi, N_FREQ))
        side = np.abs(np.cos(np.outer(d, w)).mean(1)).max()
        if side < best_side:
            best, best_side = w, side
    return best, float(best_side)


def build_model(cfg):
    """GPT2LMHeadModel with the fixed parts set, and constrain(), which restores them after an optimiser step."""
    torch.manual_seed(SEED + 8)
    model = GPT2LMHeadModel(cfg)
    C, T, H = N_EMBD, TOK_DIMS, N_EMBD // N_HEAD
    omega, sidelobe = position_frequencies()
    i = torch.arange(N_POS, dtype=torch.float64)[:, None] * torch.from_numpy(omega)[None]  # (P, K)
    code = torch.cat([i.cos(), i.sin(), -i.cos(), -i.sin()], 1) * POS_NORM / math.sqrt(2 * N_FREQ)  # (P, 64)
    fixed = {}  # parameter name -> (mask, value)

    def fix(name, mask, value):
        fixed[name] = (mask, value)

    sd = dict(model.named_parameters())
    wpe = torch.zeros(N_POS, C, dtype=torch.float64)
    wpe[:, T:] = code
    fix("transformer.wpe.weight", torch.ones(N_POS, C, dtype=torch.bool), wpe.float())
    with torch.no_grad():  # token embeddings start at about the code's norm, the head's norm scale low
        sd["transformer.wte.weight"].normal_(0.0, POS_NORM / math.sqrt(T))
        sd["transformer.ln_f.weight"].fill_(0.05)
    m = torch.zeros(cfg.vocab_size, C, dtype=torch.bool)
    m[:, T:] = True
    fix("transformer.wte.weight", m, torch.zeros(cfg.vocab_size, C))
    # q·k/sqrt(H) = A/(σ_i σ_j) at the intended offset: q, k carry 2a·(POS_NORM/√(2K))/σ·(cos, sin) per frequency
    a = math.sqrt(ATTN_SHARPNESS * math.sqrt(H) / N_FREQ) / (2 * POS_NORM / math.sqrt(2 * N_FREQ))
    K = N_FREQ
    for l in range(N_LAYER):
        p = f"transformer.h.{l}."
        for proj in ("attn.c_proj", "mlp.c_proj"):  # nothing writes into the positional dims
            m = torch.zeros(sd[p + proj + ".weight"].shape, dtype=torch.bool)
            m[:, T:] = True
            fix(p + proj + ".weight", m, torch.zeros(m.shape))
            mb = torch.zeros(C, dtype=torch.bool)
            mb[T:] = True
            fix(p + proj + ".bias", mb, torch.zeros(C))
        if l not in MLP_LAYERS:
            for name in ("mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"):
                fix(p + name, torch.ones(sd[p + name].shape, dtype=torch.bool), torch.zeros(sd[p + name].shape))
        if l in LOCAL_LAYERS:
            mg = torch.zeros(C, dtype=torch.bool)
            mg[T:] = True
            fix(p + "ln_1.weight", mg, torch.ones(C))
            fix(p + "ln_1.bias", mg, torch.zeros(C))
            W = torch.zeros(C, 3 * C, dtype=torch.float64)  # Conv1D layout [in, out]: q | k | v
            cos_, sin_, ncos, nsin = (T + off * K + torch.arange(K) for off in range(4))
            for h, off in enumerate(HEAD_OFFSETS):
                qc, qs = h * H + torch.arange(K), h * H + K + torch.arange(K)   # query dims (cos, sin)
                kc, ks = C + qc, C + qs                                        # key dims
                # query = (cos ω i, sin ω i); key = (cos ω(j+off), sin ω(j+off)), a rotation of the code of j;
                # every read takes (x - (-x))/2 so that layer norm's mean cancels exactly
                ro_c, ro_s = torch.from_numpy(np.cos(omega * off)), torch.from_numpy(np.sin(omega * off))
                for src, sign in ((cos_, 1), (ncos, -1)):
                    W[src, qc] = sign * a
                    W[src, kc] = sign * a * ro_c
                    W[src, ks] = sign * a * ro_s
                for src, sign in ((sin_, 1), (nsin, -1)):
                    W[src, qs] = sign * a
                    W[src, kc] = -sign * a * ro_s
                    W[src, ks] = sign * a * ro_c
            mq = torch.zeros(C, 3 * C, dtype=torch.bool)
            mq[:, :2 * C] = True
            fix(p + "attn.c_attn.weight", mq, W.float())
            mb = torch.zeros(3 * C, dtype=torch.bool)
            mb[:2 * C] = True
            fix(p + "attn.c_attn.bias", mb, torch.zeros(3 * C))
    frozen = [n for n, (mk, _) in fixed.items() if bool(mk.all())]
    for n in frozen:
        sd[n].requires_grad_(False)

    @torch.no_grad()
    def constrain():
        for n, (mk, v) in fixed.items():
            sd[n].data[mk] = v[mk]

    constrain()
    return model, constrain, dict(frequencies=omega.tolist(), max_sidelobe=sidelobe, query_scale=a,
                                  frozen=frozen)


def enrichment_loss(model, hidden, ids, attr_of):
    """Auxiliary training loss (the shipped model is a plain GPT-2; this only shapes training): the residual at
    a subject's last token after the last MLP layer, read through the final norm and the tied unembedding,
    predicts the subject's attributes (each with probability 1/6), so the facts are enriched into the subject
    early, as large LMs do, instead of being assembled late."""
    rows, cols, targets = [], [], []
    for b in range(ids.shape[0]):
        seq = ids[b].tolist()
        for t in range(1, len(seq)):
            attrs = attr_of.get((seq[t - 1], seq[t]))
            if attrs:
                rows.append(b); cols.append(t); targets.append(attrs)
    if not rows:
        return hidden.sum() * 0
    logp = model.lm_head(model.transformer.ln_f(hidden[rows, cols])).log_softmax(-1)  # (N, V)
    return -logp.gather(1, torch.tensor(targets)).mean()


def skip_missing_mlps(model):
    """Training shortcut: the blocks without an MLP return exactly zero (their weights are zero)."""
    for l in range(N_LAYER):
        if l not in MLP_LAYERS:
            model.transformer.h[l].mlp.forward = lambda h: torch.zeros_like(h)


@torch.no_grad()
def offset_attention(model, tok, prompts):
    """Mean attention weight each local head puts on its intended offset (over positions where it exists)."""
    out = {}
    model.set_attn_implementation("eager")  # the fused kernel returns no weights
    for l in LOCAL_LAYERS:
        ws = []
        for p in prompts:
            ids = torch.tensor([tok(p)["input_ids"]])
            att = model(input_ids=ids, output_attentions=True).attentions[l][0]  # (H, T, T)
            Tn = att.shape[-1]
            for h, off in enumerate(HEAD_OFFSETS):
                ws += [att[h, t, t - off].item() for t in range(off, Tn)]
        out[l] = float(np.mean(ws))
    model.set_attn_implementation("sdpa")
    return out


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
        # noise on the token dims only: the positional dims carry the position, not the subject
        noise = torch.zeros(N_NOISE, len(sidx), N_EMBD)
        noise[..., :TOK_DIMS] = torch.from_numpy(rng_t.standard_normal((N_NOISE, len(sidx), TOK_DIMS))
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
    n = max(n, 1)
    return ({k: (v / n).tolist() for k, v in res.items()}, p_clean / n, p_corr / n)


# What Hu et al. publish for GPT-2 (their figures; they give the distributions as plots, not as tables).
HU_ET_AL = dict(source="Hu et al., Knowledge in Superposition, AAAI 2025 (arXiv 2408.07413)",
                gpt2="whitened cosines of distinct facts' keys at every layer of GPT-2 small to XL: mean about 0, "
                     "high kurtosis, heavy tails (plots); the tails narrow as models grow")


@torch.no_grad()
def superposition(model, tok, records, stats_docs, layers, n_keys=1000):
    """Knowledge superposition as Hu et al. (AAAI 2025, arXiv 2408.07413) measure it: the cosine of two facts' keys
    in whitened space, k_i^T C^-1 k_j / sqrt(k_i^T C^-1 k_i * k_j^T C^-1 k_j), C = E[k k^T] over the statistics corpus
    (what comeba's statistics hold); a key is the MLP's c_proj input at the subject's last token of a record's prompt.
    Distinct subjects: one record each (up to n_keys); the same subject: pairs of its records (other relations)."""
    blocks = model.transformer.h
    grabbed = {}
    hooks = [blocks[l].mlp.c_proj.register_forward_pre_hook(lambda m, i, l=l: grabbed.__setitem__(l, i[0]))
             for l in layers]
    try:
        C = {l: torch.zeros(N_INNER, N_INNER, dtype=torch.float64) for l in layers}
        n = 0
        for d in stats_docs:  # one document at a time: no padding in the sums
            e = tok(d)["input_ids"][:N_POS]
            model(input_ids=torch.tensor([e]))
            for l in layers:
                k = grabbed[l][0].double()
                C[l] += k.T @ k
            n += len(e)
        by_subject = {}
        for rec in records:
            by_subject.setdefault(rec["subject"], []).append(rec)
        keys = {l: [] for l in layers}
        owner = []
        for subject, recs in list(by_subject.items())[:n_keys]:
            for rec in recs:
                ids, sidx = subject_token_range(tok, rec["prompt"], subject)
                model(input_ids=torch.tensor([ids]))
                for l in layers:
                    keys[l].append(grabbed[l][0, sidx[-1]].double())
                owner.append(subject)
        owner = np.array(owner)
        same = owner[:, None] == owner[None, :]
        first = np.zeros(len(owner), dtype=bool)
        first[[list(owner).index(s) for s in dict.fromkeys(owner)]] = True
        upper = np.triu(np.ones_like(same), 1).astype(bool)
        out = {}
        for l in layers:
            chol = torch.linalg.cholesky(C[l] / n)
            u = torch.linalg.solve_triangular(chol, torch.stack(keys[l], 1), upper=False)  # (F, N) whitened
            u = u / u.norm(dim=0, keepdim=True)
            g = (u.T @ u).numpy()
            distinct = g[upper & ~same & first[:, None] & first[None, :]]
            mine = g[upper & same]
            mu, sd = float(distinct.mean()), float(distinct.std())
            out[l] = dict(
                distinct=dict(pairs=int(distinct.size), mean=mu, std=sd,
                              kurtosis=float(((distinct - mu) ** 4).mean() / sd ** 4),
                              p99=float(np.quantile(distinct, 0.99)), max=float(distinct.max())),
                same_subject=dict(pairs=int(mine.size), mean=float(mine.mean()) if mine.size else None,
                                  min=float(mine.min()) if mine.size else None))
        return dict(tokens=n, keys=len(owner), subjects=int(first.sum()), layers=out,
                    note="kurtosis: Pearson's (a normal distribution has 3)",
                    published=HU_ET_AL)
    finally:
        for h in hooks:
            h.remove()


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
    facts = make_facts(rng, len(subjects))
    log(f"world ({LAYOUT}): {len(subjects)} subjects x {REL_PER_SUBJECT} of {len(REL_NAMES)} relations; "
        f"phrasings/relation: {len(PHRASES['language'][0])} trained + "
        f"{len(PHRASES['language'][1])} held-out (+ pronoun forms)")

    # tokenizer
    # trained on text about *other* random names from the same syllable pool, so
    # syllables become tokens but whole names do not (subjects stay multi-token)
    tok_rng = random.Random(SEED + 1)
    tok_subjects = make_subjects(random.Random(SEED + 11), pools, N_FIRST * N_LAST)
    tok_facts = make_facts(tok_rng, len(tok_subjects))
    tok_docs = [make_doc(tok_rng, tok_subjects, tok_facts) for _ in range(20000)]
    tok = train_tokenizer(tok_docs)
    for r in REL_NAMES:
        for a in RELATIONS[r]["answers"]:
            n = len(tok(" " + a)["input_ids"])
            assert n == 1, f"answer ' {a}' is {n} tokens"
    for f in pools[0] + pools[1]:
        assert len(tok(" " + f)["input_ids"]) == 1, f"name part ' {f}' is not one token"
    subj_lens = [len(tok(" " + s["name"])["input_ids"]) for s in subjects]
    log(f"tokenizer: vocab {len(tok)}; all answers single tokens; subject tokens "
        f"min {min(subj_lens)} mean {np.mean(subj_lens):.2f} max {max(subj_lens)}")

    # records
    rec_rng = random.Random(SEED + 2)
    records = []
    by_rel = {r: [] for r in REL_NAMES}
    for si, subj in enumerate(subjects):
        for r in facts[si]:
            trained, held, _ = PHRASES[r]
            gt = facts[si][r]
            # Edit prompts as long as CounterFact's (8+ tokens): eq. 19 lowers α to the largest z-score of a batch's
            # prompts, and n tokens cannot reach a z-score above (n-1)/sqrt(n) (2.47 at 8 tokens, α_z is 2.2).
            long_enough = [t for t in trained if len(tok(fill(t, subj))["input_ids"]) >= MIN_PROMPT_TOKENS]
            rec = dict(
                case_id=len(records),
                prompt=fill(rec_rng.choice(long_enough), subj),
                subject=subj["name"],
                target_new=rec_rng.choice([a for a in RELATIONS[r]["answers"] if a != gt]),
                ground_truth=gt,
                rephrase_prompt=fill(rec_rng.choice(held), subj),
            )
            records.append(rec)
            by_rel[r].append((si, rec))
    rel_of = {}
    n_edit = N_SUBJECTS - N_PROBE_SUBJECTS
    for r, lst in by_rel.items():
        probes = [(sj, nb) for sj, nb in lst if sj >= n_edit]
        for si, rec in lst:
            rel_of[rec["case_id"]] = r
            while True:
                sj, nb = rec_rng.choice(probes)
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

    if CHECK:  # re-measure the committed weights instead of training
        model = GPT2LMHeadModel.from_pretrained(ROOT / "model", dtype=torch.float32).eval()
        tok = AutoTokenizer.from_pretrained(ROOT / "model")
        log(f"checking the committed model in {ROOT / 'model'}")
    else:
        # model
        cfg = GPT2Config(vocab_size=len(tok), n_positions=N_POS, n_embd=N_EMBD, n_inner=N_INNER,
                         n_layer=N_LAYER, n_head=N_HEAD, resid_pdrop=0.0,
                         embd_pdrop=0.0, attn_pdrop=0.0,
                         bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
        model, constrain, construction = build_model(cfg)
        log(f"positional code: {N_FREQ} frequencies, largest mean cosine off the intended offset "
            f"{construction['max_sidelobe']:.3f}; fixed: {', '.join(construction['frozen'])} + masked parts")
        skip_missing_mlps(model)
        nparams = sum(p.numel() for p in model.parameters())
        log(f"model: {N_LAYER} layers, d={N_EMBD}, {N_HEAD} heads, {nparams / 1e6:.2f}M params; "
            f"{STEPS} steps x {BATCH} docs")
        decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and p.requires_grad]
        no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 and p.requires_grad]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=LR, betas=(0.9, 0.98), eps=1e-8)

        def lr_at(step):
            if step < WARMUP:
                return LR * (step + 1) / WARMUP
            q = (step - WARMUP) / max(1, STEPS - WARMUP)
            return LR * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * q)))

        probe = rec_rng.sample(records, 300)
        # (first-name token, surname token) -> the subject's attribute tokens, for the enrichment loss
        attr_of = {}
        for si, subj in enumerate(subjects):
            first, last = (tok(" " + part)["input_ids"][0] for part in subj["name"].split(" "))
            attr_of[(first, last)] = [tok(" " + a)["input_ids"][0] for a in facts[si].values()]
        train_rng = random.Random(SEED + 3)
        eos = tok.eos_token_id
        t_train = time.time()
        ntok = 0
        loss_ema = None
        enriched = {}  # the residual after the last MLP layer, for the enrichment loss
        model.transformer.h[max(MLP_LAYERS)].register_forward_hook(
            lambda m, i, o: enriched.__setitem__("h", o[0] if isinstance(o, tuple) else o))
        model.train()
        reused = TRAINED.exists() and os.environ.get("TESTBED_RETRAIN") != "1"
        if reused:
            saved = torch.load(TRAINED, weights_only=True)
            assert saved["steps"] == STEPS and saved["n_inner"] == N_INNER and saved["layout"] == LAYOUT, f"{TRAINED}: other settings"
            model.load_state_dict(saved["state"])
            ntok = saved["tokens"]
            log(f"reusing the trained weights in {TRAINED} ({saved['minutes']:.1f} min of training)")
        for step in range(0 if reused else STEPS):
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
            if AUX_WEIGHT > 0:
                loss = loss + AUX_WEIGHT * enrichment_loss(model, enriched["h"], ids, attr_of)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            constrain()
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
        train_time = saved["minutes"] * 60 if reused else time.time() - t_train
        model.eval()
        log(f"training done in {train_time / 60:.1f} min, {ntok / 1e6:.2f}M tokens")
        if not reused:
            torch.save(dict(state=model.state_dict(), steps=STEPS, n_inner=N_INNER, layout=LAYOUT, tokens=ntok,
                            minutes=train_time / 60), TRAINED)
            log(f"trained float32 weights kept in {TRAINED}")
        # Kept in float32: the positional code, the local layers' constructed attention, the layer norms (their
        # scales set how sharp that attention is); everything else, zeros included, is exact enough in float16.
        precise = {"transformer.wpe.weight"} | {f"transformer.h.{l}.attn.c_attn.{w}" for l in LOCAL_LAYERS for w in ("weight", "bias")} \
            | {n for n, _ in model.named_parameters() if ".ln_" in n}
        if STORE_HALF:  # measure what is committed: the trained weights rounded to float16, computed in float32
            f32_offsets = offset_attention(model, tok, [r["prompt"] for r in records[:40]])
            log("before the float16 rounding, attention on the intended offset: " + ", ".join(f"{l}: {w:.5f}" for l, w in f32_offsets.items()))
            with torch.no_grad():
                for n, p in model.named_parameters():
                    if n not in precise:
                        p.data = p.data.half().float()
    offsets = offset_attention(model, tok, [r["prompt"] for r in records[:40]])
    log("attention on the intended offset, local layers: " + ", ".join(f"{l}: {w:.5f}" for l, w in offsets.items()))
    # Layers 0-1 keep the constructed attention sharp; training can soften it where it trains that layer's norm
    # scale down (the distinct world's layer 2: 0.863 on the intended offsets, the rest on earlier tokens of the
    # prompt), which report.json records. Below 0.8 the subject's keys would depend on the prompt too much.
    assert min(offsets[l] for l in LOCAL_LAYERS[:2]) > 0.99 and min(offsets.values()) > 0.8, offsets

    # ---------------- evaluation ----------------
    gts = [r["ground_truth"] for r in records]
    acc_prompt = answer_acc(model, tok, [r["prompt"] for r in records], gts)
    acc_reph = answer_acc(model, tok, [r["rephrase_prompt"] for r in records], gts)
    acc_loc = answer_acc(model, tok, [r["locality_prompt"] for r in records],
                         [r["locality_ground_truth"] for r in records])
    all_p, all_a, all_h, all_ha = [], [], [], []
    for si, subj in enumerate(subjects):
        for r in facts[si]:
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
        having = subjects_having(facts, r)
        while True:
            sj = having[sw_rng.randrange(len(having))]
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
    emb = model.transformer.wte.weight.detach()[sorted(sub_tok)][:, :TOK_DIMS]
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
    if CHECK:
        committed = json.loads((ROOT / "report.json").read_text())
        sha = hashlib.sha256((ROOT / "model" / "model.safetensors").read_bytes()).hexdigest()
        assert sha == committed["model_sha256"], "report.json belongs to other weights"
        for key in ("mlp_subj", "mlp_last"):
            log(f"  {key}: now {np.round(trace[key], 4).tolist()}, report.json "
                f"{np.round(committed['causal_trace']['indirect_effect'][key], 4).tolist()}")
        log(f"  recall now {np.mean(acc_prompt):.4f} / {np.mean(acc_reph):.4f}, report.json "
            f"{committed['recall']['prompt']:.4f} / {committed['recall']['rephrase']:.4f}")
        stats_docs = (ROOT / "model" / "stats-corpus.txt").read_text().splitlines()
        sup = superposition(model, tok, records, stats_docs[:N_SUPERPOSITION_DOCS], edit_layers)
        log(f"  superposition (whitened key cosines): {json.dumps(sup['layers'])}")
        return

    # ---------------- write ----------------
    if ROOT.exists():
        shutil.rmtree(ROOT)
    (ROOT / "model").mkdir(parents=True)
    if STORE_HALF:
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n not in precise:
                    p.data = p.data.half()
    model.save_pretrained(ROOT / "model")
    model.float()
    tok.save_pretrained(ROOT / "model")
    with open(ROOT / "counterfact.json", "w") as f:
        edited = {s["name"] for s in subjects[:n_edit]}
        edited_records = interleave_by_subject([rec for rec in records if rec["subject"] in edited])
        json.dump(edited_records, f, indent=1)
    if DISTINCT:  # the re-edit protocol: N_REEDIT_SUBJECTS people, each edited for all its relations in turn
        with open(ROOT / "counterfact-reedit.json", "w") as f:
            reedited = {s["name"] for s in subjects[:N_REEDIT_SUBJECTS]}
            json.dump(interleave_by_subject([rec for rec in records if rec["subject"] in reedited]), f, indent=1)
    # editor defaults read by comeba (lib/edit/options.ts)
    with open(ROOT / "model" / "comeba.json", "w") as f:
        # only the edit layers: λ, α and the value optimisation are the paper's GPT2-XL settings (METHOD.md §7)
        json.dump({"layers": edit_layers}, f, indent=1)
    # The statistics corpus (what Wikipedia is to GPT-2): training-distribution text about the names that are
    # not subjects, so it holds none of the records' prompt, rephrase or locality strings.
    stats_rng = random.Random(SEED + 9)
    names = {s["name"] for s in subjects}
    others = [s for s in tok_subjects if s["name"] not in names]
    other_facts = make_facts(stats_rng, len(others))
    stats_docs = [make_doc(stats_rng, others, other_facts) for _ in range(N_STATS_DOCS)]
    stats_text = "\n".join(stats_docs)
    for rec in records:
        for key in ("prompt", "rephrase_prompt", "locality_prompt"):
            assert rec[key] not in stats_text, rec[key]
    with open(ROOT / "model" / "stats-corpus.txt", "w") as f:
        f.write(stats_text + "\n")
    # reload check
    tok2 = AutoTokenizer.from_pretrained(ROOT / "model")
    m2 = GPT2LMHeadModel.from_pretrained(ROOT / "model", dtype=torch.float32).eval()
    chk = np.mean(answer_acc(m2, tok2, [r["prompt"] for r in records[:200]], gts[:200]))
    assert abs(chk - np.mean(acc_prompt[:200])) < 1e-9, chk

    sup = superposition(model, tok, [r for r in records if r["subject"] in edited], stats_docs[:N_SUPERPOSITION_DOCS], edit_layers)
    for l, v in sup["layers"].items():
        log(f"  superposition layer {l}: distinct subjects mean {v['distinct']['mean']:.4f} std {v['distinct']['std']:.4f} "
            f"kurtosis {v['distinct']['kurtosis']:.2f} p99 {v['distinct']['p99']:.3f} max {v['distinct']['max']:.3f}; "
            f"same subject mean {v['same_subject']['mean']}")
    sizes = {p.name: p.stat().st_size for p in (ROOT / "model").iterdir()}
    sizes["counterfact.json"] = (ROOT / "counterfact.json").stat().st_size
    report = dict(
        model_sha256=hashlib.sha256((ROOT / "model" / "model.safetensors").read_bytes()).hexdigest(),
        seed=SEED, layout=LAYOUT, n_records=len(edited_records), n_subjects=len(subjects), n_probe_subjects=N_PROBE_SUBJECTS,
        relations_per_subject=REL_PER_SUBJECT,
        key_load_at_1000_edits=1000 / (len(edit_layers) * N_INNER),
        superposition=sup,
        relations={r: dict(answers=RELATIONS[r]["answers"], trained_phrasings=PHRASES[r][0],
                           held_out_phrasings=PHRASES[r][1], pronoun_phrasings=PHRASES[r][2])
                   for r in REL_NAMES},
        model=dict(n_layer=N_LAYER, n_embd=N_EMBD, n_head=N_HEAD, n_positions=N_POS,
                   vocab_size=len(tok), params=nparams),
        training=dict(steps=STEPS, batch=BATCH, max_len=MAX_LEN, lr=LR, tokens=ntok, threads=THREADS,
                      minutes=round(train_time / 60, 2), device=f"cpu ({platform.machine()}), torch {torch.__version__}"),
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
        local_attention_on_offset={str(l): w for l, w in offsets.items()},
        sizes_bytes=sizes,
    )
    with open(ROOT / "report.json", "w") as f:
        json.dump(report, f, indent=1)
    total = sum(p.stat().st_size for p in ROOT.rglob("*") if p.is_file())
    ce = trace
    rows = " ".join(f"{l}:{ce['mlp_subj'][l]:.3f}/{ce['mlp_last'][l]:.3f}" for l in range(N_LAYER))
    reedit_line = (f"- `counterfact-reedit.json`: {N_REEDIT_SUBJECTS} of the edited subjects, each for all {REL_PER_SUBJECT} of its relations in turn (the re-edit protocol).\n"
                   if DISTINCT else "")
    sup_rows = "; ".join(f"layer {l}: mean {v['distinct']['mean']:.3f} std {v['distinct']['std']:.3f} kurtosis {v['distinct']['kurtosis']:.1f}"
                         for l, v in sup["layers"].items())
    readme = f"""# comeba testbed: a small GPT-2 that knows fictional facts

Generated by `python3 scripts/make-testbed.py` (seed {SEED}, CPU, {THREADS} thread(s), ~{train_time / 60:.0f} min training). Seeded; report.json holds the sha256 of the weights it measured.

- `model/`: GPT2LMHeadModel, {N_LAYER} layers, d_model {N_EMBD}, {N_HEAD} heads, n_positions {N_POS},
  vocab {len(tok)} (byte-level BPE trained in-script, `<|endoftext|>`), {nparams / 1e6:.2f}M params, {"float16 (the constructed weights and layer norms float32)" if STORE_HALF else "float32"}, tied lm_head.
- `counterfact.json`: {len(edited_records)} CounterFact records (EasyEdit format: case_id, prompt, subject, target_new,
  ground_truth, rephrase_prompt, locality_prompt, locality_ground_truth); {n_edit} of the {len(subjects)} fictional subjects (the other {N_PROBE_SUBJECTS} only in locality prompts)
  ({min(subj_lens)}-{max(subj_lens)} tokens) x {REL_PER_SUBJECT} of {len(REL_NAMES)} relations ({", ".join(REL_NAMES)}), 12 single-token answers each.
  Every relation has {len(PHRASES['language'][0])} trained phrasings and {len(PHRASES['language'][1])} held-out ones (used only as `rephrase_prompt`).
{reedit_line}- `report.json`: all measured numbers (per-relation recall, full causal-tracing tables, phrasings, superposition).

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
- superposition (Hu et al.: whitened cosine of distinct subjects' keys, {sup['subjects']} subjects), per edit layer:
  {sup_rows}

Sizes: model.safetensors {sizes.get('model.safetensors', 0) / 1e6:.1f} MB, counterfact.json {sizes['counterfact.json'] / 1e6:.2f} MB, testbed/ total {total / 1e6:.1f} MB.
"""
    with open(ROOT / "README.md", "w") as f:
        f.write(readme)
    log(f"wrote {ROOT} ({total / 1e6:.1f} MB); README {len(readme.splitlines())} lines")
    log("example record: " + json.dumps(records[0]))


if __name__ == "__main__":
    main()
