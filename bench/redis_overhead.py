#!/usr/bin/env python3
"""What sharing limits through Redis adds to a request (issue #7).

Two release proxies on the same mock upstream, both with usage-based-routing-v2 and an rpm
limit on the deployment (so every request is checked and counted): one with local counters,
one with `redis_host` (a local redis-server, so one Lua round trip per request). wrk at
concurrency 1, everything pinned to one CPU, runs interleaved; medians of the repetitions.
Writes docs/bench/redis.json.

    python3 bench/redis_overhead.py [--seconds 10] [--reps 3]
"""
import argparse, json, os, pathlib, re, shutil, socket, statistics, subprocess, tempfile, time, urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
CACHE = pathlib.Path(os.environ.get("MODELGATE_CACHE", pathlib.Path.home() / ".cache/modelgate"))
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", CACHE / "target")) / "release"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_ready(url, want_cache=False):
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/health/readiness", timeout=1) as r:
                v = json.loads(r.read())
                if not want_cache or (v.get("cache") or {}).get("connected"):
                    return
        except Exception:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{url} not ready")


def wrk(url, seconds):
    env = {**os.environ, "BENCH_BODY": json.dumps({"model": "bench", "messages": [{"role": "user", "content": "hi"}]})}
    r = subprocess.run(["taskset", "-c", "0", "wrk", "-t1", "-c1", f"-d{seconds}s", "-s", str(ROOT / "bench/wrk/bench.lua"), url],
                       capture_output=True, text=True, env=env, check=True)
    m = re.search(r"BENCHJSON (\{.*\})", r.stdout)
    if not m:
        raise SystemExit("wrk gave no result:\n" + r.stdout + r.stderr)
    raw = json.loads(m.group(1))
    errors = sum(raw["errors"].values())
    return {"p50_us": raw["latency_us"]["p"]["50"], "p99_us": raw["latency_us"]["p"]["99"],
            "requests_per_s": raw["requests"] / (raw["duration_us"] / 1e6), "errors": errors}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    for tool in ("wrk", "redis-server", "taskset"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing (bench/setup.sh and tests/install-tools.sh install it)")
    if not (TARGET / "modelgate-proxy").exists():
        subprocess.run(["cargo", "build", "--release", "-p", "modelgate-proxy", "-p", "modelgate-mock-upstream"], cwd=ROOT, check=True)
    tmp = pathlib.Path(tempfile.mkdtemp())
    procs = []

    def start(cmd, **kw):
        p = subprocess.Popen(["taskset", "-c", "0"] + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
        procs.append(p)
        return p

    try:
        up, rp = free_port(), free_port()
        start([str(TARGET / "mock-upstream"), "--listen", f"127.0.0.1:{up}", "--no-record", "--threads", "1"])
        start(["redis-server", "--port", str(rp), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        base = ("general_settings: {background_health_checks: false}\nrouter_settings:\n"
                "  routing_strategy: usage-based-routing-v2\n{redis}"
                "model_list:\n  - {model_name: bench, litellm_params: {model: openai/gpt-4o, "
                f"api_base: 'http://127.0.0.1:{up}/v1', api_key: k, rpm: 1000000000}}}}\n")
        urls = {}
        for name, redis in (("local", ""), ("redis", f"  redis_host: 127.0.0.1\n  redis_port: {rp}\n")):
            cfg = tmp / f"{name}.yaml"
            cfg.write_text(base.replace("{redis}", redis))
            port = free_port()
            start([str(TARGET / "modelgate-proxy"), "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port),
                   "--worker-threads", "1"], env={**os.environ, "RUST_LOG": "error"})
            urls[name] = f"http://127.0.0.1:{port}"
        wait_ready(urls["local"])
        wait_ready(urls["redis"], want_cache=True)
        for u in urls.values():
            wrk(u, 2)  # warm up connections and caches
        runs = {"local": [], "redis": []}
        for rep in range(args.reps):
            order = ("local", "redis") if rep % 2 == 0 else ("redis", "local")
            for name in order:
                runs[name].append(wrk(urls[name], args.seconds))
        def med(name, key):
            return statistics.median(r[key] for r in runs[name])
        keys = ("p50_us", "p99_us", "requests_per_s", "errors")
        summary = {name: {k: med(name, k) for k in keys} for name in runs}
        added = {k: summary["redis"][k] - summary["local"][k] for k in summary["local"] if k.endswith("_us")}
        result = {"command": f"python3 bench/redis_overhead.py --seconds {args.seconds} --reps {args.reps}",
                  "loadavg_before": open("/proc/loadavg").read().split()[:3],
                  "summary": summary, "added_by_redis_us": added, "runs": runs}
        out = ROOT / "docs/bench/redis.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({"summary": summary, "added_by_redis_us": added}, indent=2))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except Exception:
                p.kill()


if __name__ == "__main__":
    main()
