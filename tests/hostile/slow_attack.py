#!/usr/bin/env python3
"""Client side of tests/hostile/slow_attack_test.sh (standard library only).

Subcommands (every one bounded in time, traffic to 127.0.0.0/8 only):

  probe   signed deliveries (HMAC-SHA256 of the body in X-JFrog-Event-Auth,
          a distinct digest each) every --every seconds, each on a new
          connection from --source, while sampling VmRSS and Threads of
          --pid at the same pace. Prints one "probe:" line with the figures
          and one "FAIL: ..." line per threshold broken; exits 1 if any.
  hold    opens --count sockets from --source and trickles one byte of a
          request per socket every --interval seconds; a socket the server
          drops is opened again at the next tick.
  bodies  --count connections at once (spread over --sources), each sending
          headers with a Content-Length of --size and a wrong signature,
          then the body in 64 KiB pieces spread over --spread seconds; a
          finished connection is replaced while time remains.

  repeat  runs a command (slowhttptest) again and again for --seconds: it
          does not reopen connections the server closed and ends once all are
          closed. In the command, @LEFT@ is replaced by the whole seconds
          left and @RUN@ by the run's number (from 1).

The attacks print one line each, "held at end: N", with their counts.
"""
import argparse
import errno
import hashlib
import hmac
import http.client
import json
import os
import select
import socket
import signal
import ssl
import subprocess
import sys
import threading
import time

WEBHOOK_PATH = "/webhooks/artifactory"
# Linux IP_BIND_ADDRESS_NO_PORT: bind() to a source address without taking
# a port, so that the port is chosen per destination at connect() (more
# than 28k connections from one address).
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def event_body(sha):
    """An Artifactory "promoted" docker event matching the test's service."""
    return json.dumps({
        "domain": "docker", "event_type": "promoted",
        "data": {"image_name": "helloworld", "name": "manifest.json",
                 "path": "helloworld/latest/manifest.json", "platforms": [],
                 "repo_key": "docker-local-staging", "sha256": sha,
                 "size": 949, "tag": "latest"},
        "subscription_key": "slow-attack", "source": "jfrog/jfrt@test",
    }, separators=(",", ":")).encode()


def proc_status(pid):
    """(VmRSS kB, Threads) of pid, or None once it is gone."""
    rss = threads = None
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("Threads:"):
                    threads = int(line.split()[1])
    except OSError:
        return None
    return rss, threads


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil, nearest rank
    return sorted_values[int(rank) - 1]


class Delivery(threading.Thread):
    """One signed POST on a new connection; records (status, ms, error)."""

    def __init__(self, args, secret, sha, results, lock):
        super().__init__(daemon=True)
        self.args, self.secret, self.sha = args, secret, sha
        self.results, self.lock = results, lock

    def run(self):
        body = event_body(self.sha)
        signature = hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        a = self.args
        start = time.monotonic()
        status, error = None, ""
        try:
            if a.ca:
                context = ssl.create_default_context(cafile=a.ca)
                conn = http.client.HTTPSConnection(
                    a.host, a.port, timeout=a.timeout, context=context,
                    source_address=(a.source, 0))
            else:
                conn = http.client.HTTPConnection(
                    a.host, a.port, timeout=a.timeout,
                    source_address=(a.source, 0))
            try:
                conn.request("POST", WEBHOOK_PATH, body=body, headers={
                    "Content-Type": "application/json",
                    "X-JFrog-Event-Auth": signature,
                    "Connection": "close"})
                response = conn.getresponse()
                answer = response.read()
                status = response.status
                if status != 202:  # say why, e.g. 503 {"error":"busy"}
                    error = answer[:60].decode("utf-8", "replace")
            finally:
                conn.close()
        except (OSError, http.client.HTTPException) as e:
            error = type(e).__name__ + ": " + str(e)
        ms = (time.monotonic() - start) * 1000
        with self.lock:
            self.results.append((status, ms, error))


def probe(a):
    with open(a.secret_file, "rb") as f:
        secret = f.read().rstrip(b"\r\n")
    results, lock, senders = [], threading.Lock(), []
    max_rss = max_threads = max_fds = 0
    gone = False
    start = time.monotonic()
    for tick in range(int(a.seconds / a.every)):
        deadline = start + tick * a.every
        pause = deadline - time.monotonic()
        if pause > 0:
            time.sleep(pause)  # the sending pace, not a wait for a result
        sha = hashlib.sha256(f"{a.tag}-{tick}-{os.getpid()}".encode())
        sender = Delivery(a, secret, sha.hexdigest(), results, lock)
        sender.start()
        senders.append(sender)
        status = proc_status(a.pid)
        if status is None:
            gone = True
        else:
            max_rss = max(max_rss, status[0] or 0)
            max_threads = max(max_threads, status[1] or 0)
            max_fds = max(max_fds, fd_count(a.pid))
    for sender in senders:  # each ends within its own timeout
        sender.join(a.timeout + 5)
    sent = len(senders)
    with lock:
        done = list(results)
    ok = sorted(ms for status, ms, _ in done if status == 202)
    all_ms = sorted(ms for _, ms, _ in done)
    p50, p99 = percentile(all_ms, 50), percentile(all_ms, 99)
    worst = all_ms[-1] if all_ms else float("nan")
    others = {}
    for status, _, error in done:
        if status != 202:
            key = f"{status} {error}" if status is not None else error[:60]
            others[key] = others.get(key, 0) + 1
    print(f"probe: {sent} signed deliveries sent, {len(ok)} answered 202"
          f"{', not: ' + json.dumps(others) if others else ''}; latency p50 "
          f"{p50:.1f} ms, p99 {p99:.1f} ms, max {worst:.1f} ms; receiver max "
          f"VmRSS {max_rss / 1024:.1f} MB, max threads {max_threads}; max "
          f"attack connections held {max(0, max_fds - a.base_fds)}",
          flush=True)
    failures = []
    if gone:
        failures.append("the receiver exited during the attack")
    if len(ok) != sent:
        failures.append(f"{sent - len(ok)} of {sent} signed deliveries not "
                        f"answered 202")
    if not p99 < a.p99_ms:  # also true for nan (nothing answered)
        failures.append(f"p99 {p99:.1f} ms, bound {a.p99_ms} ms")
    if max_rss >= a.rss_mb * 1024:
        failures.append(f"max VmRSS {max_rss / 1024:.1f} MB, bound "
                        f"{a.rss_mb} MB")
    if max_threads >= a.threads:
        failures.append(f"max threads {max_threads}, bound {a.threads}")
    for failure in failures:
        print("FAIL: " + failure, flush=True)
    return 1 if failures else 0


def open_socket(source, host, port):
    """A non-blocking socket from source connecting to host:port, or None."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        s.bind((source, 0))
        s.setblocking(False)
        code = s.connect_ex((host, port))
        if code not in (0, errno.EINPROGRESS):
            raise OSError(code, os.strerror(code))
        return s
    except OSError:
        s.close()
        return None


def hold(a):
    request = (f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: {a.host}\r\n"
               "Content-Type: application/json\r\n" + "X-Trickle: 0\r\n" * 64
               ).encode()
    socks = {}  # fd -> [socket, bytes sent]
    opened = failed_opens = dropped = 0
    end = time.monotonic() + a.seconds
    next_tick = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if now < next_tick:
            time.sleep(min(next_tick, end) - now)  # the trickle's pace
            continue
        next_tick += a.interval
        for _ in range(a.count - len(socks)):  # (re)open up to --count
            s = open_socket(a.source, a.host, a.port)
            if s is None:
                failed_opens += 1
                continue
            socks[s.fileno()] = [s, 0]
            opened += 1
        for fd, entry in list(socks.items()):
            s, sent = entry
            try:
                n = s.send(request[sent % len(request):][:1])
                entry[1] += n
            except BlockingIOError:
                pass  # still connecting, or a full buffer: next tick
            except OSError:
                s.close()
                del socks[fd]
                dropped += 1
        # A socket the server closed reads EOF; drop it so the next tick
        # opens another in its place.
        for fd, (s, _) in list(socks.items()):
            try:
                if s.recv(4096, socket.MSG_DONTWAIT) == b"":
                    raise ConnectionResetError
            except BlockingIOError:
                continue
            except OSError:
                pass
            s.close()
            del socks[fd]
            dropped += 1
    held = len(socks)
    for s, _ in socks.values():
        s.close()
    print(f"hold: held at end: {held} of {a.count}; {opened} connections "
          f"opened from {a.source}, {dropped} dropped by the server, "
          f"{failed_opens} could not open", flush=True)
    return 0


class Upload:
    """One forged upload on a non-blocking socket."""

    def __init__(self, sock, source, head, size, piece, spread):
        self.sock, self.source, self.head, self.size = sock, source, head, size
        self.piece, self.started = piece, time.monotonic()
        self.pieces = -(-size // piece)
        self.spread = spread
        self.pending = head
        self.body_sent = 0
        self.answer = b""

    def due(self, now):
        """Body bytes that should have been queued by now."""
        elapsed = now - self.started
        n = min(self.pieces, int(elapsed / self.spread * self.pieces) + 1)
        return min(self.size, n * self.piece)


def bodies(a):
    sources = a.sources.split(",")
    head_template = (f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: {a.host}\r\n"
                     "Content-Type: application/json\r\n"
                     f"X-JFrog-Event-Auth: {'0' * 64}\r\n"
                     f"Content-Length: {a.size}\r\n\r\n").encode()
    filler = b"x" * a.piece
    uploads = {}
    per_source = {source: 0 for source in sources}
    answers, started, max_held, whole = {}, 0, 0, 0
    begin = time.monotonic()
    end = begin + a.seconds
    poller = select.epoll()

    def start_one():
        nonlocal started
        source = min(sources, key=lambda x: per_source[x])  # even spread
        s = open_socket(source, a.host, a.port)
        if s is None:
            answers["open failed"] = answers.get("open failed", 0) + 1
            return
        started += 1
        per_source[source] += 1
        uploads[s.fileno()] = Upload(s, source, head_template, a.size,
                                     a.piece, a.spread)
        poller.register(s.fileno(), select.EPOLLIN | select.EPOLLOUT)

    def finish(fd, outcome):
        nonlocal whole
        upload = uploads.pop(fd)
        poller.unregister(fd)
        upload.sock.close()
        per_source[upload.source] -= 1
        if upload.body_sent >= upload.size and not upload.pending:
            whole += 1
        answers[outcome] = answers.get(outcome, 0) + 1

    for _ in range(a.count):
        start_one()
    while uploads and time.monotonic() < end + a.timeout:
        now = time.monotonic()
        max_held = max(max_held, len(uploads))
        for fd, events in poller.poll(0.05):
            upload = uploads.get(fd)
            if upload is None:
                continue
            if events & (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP):
                try:
                    data = upload.sock.recv(65536)
                except BlockingIOError:
                    data = None
                except OSError:
                    finish(fd, "reset" if upload.answer == b"" else
                           status_of(upload.answer))
                    continue
                if data == b"":
                    finish(fd, status_of(upload.answer) if upload.answer
                           else "closed without an answer")
                    continue
                if data:
                    upload.answer += data
                    if b"\r\n\r\n" in upload.answer:
                        finish(fd, status_of(upload.answer))
                        continue
        for fd, upload in list(uploads.items()):
            due = upload.due(now)
            while upload.pending or upload.body_sent < due:
                if not upload.pending:
                    take = min(a.piece, due - upload.body_sent)
                    upload.pending = filler[:take]
                    upload.body_sent += take
                try:
                    n = upload.sock.send(upload.pending)
                except BlockingIOError:
                    break
                except OSError:
                    break  # the read side reports the answer or the reset
                upload.pending = upload.pending[n:]
                if upload.pending:
                    break
            if now >= end + a.timeout:
                finish(fd, "no answer in time")
        # Replace finished uploads, at most --reopen-rate new ones a second
        # (an answered upload is not replaced in a tight loop).
        allowed = a.count + int((now - begin) * a.reopen_rate)
        while now < end and len(uploads) < a.count and started < allowed:
            start_one()
            if answers.get("open failed", 0) > a.count:
                break
    for fd in list(uploads):
        finish(fd, "cut at the end")
    print(f"bodies: {max_held} uploads at most at once; {started} uploads "
          f"of {a.size} bytes started from {a.sources}, {whole} sent whole; "
          f"answers: {json.dumps(answers, sort_keys=True)}", flush=True)
    return 0


def repeat(a):
    end = time.monotonic() + a.seconds
    runs = 0
    child = None

    def stop(signum, _frame):
        if child is not None and child.poll() is None:
            child.kill()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    while runs < 100:
        left = int(end - time.monotonic())
        if left < 2:
            break
        runs += 1
        command = [word.replace("@LEFT@", str(left)).replace("@RUN@", str(runs))
                   for word in a.argv]
        child = subprocess.Popen(command)
        child.wait()
    # On a line of its own: slowhttptest ends its output without a newline.
    print(f"\nrepeat: {runs} runs of {a.argv[0]}", flush=True)
    return 0


def status_of(answer):
    line = answer.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split()
    return parts[1] if len(parts) > 1 else "garbled answer"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("probe")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", default="")
    p.add_argument("--secret-file", required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--every", type=float, default=0.2)
    p.add_argument("--timeout", type=float, default=5)
    p.add_argument("--tag", required=True)
    p.add_argument("--p99-ms", type=float, default=100)
    p.add_argument("--rss-mb", type=float, default=300)
    p.add_argument("--threads", type=int, default=64)
    p.add_argument("--source", default="127.0.0.5")
    p.add_argument("--base-fds", type=int, default=0,
                   help="the receiver's descriptors before the attack")
    p = sub.add_parser("hold")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--interval", type=float, default=3)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--source", default="127.0.0.2")
    p = sub.add_parser("bodies")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, default=400)
    p.add_argument("--size", type=int, default=1000000)
    p.add_argument("--piece", type=int, default=65536)
    p.add_argument("--spread", type=float, default=5)
    p.add_argument("--seconds", type=float, default=12)
    p.add_argument("--timeout", type=float, default=15)
    p.add_argument("--sources", default="127.0.0.3,127.0.0.4")
    p.add_argument("--reopen-rate", type=float, default=400,
                   help="new uploads a second at most, past the first --count")
    p = sub.add_parser("repeat")
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("argv", nargs=argparse.REMAINDER,
                   help="-- COMMAND [ARG...]")
    parser.set_defaults(host="127.0.0.1")
    a = parser.parse_args()
    for address in [getattr(a, "source", "")] + getattr(
            a, "sources", "").split(","):
        if address and not address.startswith("127."):
            sys.exit(f"{address}: loopback (127.0.0.0/8) only")
    if a.command == "repeat":
        a.argv = a.argv[1:] if a.argv[:1] == ["--"] else a.argv
        if not a.argv:
            sys.exit("repeat: no command")
    return {"probe": probe, "hold": hold, "bodies": bodies,
            "repeat": repeat}[a.command](a)


if __name__ == "__main__":
    sys.exit(main())
