#!/usr/bin/env python3
"""Writes docs/benchmarks.md and its SVG plots from the results of scripts/bench.sh (`make bench`).

Reads <results>/criterion/**/new/{benchmark,estimates}.json (criterion), <results>/sim/*.json (roster-loadgen
reports, plus split-replay.json from `roster replay`) and <results>/run.json. Standard library only, so a fresh
machine needs nothing beyond python3; the plots are hand-written SVG.

    python3 scripts/bench_report.py --results target/bench-results --doc docs/benchmarks.md
"""

import argparse
import datetime
import glob
import html
import json
import os
import platform
import subprocess

# --- inputs ------------------------------------------------------------------------------------------------


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def criterion_results(root):
    """[(group, function, mean_ns, low_ns, high_ns, median_ns)] sorted by group then function."""
    out = []
    for bench in glob.glob(os.path.join(root, "**", "new", "benchmark.json"), recursive=True):
        meta = load(bench)
        est = load(os.path.join(os.path.dirname(bench), "estimates.json"))
        if not meta or not est:
            continue
        mean = est["mean"]
        out.append((
            meta.get("group_id", "?"),
            meta.get("function_id") or meta.get("value_str") or "",
            mean["point_estimate"],
            mean["confidence_interval"]["lower_bound"],
            mean["confidence_interval"]["upper_bound"],
            est.get("median", mean)["point_estimate"],
        ))
    return sorted(out)


def phase(report, name):
    for p in report.get("phases", []):
        if p["name"] == name:
            return p
    return None


def sweep(sim, scenario, phase_name, kind):
    """Concurrency sweep rows of one scenario, by concurrency."""
    rows = []
    for name, r in sim.items():
        if not name.startswith(scenario + "-c"):
            continue
        p = phase(r, phase_name)
        if not p:
            continue
        k = p["kinds"].get(kind, {})
        rows.append({
            "c": r["config"]["concurrency"],
            "rps": p["rps"],
            "requests": p["requests"],
            "errors": p["errors"],
            "p50": k.get("p50_ms"),
            "p99": k.get("p99_ms"),
            "max": k.get("max_ms"),
            "server_cores": p.get("server_cores"),
            "loadgen_cores": p.get("loadgen_cores"),
            "other_cores": p.get("other_cores"),
            "rss": r.get("resources", {}).get("server_peak_rss_mb"),
            "correct": r.get("correctness", {}).get("passed"),
        })
    return sorted(rows, key=lambda x: x["c"])


# --- formatting --------------------------------------------------------------------------------------------


def num(x, digits=0):
    if x is None:
        return "n/a"
    if digits == 0:
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


def dur_ns(ns):
    if ns < 1e3:
        return f"{ns:.0f} ns"
    if ns < 1e6:
        return f"{ns / 1e3:.2f} µs"
    if ns < 1e9:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e9:.2f} s"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


# --- SVG line charts ---------------------------------------------------------------------------------------

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]


def nice_max(v):
    if v <= 0:
        return 1.0
    mag = 10 ** (len(str(int(v))) - 1) if v >= 1 else 0.1
    for m in (1, 2, 2.5, 5, 10):
        if m * mag >= v:
            return m * mag
    return 10 * mag


def line_chart(path, title, xlabel, ylabel, xs, series, dashed=()):
    """Evenly spaced categorical x values `xs`; `series` is [(label, [y or None per x])]."""
    w, h, left, right, top, bottom = 720, 400, 80, 190, 40, 60
    pw, ph = w - left - right, h - top - bottom
    ys = [y for _, vals in series for y in vals if y is not None]
    ymax = nice_max(max(ys) if ys else 1.0)
    n = len(xs)

    def px(i):
        return left + (pw * (i + 0.5) / n)

    def py(y):
        return top + ph - ph * (y / ymax)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<text x="{left + pw / 2}" y="22" text-anchor="middle" font-size="15">{html.escape(title)}</text>',
    ]
    for k in range(6):
        y = ymax * k / 5
        out.append(f'<line x1="{left}" y1="{py(y):.1f}" x2="{left + pw}" y2="{py(y):.1f}" stroke="#ddd"/>')
        label = f"{y:,.0f}" if ymax >= 10 else f"{y:.2f}"
        out.append(f'<text x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{label}</text>')
    out.append(f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="black"/>')
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="black"/>')
    for i, x in enumerate(xs):
        out.append(f'<text x="{px(i):.1f}" y="{top + ph + 18}" text-anchor="middle">{html.escape(str(x))}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{h - 15}" text-anchor="middle">{html.escape(xlabel)}</text>')
    out.append(
        f'<text transform="translate(18,{top + ph / 2}) rotate(-90)" text-anchor="middle">{html.escape(ylabel)}</text>'
    )
    for s, (label, vals) in enumerate(series):
        color = COLORS[s % len(COLORS)]
        dash = ' stroke-dasharray="6,4"' if label in dashed else ""
        pts = [(px(i), py(v)) for i, v in enumerate(vals) if v is not None]
        if len(pts) > 1:
            d = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
            out.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        for x, y in pts:
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}"/>')
        ly = top + 10 + 20 * s
        out.append(
            f'<line x1="{left + pw + 15}" y1="{ly}" x2="{left + pw + 40}" y2="{ly}" stroke="{color}" '
            f'stroke-width="2"{dash}/>'
        )
        out.append(f'<text x="{left + pw + 46}" y="{ly + 4}">{html.escape(label)}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


# --- machine -----------------------------------------------------------------------------------------------


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


def machine():
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    commit = sh("git", "rev-parse", "--short=12", "HEAD") or "unknown"
    if sh("git", "status", "--porcelain", "--untracked-files=no"):
        commit += " (with uncommitted changes)"
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "mem_gib": mem,
        "kernel": platform.release(),
        "rustc": sh("rustc", "--version"),
        "commit": commit,
        "branch": sh("git", "rev-parse", "--abbrev-ref", "HEAD"),
    }


# --- the report --------------------------------------------------------------------------------------------


def verdict(measured, target, higher_is_better):
    if measured is None:
        return "not measured"
    ok = measured >= target if higher_is_better else measured < target
    return "**pass**" if ok else "**FAIL**"


def best(rows, key="rps"):
    rows = [r for r in rows if r.get(key) is not None]
    return max(rows, key=lambda r: r[key]) if rows else None


def at(rows, c):
    for r in rows:
        if r["c"] == c:
            return r
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", required=True)
    ap.add_argument("--doc", default="docs/benchmarks.md")
    args = ap.parse_args()

    doc_dir = os.path.dirname(os.path.abspath(args.doc))
    svg_dir = os.path.join(doc_dir, "benchmarks")
    os.makedirs(svg_dir, exist_ok=True)
    run = load(os.path.join(args.results, "run.json")) or {}
    sim = {}
    for p in sorted(glob.glob(os.path.join(args.results, "sim", "*.json"))):
        r = load(p)
        if r is not None:
            sim[os.path.basename(p)[:-5]] = r
    micro = criterion_results(os.path.join(args.results, "criterion"))
    m = machine()

    creates = sweep(sim, "creates", "creates", "user-create")
    lookups = sweep(sim, "lookups", "lookups", "user-lookup")
    member = (sim.get("member-add", {}).get("member_add") or [None])[0]
    relic = (sim.get("relicense", {}).get("relicense") or [None])[0]
    full = sim.get("full")
    split = sim.get("split-creates-c32")
    replay = sim.get("split-replay")
    seeded = sim.get("seeded-replay")

    started = run.get("started_unix")
    when = (
        datetime.datetime.fromtimestamp(started, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        if started
        else "unknown"
    )
    minutes = (run["finished_unix"] - started) / 60 if started and run.get("finished_unix") else None

    md = []
    md.append("# Benchmarks\n")
    md.append(
        "Generated by `make bench` (`scripts/bench.sh`, then `scripts/bench_report.py`); do not edit by hand. "
        "Every number is as measured in one run on the machine below, with the load generator on the same "
        "machine as Roster. **The machine is shared and noisy**: other builds ran during the run, so the "
        "'other cores' columns show how much CPU the rest of the machine took; figures vary from run to run "
        "by tens of percent. What limits each figure, with the profiles behind it, is in "
        "[performance.md](performance.md).\n"
    )
    md.append(table(["", ""], [
        ["date", when],
        ["commit", f"`{m['commit']}` ({m['branch']})"],
        ["CPU", f"{m['cpus']} × {m['cpu']}"],
        ["memory", f"{num(m['mem_gib'], 1)} GiB"],
        ["kernel / rustc", f"{m['kernel']} / {m['rustc']}"],
        ["scale", f"`BENCH_SCALE={run.get('scale', '?')}`, {run.get('secs_per_point', '?')} s per sweep point"
         + (f", whole run {minutes:.0f} min" if minutes else "")],
        ["Kafka + Postgres", "measured" if run.get("kafka") else "not running: not measured (`make services`)"],
    ]))

    # Targets.
    rows = []
    b = best(creates)
    rows.append(["embedded: creates/s end to end (best over the sweep)", "≥ 5,000/s",
                 f"{num(b['rps'])}/s at c={b['c']} (p99 {num(b['p99'], 1)} ms)" if b else "n/a",
                 verdict(b and b["rps"], 5000, True)])
    b = best(lookups)
    rows.append(["embedded: `userName eq` lookups/s (best over the sweep)", "≥ 15,000/s",
                 f"{num(b['rps'])}/s at c={b['c']} (p99 {num(b['p99'], 1)} ms)" if b else "n/a",
                 verdict(b and b["rps"], 15000, True)])
    for label, rs in (("creates", creates), ("lookups", lookups)):
        r = at(rs, 32)
        rows.append([f"embedded: p99 of {label} at concurrency 32", "< 50 ms",
                     f"{num(r['p99'], 1)} ms" if r else "n/a", verdict(r and r["p99"], 50, False)])
    sp = phase(split, "creates") if split else None
    rows.append(["Kafka + Postgres, separate processes: writes/s (creates, c=32)", "≥ 3,000/s",
                 f"{num(sp['rps'])}/s" if sp else "not measured", verdict(sp and sp["rps"], 3000, True)])
    if seeded and seeded.get("secs"):
        rate = seeded["events"] / seeded["secs"]
        exact = seeded["events"] >= 1_000_000
        label = ("replay of 1M events (an Entra-shaped log from `roster-logseed`, Kafka into Postgres)" if exact else
                 f"replay of 1M events (projected linearly from {num(seeded['events'])} seeded events)")
        secs = seeded["secs"] * (1e6 / seeded["events"])
        check = "read model as the log says" if seeded["actual"] == seeded["expected"] else "**read model WRONG**"
        rows.append([label, "< 60 s", f"{num(secs, 1)} s ({num(rate)} events/s; {check})",
                     verdict(secs, 60, False) if seeded["actual"] == seeded["expected"] else "**FAIL**"])
    elif replay and replay.get("secs"):
        rate = replay["events"] / replay["secs"]
        proj = 1e6 / rate if rate else None
        rows.append(["replay of 1M events (projected linearly from the replay of the run's topic; a small topic "
                     "overstates the per-event share of start-up costs)", "< 60 s",
                     f"{num(proj, 1)} s ({num(replay['events'])} events at {num(rate)}/s)",
                     verdict(proj, 60, False)])
    else:
        rows.append(["replay of 1M events", "< 60 s", "not measured", "not measured"])
    if member and len(member["points"]) > 1:
        first, last = member["points"][0], member["points"][-1]
        rows.append([f"member add to a {num(last['group_size'])}-member group vs an empty group (p50)", "≤ 2×",
                     f"{last['p50_vs_empty']:.2f}× ({num(last['p50_ms'], 2)} vs "
                     f"{num(first['p50_ms'], 2)} ms)", verdict(last["p50_vs_empty"], 2.0001, False)])
        rows.append([f"member add to a {num(last['group_size'])}-member group vs an empty group (p99)", "≤ 2×",
                     f"{last['p99_vs_empty']:.2f}× ({num(last['p99_ms'], 2)} vs "
                     f"{num(first['p99_ms'], 2)} ms)", verdict(last["p99_vs_empty"], 2.0001, False)])
    else:
        rows.append(["member add to a 100,000-member group vs an empty group", "≤ 2×", "n/a", "not measured"])
    step = None
    if relic:
        step = next((s for s in relic["steps"] if s["name"] == "policy-change"), None)
    if step:
        d = step["decided_secs"]
        rows.append([f"policy change re-licensing {num(step['users'])} users", "< 10 s",
                     f"{num(d, 2)} s" if d is not None else "not done within the timeout",
                     verdict(d if d is not None else float("inf"), 10, False)])
    else:
        rows.append(["policy change re-licensing 100,000 users", "< 10 s", "n/a", "not measured"])
    rss = split.get("resources", {}).get("server_peak_rss_mb") if split else None
    rows.append(["`roster ingress` peak RSS (split deployment, during the creates)", "< 100 MB",
                 f"{num(rss, 1)} MB" if rss is not None else "not measured", verdict(rss, 100, False)])
    r32 = at(creates, 32)
    if r32 and r32.get("rss") is not None:
        rows.append(["(for comparison) `roster serve` peak RSS, embedded, creates c=32: ingress + projector + "
                     "licensing in one process", "—", f"{num(r32['rss'], 1)} MB", "—"])
    md.append("## Targets\n")
    md.append(table(["target", "wanted", "measured", "result"], rows))

    # Micro-benchmarks.
    md.append("## Micro-benchmarks (criterion)\n")
    if micro:
        md.append(
            "Pure code, single thread, `--warm-up-time 1 --measurement-time 3`. Mean time per iteration with "
            "criterion's 95% confidence interval. Sources: `crates/*/benches/`. A group's `members` are not "
            "part of its stored form (they live in `scim_members`), so the pure cost of a member add does not "
            "depend on the group's size; the member-add scenario below measures that end to end.\n"
        )
        md.append(table(["group", "benchmark", "mean", "95% CI", "median"], [
            [g, f, dur_ns(mean), f"{dur_ns(lo)} – {dur_ns(hi)}", dur_ns(med)] for g, f, mean, lo, hi, med in micro
        ]))
    else:
        md.append("Not run (`BENCH_MICRO=0`).\n")

    # Sweep.
    md.append("## Concurrency sweep (embedded SQLite, `roster serve`)\n")
    md.append(
        "One account, a fresh server and database per point, the per-account rate limit off (`BENCH_SERVER_ENV`) (`crates/loadgen/measure.sh`); each point runs for "
        f"{run.get('secs_per_point', '?')} s. Creates are `POST /Users` only; lookups are "
        "`GET /Users?filter=userName eq \"…\"` of random existing users, each checked to return exactly that "
        "user. Latency is from sending the request to the end of the response body. 'server', 'loadgen' and "
        "'other' are the average CPU cores used by Roster, the load generator and everything else on the "
        "machine during the phase.\n"
    )
    for label, rs in (("creates", creates), ("lookups", lookups)):
        if not rs:
            continue
        md.append(f"### {label.capitalize()}\n")
        md.append(table(
            ["concurrency", "req/s", "requests", "errors", "p50 ms", "p99 ms", "max ms", "server cores",
             "loadgen cores", "other cores", "check"],
            [[r["c"], num(r["rps"]), num(r["requests"]), r["errors"], num(r["p50"], 2), num(r["p99"], 2),
              num(r["max"], 1), num(r["server_cores"], 2), num(r["loadgen_cores"], 2), num(r["other_cores"], 2),
              "passed" if r["correct"] else "FAILED"] for r in rs]))
    cs = sorted({r["c"] for r in creates + lookups})
    if cs:
        def col(rs, key):
            return [(at(rs, c) or {}).get(key) for c in cs]

        line_chart(os.path.join(svg_dir, "throughput.svg"), "Throughput against concurrency (embedded)",
                   "concurrent requests", "requests/s",
                   cs, [("creates/s", col(creates, "rps")), ("lookups/s", col(lookups, "rps"))])
        line_chart(os.path.join(svg_dir, "latency.svg"), "Latency against concurrency (embedded)",
                   "concurrent requests", "ms",
                   cs, [("create p50", col(creates, "p50")), ("create p99", col(creates, "p99")),
                        ("lookup p50", col(lookups, "p50")), ("lookup p99", col(lookups, "p99"))],
                   dashed=("create p99", "lookup p99"))
        md.append("![throughput against concurrency](benchmarks/throughput.svg)\n")
        md.append("![latency against concurrency](benchmarks/latency.svg)\n")

    # Member add.
    md.append("## Member add against group size (embedded)\n")
    if member:
        cfg = sim["member-add"]["config"]
        md.append(
            f"One group grown to {num(cfg['users'])} members by PATCHes of {cfg['member_batch']} members; at each "
            f"size, {cfg['samples']} single-member `Add members` PATCHes (Entra's legacy dialect) are sent one "
            "after the other.\n"
        )
        md.append(table(["group size", "samples", "mean ms", "p50 ms", "p90 ms", "p99 ms", "max ms",
                         "p50 × empty", "p99 × empty"],
                        [[num(p["group_size"]), p["samples"], num(p["mean_ms"], 2),
                          num(p["p50_ms"], 2), num(p["p90_ms"], 2),
                          num(p["p99_ms"], 2), num(p["max_ms"], 1),
                          f"{p['p50_vs_empty']:.2f}", f"{p['p99_vs_empty']:.2f}"] for p in member["points"]]))
        xs = [f"{p['group_size']:,}" for p in member["points"]]
        line_chart(os.path.join(svg_dir, "member-add.svg"), "Single member add against group size (embedded)",
                   "members in the group", "ms", xs,
                   [("p50", [p["p50_ms"] for p in member["points"]]),
                    ("p99", [p["p99_ms"] for p in member["points"]])], dashed=("p99",))
        md.append("![member-add latency against group size](benchmarks/member-add.svg)\n")
        if not sim["member-add"]["correctness"]["passed"]:
            md.append("**The correctness check of this run failed**; see the JSON report.\n")
    else:
        md.append("Not measured.\n")

    # Relicense.
    md.append("## Re-licensing after a policy change (embedded)\n")
    if relic:
        md.append(
            f"One group of {num(relic['members'])} members. A policy granting the group `standard` is set, then "
            "changed to grant `premium` (ranked higher, so it is no revocation and is never held), which "
            "changes every member's license. Each step is timed from sending `PUT …/license-policy` until a poll "
            "(every 250 ms: `GET /Users?count=0&filter=…licenseType eq \"…\"` for both licenses) first counts "
            "every member holding the new license and nobody the old one, as confirmed by `GET …/seats`.\n"
        )
        md.append(table(["step", "users", "PUT s", "all decided after s", "polls", "seats at the end"],
                        [[s["name"], num(s["users"]), num(s["put_secs"], 2),
                          num(s["decided_secs"], 2) if s["decided_secs"] is not None else "timed out",
                          s["polls"], ", ".join(f"{k}: {v:,}" for k, v in s["seats"].items())]
                         for s in relic["steps"]]))
    else:
        md.append("Not measured.\n")

    # Full.
    md.append("## Full Entra scenario with correctness check (embedded)\n")
    if full:
        c = full["config"]
        co = full["correctness"]
        md.append(
            f"{c['accounts']} accounts × {num(c['users'])} users × {c['groups']} groups, {c['memberships_per_user']} "
            f"memberships per user, {c['incremental_cycles']} incremental cycle(s), concurrency {c['concurrency']} "
            f"per account: {num(full['requests'])} requests in {num(full['load_secs'], 1)} s = "
            f"{num(full['rps'])} req/s, {full['errors']} errors. Correctness check: "
            f"**{'passed' if co['passed'] else 'FAILED'}** ({num(co['users_found'])}/{num(co['users_expected'])} "
            f"users, {num(co['groups_found'])}/{num(co['groups_expected'])} groups, "
            f"{num(co['memberships_found'])}/{num(co['memberships_expected'])} memberships).\n"
        )
        md.append(table(["request kind", "count", "req/s", "p50 ms", "p99 ms", "errors"],
                        [[k, num(v["count"]), num(v["rps"]), num(v["p50_ms"], 2), num(v["p99_ms"], 2), v["errors"]]
                         for k, v in full["kinds"].items() if not k.startswith("check") and k != "admin"]))
    else:
        md.append("Not measured.\n")

    # Split.
    md.append("## Kafka + Postgres, separate processes\n")
    if split and sp:
        k = sp["kinds"].get("user-create", {})
        res = split.get("resources", {})
        md.append(
            "`roster ingress`, 2 × `roster projector`, `roster licensing` on a fresh Postgres database and Kafka "
            "topic (4 partitions), the local services of `make services`; one ingress takes all the load. "
            f"Creates at concurrency 32 for {run.get('secs_per_point', '?')} s: {num(sp['rps'])} creates/s, "
            f"p50 {num(k.get('p50_ms'), 2)} ms, p99 {num(k.get('p99_ms'), 2)} ms, {sp['errors']} errors; "
            f"correctness check {'passed' if split['correctness']['passed'] else 'FAILED'}; ingress peak RSS "
            f"{num(res.get('server_peak_rss_mb'), 1)} MB, ingress cores {num(sp.get('server_cores'), 2)}, other "
            f"cores (Kafka, Postgres, projectors, …) {num(sp.get('other_cores'), 2)}.\n"
        )
        if replay and replay.get("secs"):
            md.append(
                f"`roster replay` of that topic into a fresh database: {num(replay['events'])} events in "
                f"{num(replay['secs'], 2)} s = {num(replay['events'] / replay['secs'])} events/s (all of them "
                "creates).\n"
            )
        if seeded and seeded.get("secs"):
            e, a = seeded["expected"], seeded["actual"]
            md.append(
                f"Replay at scale: `roster-logseed` wrote {num(seeded['events'])} events for {seeded['accounts']} "
                f"accounts to a fresh topic (4 partitions) in {num(seeded['seed_secs'], 1)} s: each account's "
                "initial cycle (users, empty groups, member adds in batches, a license policy and its grants) and "
                "then incremental cycles (attribute updates in both PATCH dialects, deactivations, membership "
                "changes, renames, deletions, new users). `roster replay` rebuilt a fresh Postgres database "
                f"from it in {num(seeded['secs'], 1)} s ({num(seeded['events'] / seeded['secs'])} events/s).\n"
            )
            md.append(table(["", "users", "active", "groups", "memberships", "licensed"], [
                ["the log says", *(num(e[k]) for k in ("users", "active_users", "groups", "memberships", "licensed"))],
                ["replayed", *(num(a[k]) for k in ("users", "active_users", "groups", "memberships", "licensed"))],
            ]))
    else:
        md.append("Not measured in this run (Kafka and Postgres were not running; start them with "
                  "`make services` or run with `BENCH_KAFKA=1`).\n")

    md.append("## Reproducing\n")
    md.append(
        "`make bench` (about 20 minutes on 2 cores). Knobs: `BENCH_SCALE=small|default|large`, "
        "`BENCH_CONCURRENCY`, `BENCH_SECS`, `BENCH_MEMBER_ADD_USERS`, `BENCH_RELICENSE_USERS`, `BENCH_REPLAY_EVENTS`, "
        "`BENCH_KAFKA=auto|1|0`, `BENCH_MICRO=0`, `BENCH_SIM=0`, `BENCH_RESULTS`, `BENCH_DOC` (see "
        "`scripts/bench.sh`). The raw JSON reports stay in `$CARGO_TARGET_DIR/bench-results`.\n"
    )
    with open(args.doc, "w") as f:
        f.write("\n".join(md))
    print(f"bench_report.py: wrote {args.doc} and {svg_dir}/*.svg")


if __name__ == "__main__":
    main()
