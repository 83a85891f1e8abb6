# shellcheck shell=bash
# Shared helpers for ctk's bash scripts (scripts/setup, scripts/engines,
# scripts/images). Source it; it is not executable on its own.
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Sourcing it cds to the repository root, so every script works from anywhere.

CTK_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CTK_ROOT
cd "$CTK_ROOT"

# Where ctk keeps its runtime state and logs on the machine (outside the repo).
CTK_RUN=/run/ctk
CTK_LOG=/var/log/ctk
CTK_CACHE=/var/cache/ctk

# Our CRIU build goes to /usr/local/sbin; runc and podman look criu up through
# PATH, so it must come first in every daemon we start (and in our own PATH).
CTK_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
case ":$PATH:" in
  *:/usr/local/sbin:*) ;;
  *) PATH="/usr/local/sbin:$PATH" ;;
esac
export PATH

DOCKER_SOCK=/var/run/docker.sock
PODMAN_SOCK=/run/podman/podman.sock

# say MSG...: progress to stderr, prefixed with the script's name.
say() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() { say "error: $*"; exit 1; }

# debian_major: 12 for bookworm, 13 for trixie. /etc/debian_version holds
# "12.11" on a release, but "trixie/sid" on testing, so map codenames too.
debian_major() {
  local v
  v="$(cat /etc/debian_version 2>/dev/null || true)"
  case "$v" in
    [0-9]*) echo "${v%%.*}" ;;
    bookworm*) echo 12 ;;
    trixie*) echo 13 ;;
    forky*) echo 14 ;;
    *) die "unsupported system: /etc/debian_version is '$v'" ;;
  esac
}

# version_ge A B: true if version A >= version B (dotted numbers).
version_ge() {
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}

# criu_version [BINARY]: "4.1.1", or nothing when there is no working criu.
criu_version() {
  local bin="${1:-criu}"
  command -v "$bin" >/dev/null 2>&1 || return 0
  "$bin" --version 2>/dev/null | sed -n 's/^Version: *//p' | head -n1
}

# pkgs_missing PKG...: prints the packages that are not installed.
pkgs_missing() {
  local p
  for p in "$@"; do
    if [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null)" != "ii " ]; then
      echo "$p"
    fi
  done
}

# apt_has PKG: true if apt knows an installable candidate for PKG.
apt_has() {
  local c
  c="$(apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: *//p')"
  [ -n "$c" ] && [ "$c" != "(none)" ]
}

# apt_update_once: apt-get update, at most once per script run.
_CTK_APT_UPDATED=
apt_update_once() {
  [ -n "$_CTK_APT_UPDATED" ] && return 0
  say "apt-get update"
  apt_get update -q >/dev/null
  _CTK_APT_UPDATED=1
}

# apt_get ARGS...: apt-get, non-interactive, waiting for a dpkg lock held by
# another apt run instead of failing at once.
apt_get() {
  # needrestart (if installed) would try to restart services: keep it quiet.
  DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 \
    apt-get -o DPkg::Lock::Timeout=600 "$@" \
    2> >(grep -v "delaying package configuration, since apt-utils" >&2)
}

# apt_install PKG...: installs those not yet installed; silent if none.
apt_install() {
  local missing
  missing="$(pkgs_missing "$@")"
  [ -z "$missing" ] && return 0
  # shellcheck disable=SC2086  # word splitting wanted: one package a word
  say "installing:" $missing
  apt_update_once
  # Without systemd, maintainer scripts would start dockerd, sshd, ... through
  # their init scripts (dockerd before daemon.json is ours). A policy-rc.d
  # that answers 101 forbids that, as in any Debian chroot or container.
  local policy=/usr/sbin/policy-rc.d made=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# temporary, from ctk scripts/setup\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    made=1
  fi
  local rc=0
  # shellcheck disable=SC2086
  apt_get install -y -q --no-install-recommends $missing >/dev/null || rc=$?
  [ -z "$made" ] || rm -f "$policy"
  return "$rc"
}

# write_containerd_config FILE ROOT STATE ADDRESS: the config of a containerd
# that a dockerd of ours uses through --containerd. dockerd's own (managed)
# containerd keeps the default garbage collector, which frees a deleted blob
# only at its next scheduled run (up to about a second later). A checkpoint or
# restore that writes the same blob before then fails with "commit failed:
# content sha256:...: already exists" (moby#42900): a restore right after a
# checkpoint re-uploads the very tar the checkpoint produced, and a checkpoint
# re-uploads the container's unchanged spec. Collecting after every deletion
# closes that window.
write_containerd_config() {
  write_if_changed "$1" <<EOF
# Written by ctk's scripts: the containerd under a dockerd that ctk started.
version = 2
root = "$2"
state = "$3"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$4"

[plugins."io.containerd.gc.v1.scheduler"]
  deletion_threshold = 1
  schedule_delay = "0s"
EOF
}

# write_if_changed FILE: stdin to FILE (mode 0644), only when the content differs.
write_if_changed() {
  local file="$1" tmp
  tmp="$(mktemp)"
  cat >"$tmp"
  if cmp -s "$tmp" "$file"; then
    rm -f "$tmp"
    return 0
  fi
  mkdir -p "$(dirname "$file")"
  mv "$tmp" "$file"
  chmod 0644 "$file"
  say "wrote $file"
}

# limit_at_most WANT HARD: the smaller of the two ("unlimited" is infinite).
limit_at_most() {
  if [ "$2" = unlimited ] || [ "$1" -le "$2" ]; then echo "$1"; else echo "$2"; fi
}

# wait_socket PATH SECONDS: true once PATH is a socket, false after SECONDS.
wait_socket() {
  local i
  for ((i = 0; i < $2 * 4; i++)); do
    [ -S "$1" ] && return 0
    sleep 0.25
  done
  return 1
}

# ping_docker / ping_podman: true if the engine's API answers on its socket.
ping_docker() {
  [ -S "$DOCKER_SOCK" ] &&
    curl -fsS --max-time 3 --unix-socket "$DOCKER_SOCK" http://x/_ping >/dev/null 2>&1
}
ping_podman() {
  [ -S "$PODMAN_SOCK" ] &&
    curl -fsS --max-time 3 --unix-socket "$PODMAN_SOCK" http://d/_ping >/dev/null 2>&1
}

# debian_mirror: the URI of the machine's Debian archive (the first apt source
# whose URI ends in /debian, not -security), or deb.debian.org.
debian_mirror() {
  local u=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    u="$(awk 'BEGIN{RS=""} /URIs:[^\n]*\/debian\/?(\n|$)/ {print; exit}' \
      /etc/apt/sources.list.d/debian.sources | sed -n 's/^URIs: *//p' | head -n1)"
  fi
  if [ -z "$u" ] && [ -f /etc/apt/sources.list ]; then
    u="$(awk '$1 == "deb" && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list)"
  fi
  echo "${u:-http://deb.debian.org/debian}"
}
