#!/usr/bin/env python3
"""Write transformers' decode of random token ids for every fixture tokenizer: test/fixtures/<fixture>/reference/decode.json.

comeba decodes with @huggingface/tokenizers; generated-text metrics compare strings, so its decode must equal
transformers' for the checkpoint (clean_up_tokenization_spaces and its default included). The test
(test/tokenizer.test.ts) decodes the same ids and compares. Seeded; every id of the vocabulary may appear,
special tokens included (decode's default keeps them); half the ids from the tokens a clean-up acts on.

Run: python3 scripts/make-decode-reference.py   (needs transformers; no network)
"""
import json
import random
from pathlib import Path

import transformers
from transformers import AutoTokenizer

FIXTURES = Path(__file__).resolve().parent.parent / "test" / "fixtures"
N_SEQUENCES = 1000
MAX_LENGTH = 12
SEED = 20261206


def main():
    for folder in sorted(p for p in FIXTURES.iterdir() if (p / "tokenizer.json").exists()):
        tok = AutoTokenizer.from_pretrained(folder)
        rng = random.Random(f"{SEED}-{folder.name}")
        vocab = len(tok)
        # Half the ids from the tokens where a clean-up would act (a lone space, punctuation, 's n't 'm 've 're):
        # uniform ids alone almost never put a space before a comma.
        pool = [i for i in range(vocab) if tok.decode([i]).strip(" ") in ("", ".", "?", "!", ",", "'")
                or tok.decode([i]).startswith(("'", "n't", ".", ",", "?", "!")) or tok.decode([i]).endswith(" ")]
        pick = lambda: rng.choice(pool) if pool and rng.random() < 0.5 else rng.randrange(vocab)
        sequences = [[pick() for _ in range(rng.randint(1, MAX_LENGTH))] for _ in range(N_SEQUENCES)]
        out = dict(transformers=transformers.__version__, tokenizer_class=type(tok).__name__,
                   clean_up_tokenization_spaces=tok.clean_up_tokenization_spaces,
                   cases=[dict(ids=ids, text=tok.decode(ids)) for ids in sequences])
        # The settings a checkpoint's tokenizer_config.json may carry: transformers ignores the clean-up on BPE
        # vocabularies unless told it may corrupt the output.
        out["variants"] = []
        for config in (dict(clean_up_tokenization_spaces=True),
                       dict(clean_up_tokenization_spaces=True,
                            clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output=True)):
            variant = AutoTokenizer.from_pretrained(folder, **config)
            out["variants"].append(dict(config=config, texts=[variant.decode(ids) for ids in sequences]))
        (folder / "reference").mkdir(exist_ok=True)
        with open(folder / "reference" / "decode.json", "w") as f:
            json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        print(f"{folder.name}: {N_SEQUENCES} sequences, vocab {vocab}, {type(tok).__name__}")


if __name__ == "__main__":
    main()
