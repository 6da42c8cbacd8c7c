#!/usr/bin/env bash
# A single-node Garage (S3-compatible object store) on 127.0.0.1, for tests and for users who
# want a local S3 server.
#
#   scripts/garage.sh start [DIR]   install Garage if missing, start it in DIR (default: a new
#                                   temporary directory), create a bucket and a key, and print
#                                   the environment to use (eval "$(scripts/garage.sh start)")
#   scripts/garage.sh stop DIR      stop it and remove DIR
#
# Ports: S3 API 127.0.0.1:3900, RPC 127.0.0.1:3901 (override with GARAGE_S3_PORT and
# GARAGE_RPC_PORT). Everything it prints on stdout is shell assignments.
set -euo pipefail

GARAGE_VERSION=2.5.0
s3_port=${GARAGE_S3_PORT:-3900}
rpc_port=${GARAGE_RPC_PORT:-3901}

install_garage() {
    if command -v garage >/dev/null 2>&1 && garage --version 2>/dev/null | grep -q "$GARAGE_VERSION"; then
        return
    fi
    echo "garage.sh: installing Garage $GARAGE_VERSION with cargo (takes a while the first time)" >&2
    cargo install garage --version "$GARAGE_VERSION" --locked \
        --no-default-features --features bundled-libs,lmdb,sqlite >&2
}

start() {
    install_garage
    local dir=${1:-$(mktemp -d /tmp/coffer-garage.XXXXXX)}
    mkdir -p "$dir/meta" "$dir/data"
    cat >"$dir/garage.toml" <<TOML
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.garage.localhost"
TOML
    local g=(garage -c "$dir/garage.toml")
    "${g[@]}" server >"$dir/server.log" 2>&1 &
    echo $! >"$dir/pid"
    for _ in $(seq 1 100); do
        if "${g[@]}" status >/dev/null 2>&1; then break; fi
        sleep 0.2
    done
    local node
    node=$("${g[@]}" node id -q 2>/dev/null | cut -d@ -f1)
    "${g[@]}" layout assign -z dc1 -c 10G "$node" >&2
    "${g[@]}" layout apply --version 1 >&2
    "${g[@]}" bucket create coffer-test >&2
    local key
    key=$("${g[@]}" key create coffer-test-key)
    "${g[@]}" bucket allow --read --write --owner coffer-test --key coffer-test-key >&2
    local id secret
    id=$(printf '%s\n' "$key" | sed -n 's/^Key ID: *//p')
    secret=$(printf '%s\n' "$key" | sed -n 's/^Secret key: *//p')
    cat <<ENV
export GARAGE_DIR='$dir'
export AWS_ACCESS_KEY_ID='$id'
export AWS_SECRET_ACCESS_KEY='$secret'
export AWS_REGION='garage'
export AWS_ENDPOINT_URL='http://127.0.0.1:$s3_port'
export COFFER_S3_TEST_URL='s3://coffer-test/'
ENV
}

stop() {
    local dir=${1:?usage: garage.sh stop DIR}
    if [ -f "$dir/pid" ]; then
        kill "$(cat "$dir/pid")" 2>/dev/null || true
        sleep 0.5
    fi
    rm -rf "$dir"
}

case "${1:-}" in
    start) start "${2:-}" ;;
    stop) stop "${2:-}" ;;
    *) echo "usage: $0 start [DIR] | stop DIR" >&2; exit 2 ;;
esac
