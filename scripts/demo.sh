#!/usr/bin/env bash
# The arena demo (make demo): a game server keeps 200 bot players connected
# while its code is upgraded, downgraded and a failing upgrade rolls back.
# Usage: scripts/demo.sh BUILD_DIR
set -euo pipefail

build=${1:-build}
hotswap=$build/host/hotswap
bot=$build/examples/arena/arena_bot
releases=$build/releases
for f in "$hotswap" "$bot" "$releases/arena-1.0.0.tar.gz"; do
  [ -e "$f" ] || { echo "demo: $f is missing; run 'make demo'" >&2; exit 1; }
done

root=$(mktemp -d /tmp/hotswap-demo.XXXXXX)
bot_pid=""
cleanup() {
  [ -n "$bot_pid" ] && kill "$bot_pid" 2>/dev/null || true
  "$hotswap" stop --root "$root" >/dev/null 2>&1 || true
  rm -rf "$root"
}
trap cleanup EXIT

hs() { "$hotswap" "$@" --root "$root"; }
say() { printf '\n== %s\n' "$*"; }
pauses=()
# Runs one upgrade/downgrade, shows its progress, records "label: outcome, pause".
swap() {
  local label=$1; shift
  say "$label"
  local out status=0
  out=$(hs "$@" 2>&1) || status=$?
  printf '%s\n' "$out" | sed 's/^/   /'
  local outcome pause
  # A refused upgrade (its rehearsal failed) paused nothing: no pause line (grep finds none).
  outcome=$(printf '%s\n' "$out" | { grep -oE ': (committed|rolled_back|refused)' || true; } | tail -1 | tr -d ': ')
  pause=$(printf '%s\n' "$out" | { grep -oE 'pause [0-9.]+ us' || true; } | tail -1)
  pauses+=("$(printf '%-44s %-12s %s' "$label" "${outcome:-failed}" "${pause:-}")")
  return 0
}

say "unpack and boot arena 1.0.0 (root $root)"
hs unpack "$releases/arena-1.0.0.tar.gz"
hs daemon
port=$(hs status --json | grep -o '"port": [0-9]*' | head -1 | grep -o '[0-9]*$')
echo "   listening on 127.0.0.1:$port"

say "200 bots join and play for 20 s"
"$bot" --port "$port" --connections 200 --duration-s 20 --rate 10 --json >"$root/bot.json" 2>"$root/bot.err" &
bot_pid=$!
sleep 3

hs unpack "$releases/arena-1.1.0.tar.gz" >/dev/null
hs unpack "$releases/arena-2.0.0.tar.gz" >/dev/null
# A release whose migration fails: arena 2.0.0 with an appup `extra` it refuses.
bad=$root/bad-2.0.1
cp -r "$root/releases/2.0.0" "$bad"
sed -i 's/^  "version" : "2.0.0"/  "version" : "2.0.1"/' "$bad/manifest.json"
sed -i 's/"start_health": 100/"start_health": 150/' "$bad/appups/arena-2.0.0.appup.json"
tar -C "$bad" -czf "$root/arena-2.0.1-bad.tar.gz" manifest.json modules appups runtime.json bin
rm -rf "$bad"

hs plan 1.1.0 | sed 's/^/   /'
say "1.1.0 is a code-only fix (load_module)"
swap "upgrade   1.0.0 -> 1.1.0 (load_module)" upgrade 1.1.0
sleep 2
hs plan 2.0.0 | sed 's/^/   /'
say "2.0.0 adds health and score per player (update, state migrated)"
swap "upgrade   1.1.0 -> 2.0.0 (update)" upgrade 2.0.0
sleep 2
swap "downgrade 2.0.0 -> 1.1.0 (update)" downgrade 1.1.0
sleep 2
hs unpack "$root/arena-2.0.1-bad.tar.gz" >/dev/null
say "2.0.1 ships an appup whose extra the migration refuses: its live rehearsal refuses it, nothing pauses"
swap "upgrade   1.1.0 -> 2.0.1 (failing migration)" upgrade 2.0.1
sleep 2
swap "downgrade 1.1.0 -> 1.0.0 (load_module)" downgrade 1.0.0

say "status"
hs status | sed 's/^/   /'

say "waiting for the bots to finish"
bot_status=0
wait "$bot_pid" || bot_status=$?
bot_pid=""
summary=$(cat "$root/bot.json")
field() { printf '%s' "$summary" | grep -o "\"$1\": *[0-9.]*" | head -1 | grep -o '[0-9.]*$'; }

say "summary"
for line in "${pauses[@]}"; do echo "   $line"; done
echo
echo "   connections opened:  $(field opened)"
echo "   connections dropped: $(field dropped)"
echo "   requests sent:       $(field sent)"
echo "   replies lost:        $(field missing)"
echo "   replies out of order: $(field out_of_order)"
echo "   latency p50/p99/max: $(field p50) / $(field p99) / $(field max) ms"
echo
echo "   in total: connections dropped $(field dropped), messages lost $(field missing)"
if [ "$bot_status" -ne 0 ]; then
  echo "demo: the bots saw a problem (exit $bot_status):" >&2
  cat "$root/bot.err" "$root/bot.json" >&2
  exit 1
fi
