#!/usr/bin/env bash
# A real backup and restore into a local-directory repository, with no other set-up:
# builds coffer, creates a repository, backs up the project's sources, restores them,
# checks every byte, and shows that the restored tree equals the original.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
coffer=target/release/coffer
work=${COFFER_DEMO_DIR:-$(mktemp -d /tmp/coffer-demo.XXXXXX)}
mkdir -p "$work"
export COFFER_REPOSITORY="$work/repo"
# A demo passphrase from a file; real use: an interactive prompt, a file or a command.
umask 077
printf 'demo passphrase, replace me\n' > "$work/passphrase"
export COFFER_PASSWORD_FILE="$work/passphrase"

[ -e "$COFFER_REPOSITORY/config" ] || "$coffer" init
"$coffer" backup --tag demo src docs README.md
"$coffer" snapshots
"$coffer" restore latest --target "$work/restored"
"$coffer" check --read-data
"$coffer" drill --rto 1h --rpo 24h
"$coffer" report drill latest --format html -o "$work/drill-report.html"
diff -r src "$work/restored$(pwd)/src"
echo "demo: restored tree matches the original; drill report: $work/drill-report.html"
