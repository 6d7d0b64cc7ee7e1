#!/usr/bin/env python3
"""Does the proxy's memory or per-request cost grow with the number of config reloads?

Starts the release proxy on a file config of 50 mock deployments, then rewrites the file
N times (each edit changes every deployment's id and limits, the worst case for per-id
state), waiting for each reload to be served. Prints RSS and request latency after 0, 250,
500 and 1,000 reloads and writes docs/bench/reloads.json.

    python3 bench/reloads.py [--reloads 1000]
"""
import argparse, json, os, pathlib, socket, statistics, subprocess, tempfile, time, urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", pathlib.Path.home() / ".cache/modelgate/target"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def config(version):
    lines = ["general_settings: {background_health_checks: false}",
             "router_settings: {routing_strategy: usage-based-routing-v2}", "model_list:"]
    for i in range(50):
        lines.append(f"  - {{model_name: g{i % 5}, litellm_params: {{model: openai/gpt-4o, "
                     f"mock_response: 'v{version}-{i}', rpm: {100000 + version}}}}}")
    return "\n".join(lines) + "\n"


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def latency_ms(base, n=300):
    body = json.dumps({"model": "g1", "messages": [{"role": "user", "content": "hi"}]}).encode()
    out = []
    for _ in range(n):
        req = urllib.request.Request(base + "/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
        t = time.perf_counter()
        with urllib.request.urlopen(req, timeout=5) as r:
            r.read()
        out.append((time.perf_counter() - t) * 1000)
    out.sort()
    return statistics.median(out), out[int(len(out) * 0.99) - 1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reloads", type=int, default=1000)
    args = ap.parse_args()
    binary = TARGET / "release" / "modelgate-proxy"
    if not binary.exists():
        subprocess.run(["cargo", "build", "--release", "-p", "modelgate-proxy"], cwd=ROOT, check=True)
    tmp = tempfile.mkdtemp()
    path = pathlib.Path(tmp) / "config.yaml"
    path.write_text(config(0))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([str(binary), "--config", str(path), "--host", "127.0.0.1", "--port", str(port)],
                            stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "error"})
    try:
        deadline = time.time() + 10
        while True:
            try:
                get(base + "/health/readiness")
                break
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        rows = []
        checkpoints = sorted({0, args.reloads // 4, args.reloads // 2, args.reloads})
        generation = get(base + "/health/readiness")["config"]["generation"]
        for version in range(0, args.reloads + 1):
            if version > 0:
                path.write_text(config(version))
                deadline = time.time() + 10
                while get(base + "/health/readiness")["config"]["generation"] == generation:
                    if time.time() > deadline:
                        raise SystemExit(f"reload {version} not served")
                    time.sleep(0.005)
                generation = get(base + "/health/readiness")["config"]["generation"]
            if version in checkpoints:
                p50, p99 = latency_ms(base)
                rows.append({"reloads": version, "rss_mb": round(rss_kb(proc.pid) / 1024, 1),
                             "p50_ms": round(p50, 3), "p99_ms": round(p99, 3)})
                print(f"after {version:5d} reloads: RSS {rows[-1]['rss_mb']:6.1f} MB, "
                      f"request p50 {p50:.3f} ms, p99 {p99:.3f} ms", flush=True)
        out = ROOT / "docs" / "bench" / "reloads.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"command": "python3 bench/reloads.py --reloads %d" % args.reloads,
                                   "deployments": 50, "rows": rows}, indent=2) + "\n")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
