#!/usr/bin/env bash
# bench-http.sh runs `coalition bench` in the configurations docs/BENCHMARKS.md records,
# ROUNDS times each, and keeps every report in $OUT (default a new temporary folder).
#
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres scripts/bench-http.sh [config...]
#
# Configurations: earns, earns16, earns64, earns-uniform, batch100, full, open (needs RATE), crash. Each run
# creates and drops its own bench_ database and pgbench's scratch database next to it;
# crash runs use a private cluster of their own.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
SECONDS_RUN=${SECONDS_RUN:-20s}
PGBENCH=${PGBENCH:-15s}
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/bench-http.XXXXXX")}
BIN=$OUT/coalition
go build -o "$BIN" ./cmd/coalition
configs=("$@")
[[ ${#configs[@]} -gt 0 ]] || configs=(earns earns-uniform batch100 full)
for cfg in "${configs[@]}"; do
	for round in $(seq "$ROUNDS"); do
		case $cfg in
		earns) args=(--mix earns --clients 32) ;;
		earns16) args=(--mix earns --clients 16) ;;
		earns64) args=(--mix earns --clients 64) ;;
		earns-uniform) args=(--mix earns --clients 32 --partner-dist uniform) ;;
		batch100) args=(--mix earns --clients 8 --batch 100) ;;
		full) args=(--mix full --clients 32) ;;
		open) args=(--mix earns --clients 32 --rate "${RATE:?open needs RATE, ops per second}") ;;
		crash) args=(--mix full --clients 16 --private-pg --kill-server 3 --restart-pg 2 --duration 40s) ;;
		*) echo "unknown configuration $cfg" >&2; exit 2 ;;
		esac
		echo "== $cfg round $round: coalition bench --seed $round --duration $SECONDS_RUN --pgbench $PGBENCH ${args[*]}" | tee -a "$OUT/summary.txt"
		"$BIN" bench --seed "$round" --duration "$SECONDS_RUN" --pgbench "$PGBENCH" "${args[@]}" >"$OUT/$cfg-$round.txt" 2>"$OUT/$cfg-$round.log" || echo "   (exit $?)" | tee -a "$OUT/summary.txt"
		grep -E '^(elapsed|latency|pgbench tpcb|ratio)|FAIL' "$OUT/$cfg-$round.txt" | sed 's/^/   /' | tee -a "$OUT/summary.txt"
	done
done
echo "reports in $OUT"
