#!/usr/bin/env python3
"""A small retrieval set for the int8 check: 300 passages from the load generator's seeded corpus
(12 to 60 words) and 48 queries, each 6 words drawn from one passage (its `relevant` index) and 2
from elsewhere, in shuffled order. Texts only: the check compares int8's top-10 neighbours with
float32's on the same server, whose vectors are themselves checked against sentence-transformers.

  python3 reference/make_retrieval.py > reference/retrieval.json
"""
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / ".." / ".." / "shared" / "bench"))
from loadgen import WORDS, make_corpus  # noqa: E402

words = WORDS.split() if isinstance(WORDS, str) else list(WORDS)
passages = [t for t, _ in make_corpus(300, 12, 60, 4321)]
rng = random.Random(7)
queries, relevant = [], []
for _ in range(48):
    p = rng.randrange(len(passages))
    own = rng.sample(passages[p].rstrip(".").split(), 6)
    query = own + rng.sample(words, 2)
    rng.shuffle(query)
    queries.append(" ".join(query))
    relevant.append(p)
json.dump({"queries": queries, "passages": passages, "relevant": relevant}, sys.stdout, indent=0)
print()
