#!/usr/bin/env bash
# Where one server's CPU time goes under the compare load: perf record of the
# server process while wrk drives one route, then the flat profile.
#
# usage: bash bench/compare/profile.sh APP STORE ROUTE [SECONDS]
#   APP STORE: keepsake memory|signed|sealed|sqlite, axum-bare none,
#              tower-sessions memory, actix-session cookie
#   ROUTE: /incr or /read
# Needs the binaries from bench/compare.sh (bench/target/release) and perf.
# Writes target/bench/profile-APP-STORE-ROUTE.txt (perf report --no-children,
# by symbol, and by shared object). The server is stopped by PID at the end.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/bench/compare
BIN=$ROOT/bench/target/release
APP=$1 STORE=$2 ROUTE=$3 SECONDS_=${4:-8}
PORT=18279
OUT=$ROOT/target/bench/profile-$APP-$STORE-${ROUTE#/}.txt
WORK=$(mktemp -d /tmp/keepsake-profile.XXXXXX)
mkdir -p "$ROOT/target/bench"
case $APP in
  axum-bare) cmd=("$BIN/axum-bare" "$PORT" 2) ;;
  keepsake) cmd=("$BIN/keepsake-server" "$PORT" 2 "$STORE")
    [[ $STORE == sqlite ]] && cmd+=("$WORK/sessions.db") ;;
  tower-sessions) cmd=("$BIN/tower-sessions-server" "$PORT" 2 "$STORE") ;;
  actix-session) cmd=("$BIN/actix-session-server" "$PORT" 2 "$STORE") ;;
  *) echo "unknown app $APP" >&2; exit 2 ;;
esac
case $STORE in none) mode=none ;; signed | sealed | cookie) mode=jar ;; *) mode=fixed ;; esac

"${cmd[@]}" >"$WORK/server.log" 2>&1 &
PID=$!
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
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
{
  grep '^RESULT' "$WORK/wrk.out" || true
  echo "== by symbol (self time)"
  perf report -q -i "$WORK/perf.data" --no-children --sort symbol --percent-limit 0.7 -g none 2>/dev/null | sed 's/ *-  *- *$//' 
  echo "== inclusive (self + callees) of the request path's parts"
  perf report -q -i "$WORK/perf.data" --children --sort symbol -g none 2>/dev/null | sed 's/ *-  *- *$//' |
    grep -E 'keepsake::|aes_gcm_siv|Aes256|hmac|sha2::|serde_json::|base64|hyper::proto::h1::(role|dispatch)|axum::routing|tower_sessions|actix_session|\[k\] (do_syscall_64|tcp_sendmsg|__x64_sys_recvfrom|schedule)$|(malloc|_int_free|cfree)' |
    grep -v -E '\{closure|\(inlined\)' | head -45
  echo "== by shared object"
  perf report -q -i "$WORK/perf.data" --no-children --sort dso -g none 2>/dev/null
} >"$OUT"
head -60 "$OUT"
echo "== wrote $OUT"
