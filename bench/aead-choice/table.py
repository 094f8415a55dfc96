#!/usr/bin/env python3
"""Print the README's median table from target/criterion (run after `cargo bench`).

Usage: python3 table.py [criterion-dir]   (default: target/criterion)
"""
import glob, json, os, sys

root = sys.argv[1] if len(sys.argv) > 1 else "target/criterion"
med = {}
for f in glob.glob(os.path.join(root, "**", "new", "benchmark.json"), recursive=True):
    b = json.load(open(f))
    e = json.load(open(os.path.join(os.path.dirname(f), "estimates.json")))
    med[(b["group_id"], b["function_id"])] = e["median"]["point_estimate"]

cols = [f"{op}/{n}" for op in ("seal", "open") for n in (64, 512, 3072)]
impls = sorted({fn for (g, fn) in med if g != "baseline"},
               key=lambda fn: med.get(("seal/512", fn), 0))
print("| AEAD | " + " | ".join(c.replace("/", " ") + " B" for c in cols) + " |")
print("|---" * (len(cols) + 1) + "|")
for fn in impls:
    cells = [f"{med[(c, fn)]:.0f}" if (c, fn) in med else "–" for c in cols]
    print(f"| {fn} | " + " | ".join(cells) + " |")
base = sorted(fn for (g, fn) in med if g == "baseline")
if base:
    print()
    print("baseline: " + ", ".join(f"{fn} {med[('baseline', fn)]:.1f} ns" for fn in base))
