#!/usr/bin/env python3
"""Turns the JSON lines of one bench/compare.sh run into
results/<stamp>.json (all figures plus the machine), a Markdown table
(<stamp>.md) and an SVG chart (<stamp>.svg): throughput bars and the latency
CDF at the fixed rate. Also copies the table and chart to latest.md and
latest.svg, which docs/performance.md embeds. Standard library only."""

import json
import os
import platform
import shutil
import sys
from datetime import datetime, timezone

COLORS = {
    "enlace": "#1b7f3b",
    "nats-always": "#1f5fbf",
    "nats-default": "#7fa8e6",
    "nostr": "#b5462b",
    "mosquitto": "#888888",
}
DURABILITY = {
    "enlace": "fsync (redb commit) before every Stored and every ack; group commit",
    "nats-always": "JetStream `sync_interval: always`: fsync per write",
    "nats-default": "JetStream default: fsync every 2 minutes",
    "nostr": "SQLite WAL, `synchronous=NORMAL` (its built-in setting): no fsync per event",
}


def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
            mem = f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory": mem,
        "kernel": platform.release(),
    }


def fmt(v, digits=0):
    if v is None:
        return "–"
    if isinstance(v, float) and digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def get(runs, system, mode, key, sub=None):
    r = runs.get((system, mode))
    if not r or "error" in r:
        return None
    v = r.get(key)
    if sub is not None and isinstance(v, dict):
        v = v.get(sub)
    return v


def table(runs, systems):
    head = (
        "| system | durability | throughput (msg/s) | server CPU µs/msg | "
        "p50 / p90 / p99 / p99.9 at fixed rate (ms) | peak RSS (MiB) | "
        "RSS per idle connection (KiB) | backlog: deposit / drain (msg/s) | "
        "disk per stored message (bytes) | load avg (1 min) |"
    )
    lines = [head, "|" + "---|" * 10]
    for s in systems:
        lat = [get(runs, s, "rate", "latency_us", q) for q in ("p50", "p90", "p99", "p999")]
        lat_s = " / ".join("–" if v is None else f"{v / 1000:.2f}" for v in lat)
        peaks = [get(runs, s, m, "peak_rss_kib") for m in ("throughput", "rate", "idle", "backlog")]
        peaks = [p for p in peaks if p is not None]
        peak = f"{max(peaks) / 1024:.0f}" if peaks else "–"
        idle = get(runs, s, "idle", "rss_per_idle_connection_bytes")
        loads = [
            (runs.get((s, m)) or {}).get("load_average", "").split(" ")[0]
            for m in ("throughput", "rate", "idle", "backlog")
        ]
        errors = [m for m in ("throughput", "rate", "idle", "backlog") if "error" in (runs.get((s, m)) or {})]
        name = s + (f" (failed: {', '.join(errors)})" if errors else "")
        lines.append(
            "| {} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} |".format(
                name,
                DURABILITY.get(s, ""),
                fmt(get(runs, s, "throughput", "delivered_per_sec")),
                fmt(get(runs, s, "throughput", "server_cpu_us_per_message")),
                lat_s,
                peak,
                "–" if idle is None else f"{idle / 1024:.1f}",
                fmt(get(runs, s, "backlog", "deposited_per_sec")),
                fmt(get(runs, s, "backlog", "drained_per_sec")),
                fmt(get(runs, s, "backlog", "disk_bytes_per_message")),
                ", ".join(l for l in loads if l) or "–",
            )
        )
    return "\n".join(lines)


def targets(runs):
    """The issue-8 targets, checked against this run's figures."""
    e = get(runs, "enlace", "throughput", "delivered_per_sec")
    out = []

    def ratio(peer, want, label):
        p = get(runs, peer, "throughput", "delivered_per_sec")
        if e is None or p is None:
            out.append(f"- {label}: not measured")
            return
        r = e / p
        out.append(f"- {label}: {r:.2f}x ({'met' if r >= want else 'MISSED'}; target {want}x)")

    ratio("nostr", 10, "throughput vs nostr-rs-relay")
    ratio("nats-always", 10, "throughput vs NATS fsync-always")
    ratio("nats-default", 0.8, "throughput vs NATS periodic fsync")
    p99 = get(runs, "enlace", "rate", "latency_us", "p99")
    if p99 is None:
        out.append("- p99 at the fixed rate: not measured")
    else:
        out.append(f"- p99 at the fixed rate: {p99 / 1000:.2f} ms ({'met' if p99 < 5000 else 'MISSED'}; target < 5 ms)")
    idle = get(runs, "enlace", "idle", "rss_per_idle_connection_bytes")
    if idle is None:
        out.append("- RSS per idle connection: not measured")
    else:
        out.append(
            f"- RSS per idle connection: {idle / 1024:.1f} KiB ({'met' if idle <= 12 * 1024 else 'MISSED'}; target ≤ 12 KiB)"
        )
    return "\n".join(out)


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def svg(runs, systems, title):
    w, h = 980, 420
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="14">{esc(title)}</text>',
    ]
    # Left: throughput bars (messages delivered per second, throughput mode).
    x0, y0, pw, ph = 70, 50, 360, 300
    vals = [(s, get(runs, s, "throughput", "delivered_per_sec") or 0.0) for s in systems]
    top = max([v for _, v in vals] + [1.0]) * 1.1
    parts.append(f'<text x="{x0 + pw / 2}" y="{y0 - 10}" text-anchor="middle">Throughput (messages delivered/s, 50 publishers)</text>')
    parts.append(f'<line x1="{x0}" y1="{y0 + ph}" x2="{x0 + pw}" y2="{y0 + ph}" stroke="black"/>')
    parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y0 + ph}" stroke="black"/>')
    for i in range(5):
        v = top * i / 4
        y = y0 + ph - ph * i / 4
        parts.append(f'<line x1="{x0 - 4}" y1="{y}" x2="{x0 + pw}" y2="{y}" stroke="#ddd"/>')
        parts.append(f'<text x="{x0 - 6}" y="{y + 4}" text-anchor="end">{v:,.0f}</text>')
    bw = pw / max(len(vals), 1)
    for i, (s, v) in enumerate(vals):
        bh = ph * v / top
        x = x0 + i * bw + bw * 0.15
        parts.append(f'<rect x="{x}" y="{y0 + ph - bh}" width="{bw * 0.7}" height="{bh}" fill="{COLORS.get(s, "#444")}"/>')
        parts.append(f'<text x="{x + bw * 0.35}" y="{y0 + ph - bh - 4}" text-anchor="middle">{v:,.0f}</text>')
        parts.append(f'<text x="{x + bw * 0.35}" y="{y0 + ph + 16}" text-anchor="middle">{esc(s)}</text>')
    # Right: latency CDF at the fixed rate, log x axis (ms).
    x0, pw = 530, 400
    curves = [(s, get(runs, s, "rate", "latency_cdf") or []) for s in systems]
    pts = [p for _, c in curves for p in c if p[0] > 0]
    import math

    lo = 10 ** math.floor(math.log10(min([p[0] for p in pts] + [100.0]) / 1000))
    hi = 10 ** math.ceil(math.log10(max([p[0] for p in pts] + [1000.0]) / 1000))
    lo = min(lo, hi / 10)

    def xpos(ms):
        return x0 + pw * (math.log10(max(ms, lo)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))

    rate = next((get(runs, s, "rate", "rate") for s in systems if get(runs, s, "rate", "rate")), None)
    parts.append(
        f'<text x="{x0 + pw / 2}" y="{y0 - 10}" text-anchor="middle">Publish→delivery latency CDF at {rate or "?"} msg/s</text>'
    )
    parts.append(f'<line x1="{x0}" y1="{y0 + ph}" x2="{x0 + pw}" y2="{y0 + ph}" stroke="black"/>')
    parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y0 + ph}" stroke="black"/>')
    d = lo
    while d <= hi * 1.0001:
        x = xpos(d)
        parts.append(f'<line x1="{x}" y1="{y0}" x2="{x}" y2="{y0 + ph + 4}" stroke="#ddd"/>')
        parts.append(f'<text x="{x}" y="{y0 + ph + 16}" text-anchor="middle">{d:g} ms</text>')
        d *= 10
    for f in (0.5, 0.9, 0.99, 1.0):
        y = y0 + ph - ph * f
        parts.append(f'<line x1="{x0}" y1="{y}" x2="{x0 + pw}" y2="{y}" stroke="#ddd"/>')
        parts.append(f'<text x="{x0 - 6}" y="{y + 4}" text-anchor="end">{f:g}</text>')
    for i, (s, c) in enumerate(curves):
        if not c:
            continue
        path = " ".join(
            f"{'M' if j == 0 else 'L'}{xpos(v / 1000):.1f},{y0 + ph - ph * q:.1f}" for j, (v, q) in enumerate(c)
        )
        col = COLORS.get(s, "#444")
        parts.append(f'<path d="{path}" fill="none" stroke="{col}" stroke-width="2"/>')
        parts.append(f'<rect x="{x0 + 10}" y="{y0 + 10 + i * 16}" width="12" height="3" fill="{col}"/>')
        parts.append(f'<text x="{x0 + 26}" y="{y0 + 15 + i * 16}">{esc(s)}</text>')
    parts.append(f'<text x="{w / 2}" y="{h - 12}" text-anchor="middle" fill="#555">{esc(footer(runs))}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def footer(runs):
    loads = sorted({r.get("load_average", "").split(" ")[0] for r in runs.values() if r.get("load_average")})
    return "load average (1 min) during the runs: " + (", ".join(loads) if loads else "?")


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: report.py RESULTS.jsonl [--quick 0|1]")
    raw = sys.argv[1]
    quick = "--quick" in sys.argv and sys.argv[sys.argv.index("--quick") + 1] == "1"
    runs = {}
    order = []
    with open(raw) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            key = (r.get("system"), r.get("mode"))
            runs[key] = r
            if r.get("system") not in order:
                order.append(r.get("system"))
    base = raw[: -len(".jsonl")] if raw.endswith(".jsonl") else raw
    stamp = os.path.basename(base)
    info = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "quick": quick,
        "durability": {s: DURABILITY.get(s, "") for s in order},
        "runs": list(runs.values()),
    }
    with open(base + ".json", "w") as f:
        json.dump(info, f, indent=1)
    m = info["machine"]
    md = [
        f"Run {stamp}{' (--quick: smaller counts)' if quick else ''}: {m['cpu']}, {m['cores']} cores, "
        f"{m['memory']}, Linux {m['kernel']}; server on CPU 0, load generator on CPU 1.",
        "",
        table(runs, order),
        "",
        "Targets (issue 8), from this run:",
        "",
        targets(runs),
        "",
    ]
    with open(base + ".md", "w") as f:
        f.write("\n".join(md))
    with open(base + ".svg", "w") as f:
        f.write(svg(runs, order, f"Enlace relay and peers, {stamp}, one machine ({m['cores']} cores)"))
    d = os.path.dirname(base)
    shutil.copyfile(base + ".md", os.path.join(d, "latest.md"))
    shutil.copyfile(base + ".svg", os.path.join(d, "latest.svg"))
    print("\n".join(md))


if __name__ == "__main__":
    main()
