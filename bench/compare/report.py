#!/usr/bin/env python3
"""Summarise bench/compare.sh measurements.

Reads the per-measurement TSV and writes, in --out-dir:
  compare.json  [{"app", "store", "route", "rps", "p99_ms", "redis_cmds_per_req"}]
                medians over the repetitions; redis_cmds_per_req is the number of
                commands the app sent to Redis per request (null without Redis)
  compare.md    the tables: figures, ratios to bare axum and to each peer, the
                issue's targets checked one by one
"""

import argparse
import json
import os
import platform
import statistics
import subprocess


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def num(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def fmt0(x):
    return "?" if x is None else f"{x:.0f}"


def cpu_us(r, column):
    share, rps = num(r[column]), num(r["rps"])
    if share is None or not rps:
        return None
    return share / 100 * (os.cpu_count() or 1) / rps * 1e6


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:  # noqa: BLE001 (a missing tool only drops a line)
        return ""


ORDER = [
    ("axum-bare", "none"),
    ("keepsake", "memory"), ("keepsake", "sqlite"), ("keepsake", "redis"), ("keepsake", "postgres"),
    ("keepsake", "signed"), ("keepsake", "sealed"),
    ("tower-sessions", "memory"), ("tower-sessions", "redis"),
    ("actix-session", "cookie"), ("actix-session", "redis"),
    ("flask", "cookie"),
]
PEERS = [k for k in ORDER if k[0] not in ("axum-bare", "keepsake")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rows")
    ap.add_argument("--out-dir", required=True)
    for opt in ("started", "load-start", "load-end", "duration", "warmup", "reps", "threads", "conns",
                "workers", "sessions"):
        ap.add_argument(f"--{opt}", default="?")
    a = ap.parse_args()

    with open(a.rows) as f:
        head = f.readline().rstrip("\n").split("\t")
        rows = [dict(zip(head, line.rstrip("\n").split("\t"))) for line in f if line.strip()]

    groups = {}
    for r in rows:
        groups.setdefault((r["app"], r["store"], r["route"]), []).append(r)
    keys = sorted(groups, key=lambda k: (ORDER.index(k[:2]) if k[:2] in ORDER else 99, k[2] != "incr"))

    summary = {}
    for k in keys:
        g = groups[k]
        summary[k] = {
            "rps": median(num(r["rps"]) for r in g),
            "rps_all": [num(r["rps"]) for r in g],
            "p99_ms": median(num(r["p99_us"]) / 1000 for r in g),
            "p50_ms": median(num(r["p50_us"]) / 1000 for r in g),
            "sent": median(num(r["redis_sent_per_req"]) for r in g),
            "all": median(num(r["redis_all_per_req"]) for r in g),
            "detail": g[0]["redis_detail"],
            "errors": sum(int(num(r["errors"]) or 0) + int(num(r["status_errors"]) or 0) for r in g),
            "requests": sum(int(num(r["requests"]) or 0) for r in g),
            "set_cookie": sum(int(num(r["set_cookies"]) or 0) for r in g)
            / max(1, sum(int(num(r["requests"]) or 0) for r in g)),
            "check": ",".join(sorted({r["check"] for r in g})),
            "cpu": "/".join(fmt0(median(num(r[c]) for r in g)) for c in ("server_cpu", "wrk_cpu", "redis_cpu", "other_cpu")),
            "loadavg": "/".join(r["loadavg"] for r in g),
            # CPU time per request (µs): share of the machine x CPUs / req/s
            "server_us": median(cpu_us(r, "server_cpu") for r in g),
            "redis_us": median(cpu_us(r, "redis_cpu") for r in g),
        }

    out_json = [
        {
            "app": k[0],
            "store": k[1],
            "route": k[2],
            "rps": round(s["rps"], 1),
            "p99_ms": round(s["p99_ms"], 3),
            "redis_cmds_per_req": None if s["sent"] is None else round(s["sent"], 3),
        }
        for k, s in summary.items()
    ]
    os.makedirs(a.out_dir, exist_ok=True)
    with open(os.path.join(a.out_dir, "compare.json"), "w") as f:
        json.dump(out_json, f, indent=2)
        f.write("\n")

    def rps(app, store, route):
        s = summary.get((app, store, route))
        return s["rps"] if s else None

    def ratio(x, y):
        return f"{x / y:.2f}x" if x and y else "-"

    table = [
        "| app | store | route | req/s (median) | req/s per rep | x bare | p50 ms | p99 ms "
        "| Redis cmds/req sent (all counted) | errors | Set-Cookie/resp | check | CPU% server/wrk/redis/other "
        "| CPU µs/req server (redis) |",
        "|" + "---|" * 14,
    ]
    for k, s in summary.items():
        bare = rps("axum-bare", "none", k[2])
        redis = "-" if s["sent"] is None else f"{s['sent']:.2f} ({s['all']:.2f}: {s['detail'].replace(',', ' ')})"
        table.append(
            f"| {k[0]} | {k[1]} | /{k[2]} | {s['rps']:,.0f} | {' / '.join(f'{x:,.0f}' for x in s['rps_all'])} "
            f"| {ratio(s['rps'], bare)} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {redis} | {s['errors']} "
            f"| {s['set_cookie']:.2f} | {s['check']} | {s['cpu']} | {fmt0(s['server_us'])}"
            + (f" ({s['redis_us']:.0f})" if k[1] == "redis" and s["redis_us"] is not None else "") + " |")

    peers_present = [p for p in PEERS if any((p[0], p[1], r) in summary for r in ("incr", "read"))]
    ratios = [
        "| " + " | ".join(["keepsake store", "route", "x axum-bare"] + [f"x {p[0]} {p[1]}" for p in peers_present]) + " |",
        "|" + "---|" * (3 + len(peers_present)),
    ]
    for k, s in summary.items():
        if k[0] != "keepsake":
            continue
        cells = [ratio(s["rps"], rps("axum-bare", "none", k[2]))]
        cells += [ratio(s["rps"], rps(p[0], p[1], k[2])) for p in peers_present]
        ratios.append(f"| {k[1]} | /{k[2]} | " + " | ".join(cells) + " |")

    targets = []

    def target(text, value, goal, ok):
        if value is None:
            targets.append(f"| {text} | not measured | {goal} | - |")
        else:
            targets.append(f"| {text} | {value} | {goal} | {'met' if ok else '**not met**'} |")

    def vs(x, y):
        return None if not x or not y else x / y

    for route, goal in (("incr", 0.85), ("read", 0.9)):
        r = vs(rps("keepsake", "memory", route), rps("axum-bare", "none", route))
        target(f"keepsake memory /{route} / bare axum", r and f"{r:.2f}x", f">= {goal}x", r is not None and r >= goal)
    for store in ("signed", "sealed"):
        r = vs(rps("keepsake", store, "incr"), rps("axum-bare", "none", "incr"))
        target(f"keepsake {store} /incr / bare axum", r and f"{r:.2f}x", ">= 0.85x", r is not None and r >= 0.85)
    for route, cmds in (("incr", 2), ("read", 1)):
        peer = [(rps(p, "redis", route), p) for p in ("tower-sessions", "actix-session")]
        peer = max((x for x in peer if x[0]), default=(None, None))
        r = vs(rps("keepsake", "redis", route), peer[0])
        name = f" ({peer[1]})" if peer[1] else ""
        target(f"keepsake redis /{route} / best Redis peer{name}", r and f"{r:.2f}x", ">= 1.3x",
               r is not None and r >= 1.3)
        s = summary.get(("keepsake", "redis", route))
        sent = s["sent"] if s else None
        target(f"keepsake redis /{route}: Redis commands sent per request", None if sent is None else f"{sent:.2f}",
               f"<= {cmds}", sent is not None and sent <= cmds + 0.005)
    r = vs(rps("keepsake", "sqlite", "incr"), rps("tower-sessions", "redis", "incr"))
    target("keepsake sqlite /incr / tower-sessions redis /incr", r and f"{r:.2f}x", ">= 1.0x", r is not None and r >= 1.0)

    cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    wrk = sh("dpkg-query -W -f='${Version}' wrk") or "?"
    redis = (sh("redis-server --version").split(" ") + ["?"] * 3)[2]
    versions = [
        f"rustc: {sh('rustc --version')}",
        f"wrk: {wrk}",
        f"redis-server: {redis}",
        f"python: {platform.python_version()}",
    ]
    md = [
        f"Run: {a.started}; load average {a.load_start} at the start, {a.load_end} at the end. "
        f"Machine: {cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}.",
        "",
        f"wrk -t{a.threads} -c{a.conns}, {a.duration} s measured after {a.warmup} s warm-up per route, "
        f"{a.reps} repetition(s) (every server restarted per repetition; medians shown), "
        f"{a.workers} server workers, {a.sessions} server-side sessions per wrk thread.",
        "",
        *table,
        "",
        "Ratios of median req/s (same route):",
        "",
        *ratios,
        "",
        "The issue's targets:",
        "",
        "| target | measured | goal | |",
        "|---|---|---|---|",
        *targets,
        "",
        "Versions: " + "; ".join(versions) + ".",
        "",
    ]
    with open(os.path.join(a.out_dir, "compare.md"), "w") as f:
        f.write("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
