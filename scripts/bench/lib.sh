# shellcheck shell=bash
# Helpers for the benchmarks in scripts/bench/. Source it after scripts/lib.sh.
#
# Provides: bench_target_arg ARGS... (parses --target mariadb|oceanbase into TARGET_KIND),
# bench_env (loads the testenv, sets SRC_PORT/TGT_PORT/ADMIN_*), sql SIDE [DB] (admin
# client on the source or target, reads SQL on stdin or from -e), time_cmd OUT_SECONDS CMD...,
# median N..., rows_per_s ROWS SECONDS, peak_rss_mib TIME_V_LOG, set_buffer_pools (with
# restore_buffer_pools on EXIT), server_cpu_ms SIDE, children_cpu_ms, strip_secondary_keys,
# secondary_keys_alter DB TABLE, index_sampler_start/_stop, binlog_end SIDE,
# checkpoint_at_least, wait_for_state, hwm_kib PID, ferry_supports.
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
        # The server may truncate the size with only a warning (MariaDB 10.11.12+ caps it at
        # innodb_buffer_pool_size_max): check that the run really gets the pool it reports.
        local have deadline=$((SECONDS + 60))
        until have="$(sql "$side" -e "SELECT @@innodb_buffer_pool_size")" && ((have == want)); do
            ((SECONDS < deadline)) || die "the $side server's buffer pool is $have bytes, not the $want asked for \
(innodb_buffer_pool_size_max = $(sql "$side" -e "SELECT @@innodb_buffer_pool_size_max" 2>/dev/null || echo '?')); \
restart the test servers with the current scripts/testenv (scripts/testenv down && scripts/testenv up), which allow 4 GiB"
            sleep 0.5
        done
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

# children_cpu_ms: CPU time (user + system, ms) of every finished child of this shell so far
# (the kernel adds a reaped child's own children too): the difference over a command is what
# its client processes (mydumper, myloader, mariadb clients, ferry) cost.
children_cpu_ms() {
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%d", ($16 + $17) * 1000 / hz }' "/proc/$$/stat"
}

# strip_secondary_keys: a filter for CREATE TABLE statements (SHOW CREATE TABLE / mariadb-dump /
# mydumper layout: one key per line, two-space indent) dropping the secondary keys (KEY, UNIQUE
# KEY, FULLTEXT KEY, SPATIAL KEY; never the PRIMARY KEY or a CONSTRAINT), so a peer loads into
# tables with the primary key only and builds the rest afterwards, as Ferry's indexes_after_load.
# Not for tables with foreign keys (InnoDB would create an index for the constraint itself).
strip_secondary_keys() {
    awk '
        /^  (UNIQUE |FULLTEXT |SPATIAL )?KEY `/ { next }
        { if (have) { if ($0 ~ /^\)/) sub(/,$/, "", prev); print prev } prev = $0; have = 1 }
        END { if (have) print prev }'
}

# secondary_keys_alter DB TABLE: the ALTER TABLE that adds back the source table's secondary keys
# (the lines strip_secondary_keys drops), or nothing when it has none.
secondary_keys_alter() {
    sql source -e "SHOW CREATE TABLE \`$1\`.\`$2\`" | cut -f2- | sed 's/\\n/\n/g' |
        awk -v t="$2" '
            /^  (UNIQUE |FULLTEXT |SPATIAL )?KEY `/ { sub(/^  /, ""); sub(/,$/, ""); adds = adds (n++ ? ", " : "") "ADD " $0 }
            END { if (n) { gsub(/`/, "``", t); printf "ALTER TABLE `%s` %s\n", t, adds } }'
}

# index_sampler_start FILE DB / index_sampler_stop FILE: while it runs, one client session on the
# target samples every 0.2 s whether an index build (ALTER TABLE or CREATE INDEX, from any
# contender) on database DB is running (in a session using DB, or naming `DB`.); stop sets INDEX_SECONDS to the wall seconds during which one was. The
# same probe for every contender (its cost, one small query per 0.2 s, too). Call stop in this
# shell, not in $(...): it waits for the sampler.
INDEX_SAMPLER_PID=""
INDEX_SECONDS=0
index_sampler_start() {
    rm -f "$1.stop"
    local q="SELECT UNIX_TIMESTAMP(NOW(6)), COUNT(*) FROM information_schema.PROCESSLIST
        WHERE COMMAND <> 'Sleep' AND (INFO LIKE 'ALTER TABLE%' OR INFO LIKE 'CREATE%INDEX%')
          AND (DB = '$2' OR INFO LIKE '%\\\`$2\\\`.%');"
    while [[ ! -e "$1.stop" ]]; do
        printf '%s\n' "$q"
        sleep 0.2
    done | sql target >"$1" 2>/dev/null &
    INDEX_SAMPLER_PID=$!
}
index_sampler_stop() {
    touch "$1.stop"
    wait "$INDEX_SAMPLER_PID" || true
    rm -f "$1.stop"
    # Each sample that saw a build counts until the next sample.
    # shellcheck disable=SC2034 # read by the caller
    INDEX_SECONDS="$(tr -d '\r' <"$1" | awk 'NF == 2 { if (seen) s += $1 - prev; prev = $1; seen = ($2 > 0) } END { printf "%.2f", s }')"
}

# binlog_end SIDE -> "FILE<TAB>POS": the side's current binary log position (SHOW MASTER STATUS).
binlog_end() {
    sql "$1" -e "SHOW MASTER STATUS" | cut -f1-2
}

# checkpoint_at_least CLIENT... -- META TASK FILE POS: true when every apply worker checkpoint of
# task TASK's forward link on the target (META.checkpoints, committed with the rows it covers,
# see crates/ferry-mysql/src/apply.rs) is at or past FILE:POS of the source's binary log.
# The task store's copy of the checkpoint is written only when a stage call ends (after an idle
# gap), so a timing reads the target's rows. CLIENT is the command that runs SQL on the target.
checkpoint_at_least() {
    local -a client=()
    while [[ "$1" != -- ]]; do
        client+=("$1")
        shift
    done
    shift
    local meta="$1" task="$2" file="$3" pos="$4" rows
    rows="$("${client[@]}" -e "SELECT file, pos FROM \`$meta\`.checkpoints WHERE task_id = '$task' AND direction = 'forward'" 2>/dev/null)" || return 1
    [[ -n "$rows" ]] || return 1
    awk -F'\t' -v f="$file" -v p="$pos" '
        # Binlog file names share one base and a zero-padded sequence: text order is log order.
        { if ($1 < f || ($1 == f && $2 + 0 < p + 0)) behind = 1 }
        END { exit behind }' <<<"$rows"
}

# wait_for_state FERRY_CMD... -- TASK STATE SECONDS [PID]: poll `ferry status TASK --json` (every
# WAIT_POLL_S seconds, default 0.25) until its state is STATE; fails at the deadline, or at once
# when the task failed or PID (the process expected to get it there) exited.
wait_for_state() {
    local -a cmd=()
    while [[ "$1" != -- ]]; do
        cmd+=("$1")
        shift
    done
    shift
    local task="$1" want="$2" deadline=$((SECONDS + $3)) pid="${4:-}" state
    while :; do
        state="$("${cmd[@]}" status "$task" --json 2>/dev/null |
            python3 -c 'import json, sys; print(json.load(sys.stdin)["state"])' 2>/dev/null || true)"
        [[ "$state" == "$want" ]] && return 0
        [[ "$state" == failed ]] && {
            "${cmd[@]}" status "$task" >&2 || true
            die "task $task failed while waiting for '$want'"
        }
        [[ -z "$pid" ]] || kill -0 "$pid" 2>/dev/null || die "ferry (pid $pid) exited before task $task was '$want' (it is '$state')"
        ((SECONDS < deadline)) || die "task $task is '$state', not '$want', after $3 s"
        sleep "${WAIT_POLL_S:-0.25}"
    done
}

# hwm_kib PID: the process's peak resident set so far (VmHWM, KiB), 0 when it is gone.
hwm_kib() {
    [[ -r "/proc/$1/status" ]] || {
        echo 0
        return
    }
    awk '/^VmHWM:/ { print $2; found = 1 } END { if (!found) print 0 }' "/proc/$1/status" 2>/dev/null
}

# proc_cpu_ms PID: user + system ms the process itself has used so far (0 when it is gone).
proc_cpu_ms() {
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%d", ($14 + $15) * 1000 / hz }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# state_entered_ms LOG STATE: epoch ms at which the ferry run that wrote LOG (its stderr) entered
# state STATE of the state machine (its "entering state state=STATE" line; the first one), or
# nothing yet. The timestamps are the same clock as now_ms.
state_entered_ms() {
    local ts
    ts="$(grep -m1 -F "entering state state=$2" "$1" 2>/dev/null | cut -d' ' -f1)"
    [[ -n "$ts" ]] || return 1
    date -d "$ts" +%s%3N
}

# forget_link META TASK: remove a task's link checkpoints from the target (META.checkpoints), for a
# bench that starts the same task id afresh (a new task store): the old rows' epoch would fence it.
forget_link() {
    sql target -e "DELETE FROM \`$1\`.checkpoints WHERE task_id = '$2'" 2>/dev/null || true
}

# ferry_supports FERRY_BIN SUBCOMMAND FLAG: true when `ferry SUBCOMMAND --help` lists FLAG.
ferry_supports() {
    "$1" "$2" --help 2>/dev/null | grep -q -- "$3"
}
