#!/usr/bin/env bash
# entrypoint.sh: starts one KeyDB multi-master node on Fly.
#
# Writes the server config from the environment (nothing secret is baked
# into the image), starts keydb-server as the unprivileged keydb user, runs
# discover-peers.sh beside it, forwards SIGTERM/SIGINT to keydb-server so it
# can finish its append-only file and exit cleanly, and exits with the
# server's status.
#
# Environment:
#   KEYDB_PASSWORD   required; password of the default user, also used to
#                    authenticate to the other nodes (masterauth). Letters,
#                    digits and . _ ~ - only, at least 16 characters (it goes
#                    into a redis:// URL unescaped). `openssl rand -hex 32`.
#   KEYDB_MAXMEMORY  optional memory cap, e.g. "256mb" (default: none).
#   KEYDB_BIND       optional listen addresses (default ":: 0.0.0.0").
#   KEYDB_DATA_DIR   optional data directory (default /data, the volume).
#   KEYDB_CONF_DIR   optional directory for the generated config
#                    (default /etc/keydb).
set -euo pipefail

log() {
    printf 'entrypoint: %s\n' "$*" >&2
}

die() {
    log "$*"
    exit 1
}

if [ -z "${KEYDB_PASSWORD:-}" ]; then
    die "KEYDB_PASSWORD is not set. Set it as a secret: fly secrets set KEYDB_PASSWORD=\$(openssl rand -hex 32) -a <this-app>"
fi
case $KEYDB_PASSWORD in
*[!A-Za-z0-9._~-]*)
    die "KEYDB_PASSWORD may only contain letters, digits and . _ ~ - (it is used unescaped in redis:// URLs); try: openssl rand -hex 32"
    ;;
esac
if [ "${#KEYDB_PASSWORD}" -lt 16 ]; then
    die "KEYDB_PASSWORD is shorter than 16 characters; try: openssl rand -hex 32"
fi

port=6379
bind="${KEYDB_BIND:-:: 0.0.0.0}"
case $bind in
*[!0-9A-Fa-f:.\ -]* | '') die "KEYDB_BIND must be a space-separated list of IP addresses, got: $bind" ;;
esac
data_dir="${KEYDB_DATA_DIR:-/data}"
maxmemory="${KEYDB_MAXMEMORY:-}"
if [ -n "$maxmemory" ] && ! [[ $maxmemory =~ ^[0-9]+([kKmMgG][bB]?)?$ ]]; then
    die "KEYDB_MAXMEMORY must look like 256mb or 1gb, got: $maxmemory"
fi

conf_dir="${KEYDB_CONF_DIR:-/etc/keydb}"
conf="$conf_dir/fly.conf"
mkdir -p "$conf_dir" "$data_dir"

run_as_keydb=0
if [ "$(id -u)" -eq 0 ] && id keydb >/dev/null 2>&1 && command -v gosu >/dev/null 2>&1; then
    run_as_keydb=1
fi

# The config holds the password: readable by root and the keydb group only.
umask 027
tmp_conf=$(mktemp "$conf_dir/fly.conf.XXXXXX")
{
    cat <<EOF
# Written by entrypoint.sh at every start; edits here are lost.
daemonize no
logfile ""
loglevel notice

# Fly's private network (6PN) is IPv6; 0.0.0.0 also allows local IPv4 use.
bind $bind
port $port
tcp-keepalive 60
# Safe only because every client must authenticate (requirepass below) and
# the app has no public service: it is reachable on the private network only.
protected-mode no
requirepass "$KEYDB_PASSWORD"
masterauth "$KEYDB_PASSWORD"

# Multi-master mesh: every node accepts writes and replicates from every other
# node; each REPLICAOF (see discover-peers.sh) adds a master.
active-replica yes
multi-master yes
replica-read-only no
replica-serve-stale-data yes

# Durability on the volume.
dir $data_dir
appendonly yes
appendfsync everysec
save 900 1
save 300 10
save 60 10000

# The app subscribes to keyspace notifications (K = keyspace channel,
# g = generic commands such as DEL/EXPIRE, x = expired). CONFIG SET of this
# is lost on restart, so it has to be here.
notify-keyspace-events Kgx
EOF
    if [ -n "$maxmemory" ]; then
        printf 'maxmemory %s\n' "$maxmemory"
        # Presence keys carry TTLs: never evict live state, fail writes instead.
        printf 'maxmemory-policy noeviction\n'
    fi
} >"$tmp_conf"
mv -f "$tmp_conf" "$conf"
umask 022

if [ "$run_as_keydb" -eq 1 ]; then
    chown root:keydb "$conf"
    # The volume is mounted owned by root; files left by an earlier run as
    # root would be unwritable too.
    find "$data_dir" ! -user keydb -exec chown keydb:keydb {} +
fi
chmod 0640 "$conf"

keydb_pid=""
discover_pid=""
shutting_down=0
# shellcheck disable=SC2317  # called from the traps below
on_signal() {
    if [ "$shutting_down" -eq 0 ]; then
        shutting_down=1
        log "$1: stopping peer discovery and keydb-server"
        if [ -n "$discover_pid" ]; then kill -TERM "$discover_pid" 2>/dev/null || true; fi
        if [ -n "$keydb_pid" ]; then kill -TERM "$keydb_pid" 2>/dev/null || true; fi
    fi
}
# Traps first, so a signal that arrives while starting up is not lost.
trap 'on_signal SIGTERM' TERM
trap 'on_signal SIGINT' INT

log "starting keydb-server (port $port, data in $data_dir)"
if [ "$run_as_keydb" -eq 1 ]; then
    gosu keydb keydb-server "$conf" &
else
    keydb-server "$conf" &
fi
keydb_pid=$!

KEYDB_PORT=$port "$(dirname "$0")/discover-peers.sh" &
discover_pid=$!

if [ "$shutting_down" -eq 1 ]; then
    kill -TERM "$discover_pid" "$keydb_pid" 2>/dev/null || true
fi

# wait returns early (status > 128) when a trapped signal arrives; keep
# waiting until keydb-server has really exited, then pass on its status.
status=0
while :; do
    status=0
    wait "$keydb_pid" || status=$?
    if ! kill -0 "$keydb_pid" 2>/dev/null; then
        break
    fi
done

kill -TERM "$discover_pid" 2>/dev/null || true
wait "$discover_pid" 2>/dev/null || true
log "keydb-server exited with status $status"
exit "$status"
