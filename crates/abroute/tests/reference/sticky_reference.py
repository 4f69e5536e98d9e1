#!/usr/bin/env python3
"""Independent reference implementation of abroute's sticky assignment (abroute-sticky-v1).

Written from the specification in docs/sticky.md, not from the Rust code: it builds each
table by the definition (take (variant, rank) pairs in increasing order; a pair claims its
slot when the slot is free and the variant is below its quota) with a plain heap merge, where
the Rust crate finishes the race by deferred acceptance. Both must give the unique stable
matching, so any difference is a bug on one side.

Usage:
    python3 sticky_reference.py GOLDEN.json            # verify every case and row
    python3 sticky_reference.py GOLDEN.json --quiet    # only the summary line

Needs Python 3.8+ and the `xxhash` package from PyPI (`pip install xxhash`), which wraps the
reference C implementation of XXH3. Exit status: 0 when everything matches, 1 on any
mismatch, 2 when `xxhash` is missing or the file cannot be read.
"""

import heapq
import json
import sys

try:
    import xxhash
except ImportError:  # pragma: no cover - reported to the caller
    print("sticky_reference: the Python package 'xxhash' is missing (pip install xxhash)")
    sys.exit(2)

MASK64 = (1 << 64) - 1
SLOT_BITS = 16
SLOTS = 1 << SLOT_BITS
HALF_BITS = SLOT_BITS // 2
HALF_MASK = (1 << HALF_BITS) - 1
ROUNDS = 4
GAMMA = 0x9E3779B97F4A7C15
VARIANT_DOMAIN = 0x7661_7269_616E_7421  # b"variant!" read as a big-endian integer
SCORE_ONE = 1 << 48


def xxh3_64(data: bytes, seed: int) -> int:
    """XXH3-64 of `data` with a 64-bit seed, as an unsigned integer."""
    return xxhash.xxh3_64_intdigest(data, seed=seed)


def mix64(z: int) -> int:
    """SplitMix64's output function."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def exp_scores():
    """F[r] = sum over m from N - r to N of floor(2^48 / m), for r in 0..N."""
    out = []
    acc = 0
    for r in range(SLOTS):
        acc += SCORE_ONE // (SLOTS - r)
        out.append(acc)
    return out


F = exp_scores()


class Variant:
    def __init__(self, index: int, vid: str, weight: int, salt_seed: int):
        self.index = index
        self.id = vid
        self.id_bytes = vid.encode("utf-8")
        self.weight = weight
        self.hash = xxh3_64(self.id_bytes, salt_seed ^ VARIANT_DOMAIN)
        self.round_keys = [
            mix64((self.hash + (t + 1) * GAMMA) & MASK64) for t in range(ROUNDS)
        ]
        # The round function f_t(x) = top 8 bits of mix64(k_t XOR x), tabulated.
        self.rounds = [
            [mix64(k ^ x) >> (64 - HALF_BITS) for x in range(1 << HALF_BITS)]
            for k in self.round_keys
        ]
        self.factor = MASK64 // weight if weight > 0 else 0

    def rank_of(self, slot: int) -> int:
        left, right = slot >> HALF_BITS, slot & HALF_MASK
        for table in self.rounds:
            left, right = right, left ^ table[right]
        return (left << HALF_BITS) | right

    def slot_at(self, rank: int) -> int:
        left, right = rank >> HALF_BITS, rank & HALF_MASK
        for table in reversed(self.rounds):
            left, right = right ^ table[left], left
        return (left << HALF_BITS) | right

    def order_key(self, rank: int):
        """A pair's place in the total order: (score, variant hash, id bytes)."""
        return (F[rank] * self.factor, self.hash, self.id_bytes)


def quotas(variants):
    total = sum(v.weight for v in variants)
    quota = [SLOTS * v.weight // total for v in variants]
    left = SLOTS - sum(quota)
    by_remainder = sorted(
        variants, key=lambda v: (-(SLOTS * v.weight % total), v.hash, v.id_bytes)
    )
    for v in by_remainder[:left]:
        quota[v.index] += 1
    return quota


def build(salt: bytes, spec):
    """Returns (salt_seed, variants, quota, owner) for one route."""
    salt_seed = xxh3_64(salt, 0)
    variants = [Variant(i, vid, w, salt_seed) for i, (vid, w) in enumerate(spec)]
    quota = quotas(variants)
    owner = [-1] * SLOTS
    left = list(quota)
    heap = []
    for v in variants:
        if quota[v.index] > 0:
            heap.append((v.order_key(0), v.index, 0))
    heapq.heapify(heap)
    while heap:
        _, i, rank = heap[0]
        v = variants[i]
        slot = v.slot_at(rank)
        if owner[slot] < 0:
            owner[slot] = i
            left[i] -= 1
        if left[i] == 0 or rank + 1 == SLOTS:
            heapq.heappop(heap)
        else:
            heapq.heapreplace(heap, (v.order_key(rank + 1), i, rank + 1))
    return salt_seed, variants, quota, owner


def fallbacks(variants, bucket: int, assigned: int):
    others = [v for v in variants if v.weight > 0 and v.index != assigned]
    others.sort(key=lambda v: v.order_key(v.rank_of(bucket)))
    return [v.index for v in others]


def table_digest(owner) -> int:
    data = b"".join(o.to_bytes(2, "little") for o in owner)
    return xxh3_64(data, 0)


def row_key(row) -> bytes:
    if "key_hex" in row:
        return bytes.fromhex(row["key_hex"])
    return row["key"].encode("utf-8")


def check_case(case, quiet: bool):
    salt = case["salt"].encode("utf-8")
    spec = [(v["id"], v["weight"]) for v in case["variants"]]
    salt_seed, variants, quota, owner = build(salt, spec)
    ids = [v.id for v in variants]
    problems = []
    if quota != case["slot_counts"]:
        problems.append("slot_counts %r != %r" % (quota, case["slot_counts"]))
    counts = [0] * len(variants)
    for o in owner:
        counts[o] += 1
    if counts != quota:
        problems.append("owned slots %r do not meet the quotas %r" % (counts, quota))
    digest = "%016x" % table_digest(owner)
    if digest != case["table_xxh3"]:
        problems.append("table_xxh3 %s != %s" % (digest, case["table_xxh3"]))
    passed = failed = 0
    for row in case["rows"]:
        key = row_key(row)
        key_hash = xxh3_64(key, salt_seed)
        bucket = key_hash >> (64 - SLOT_BITS)
        variant = owner[bucket]
        got = {
            "key_hash": "%016x" % key_hash,
            "bucket": bucket,
            "variant_id": ids[variant],
            "fallbacks": [ids[i] for i in fallbacks(variants, bucket, variant)],
        }
        bad = [f for f in got if got[f] != row[f]]
        if bad:
            failed += 1
            problems.append(
                "key %r: %s"
                % (key[:40], ", ".join("%s %r != %r" % (f, got[f], row[f]) for f in bad))
            )
        else:
            passed += 1
    if not quiet:
        status = "ok" if not problems else "MISMATCH"
        print("%-32s %3d rows  %s" % (case["name"], len(case["rows"]), status))
    return passed, failed, problems


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    quiet = "--quiet" in argv
    if len(args) != 1:
        print(__doc__)
        return 2
    try:
        with open(args[0], encoding="utf-8") as f:
            golden = json.load(f)
    except (OSError, ValueError) as e:
        print("sticky_reference: cannot read %s: %s" % (args[0], e))
        return 2
    if golden.get("algorithm") != "abroute-sticky-v1" or golden.get("slots") != SLOTS:
        print("sticky_reference: not an abroute-sticky-v1 golden file")
        return 2
    passed = failed = 0
    problems = []
    for case in golden["cases"]:
        p, f, pr = check_case(case, quiet)
        passed += p
        failed += f
        problems.extend("%s: %s" % (case["name"], x) for x in pr)
    for p in problems[:50]:
        print("  " + p)
    # Case-level problems (quotas, digests) count as failures too.
    failed = max(failed, 1) if problems else failed
    print("sticky reference: %d passed, %d failed" % (passed, failed))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
