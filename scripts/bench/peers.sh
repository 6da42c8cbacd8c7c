#!/usr/bin/env bash
# Installs the backup tools Coffer is compared with, when they are missing:
# restic and borg from Debian, rustic and bupstash from crates.io (bupstash needs libsodium).
# Safe to run again: it installs only what `command -v` does not find.
set -euo pipefail

sudo_if() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need_apt=()
command -v restic >/dev/null || need_apt+=(restic)
command -v borg >/dev/null || need_apt+=(borgbackup)
command -v bupstash >/dev/null || need_apt+=(libsodium-dev pkg-config)
command -v hyperfine >/dev/null || need_apt+=(hyperfine)
if [ ${#need_apt[@]} -gt 0 ]; then
    sudo_if apt-get update -qq
    DEBIAN_FRONTEND=noninteractive sudo_if apt-get install -y -qq "${need_apt[@]}"
fi
# Peers are built at low priority so that a concurrent build of Coffer keeps its cores.
command -v rustic >/dev/null || nice -n 19 cargo install --locked rustic-rs
command -v bupstash >/dev/null || nice -n 19 cargo install --locked bupstash
for tool in restic borg rustic bupstash; do
    case $tool in
        restic) version=$(restic version 2>&1 | head -1) ;;  # restic has no --version
        *) version=$("$tool" --version 2>&1 | head -1) ;;
    esac
    printf '%-9s %s\n' "$tool" "$version"
done
