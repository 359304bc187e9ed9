# shellcheck shell=bash
# Helpers for the benchmarks in scripts/bench/. Source it after scripts/lib.sh.
#
# Provides: bench_target_arg ARGS... (parses --target mariadb|oceanbase into TARGET_KIND),
# bench_env (loads the testenv, sets SRC_PORT/TGT_PORT/ADMIN_*), sql SIDE [DB] (admin
# client on the source or target, reads SQL on stdin or from -e), time_cmd OUT_SECONDS CMD...,
# median N..., rows_per_s ROWS SECONDS, peak_rss_mib TIME_V_LOG, set_buffer_pools (with
# restore_buffer_pools on EXIT), server_cpu_ms SIDE.
#
# The target is the MariaDB target server, or with --target oceanbase the OceanBase (seekdb)
# server of scripts/testenv (same admin user and password; no binary log, no buffer pool knob).

TARGET_KIND=mariadb
# bench_target_arg ARGS...: accepts only --target mariadb|oceanbase (and --help, handled by the caller).
bench_target_arg() {
    while (($# > 0)); do
        case "$1" in
        --target)
            TARGET_KIND="${2:-}"
            shift
            ;;
        --target=*) TARGET_KIND="${1#--target=}" ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *) die "unknown argument: $1 (usage: $0 [--target mariadb|oceanbase])" ;;
        esac
        shift
    done
    case "$TARGET_KIND" in
    mariadb | oceanbase) ;;
    *) die "--target must be mariadb or oceanbase, not '$TARGET_KIND'" ;;
    esac
    export TARGET_KIND
}

bench_env() {
    local envfile
    envfile="$("$FERRY_ROOT/scripts/testenv" env)" || die "the test servers are not up: run scripts/testenv up"
    eval "$envfile"
    SRC_PORT="$FERRY_TEST_SOURCE_PORT"
    TGT_PORT="$FERRY_TEST_TARGET_PORT"
    if [[ "$TARGET_KIND" == oceanbase ]]; then
        TGT_PORT="${FERRY_TEST_OB_PORT:-}"
        [[ -n "$TGT_PORT" ]] || die "no OceanBase server in the test environment: run scripts/testenv up"
    fi
    ADMIN_USER="$FERRY_TEST_ADMIN_USER"
    ADMIN_PW="$FERRY_TEST_ADMIN_PASSWORD"
    export SRC_PORT TGT_PORT ADMIN_USER ADMIN_PW
}

# port_of_side source|target
port_of_side() {
    case "$1" in
    source) printf '%s' "$SRC_PORT" ;;
    target) printf '%s' "$TGT_PORT" ;;
    *) die "unknown side $1" ;;
    esac
}

# sql SIDE [mariadb client args...]: the admin client on one side (password via MYSQL_PWD).
sql() {
    local side="$1"
    shift
    MYSQL_PWD="$ADMIN_PW" mariadb --no-defaults --default-character-set=utf8mb4 -h127.0.0.1 \
        -P"$(port_of_side "$side")" -u"$ADMIN_USER" --batch -N "$@"
}

# time_cmd VAR CMD...: run CMD, store its wall time in seconds (3 decimals) in VAR; fail if CMD fails.
time_cmd() {
    local __var="$1" t0 t1 rc=0
    shift
    t0="$(date +%s%N)"
    "$@" || rc=$?
    t1="$(date +%s%N)"
    ((rc == 0)) || {
        log "command failed ($rc): $*"
        return "$rc"
    }
    printf -v "$__var" '%d.%03d' $(((t1 - t0) / 1000000000)) $(((t1 - t0) / 1000000 % 1000))
}

# median N...: the median of the numbers given.
median() {
    printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'
}

# rows_per_s ROWS SECONDS
rows_per_s() {
    awk -v r="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f", r / s; else print 0 }'
}

# peak_rss_mib FILE: "Maximum resident set size" of a /usr/bin/time -v log, in MiB.
peak_rss_mib() {
    awk -F: '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }' "$1"
}

# set_buffer_pools: both servers get a buffer pool of FERRY_BENCH_BUFFER_POOL bytes for the run
# (default 1 GiB; 0 keeps the server's), the same for every contender; restore_buffer_pools
# (trap it on EXIT) puts the old sizes back. The test servers run with 256 MiB to stay light.
declare -A OLD_POOL=()
set_buffer_pools() {
    local side
    local want="${FERRY_BENCH_BUFFER_POOL:-1073741824}"
    ((want > 0)) || return 0
    for side in source target; do
        # OceanBase has no InnoDB buffer pool (its memory is the server's memory_limit).
        [[ "$side" == target && "$TARGET_KIND" == oceanbase ]] && continue
        OLD_POOL[$side]="$(sql "$side" -e "SELECT @@innodb_buffer_pool_size")"
        sql "$side" -e "SET GLOBAL innodb_buffer_pool_size = $want"
    done
    log "buffer pools: $want bytes for the run (were: ${OLD_POOL[*]}; $TARGET_KIND target)"
}
restore_buffer_pools() {
    local side
    for side in "${!OLD_POOL[@]}"; do
        sql "$side" -e "SET GLOBAL innodb_buffer_pool_size = ${OLD_POOL[$side]}" || true
    done
}

# server_cpu_ms SIDE: CPU time (user + system, ms) the side's server process has used so far.
# The test servers run on this machine; the difference over a command is its cost in the server.
server_cpu_ms() {
    local pid
    if [[ "$1" == target && "$TARGET_KIND" == oceanbase ]]; then
        pid="$(cat "$FERRY_TEST_OB_DIR/run/seekdb.pid")" || die "cannot read the OceanBase server's pid"
    else
        pid="$(cat "$(sql "$1" -e "SELECT @@pid_file")")" || die "cannot read the $1 server's pid"
    fi
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%d", ($14 + $15) * 1000 / hz }' "/proc/$pid/stat"
}
