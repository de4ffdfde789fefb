#!/usr/bin/env bash
# Release binary footprint: size, cold start to /readyz 200, idle RSS.
# Usage: scripts/footprint.sh   (builds with the release profile first)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet
bin=target/release/hookrelay
dir=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$dir/config.toml" <<TOML
[server]
bind = "127.0.0.1:$port"
[database]
path = "$dir/hookrelay.db"
[auth]
admin_token = "footprint"
TOML
size=$(stat -c %s "$bin")
start=$(date +%s%N)
"$bin" serve --config "$dir/config.toml" 2>"$dir/log" &
pid=$!
deadline=$(( $(date +%s) + 30 ))
until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do
  if ! kill -0 "$pid" 2>/dev/null || [ "$(date +%s)" -gt "$deadline" ]; then
    echo "hookrelay did not become ready; its log:" >&2; cat "$dir/log" >&2; exit 1
  fi
  sleep 0.005
done
ready=$(( ($(date +%s%N) - start) / 1000000 ))
sleep 10
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
awk -v b="$size" 'BEGIN { printf "binary: %.1f MiB (%d bytes; release profile: lto = \"fat\", codegen-units = 1, strip)\n", b / 1048576, b }'
printf 'cold start to /readyz 200 (fresh database, migrations included): %s ms\n' "$ready"
awk -v k="$rss" 'BEGIN { printf "idle RSS after 10 s: %.1f MiB\n", k / 1024 }'
