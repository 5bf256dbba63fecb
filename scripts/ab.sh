#!/usr/bin/env bash
# ab.sh A B ROUNDS [bench arguments...]: paired runs of two coalition binaries, one after
# the other in each round, so that both meet the same machine. Prints each round's applied
# operations per second and the ratio B ÷ A; docs/BENCHMARKS.md gives its figures.
#
#   go build -o /tmp/a ./cmd/coalition   # at the base commit
#   go build -o /tmp/b ./cmd/coalition   # with the change
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres scripts/ab.sh /tmp/a /tmp/b 3 --mix earns --clients 64
#
# Each run is `coalition bench --seed ROUND --duration 15s --warmup 3s --pgbench 0` with
# the arguments given (DURATION overrides the 15 s).
set -euo pipefail
[[ $# -ge 3 ]] || { echo "usage: $0 A B ROUNDS [bench arguments...]" >&2; exit 2; }
a=$1 b=$2 rounds=$3
shift 3
: "${DATABASE_URL:?set DATABASE_URL to the server to measure on}"
applied() {
	"$1" bench --seed "$2" --duration "${DURATION:-15s}" --warmup 3s --pgbench 0 "${@:3}" 2>/dev/null |
		sed -n 's/^elapsed.* applied (\([0-9]*\)\/s).*/\1/p'
}
for round in $(seq "$rounds"); do
	x=$(applied "$a" "$round" "$@")
	y=$(applied "$b" "$round" "$@")
	echo "round $round: A $x/s B $y/s ratio $(awk -v x="$x" -v y="$y" 'BEGIN { printf "%.2f", y / x }')"
done
