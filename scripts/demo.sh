#!/usr/bin/env bash
# Bring the local environment up and show it working, as a new user would.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin

echo "==> invoke up (local)"
"$bin/invoke" up
echo
echo "==> invoke status"
"$bin/invoke" status
echo
url=$("$bin/invoke" status --format json | "$bin/python" -c 'import json,sys; print(json.load(sys.stdin)["url"])')
echo "==> requests through nginx at $url"
for path in /healthz /api/health /api/products/1 "/api/orders?user_id=42"; do
  printf '%s  ' "GET $path"
  curl -sS -o /dev/null -D - "$url$path" | awk 'NR==1 {printf "%s ", $2} tolower($1)=="x-replica:" {printf "(served by %s)", $2} END {print ""}'
done
echo
echo "The stack keeps running; stop it with: $bin/invoke down"
