#!/usr/bin/env bash
# A throwaway OCI registry (Debian's docker-registry, installed by setup.sh) on
# 127.0.0.1, for the plugin registry tests and for trying `rehost plugin publish`.
#
#   scripts/registry.sh start DIR [PORT]   storage, config and pid file in DIR;
#                                          prints the registry address when it answers
#   scripts/registry.sh stop DIR           stops the registry started in DIR
#
# PORT defaults to a free one. Storage is plain files under DIR/storage, so tests
# can tamper with a blob to prove digests are checked.
set -euo pipefail

usage() {
  echo "usage: $0 start DIR [PORT] | stop DIR" >&2
  exit 2
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  local dir=$1 port=${2:-$(free_port)}
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
  docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
  echo $! >"$dir/registry.pid"
  for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/"; then
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
  start) [ $# -ge 2 ] || usage; start "$2" "${3:-}" ;;
  stop) [ $# -eq 2 ] || usage; stop "$2" ;;
  *) usage ;;
esac
