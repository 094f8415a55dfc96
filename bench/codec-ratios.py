#!/usr/bin/env python3
"""Prints keepsake's codec figures next to the bare primitives, as ratios.

Reads the medians criterion left in target/criterion after
`cargo bench -p keepsake --bench codec`, so every figure comes from one run.
"""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"
PAIRS = [
    ("signed", "sign", "hmac_sha256_bare"),
    ("signed", "verify", "hmac_sha256_verify_bare"),
    ("sealed", "seal", "aes256gcmsiv_seal_bare"),
    ("sealed", "open", "aes256gcmsiv_open_bare"),
]


def median_ns(group, bench, size):
    path = ROOT / group / bench / str(size) / "new" / "estimates.json"
    return json.loads(path.read_text())["median"]["point_estimate"]


def main():
    sizes = sorted(
        {int(p.name) for p in (ROOT / "signed" / "sign").iterdir() if p.name.isdigit()}
    )
    print("| operation | payload | keepsake | bare primitive | ratio |")
    print("|---|---|---|---|---|")
    for group, ours, bare in PAIRS:
        for size in sizes:
            a, b = median_ns(group, ours, size), median_ns(group, bare, size)
            print(f"| {ours} | {size} B | {a:,.0f} ns | {b:,.0f} ns ({bare}) | {a / b:.2f}x |")


if __name__ == "__main__":
    sys.exit(main())
