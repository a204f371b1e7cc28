"""The planted corpus is deterministic and its score counts what it claims."""

from support import planted

PARAS = [" ".join(f"word{i}x{j} the of and" for j in range(60)) for i in range(40)]


def test_build_is_deterministic_and_plants_every_kind():
    a = planted.build(PARAS, 400, seed=3, exact_rate=0.2, near_rate=0.2, junk_rate=0.2, malformed_rate=0.05)
    b = planted.build(PARAS, 400, seed=3, exact_rate=0.2, near_rate=0.2, junk_rate=0.2, malformed_rate=0.05)
    assert a.lines == b.lines
    counts = a.counts()
    assert all(counts[k] > 0 for k in ("original", "exact", "near", "short", "spam", "blob", "malformed"))


def test_score_judges_pairs_with_a_survivor_and_counts_junk_and_originals():
    c = planted.PlantedCorpus(lines=[])
    c.category = {"o1": "original", "o2": "original", "o3": "original", "e1": "exact", "e2": "exact",
                  "e3": "exact", "j1": "spam"}  # fmt: skip
    c.ref = {"e1": "o1", "e2": "o2", "e3": "o3"}
    s = planted.score(c, ["o1", "o2", "e2", "j1"])  # e1 resolved, e2 not, e3 and o3 both filtered
    assert (s["exact_resolved"], s["exact_filtered"]) == (0.5, 1)
    assert s["junk_removed"] == 0.0 and abs(s["originals_kept"] - 2 / 3) < 1e-9
