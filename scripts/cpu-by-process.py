#!/usr/bin/env python3
"""cpu-by-process.py SECONDS: the cores PostgreSQL, `coalition serve`, `coalition bench`
and everything else used over SECONDS, and how much of the machine stayed idle.

Run it beside a benchmark, once the warm-up is over, e.g.:
  coalition bench --seed 1 --duration 20s --warmup 3s --pgbench 0 --mix earns --clients 64 &
  sleep 12; scripts/cpu-by-process.py 8
"""
import os
import sys
import time


def snapshot():
    ticks = {}
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            stat = open(f'/proc/{pid}/stat').read()
            cmd = open(f'/proc/{pid}/cmdline', 'rb').read().replace(b'\0', b' ').decode(errors='replace')
        except OSError:
            continue
        fields = stat[stat.rfind(')') + 2:].split()
        if 'postgres' in cmd:
            who = 'postgres'
        elif ' serve' in cmd:
            who = 'serve'
        elif ' bench' in cmd:
            who = 'bench'
        else:
            who = 'other'
        ticks[pid] = (who, int(fields[11]) + int(fields[12]))  # utime + stime
    return ticks


def idle():
    f = open('/proc/stat').readline().split()
    return int(f[4]) + int(f[5])  # idle + iowait


seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10
before, idle0 = snapshot(), idle()
time.sleep(seconds)
after, idle1 = snapshot(), idle()
hz = os.sysconf('SC_CLK_TCK')
used = {}
for pid, (who, t) in after.items():
    used[who] = used.get(who, 0) + t - before.get(pid, (who, 0))[1]
for who in sorted(used):
    print(f'{who} {used[who] / hz / seconds:.2f} cores')
print(f'idle {(idle1 - idle0) / hz / seconds:.2f} cores')
