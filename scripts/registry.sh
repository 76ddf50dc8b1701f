#!/usr/bin/env bash
# A throwaway OCI registry (Debian's docker-registry, installed by setup.sh) on
# 127.0.0.1, for the plugin registry tests and for trying `rehost plugin publish`.
#
#   scripts/registry.sh start DIR [--port N] [--user USER:PASSWORD]
#       storage, config and pid file in DIR; prints the registry address once it
#       answers. The port defaults to a free one; --user turns on basic auth
#       (htpasswd, bcrypt) with that one account.
#   scripts/registry.sh stop DIR
#       stops the registry started in DIR.
#
# Storage is plain files under DIR/storage, so tests can tamper with a blob to
# prove digests are checked.
set -euo pipefail

usage() {
  echo "usage: $0 start DIR [--port N] [--user USER:PASSWORD] | stop DIR" >&2
  exit 2
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The htpasswd line for USER:PASSWORD (the registry accepts only bcrypt).
htpasswd_line() {
  python3 -W ignore -c 'import crypt, sys
user, password = sys.argv[1].split(":", 1)
print(user + ":" + crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH)))' "$1"
}

start() {
  local dir=$1 port="" user=""
  shift
  while [ $# -gt 0 ]; do
    case $1 in
      --port) port=$2; shift 2 ;;
      --user) user=$2; shift 2 ;;
      *) usage ;;
    esac
  done
  port=${port:-$(free_port)}
  command -v docker-registry >/dev/null || {
    echo "registry.sh: docker-registry is not installed (run scripts/setup.sh)" >&2
    exit 1
  }
  mkdir -p "$dir/storage"
  cat >"$dir/config.yml" <<CONF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
  # Only this one process serves uploads; a fixed secret just silences the warning.
  secret: rehost-local-registry
CONF
  if [ -n "$user" ]; then
    htpasswd_line "$user" >"$dir/htpasswd"
    cat >>"$dir/config.yml" <<CONF
auth:
  htpasswd:
    realm: rehost-local-registry
    path: $dir/htpasswd
CONF
  fi
  docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
  echo $! >"$dir/registry.pid"
  for _ in $(seq 1 100); do
    # Any HTTP answer (401 with auth on) means it is serving.
    if curl -sS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null; then
      echo "127.0.0.1:$port"
      return 0
    fi
    if ! kill -0 "$(cat "$dir/registry.pid")" 2>/dev/null; then
      echo "registry.sh: docker-registry exited; its log:" >&2
      cat "$dir/registry.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "registry.sh: the registry did not answer on 127.0.0.1:$port within 10 s" >&2
  stop "$dir"
  exit 1
}

stop() {
  local pidfile=$1/registry.pid
  [ -f "$pidfile" ] || return 0
  local pid
  pid=$(cat "$pidfile")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

case ${1:-} in
  start) [ $# -ge 2 ] || usage; shift; start "$@" ;;
  stop) [ $# -eq 2 ] || usage; stop "$2" ;;
  *) usage ;;
esac
