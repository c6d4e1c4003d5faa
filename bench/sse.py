#!/usr/bin/env python3
"""Change-stream clients for bench/bench.py, on raw non-blocking sockets and one epoll loop.

Three measurements, each printing one JSON object on stdout when run as a script:

  fanout  K clients on /changes (each on a fresh connection, or with --reused on one that
          carried a request first); per round, the time from one file write until each client's
          socket is readable with the `change` event (stamped when epoll reports it, with
          EPOLLONESHOT so no client's bytes are read on the hot path), and the proxy's RSS.
  saves   one client; N saves of one file, each timed until its event arrives.
  burst   one client; runs a shell command (a `git checkout` of many files, an `rm -rf`) and
          counts the batches and paths that arrive until the stream has been quiet for a while,
          and the time from the command's end to the last batch.

Only the Python standard library is used. Every loop is bounded by a deadline.
"""

import argparse
import json
import os
import re
import resource
import select
import socket
import statistics
import sys
import time
import urllib.request

# The stream's `hello` event, complete (the body is chunked, so chunk framing may follow).
HELLO = re.compile(rb"event: hello\ndata: [^\n]*\n\n")

REQUEST = (
    "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n"
    "Cache-Control: no-cache\r\nUser-Agent: hmr-bench\r\n\r\n"
)

# With --reused, sent first on the same connection, and answered in full before the stream is
# asked for: the stream then rides a keep-alive connection that already carried a request, as a
# browser's does (browsers do not pipeline).
FIRST_REQUEST = "GET /__hmr/health HTTP/1.1\r\nHost: {host}\r\nUser-Agent: hmr-bench\r\n\r\n"
FIRST_ANSWERED = b"\r\n\r\nok\n"


def raise_fd_limit(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_ms(pid):
    """utime + stime of a process (all its threads), in ms."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1000.0 / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def status(host, port):
    with urllib.request.urlopen(f"http://{host}:{port}/__hmr/status", timeout=5) as r:
        return json.loads(r.read())


def pct(values, p):
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


class Clients:
    """K open /changes streams, each past its `hello` event."""

    def __init__(self, host, port, path, count, reused=False, connect_parallel=256, deadline_s=120):
        self.host, self.port = host, port
        self.ep = select.epoll()
        self.socks = {}
        self.bufs = {}
        req = REQUEST.format(path=path, host=f"{host}:{port}").encode()
        first = FIRST_REQUEST.format(host=f"{host}:{port}").encode()
        deadline = time.monotonic() + deadline_s
        pending = 0
        made = 0
        ready = 0
        state = {}  # fd -> "connecting" | "first" (with --reused) | "reading"
        while ready < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {ready} of {count} streams opened in {deadline_s}s")
            while made < count and pending < connect_parallel:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                s.connect_ex((host, port))
                fd = s.fileno()
                self.socks[fd] = s
                self.bufs[fd] = b""
                state[fd] = "connecting"
                self.ep.register(fd, select.EPOLLOUT)
                made += 1
                pending += 1
            for fd, ev in self.ep.poll(1.0):
                s = self.socks[fd]
                if state[fd] == "connecting":
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise RuntimeError(f"connect failed: {os.strerror(err)}")
                    s.send(first if reused else req)
                    state[fd] = "first" if reused else "reading"
                    self.ep.modify(fd, select.EPOLLIN)
                    continue
                data = s.recv(65536)
                if not data:
                    raise RuntimeError("a stream closed while opening")
                self.bufs[fd] += data
                if state[fd] == "first":
                    if self.bufs[fd].endswith(FIRST_ANSWERED):
                        self.bufs[fd] = b""
                        s.send(req)
                        state[fd] = "reading"
                    continue
                if HELLO.search(self.bufs[fd]):
                    if not self.bufs[fd].startswith(b"HTTP/1.1 200"):
                        raise RuntimeError(f"unexpected answer: {self.bufs[fd][:80]!r}")
                    self.bufs[fd] = b""
                    state[fd] = "open"
                    self.ep.modify(fd, select.EPOLLIN | select.EPOLLONESHOT)
                    ready += 1
                    pending -= 1

    def round(self, action, timeout_s=10.0):
        """Run `action` (the write), then stamp each client when its socket turns readable with
        a change event. Returns (ms per client since the write, clients that timed out)."""
        fds = list(self.socks)
        self.drain()
        stamped = {}
        t0 = time.perf_counter()
        action()
        deadline = t0 + timeout_s
        while len(stamped) < len(fds):
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            events = self.ep.poll(min(left, 1.0))
            now = time.perf_counter()
            for fd, _ in events:
                stamped[fd] = now
        # Off the clock: read what arrived, check that it is the change event, re-arm.
        times = []
        for fd, when in stamped.items():
            s = self.socks[fd]
            got = b""
            end = time.monotonic() + 2
            while b"event: change" not in got and time.monotonic() < end:
                try:
                    chunk = s.recv(65536)
                except BlockingIOError:
                    # A heartbeat came first: wait for the batch itself.
                    select.select([s], [], [], 0.05)
                    continue
                if not chunk:
                    break
                got += chunk
            if b"event: change" in got:
                times.append((when - t0) * 1000.0)
            self.ep.modify(fd, select.EPOLLIN | select.EPOLLONESHOT)
        # Clients that were never stamped: drain and re-arm too.
        for fd in fds:
            if fd not in stamped:
                self.ep.modify(fd, select.EPOLLIN | select.EPOLLONESHOT)
        return times, len(fds) - len(times)

    def drain(self):
        """Read whatever is queued (a heartbeat) and re-arm every client before a round."""
        for fd, s in self.socks.items():
            while True:
                try:
                    if not s.recv(65536):
                        break
                except BlockingIOError:
                    break
            self.ep.modify(fd, select.EPOLLIN | select.EPOLLONESHOT)

    def close(self):
        for s in self.socks.values():
            s.close()
        self.ep.close()


def touch(path, i):
    with open(path, "w") as f:
        f.write(f"/* save {i} at {time.time()} */\n")


def cmd_fanout(a):
    raise_fd_limit(a.clients + 1024)
    out = {"clients": a.clients, "reused": a.reused, "rounds": [], "debounce_ms": a.debounce_ms}
    out["rss_kb_before"] = rss_kb(a.pid)
    t = time.perf_counter()
    clients = Clients(a.host, a.port, a.path, a.clients, reused=a.reused)
    out["open_s"] = time.perf_counter() - t
    st = status(a.host, a.port)
    out["server_clients"] = st.get("clients")
    out["rss_kb_open"] = rss_kb(a.pid)
    time.sleep(0.3)
    rss_peak = out["rss_kb_open"] or 0
    cpu_before = cpu_ms(a.pid)
    for i in range(a.rounds):
        times, missed = clients.round(lambda: touch(a.touch, i))
        rss = rss_kb(a.pid) or 0
        rss_peak = max(rss_peak, rss)
        out["rounds"].append(
            {
                "received": len(times),
                "missed": missed,
                "first_ms": min(times) if times else None,
                "p50_ms": pct(times, 50),
                "p99_ms": pct(times, 99),
                "last_ms": max(times) if times else None,
            }
        )
        time.sleep(a.gap_ms / 1000.0)
    cpu_after = cpu_ms(a.pid)
    # The proxy's CPU per batch sent to every client (the gaps between rounds are idle).
    if cpu_before is not None and cpu_after is not None and a.rounds:
        out["proxy_cpu_ms_per_batch"] = (cpu_after - cpu_before) / a.rounds
    out["rss_kb_peak"] = rss_peak
    clients.close()
    time.sleep(0.5)
    out["rss_kb_after_close"] = rss_kb(a.pid)
    lasts = [r["last_ms"] for r in out["rounds"] if r["last_ms"] is not None]
    out["last_ms_median"] = statistics.median(lasts) if lasts else None
    p99s = [r["p99_ms"] for r in out["rounds"] if r["p99_ms"] is not None]
    out["p99_ms_median"] = statistics.median(p99s) if p99s else None
    firsts = [r["first_ms"] for r in out["rounds"] if r["first_ms"] is not None]
    out["first_ms_median"] = statistics.median(firsts) if firsts else None
    print(json.dumps(out))


def cmd_saves(a):
    clients = Clients(a.host, a.port, a.path, 1)
    times = []
    for i in range(a.count):
        got, _ = clients.round(lambda: touch(a.touch, i), timeout_s=5)
        times.extend(got)
        time.sleep(a.gap_ms / 1000.0)
    clients.close()
    print(
        json.dumps(
            {
                "samples": len(times),
                "p50_ms": pct(times, 50),
                "p95_ms": pct(times, 95),
                "max_ms": max(times) if times else None,
                "all_ms": times,
            }
        )
    )


def cmd_burst(a):
    import subprocess

    clients = Clients(a.host, a.port, a.path, 1)
    (fd, s), = clients.socks.items()
    clients.ep.modify(fd, select.EPOLLIN)
    t0 = time.perf_counter()
    subprocess.run(a.command, shell=True, check=True, stdout=subprocess.DEVNULL)
    ran_ms = (time.perf_counter() - t0) * 1000
    ran = time.perf_counter()
    buf = b""
    last = ran
    last_change = None
    deadline = t0 + 15
    # Quiet counts once a batch has come (a slow watcher's first batch may take longer).
    while time.perf_counter() < deadline and (
        last_change is None or time.perf_counter() - last < a.quiet_ms / 1000
    ):
        for _ in clients.ep.poll(0.05):
            chunk = s.recv(1 << 20)
            if chunk:
                buf += chunk
                last = time.perf_counter()
                if b"event: change" in buf[-len(chunk) - 16:]:
                    last_change = last
    clients.close()
    batches = []
    for block in buf.decode("utf-8", "replace").split("\n\n"):
        lines = block.split("\n")
        if "event: change" in lines:
            for line in lines:
                if line.startswith("data: "):
                    msg = json.loads(line[6:])
                    batches.append({"paths": len(msg.get("paths", [])), "reload": msg.get("reload")})
    # From the command's end to the last batch's first bytes.
    last_ms = (last_change - ran) * 1000 if last_change is not None else None
    print(json.dumps({"command_ms": ran_ms, "batches": batches, "last_batch_ms": last_ms}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["fanout", "saves", "burst"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/changes")
    p.add_argument("--pid", type=int, default=0, help="the proxy's pid, for RSS")
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--reused", action="store_true",
                   help="fanout: each stream on a connection that carried a request before")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--gap-ms", type=int, default=400)
    p.add_argument("--debounce-ms", type=int, default=10)
    p.add_argument("--touch", help="file to write")
    p.add_argument("--command", help="burst: shell command that changes the files")
    p.add_argument("--quiet-ms", type=int, default=1500)
    a = p.parse_args()
    {"fanout": cmd_fanout, "saves": cmd_saves, "burst": cmd_burst}[a.mode](a)


if __name__ == "__main__":
    sys.exit(main())
