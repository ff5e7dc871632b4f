#!/usr/bin/env bash
# Offline tests of discover-peers.sh: parsing INFO replication (every format
# KeyDB has used), choosing which peers to add and which masters to prune,
# reading getent's output, and one whole round against a fake keydb-cli.
# Needs only bash and awk. Prints "N passed, N failed"; exits 1 on a failure.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=discover-peers.sh
source "$here/discover-peers.sh"

passed=0
failed=0

# check NAME EXPECTED ACTUAL
check() {
    if [ "$2" = "$3" ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        printf 'FAIL %s\n--- expected\n%s\n--- got\n%s\n---\n' "$1" "$2" "$3"
    fi
}

crlf() { sed 's/$/\r/'; }

# --- parse_masters ---------------------------------------------------------

check "no masters" "" "$(parse_masters <<'EOF'
# Replication
role:master
connected_slaves:2
slave0:ip=fdaa:0:1:a7b:1c1:aaaa:bbbb:2,port=6379,state=online,offset=10,lag=0
slave1:ip=10.0.0.7,port=6379,state=online,offset=10,lag=1
master_failover_state:no-failover
master_replid:f214c2411a60042d8e85679c3f3f7648943a245c
master_repl_offset:37
EOF
)"

check "single master, IPv4, master_host form" "10.0.0.2 6379 up" "$(parse_masters <<'EOF'
# Replication
role:slave
master_global_link_status:up
connected_masters:1
master_host:10.0.0.2
master_port:6379
master_link_status:up
master_last_io_seconds_ago:7
master_sync_in_progress:0
slave_read_repl_offset:51
slave_repl_offset:51
slave_priority:100
slave_read_only:1
connected_slaves:0
master_replid:f214c2411a60042d8e85679c3f3f7648943a245c
EOF
)"

check "KeyDB 6.3 multi-master, IPv6, CRLF, indexed fields" \
"fdaa:0:1:a7b:1c1:aaaa:bbbb:2 6379 up
fdaa:0:1:a7b:2d2:cccc:dddd:2 6379 down
10.1.2.3 6380 up" \
"$(crlf <<'EOF' | parse_masters
# Replication
role:active-replica
master_global_link_status:down
connected_masters:2
master_host:FDAA:0:1:A7B:1C1:AAAA:BBBB:2
master_port:6379
master_link_status:up
master_last_io_seconds_ago:1
master_sync_in_progress:0
slave_read_repl_offset:100
slave_repl_offset:100
master_1_host:fdaa:0:1:a7b:2d2:cccc:dddd:2
master_1_port:6379
master_1_link_status:down
master_1_last_io_seconds_ago:-1
master_1_sync_in_progress:0
slave_read_repl_offset:1
slave_repl_offset:1
master_1_link_down_since_seconds:40
master_2_host:10.1.2.3
master_2_port:6380
master_2_link_status:up
master_2_last_io_seconds_ago:0
master_2_sync_in_progress:0
slave_read_repl_offset:1
slave_repl_offset:1
slave_priority:100
slave_read_only:0
connected_slaves:1
slave0:ip=fdaa:0:1:a7b:1c1:aaaa:bbbb:2,port=6379,state=online,offset=100,lag=0
EOF
)"

check "KeyDB 6.0 multi-master, repeated master_host blocks" \
"fdaa::2 6379 up
fdaa::3 6379 down" \
"$(parse_masters <<'EOF'
# Replication
role:active-replica
Master 0: 
master_host:fdaa::2
master_port:6379
master_link_status:up
master_last_io_seconds_ago:1
master_sync_in_progress:0
slave_repl_offset:5
Master 1: 
master_host:fdaa::3
master_port:6379
master_link_status:down
master_last_io_seconds_ago:-1
master_sync_in_progress:0
slave_repl_offset:1
master_link_down_since_seconds:12
slave_priority:100
EOF
)"

check "one-line master_N:ip= form" \
"fdaa:0:1:a7b:1c1:aaaa:bbbb:2 6379 up
10.0.0.9 6379 unknown
fdaa::5 6379 down" \
"$(parse_masters <<'EOF'
# Replication
role:active-replica
master_global_link_status:up
connected_masters:1
master_0:ip=fdaa:0:1:a7b:1c1:aaaa:bbbb:2,port=6379,state=connected,offset=10,last_io_seconds_ago=0
master_1:ip=10.0.0.9,port=6379,active=1,offset=-1
master_2:ip=fdaa::5,port=6379,link_status=down
slave0:ip=10.0.0.9,port=6379,state=online,offset=10,lag=0
EOF
)"

check "master without a link status line" "fdaa::7 6379 unknown" \
"$(printf 'master_host:fdaa::7\nmaster_port:6379\n' | parse_masters)"

# --- normalize_addrs / resolve_peers ----------------------------------------

check "normalize drops v4-mapped and duplicates" \
"fdaa::1
fdaa::2" \
"$(printf 'FDAA::2\n::ffff:10.0.0.1\n\nfdaa::1\nfdaa::2\n' | normalize_addrs)"

getent() {
    # Canned `getent ahostsv6 NAME` output: three lines per address.
    [ "$1" = ahostsv6 ] || return 1
    case $2 in
    app.internal)
        printf '%s\n' \
            'fdaa:0:1:a7b:2d2:cccc:dddd:2 STREAM app.internal' \
            'fdaa:0:1:a7b:2d2:cccc:dddd:2 DGRAM' \
            'fdaa:0:1:a7b:2d2:cccc:dddd:2 RAW' \
            'fdaa:0:1:a7b:1c1:aaaa:bbbb:2 STREAM' \
            'fdaa:0:1:a7b:1c1:aaaa:bbbb:2 DGRAM' \
            'fdaa:0:1:a7b:1c1:aaaa:bbbb:2 RAW'
        ;;
    v4only.internal) printf '%s\n' '::ffff:10.0.0.1 STREAM v4only.internal' ;;
    *) return 2 ;;
    esac
}
check "resolve_peers via getent" \
"fdaa:0:1:a7b:1c1:aaaa:bbbb:2
fdaa:0:1:a7b:2d2:cccc:dddd:2" "$(resolve_peers app.internal)"
check "resolve_peers ignores IPv4-mapped" "" "$(resolve_peers v4only.internal)"
resolve_peers nobody.internal >/dev/null
check "resolve_peers: unknown name is an empty answer" "0" "$?"

# --- plan_additions ---------------------------------------------------------

self="fdaa::1
172.19.0.2"
masters="fdaa::2 6379 up
fdaa::3 6380 up"

check "adds only peers that are neither self nor masters" \
"fdaa::3
fdaa::4" \
"$(plan_additions "fdaa::1
fdaa::2
fdaa::3
fdaa::4" "$self" "$masters" 6379)"

check "a node alone adds nothing" "" "$(plan_additions "fdaa::1" "$self" "" 6379)"
check "empty DNS answer adds nothing" "" "$(plan_additions "" "$self" "$masters" 6379)"
check "nothing new: nothing added" "" \
"$(plan_additions "fdaa::1
fdaa::2" "$self" "$masters" 6379)"

# --- plan_prunes ------------------------------------------------------------

absent_rounds=()
masters="fdaa::2 6379 up
fdaa::9 6379 down
fdaa::8 6379 unknown"
peers="fdaa::1
fdaa::2"
plan_prunes "$peers" "$self" "$masters" 2
check "prune: first round only counts" "" "$prunes"
plan_prunes "$peers" "$self" "$masters" 2
check "prune: down and gone from DNS for 2 rounds" "fdaa::9 6379" "${prunes%$'\n'}"
plan_prunes "$peers" "$self" "$masters" 2
check "prune: counter restarts after a prune" "" "$prunes"

absent_rounds=()
plan_prunes "fdaa::2" "$self" "$masters" 1
check "prune: skipped when DNS does not list self" "" "$prunes"
plan_prunes "" "$self" "$masters" 1
check "prune: skipped on an empty DNS answer" "" "$prunes"
plan_prunes "$peers" "$self" "$masters" 0
check "prune: threshold 0 disables it" "" "$prunes"

absent_rounds=()
plan_prunes "$peers" "$self" "$masters" 2
plan_prunes "$peers
fdaa::9" "$self" "$masters" 2
plan_prunes "$peers" "$self" "$masters" 2
check "prune: reappearing in DNS resets the count" "" "$prunes"

# --- discover_once with a fake keydb-cli ------------------------------------

# discover_once runs kcli inside $( ), so the fake records its calls in a file.
calls_file=$(mktemp)
trap 'rm -f "$calls_file"' EXIT
fake_info=""
kcli() {
    case "$*" in
    "info replication") printf '%s' "$fake_info" ;;
    replicaof*) printf '%s\n' "$*" >>"$calls_file"; echo OK ;;
    *) echo "unexpected: $*"; return 1 ;;
    esac
}
calls() { cat "$calls_file"; }
self_addrs() { printf '%s\n' "fdaa:0:1:a7b:1c1:aaaa:bbbb:2"; }
KEYDB_PORT=6379
KEYDB_PRUNE_AFTER=20
absent_rounds=()

fake_info=$'# Replication\r\nrole:master\r\nconnected_slaves:0\r\n'
discover_once app.internal 2>/dev/null
check "round: first peer is added" "replicaof fdaa:0:1:a7b:2d2:cccc:dddd:2 6379" "$(calls)"

: >"$calls_file"
fake_info=$'# Replication\r\nrole:active-replica\r\nmaster_host:fdaa:0:1:a7b:2d2:cccc:dddd:2\r\nmaster_port:6379\r\nmaster_link_status:up\r\n'
discover_once app.internal 2>/dev/null
check "round: existing master is not re-added" "" "$(calls)"

: >"$calls_file"
fake_info=$'# Replication\r\nrole:master\r\n'
discover_once nobody.internal 2>/dev/null
check "round: no peers, no calls" "" "$(calls)"

: >"$calls_file"
fake_info="NOAUTH Authentication required."
discover_once app.internal 2>/dev/null
check "round: bad INFO reply fails the round" "1" "$?"
check "round: bad INFO reply adds nothing" "" "$(calls)"

: >"$calls_file"
KEYDB_PRUNE_AFTER=1
fake_info=$'# Replication\r\nrole:active-replica\r\nmaster_host:fdaa:0:1:a7b:2d2:cccc:dddd:2\r\nmaster_port:6379\r\nmaster_link_status:up\r\nmaster_1_host:fdaa::9\r\nmaster_1_port:6379\r\nmaster_1_link_status:down\r\n'
discover_once app.internal 2>/dev/null
check "round: a dead master gone from DNS is removed" "replicaof remove fdaa::9 6379" "$(calls)"

printf '%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
