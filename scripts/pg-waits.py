#!/usr/bin/env python3
"""pg-waits.py [SAMPLES] [DATABASE_PATTERN]: what PostgreSQL's busy backends were doing,
sampled from pg_stat_activity every 20 ms, SAMPLES times (default 300, about 10 s).

Each line is the average number of backends seen in one state: the wait event (or CPU
when it waits for nothing), the backend's state, and the start of its statement (the one
running, or for `idle in transaction` the last one, so that a backend waiting for the
server to send its next statement shows the statement before). Only backends of the
databases whose name matches DATABASE_PATTERN (a LIKE pattern, default 'bench_%', which
`coalition bench` creates) are counted. Connects with psql to $PGURL (default the
shared server, postgres://postgres@127.0.0.1:5432/postgres).

Run it beside a benchmark, once the warm-up is over, e.g.:
  coalition bench --seed 1 --duration 25s --warmup 3s --pgbench 0 --mix earns --clients 64 &
  sleep 10; scripts/pg-waits.py 300
"""
import collections
import os
import subprocess
import sys
import time

samples = int(sys.argv[1]) if len(sys.argv) > 1 else 300
pattern = sys.argv[2] if len(sys.argv) > 2 else 'bench_%'
url = os.environ.get('PGURL', 'postgres://postgres@127.0.0.1:5432/postgres')

query = ("SELECT coalesce(wait_event_type, 'CPU') || ':' || coalesce(wait_event, '-') || ':' || state"
         " || ':' || left(regexp_replace(query, '\\s+', ' ', 'g'), 40)"
         " FROM pg_stat_activity WHERE datname LIKE '%s' AND state <> 'idle'"
         " AND pid <> pg_backend_pid();" % pattern.replace("'", "''"))
psql = subprocess.Popen(['psql', '-At', '-X', url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        text=True, bufsize=1)
seen = collections.Counter()
for _ in range(samples):
    psql.stdin.write(query + "\n\\echo ===\n")
    psql.stdin.flush()
    while True:
        line = psql.stdout.readline()
        if not line:
            sys.exit('psql stopped')
        line = line.strip()
        if line == '===':
            break
        seen[line] += 1
    time.sleep(0.02)
psql.stdin.close()
psql.wait()
for state, n in seen.most_common(25):
    print(f"{n / samples:6.2f} {state}")
