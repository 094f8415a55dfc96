#!/usr/bin/env bash
# Where one server's CPU time goes under the compare load: perf record of the
# server process while wrk drives one route, then the flat profile.
#
# usage: bash bench/compare/profile.sh APP STORE ROUTE [SECONDS]
#   APP STORE: keepsake memory|signed|sealed|sqlite|redis, axum-bare none,
#              tower-sessions memory|redis, actix-session cookie|redis
#              (redis: a dedicated redis-server on a free port from 16480,
#              no persistence, stopped by PID at the end)
#   ROUTE: /incr or /read
# Needs the binaries from bench/compare.sh (bench/target/release) and perf.
# Writes target/bench/profile-APP-STORE-ROUTE.txt (perf report --no-children,
# by symbol, and by shared object), and with PROFILE_DATA=FILE keeps the
# perf.data there for `perf report -i FILE`. The server is stopped by PID at
# the end.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/bench/compare
BIN=$ROOT/bench/target/release
APP=$1 STORE=$2 ROUTE=$3 SECONDS_=${4:-8}
PORT=18279
OUT=$ROOT/target/bench/profile-$APP-$STORE-${ROUTE#/}.txt
WORK=$(mktemp -d /tmp/keepsake-profile.XXXXXX)
mkdir -p "$ROOT/target/bench"
PID="" REDIS_PID=""
stop() {
  for pid in "$PID" "$REDIS_PID"; do
    if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  done
  rm -rf "$WORK"
}
trap stop EXIT
case $APP in
  axum-bare) cmd=("$BIN/axum-bare" "$PORT" 2) ;;
  keepsake) cmd=("$BIN/keepsake-server" "$PORT" 2 "$STORE") ;;
  tower-sessions) cmd=("$BIN/tower-sessions-server" "$PORT" 2 "$STORE") ;;
  actix-session) cmd=("$BIN/actix-session-server" "$PORT" 2 "$STORE") ;;
  *) echo "unknown app $APP" >&2; exit 2 ;;
esac
case $STORE in
  sqlite) cmd+=("$WORK/sessions.db") ;;
  redis)
    REDIS_PORT=16480
    while ss -ltnH "sport = :$REDIS_PORT" | grep -q .; do REDIS_PORT=$((REDIS_PORT + 1)); done
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
      --dir "$WORK" --logfile "$WORK/redis.log" >/dev/null 2>&1 &
    REDIS_PID=$!
    for _ in $(seq 50); do
      kill -0 "$REDIS_PID" 2>/dev/null || break
      redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
      sleep 0.1
    done
    # The server answering must be the one started here (alive, and INFO
    # server gives its PID): if another took the port first, ours did not
    # bind, and the app must not write its sessions into that one.
    answer=$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" INFO server 2>/dev/null | tr -d '\r' | sed -n 's/^process_id://p')
    if ! kill -0 "$REDIS_PID" 2>/dev/null || [[ "$answer" != "$REDIS_PID" ]]; then
      echo "redis-server (pid $REDIS_PID) did not start on 127.0.0.1:$REDIS_PORT, or another server answers there:" >&2
      cat "$WORK/redis.log" >&2 2>/dev/null || true
      exit 1
    fi
    cmd+=("redis://127.0.0.1:$REDIS_PORT") ;;
esac
case $STORE in none) mode=none ;; signed | sealed | cookie) mode=jar ;; *) mode=fixed ;; esac

"${cmd[@]}" >"$WORK/server.log" 2>&1 &
PID=$!
for _ in $(seq 100); do curl -s -o /dev/null -m 1 "http://127.0.0.1:$PORT/read" && break; sleep 0.1; done
cookies=()
n=2; [[ $mode == fixed ]] && n=64
if [[ $mode != none ]]; then
  for _ in $(seq $n); do
    cookies+=("$(curl -s -D - -o /dev/null "http://127.0.0.1:$PORT/incr" | tr -d '\r' |
      awk 'tolower($1) == "set-cookie:" { sub(/^[^:]*:[ ]*/, ""); sub(/;.*/, ""); print; exit }')")
  done
fi
wrk -t2 -c64 -d"$((SECONDS_ + 2))s" -s "$HERE/sessions.lua" "http://127.0.0.1:$PORT" -- "$ROUTE" "$mode" 2 "${cookies[@]}" >"$WORK/wrk.out" &
WRK=$!
sleep 1
perf record -q -F 499 --call-graph dwarf,32768 -p "$PID" -o "$WORK/perf.data" -- sleep "$SECONDS_" 2>/dev/null
wait "$WRK" || true
if [[ -n ${PROFILE_DATA:-} ]]; then cp "$WORK/perf.data" "$PROFILE_DATA"; fi
{
  grep '^RESULT' "$WORK/wrk.out" || true
  echo "== by symbol (self time)"
  perf report -q -i "$WORK/perf.data" --no-children --sort symbol --percent-limit 0.7 -g none 2>/dev/null | sed 's/ *-  *- *$//' 
  echo "== inclusive (self + callees) of the request path's parts"
  perf report -q -i "$WORK/perf.data" --children --sort symbol -g none 2>/dev/null | sed 's/ *-  *- *$//' |
    grep -E 'keepsake::|aes_gcm_siv|Aes256|hmac|sha2::|serde_json::|base64|hyper::proto::h1::(role|dispatch)|axum::routing|tower_sessions|actix_session|redis::|fred::|\[k\] (do_syscall_64|tcp_sendmsg|__x64_sys_recvfrom|schedule)$|(malloc|_int_free|cfree)' |
    grep -v -E '\{closure|\(inlined\)' | awk 'NR <= 45'
  echo "== by shared object"
  perf report -q -i "$WORK/perf.data" --no-children --sort dso -g none 2>/dev/null
} >"$OUT"
head -60 "$OUT"
echo "== wrote $OUT"
