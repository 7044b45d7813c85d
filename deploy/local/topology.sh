#!/usr/bin/env bash
# Reach's production topology on loopback, without containers, for tests and benchmarks:
# two API processes (gunicorn, one gevent worker each), one `reach worker`, and nginx in front
# (sticky sessions, WebSocket upgrade), against this machine's PostgreSQL and Redis.
#
#   deploy/local/topology.sh start          migrate, start everything, wait for /readyz via nginx
#   deploy/local/topology.sh status         what runs, and whether it answers
#   deploy/local/topology.sh stop           stop everything (graceful, then SIGKILL after a while)
#   deploy/local/topology.sh restart-api N  restart API process 1 or 2
#   deploy/local/topology.sh kill-worker    SIGKILL the worker (crash test)
#   deploy/local/topology.sh start-worker   start the worker again
#   deploy/local/topology.sh render-nginx DIR   write the nginx config for the current settings
#
# Settings (environment; `start` saves them in the state dir and the other commands reuse them):
#   TOPOLOGY_DIR       state dir: pids, logs, nginx config          (/tmp/reach-topology)
#   NGINX_PORT         nginx on 127.0.0.1                           (8080)
#   API1_PORT          API process 1 on 127.0.0.1                   (8001)
#   API2_PORT          API process 2 on 127.0.0.1                   (8002)
#   TOPOLOGY_PG        PostgreSQL server URL, without database      (postgresql://postgres@127.0.0.1:5432)
#   TOPOLOGY_DB        database, created when missing               (reach_topology)
#   TOPOLOGY_REDIS     Redis server URL, without db number          (redis://127.0.0.1:6379)
#   TOPOLOGY_REDIS_DB  Redis database number                        (1)
#   TOPOLOGY_FRESH     1: drop and recreate the database and flush the Redis db on start (0)
#   TOPOLOGY_TIMEOUT   seconds to wait for readiness                (60)
#   NGINX_WORKERS, NGINX_CONNECTIONS   nginx worker processes (1) and connections per worker (16384)
#   VENV               the project's virtualenv                     (<repo>/.venv)
#   NGINX_BIN          nginx binary (found on PATH or /usr/sbin/nginx; installed from Debian if missing)
#   Passed through to the Reach processes: PUSH_BACKEND (default log), FIREBASE_CREDENTIALS,
#   FCM_ENDPOINT, SECRET_KEY (default: generated once into the state dir), ALLOWED_ORIGINS,
#   LOG_LEVEL, LOG_FORMAT, GUNICORN_WORKER_CONNECTIONS, GUNICORN_LOG_LEVEL, GUNICORN_GRACEFUL_TIMEOUT,
#   MAIL_BACKEND, SMTP_URL, MAIL_FROM, MAIL_TIMEOUT_SECONDS, MAIL_ATTEMPTS.
#
# Note: Redis pub/sub channels are not separated by database number, so two topologies (or a
# topology and a test run) that use the same Redis server share the Socket.IO message queue.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TEMPLATE="$ROOT/deploy/nginx/reach.local.conf.template"
TOPOLOGY_DIR="${TOPOLOGY_DIR:-/tmp/reach-topology}"
SAVED="$TOPOLOGY_DIR/topology.env"

log() { printf '%s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

load_settings() {
    # Commands other than start act on what start launched: reuse its settings.
    if [[ "${1:-}" != start && "${1:-}" != render-nginx && -f "$SAVED" ]]; then
        # shellcheck disable=SC1090
        source "$SAVED"
    fi
    VENV="${VENV:-$ROOT/.venv}"
    NGINX_PORT="${NGINX_PORT:-8080}"
    API1_PORT="${API1_PORT:-8001}"
    API2_PORT="${API2_PORT:-8002}"
    TOPOLOGY_PG="${TOPOLOGY_PG:-postgresql://postgres@127.0.0.1:5432}"
    TOPOLOGY_DB="${TOPOLOGY_DB:-reach_topology}"
    TOPOLOGY_REDIS="${TOPOLOGY_REDIS:-redis://127.0.0.1:6379}"
    TOPOLOGY_REDIS_DB="${TOPOLOGY_REDIS_DB:-1}"
    TOPOLOGY_FRESH="${TOPOLOGY_FRESH:-0}"
    TOPOLOGY_TIMEOUT="${TOPOLOGY_TIMEOUT:-60}"
    NGINX_WORKERS="${NGINX_WORKERS:-1}"
    NGINX_CONNECTIONS="${NGINX_CONNECTIONS:-16384}"
    RUN_DIR="$TOPOLOGY_DIR/run"
    NGINX_DIR="$TOPOLOGY_DIR/nginx"
    REACH_ENV="$TOPOLOGY_DIR/reach.env"
}

save_settings() {
    local name
    {
        echo "# Settings of the running topology (written by topology.sh start)."
        for name in VENV NGINX_PORT API1_PORT API2_PORT TOPOLOGY_PG TOPOLOGY_DB TOPOLOGY_REDIS \
            TOPOLOGY_REDIS_DB TOPOLOGY_TIMEOUT NGINX_WORKERS NGINX_CONNECTIONS NGINX_BIN; do
            printf '%s=%q\n' "$name" "${!name}"
        done
    } >"$SAVED"
}

# --- checks -----------------------------------------------------------------------------------

check_port_number() {
    if ! [[ "$2" =~ ^[0-9]+$ ]] || ((10#$2 < 1 || 10#$2 > 65535)); then
        die "$1 must be a port number, got '$2'"
    fi
}

port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

require_venv() {
    [[ -x "$VENV/bin/gunicorn" && -x "$VENV/bin/reach" ]] || die "no gunicorn/reach in $VENV/bin.
  Create the virtualenv first: python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'
  (or point VENV at one)."
}

find_nginx() {
    if [[ -n "${NGINX_BIN:-}" ]]; then
        [[ -x "$NGINX_BIN" ]] || die "NGINX_BIN=$NGINX_BIN is not executable"
        return
    fi
    NGINX_BIN="$(command -v nginx || true)"
    [[ -n "$NGINX_BIN" ]] || { [[ -x /usr/sbin/nginx ]] && NGINX_BIN=/usr/sbin/nginx; } || true
    if [[ -z "$NGINX_BIN" ]]; then
        if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
            log "nginx is missing: installing the Debian package nginx-light ..."
            export DEBIAN_FRONTEND=noninteractive
            apt-get install -y -q nginx-light >"$TOPOLOGY_DIR/apt.log" 2>&1 \
                || { apt-get update -q >>"$TOPOLOGY_DIR/apt.log" 2>&1 \
                    && apt-get install -y -q nginx-light >>"$TOPOLOGY_DIR/apt.log" 2>&1; } \
                || die "installing nginx-light failed (log: $TOPOLOGY_DIR/apt.log)"
            NGINX_BIN="$(command -v nginx || echo /usr/sbin/nginx)"
        else
            die "nginx is not installed. Install it (as root: apt-get install -y nginx-light) or set NGINX_BIN."
        fi
    fi
}

# --- processes ----------------------------------------------------------------------------------

pid_file() { echo "$RUN_DIR/$1.pid"; }

pid_of() {
    local file
    file="$(pid_file "$1")"
    [[ -f "$file" ]] && cat "$file" || true
}

is_running() {
    local pid
    pid="$(pid_of "$1")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

# Start a process in its own session (so it outlives this script and its whole group can be
# signalled), with stdout and stderr appended to NAME.log.
launch() {
    local name="$1"
    shift
    local logfile="$TOPOLOGY_DIR/$name.log"
    printf '\n===== %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >>"$logfile"
    (cd "$ROOT" && exec setsid "$@" >>"$logfile" 2>&1 </dev/null) &
    echo "$!" >"$(pid_file "$name")"
}

# Send SIGNAL to the process group the process leads (the gunicorn master and its worker), or to
# the process alone if it does not lead one.
signal_proc() {
    local signal="$1" pid="$2" pgid
    pgid="$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ' || true)"
    if [[ -n "$pgid" && "$pgid" == "$pid" ]]; then
        kill "-$signal" -- "-$pid" 2>/dev/null || true
    else
        kill "-$signal" "$pid" 2>/dev/null || true
    fi
}

# stop_proc NAME SIGNAL SECONDS: ask politely, then SIGKILL what is left after SECONDS.
stop_proc() {
    local name="$1" signal="$2" grace="$3" pid waited=0
    pid="$(pid_of "$name")"
    if [[ -z "$pid" ]] || ! kill -0 "$pid" 2>/dev/null; then
        rm -f "$(pid_file "$name")"
        return 0
    fi
    log "stopping $name (pid $pid, SIG$signal) ..."
    signal_proc "$signal" "$pid"
    while kill -0 "$pid" 2>/dev/null && ((waited < grace * 10)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        warn "$name did not stop within ${grace}s: sending SIGKILL"
        signal_proc KILL "$pid"
        sleep 0.2
    else
        log "  $name stopped after $((waited / 10)).$((waited % 10))s"
    fi
    # Reap stragglers of the process group (a gunicorn worker whose master died first).
    if kill -0 -- "-$pid" 2>/dev/null; then
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$(pid_file "$name")"
}

tail_log() {
    local name="$1" logfile="$TOPOLOGY_DIR/$1.log"
    if [[ -s "$logfile" ]]; then
        printf -- '--- last lines of %s ---\n' "$logfile" >&2
        tail -n "${TOPOLOGY_LOG_LINES:-40}" "$logfile" | sed 's/^/  | /' >&2
    fi
}

http_code() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$1" 2>/dev/null || true
}

# wait_ready NAME URL [PROCESS...]: until URL answers 200 or the deadline passes. Fails early when
# one of the processes has exited.
wait_ready() {
    local name="$1" url="$2"
    shift 2
    local deadline=$((SECONDS + TOPOLOGY_TIMEOUT)) code="" proc
    while ((SECONDS < deadline)); do
        code="$(http_code "$url")"
        [[ "$code" == 200 ]] && return 0
        for proc in "$@"; do
            if ! is_running "$proc"; then
                printf 'ERROR: %s exited while waiting for %s\n' "$proc" "$url" >&2
                tail_log "$proc"
                return 1
            fi
        done
        sleep 0.3
    done
    printf 'ERROR: %s: %s did not answer 200 within %ss (last status: %s)\n' \
        "$name" "$url" "$TOPOLOGY_TIMEOUT" "${code:-none}" >&2
    curl -s --max-time 3 "$url" >&2 2>/dev/null && echo >&2 || true
    for proc in "$@"; do tail_log "$proc"; done
    return 1
}

fail_start() {
    printf 'ERROR: %s\n' "$1" >&2
    if [[ -n "${2:-}" ]]; then
        tail_log "$2"
    fi
    log "stopping what was started (logs stay in $TOPOLOGY_DIR) ..."
    stop_all >/dev/null 2>&1 || true
    exit 1
}

# --- the parts ------------------------------------------------------------------------------------

write_reach_env() {
    local secret="${SECRET_KEY:-}"
    if [[ -z "$secret" ]]; then
        if [[ ! -s "$TOPOLOGY_DIR/secret_key" ]]; then
            (umask 077 && "$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(48))' \
                >"$TOPOLOGY_DIR/secret_key")
        fi
        secret="$(cat "$TOPOLOGY_DIR/secret_key")"
    fi
    local name
    (
        umask 077
        {
            echo "# Environment of the topology's Reach processes. To run the CLI against it:"
            echo "#   set -a; . $REACH_ENV; set +a; .venv/bin/reach create-operator EMAIL"
            printf 'DATABASE_URL=%q\n' "$TOPOLOGY_PG/$TOPOLOGY_DB"
            printf 'REDIS_URL=%q\n' "$TOPOLOGY_REDIS/$TOPOLOGY_REDIS_DB"
            printf 'SECRET_KEY=%q\n' "$secret"
            printf 'WORKER_MODE=separate\n'
            printf 'TRUSTED_PROXIES=1\n'
            printf 'PUSH_BACKEND=%q\n' "${PUSH_BACKEND:-log}"
            printf 'REACH_INSTANCE_DIR=%q\n' "$TOPOLOGY_DIR/instance"
            for name in FIREBASE_CREDENTIALS FCM_ENDPOINT ALLOWED_ORIGINS LOG_LEVEL LOG_FORMAT \
                GUNICORN_WORKER_CONNECTIONS GUNICORN_LOG_LEVEL GUNICORN_GRACEFUL_TIMEOUT \
                MAIL_BACKEND SMTP_URL MAIL_FROM MAIL_TIMEOUT_SECONDS MAIL_ATTEMPTS; do
                if [[ -n "${!name:-}" ]]; then
                    printf '%s=%q\n' "$name" "${!name}"
                fi
            done
        } >"$REACH_ENV"
    )
}

export_reach_env() {
    set -a
    # shellcheck disable=SC1090
    source "$REACH_ENV"
    set +a
}

check_services() {
    command -v curl >/dev/null || die "curl is needed (apt-get install -y curl)"
    command -v psql >/dev/null || die "psql is needed (apt-get install -y postgresql-client)"
    command -v setsid >/dev/null || die "setsid is needed (util-linux)"
    [[ "$TOPOLOGY_DB" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "TOPOLOGY_DB must be a plain identifier, got '$TOPOLOGY_DB'"
    [[ "$TOPOLOGY_REDIS_DB" =~ ^[0-9]+$ ]] || die "TOPOLOGY_REDIS_DB must be a number, got '$TOPOLOGY_REDIS_DB'"
    psql "$TOPOLOGY_PG/postgres" -Atqc 'SELECT 1' >/dev/null 2>"$TOPOLOGY_DIR/psql.err" || {
        cat "$TOPOLOGY_DIR/psql.err" >&2
        die "PostgreSQL at $TOPOLOGY_PG does not answer. Start it, or set TOPOLOGY_PG."
    }
    "$VENV/bin/python" - "$TOPOLOGY_REDIS/$TOPOLOGY_REDIS_DB" <<'PY' || die "Redis at $TOPOLOGY_REDIS does not answer. Start it, or set TOPOLOGY_REDIS."
import sys

import redis

try:
    redis.Redis.from_url(sys.argv[1], socket_connect_timeout=2, socket_timeout=2).ping()
except Exception as exc:
    print(f"redis: {exc}", file=sys.stderr)
    sys.exit(1)
PY
}

prepare_database() {
    local exists
    if [[ "$TOPOLOGY_FRESH" == 1 ]]; then
        log "TOPOLOGY_FRESH=1: dropping database $TOPOLOGY_DB and flushing Redis db $TOPOLOGY_REDIS_DB ..."
        psql "$TOPOLOGY_PG/postgres" -qc "DROP DATABASE IF EXISTS \"$TOPOLOGY_DB\" WITH (FORCE)" >/dev/null
        "$VENV/bin/python" -c 'import sys, redis; redis.Redis.from_url(sys.argv[1]).flushdb()' \
            "$TOPOLOGY_REDIS/$TOPOLOGY_REDIS_DB"
    fi
    exists="$(psql "$TOPOLOGY_PG/postgres" -Atqc "SELECT 1 FROM pg_database WHERE datname = '$TOPOLOGY_DB'")"
    if [[ "$exists" != 1 ]]; then
        log "creating database $TOPOLOGY_DB ..."
        psql "$TOPOLOGY_PG/postgres" -qc "CREATE DATABASE \"$TOPOLOGY_DB\"" >/dev/null
    fi
    log "migrating $TOPOLOGY_PG/$TOPOLOGY_DB (reach db upgrade) ..."
    if ! (cd "$ROOT" && "$VENV/bin/reach" db upgrade >>"$TOPOLOGY_DIR/migrate.log" 2>&1); then
        tail_log migrate
        die "reach db upgrade failed (log: $TOPOLOGY_DIR/migrate.log)"
    fi
}

api_port() {
    case "$1" in
        1) echo "$API1_PORT" ;;
        2) echo "$API2_PORT" ;;
        *) die "API process must be 1 or 2, got '$1'" ;;
    esac
}

start_api() {
    local n="$1" port
    port="$(api_port "$n")"
    if port_busy "$port"; then
        fail_start "port $port (API$n) is already in use: stop what listens there or set API${n}_PORT"
    fi
    BIND="127.0.0.1:$port" launch "api$n" "$VENV/bin/gunicorn" -c deploy/gunicorn.conf.py wsgi:app
    log "api$n: gunicorn on http://127.0.0.1:$port (pid $(pid_of "api$n"), log $TOPOLOGY_DIR/api$n.log)"
}

worker_available() {
    (cd "$ROOT" && "$VENV/bin/reach" worker --help >/dev/null 2>&1)
}

start_worker() {
    if is_running worker; then
        log "worker is already running (pid $(pid_of worker))"
        return 0
    fi
    if ! worker_available; then
        warn "this checkout has no \`reach worker\` command: continuing WITHOUT the worker."
        warn "pushes and the outbox are not processed until it exists; then run: $0 start-worker"
        return 0
    fi
    launch worker "$VENV/bin/reach" worker
    sleep 1
    if ! is_running worker; then
        tail_log worker
        return 1
    fi
    log "worker: reach worker (pid $(pid_of worker), log $TOPOLOGY_DIR/worker.log)"
}

render_nginx() {
    local dir="$1"
    [[ -f "$TEMPLATE" ]] || die "missing $TEMPLATE"
    mkdir -p "$dir/tmp"
    sed -e "s|__STATE_DIR__|$dir|g" \
        -e "s|__NGINX_PORT__|$NGINX_PORT|g" \
        -e "s|__API1_PORT__|$API1_PORT|g" \
        -e "s|__API2_PORT__|$API2_PORT|g" \
        -e "s|__NGINX_WORKERS__|$NGINX_WORKERS|g" \
        -e "s|__NGINX_CONNECTIONS__|$NGINX_CONNECTIONS|g" \
        "$TEMPLATE" >"$dir/nginx.conf"
    if grep -q '__[A-Z0-9_]*__' "$dir/nginx.conf"; then
        die "unfilled placeholders in $dir/nginx.conf: $(grep -o '__[A-Z0-9_]*__' "$dir/nginx.conf" | sort -u | tr '\n' ' ')"
    fi
}

start_nginx() {
    if port_busy "$NGINX_PORT"; then
        fail_start "port $NGINX_PORT (nginx) is already in use: stop what listens there or set NGINX_PORT"
    fi
    render_nginx "$NGINX_DIR"
    if ! "$NGINX_BIN" -t -q -p "$NGINX_DIR/" -c "$NGINX_DIR/nginx.conf" -e "$NGINX_DIR/error.log" \
        >>"$TOPOLOGY_DIR/nginx.log" 2>&1; then
        fail_start "nginx rejected $NGINX_DIR/nginx.conf" nginx
    fi
    launch nginx "$NGINX_BIN" -p "$NGINX_DIR/" -c "$NGINX_DIR/nginx.conf" -e "$NGINX_DIR/error.log" -g 'daemon off;'
    log "nginx: http://127.0.0.1:$NGINX_PORT (pid $(pid_of nginx), config $NGINX_DIR/nginx.conf)"
}

stop_all() {
    # nginx first (no new traffic), then the worker and both API processes side by side.
    stop_proc nginx QUIT 10
    stop_proc worker TERM 30 &
    stop_proc api2 TERM 30 &
    stop_proc api1 TERM 30 &
    wait
}

# --- commands ---------------------------------------------------------------------------------------

worker_line() {
    if is_running worker; then
        echo "pid $(pid_of worker)"
    else
        echo "not running (see the warning above)"
    fi
}

cmd_start() {
    check_port_number NGINX_PORT "$NGINX_PORT"
    check_port_number API1_PORT "$API1_PORT"
    check_port_number API2_PORT "$API2_PORT"
    require_venv
    mkdir -p "$TOPOLOGY_DIR" "$RUN_DIR" "$NGINX_DIR" "$TOPOLOGY_DIR/instance"
    local name
    for name in api1 api2 worker nginx; do
        if is_running "$name"; then
            die "the topology in $TOPOLOGY_DIR is already running ($name, pid $(pid_of "$name")).
  See: $0 status   or stop it: $0 stop"
        fi
    done
    for name in NGINX_PORT API1_PORT API2_PORT; do
        if port_busy "${!name}"; then
            die "port ${!name} ($name) is already in use: stop what listens there or set $name"
        fi
    done
    find_nginx
    check_services
    save_settings
    write_reach_env
    export_reach_env
    prepare_database

    log "starting two API processes ..."
    start_api 1
    start_api 2
    wait_ready api1 "http://127.0.0.1:$API1_PORT/readyz" api1 || fail_start "API process 1 is not ready"
    wait_ready api2 "http://127.0.0.1:$API2_PORT/readyz" api2 || fail_start "API process 2 is not ready"
    start_worker || fail_start "reach worker exited right after starting"
    start_nginx
    wait_ready nginx "http://127.0.0.1:$NGINX_PORT/readyz" nginx api1 api2 \
        || fail_start "/readyz through nginx is not answering 200"

    local base="http://127.0.0.1:$NGINX_PORT"
    cat <<EOF

Reach topology is up (state dir $TOPOLOGY_DIR)
  through nginx:   $base   (readyz $base/readyz, healthz $base/healthz, operators $base/ops)
  Socket.IO:       ws://127.0.0.1:$NGINX_PORT/socket.io/   (sticky by client address, or by a
                   'reach_affinity' cookie the client sends)
  api1 direct:     http://127.0.0.1:$API1_PORT   pid $(pid_of api1)   (metrics /metrics)
  api2 direct:     http://127.0.0.1:$API2_PORT   pid $(pid_of api2)   (metrics /metrics)
  worker:          $(worker_line)
  nginx:           pid $(pid_of nginx)
  database:        $TOPOLOGY_PG/$TOPOLOGY_DB   redis: $TOPOLOGY_REDIS/$TOPOLOGY_REDIS_DB
  logs:            $TOPOLOGY_DIR/{api1,api2,worker,nginx,migrate}.log, $NGINX_DIR/{access,error}.log
  CLI against it:  set -a; . $REACH_ENV; set +a; $VENV/bin/reach create-operator EMAIL
  stop:            $0 stop
EOF
}

cmd_stop() {
    if [[ ! -d "$RUN_DIR" ]]; then
        log "nothing to stop in $TOPOLOGY_DIR"
        return 0
    fi
    stop_all
    log "topology stopped (logs stay in $TOPOLOGY_DIR)"
}

cmd_status() {
    local name pid state port url code all=0
    printf '%-7s %-8s %-9s %s\n' PROCESS PID STATE CHECK
    for name in api1 api2 worker nginx; do
        pid="$(pid_of "$name")"
        url=""
        case "$name" in
            api1) port="$API1_PORT" ;;
            api2) port="$API2_PORT" ;;
            nginx) port="$NGINX_PORT" ;;
            *) port="" ;;
        esac
        [[ -n "$port" ]] && url="http://127.0.0.1:$port/readyz"
        if is_running "$name"; then
            state=running
            if [[ -n "$url" ]]; then
                code="$(http_code "$url")"
                url="$url -> ${code:-no answer}"
                [[ "$code" == 200 ]] || all=1
            fi
        else
            state=stopped
            pid="-"
            url=""
            all=1
        fi
        printf '%-7s %-8s %-9s %s\n' "$name" "${pid:--}" "$state" "$url"
    done
    log "state dir: $TOPOLOGY_DIR"
    return "$all"
}

cmd_restart_api() {
    local n="${1:-}"
    [[ "$n" == 1 || "$n" == 2 ]] || die "usage: $0 restart-api 1|2"
    [[ -f "$REACH_ENV" ]] || die "the topology was never started in $TOPOLOGY_DIR: run $0 start"
    require_venv
    export_reach_env
    stop_proc "api$n" TERM 30
    start_api "$n"
    wait_ready "api$n" "http://127.0.0.1:$(api_port "$n")/readyz" "api$n" || die "API process $n did not come back"
    log "api$n restarted (pid $(pid_of "api$n"))"
}

cmd_kill_worker() {
    is_running worker || die "the worker is not running (status: $0 status)"
    local pid
    pid="$(pid_of worker)"
    log "SIGKILL to the worker (pid $pid) ..."
    signal_proc KILL "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    rm -f "$(pid_file worker)"
    log "worker killed; start it again with: $0 start-worker"
}

cmd_start_worker() {
    [[ -f "$REACH_ENV" ]] || die "the topology was never started in $TOPOLOGY_DIR: run $0 start"
    require_venv
    mkdir -p "$RUN_DIR"
    export_reach_env
    start_worker || die "reach worker exited right after starting (log: $TOPOLOGY_DIR/worker.log)"
}

usage() {
    sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

main() {
    local command="${1:-}"
    if [[ $# -gt 0 ]]; then
        shift
    fi
    load_settings "$command"
    case "$command" in
        start) cmd_start ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        restart-api) cmd_restart_api "$@" ;;
        kill-worker) cmd_kill_worker ;;
        start-worker) cmd_start_worker ;;
        render-nginx)
            [[ $# -eq 1 ]] || die "usage: $0 render-nginx DIR"
            render_nginx "$1"
            log "wrote $1/nginx.conf"
            ;;
        -h | --help | help) usage ;;
        "") usage; exit 2 ;;
        *) usage >&2; die "unknown command '$command'" ;;
    esac
}

main "$@"
