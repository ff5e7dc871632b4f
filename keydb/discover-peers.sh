#!/usr/bin/env bash
# discover-peers.sh: keeps this KeyDB node replicating from every other node
# of the same Fly app, so the nodes form a full multi-master mesh.
#
# Every KEYDB_DISCOVER_INTERVAL seconds (15 by default), and once as soon as
# the local server answers PING, it:
#   1. resolves the AAAA records of ${FLY_APP_NAME}.internal (one per started
#      machine of this app, on Fly's private IPv6 network),
#   2. drops this machine's own addresses,
#   3. reads the masters this node already has from INFO replication,
#   4. runs REPLICAOF <ip> <port> for each peer that is not one of them.
# With `multi-master yes`, REPLICAOF adds a master instead of replacing the
# current one, so a peer started later (a new region, a scale-up, a replaced
# machine) is picked up on the next round, and peers already present are
# never added twice.
#
# Optionally (KEYDB_PRUNE_AFTER rounds, 20 = 5 minutes by default; 0 turns it
# off) a master whose replication link is down and whose address has been
# missing from DNS for that many rounds in a row is removed with
# REPLICAOF REMOVE, so destroyed machines don't stay in the list forever.
# Pruning is skipped in any round whose DNS answer is empty or does not list
# this machine itself, since such an answer can't be trusted to be complete.
#
# The functions below are pure where possible so that test-discover.sh can
# source this file and check them against canned input; main only runs when
# the file is executed.
set -uo pipefail

KEYDB_HOST="${KEYDB_HOST:-127.0.0.1}"
KEYDB_PORT="${KEYDB_PORT:-6379}"
KEYDB_DISCOVER_INTERVAL="${KEYDB_DISCOVER_INTERVAL:-15}"
KEYDB_PRUNE_AFTER="${KEYDB_PRUNE_AFTER:-20}"

log() {
    printf 'discover-peers: %s\n' "$*" >&2
}

# parse_masters reads the text of INFO replication on stdin and prints one
# line per configured master: "<host> <port> <link>", host lowercased, link
# being "up", "down" or "unknown". Lines of replicas (slave0:...) and the
# other master_* fields are ignored. CRLF line endings are accepted.
#
# Assumption about the format (KeyDB has used several; all are accepted).
# The first two were read from KeyDB's source (the INFO code in server.cpp),
# not from a running 6.3.4 server; re-check after changing the image tag:
#  * KeyDB 6.3 (the pinned image): the first master as
#      master_host:<h> / master_port:<p> / master_link_status:<up|down>
#    and every further one with an index after "master":
#      master_1_host:<h> / master_1_port:<p> / master_1_link_status:...
#  * KeyDB 6.0: a "Master N: " header line before each block, each block
#    repeating plain master_host: / master_port: / master_link_status:.
#  * one-line form, as used for replicas (slaveN:ip=...,port=...), seen in
#    some KeyDB builds:
#      master_0:ip=<h>,port=<p>[,link_status=<up|down>|,state=connected...]
# Hosts are printed as KeyDB reports them, which is the string given to
# REPLICAOF; IPv6 addresses contain ':' but never ',' or spaces, so
# splitting a line at its first ':' and a one-line record at ',' is safe.
parse_masters() {
    awk '
    function flush(p) {
        if ((p in host) && (p in port)) {
            print host[p], port[p], ((p in link) ? link[p] : "unknown")
        }
        delete host[p]; delete port[p]; delete link[p]
    }
    function value(s) { sub(/^[^:]*:/, "", s); return s }
    {
        sub(/\r$/, "")
    }
    # one-line form: master_<n>:ip=...,port=...
    /^master_[0-9]+:/ {
        n = split(value($0), kv, ",")
        h = ""; pt = ""; lk = "unknown"
        for (i = 1; i <= n; i++) {
            eq = index(kv[i], "=")
            if (eq == 0) continue
            k = substr(kv[i], 1, eq - 1); v = substr(kv[i], eq + 1)
            if (k == "ip" || k == "host") h = v
            else if (k == "port") pt = v
            else if (k == "link_status" || k == "link" || k == "status") lk = v
            else if (k == "state" && v == "connected") lk = "up"
        }
        if (h != "" && pt != "") print tolower(h), pt, lk
        next
    }
    /^master(_[0-9]+)?_(host|port|link_status):/ {
        field = $0
        sub(/:.*/, "", field)                 # master_1_host
        p = field
        sub(/_(host|port|link_status)$/, "", p)   # master_1
        kind = substr(field, length(p) + 2)   # host | port | link_status
        v = value($0)
        if (kind == "host") {
            # A repeated prefix (KeyDB 6.0) starts a new record.
            if (p in host) flush(p)
            if (!(p in seen)) { seen[p] = 1; order[++count] = p }
            host[p] = tolower(v)
        } else if (kind == "port") {
            port[p] = v
        } else {
            link[p] = v
            # The link status is the last of the three fields: the record is
            # complete, print it now to keep the output in INFO order.
            flush(p)
        }
    }
    END {
        for (i = 1; i <= count; i++) flush(order[i])
    }
    '
}

# normalize_addrs reads addresses, one per line (extra fields ignored), and
# prints them lowercased, without empty lines and IPv4-mapped IPv6 addresses
# (::ffff:a.b.c.d, which getent ahostsv6 invents for IPv4-only names), sorted
# and unique.
normalize_addrs() {
    awk '{ a = tolower($1) } a != "" && a !~ /^::ffff:/ { print a }' | sort -u
}

# resolve_peers NAME prints the IPv6 addresses NAME resolves to, one per line.
# getent (glibc, always in the image) first; dig if getent is missing.
# Returns non-zero when no tool could resolve it.
resolve_peers() {
    local name=$1 out rc
    if command -v getent >/dev/null 2>&1; then
        # getent exits 2 when the name has no addresses: that is an answer
        # ("no peers yet"), not a failure of the tool.
        out=$(getent ahostsv6 "$name")
        rc=$?
        if [ "$rc" -eq 0 ] || [ "$rc" -eq 2 ]; then
            printf '%s\n' "$out" | awk '$1 ~ /:/ { print $1 }' | normalize_addrs
            return 0
        fi
    fi
    if command -v dig >/dev/null 2>&1; then
        if out=$(dig +short +time=2 +tries=2 aaaa "$name"); then
            printf '%s\n' "$out" | awk '$1 ~ /:/ { print $1 }' | normalize_addrs
            return 0
        fi
    fi
    return 1
}

# self_addrs prints this machine's own addresses: $FLY_PRIVATE_IP (set by
# Fly), then whatever `hostname -I` lists, then `ip -6 addr` if available.
self_addrs() {
    {
        if [ -n "${FLY_PRIVATE_IP:-}" ]; then printf '%s\n' "$FLY_PRIVATE_IP"; fi
        if command -v hostname >/dev/null 2>&1; then
            hostname -I 2>/dev/null | tr ' ' '\n'
        fi
        if command -v ip >/dev/null 2>&1; then
            ip -6 -o addr show 2>/dev/null | awk '{ sub(/\/.*/, "", $4); print $4 }'
        fi
    } | normalize_addrs
}

# contains_line LIST ITEM: is ITEM one of the newline-separated LIST?
contains_line() {
    local list=$1 item=$2 line
    while IFS= read -r line; do
        [ "$line" = "$item" ] && return 0
    done <<<"$list"
    return 1
}

# plan_additions PEERS SELF MASTERS PORT prints, one per line, each address of
# PEERS (newline-separated) that is neither in SELF nor already a master at
# PORT in MASTERS (parse_masters output).
plan_additions() {
    local peers=$1 self=$2 masters=$3 port=$4 peer
    local known
    known=$(awk -v port="$port" '$2 == port { print $1 }' <<<"$masters")
    while IFS= read -r peer; do
        [ -n "$peer" ] || continue
        contains_line "$self" "$peer" && continue
        contains_line "$known" "$peer" && continue
        printf '%s\n' "$peer"
    done <<<"$peers"
}

# absent_rounds counts, per "host port" of a master, the rounds in a row in
# which that master was down and missing from DNS.
declare -A absent_rounds=()

# plan_prunes PEERS SELF MASTERS THRESHOLD updates absent_rounds and prints
# "<host> <port>" for each master to remove now. Nothing is pruned when
# THRESHOLD is 0, when PEERS is empty, or when PEERS does not list one of
# SELF (a partial or failed DNS answer). A master whose link is up, or whose
# link state is unknown, is never pruned.
#
# Call it in the current shell, not in $( ): it keeps state between rounds.
# It writes its result to the variable prunes.
prunes=""
plan_prunes() {
    local peers=$1 self=$2 masters=$3 threshold=$4
    local h p lk key s found_self=0
    prunes=""
    if [ "$threshold" -le 0 ] || [ -z "$peers" ]; then
        return 0
    fi
    while IFS= read -r s; do
        [ -n "$s" ] && contains_line "$peers" "$s" && found_self=1
    done <<<"$self"
    if [ "$found_self" -eq 0 ]; then
        return 0
    fi
    declare -A current=()
    while read -r h p lk; do
        [ -n "${h:-}" ] || continue
        key="$h $p"
        current[$key]=1
        if [ "$lk" = "up" ] || [ "$lk" = "unknown" ] || contains_line "$peers" "$h"; then
            unset 'absent_rounds[$key]'
            continue
        fi
        absent_rounds[$key]=$(( ${absent_rounds[$key]:-0} + 1 ))
        if [ "${absent_rounds[$key]}" -ge "$threshold" ]; then
            prunes+="$key"$'\n'
            unset 'absent_rounds[$key]'
        fi
    done <<<"$masters"
    # Forget counters of masters that are gone.
    for key in "${!absent_rounds[@]}"; do
        [ -n "${current[$key]:-}" ] || unset 'absent_rounds[$key]'
    done
}

# kcli runs keydb-cli against the local server. The password travels in
# REDISCLI_AUTH (read by keydb-cli like redis-cli), not on the command line,
# so it does not show up in ps.
kcli() {
    REDISCLI_AUTH="${KEYDB_PASSWORD:-}" keydb-cli -h "$KEYDB_HOST" -p "$KEYDB_PORT" "$@"
}

# discover_once runs one round. Returns non-zero if it could not look peers up
# or read the replication state; it never stops the loop.
discover_once() {
    local dns_name=$1 peers self info masters peer reply h p

    if ! peers=$(resolve_peers "$dns_name"); then
        log "cannot resolve $dns_name (no getent or dig?)"
        return 1
    fi
    self=$(self_addrs)
    if ! info=$(kcli info replication 2>&1); then
        log "INFO replication failed: $info"
        return 1
    fi
    case $info in
    *"# Replication"* | *role:*) ;;
    *)
        log "unexpected INFO replication reply: $info"
        return 1
        ;;
    esac
    masters=$(parse_masters <<<"$info")

    while IFS= read -r peer; do
        [ -n "$peer" ] || continue
        log "adding peer $peer port $KEYDB_PORT as a master"
        reply=$(kcli replicaof "$peer" "$KEYDB_PORT" 2>&1)
        log "replicaof $peer $KEYDB_PORT: $reply"
    done < <(plan_additions "$peers" "$self" "$masters" "$KEYDB_PORT")

    plan_prunes "$peers" "$self" "$masters" "$KEYDB_PRUNE_AFTER"
    while read -r h p; do
        [ -n "${h:-}" ] || continue
        log "removing master $h port $p: link down and gone from DNS for $KEYDB_PRUNE_AFTER rounds"
        reply=$(kcli replicaof remove "$h" "$p" 2>&1)
        log "replicaof remove $h $p: $reply"
    done <<<"$prunes"
    return 0
}

# sleeper is the pid of the current background sleep of the main loop.
sleeper=""

wait_for_ping() {
    local reply
    while :; do
        reply=$(kcli ping 2>/dev/null) && [ "$reply" = "PONG" ] && return 0
        sleep 1
    done
}

main() {
    local dns_name="${KEYDB_PEERS_DNS:-}"
    if [ -z "$dns_name" ]; then
        if [ -z "${FLY_APP_NAME:-}" ]; then
            log "neither KEYDB_PEERS_DNS nor FLY_APP_NAME is set: not discovering peers"
            return 0
        fi
        dns_name="${FLY_APP_NAME}.internal"
    fi
    case $KEYDB_DISCOVER_INTERVAL in
    '' | *[!0-9]*) log "KEYDB_DISCOVER_INTERVAL must be a whole number of seconds"; return 2 ;;
    esac
    case $KEYDB_PRUNE_AFTER in
    '' | *[!0-9]*) log "KEYDB_PRUNE_AFTER must be a whole number of rounds"; return 2 ;;
    esac
    if ! command -v keydb-cli >/dev/null 2>&1; then
        log "keydb-cli not found"
        return 2
    fi

    trap 'exit 0' TERM INT
    trap 'if [ -n "$sleeper" ]; then kill "$sleeper" 2>/dev/null; fi' EXIT

    wait_for_ping
    log "keydb answers; discovering peers via $dns_name every ${KEYDB_DISCOVER_INTERVAL}s"
    while :; do
        discover_once "$dns_name"
        # Sleep in the background so that TERM ends the loop at once.
        sleep "$KEYDB_DISCOVER_INTERVAL" &
        sleeper=$!
        wait "$sleeper"
        sleeper=""
    done
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
