#!/usr/bin/env python3
"""Prints keepsake's codec figures next to the bare primitives, as ratios.

Reads the medians criterion left in target/criterion after
`cargo bench -p keepsake --bench codec`, so every figure comes from one run,
and checks them against the targets: under 1.5x the bare primitive at 64 B,
under 1.2x at 3000 B (about the largest payload a cookie holds).
"""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"
TARGETS = {64: 1.5, 3000: 1.2}
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
    print("| operation | payload | keepsake | bare primitive | ratio | target |")
    print("|---|---|---|---|---|---|")
    missed = 0
    for group, ours, bare in PAIRS:
        for size in sizes:
            a, b = median_ns(group, ours, size), median_ns(group, bare, size)
            target = TARGETS.get(size)
            verdict = "-"
            if target is not None:
                met = a / b < target
                missed += not met
                verdict = f"< {target}x: {'met' if met else 'MISSED'}"
            print(
                f"| {ours} | {size} B | {a:,.0f} ns | {b:,.0f} ns ({bare}) "
                f"| {a / b:.2f}x | {verdict} |"
            )
    print(f"\n{missed} target(s) missed")


if __name__ == "__main__":
    sys.exit(main())
