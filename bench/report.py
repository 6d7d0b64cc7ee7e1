#!/usr/bin/env python3
"""Turns docs/bench/results.json into docs/benchmarks.md and the PNG plots next to the JSON.

    python bench/report.py [docs/bench/results.json]

Hand-written parts are kept in files the report includes verbatim, so that regenerating the
report never loses them:
  docs/bench/findings.md     what the profile shows and what is left to fix
  docs/bench/propagation.md  the cluster propagation figures (issue point 3)
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "bench" / "results.json"
BENCH_DIR = RESULTS.parent
if BENCH_DIR.resolve() == (ROOT / "docs" / "bench").resolve():
    DOC = ROOT / "docs" / "benchmarks.md"
    REL = Path("bench")  # how docs/benchmarks.md refers to BENCH_DIR (docs/bench)
else:  # results elsewhere (a trial run): the report goes next to them
    DOC = BENCH_DIR / "benchmarks.md"
    REL = Path(".")

ORDER = ["direct", "nginx", "modelgate", "litellm"]
LABEL = {"direct": "direct (mock)", "nginx": "nginx (floor)", "modelgate": "modelgate",
         "litellm": "LiteLLM 1 worker"}
COLOR = {"direct": "#777777", "nginx": "#2ca02c", "modelgate": "#1f77b4", "litellm": "#d62728"}

r = json.loads(RESULTS.read_text())
meta = r["meta"]
runs = r["runs"]


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ms(us):
    return None if us is None else us / 1000.0


def f(x, nd=3, unit=""):
    if x is None:
        return "–"
    if isinstance(x, float) and abs(x) >= 1000:
        return f"{x:,.0f}{unit}"
    return f"{x:.{nd}f}{unit}"


def fratio(x):
    if x is None:
        return "–"
    return f"{x:.2f}" if x >= 0.1 else f"{x:.4f}"


def fint(x):
    return "–" if x is None else f"{x:,.0f}"


def mb(kb):
    return None if kb is None else kb / 1024.0


def scen_runs(scenario, target):
    return [x for x in runs if x["scenario"] == scenario and x["target"] == target]


def stats(scenario, target):
    rs = scen_runs(scenario, target)
    if not rs:
        return None
    p = lambda k: med([ms(x["latency_us"]["p"][k]) for x in rs])  # noqa: E731
    return {
        "n": len(rs),
        "rps": med([x["rps"] for x in rs]),
        "rps_min": min(x["rps"] for x in rs),
        "rps_max": max(x["rps"] for x in rs),
        "p50": p("50"), "p90": p("90"), "p99": p("99"), "p999": p("99.9"),
        "mean": med([x["latency_us"]["mean"] / 1000 for x in rs]),
        "max": med([x["latency_us"]["max"] / 1000 for x in rs]),
        "errors": sum(x["error_total"] for x in rs),
        "requests": sum(x["requests"] for x in rs),
        "cpu1k": med([x["cpu_s_per_1k"] for x in rs]),
        "rss_peak": max(x["rss_peak_kb"] for x in rs),
        "load": med([x.get("loadavg") for x in rs]),
    }


SCENARIOS = [s for s in ["c1-pinned", "c1", "c16", "c64"] if any(x["scenario"] == s for x in runs)]
RATE_SCENARIOS = sorted({x["scenario"] for x in runs if x["scenario"].startswith("rate")},
                        key=lambda s: -int(s[4:]))
S = {(s, t): stats(s, t) for s in SCENARIOS + RATE_SCENARIOS for t in ORDER}


def targets_in(s):
    return [t for t in ORDER if S.get((s, t))]


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------
PCTS = ["1", "5", "10", "20", "25", "30", "40", "50", "60", "70", "75", "80", "90", "95", "97",
        "98", "99", "99.5", "99.9", "99.99"]


def plot_latency():
    scen = SCENARIOS + RATE_SCENARIOS
    if not scen:
        return None
    cols = 3
    rows = (len(scen) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(15, 4.2 * rows), squeeze=False)
    for ax, s in zip(axes.flat, scen):
        for t in targets_in(s):
            rs = scen_runs(s, t)
            ys = [med([ms(x["latency_us"]["p"][p]) for x in rs]) for p in PCTS]
            xs = [1 / (1 - float(p) / 100) for p in PCTS]
            ax.plot(xs, ys, marker=".", label=LABEL[t], color=COLOR[t])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = [2, 10, 100, 1000, 10000]
        ax.set_xticks(ticks)
        ax.set_xticklabels(["p50", "p90", "p99", "p99.9", "p99.99"])
        ax.set_ylabel("latency, ms (log)")
        title = {"c1-pinned": "concurrency 1, pinned to one CPU", "c1": "concurrency 1, unpinned",
                 "c16": "concurrency 16", "c64": "concurrency 64 (saturation)"}.get(
            s, f"fixed {s[4:]} req/s (wrk paced)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(scen):]:
        ax.axis("off")
    fig.suptitle("Latency distribution (median over repetitions of each percentile)")
    fig.tight_layout()
    out = BENCH_DIR / "latency.png"
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out.name


def plot_throughput():
    scen = [s for s in ["c1", "c16", "c64"] if s in SCENARIOS]
    if not scen:
        return None
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ts = [t for t in ORDER if any(S.get((s, t)) for s in scen)]
    w = 0.8 / len(ts)
    for i, t in enumerate(ts):
        vals = [(S[(s, t)] or {}).get("rps") or 0 if S.get((s, t)) else 0 for s in scen]
        lo = [v - (S[(s, t)]["rps_min"] if S.get((s, t)) else 0) for s, v in zip(scen, vals)]
        hi = [(S[(s, t)]["rps_max"] if S.get((s, t)) else 0) - v for s, v in zip(scen, vals)]
        xs = [j + i * w for j in range(len(scen))]
        ax.bar(xs, vals, w, label=LABEL[t], color=COLOR[t], yerr=[lo, hi], capsize=3)
        for x, v in zip(xs, vals):
            if v:
                ax.text(x, v * 1.1, f"{v:,.0f}", ha="center", fontsize=7, rotation=90)
    ax.set_xticks([j + w * (len(ts) - 1) / 2 for j in range(len(scen))])
    ax.set_xticklabels([f"concurrency {s[1:]}" for s in scen])
    ax.set_yscale("log")
    top = max((S[(sc, t)]["rps_max"] for sc in scen for t in ts if S.get((sc, t))), default=10)
    ax.set_ylim(10, top * 8)
    ax.set_ylabel("requests/s (log; median, bars = min-max)")
    ax.set_title("Closed-loop throughput, wrk, all on the same 2 cores")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", ncol=4)
    fig.tight_layout()
    out = BENCH_DIR / "throughput.png"
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out.name


def dep_rows(target):
    rows = {}
    for d in r["deployments"]:
        if d["target"] == target:
            rows.setdefault(d["deployments"], []).append(d)
    return rows


def plot_deployments():
    if not r["deployments"]:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for t in ["modelgate", "litellm"]:
        rows = dep_rows(t)
        if not rows:
            continue
        ns = sorted(rows)
        load = [med([x["ready_s"] for x in rows[n]]) for n in ns]
        rss = [mb(med([x.get("rss_after_kb") or x.get("rss_ready_kb") for x in rows[n]])) for n in ns]
        vm = [med([x["v1_models"]["p50_ms"] for x in rows[n] if "v1_models" in x]) for n in ns]
        mi = [med([x["model_info"]["p50_ms"] for x in rows[n] if "model_info" in x]) for n in ns]
        axes[0].plot(ns, load, marker="o", color=COLOR[t], label=LABEL[t])
        axes[1].plot(ns, vm, marker="o", color=COLOR[t], label=f"{LABEL[t]} /v1/models")
        axes[1].plot(ns, mi, marker="s", ls="--", color=COLOR[t], label=f"{LABEL[t]} /model/info")
        axes[2].plot(ns, rss, marker="o", color=COLOR[t], label=LABEL[t])
    for ax, title, yl in zip(axes, ["config load (start to ready)", "listing latency p50",
                                    "RSS after the listings"], ["s", "ms", "MB"]):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("deployments")
        ax.set_ylabel(yl + " (log)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out = BENCH_DIR / "deployments.png"
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out.name


def plot_flamegraph():
    prof = r.get("profile")
    if not prof:
        return None
    folded = BENCH_DIR / prof["folded"]
    if not folded.exists():
        return None
    root = {"n": "all", "v": 0, "c": {}}
    for line in folded.read_text().splitlines():
        stack, _, cnt = line.rpartition(" ")
        if not stack:
            continue
        c = int(cnt)
        node = root
        node["v"] += c
        # Group all tokio worker threads together.
        frames = stack.split(";")
        frames[0] = "tokio-runtime-w" if frames[0].startswith("tokio-runtime") else frames[0]
        for fr in frames:
            node = node["c"].setdefault(fr, {"n": fr, "v": 0, "c": {}})
            node["v"] += c
    total = root["v"] or 1
    max_depth = 48
    rects = []

    def walk(node, x, depth):
        rects.append((x, depth, node["v"], node["n"]))
        if depth >= max_depth:
            return
        cx = x
        for ch in sorted(node["c"].values(), key=lambda n: n["n"]):
            if ch["v"] / total >= 0.002:
                walk(ch, cx, depth + 1)
            cx += ch["v"]

    walk(root, 0, 0)
    depth = max(d for _, d, _, _ in rects) + 1
    fig, ax = plt.subplots(figsize=(18, 0.22 * depth + 1))
    import zlib
    for x, d, v, name in rects:
        h = zlib.crc32(name.encode()) & 0xFFFF
        color = (0.85 + 0.15 * ((h & 0xFF) / 255), 0.35 + 0.45 * ((h >> 8) / 255), 0.2)
        ax.add_patch(plt.Rectangle((x / total, d), v / total, 0.95, color=color, lw=0))
        if v / total > 0.012:
            chars = int(v / total * 230)
            label = name if len(name) <= chars else name[: max(chars - 2, 1)] + ".."
            ax.text(x / total + 0.002, d + 0.45, label, fontsize=6, va="center", clip_on=True)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, depth)
    ax.set_yticks([])
    ax.set_xlabel("share of CPU samples in modelgate-proxy")
    ax.set_title(f"modelgate-proxy at concurrency 64: perf, {prof['samples']} samples "
                 f"(frames under 0.2 % hidden, depth cut at {max_depth})")
    fig.tight_layout()
    out = BENCH_DIR / "flamegraph.png"
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out.name


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------
def closed_loop_table(s):
    d = S.get((s, "direct"))
    ll = S.get((s, "litellm"))
    out = ["| path | req/s | ×direct req/s | p50 ms | p99 ms | p99.9 ms | added p50 ms | added p99 ms "
           "| p50 vs LiteLLM | CPU s / 1k req | peak RSS MB | errors / requests |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t in targets_in(s):
        x = S[(s, t)]
        add50 = x["p50"] - d["p50"] if d and t != "direct" else None
        add99 = x["p99"] - d["p99"] if d and t != "direct" else None
        ratio = x["rps"] / d["rps"] if d else None
        vs_ll = (ll["p50"] / x["p50"]) if ll and t != "litellm" else None
        out.append(
            f"| {LABEL[t]} | {fint(x['rps'])} | {fratio(ratio)} | {f(x['p50'])} | {f(x['p99'])} "
            f"| {f(x['p999'])} | {f(add50)} | {f(add99)} "
            f"| {('%s× faster' % f(vs_ll, 0 if vs_ll and vs_ll > 10 else 1)) if vs_ll else '–'} "
            f"| {f(x['cpu1k'], 4)} | {f(mb(x['rss_peak']), 1)} | {x['errors']} / {x['requests']:,} |")
    return "\n".join(out)


def rate_table(s):
    d = S.get((s, "direct"))
    rate = int(s[4:])
    out = ["| path | offered req/s | achieved req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | added p99 ms "
           "| CPU s / 1k req | errors |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t in targets_in(s):
        x = S[(s, t)]
        add99 = x["p99"] - d["p99"] if d and t != "direct" else None
        out.append(f"| {LABEL[t]} | {rate:,} | {fint(x['rps'])} | {f(x['p50'])} | {f(x['p90'])} "
                   f"| {f(x['p99'])} | {f(x['p999'])} | {f(add99)} | {f(x['cpu1k'], 4)} | {x['errors']} |")
    return "\n".join(out)


def stream_table(client):
    st = [x for x in (r.get("stream") or []) if x.get("client", "plain") == client]
    if not st:
        return "_not measured_"
    by = {}
    for x in st:
        by.setdefault(x["target"], []).append(x)

    def m(t, k, q):
        return med([x[k][q] for x in by.get(t, [])])

    out = ["| path | first chunk p50 ms | first chunk p99 ms | first token p50 ms | first token p99 ms "
           "| inter-chunk p50 ms | inter-chunk p99 ms | added first chunk p50 | added first token p50 "
           "| added inter-chunk p50 | added inter-chunk p99 | whole stream p50 ms | broken / streams |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t in [t for t in ORDER if t in by]:
        a1 = m(t, "ttfb_ms", "p50") - m("direct", "ttfb_ms", "p50") if t != "direct" and "direct" in by else None
        a0 = m(t, "ttft_ms", "p50") - m("direct", "ttft_ms", "p50") if t != "direct" and "direct" in by else None
        a2 = m(t, "gap_ms", "p50") - m("direct", "gap_ms", "p50") if t != "direct" and "direct" in by else None
        a3 = m(t, "gap_ms", "p99") - m("direct", "gap_ms", "p99") if t != "direct" and "direct" in by else None
        broken = sum(x["broken"] + x["non_200"] for x in by[t])
        n = sum(x["streams"] for x in by[t])
        out.append(f"| {LABEL[t]} | {f(m(t, 'ttfb_ms', 'p50'))} | {f(m(t, 'ttfb_ms', 'p99'))} "
                   f"| {f(m(t, 'ttft_ms', 'p50'))} | {f(m(t, 'ttft_ms', 'p99'))} "
                   f"| {f(m(t, 'gap_ms', 'p50'))} | {f(m(t, 'gap_ms', 'p99'))} | {f(a1)} | {f(a0)} | {f(a2)} "
                   f"| {f(a3)} | {f(m(t, 'total_ms', 'p50'), 1)} | {broken} / {n} |")
    return "\n".join(out)


def startup_table():
    out = ["| gateway | config | runs | start to ready, median | min | max |", "|---|---|---:|---:|---:|---:|"]
    for t in ["modelgate", "litellm"]:
        xs = [x["ready_s"] for x in r["startup"]
              if x["target"] == t and x["ready_s"] is not None and not x.get("pinned")]
        if xs:
            out.append(f"| {LABEL[t]} | 2 deployments | {len(xs)} | {f(med(xs) * 1000, 1)} ms "
                       f"| {f(min(xs) * 1000, 1)} ms | {f(max(xs) * 1000, 1)} ms |")
    return "\n".join(out)


def deployments_table():
    out = ["| deployments | gateway | config bytes | load (start to ready) | `/v1/models` p50 / p99 ms "
           "| `/v1/models` bytes | `/model/info` p50 / p99 ms | `/model/info` bytes | RSS ready MB "
           "| RSS after listings MB |",
           "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    ns = sorted({d["deployments"] for d in r["deployments"]})
    for n in ns:
        for t in ["modelgate", "litellm"]:
            rows = dep_rows(t).get(n)
            if not rows:
                continue
            ready = [x["ready_s"] for x in rows if x["ready_s"] is not None]
            last = [x for x in rows if "v1_models" in x]
            last = last[-1] if last else None
            if ready:
                load = f"{f(med(ready) * 1000, 1)} ms" if med(ready) < 10 else f"{f(med(ready), 1)} s"
                if len(ready) > 1:
                    load += f" (of {len(ready)})"
            else:
                load = f"not ready after {rows[0].get('timeout_s', '?')} s"
            vm = (f"{f(last['v1_models']['p50_ms'])} / {f(last['v1_models']['p99_ms'])}" if last else "–")
            mi = (f"{f(last['model_info']['p50_ms'])} / {f(last['model_info']['p99_ms'])}" if last else "–")
            out.append(
                f"| {n:,} | {LABEL[t]} | {rows[0]['config_bytes']:,} | {load} | {vm} "
                f"| {fint(last['v1_models']['bytes']) if last else '–'} | {mi} "
                f"| {fint(last['model_info']['bytes']) if last else '–'} "
                f"| {f(mb(med([x.get('rss_ready_kb') for x in rows])), 1)} "
                f"| {f(mb(last.get('rss_after_kb')) if last else mb(rows[0].get('rss_at_timeout_kb')), 1)} |")
    return "\n".join(out)


def memory_table():
    mem = r.get("memory") or {}
    out = ["| gateway | idle after start MB | peak under load MB (any scenario) | idle after all the load MB "
           "| processes / threads |", "|---|---:|---:|---:|---:|"]
    for t in ["nginx", "modelgate", "litellm"]:
        m = mem.get(t)
        if not m:
            continue
        peak = max((x["rss_peak_kb"] for x in runs if x["target"] == t and x["scenario"] != "c1-pinned"),
                   default=None)
        procs = m.get("processes", 1)
        out.append(f"| {LABEL[t]} | {f(mb(m['idle_start_kb']), 1)} | {f(mb(peak), 1)} "
                   f"| {f(mb(m.get('idle_after_kb')), 1)} | {procs} / {m.get('threads', '–')} |")
    return "\n".join(out)


def targets_table():
    rows = []

    def add(name, value, ok, note=""):
        rows.append(f"| {name} | {value} | {'met' if ok else ('**missed**' if ok is False else 'n/a')} | {note} |")

    d, m = S.get(("c1-pinned", "direct")), S.get(("c1-pinned", "modelgate"))
    if d and m:
        a50, a99 = m["p50"] - d["p50"], m["p99"] - d["p99"]
        add("added latency p50 at concurrency 1 (pinned) < 0.1 ms", f"{a50:.3f} ms", a50 < 0.1,
            f"direct {d['p50']:.3f} ms, modelgate {m['p50']:.3f} ms")
        add("added latency p99 at concurrency 1 (pinned) < 0.3 ms", f"{a99:.3f} ms", a99 < 0.3,
            f"direct {d['p99']:.3f} ms, modelgate {m['p99']:.3f} ms")
    d, m = S.get(("c1", "direct")), S.get(("c1", "modelgate"))
    if d and m:
        a50, a99 = m["p50"] - d["p50"], m["p99"] - d["p99"]
        add("(same, unpinned, for reference)", f"p50 {a50:+.3f} ms, p99 {a99:+.3f} ms", None,
            "cross-CPU wake-ups: see the method notes")
    fr = f"rate{meta.get('fast_rate', 5000)}"
    m, d = S.get((fr, "modelgate")), S.get((fr, "direct"))
    if m:
        add(f"p99 of the whole request at a fixed {int(fr[4:]):,} req/s < 1 ms", f"{m['p99']:.3f} ms",
            m["p99"] < 1.0, f"direct {d['p99']:.3f} ms with the same pacing" if d else "")
    m, ll = S.get(("c64", "modelgate")), S.get(("c64", "litellm"))
    if m:
        add("saturation throughput (concurrency 64) ≥ 15,000 req/s", f"{m['rps']:,.0f} req/s", m["rps"] >= 15000,
            f"{m['rps'] / ll['rps']:,.0f}× LiteLLM's one worker" if ll else "")
        add("CPU < 0.1 s per 1,000 requests (concurrency 64)", f"{m['cpu1k']:.4f} s", m["cpu1k"] < 0.1,
            f"LiteLLM {ll['cpu1k']:.1f} s" if ll else "")
    mem = (r.get("memory") or {}).get("modelgate")
    if mem:
        idle = mb(mem["idle_start_kb"])
        add("idle RSS < 20 MB", f"{idle:.1f} MB", idle < 20,
            f"{mb(mem.get('idle_after_kb') or 0):.1f} MB idle after all the load")
    if m:
        peak = mb(max(x["rss_peak_kb"] for x in runs if x["target"] == "modelgate" and x["scenario"] != "c1-pinned"))
        add("RSS at saturation < 60 MB", f"{peak:.1f} MB (peak, any scenario)", peak < 60)
    rows10k = dep_rows("modelgate").get(10000)
    if rows10k:
        ready = med([x["ready_s"] for x in rows10k])
        add("10,000 deployments load in < 1 s (start to ready)", f"{ready * 1000:.0f} ms" if ready else "not ready",
            ready is not None and ready < 1.0)
        last = [x for x in rows10k if "v1_models" in x]
        if last:
            v = last[-1]["v1_models"]["p50_ms"]
            add("`/v1/models` < 5 ms with 10,000 deployments", f"p50 {v:.2f} ms, p99 "
                f"{last[-1]['v1_models']['p99_ms']:.2f} ms", last[-1]["v1_models"]["p99_ms"] < 5)
    # bench/propagation.sh writes its table to propagation.md: | declared | changes | p50 | p99 | max |
    prop = []
    try:
        for line in (BENCH_DIR / "propagation.md").read_text().splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == 5 and cells[0].replace(",", "").isdigit():
                prop.append((cells[0], float(cells[3])))
    except (OSError, ValueError):
        prop = []
    if prop:
        add("`kubectl apply` until every replica serves the change, p99 < 1 s",
            ", ".join(f"{p99:.0f} ms with {n} declared" for n, p99 in prop),
            all(p99 < 1000 for _, p99 in prop), "see [Propagation](#propagation)")
    else:
        add("`kubectl apply` until every replica serves the change, p99 < 1 s", "see [Propagation](#propagation)", None)
    return "\n".join(["| target (DESIGN §8) | measured | | note |", "|---|---|---|---|"] + rows)


def headline_table():
    """One row per measure, one column per gateway, with the ratios that matter."""
    gws = [t for t in ["nginx", "modelgate", "litellm"]
           if any(x["target"] == t for x in runs)]
    rows = []

    def added(s, t, k):
        d, x = S.get((s, "direct")), S.get((s, t))
        return x[k] - d[k] if d and x else None

    def val(s, t, k):
        x = S.get((s, t))
        return x[k] if x else None

    mem = r.get("memory") or {}

    def peak(t):
        return mb(max((x["rss_peak_kb"] for x in runs if x["target"] == t and x["scenario"] != "c1-pinned"),
                      default=None) or None)

    def startup(t):
        xs = [x["ready_s"] for x in r["startup"]
              if x["target"] == t and x["ready_s"] is not None and not x.get("pinned")]
        return med(xs) * 1000 if xs else None

    measures = [
        ("added p50, concurrency 1 pinned (ms)", lambda t: added("c1-pinned", t, "p50"), 3),
        ("added p99, concurrency 1 pinned (ms)", lambda t: added("c1-pinned", t, "p99"), 3),
        ("added p50, concurrency 1 unpinned (ms)", lambda t: added("c1", t, "p50"), 3),
        ("req/s at concurrency 64", lambda t: val("c64", t, "rps"), 0),
        ("p99 at concurrency 64 (ms)", lambda t: val("c64", t, "p99"), 2),
        ("CPU s per 1,000 requests, concurrency 64", lambda t: val("c64", t, "cpu1k"), 4),
        ("idle RSS (MB)", lambda t: mb((mem.get(t) or {}).get("idle_start_kb")), 1),
        ("peak RSS under load (MB)", peak, 1),
        ("start to ready, 2 deployments (ms)", startup, 1),
    ]
    fr = f"rate{meta.get('fast_rate', 5000)}"
    if any(x["scenario"] == fr for x in runs):
        measures.insert(5, (f"p99 at a fixed {int(fr[4:]):,} req/s (ms)", lambda t: val(fr, t, "p99"), 3))
    head = "| measure | direct | " + " | ".join(LABEL[t] for t in gws) + " | modelgate vs LiteLLM |"
    rows = [head, "|---|" + "---:|" * (len(gws) + 2)]
    for name, fn, nd in measures:
        vals = {t: fn(t) for t in gws}
        dv = None
        if "added" not in name:
            dv = {"req/s at concurrency 64": val("c64", "direct", "rps"),
                  "p99 at concurrency 64 (ms)": val("c64", "direct", "p99"),
                  "CPU s per 1,000 requests, concurrency 64": val("c64", "direct", "cpu1k")}.get(name)
            if name.startswith("p99 at a fixed"):
                dv = val(fr, "direct", "p99")
        m, ll = vals.get("modelgate"), vals.get("litellm")
        ratio = "–"
        if m and ll and m > 0 and ll > 0:
            q = (m / ll) if name.startswith("req/s") else (ll / m)
            ratio = (f"{q:,.0f}× more" if name.startswith("req/s") else f"{q:,.0f}× less") if q >= 2 \
                else f"{q:.2f}×"
        cells = [("–" if vals[t] is None else (f"{vals[t]:,.0f}" if nd == 0 else f"{vals[t]:.{nd}f}"))
                 for t in gws]
        dcell = "–" if dv is None else (f"{dv:,.0f}" if nd == 0 else f"{dv:.{nd}f}")
        rows.append(f"| {name} | {dcell} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(rows)


def extra_results():
    """Other benchmark scripts' JSON in docs/bench (bench/reloads.py, bench/redis_overhead.py, ...),
    shown as they are: their command, scalar fields, and a table of their `rows`."""
    out = []
    for p in sorted(BENCH_DIR.glob("*.json")):
        if p.resolve() == RESULTS.resolve():
            continue
        try:
            data = json.loads(p.read_text())
        except ValueError:
            continue
        out.append(f"### `{p.name}`\n")
        if not isinstance(data, dict):
            out.append(f"```json\n{json.dumps(data, indent=1)[:4000]}\n```\n")
            continue
        if data.get("command"):
            out.append(f"`{data['command']}`\n")
        scalars = {k: v for k, v in data.items()
                   if k != "command" and not isinstance(v, (list, dict))}
        if scalars:
            out.append(", ".join(f"{k}: {v}" for k, v in scalars.items()) + "\n")
        for k, v in data.items():
            if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                cols = list(dict.fromkeys(c for x in v for c in x))
                out.append("| " + " | ".join(cols) + " |")
                out.append("|" + "---|" * len(cols))
                for x in v:
                    out.append("| " + " | ".join(str(x.get(c, "")) for c in cols) + " |")
                out.append("")
            elif isinstance(v, (list, dict)):
                out.append(f"`{k}`:\n```json\n{json.dumps(v, indent=1)[:4000]}\n```\n")
    return "\n".join(out)


def include(name, placeholder):
    p = BENCH_DIR / name
    return p.read_text().strip() if p.exists() else placeholder


def main():
    lat = plot_latency()
    thr = plot_throughput()
    dep = plot_deployments()
    fg = plot_flamegraph()
    mode = "quick (smoke) run" if meta.get("quick") else "full run"
    md = []
    md.append("# Benchmarks\n")
    md.append("<!-- Generated by bench/report.py from docs/bench/results.json: edit the generator, "
              "docs/bench/findings.md or docs/bench/propagation.md, not this file. -->\n")
    md.append(
        "modelgate next to a direct call to the upstream, nginx as a plain reverse proxy (the least a proxy "
        "hop costs on this machine) and the LiteLLM proxy, measured on the same machine in the same run, "
        "interleaved. Absolute numbers move from run to run; the ratios to the direct call measured in the "
        "same run are what holds.\n")
    md.append("```sh\nbash bench/run.sh                # full run (about 19 min once the machine is idle)\n"
              "BENCH_QUICK=1 bash bench/run.sh  # smoke run, 2 s per measurement, report in ~/.cache/modelgate/bench-quick/\n"
              "BENCH_REV=HEAD bash bench/run.sh # a clean snapshot of a commit instead of the work tree\n```\n"
              "`bench/README.md` lists the knobs.\n")
    md.append(f"This report: **{mode}**, {meta['date']}, {meta['reps']} interleaved repetitions of "
              f"{meta['duration_s']} s per measurement, took {meta.get('total_s', 0) / 60:.0f} min. "
              f"Load average at the start `{meta['loadavg_start']}`, at the end `{meta.get('loadavg_end', '?')}`"
              + (f"; {meta['waited_for_idle']}" if meta.get("waited_for_idle") else "") + ".\n")
    md.append("| machine and versions | |\n|---|---|")
    md.append(f"| CPU | {meta['cpu']}, {meta['cores']} cores (shared by the load generator, the upstream and the gateway) |")
    md.append(f"| memory, kernel | {meta['mem_gb']} GB, Linux {meta['kernel']} |")
    build = meta.get("modelgate_build", "?")
    build = (f"commit `{build[:12]}` plus the uncommitted work tree" if build.endswith("+worktree")
             else f"commit `{build[:12]}`")
    md.append(f"| modelgate | {meta['modelgate']}, {build}, release profile (thin LTO), {meta['rustc']} |")
    md.append(f"| LiteLLM | `litellm[proxy]=={meta['litellm']}`, Python {meta['python']}, `--num_workers 1`, no database |")
    md.append(f"| nginx | {meta.get('nginx') or 'not measured'} (Debian), `proxy_pass` to an upstream with `keepalive 256` |")
    md.append(f"| load generator | {meta['wrk']} (Debian) with `bench/wrk/bench.lua` |")
    md.append("| upstream | `mock-upstream` (tests/mock-upstream), instant replies, `--no-record` |\n")

    md.append("## Headline\n")
    md.append("Medians over the interleaved repetitions; \"added\" is the gateway's median minus the direct "
              "call's in the same scenario. The details, and the ratios to the direct call, are in the "
              "sections below.\n")
    md.append(headline_table() + "\n")
    md.append("## Against the targets\n")
    md.append(targets_table() + "\n")

    for s, title, note in [
        ("c1-pinned", "Concurrency 1, pinned to one CPU",
         f"`wrk -t1 -c1`; the load generator, the mock (1 thread), modelgate (`--worker-threads 1`), "
         f"LiteLLM and nginx (1 worker) all on CPU {meta.get('pin_cpu', 1)}. This is the figure for the added-latency targets."),
        ("c1", "Concurrency 1, unpinned", "`wrk -t1 -c1`; nothing pinned (cross-CPU wake-ups show in the tail)."),
        ("c16", "Concurrency 16", "`wrk -t2 -c16`."),
        ("c64", "Concurrency 64: saturation", "`wrk -t2 -c64`; requests/s here is the saturation figure."),
    ]:
        if s in SCENARIOS:
            md.append(f"## {title}\n\n{note} Medians over {S[(s, 'direct')]['n'] if S.get((s, 'direct')) else '?'} "
                      "interleaved runs; \"added\" is the median minus the direct call's median.\n")
            md.append(closed_loop_table(s) + "\n")
    if thr:
        md.append(f"![throughput]({REL / thr})\n")

    md.append("## Fixed request rates\n")
    md.append("`wrk` with a Lua `delay()` schedule (Debian has no wrk2): each thread hands out send slots "
              "evenly spaced in time, but wrk's timers have 1 ms steps, so requests leave in small bursts, "
              "which raises the direct call's own tail as well. Latency is measured from send to the end "
              "of the response.\n")
    for s in RATE_SCENARIOS:
        rate = int(s[4:])
        if rate == meta.get("fast_rate"):
            md.append(f"### {rate:,} req/s (`-t2 -c32`)\n\nLiteLLM cannot serve this rate "
                      "(one worker saturates at well under 100 req/s), so it is measured at its own rate below.\n")
        else:
            md.append(f"### {rate:,} req/s (`-t1 -c8`): a rate one LiteLLM worker sustains\n")
        md.append(rate_table(s) + "\n")
    if lat:
        md.append(f"![latency distributions]({REL / lat})\n")

    md.append("## Streaming\n")
    md.append(f"The streaming upstream (`bench/sse_upstream.py`, which sets `TCP_NODELAY` like real "
              f"providers do) sends a role chunk at once, then {meta['stream_chunks']} content chunks "
              f"{meta['stream_delay_ms']} ms apart, a finish chunk and `[DONE]`. A Python client "
              "(`http.client`, one keep-alive connection, sequential streams) times the first SSE event "
              "(first chunk), the first content token (`tok0`), and the gaps between consecutive content "
              "chunks. Medians over the repetitions of each run's p50/p99. \"Broken\" counts streams "
              "without `[DONE]` or with missing tokens.\n")
    md.append("### A plain client (default socket options, as any SDK)\n")
    md.append(stream_table("plain") + "\n")
    md.append("### A client that acknowledges every segment at once (`TCP_QUICKACK`)\n")
    md.append("This takes the client's delayed ACKs out of the picture, so what is left is the gateway's "
              "own work per chunk.\n")
    md.append(stream_table("quickack") + "\n")

    md.append("## Memory, CPU\n")
    md.append("RSS is the sum over the gateway's process tree (`/proc/PID/statm`), sampled every 100 ms "
              "during each run. CPU is utime+stime of the tree from `/proc/PID/stat` before and after each "
              "run (the pauses between runs left out), divided by the requests served; the CPU column of "
              "the tables above is per gateway, without the mock.\n")
    md.append(memory_table() + "\n")
    mg_mem = (r.get("memory") or {}).get("modelgate") or {}
    if mg_mem.get("timeline"):
        md.append("modelgate RSS after each scenario (MB): "
                  + ", ".join(f"{x['after']} {mb(x['kb']):.1f}" for x in mg_mem["timeline"]) + ".\n")

    md.append("## Start-up\n")
    md.append("Time from spawning the process to the first 200 from `/health/readiness` (polled every "
              "5 ms for modelgate, 50 ms for LiteLLM).\n")
    md.append(startup_table() + "\n")

    md.append("## Many deployments\n")
    md.append("Configs with N deployments, each its own model name, all pointing at the mock. Load time is "
              "start to ready (so it includes start-up); `/v1/models` and `/model/info` are timed "
              "sequentially on one keep-alive connection (up to 200 requests, or a few seconds, whichever "
              "ends first). modelgate: median of 3 starts; LiteLLM: one start"
              + (" (quick runs skip LiteLLM above 100 deployments)" if meta.get("quick") else "") + ".\n")
    md.append(deployments_table() + "\n")
    if dep:
        md.append(f"![deployments]({REL / dep})\n")

    md.append("## Propagation\n")
    md.append(include("propagation.md",
                      "See propagation: the cluster harness measures the time from `kubectl apply` to every "
                      "replica's `/v1/models` (1 and 2,000 resources) and failed requests during 60 changes "
                      "at steady load. _Placeholder: figures to be filled in from the cluster tests "
                      "(write them to `docs/bench/propagation.md`; this report includes that file)._") + "\n")

    extras = extra_results()
    if extras:
        md.append("## Other measurements\n")
        md.append("Results of the other scripts in `bench/` found next to results.json (each script's "
                  "docstring says what it measures and how).\n")
        md.append(extras)
    md.append("## Profile\n")
    prof = r.get("profile")
    if prof:
        md.append(f"`perf record -F 499 --call-graph dwarf` on modelgate at concurrency 64 for {prof['duration']} s "
                  f"({prof['rps_under_perf']:,.0f} req/s under perf). Flat profile: "
                  f"[`bench/{prof['flat']}`]({REL / prof['flat']}); folded stacks: "
                  f"[`bench/{prof['folded']}`]({REL / prof['folded']}).\n")
        if prof.get("categories"):
            md.append("Where modelgate's CPU goes (inclusive share of all samples; rows overlap):\n")
            md.append("| share | what |\n|---:|---|")
            for c in prof["categories"]:
                md.append(f"| {100 * c['share']:.1f} % | {c['what']} |")
            md.append("")
        if fg:
            md.append(f"![flame graph]({REL / fg})\n")
    else:
        md.append("_not profiled in this run_\n")
    md.append(include("findings.md", "") + "\n")

    md.append("## Method, and what to keep in mind\n")
    md.append("""- Everything runs on the same 2 cores: the load generator, the upstream and the gateway compete for them, so saturation figures are those of the whole machine, not of the gateway alone.
- Runs are interleaved: every repetition rotates the order of the paths (D M L N, M L N D, ...), and each scenario starts with a 1 s warm-up of every path. Tables quote medians of the repetitions.
- Concurrency 1 is measured pinned (everything on one CPU, no cross-CPU wake-ups) and unpinned; unpinned tails swing from run to run.
- CPU per 1,000 requests at low concurrency is dominated by idle wake-ups and is only comparable within a row of the same scenario.
- The fixed-rate runs are open-loop only within wrk's pacing: a late slot is sent at once, but the wait for a free connection is not counted (coordinated omission), so the tails are a lower bound.
- LiteLLM needs a master key; the same config (with `general_settings.master_key` and `background_health_checks: false`) is served by all gateways, and every request carries the key. LiteLLM runs with `LITELLM_LOCAL_MODEL_COST_MAP=True`.
- Raw results: [`bench/results.json`](bench/results.json); server logs of the last run: `~/.cache/modelgate/bench-tmp/`.
""")
    if r.get("failures"):
        md.append("## Failures in this run\n")
        for x in r["failures"]:
            md.append(f"- phase `{x['phase']}`: `{x['error']}`")
        md.append("")
    logs = r.get("logs") or {}
    if logs:
        md.append("## Server logs during the load\n")
        for t, l in logs.items():
            md.append(f"- {LABEL.get(t, t)}: {l.get('lines', 0)} lines, {l.get('error_lines', 0)} with errors, "
                      f"{l.get('warn_lines', 0)} warnings")
        md.append("")
    DOC.write_text("\n".join(md))
    print(f"wrote {DOC}", file=sys.stderr)


if __name__ == "__main__":
    main()
