#!/usr/bin/env python3
"""modelgate benchmark: runs every scenario and writes the raw results as JSON.

Started by bench/run.sh (which installs what this needs); `bench/report.py` turns the JSON
into docs/benchmarks.md and the plots. Everything this starts, it stops (also on Ctrl-C).

Targets, side by side and interleaved in every scenario:
  direct    the mock upstream itself
  modelgate modelgate-proxy in front of the mock
  litellm   the LiteLLM proxy (one worker) on the same config
  nginx     nginx as a plain reverse proxy: the floor of what any proxy hop costs here

Environment knobs (run.sh sets them): BENCH_QUICK, BENCH_DURATION, BENCH_REPS, BENCH_OUT,
BENCH_BIN, BENCH_VENV, BENCH_TMP, BENCH_NGINX, BENCH_LITELLM, BENCH_PROFILE,
BENCH_LITELLM_RATE, BENCH_PHASES.
"""

from __future__ import annotations

import atexit
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

QUICK = os.environ.get("BENCH_QUICK", "0") == "1"
DURATION = int(os.environ.get("BENCH_DURATION", "2" if QUICK else "10"))
REPS = int(os.environ.get("BENCH_REPS", "3"))
OUT = Path(os.environ.get("BENCH_OUT", ROOT / "docs" / "bench" / "results.json"))
BIN = Path(os.environ.get("BENCH_BIN", "/root/.cache/modelgate/bench-bin"))
VENV = Path(os.environ.get("BENCH_VENV", "/root/.cache/modelgate/bench-venv"))
TMP = Path(os.environ.get("BENCH_TMP", "/tmp/modelgate-bench"))
WITH_NGINX = os.environ.get("BENCH_NGINX", "1") == "1" and shutil.which("nginx") is not None
WITH_LITELLM = os.environ.get("BENCH_LITELLM", "1") == "1"
WITH_PROFILE = os.environ.get("BENCH_PROFILE", "1") == "1" and shutil.which("perf") is not None
LITELLM_RATE = int(os.environ.get("BENCH_LITELLM_RATE", "40"))
FAST_RATE = int(os.environ.get("BENCH_RATE", "5000"))
PHASES = os.environ.get("BENCH_PHASES", "pinned,unpinned,startup,deployments,profile").split(",")
PIN_CPU = os.environ.get("BENCH_PIN_CPU", "1")

MASTER_KEY = "sk-bench-master-0000000000000000"
MOCK_PORT = 18080
STREAM_PORT = 18081
PORTS = {"modelgate": 4100, "litellm": 4200, "nginx": 4300}
STREAM_CHUNKS = 20
STREAM_DELAY_MS = 5
CHAT_BODY = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "hi"}]})
DEPLOYMENT_COUNTS = [1, 100, 2000, 10000]
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Processes: everything started goes through `spawn`, in its own session, and is stopped at
# exit. Its process group id is also written to TMP/pids so run.sh's trap can stop it too.
# --------------------------------------------------------------------------------------------
CHILDREN: list[subprocess.Popen] = []


def spawn(cmd: list[str], name: str, env: dict | None = None, cpu: str | None = None) -> subprocess.Popen:
    if cpu is not None:
        cmd = ["taskset", "-c", cpu] + cmd
    logf = open(TMP / f"{name}.log", "ab")
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    p = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=full_env,
                         start_new_session=True, cwd=TMP)
    p.bench_name = name  # type: ignore[attr-defined]
    p.bench_start = time.perf_counter()  # type: ignore[attr-defined]
    CHILDREN.append(p)
    _write_pids()
    return p


def _write_pids() -> None:
    (TMP / "pids").write_text("".join(f"{c.pid}\n" for c in CHILDREN))


def stop(p: subprocess.Popen | None, timeout: float = 10.0) -> None:
    if p is None or p.poll() is not None:
        return
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(timeout=5)
    # Children that outlived the leader (uvicorn workers) are still in its group.
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if p in CHILDREN:
        CHILDREN.remove(p)
        _write_pids()


def stop_all() -> None:
    for p in list(CHILDREN):
        stop(p, timeout=5)


atexit.register(stop_all)


def _on_signal(signum, _frame):
    log(f"signal {signum}: stopping everything")
    stop_all()
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)


# --------------------------------------------------------------------------------------------
# /proc: CPU and memory of a whole process tree
# --------------------------------------------------------------------------------------------
def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    return s[s.rindex(")") + 2:].split()


def tree(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _stat(int(d))
            if st:
                kids.setdefault(int(st[1]), []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_seconds(pid: int) -> float:
    """utime+stime of the tree, plus what its reaped children used (cutime+cstime)."""
    ticks = 0
    for p in tree(pid):
        st = _stat(p)
        if st:
            # after "comm) ": state=0 ppid=1 ... utime=11 stime=12 cutime=13 cstime=14
            ticks += int(st[11]) + int(st[12]) + int(st[13]) + int(st[14])
    return ticks / CLK_TCK


def rss_kb(pid: int) -> int:
    """Resident memory of the tree, summed over its processes."""
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * PAGE_KB
        except OSError:
            pass
    return total


def threads_of(pid: int) -> int:
    n = 0
    for p in tree(pid):
        try:
            n += len(os.listdir(f"/proc/{p}/task"))
        except OSError:
            pass
    return n


class RssSampler:
    """Samples the RSS of some process trees every 100 ms while a run goes on."""

    def __init__(self, pids: dict[str, int]):
        self.pids = pids
        self.peak = {k: 0 for k in pids}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            for k, pid in self.pids.items():
                self.peak[k] = max(self.peak[k], rss_kb(pid))
            self._stop.wait(0.1)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *a):
        self._stop.set()
        self._t.join()


def loadavg() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


# --------------------------------------------------------------------------------------------
# HTTP helpers
# --------------------------------------------------------------------------------------------
def http_get(port: int, path: str, timeout: float = 5.0, key: str | None = None) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        h = {"Authorization": f"Bearer {key}"} if key else {}
        c.request("GET", path, headers=h)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def wait_ready(p: subprocess.Popen, port: int, path: str, timeout: float, poll: float = 0.005) -> float | None:
    """Seconds from spawn to the first 200 on `path`, or None if it never came."""
    start = p.bench_start  # type: ignore[attr-defined]
    deadline = start + timeout
    while time.perf_counter() < deadline:
        if p.poll() is not None:
            log(f"{p.bench_name} exited with {p.returncode}; see {TMP}/{p.bench_name}.log")  # type: ignore[attr-defined]
            return None
        try:
            st, _ = http_get(port, path, timeout=2.0)
            if st == 200:
                return time.perf_counter() - start
        except OSError:
            pass
        time.sleep(poll)
    return None


def wait_port_free(port: int, timeout: float = 15.0) -> None:
    deadline = time.time() + timeout
    while not port_free(port) and time.time() < deadline:
        time.sleep(0.1)


# --------------------------------------------------------------------------------------------
# The pieces: mock upstream, modelgate, LiteLLM, nginx
# --------------------------------------------------------------------------------------------
def write_config(path: Path, extra_deployments: int = 0, only_generated: bool = False) -> Path:
    lines = ["model_list:"]
    if not only_generated:
        lines += [
            "  - model_name: bench",
            "    litellm_params:",
            "      model: openai/gpt-4o",
            f"      api_base: http://127.0.0.1:{MOCK_PORT}/v1",
            "      api_key: sk-bench-upstream",
            "  - model_name: bench-stream",
            "    litellm_params:",
            "      model: openai/gpt-4o",
            f"      api_base: http://127.0.0.1:{STREAM_PORT}/v1",
            "      api_key: sk-bench-upstream",
        ]
    for i in range(extra_deployments):
        lines += [
            f"  - model_name: model-{i:05d}",
            "    litellm_params:",
            "      model: openai/gpt-4o",
            f"      api_base: http://127.0.0.1:{MOCK_PORT}/v1",
            "      api_key: sk-bench-upstream",
        ]
    lines += [
        "general_settings:",
        f"  master_key: {MASTER_KEY}",
        "  background_health_checks: false",
        "",
    ]
    path.write_text("\n".join(lines))
    return path


def start_mock(port: int, cpu: str | None, threads: int | None) -> subprocess.Popen:
    wait_port_free(port)
    cmd = [str(BIN / "mock-upstream"), "--listen", f"127.0.0.1:{port}", "--no-record"]
    if threads:
        cmd += ["--threads", str(threads)]
    p = spawn(cmd, f"mock-{port}", cpu=cpu)
    if wait_ready(p, port, "/v1/models", 10) is None:
        raise RuntimeError(f"mock upstream on {port} did not start")
    return p


def start_sse_upstream(port: int, cpu: str | None = None) -> subprocess.Popen:
    """bench/sse_upstream.py: a streaming upstream that sets TCP_NODELAY (the mock does not)."""
    wait_port_free(port)
    cmd = [sys.executable, str(HERE / "sse_upstream.py"), "--port", str(port), "--chunks",
           str(STREAM_CHUNKS), "--delay-ms", str(STREAM_DELAY_MS)]
    p = spawn(cmd, f"sse-{port}", cpu=cpu)
    if wait_ready(p, port, "/v1/models", 10) is None:
        raise RuntimeError(f"streaming upstream on {port} did not start")
    return p


def start_modelgate(config: Path, cpu: str | None = None, workers: int | None = None,
                    port: int = PORTS["modelgate"], name: str = "modelgate") -> tuple[subprocess.Popen, float | None]:
    wait_port_free(port)
    cmd = [str(BIN / "modelgate-proxy"), "--config", str(config), "--host", "127.0.0.1",
           "--port", str(port)]
    if workers:
        cmd += ["--worker-threads", str(workers)]
    p = spawn(cmd, name, env={"RUST_LOG": "warn"}, cpu=cpu)
    return p, wait_ready(p, port, "/health/readiness", 30)


def litellm_env() -> dict:
    return {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_MASTER_KEY": MASTER_KEY,
        "LITELLM_TELEMETRY": "False",
        "PYTHONUNBUFFERED": "1",
    }


def start_litellm(config: Path, cpu: str | None = None, timeout: float = 120,
                  port: int = PORTS["litellm"], name: str = "litellm") -> tuple[subprocess.Popen, float | None]:
    wait_port_free(port)
    cmd = [str(VENV / "bin" / "litellm"), "--config", str(config), "--host", "127.0.0.1",
           "--port", str(port), "--num_workers", "1"]
    p = spawn(cmd, name, env=litellm_env(), cpu=cpu)
    return p, wait_ready(p, port, "/health/readiness", timeout, poll=0.05)


def start_nginx(workers: int, cpu: str | None) -> subprocess.Popen:
    port = PORTS["nginx"]
    wait_port_free(port)
    d = TMP / "nginx"
    for sub in ("", "body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    conf = d / "nginx.conf"
    conf.write_text(f"""
worker_processes {workers};
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  upstream mock {{ server 127.0.0.1:{MOCK_PORT}; keepalive 256; }}
  server {{
    listen 127.0.0.1:{port} reuseport;
    location / {{
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
""")
    p = spawn(["nginx", "-p", str(d), "-c", str(conf)], "nginx", cpu=cpu)
    if wait_ready(p, port, "/v1/models", 10) is None:
        raise RuntimeError("nginx did not start")
    return p


# --------------------------------------------------------------------------------------------
# Load: wrk with bench/wrk/bench.lua
# --------------------------------------------------------------------------------------------
def wrk(port: int, conc: int, threads: int, duration: int, rate: int = 0, cpu: str | None = None,
        method: str = "POST", path: str = "/v1/chat/completions", body: str = CHAT_BODY) -> dict:
    env = dict(os.environ, BENCH_METHOD=method, BENCH_PATH=path, BENCH_BODY=body,
               BENCH_KEY=MASTER_KEY, BENCH_RATE=str(rate), BENCH_THREADS=str(threads))
    cmd = ["wrk", f"-t{threads}", f"-c{conc}", f"-d{duration}s", "--timeout", "10s",
           "-s", str(HERE / "wrk" / "bench.lua"), f"http://127.0.0.1:{port}"]
    if cpu is not None:
        cmd = ["taskset", "-c", cpu] + cmd
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60)
    m = re.search(r"^BENCHJSON (.*)$", r.stdout, re.M)
    if not m:
        raise RuntimeError(f"wrk gave no result: {r.stdout}\n{r.stderr}")
    res = json.loads(m.group(1))
    res["rps"] = res["requests"] / (res["duration_us"] / 1e6)
    res["error_total"] = sum(res["errors"].values())
    return res


class Target:
    def __init__(self, name: str, port: int, proc: subprocess.Popen | None):
        self.name, self.port, self.proc = name, port, proc


def measured_run(t: Target, mock: subprocess.Popen, **kw) -> dict:
    """One wrk run against `t`, with the CPU and peak RSS of its process tree."""
    gw = t.proc or mock
    pids = {"gateway": gw.pid}
    with RssSampler(pids) as rs:
        cpu0, mcpu0 = cpu_seconds(gw.pid), cpu_seconds(mock.pid)
        res = wrk(t.port, **kw)
        cpu1, mcpu1 = cpu_seconds(gw.pid), cpu_seconds(mock.pid)
    res["cpu_s"] = cpu1 - cpu0
    res["mock_cpu_s"] = mcpu1 - mcpu0
    res["cpu_s_per_1k"] = res["cpu_s"] / max(res["requests"], 1) * 1000
    res["rss_peak_kb"] = rs.peak["gateway"]
    res["rss_after_kb"] = rss_kb(gw.pid)
    return res


def interleaved(scenario: str, targets: list[Target], mock: subprocess.Popen, reps: int,
                results: list, **kw) -> None:
    """Runs every target `reps` times, rotating the order each repetition (D M L N / M L N D / ...)."""
    log(f"scenario {scenario}: warm-up")
    for t in targets:
        wrk(t.port, **dict(kw, duration=1))
    for rep in range(reps):
        order = targets[rep % len(targets):] + targets[:rep % len(targets)]
        for t in order:
            time.sleep(1.0)
            res = measured_run(t, mock, **kw)
            res.update(scenario=scenario, target=t.name, rep=rep, conc=kw["conc"],
                       threads=kw["threads"], rate=kw.get("rate", 0), duration=kw["duration"],
                       loadavg=loadavg())
            results.append(res)
            lat = res["latency_us"]["p"]
            log(f"  {scenario} rep {rep} {t.name:9s} {res['rps']:9.0f} req/s  p50 {lat['50'] / 1000:.3f} ms"
                f"  p99 {lat['99'] / 1000:.3f} ms  err {res['error_total']}  cpu/1k {res['cpu_s_per_1k']:.4f} s")


# --------------------------------------------------------------------------------------------
# Streaming: time to first chunk / first token and the gaps between chunks
# --------------------------------------------------------------------------------------------
def stream_once(conn: http.client.HTTPConnection, body: str, headers: dict, quickack: bool) -> dict:
    t0 = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body, headers)
    r = conn.getresponse()
    if r.status != 200:
        r.read()
        return {"status": r.status}
    events: list[float] = []
    first_token = None
    data_all = b""
    while True:
        if quickack and conn.sock is not None:
            # Acknowledge at once (Linux re-enables delayed ACKs after each ACK).
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        data = r.read1(65536)
        if not data:
            break
        t = time.perf_counter()
        n = data.count(b"data:")
        events.extend([t] * n)
        if first_token is None and b"tok0" in data:
            first_token = t
        data_all += data
    done = b"[DONE]" in data_all
    tokens = data_all.count(b"tok")
    tok_times = []
    # The content chunks are the events between the role chunk and the finish chunk.
    if len(events) >= STREAM_CHUNKS + 2:
        tok_times = events[1:1 + STREAM_CHUNKS]
    gaps = [b - a for a, b in zip(tok_times, tok_times[1:])]
    return {"status": 200, "ttfb": events[0] - t0 if events else None,
            "ttft": (first_token - t0) if first_token else None,
            "total": time.perf_counter() - t0, "events": len(events), "tokens": tokens,
            "done": done, "gaps": gaps}


def stream_run(t: Target, n: int, quickack: bool) -> dict:
    body = json.dumps({"model": "bench-stream", "stream": True,
                       "messages": [{"role": "user", "content": "hi"}]})
    headers = {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", t.port, timeout=30)
    ttfb, ttft, total, gaps, broken, bad = [], [], [], [], 0, 0
    for _ in range(n):
        try:
            s = stream_once(conn, body, headers, quickack)
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", t.port, timeout=30)
            broken += 1
            continue
        if s["status"] != 200:
            bad += 1
            continue
        if not s["done"] or s["tokens"] < STREAM_CHUNKS:
            broken += 1
        if s["ttfb"] is not None:
            ttfb.append(s["ttfb"] * 1000)
        if s["ttft"] is not None:
            ttft.append(s["ttft"] * 1000)
        total.append(s["total"] * 1000)
        gaps.extend(g * 1000 for g in s["gaps"])
    conn.close()

    def pct(xs, p):
        if not xs:
            return None
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]

    return {"streams": n, "non_200": bad, "broken": broken,
            "ttfb_ms": {"p50": pct(ttfb, 50), "p99": pct(ttfb, 99)},
            "ttft_ms": {"p50": pct(ttft, 50), "p99": pct(ttft, 99)},
            "gap_ms": {"p50": pct(gaps, 50), "p99": pct(gaps, 99),
                       "mean": statistics.fmean(gaps) if gaps else None},
            "total_ms": {"p50": pct(total, 50), "p99": pct(total, 99)}}


# --------------------------------------------------------------------------------------------
# Endpoint latency for the deployment-count scenario (sequential, one keep-alive connection)
# --------------------------------------------------------------------------------------------
def endpoint_latency(port: int, path: str, max_n: int, budget_s: float, min_n: int = 3) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    h = {"Authorization": f"Bearer {MASTER_KEY}"}
    times, size, status = [], 0, None
    start = time.perf_counter()
    while len(times) < max_n and (len(times) < min_n or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        conn.request("GET", path, headers=h)
        r = conn.getresponse()
        body = r.read()
        times.append((time.perf_counter() - t0) * 1000)
        size, status = len(body), r.status
    conn.close()
    times.sort()
    return {"n": len(times), "status": status, "bytes": size,
            "p50_ms": statistics.median(times),
            "p99_ms": times[min(len(times) - 1, int(round(0.99 * (len(times) - 1))))],
            "max_ms": times[-1]}


# --------------------------------------------------------------------------------------------
# Phases
# --------------------------------------------------------------------------------------------
def phase_pinned(res: dict) -> None:
    """Concurrency 1 with the load generator, the mock and every proxy on one CPU."""
    cpu = PIN_CPU
    cfg = write_config(TMP / "bench.yaml")
    mock = start_mock(MOCK_PORT, cpu, threads=1)
    targets = [Target("direct", MOCK_PORT, None)]
    mg, t = start_modelgate(cfg, cpu=cpu, workers=1)
    if t is None:
        raise RuntimeError("modelgate did not become ready")
    targets.append(Target("modelgate", PORTS["modelgate"], mg))
    if WITH_LITELLM:
        ll, t = start_litellm(cfg, cpu=cpu)
        res["startup"].append({"target": "litellm", "deployments": 2, "pinned": True, "ready_s": t})
        if t is not None:
            targets.append(Target("litellm", PORTS["litellm"], ll))
    if WITH_NGINX:
        targets.append(Target("nginx", PORTS["nginx"], start_nginx(1, cpu)))
    interleaved("c1-pinned", targets, mock, REPS, res["runs"], conc=1, threads=1,
                duration=DURATION, cpu=cpu)
    for p in [tt.proc for tt in targets] + [mock]:
        stop(p)


def phase_unpinned(res: dict) -> None:
    cfg = write_config(TMP / "bench.yaml")
    mock = start_mock(MOCK_PORT, None, threads=None)
    stream_up = start_sse_upstream(STREAM_PORT)
    mg, t = start_modelgate(cfg)
    if t is None:
        raise RuntimeError("modelgate did not become ready")
    mem = res["memory"]
    time.sleep(1.0)
    mem["modelgate"] = {"idle_start_kb": rss_kb(mg.pid), "threads": threads_of(mg.pid)}
    direct = Target("direct", MOCK_PORT, None)
    mgt = Target("modelgate", PORTS["modelgate"], mg)
    targets = [direct, mgt]
    llt = None
    if WITH_LITELLM:
        ll, t = start_litellm(cfg)
        res["startup"].append({"target": "litellm", "deployments": 2, "pinned": False, "ready_s": t})
        if t is not None:
            time.sleep(2.0)
            mem["litellm"] = {"idle_start_kb": rss_kb(ll.pid), "threads": threads_of(ll.pid),
                              "processes": len(tree(ll.pid))}
            llt = Target("litellm", PORTS["litellm"], ll)
            targets.append(llt)
    ngt = None
    if WITH_NGINX:
        ng = start_nginx(2, None)
        time.sleep(0.5)
        mem["nginx"] = {"idle_start_kb": rss_kb(ng.pid), "processes": len(tree(ng.pid))}
        ngt = Target("nginx", PORTS["nginx"], ng)
        targets.append(ngt)

    timeline = [{"after": "start", "kb": rss_kb(mg.pid)}]
    interleaved("c1", targets, mock, REPS, res["runs"], conc=1, threads=1, duration=DURATION)
    timeline.append({"after": "c1", "kb": rss_kb(mg.pid)})
    interleaved("c16", targets, mock, REPS, res["runs"], conc=16, threads=2, duration=DURATION)
    timeline.append({"after": "c16", "kb": rss_kb(mg.pid)})
    interleaved("c64", targets, mock, REPS, res["runs"], conc=64, threads=2, duration=DURATION)
    timeline.append({"after": "c64", "kb": rss_kb(mg.pid)})
    fast = [direct, mgt] + ([ngt] if ngt else [])
    interleaved(f"rate{FAST_RATE}", fast, mock, REPS, res["runs"], conc=32, threads=2,
                duration=DURATION, rate=FAST_RATE)
    timeline.append({"after": f"rate{FAST_RATE}", "kb": rss_kb(mg.pid)})
    if llt:
        slow = [direct, mgt, llt]
        interleaved(f"rate{LITELLM_RATE}", slow, mock, REPS, res["runs"], conc=8, threads=1,
                    duration=max(DURATION, 5), rate=LITELLM_RATE)
    timeline.append({"after": f"rate{LITELLM_RATE}", "kb": rss_kb(mg.pid)})

    # Streaming, interleaved the same way.
    n = 20 if QUICK else 60
    st_targets = [Target("direct", STREAM_PORT, None), mgt] + ([llt] if llt else [])
    log("scenario stream: warm-up")
    for t in st_targets:
        stream_run(t, 3, quickack=False)
    for mode in ("plain", "quickack"):
        for rep in range(REPS):
            order = st_targets[rep % len(st_targets):] + st_targets[:rep % len(st_targets)]
            for t in order:
                time.sleep(0.5)
                r = stream_run(t, n, quickack=(mode == "quickack"))
                r.update(target=t.name, rep=rep, client=mode)
                res["stream"].append(r)
                log(f"  stream {mode} rep {rep} {t.name:9s} first chunk p50 {r['ttfb_ms']['p50']:.3f} ms  "
                    f"first token p50 {r['ttft_ms']['p50']:.3f} ms  gap p50 {r['gap_ms']['p50']:.3f} p99 "
                    f"{r['gap_ms']['p99']:.3f} ms  broken {r['broken']}  non-200 {r['non_200']}")
    timeline.append({"after": "stream", "kb": rss_kb(mg.pid)})

    time.sleep(2.0)
    mem["modelgate"]["idle_after_kb"] = rss_kb(mg.pid)
    mem["modelgate"]["timeline"] = timeline
    mem["modelgate"]["threads_after"] = threads_of(mg.pid)
    if llt:
        mem["litellm"]["idle_after_kb"] = rss_kb(llt.proc.pid)
    if ngt:
        mem["nginx"]["idle_after_kb"] = rss_kb(ngt.proc.pid)
    for t in targets:
        if t.proc:
            res["logs"][t.name] = log_summary(t.proc.bench_name)  # type: ignore[attr-defined]
            stop(t.proc)
    stop(stream_up)
    stop(mock)


def log_summary(name: str) -> dict:
    """Counts of warning and error lines a server wrote during the run."""
    try:
        text = (TMP / f"{name}.log").read_text(errors="replace")
    except OSError:
        return {}
    lines = text.splitlines()
    errs = [l for l in lines if re.search(r"\b(ERROR|error|Traceback|panicked)\b", l)]
    warns = [l for l in lines if re.search(r"\bWARN(ING)?\b", l)]
    return {"lines": len(lines), "error_lines": len(errs), "warn_lines": len(warns),
            "first_errors": errs[:5], "first_warnings": warns[:5]}


def phase_startup(res: dict) -> None:
    cfg = write_config(TMP / "bench.yaml")
    mock = start_mock(MOCK_PORT, None, threads=None)
    for i in range(5):
        mg, t = start_modelgate(cfg, name="modelgate-startup")
        res["startup"].append({"target": "modelgate", "deployments": 2, "pinned": False, "ready_s": t,
                               "rss_kb": rss_kb(mg.pid)})
        log(f"  startup modelgate {i}: {t * 1000 if t else float('nan'):.1f} ms")
        stop(mg)
    stop(mock)


def phase_deployments(res: dict) -> None:
    mock = start_mock(MOCK_PORT, None, threads=None)
    budget = 2.0 if QUICK else 5.0
    for n in DEPLOYMENT_COUNTS:
        cfg = write_config(TMP / f"deployments-{n}.yaml", extra_deployments=n, only_generated=True)
        size = cfg.stat().st_size
        reps = 3
        for rep in range(reps):
            mg, t = start_modelgate(cfg, name=f"modelgate-d{n}")
            row = {"target": "modelgate", "deployments": n, "rep": rep, "config_bytes": size,
                   "ready_s": t}
            if t is not None:
                row["rss_ready_kb"] = rss_kb(mg.pid)
                if rep == reps - 1:
                    row["v1_models"] = endpoint_latency(PORTS["modelgate"], "/v1/models", 200, budget)
                    row["model_info"] = endpoint_latency(PORTS["modelgate"], "/model/info", 200, budget)
                    row["rss_after_kb"] = rss_kb(mg.pid)
            res["deployments"].append(row)
            log(f"  deployments {n} modelgate rep {rep}: ready {t}  rss {row.get('rss_ready_kb')} kB"
                + (f"  /v1/models p50 {row['v1_models']['p50_ms']:.3f} ms  /model/info p50 "
                   f"{row['model_info']['p50_ms']:.3f} ms" if "v1_models" in row else ""))
            stop(mg)
        if WITH_LITELLM and not (QUICK and n > 100):
            timeout = 180 if n >= 10000 else 120
            ll, t = start_litellm(cfg, timeout=timeout, name=f"litellm-d{n}")
            row = {"target": "litellm", "deployments": n, "rep": 0, "config_bytes": size,
                   "ready_s": t, "timeout_s": timeout}
            if t is not None:
                time.sleep(1.0)
                row["rss_ready_kb"] = rss_kb(ll.pid)
                row["v1_models"] = endpoint_latency(PORTS["litellm"], "/v1/models", 50, budget)
                row["model_info"] = endpoint_latency(PORTS["litellm"], "/model/info", 20, budget)
                row["rss_after_kb"] = rss_kb(ll.pid)
            else:
                row["rss_at_timeout_kb"] = rss_kb(ll.pid) if ll.poll() is None else None
            res["deployments"].append(row)
            log(f"  deployments {n} litellm: ready {t}  rss {row.get('rss_ready_kb')} kB"
                + (f"  /v1/models p50 {row['v1_models']['p50_ms']:.1f} ms  /model/info p50 "
                   f"{row['model_info']['p50_ms']:.1f} ms" if "v1_models" in row else ""))
            stop(ll)
    stop(mock)


def phase_profile(res: dict) -> None:
    """perf profile of modelgate at concurrency 64 (flat self-time + folded stacks for a flame graph)."""
    cfg = write_config(TMP / "bench.yaml")
    mock = start_mock(MOCK_PORT, None, threads=None)
    mg, t = start_modelgate(cfg, name="modelgate-profile")
    if t is None:
        raise RuntimeError("modelgate did not become ready")
    dur = 3 if QUICK else 6
    wrk(PORTS["modelgate"], conc=64, threads=2, duration=1)
    data = TMP / "perf.data"
    perf = subprocess.Popen(["perf", "record", "-F", "499", "--call-graph", "dwarf,32768", "-p",
                             str(mg.pid), "-o", str(data), "--", "sleep", str(dur + 1)],
                            stdout=subprocess.DEVNULL, stderr=open(TMP / "perf.log", "w"),
                            start_new_session=True)
    CHILDREN.append(perf)
    r = wrk(PORTS["modelgate"], conc=64, threads=2, duration=dur)
    perf.wait()
    CHILDREN.remove(perf)
    stop(mg)
    stop(mock)
    out_dir = OUT.parent
    flat = []
    for sort, limit in (("dso", "0.1"), ("dso,symbol", "0.4")):
        rep_ = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--stdio",
                               "--sort", sort, "--percent-limit", limit, "-g", "none"],
                              capture_output=True, text=True)
        flat.append("\n".join(l.rstrip() for l in rep_.stdout.splitlines()
                              if l.strip() and not l.startswith("#")))
    (out_dir / "profile-flat.txt").write_text(
        "# modelgate-proxy at concurrency 64, self time (perf report --no-children)\n\n"
        "## by binary\n" + flat[0] + "\n\n## by symbol (>= 0.4 %)\n" + flat[1] + "\n")
    script = subprocess.run(["perf", "script", "--no-inline", "-i", str(data), "-F", "comm,tid,ip,sym,dso"],
                            capture_output=True, text=True)
    folded = fold_stacks(script.stdout)
    categories = categorize(folded)
    (out_dir / "profile-folded.txt").write_text(
        "".join(f"{k} {v}\n" for k, v in sorted(compact(folded).items(), key=lambda kv: -kv[1])))
    res["profile"] = {"conc": 64, "duration": dur, "rps_under_perf": r["rps"],
                      "samples": sum(folded.values()), "flat": "profile-flat.txt",
                      "folded": "profile-folded.txt", "categories": categories}
    try:
        data.unlink()
    except OSError:
        pass


# Where the time goes, as inclusive shares of all samples (a sample can be in several rows).
# Each row: (label, frame regex, regex that must also match a frame, regex that must not).
PROFILE_CATEGORIES = [
    ("inference handler (handlers::inference::serve, the upstream call included)",
     r"modelgate_proxy::handlers::inference::serve", None, None),
    ("upstream::send (the hyper client call, to the response head)", r"modelgate_proxy::upstream::send",
     None, None),
    ("hyper client, inclusive: its connection tasks, i.e. the upstream side's socket I/O",
     r"^hyper_util::client::legacy|hyper::proto::h1::role::Client|hyper::client::", None, None),
    ("URL parsing (url::parser), anywhere", r"^url::parser", None, None),
    ("parse the client's JSON body (serde_json, outside restamp)", r"^serde_json::de::",
     r"modelgate_proxy::", r"restamp"),
    ("stamp the model into the upstream response (restamp)", r"modelgate_proxy::restamp::", None, None),
    ("build the upstream body (upstream::upstream_body)", r"modelgate_proxy::upstream::upstream_body", None, None),
    ("x-litellm-* response headers (dispatch::litellm_headers, incl. uuid)",
     r"modelgate_proxy::dispatch::litellm_headers", None, None),
    ("uuid generation", r"^uuid::|uuid::rng", None, None),
    ("router: pick, live counters (modelgate_proxy::router)", r"^modelgate_proxy::router::", None, None),
    ("Prometheus metrics", r"modelgate_proxy::metrics|prometheus_client", None, None),
    ("timers (tokio::time: timeouts)", r"^tokio::time::|TimerEntry|tokio::runtime::time", None, None),
    ("malloc / free (mimalloc, and glibc's where anything still calls it)",
     r"^(mi_|_mi_|__GI___libc_malloc|_int_malloc|malloc|__GI___libc_free|cfree@GLIBC_2.2.5|_int_free|"
     r"malloc_consolidate|unlink_chunk.constprop.0|__libc_realloc|_int_realloc|realloc|__libc_calloc)",
     None, None),
    ("memcpy / memmove", r"^__memmove|^__memcpy|^__memset", None, None),
    ("writev/sendto syscalls (both sockets; on loopback they include the peer's receive path)",
     r"^(__GI___writev|__send|__libc_sendto|__GI___send|do_writev)$", None, None),
    ("read/recv syscalls", r"^(__libc_recv|__GI___recv|__libc_read|__GI___read|__GI___libc_read)$|"
     r"^__x64_sys_(recvfrom|read)$", None, None),
    ("epoll_wait", r"^epoll_wait$|^__x64_sys_epoll_wait$", None, None),
    ("futex (thread wake-ups)", r"^__x64_sys_futex$", None, None),
    ("all kernel time", r"^(entry_SYSCALL_64|asm_|irq|ret_from_fork)", None, None),
]


def categorize(folded: dict[str, int]) -> list[dict]:
    total = sum(folded.values()) or 1
    out = []
    for name, pat, also, never in PROFILE_CATEGORIES:
        rx, rx_also, rx_never = re.compile(pat), also and re.compile(also), never and re.compile(never)
        n = 0
        for k, v in folded.items():
            frames = k.split(";")
            if not any(rx.search(f) for f in frames):
                continue
            if rx_also and not any(rx_also.search(f) for f in frames):
                continue
            if rx_never and any(rx_never.search(f) for f in frames):
                continue
            n += v
        out.append({"what": name, "share": n / total})
    return out


def compact(folded: dict[str, int], depth: int = 12) -> dict[str, int]:
    """Keeps the file small: stacks seen once are cut after `depth` frames and merged."""
    out: dict[str, int] = {}
    for k, v in folded.items():
        if v < 2:
            frames = k.split(";")
            if len(frames) > depth:
                k = ";".join(frames[:depth] + ["[rare stacks]"])
        out[k] = out.get(k, 0) + v
    return out


def fold_stacks(script_out: str) -> dict[str, int]:
    """perf script output -> `thread;outer;...;inner count` lines (Brendan Gregg's format)."""
    folded: dict[str, int] = {}
    for block in script_out.split("\n\n"):
        lines = [l for l in block.splitlines() if l.strip()]
        if not lines:
            continue
        comm = lines[0].split()[0]
        comm = re.sub(r"-\d+$", "", comm)
        frames = []
        for l in lines[1:]:
            parts = l.strip().split(None, 1)
            if len(parts) < 2:
                continue
            sym = parts[1]
            sym = re.sub(r"\s*\(.*\)$", "", sym)  # drop "(dso)"
            sym = re.sub(r"\+0x[0-9a-f]+$", "", sym)
            sym = re.sub(r"::h[0-9a-f]{16}$", "", sym)
            frames.append(sym.replace(";", ":") or "[unknown]")
        if not frames:
            continue
        frames = frames[::-1]  # outermost first
        # The runtime's own frames above a task say nothing: start at the connection task
        # (or at the scheduler loop for the rest).
        for marker, label in (("axum::serve::handle_connection", "[connection task]"),
                              ("tokio::runtime::scheduler::multi_thread::worker::Context::run",
                               "[tokio scheduler]")):
            idx = [i for i, fr in enumerate(frames) if fr.startswith(marker)]
            if idx:
                frames = [label] + frames[idx[0] + 1:]
                break
        key = ";".join([comm] + frames)
        folded[key] = folded.get(key, 0) + 1
    return folded


# --------------------------------------------------------------------------------------------
def versions() -> dict:
    def run(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip() or \
                subprocess.run(cmd, capture_output=True, text=True, timeout=30).stderr.strip()
        except Exception as e:  # noqa: BLE001
            return f"n/a ({e})"

    cpu_model = ""
    with open("/proc/cpuinfo") as f:
        for l in f:
            if l.startswith("model name"):
                cpu_model = l.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": cpu_model, "cores": os.cpu_count(), "mem_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "modelgate_build": (BIN / "REV").read_text().strip() if (BIN / "REV").exists() else "?",
        "modelgate_commit": run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "modelgate": run([str(BIN / "modelgate-proxy"), "--version"]),
        "rustc": run(["rustc", "--version"]),
        "wrk": run(["wrk", "-v"]).splitlines()[0] if shutil.which("wrk") else None,
        "nginx": run(["nginx", "-v"]) if WITH_NGINX else None,
        "litellm": run([str(VENV / "bin" / "python"), "-c",
                        "import importlib.metadata as m; print(m.version('litellm'))"]),
        "python": platform.python_version(),
    }


def main() -> int:
    TMP.mkdir(parents=True, exist_ok=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    ports = [MOCK_PORT, STREAM_PORT] + list(PORTS.values())
    busy = [p for p in ports if not port_free(p)]
    if busy:
        log(f"ports in use: {busy}; stop whatever holds them")
        return 1
    started = time.time()
    res: dict = {"meta": {"quick": QUICK, "duration_s": DURATION, "reps": REPS,
                          "litellm_rate": LITELLM_RATE, "fast_rate": FAST_RATE,
                          "stream_chunks": STREAM_CHUNKS, "stream_delay_ms": STREAM_DELAY_MS,
                          "pin_cpu": PIN_CPU, "nginx": WITH_NGINX, "litellm_enabled": WITH_LITELLM,
                          "loadavg_start": open("/proc/loadavg").read().strip(),
                          "waited_for_idle": os.environ.get("BENCH_WAITED", ""),
                          **versions()},
                 "runs": [], "stream": [], "startup": [], "deployments": [], "memory": {},
                 "logs": {}, "profile": None}
    phases = {"pinned": phase_pinned, "unpinned": phase_unpinned, "startup": phase_startup,
              "deployments": phase_deployments, "profile": phase_profile}
    for name in PHASES:
        if name == "profile" and not WITH_PROFILE:
            continue
        log(f"phase {name}")
        t0 = time.time()
        try:
            phases[name](res)
        except Exception as e:  # noqa: BLE001
            log(f"phase {name} failed: {e!r}")
            res.setdefault("failures", []).append({"phase": name, "error": repr(e)})
            stop_all()
        res["meta"][f"phase_{name}_s"] = round(time.time() - t0, 1)
        # Write what we have after every phase, so a crash keeps the rest.
        res["meta"]["loadavg_end"] = open("/proc/loadavg").read().strip()
        res["meta"]["total_s"] = round(time.time() - started, 1)
        OUT.write_text(json.dumps(res, indent=1))
    log(f"wrote {OUT} in {time.time() - started:.0f} s")
    return 0 if not res.get("failures") else 2


if __name__ == "__main__":
    sys.exit(main())
