#!/usr/bin/env python3
"""Writes N lines of seeded random lowercase words (about CHARS characters each): calibration or held-out texts
whose token count does not depend on any corpus. Usage: texts.py OUT N CHARS SEED"""
import random
import sys

out, n, chars, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
letters = "etaoinshrdlucmfwypvbgkjqxz"
weights = [12, 9, 8, 8, 7, 7, 6, 6, 6, 4, 4, 3, 3, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1]
with open(out, "w") as f:
    for _ in range(n):
        words, length = [], 0
        while length < chars:
            w = "".join(rng.choices(letters, weights, k=rng.randint(2, 9)))
            words.append(w)
            length += len(w) + 1
        f.write(" ".join(words) + "\n")
