#!/usr/bin/env bash
# keepsake next to bare axum, tower-sessions, actix-session and Flask: the same
# two routes, on 127.0.0.1, in one invocation. See BENCHMARKS.md ("Per-request
# cost next to other session layers") for the method and the figures.
#
#   GET /incr  read a counter in the session, add one, store it (keepsake:
#              Session::update; the peers: get + insert)
#   GET /read  read it only (no Set-Cookie)
#
# usage: bash bench/compare.sh
# env (defaults are a short smoke run; the real run used
#      BENCH_DURATION=10 BENCH_REPS=3 BENCH_WARMUP=2):
#   BENCH_DURATION=3   seconds measured per route and repetition
#   BENCH_WARMUP=1     seconds of load before each measurement (not counted)
#   BENCH_REPS=1       repetitions (each restarts every server); medians reported
#   BENCH_THREADS=2 BENCH_CONNS=64   wrk threads and connections
#   BENCH_WORKERS=2    server worker threads / actix workers / gunicorn processes
#   BENCH_SESSIONS=    server-side sessions per wrk thread (default CONNS/THREADS:
#                      about one session per connection)
#   BENCH_ONLY=.       regex on "app/store": run a subset
#   BENCH_SKIP_BUILD=1 do not run cargo build (binaries must exist)
#   BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test  ("" skips keepsake/postgres;
#                      the store works in a schema of its own, dropped at the end with psql)
#   BENCH_REDIS_PORT=  port for the dedicated redis-server (default: a free one from 16380);
#                      refused if something already listens there
#   BENCH_QUIET_MAX=0  before each route wait up to this many seconds for other
#                      processes to use < 10% of the machine
#   BENCH_OUT=target/bench  where the results go
# Writes target/bench/compare.json (median per app/store/route), compare.md (the
# table), compare-rows.tsv (every measurement) and logs under target/bench/compare-logs/.
# The previous run's files there are removed first, so an interrupted run leaves
# no compare.json behind (only the rows measured so far).
#
# An app that does not start, fails its curl check (/incr /incr /read /read must
# give 1 2 2 2, no Set-Cookie on /read) or gives no wrk result does not stop the
# run: a failed check is still measured, and its rows stay in compare-rows.tsv
# (column check = FAIL(...)), but compare.json and compare.md leave them out.
# At the end the script lists every such app and exits 1.
#
# Every server, and the dedicated redis-server (the machine's own Redis is not
# touched: the script checks that the server answering on its port is the
# process it started before it sends FLUSHALL), is started here and stopped by
# PID, also on Ctrl-C or error. Every wrk run stops by itself after its duration.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HERE=$ROOT/bench/compare
DURATION=${BENCH_DURATION:-3}
WARMUP=${BENCH_WARMUP:-1}
REPS=${BENCH_REPS:-1}
THREADS=${BENCH_THREADS:-2}
CONNS=${BENCH_CONNS:-64}
WORKERS=${BENCH_WORKERS:-2}
SESSIONS=${BENCH_SESSIONS:-$((CONNS / THREADS))}
ONLY=${BENCH_ONLY:-.}
PG_URL=${BENCH_POSTGRES_URL-postgres://postgres@127.0.0.1:5432/test}
QUIET_MAX=${BENCH_QUIET_MAX:-0}
OUT=${BENCH_OUT:-$ROOT/target/bench}
LOGS=$OUT/compare-logs
BIN=$ROOT/bench/target/release
VENV=$ROOT/target/bench/venv
WORK=$(mktemp -d /tmp/keepsake-compare.XXXXXX)
PG_SCHEMA=keepsake_compare_$$
HZ=$(getconf CLK_TCK)
ROWS=$OUT/compare-rows.tsv
# The previous run's outputs go first: nothing left over can pass for this run's.
rm -f "$OUT/compare.json" "$OUT/compare.md" "$ROWS"
rm -rf "$LOGS"
mkdir -p "$OUT" "$LOGS"
# keepsake/postgres's URL: its own schema, after any parameters already there
if [[ $PG_URL == *\?* ]]; then PG_STORE_URL="$PG_URL&schema=$PG_SCHEMA"; else PG_STORE_URL="$PG_URL?schema=$PG_SCHEMA"; fi
PG_USED=""  # set once keepsake/postgres has started: the schema may exist

for tool in wrk redis-server redis-cli curl python3 cargo ss; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y wrk redis-server curl iproute2)" >&2; exit 1; }
done

# ------------------------------------------------------------------ cleanup
SERVER_PID=""
REDIS_PID=""
MONITOR_PID=""
stop_pid() {  # stop one process we started, by PID, and reap it
  local pid=$1
  [[ -n "$pid" ]] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
  fi
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  stop_pid "$MONITOR_PID"; MONITOR_PID=""
  stop_pid "$SERVER_PID"; SERVER_PID=""
  stop_pid "$REDIS_PID"; REDIS_PID=""
  if [[ -n "$PG_USED" ]]; then
    if ! command -v psql >/dev/null; then
      echo "!! psql is not installed: schema $PG_SCHEMA is LEFT in $PG_URL;" \
        "drop it with: DROP SCHEMA $PG_SCHEMA CASCADE" >&2
    elif ! psql -q "$PG_URL" -c "DROP SCHEMA IF EXISTS $PG_SCHEMA CASCADE" >"$WORK/psql.out" 2>&1; then
      echo "!! could not drop schema $PG_SCHEMA in $PG_URL (psql: $(tr '\n' ' ' <"$WORK/psql.out"));" \
        "if keepsake/postgres created it, drop it with: DROP SCHEMA $PG_SCHEMA CASCADE" >&2
    fi
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ build
if [[ -z "${BENCH_SKIP_BUILD:-}" ]]; then
  echo "== cargo build --release --locked (bench/compare, standalone; target dir bench/target)"
  (cd "$HERE" && CARGO_TARGET_DIR=$ROOT/bench/target cargo build --release --locked --quiet)
fi
# Only when Flask is measured (BENCH_ONLY may leave it out).
if [[ "flask/cookie" =~ $ONLY && ! -x "$VENV/bin/gunicorn" ]]; then
  echo "== creating $VENV (Flask + gunicorn, pinned in bench/compare/flask/requirements.txt)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r "$HERE/flask/requirements.txt"
fi
if [[ -n "$PG_URL" && "keepsake/postgres" =~ $ONLY ]] && ! command -v psql >/dev/null; then
  echo "!! psql is not installed: keepsake/postgres's schema $PG_SCHEMA will be LEFT in $PG_URL" \
    "(install postgresql-client, or set BENCH_POSTGRES_URL= to skip PostgreSQL)" >&2
fi

# ------------------------------------------------------------------ dedicated Redis
port_free() { ! ss -ltnH "sport = :$1" | grep -q .; }
REDIS_PORT=${BENCH_REDIS_PORT:-}
if [[ -n "$REDIS_PORT" ]]; then
  if ! port_free "$REDIS_PORT"; then
    echo "BENCH_REDIS_PORT=$REDIS_PORT: something already listens there; the script starts (and" \
      "flushes) a redis-server of its own, so give a free port or leave BENCH_REDIS_PORT unset" >&2
    exit 1
  fi
else
  REDIS_PORT=16380
  while ! port_free "$REDIS_PORT"; do REDIS_PORT=$((REDIS_PORT + 1)); done
fi
rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
# True only if the server answering on REDIS_PORT is the redis-server started
# here: that process is alive and INFO server reports its PID. Another server
# that took the port first (then ours failed to bind) is never flushed.
redis_ours() {
  [[ -n "$REDIS_PID" ]] && kill -0 "$REDIS_PID" 2>/dev/null || return 1
  local answer
  answer=$(rcli INFO server 2>/dev/null | tr -d '\r' | sed -n 's/^process_id://p')
  [[ "$answer" == "$REDIS_PID" ]]
}
require_redis_ours() {  # before FLUSHALL and CONFIG RESETSTAT
  redis_ours && return 0
  echo "the server on 127.0.0.1:$REDIS_PORT is not (or no longer) the redis-server started here" \
    "(pid $REDIS_PID); not sending it $1, stopping" >&2
  exit 1
}
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
  --dir "$WORK" --logfile "$LOGS/redis.log" &
REDIS_PID=$!
for _ in $(seq 50); do
  kill -0 "$REDIS_PID" 2>/dev/null || break
  rcli ping >/dev/null 2>&1 && break
  sleep 0.1
done
if ! redis_ours; then
  echo "redis-server (pid $REDIS_PID) did not start on 127.0.0.1:$REDIS_PORT, or another server answers" \
    "there; see $LOGS/redis.log" >&2
  exit 1
fi
REDIS_URL=redis://127.0.0.1:$REDIS_PORT
echo "== dedicated redis-server pid $REDIS_PID on 127.0.0.1:$REDIS_PORT"
# calls per command since the last CONFIG RESETSTAT, INFO/CONFIG left out
redis_stats() {
  rcli INFO commandstats | tr -d '\r' |
    sed -n 's/^cmdstat_\([^:]*\):calls=\([0-9]*\).*/\1 \2/p' | grep -v -E '^(info|config\|resetstat) ' || true
}

# ------------------------------------------------------------------ CPU accounting
machine_ticks() { awk '/^cpu /{b=$2+$3+$4+$9; print b, b+$5+$6+$7+$8}' /proc/stat; }
tree_ticks() {  # a process and its children (gunicorn workers), all threads
  local sum=0 p t
  for p in "$1" $(pgrep -P "$1" 2>/dev/null || true); do
    t=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12+$13}') || t=0
    sum=$((sum + ${t:-0}))
  done
  echo "$sum"
}
wait_quiet() {
  (( QUIET_MAX > 0 )) || return 0
  local waited=0 b0 t0 b1 t1
  while (( waited < QUIET_MAX )); do
    read -r b0 t0 < <(machine_ticks); sleep 1; read -r b1 t1 < <(machine_ticks)
    (( (b1 - b0) * 100 < 10 * (t1 - t0) )) && return 0
    waited=$((waited + 1))
  done
  echo "   still busy after ${QUIET_MAX}s, measuring anyway" >&2
}

# ------------------------------------------------------------------ apps
# app|store|cookie mode|command (PORT replaced by the port)
APPS=(
  "axum-bare|none|none|$BIN/axum-bare PORT $WORKERS"
  "keepsake|memory|fixed|$BIN/keepsake-server PORT $WORKERS memory"
  "keepsake|sqlite|fixed|$BIN/keepsake-server PORT $WORKERS sqlite $WORK/sessions.db"
  "keepsake|redis|fixed|$BIN/keepsake-server PORT $WORKERS redis $REDIS_URL"
  "keepsake|postgres|fixed|$BIN/keepsake-server PORT $WORKERS postgres $PG_STORE_URL"
  "keepsake|signed|jar|$BIN/keepsake-server PORT $WORKERS signed"
  "keepsake|sealed|jar|$BIN/keepsake-server PORT $WORKERS sealed"
  "tower-sessions|memory|fixed|$BIN/tower-sessions-server PORT $WORKERS memory"
  "tower-sessions|redis|fixed|$BIN/tower-sessions-server PORT $WORKERS redis $REDIS_URL"
  "actix-session|cookie|jar|$BIN/actix-session-server PORT $WORKERS cookie"
  "actix-session|redis|fixed|$BIN/actix-session-server PORT $WORKERS redis $REDIS_URL"
  "flask|cookie|jar|$VENV/bin/gunicorn -w $WORKERS -b 127.0.0.1:PORT --chdir $HERE/flask app:app"
)

new_session() {  # GET /incr without a cookie; prints the Cookie header to send back
  curl -s -m 5 -D - -o /dev/null "http://127.0.0.1:$1/incr" | tr -d '\r' |
    awk 'tolower($1) == "set-cookie:" { sub(/^[^:]*:[ ]*/, ""); sub(/;.*/, ""); printf "%s%s", sep, $0; sep = "; " }'
}

check_app() {  # /incr /incr /read /read with one cookie jar: 1 2 2 2, no Set-Cookie on /read
  local port=$1 store=$2 jar=$WORK/jar hdr=$WORK/hdr got="" want="1 2 2 2 "
  rm -f "$jar"
  [[ $store == none ]] && want="1 1 1 1 "
  for p in incr incr read read; do
    got+="$(curl -s -m 5 -b "$jar" -c "$jar" -D "$hdr" "http://127.0.0.1:$port/$p" || true) "
    if [[ $p == read && $store != none ]] && grep -qi '^set-cookie:' "$hdr"; then echo "FAIL(/read sets a cookie)"; return; fi
  done
  if [[ "$got" == "$want" ]]; then echo ok; else echo "FAIL(got '$got', want '$want')"; fi
}

# Redis commands the app *sends* per request (round trips): MONITOR during N
# sequential requests with one session; lines marked "lua" ran inside a script.
redis_sent_per_request() {
  local port=$1 route=$2 cookie=$3 n=100 mon=$WORK/monitor.txt sent lua
  # redis-cli itself, not the rcli function: $! must be the PID of redis-cli
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" MONITOR >"$mon" 2>/dev/null &
  MONITOR_PID=$!
  sleep 0.3
  for _ in $(seq "$n"); do curl -s -m 5 -o /dev/null -H "Cookie: $cookie" "http://127.0.0.1:$port$route"; done
  sleep 0.3
  stop_pid "$MONITOR_PID"; MONITOR_PID=""
  cp "$mon" "$LOGS/monitor-$4${route//\//-}.txt"
  sent=$(grep -c -E '^[0-9.]+ \[[0-9]+ [0-9.:]+\]' "$mon" || true)
  lua=$(grep -c -E '^[0-9.]+ \[[0-9]+ lua\]' "$mon" || true)
  awk -v s="$sent" -v l="$lua" -v n="$n" 'BEGIN { printf "%.3f %.3f\n", s / n, l / n }'
}

wait_port() {
  for _ in $(seq 150); do
    curl -s -o /dev/null -m 1 "http://127.0.0.1:$1/read" && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

printf 'rep\tapp\tstore\troute\trps\tp50_us\tp99_us\trequests\terrors\tstatus_errors\tset_cookies\tredis_all_per_req\tredis_sent_per_req\tredis_lua_per_req\tredis_detail\tcheck\tserver_cpu\twrk_cpu\tredis_cpu\tother_cpu\tloadavg\n' >"$ROWS"
STARTED=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== $STARTED, load average $LOAD_START; ${REPS} rep(s) x ${DURATION}s (+${WARMUP}s warm-up), wrk -t$THREADS -c$CONNS, $WORKERS workers, $SESSIONS sessions/thread"

FAILED=()  # "rep N: app/store: what went wrong", listed at the end
port=18180
for rep in $(seq "$REPS"); do
  for spec in "${APPS[@]}"; do
    IFS='|' read -r app store mode cmd <<<"$spec"
    [[ "$app/$store" =~ $ONLY ]] || continue
    if [[ $store == postgres && -z "$PG_URL" ]]; then echo "-- skipping keepsake/postgres (BENCH_POSTGRES_URL empty)"; continue; fi
    while ! port_free "$port"; do port=$((port + 1)); done
    log=$LOGS/$app-$store.rep$rep.log
    rm -f "$WORK"/sessions.db*
    if [[ $store == redis ]]; then
      require_redis_ours FLUSHALL
      rcli FLUSHALL >/dev/null
    fi
    [[ $store == postgres ]] && PG_USED=1
    # shellcheck disable=SC2086
    ${cmd//PORT/$port} >"$log" 2>&1 &
    SERVER_PID=$!
    if ! wait_port "$port"; then
      echo "!! $app/$store did not start, see $log" >&2
      FAILED+=("rep $rep: $app/$store did not start (see $log)")
      stop_pid "$SERVER_PID"; SERVER_PID=""; continue
    fi
    check=$(check_app "$port" "$store")
    echo "== rep $rep: $app/$store on :$port (pid $SERVER_PID) check=$check"
    if [[ $check != ok ]]; then
      echo "!! $app/$store failed its check: measured, but left out of compare.json and compare.md" >&2
      FAILED+=("rep $rep: $app/$store check $check")
    fi
    cookies=()
    case $mode in
      fixed) for _ in $(seq $((SESSIONS * THREADS))); do cookies+=("$(new_session "$port")"); done ;;
      jar) for _ in $(seq "$THREADS"); do cookies+=("$(new_session "$port")"); done ;;
    esac
    for route in /incr /read; do
      wrk_args=(-t"$THREADS" -c"$CONNS" --timeout 5s -s "$HERE/sessions.lua" "http://127.0.0.1:$port" -- "$route" "$mode" "$THREADS" "${cookies[@]}")
      wait_quiet
      wrk -d"${WARMUP}s" "${wrk_args[@]}" >>"$log" 2>&1 || true
      if [[ $store == redis ]]; then require_redis_ours "CONFIG RESETSTAT"; rcli CONFIG RESETSTAT >/dev/null; fi
      s0=$(tree_ticks "$SERVER_PID"); r0=$(tree_ticks "$REDIS_PID"); read -r b0 t0 < <(machine_ticks)
      TIMEFORMAT='%3U %3S'
      { time wrk -d"${DURATION}s" "${wrk_args[@]}" >"$WORK/wrk.out" 2>&1 || true; } 2>"$WORK/wrk.time"
      read -r b1 t1 < <(machine_ticks); s1=$(tree_ticks "$SERVER_PID"); r1=$(tree_ticks "$REDIS_PID")
      cat "$WORK/wrk.out" >>"$log"
      res=$(grep '^RESULT ' "$WORK/wrk.out" || true)
      if [[ -z "$res" ]]; then
        echo "!! no RESULT from wrk for $app/$store $route, see $log" >&2
        FAILED+=("rep $rep: $app/$store $route: no result from wrk (see $log)")
        continue
      fi
      field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$res"; }
      # shares of the whole machine (100 = all cores) during the measurement
      read -r cpu_server cpu_wrk cpu_redis cpu_other < <(awk -v b=$((b1 - b0)) -v t=$((t1 - t0)) \
        -v s=$((s1 - s0)) -v r=$((r1 - r0)) -v hz="$HZ" '{ w = ($1 + $2) * hz; o = b - s - r - w; if (o < 0) o = 0;
        printf "%.0f %.0f %.0f %.0f\n", 100 * s / t, 100 * w / t, 100 * r / t, 100 * o / t }' "$WORK/wrk.time")
      all="-"; sent="-"; lua="-"; detail="-"
      if [[ $store == redis ]]; then
        read -r all detail < <(redis_stats | awk -v n="$(field requests)" '
          { tot += $2; d = d sep toupper($1) "=" sprintf("%.3f", $2 / n); sep = "," }
          END { printf "%.3f %s\n", tot / n, (d == "" ? "none" : d) }')
        one=${cookies[0]}
        read -r sent lua < <(redis_sent_per_request "$port" "$route" "$one" "$app")
      fi
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$rep" "$app" "$store" "${route#/}" "$(field rps)" "$(field p50_us)" "$(field p99_us)" "$(field requests)" \
        "$(field errors)" "$(field status_errors)" "$(field set_cookies)" "$all" "$sent" "$lua" "$detail" "$check" \
        "$cpu_server" "$cpu_wrk" "$cpu_redis" "$cpu_other" "$(cut -d' ' -f1 /proc/loadavg)" >>"$ROWS"
      printf '   %-5s %9.0f req/s  p99 %7.2f ms  errors %s/%s  redis/req sent %s all %s  cpu%% server %s wrk %s redis %s other %s\n' \
        "$route" "$(field rps)" "$(awk -v u="$(field p99_us)" 'BEGIN { print u / 1000 }')" "$(field errors)" "$(field status_errors)" \
        "$sent" "$all" "$cpu_server" "$cpu_wrk" "$cpu_redis" "$cpu_other"
    done
    stop_pid "$SERVER_PID"; SERVER_PID=""
    port=$((port + 1))
  done
done

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
# compare.json and compare.md from the rows whose app passed its check only
awk -F'\t' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "check") c = i } NR == 1 || $c == "ok"' "$ROWS" >"$WORK/rows-ok.tsv"
python3 "$HERE/report.py" "$WORK/rows-ok.tsv" --out-dir "$OUT" --started "$STARTED" --load-start "$LOAD_START" --load-end "$LOAD_END" \
  --duration "$DURATION" --warmup "$WARMUP" --reps "$REPS" --threads "$THREADS" --conns "$CONNS" --workers "$WORKERS" \
  --sessions "$SESSIONS"
echo "== wrote $OUT/compare.json, $OUT/compare.md, $ROWS (logs: $LOGS/)"
if (( ${#FAILED[@]} > 0 )); then
  echo "!! ${#FAILED[@]} failure(s); compare.json and compare.md leave these out:" >&2
  printf '!!   %s\n' "${FAILED[@]}" >&2
  exit 1
fi
