# Shared by the examples (sourced, not run): argument parsing, the ctk command, cleanup, and
# HTTP probes that send traffic only to the host's loopback or to containers the example made.
# shellcheck shell=bash
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EXAMPLE=$(basename "$0")
ENGINE=${CTK_ENGINE:-docker}
TESTBED=""

usage() {
  # The header comment of the example is its help.
  sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"
  echo "usage: examples/$EXAMPLE [--engine docker|podman]${TESTBED_USAGE:-}"
}

while [ $# -gt 0 ]; do
  case $1 in
    --engine) ENGINE=${2:?--engine needs docker or podman}; shift 2 ;;
    --engine=*) ENGINE=${1#*=}; shift ;;
    --testbed) TESTBED=1; shift ;;  # examples that span hosts use scripts/testbed's
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
case $ENGINE in docker|podman) ;; *) echo "unknown engine $ENGINE (docker or podman)" >&2; exit 2 ;; esac

# CTK overrides the command (the tests run the worktree's code this way); otherwise the repo's
# own venv runs the repo's own toolkit.
if [ -n "${CTK:-}" ]; then
  read -ra CTK_CMD <<<"$CTK"
else
  CTK_CMD=(env "PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}" "$REPO/.venv/bin/python" -m toolkit)
fi

ctk() { "${CTK_CMD[@]}" --engine "$ENGINE" "$@"; }

# Everything the example makes carries these labels (ctk.test=1 too when a test runs it);
# the run label lets cleanup find exactly this run's containers and networks.
SUFFIX="$$-$RANDOM"
LABELS=(-l "ctk.example=$EXAMPLE" -l "ctk.example.run=$SUFFIX")
[ -n "${CTK_TEST:-}" ] && LABELS+=(-l ctk.test=1)

cleanup() {
  local names
  names=$(ctk ps -a --json 2>/dev/null | python3 -c '
import json, sys
for c in json.load(sys.stdin):
    if c["labels"].get("ctk.example.run") == sys.argv[1]:
        print(c["name"])
' "$SUFFIX") || true
  # shellcheck disable=SC2086
  [ -z "$names" ] || ctk rm -f $names >/dev/null 2>&1 || true
  ctk network prune -f --filter "label=ctk.example.run=$SUFFIX" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# A unique name for a container or network of this run.
container_name() { echo "ctk-ex-$1-$SUFFIX"; }
network_name() { echo "ctk-ex-$1-$SUFFIX"; }

step() { printf '\n== %s\n' "$*"; }
# Print a ctk command, then run it.
show() { printf '$ ctk %s\n' "$*"; ctk "$@"; }

# The IPv4 address of container $2 on network $1, found by inspecting the network.
ip_on() {
  ctk network inspect "$1" --json | python3 -c '
import json, sys
(net,) = json.load(sys.stdin)
print(next(c["ipv4"].split("/")[0] for c in net["containers"] if c["name"] == sys.argv[1]))
' "$2"
}

# The demo busybox is static glibc: its wget crashes, its nslookup and nc work. So the probe
# resolves a name with nslookup (asking the engine's DNS), then speaks HTTP/1.0 with nc.
PROBE='host=$1 port=$2 path=$3
case $host in
  *[!0-9.]*) ip=$(nslookup "$host" 2>/dev/null | awk "/^Name:/{f=1} f && /^Address/{print \$2; exit}")
             [ -n "$ip" ] || { echo "cannot resolve $host"; exit 9; }
             echo "resolved $host -> $ip" ;;
  *) ip=$host ;;
esac
reply=$(printf "GET %s HTTP/1.0\r\n\r\n" "$path" | nc -w 3 "$ip" "$port" 2>&1)
case $reply in
  "HTTP/1."*" 200 "*) printf "%s\n" "$reply" | sed "1,/^\r*$/d" ;;
  *) echo "no answer from $ip:$port"; exit 1 ;;
esac'

# fetch_from NETWORK HOST [PORT] [PATH]: GET from inside a throwaway container on NETWORK.
fetch_from() {
  local name
  name=$(container_name "probe-$RANDOM")
  ctk run --name "$name" "${LABELS[@]}" --network "$1" ctk-demo/busybox \
    sh -c "$PROBE" probe "$2" "${3:-8080}" "${4:-/count}" 2>&1
}

# wait_until SECONDS WHAT COMMAND...: run COMMAND every 0.2 s until it succeeds; fail after
# SECONDS. The examples wait for a condition, never for a fixed time.
wait_until() {
  local timeout=$1 what=$2 deadline
  shift 2
  deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "timed out after ${timeout}s waiting for $what" >&2
      return 1
    fi
    sleep 0.2
  done
}

# last_count NAME: the last count=N the counter container NAME printed (0 before the first).
last_count() {
  local n
  n=$(ctk logs "$1" 2>/dev/null | tr -d '\r' | sed -n 's/^count=//p' | tail -n 1)
  echo "${n:-0}"
}
counted() { [ "$(last_count "$1")" -ge "$2" ]; }

# wait_count NAME N: wait (30 s at most) until the counter NAME has printed count=N. From
# count=2 on its httpd serves /count (it starts httpd, then writes the file each count).
wait_count() { wait_until 30 "$1 to count to $2" counted "$1" "$2"; }

# fetch_host PORT [PATH]: GET http://127.0.0.1:PORT/PATH from the host, with bash alone.
fetch_host() {
  local reply
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf 'GET %s HTTP/1.0\r\n\r\n' "${2:-/count}" >&3
  reply=$(cat <&3)
  exec 3<&-
  case $reply in
    "HTTP/1."*" 200 "*) printf '%s\n' "$reply" | sed '1,/^\r*$/d' ;;
    *) return 1 ;;
  esac
}

# wait_host PORT: retry fetch_host for up to 15 s (the server needs a moment to start).
wait_host() {
  local i
  for i in $(seq 1 75); do
    fetch_host "$@" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "nothing answers on 127.0.0.1:$1" >&2
  return 1
}

# A TCP port free on the host's loopback right now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The counter image's script with its httpd moved to ADDR:PORT (for host networking).
counter_on() { echo "sed 's/-p 8080/-p $1/' /counter.sh >/c.sh && exec sh /c.sh"; }
