# shellcheck shell=bash
# Shared helpers for Ferry's scripts. Source it; do not run it.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Provides: FERRY_ROOT (repo root, found from this file's path), log/die,
# now_ms/elapsed, ensure_apt_packages BIN:PKG..., ensure_pip BIN SPEC,
# ensure_testenv_tools, xsum_columns_sql/xsum_select (a checksum MariaDB and OceanBase compute alike).

# Debian keeps mariadbd, mariadb-install-db and runuser in sbin; CI PATHs may not.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/sbin:/sbin" ;; esac
export PATH

FERRY_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
export FERRY_ROOT

log() { printf '%s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# Milliseconds since the epoch.
now_ms() { date +%s%3N; }

# elapsed START_MS -> "12.3s"
elapsed() {
    local ms=$(($(now_ms) - $1))
    printf '%d.%ds' $((ms / 1000)) $((ms % 1000 / 100))
}

# Run a command quietly; on failure show the tail of its output and return its status.
quiet() {
    local out rc=0
    out="$(mktemp)"
    "$@" >"$out" 2>&1 || rc=$?
    if ((rc != 0)); then
        log "command failed ($rc): $*"
        tail -n 40 "$out" >&2
    fi
    rm -f "$out"
    return "$rc"
}

as_root() {
    if ((EUID == 0)); then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        die "need root to run: $* (no sudo available)"
    fi
}

_apt_updated=0
_apt_lists_present() {
    compgen -G '/var/lib/apt/lists/*_Packages' >/dev/null 2>&1 ||
        compgen -G '/var/lib/apt/lists/*_Packages.*' >/dev/null 2>&1
}

apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install these yourself: $*"
    local -a apt=(env DEBIAN_FRONTEND=noninteractive apt-get -q -y
        -o DPkg::Lock::Timeout=600 -o Dpkg::Use-Pty=0)
    if ((_apt_updated == 0)) && ! _apt_lists_present; then
        log "    apt-get update"
        quiet as_root "${apt[@]}" update || die "apt-get update failed"
        _apt_updated=1
    fi
    log "    apt-get install $*"
    if ! quiet as_root "${apt[@]}" install "$@"; then
        if ((_apt_updated == 0)); then
            log "    retrying after apt-get update"
            quiet as_root "${apt[@]}" update || die "apt-get update failed"
            _apt_updated=1
            quiet as_root "${apt[@]}" install "$@" || die "apt-get install $* failed"
        else
            die "apt-get install $* failed"
        fi
    fi
}

# ensure_apt_packages BIN:PACKAGE ... installs each PACKAGE whose BIN is missing (one apt run).
ensure_apt_packages() {
    local spec bin pkg
    local -a missing=()
    for spec in "$@"; do
        bin="${spec%%:*}"
        pkg="${spec#*:}"
        if ! command -v "$bin" >/dev/null 2>&1; then
            case " ${missing[*]} " in *" $pkg "*) ;; *) missing+=("$pkg") ;; esac
        fi
    done
    if ((${#missing[@]} > 0)); then
        apt_install "${missing[@]}"
    fi
    return 0
}

# ensure_pip BIN SPEC: pip-installs SPEC if BIN is not on PATH.
ensure_pip() {
    local bin="$1" spec="$2"
    command -v "$bin" >/dev/null 2>&1 && return 0
    if ! python3 -m pip --version >/dev/null 2>&1; then
        apt_install python3-pip
    fi
    log "    pip install $spec"
    local out rc=0
    out="$(mktemp)"
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore "$spec" >"$out" 2>&1 || rc=$?
    if ((rc != 0)) && grep -q externally-managed-environment "$out"; then
        # Debian's system python (PEP 668): this is a throwaway test machine.
        rc=0
        python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
            --break-system-packages "$spec" >"$out" 2>&1 || rc=$?
    fi
    if ((rc != 0)); then
        tail -n 40 "$out" >&2
        rm -f "$out"
        die "pip install $spec failed"
    fi
    rm -f "$out"
    command -v pyenv >/dev/null 2>&1 && pyenv rehash >/dev/null 2>&1
    hash -r
    if ! command -v "$bin" >/dev/null 2>&1; then
        # pip --user installs (non-root) land here.
        PATH="$PATH:$HOME/.local/bin"
        command -v "$bin" >/dev/null 2>&1 || die "pip installed $spec but $bin is not on PATH"
    fi
}

# What scripts/testenv needs: MariaDB server + client, sysbench, python3, curl, moto server,
# and for the OceanBase server pip (downloads the seekdb wheel) and unzip (unpacks it).
ensure_testenv_tools() {
    ensure_apt_packages \
        python3:python3 curl:curl flock:util-linux setsid:util-linux \
        mariadbd:mariadb-server mariadb-install-db:mariadb-server \
        mariadb:mariadb-client mariadb-admin:mariadb-client \
        sysbench:sysbench unzip:unzip
    if ! python3 -m pip --version >/dev/null 2>&1; then
        apt_install python3-pip
    fi
    ensure_pip moto_server 'moto[server]'
}

# ---------------------------------------------------------------- cross-engine table checksum
# CHECKSUM TABLE depends on the engine's row format, so it differs between MariaDB and OceanBase
# for equal rows. These two build a checksum both compute alike: COUNT(*) and the SUM (order
# independent, duplicates not cancelling) of CRC32 over each row's text, with
#   DATETIME/TIMESTAMP  DATE_FORMAT(c, '%Y-%m-%d %H:%i:%s.%f')   (run with time_zone '+00:00')
#   TIME                TIME_FORMAT(c, '%H:%i:%s.%f')
#   FLOAT/DOUBLE        c + 0e0  (both print the shortest round-trip form)
#   BIT                 c + 0
#   binary strings      HEX(c)
#   JSON                JSON_LENGTH(c) '/' JSON_DEPTH(c): only the shape. OceanBase stores JSON in
#                       binary form and prints it with sorted keys, its own spacing and
#                       normalised numbers (0.0700 -> 0.07), so the text is not comparable: a
#                       weaker check for JSON columns
#   everything else     the column's text (DECIMAL keeps its scale on both)
# and NULLs marked by an ISNULL() flag per nullable column (CONCAT_WS skips NULLs).
#
#   cols="$(client_on_the_source -e "$(xsum_columns_sql DB TABLE)")"   # MariaDB/MySQL source
#   query="$(xsum_select DB TABLE <<<"$cols")"
#   client -e "SET time_zone = '+00:00'; $query"   -> "ROWS<TAB>SUM" (same on both sides)

# xsum_columns_sql DB TABLE: SQL listing the table's columns as "name<TAB>kind<TAB>nullable".
# MariaDB's JSON is LONGTEXT with a json_valid() check: that check marks it as JSON.
xsum_columns_sql() {
    cat <<SQL
SELECT c.COLUMN_NAME,
       CASE
         WHEN c.DATA_TYPE = 'json' OR EXISTS (
              SELECT 1 FROM information_schema.CHECK_CONSTRAINTS k
              WHERE k.CONSTRAINT_SCHEMA = c.TABLE_SCHEMA AND k.TABLE_NAME = c.TABLE_NAME
                AND REPLACE(k.CHECK_CLAUSE, '\`', '') = CONCAT('json_valid(', c.COLUMN_NAME, ')'))
           THEN 'json'
         WHEN c.DATA_TYPE IN ('datetime', 'timestamp') THEN 'datetime'
         WHEN c.DATA_TYPE = 'time' THEN 'time'
         WHEN c.DATA_TYPE IN ('float', 'double', 'real') THEN 'float'
         WHEN c.DATA_TYPE = 'bit' THEN 'bit'
         WHEN c.DATA_TYPE IN ('binary', 'varbinary', 'tinyblob', 'blob', 'mediumblob', 'longblob') THEN 'binary'
         ELSE 'text'
       END,
       c.IS_NULLABLE
FROM information_schema.COLUMNS c
WHERE c.TABLE_SCHEMA = '$1' AND c.TABLE_NAME = '$2'
ORDER BY c.ORDINAL_POSITION
SQL
}

# xsum_select DB TABLE [WHERE]: reads xsum_columns_sql's output on stdin, prints the SELECT.
xsum_select() {
    awk -F'\t' -v db="$1" -v t="$2" -v where="${3:-}" '
        function q(n) { gsub(/`/, "``", n); return "`" n "`" }
        NF >= 3 {
            c = q($1)
            if ($2 == "datetime") e = "DATE_FORMAT(" c ", '\''%Y-%m-%d %H:%i:%s.%f'\'')"
            else if ($2 == "time") e = "TIME_FORMAT(" c ", '\''%H:%i:%s.%f'\'')"
            else if ($2 == "float") e = "(" c " + 0e0)"
            else if ($2 == "bit") e = "(" c " + 0)"
            else if ($2 == "binary") e = "HEX(" c ")"
            else if ($2 == "json") e = "CONCAT(JSON_LENGTH(" c "), '\''/'\'', JSON_DEPTH(" c "))"
            else e = c
            exprs = exprs (n++ ? ", " : "") e
            if ($3 == "YES") nulls = nulls (m++ ? ", " : "") "ISNULL(" c ")"
        }
        END {
            if (n == 0) { print "no columns for " db "." t > "/dev/stderr"; exit 1 }
            if (m > 0) exprs = exprs ", CONCAT(" nulls ")"
            printf "SELECT COUNT(*), COALESCE(SUM(CRC32(CONCAT_WS('\''#'\'', %s))), 0) FROM %s.%s%s\n",
                exprs, q(db), q(t), (where != "" ? " WHERE " where : "")
        }'
}
