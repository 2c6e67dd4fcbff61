"""HTTP load test of `adlens serve`: /v1/select with 20 candidates at a fixed request rate on loopback.

    python benchmarks/bench_serve.py --workspace demo/workspace          # after `make demo`
    python benchmarks/bench_serve.py --workspace WS --rate 200 --seconds 30 --policy thompson

Starts `adlens serve` as a subprocess on a copy of the workspace (the original is not touched), then
drives it with an open-loop load generator written here on asyncio streams (HTTP/1.1 keep-alive,
a pool of connections): requests are *scheduled* at exactly ``--rate`` per second and each latency
is measured from its scheduled time, so a stalled server cannot hide its queueing (no coordinated
omission). Each request picks a random article of the workspace and 20 random creatives. A share
of the decisions (``--click-rate``) gets a click posted to /v1/feedback, a retry of every 10th click
is sent too, and at the end the service's counters are checked against what was sent: zero lost,
zero double-counted. Prints a JSON summary (p50/p90/p99/max in ms, errors, achieved rate, load),
the CPU per request of the server (all its threads and workers, from /proc) and of the generator,
and the share of selects the server itself handled within 0.5 ... 50 ms (from its /metrics
histogram: the rest of the client's latency is queueing, the network stack and the client).

Request bodies are built before the clock starts and the generator runs on uvloop (``--loop
asyncio`` for the standard loop). ``--pin`` puts the server on CPU 1 and the generator on CPU 0
(no migrations; the generator then cannot take the server's core) -- reported next to unpinned
runs in BENCHMARKS.md, never instead of them.

A baseline from the same run: the same selections made in process through :class:`Service`
(no HTTP), so the HTTP + framework overhead is visible.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int, tree: bool = False) -> float:
    """User + system CPU seconds of a process (all its threads; with ``tree``, plus its live
    children's: the workers of `adlens serve --workers N`), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    if tree:
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            total += _cpu_seconds(int(child), tree=True)
    return total


def _select_histogram(port: int) -> dict[float, float]:
    """Cumulative bucket counts of /v1/select's handling time from the service's /metrics (+Inf = all)."""
    import httpx

    out = {}
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
        if line.startswith("adlens_http_request_seconds_bucket{") and 'route="/v1/select"' in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[math.inf if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    return out


def _ids(ws_path: Path) -> tuple[list[str], list[str]]:
    from adlens.store.schema import articles, creatives
    from adlens.workspace import open_workspace

    with open_workspace(ws_path) as ws, ws.engine.connect() as conn:
        ads = [r[0] for r in conn.execute(sa.select(creatives.c.ad_id).order_by(creatives.c.ad_id))]
        arts = [r[0] for r in conn.execute(sa.select(articles.c.article_id).order_by(articles.c.article_id))]
    return ads, arts


def _quantile(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p * len(s)))] if s else 0.0


def _run(coro, loop: str = "uvloop"):
    """Run the generator on uvloop when it is installed (uvicorn[standard] brings it; the server's
    loop too), else on asyncio's default loop; ``loop="asyncio"`` forces the default one."""
    try:
        import uvloop
    except ImportError:
        loop = "asyncio"
    if loop == "asyncio":
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


class Conn:
    """One keep-alive HTTP/1.1 connection: send a request, read one Content-Length response."""

    def __init__(self, reader, writer):
        self.r, self.w = reader, writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        return cls(r, w)

    async def post(self, path: str, body: bytes, headers: str = "") -> tuple[int, bytes]:
        self.w.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\n{headers}\r\n".encode() + body)
        await self.w.drain()
        head = await self.r.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        n = next(int(v) for k, _, v in (ln.partition(":") for ln in lines[1:]) if k.lower() == "content-length")
        return status, await self.r.readexactly(n)

    def close(self) -> None:
        self.w.close()


async def load(port: int, ads: list[str], arts: list[str], rate: float, seconds: float, k: int, click_rate: float,
               conns: int, seed: int) -> dict:
    rng = random.Random(seed)
    pool: asyncio.Queue[Conn] = asyncio.Queue()
    for _ in range(conns):
        pool.put_nowait(await Conn.open(port))
    lat: list[float] = []
    errors: list[str] = []
    sent_clicks: dict[str, str] = {}  # event id -> decision id
    retries = 0
    n = int(rate * seconds)
    fb_tasks = []

    async def feedback(event_id: str, decision_id: str) -> None:
        c = await pool.get()
        try:
            body = json.dumps({"event_id": event_id, "decision_id": decision_id, "type": "click"}).encode()
            st, data = await c.post("/v1/feedback", body)
            if st != 200:
                errors.append(f"feedback {st}: {data[:200]!r}")
        finally:
            pool.put_nowait(c)

    # every request body is built before the clock starts: the generator's own work stays off the
    # measured path (and off the CPU the server shares with it)
    bodies = [json.dumps({"context": {"article_id": rng.choice(arts)}, "candidates": rng.sample(ads, k)}).encode()
              for _ in range(n)]

    async def one(i: int, when: float) -> None:
        nonlocal retries
        body = bodies[i]
        c = await pool.get()
        try:
            st, data = await c.post("/v1/select", body)
        except Exception as e:  # noqa: BLE001 - a broken connection is an error of this run, counted
            errors.append(f"select: {type(e).__name__}: {e}")
            pool.put_nowait(await Conn.open(port))
            return
        pool.put_nowait(c)
        lat.append((time.perf_counter() - when) * 1e3)  # from the scheduled time
        if st != 200:
            errors.append(f"select {st}: {data[:200]!r}")
            return
        if rng.random() < click_rate:
            did = json.loads(data)["decision_id"]
            eid = f"click-{i}"
            sent_clicks[eid] = did
            fb_tasks.append(asyncio.ensure_future(feedback(eid, did)))
            if len(sent_clicks) % 10 == 0:  # a client retry: must not count twice
                retries += 1
                fb_tasks.append(asyncio.ensure_future(feedback(eid, did)))

    # One producer starts each request at its time (not n sleeping tasks created up front), and the
    # generator's own GC is off during the run: the client must not add pauses of its own.
    tasks = []
    late: list[float] = []
    cpu0 = time.process_time()
    t0 = time.perf_counter() + 0.2
    gc.disable()
    try:
        for i in range(n):
            when = t0 + i / rate
            delay = when - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            late.append(time.perf_counter() - when)  # the generator's own timer slop, counted in lat too
            tasks.append(asyncio.ensure_future(one(i, when)))
        await asyncio.gather(*tasks)
    finally:
        gc.enable()
    await asyncio.gather(*fb_tasks)
    wall = time.perf_counter() - t0
    client_cpu = time.process_time() - cpu0
    while not pool.empty():
        pool.get_nowait().close()
    lat.sort()
    def q(p: float) -> float:
        return _quantile(lat, p)

    return {"requests": n, "ok": len(lat) - sum(1 for e in errors if e.startswith("select ")),
            "errors": len(errors), "error_samples": errors[:5], "achieved_rps": round(n / wall, 1),
            "p50_ms": round(q(0.50), 3), "p90_ms": round(q(0.90), 3), "p99_ms": round(q(0.99), 3),
            "max_ms": round(lat[-1], 3), "mean_ms": round(statistics.fmean(lat), 3),
            "clicks_sent": len(sent_clicks), "click_retries_sent": retries,
            "client_cpu_ms_per_request": round(client_cpu * 1e3 / max(1, n), 3),
            # how late the generator itself started requests (its timer and scheduling): part of every latency above
            "generator_late_ms": {"p50": round(_quantile(late, 0.50) * 1e3, 3), "p99": round(_quantile(late, 0.99) * 1e3, 3),
                                  "max": round(max(late, default=0.0) * 1e3, 3)}}


def in_process_baseline(ws_path: Path, ads: list[str], arts: list[str], k: int, n: int, policy: str, seed: int) -> dict:
    from adlens.serve import ServeConfig, Service
    from adlens.workspace import open_workspace

    rng = random.Random(seed)
    with open_workspace(ws_path) as ws:
        svc = Service(ws, ServeConfig(policy=policy, random_state=seed))
        reqs = [({"article_id": rng.choice(arts)}, rng.sample(ads, k)) for _ in range(n)]
        for c, a in reqs[:50]:
            svc.select(c, a)
        ts = []
        for c, a in reqs[50:]:
            t = time.perf_counter()
            svc.select(c, a)
            ts.append((time.perf_counter() - t) * 1e3)
    ts.sort()
    return {"n": len(ts), "p50_ms": round(ts[len(ts) // 2], 3), "p99_ms": round(ts[int(0.99 * len(ts))], 3)}


def _stop(proc: subprocess.Popen) -> None:
    """Ctrl-C a server (uvicorn shuts down cleanly: the service closes its database), kill if stuck."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def serve_fixed(port: int, answer_file: str) -> None:
    """The floor: uvicorn (same loop and HTTP parser as `adlens serve`) answering every POST with a
    fixed body -- a real /v1/select answer -- read once, so only HTTP, the network stack and the
    event loop remain."""
    import uvicorn

    answer = Path(answer_file).read_bytes()
    fb = b'{"status": "counted"}'
    head = [(b"content-type", b"application/json")]

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        body = answer if scope["path"] == "/v1/select" else fb
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*head, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off")


def run_floor(args, ads: list[str], arts: list[str], answer: bytes, tmp: Path, seconds: float) -> dict:
    """The same load against :func:`serve_fixed` (with the same pinning), for the floor of this machine."""
    import httpx

    f = tmp / "answer.json"
    f.write_bytes(answer)
    port = _free_port()
    pin = [] if not args.pin else ["taskset", "-c", "1"]
    err_log = tmp / "fixed.stderr"
    proc = subprocess.Popen([*pin, sys.executable, __file__, "--serve-fixed", str(port), str(f)],
                            stdout=subprocess.DEVNULL, stderr=err_log.open("wb"))
    try:
        for _ in range(300):
            try:
                httpx.post(f"http://127.0.0.1:{port}/v1/select", content=b"{}", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError("fixed server did not start: " + err_log.read_text(errors="replace")[-2000:])
        cpu0 = _cpu_seconds(proc.pid)
        res = _run(load(port, ads, arts, args.rate, seconds, args.candidates, args.click_rate,
                        args.connections, args.seed), args.loop)
        res["server_cpu_ms_per_request"] = round((_cpu_seconds(proc.pid) - cpu0) * 1e3 / max(1, res["requests"]), 3)
        return {k: res[k] for k in ("errors", "achieved_rps", "p50_ms", "p90_ms", "p99_ms", "max_ms",
                                    "client_cpu_ms_per_request", "server_cpu_ms_per_request")}
    finally:
        _stop(proc)


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve-fixed":  # internal: the floor's server process
        serve_fixed(int(sys.argv[2]), sys.argv[3])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", default="demo/workspace", help="a workspace with ads and articles (make demo)")
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--candidates", type=int, default=20)
    ap.add_argument("--policy", default="thompson")
    ap.add_argument("--click-rate", type=float, default=0.05)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--workers", type=int, default=1, help="adlens serve --workers (server processes)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pin", action="store_true", help="pin the server to CPU 1 and the generator to CPU 0")
    ap.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop", help="the generator's event loop")
    ap.add_argument("--floor", action="store_true",
                    help="then the same load against a fixed-answer uvicorn server: the machine's floor")
    ap.add_argument("--quick", action="store_true", help="5 s at the given rate")
    args = ap.parse_args()
    src = Path(args.workspace)
    if not (src / ".adlens-workspace").exists():
        print(json.dumps({"skipped": f"{src} is not a workspace; run `make demo` first or pass --workspace"}))
        return 0
    seconds = 5.0 if args.quick else args.seconds
    tmp = Path(tempfile.mkdtemp(prefix="adlens-bench-serve-"))
    ws_path = tmp / "ws"
    shutil.copytree(src, ws_path)
    ads, arts = _ids(ws_path)
    if len(ads) < args.candidates or not arts:
        print(json.dumps({"skipped": f"workspace has {len(ads)} ads / {len(arts)} articles"}))
        return 0
    port = _free_port()
    adlens = Path(sys.executable).with_name("adlens")
    pin = [] if not args.pin else ["taskset", "-c", "1"]  # the server on CPU 1, this generator on CPU 0
    if args.pin and (len(os.sched_getaffinity(0)) < 2 or shutil.which("taskset") is None):
        raise SystemExit("--pin needs two CPUs (0 and 1) and taskset (util-linux)")
    if args.pin:
        os.sched_setaffinity(0, {0})
    err_log = tmp / "serve.stderr"  # a file, not a pipe: a chatty server can never block on it
    proc = subprocess.Popen([*pin, str(adlens), "serve", "--workspace", str(ws_path), "--port", str(port), "--policy",
                             args.policy, "--seed", str(args.seed), "--workers", str(args.workers)],
                            stdout=subprocess.DEVNULL, stderr=err_log.open("wb"))
    try:
        import httpx

        for _ in range(600):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError("service did not start: " + err_log.read_text(errors="replace")[-2000:])
        # warm-up: load every creative's features and every article once (first sight reads Parquet)
        _run(load(port, ads, arts, rate=50, seconds=max(2.0, len(arts) / 50), k=args.candidates,
                  click_rate=0.0, conns=4, seed=args.seed + 1), args.loop)
        r = httpx.post(f"http://127.0.0.1:{port}/v1/select", timeout=10, json={
            "context": {"article_id": arts[0]}, "candidates": ads[:args.candidates]})
        r.raise_for_status()
        sample = r.content  # a real answer, for --floor
        before = httpx.get(f"http://127.0.0.1:{port}/v1/arms", timeout=10).json()["totals"]
        # per-process metrics: with several workers /metrics comes from whichever one answers
        hist0 = _select_histogram(port) if args.workers == 1 else None
        load_before = os.getloadavg()
        cpu0 = _cpu_seconds(proc.pid, tree=True)
        res = _run(load(port, ads, arts, args.rate, seconds, args.candidates, args.click_rate,
                        args.connections, args.seed), args.loop)
        # the server's CPU per request: steadier than latency on a VM whose speed drifts
        res["server_cpu_ms_per_request"] = round((_cpu_seconds(proc.pid, tree=True) - cpu0) * 1e3 / max(1, res["requests"]), 3)
        after = httpx.get(f"http://127.0.0.1:{port}/v1/arms", timeout=10).json()["totals"]
        # the server's own handling time (from its /metrics): what the client measured beyond it is
        # queueing, the network stack and the client
        if hist0 is not None:
            hist = {le: c - hist0.get(le, 0) for le, c in _select_histogram(port).items()}
            total = hist.get(math.inf) or 1
            res["server_handling_share_within_ms"] = {f"{le * 1e3:g}": round(c / total, 4)
                                                      for le, c in hist.items() if le <= 0.05}
        res["clicks_counted"] = after["clicks"] - before["clicks"]
        res["decisions_logged"] = after["decisions"] - before["decisions"]
        res["exact"] = (res["clicks_counted"] == res["clicks_sent"] and res["decisions_logged"] == res["requests"])
    finally:
        _stop(proc)
    floor = run_floor(args, ads, arts, sample, tmp, seconds) if args.floor else None
    base = in_process_baseline(ws_path, ads, arts, args.candidates, 2000, args.policy, args.seed)
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps({"config": {"rate": args.rate, "seconds": seconds, "candidates": args.candidates,
                                 "policy": args.policy, "connections": args.connections, "workers": args.workers},
                      "cpus": os.cpu_count(), "loadavg_before": [round(x, 2) for x in load_before],
                      "http": res, "in_process": base, **({"floor_fixed_answer": floor} if floor else {})}, indent=2))
    return 0 if res["errors"] == 0 and res["exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
