#!/usr/bin/env python3
"""Per-thread CPU and context switches of fleet_bench's receiver.

Runs one fleet_bench command and reads /proc/<receiver>/task/*/{stat,status}
when the first rollout of SERVICE starts running and when its second one (the
upgrade) has finished, then prints, per thread name, the CPU ticks (utime +
stime, 10 ms each) and the voluntary and involuntary context switches in
between, with fleet_bench's table rows for those rollouts.

  bench/fleet/receiver_threads.py [--service batch10pct] [--perf FILE] \\
      -- build/bench/fleet/fleet_bench --agents 1000 --batches 10% [...]

(with fleet_bench's --idle-s S, its idle-CPU line is printed too)
--perf FILE: `perf record -F 999 -g` the receiver over the same window.
"""
import argparse
import collections
import glob
import os
import re
import signal
import subprocess
import sys
import tempfile
import time


def receiver_pid(bench):
    """The child of `bench` that runs with WORKDIR/receiver.yaml, or None."""
    try:
        with open(f'/proc/{bench.pid}/task/{bench.pid}/children') as f:
            kids = f.read().split()
    except OSError:
        return None
    for k in kids:
        try:
            with open(f'/proc/{k}/cmdline') as f:
                if 'receiver.yaml' in f.read():
                    return int(k)
        except OSError:
            pass
    return None


def threads(pid):
    """{thread name: [ticks, voluntary, involuntary, count]}"""
    out = collections.defaultdict(lambda: [0, 0, 0, 0])
    for t in glob.glob(f'/proc/{pid}/task/*'):
        try:
            with open(t + '/comm') as f:
                comm = f.read().strip()
            with open(t + '/stat') as f:
                st = f.read()
            fields = st[st.rfind(')') + 2:].split()
            ticks = int(fields[11]) + int(fields[12])
            vol = invol = 0
            with open(t + '/status') as f:
                for line in f:
                    if line.startswith('voluntary_ctxt_switches'):
                        vol = int(line.split()[1])
                    elif line.startswith('nonvoluntary_ctxt_switches'):
                        invol = int(line.split()[1])
        except OSError:
            continue  # the thread ended
        x = out[comm]
        x[0] += ticks
        x[1] += vol
        x[2] += invol
        x[3] += 1
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--service', default='batch10pct')
    ap.add_argument('--perf')
    ap.add_argument('--timeout-s', type=float, default=900)
    ap.add_argument('command', nargs=argparse.REMAINDER)
    args = ap.parse_args()
    command = args.command[1:] if args.command[:1] == ['--'] else args.command
    if not command:
        ap.error('give the fleet_bench command after --')
    deadline = time.time() + args.timeout_s
    load = lambda: open('/proc/loadavg').read().split()[0]
    started = time.strftime('%H:%M:%S', time.gmtime())
    load_start = load()
    # fleet_bench's own output goes to a file (a pipe nobody reads would
    # fill up and stall it).
    captured = tempfile.TemporaryFile(mode='w+')
    bench = subprocess.Popen(command, stdout=captured,
                             stderr=subprocess.STDOUT, text=True)

    def alive():
        return bench.poll() is None and time.time() < deadline

    pid = None
    while pid is None and alive():
        pid = receiver_pid(bench)
        time.sleep(0.2)
    if pid is None:
        sys.exit('receiver_threads: no receiver found')
    with open(f'/proc/{pid}/cmdline') as f:
        config = f.read().split('\0')[2]
    log_path = os.path.join(os.path.dirname(config), 'receiver.log')

    def log():
        try:
            with open(log_path) as f:
                return f.read()
        except OSError:
            return ''

    def wait_for(pattern, count=1):
        while alive() and len(re.findall(pattern, log())) < count:
            time.sleep(0.02)

    service = re.escape(args.service)
    wait_for(rf'rollout running.*service={service}(\s|$)')
    before, t_before = threads(pid), time.time()
    perf = None
    if args.perf:
        perf = subprocess.Popen(
            ['perf', 'record', '-F', '999', '-g', '-p', str(pid), '-o',
             args.perf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(rf'rollout finished.*service={service}(\s|$)', 2)
    after, t_after = threads(pid), time.time()
    if perf:
        perf.send_signal(signal.SIGINT)
        perf.wait()
    bench.wait(timeout=max(1, deadline - time.time()))
    captured.seek(0)
    output = captured.read().splitlines()
    label = re.sub(r'^batch(\d+)pct$', r'batch \1%', args.service)
    print(f'{" ".join(command)}')
    print(f'started {started} UTC, load average {load_start} -> {load()}; '
          f'window {t_after - t_before:.1f} s')
    for line in output:
        if line.startswith(f'| {label},'):
            print(line)
    for line in output:
        if 'idle CPU' in line:
            print(line.strip())
    total = [0, 0, 0]
    for name in sorted(after):
        x = after[name]
        y = before.get(name, [0, 0, 0, 0])
        d = [x[i] - y[i] for i in range(3)]
        total = [total[i] + d[i] for i in range(3)]
        print(f'  {name:16s} x{x[3]:<3d} ticks {d[0]:5d}  voluntary {d[1]:7d}'
              f'  involuntary {d[2]:6d}')
    print(f'  {"all":16s}      ticks {total[0]:5d}  voluntary {total[1]:7d}'
          f'  involuntary {total[2]:6d}')
    return bench.returncode


if __name__ == '__main__':
    sys.exit(main())
