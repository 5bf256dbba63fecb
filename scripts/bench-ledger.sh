#!/usr/bin/env bash
# bench-ledger.sh measures the ledger's posting rate next to pgbench's built-in tpcb-like
# transaction rate, on the same PostgreSQL server in the same run, and prints the table
# that docs/BENCHMARKS.md records.
#
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres scripts/bench-ledger.sh
#
# The role in DATABASE_URL must be allowed to CREATE DATABASE. The script creates and drops
# a scratch database pgbench_ref; the Go benchmarks create and drop their own databases
# through internal/pgtest. Each round runs pgbench at 1 and 8 clients, then the Go
# benchmarks; there are ROUNDS rounds (3) because a small shared machine is noisy. It
# takes about 3.5 minutes with the defaults below, which the environment may override.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
PGBENCH_SCALE=${PGBENCH_SCALE:-10}
PGBENCH_SECONDS=${PGBENCH_SECONDS:-20}
BENCHTIME=${BENCHTIME:-2s}
REF_DB=pgbench_ref

if [[ -z "${DATABASE_URL:-}" ]]; then
	cat >&2 <<'EOF'
bench-ledger.sh: DATABASE_URL is not set. It must name the PostgreSQL server to measure,
with a role that may CREATE DATABASE. On a machine with a local server, for example:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres scripts/bench-ledger.sh
EOF
	exit 2
fi
for n in ROUNDS PGBENCH_SCALE PGBENCH_SECONDS; do
	if ! [[ "${!n}" =~ ^[1-9][0-9]{0,3}$ ]]; then
		echo "bench-ledger.sh: $n must be a whole number from 1 to 9999, not '${!n}'" >&2
		exit 2
	fi
done

cd "$(dirname "$0")/.."

# find_pg_tool prints the path of a PostgreSQL client program: pg_config's bindir first,
# then the newest /usr/lib/postgresql/*/bin, then PATH.
find_pg_tool() {
	local dir
	if command -v pg_config >/dev/null 2>&1; then
		dir=$(pg_config --bindir 2>/dev/null || true)
		if [[ -n "$dir" && -x "$dir/$1" ]]; then
			echo "$dir/$1"
			return
		fi
	fi
	for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		if [[ -x "$dir/$1" ]]; then
			echo "$dir/$1"
			return
		fi
	done
	if command -v "$1" >/dev/null 2>&1; then
		command -v "$1"
		return
	fi
	echo "bench-ledger.sh: cannot find $1 (tried pg_config --bindir, /usr/lib/postgresql/*/bin, PATH)" >&2
	exit 1
}
PGBENCH=$(find_pg_tool pgbench)
PSQL=$(find_pg_tool psql)

# with_db prints DATABASE_URL pointed at database $1, for a URL or a key=value string.
with_db() {
	local re='^(postgres(ql)?://[^/?]*)(/[^?]*)?(\?.*)?$'
	if [[ "$DATABASE_URL" =~ $re ]]; then
		echo "${BASH_REMATCH[1]}/$1${BASH_REMATCH[4]}"
	else
		echo "$DATABASE_URL dbname=$1"
	fi
}
REF_URL=$(with_db "$REF_DB")

sql() { "$PSQL" "$DATABASE_URL" -X -q -A -t -v ON_ERROR_STOP=1 -c "$1"; }

OUT=$(mktemp -d "${TMPDIR:-/tmp}/bench-ledger.XXXXXX")
drop_ref() { sql "DROP DATABASE IF EXISTS $REF_DB" >/dev/null 2>&1 || true; }
trap drop_ref EXIT

echo "== Server and machine"
sql "SELECT version()"
sql "SELECT 'fsync=' || current_setting('fsync') || ' synchronous_commit=' || current_setting('synchronous_commit')
        || ' full_page_writes=' || current_setting('full_page_writes') || ' wal_sync_method=' || current_setting('wal_sync_method')
        || ' shared_buffers=' || current_setting('shared_buffers')"
echo "nproc=$(nproc) memory=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) $(go version)"
echo "pgbench=$PGBENCH; raw output in $OUT"

echo
echo "== pgbench -i -s $PGBENCH_SCALE in scratch database $REF_DB"
drop_ref
sql "CREATE DATABASE $REF_DB"
"$PGBENCH" -i -q -s "$PGBENCH_SCALE" "$REF_URL" >"$OUT/pgbench-init.log" 2>&1 || {
	cat "$OUT/pgbench-init.log" >&2
	exit 1
}
tail -n 1 "$OUT/pgbench-init.log"

echo "== building the ledger benchmarks"
go test -c -o /dev/null ./ledger

# One line per figure: round, name, value.
RESULTS="$OUT/results.tsv"
: >"$RESULTS"

# run_pgbench runs the tpcb-like workload with $1 clients and prints its tps.
run_pgbench() {
	local clients=$1 threads=2 log="$OUT/pgbench-round$2-c$1.log"
	((clients < threads)) && threads=$clients
	"$PGBENCH" -c "$clients" -j "$threads" -T "$PGBENCH_SECONDS" -b tpcb-like "$REF_URL" >"$log" 2>&1 || {
		cat "$log" >&2
		exit 1
	}
	awk '/^tps = / {print $3; exit}' "$log"
}

for ((round = 1; round <= ROUNDS; round++)); do
	echo
	echo "== round $round of $ROUNDS"
	for c in 1 8; do
		tps=$(run_pgbench "$c" "$round")
		printf '%s\tpgbench tpcb-like tps, %d client%s\t%s\n' "$round" "$c" "$([[ $c == 1 ]] || echo s)" "$tps" >>"$RESULTS"
		echo "pgbench -c $c -T $PGBENCH_SECONDS -b tpcb-like: $tps tps"
	done
	log="$OUT/go-bench-round$round.log"
	DATABASE_URL="$DATABASE_URL" go test -count=1 -run '^$' -bench 'Post' -benchtime="$BENCHTIME" ./ledger >"$log" 2>&1 || {
		cat "$log" >&2
		exit 1
	}
	grep '^Benchmark' "$log"
	awk -v r="$round" '/^Benchmark/ {
		name = $1; sub(/-[0-9]+$/, "", name)
		for (i = 2; i <= NF; i++) if ($i == "entries/s") printf "%s\t%s\t%s\n", r, name, $(i - 1)
	}' "$log" >>"$RESULTS"
done

echo
echo "== summary over $ROUNDS rounds (min / median / max); ratio = entries/s ÷ pgbench tpcb-like tps of the same round"
awk -F '\t' '
	function stats(list,    a, n, i, j, t) {
		n = split(list, a, " ")
		for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
		return sprintf("%s | %s | %s", fmt(a[1]), fmt(n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2), fmt(a[n]))
	}
	function fmt(v) { return v >= 100 ? sprintf("%.0f", v) : v >= 10 ? sprintf("%.1f", v) : sprintf("%.2f", v) }
	{ value[$2] = value[$2] " " $3; val[$1, $2] = $3; if (!($2 in seen)) { seen[$2] = 1; order[++names] = $2 } }
	END {
		ref1 = "pgbench tpcb-like tps, 1 client"; ref8 = "pgbench tpcb-like tps, 8 clients"
		print "| reference | tps min | tps median | tps max |"
		print "|---|---:|---:|---:|"
		print "| " ref1 " | " stats(value[ref1]) " |"
		print "| " ref8 " | " stats(value[ref8]) " |"
		print ""
		print "| benchmark | entries/s min | entries/s median | entries/s max | reference | ratio min | ratio median | ratio max |"
		print "|---|---:|---:|---:|---|---:|---:|---:|"
		for (k = 1; k <= names; k++) {
			b = order[k]
			if (b !~ /^Benchmark/) continue
			ref = b ~ /Parallel/ ? ref8 : ref1
			ratios = ""
			for (r = 1; (r, b) in val; r++) ratios = ratios " " val[r, b] / val[r, ref]
			print "| " b " | " stats(value[b]) " | " (ref == ref1 ? "tpcb-like, 1 client" : "tpcb-like, 8 clients") " | " stats(ratios) " |"
		}
	}' "$RESULTS"
echo
echo "raw figures: $RESULTS"
