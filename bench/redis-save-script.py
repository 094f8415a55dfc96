#!/usr/bin/env python3
"""Redis's own time per save in keepsake's `SAVE` script, measured inside Redis.

usage: python3 bench/redis-save-script.py [PORT] [ROUNDS] [SOURCE]

Runs the `SAVE` script of crates/keepsake/src/store/redis.rs (read from the
source, so it is always the current one; SOURCE names another copy of that
file, such as `git show OLD:crates/keepsake/src/store/redis.rs` saved, to
compare two versions) on the Redis at 127.0.0.1:PORT (default 6379), 16
saves per call as under load, in eight ways:

  header   the store has a copy of the session: it sends the exact stored
           header it expects, and the script only compares bytes and writes
  version  it has no copy: it sends the version alone, and the script parses
           the stored header and checks it
  and each of them on a connection with client tracking (`OPTIN NOLOOP`,
  `CLIENT CACHING YES` before each call, the read-back after each write: the
  store with its local cache, the default) and without (`with_local_cache(0)`);
  and all four for anonymous sessions and for sessions of a logged-in user
  (`Session::set_user`: each save also keeps the user's index set).

Each round runs every way once (3,000 calls), in turn; the figure is the
median over ROUNDS rounds (default 5) of Redis's `EVALSHA` time per save,
from `INFO commandstats` (read before and after, not reset). It writes only
keys under a fresh prefix `keepsake-lab-<random>:`, deleted at the end, in
database 15. Python 3 standard library only.
"""

import os
import re
import socket
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 6379
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
SOURCE = sys.argv[3] if len(sys.argv) > 3 else os.path.join(ROOT, "crates/keepsake/src/store/redis.rs")
BATCH = 16
CALLS = 3000
PIPELINE = 50


def save_script():
    """The SAVE script as the store sends it: its helper macros, then its body."""
    src = open(SOURCE).read()

    def macro(name):
        return re.search(r"macro_rules! " + name + r' \{\s*\(\) => \{\s*r?#?"(.*?)"#?\s*\};', src, re.S).group(1)

    body = re.search(r"static SAVE: LazyLock<Script>.*?lua_write!\(\),\s*r#\"(.*?)\"#", src, re.S).group(1)
    return macro("lua_refused_when_full").replace("\\n", "\n") + macro("lua_parse") + macro("lua_users") + macro("lua_write") + body


class Conn:
    """One RESP3 connection with pipelining; pushes (invalidations) are counted and skipped."""

    def __init__(self):
        self.sock = socket.create_connection(("127.0.0.1", PORT))
        self.file = self.sock.makefile("rb")
        self.pushes = 0
        self.call("HELLO", "3")
        self.call("SELECT", "15")

    def send(self, commands):
        out = bytearray()
        for args in commands:
            out += b"*%d\r\n" % len(args)
            for arg in args:
                arg = arg if isinstance(arg, bytes) else str(arg).encode()
                out += b"$%d\r\n%s\r\n" % (len(arg), arg)
        self.sock.sendall(out)

    def reply(self):
        while True:
            value, push = self._read()
            if not push:
                return value
            self.pushes += 1

    def _read(self):
        line = self.file.readline()
        kind, rest = line[:1], line[1:-2]
        if kind in (b"+", b":", b",", b"#", b"("):
            return (int(rest) if kind == b":" else rest.decode()), False
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b"_":
            return None, False
        if kind in (b"$", b"=", b"!"):
            n = int(rest)
            if n < 0:
                return None, False
            data = self.file.read(n + 2)[:-2]
            return data.decode(errors="replace"), False
        if kind in (b"*", b">", b"~"):
            items = [self._read()[0] for _ in range(int(rest))]
            return items, kind == b">"
        if kind == b"%":
            items = [self._read()[0] for _ in range(2 * int(rest))]
            return dict(zip(items[::2], items[1::2])), False
        raise RuntimeError(f"unexpected reply {line!r}")

    def call(self, *args):
        self.send([args])
        return self.reply()


def evalsha_stats(conn):
    info = conn.call("INFO", "commandstats")
    found = re.search(r"cmdstat_evalsha:calls=(\d+),usec=(\d+)", info)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def main():
    conn = Conn()
    sha = conn.call("SCRIPT", "LOAD", save_script())
    prefix = "keepsake-lab-%s:" % os.urandom(6).hex()
    now = int(time.time())
    ids = ["%022d" % i for i in range(BATCH)]
    keys = [f"{prefix}session:{id_}" for id_ in ids]

    user_hex = b"ada".hex()

    def header(version, user):
        return '{"format":1,"version":%d,"absolute_deadline":%d,"idle_deadline":%d,"user_hex":%s,' % (
            version, now + 14 * 86400, now + 1800, '"%s"' % user_hex if user else "null")

    def value(id_, version, user):
        return header(version, user) + '"id":"%s","created_at":%d,"idle_timeout":1800,"persistent":false,"data":{"count":%d}}' % (
            id_, now, version)

    def run(expect_header, tracked, user):
        versions = [1] * BATCH
        conn.send([("SET", key, value(id_, 1, user)) for key, id_ in zip(keys, ids)])
        for _ in keys:
            conn.reply()
        conn.call("DEL", f"{prefix}user:ada")
        if tracked:
            conn.call("CLIENT", "TRACKING", "ON", "OPTIN", "NOLOOP")
        before = evalsha_stats(conn)
        done = 0
        while done < CALLS:
            commands = []
            for _ in range(PIPELINE):
                if tracked:
                    commands.append(("CLIENT", "CACHING", "YES"))
                args = ["EVALSHA", sha, BATCH, *keys, "1" if tracked else "0"]
                for i, id_ in enumerate(ids):
                    expected = header(versions[i], user) if expect_header else versions[i]
                    args += [expected, value(id_, versions[i] + 1, user), now, now + 1800, "=" + user_hex if user else ""]
                    versions[i] += 1
                commands.append(args)
            conn.send(commands)
            for args in commands:
                result = conn.reply()
                if args[0] == "EVALSHA" and result != [1] * BATCH:
                    raise RuntimeError(f"SAVE answered {result}")
            done += PIPELINE
        after = evalsha_stats(conn)
        if tracked:
            conn.call("CLIENT", "TRACKING", "OFF")
        return (after[1] - before[1]) / ((after[0] - before[0]) * BATCH)

    ways = [(h, t, u) for u in (False, True) for t in (True, False) for h in (True, False)]
    results = {way: [] for way in ways}
    for _ in range(ROUNDS):
        for way in ways:
            results[way].append(run(*way))
    conn.call("DEL", *keys, f"{prefix}user:ada")
    version = re.search(r"redis_version:(\S+)", conn.call("INFO", "server")).group(1)
    print(f"Redis {version} on 127.0.0.1:{PORT}: EVALSHA time per save, {BATCH} saves per call, "
          f"{CALLS} calls per way and round, medians of {ROUNDS} rounds; script from {SOURCE}")
    print("| session | expected | tracking (cache on) | µs per save | per round |")
    print("|---|---|---|---|---|")
    for (h, t, u), values in results.items():
        print(f"| {'user' if u else 'anonymous'} | {'header' if h else 'version'} | {'yes' if t else 'no'} | "
              f"{statistics.median(values):.2f} | "
              + " / ".join(f"{v:.2f}" for v in values) + " |")
    if conn.pushes:
        print(f"({conn.pushes} invalidation pushes received)")


if __name__ == "__main__":
    main()
