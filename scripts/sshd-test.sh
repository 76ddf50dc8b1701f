#!/bin/sh
# A throwaway OpenSSH server on 127.0.0.1 for the euca-scp tests.
#
#   scripts/sshd-test.sh start DIR PORT [PATH_DIR]   prints DIR/ssh_config
#   scripts/sshd-test.sh stop DIR
#
# `start` makes its own host key and client key in DIR (which must exist and be
# private), authorizes the client key for root, puts PATH_DIR first on the PATH
# of remote commands, and starts Debian's sshd listening on 127.0.0.1:PORT only.
# DIR/ssh_config is a client config using that key and a known_hosts pinned to
# that host key (strict checking, batch mode). `stop` ends that sshd.
set -eu

usage() { echo "usage: $0 start DIR PORT [PATH_DIR] | stop DIR" >&2; exit 2; }

start() {
    dir=$1 port=$2 path_dir=${3:-}
    [ -d "$dir" ] || { echo "$0: $dir does not exist" >&2; exit 1; }
    ssh-keygen -q -t ed25519 -N '' -C rehost-test-host -f "$dir/host_key"
    ssh-keygen -q -t ed25519 -N '' -C rehost-test-client -f "$dir/client_key"
    cp "$dir/client_key.pub" "$dir/authorized_keys"
    printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$dir/host_key.pub")" > "$dir/known_hosts"
    cat > "$dir/sshd_config" <<CONF
ListenAddress 127.0.0.1:$port
HostKey $dir/host_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
Subsystem sftp /usr/lib/openssh/sftp-server
SetEnv PATH=${path_dir:+$path_dir:}/usr/local/bin:/usr/bin:/bin
LogLevel ERROR
CONF
    cat > "$dir/ssh_config" <<CONF
Host 127.0.0.1
    User root
    IdentityFile $dir/client_key
    IdentitiesOnly yes
    IdentityAgent none
    UserKnownHostsFile $dir/known_hosts
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    ConnectTimeout 10
CONF
    # sshd's privilege separation directory.
    mkdir -p /run/sshd
    /usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log"
    echo "$dir/ssh_config"
}

stop() {
    dir=$1
    [ -f "$dir/sshd.pid" ] || exit 0
    kill "$(cat "$dir/sshd.pid")" 2>/dev/null || true
    rm -f "$dir/sshd.pid"
}

[ $# -ge 1 ] || usage
cmd=$1; shift
case $cmd in
    start) [ $# -ge 2 ] || usage; start "$@" ;;
    stop) [ $# -eq 1 ] || usage; stop "$1" ;;
    *) usage ;;
esac
