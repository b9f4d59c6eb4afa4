#!/usr/bin/env python3
"""Turns one bench/results/<ts>/ folder into results.tsv, results.json and table.md (also
printed). Standard library only. usage: analyse.py RESULTS_DIR
Exit status 3 if any wrk phase was invalid (non-2xx responses or socket errors)."""
import json, os, re, sys

D = sys.argv[1]
MODELS = ("lr", "rf")
CONCS = (1, 8, 64)


def read(path, default=""):
    try:
        return open(path).read()
    except OSError:
        return default


def sampler(path):
    """(t0, rows[(epoch, rss_kB, server_cpu_s, system_busy_cpu_s)], peaks{})"""
    t0, rows, peaks = None, [], {}
    for line in read(path).splitlines():
        if line.startswith("# t0_epoch="):
            t0 = float(line.split("=")[1])
        elif line.startswith("# "):
            peaks.update({k: int(v) for k, v in re.findall(r"(\w+_kB)=(\d+)", line)})
        elif line and not line.startswith("t_s"):
            f = line.split("\t")
            rows.append((t0 + float(f[0]), int(f[2]), float(f[3]), float(f[4]) if len(f) > 4 else float("nan")))
    return rows, peaks


def phases(run_dir, rows):
    """Per concurrency: wrk figures, validity, server CPU over the phase."""
    out = {}
    summ = read(os.path.join(run_dir, "summary.txt"))
    tl = re.findall(r"== ([\d.]+) (start|end) c=(\d+)", read(os.path.join(run_dir, "timeline.txt")))
    span = {}
    for ts, k, c in tl:
        span.setdefault(int(c), {})[k] = float(ts)
    for line in summ.splitlines():
        m = re.match(r"c=(\d+) threads=(\d+) (.*)", line)
        if not m:
            continue
        c, rest = int(m.group(1)), m.group(3)
        kv = dict(re.findall(r"(\w+)=([\d.]+)", rest))
        r = {"c": c, "wrk_threads": int(m.group(2))}
        for k in ("requests", "duration_s", "rps", "p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms",
                  "errors", "non2xx", "socket_errors", "status_ge400"):
            if k in kv:
                r[k] = float(kv[k]) if "." in kv[k] else int(kv[k])
        r["valid"] = ("RESULT requests=" in rest and "INVALID" not in rest and r.get("errors", 1) == 0
                      and r.get("non2xx", 1) == 0)
        se = span.get(c, {})
        inside = [x for x in rows if se and se["start"] <= x[0] <= se["end"]]
        if len(inside) >= 2 and r.get("rps"):
            dt = inside[-1][0] - inside[0][0]
            dcpu = inside[-1][2] - inside[0][2]
            dsys = inside[-1][3] - inside[0][3]
            wt = read(os.path.join(run_dir, f"wrk_c{c}.time"))
            wm = re.search(r"user=([\d.]+) sys=([\d.]+)", wt)
            wcpu = float(wm.group(1)) + float(wm.group(2)) if wm else 0.0
            r["server_cpu_cores"] = round(dcpu / dt, 3)
            r["server_cpu_us_per_req"] = round(1e6 * dcpu / dt / r["rps"], 1)
            r["wrk_cpu_cores"] = round(wcpu / r["duration_s"], 3)
            r["other_cpu_cores"] = round((dsys - dcpu) / dt - wcpu / r["duration_s"], 2)
            r["max_rss_MB"] = round(max(x[1] for x in inside) / 1024, 1)
        out[c] = r
    return out


def peak_mb(run_dir, load_dirs=None):
    """Peaks, plus RSS when the first load phase starts and RSS growth per request served
    from then to the end of the last phase (a server that keeps memory per request shows it)."""
    rows, peaks = sampler(os.path.join(run_dir, "rss.tsv"))
    _, pss = sampler(os.path.join(run_dir, "pss.tsv"))
    out = {"peak_rss_MB": round(peaks.get("peak_total_rss_kB", 0) / 1024, 1),
           "vmhwm_sum_MB": round(peaks.get("vmhwm_sum_kB", 0) / 1024, 1),
           "peak_pss_MB": round(pss.get("peak_total_pss_kB", 0) / 1024, 1)}
    starts, ends, reqs = [], [], 0
    for d in load_dirs or [run_dir]:
        for ts, k, c in re.findall(r"== ([\d.]+) (start|end) c=(\d+)", read(os.path.join(d, "timeline.txt"))):
            (starts if k == "start" else ends).append(float(ts))
        reqs += sum(int(n) for n in re.findall(r"RESULT requests=(\d+)", read(os.path.join(d, "summary.txt"))))
    if rows and starts and ends and reqs:
        a = next((r for r in rows if r[0] >= min(starts)), rows[-1])
        b = [r for r in rows if r[0] <= max(ends)][-1]
        out["rss_at_load_start_MB"] = round(a[1] / 1024, 1)
        out["rss_at_load_end_MB"] = round(b[1] / 1024, 1)
        out["requests_served"] = reqs
        out["rss_growth_B_per_req"] = round((b[1] - a[1]) * 1024 / reqs, 1)
    return out, rows


res = {"dir": D, "env": dict(l.split("=", 1) for l in read(os.path.join(D, "env.txt")).splitlines() if "=" in l),
       "runs": {}, "memory": {}}
keel_mem, keel_rows = peak_mb(os.path.join(D, "keel"), [os.path.join(D, "keel", m) for m in MODELS])
res["memory"]["keel (one server, both models)"] = keel_mem
for m in MODELS:
    res["runs"][f"keel/{m}"] = phases(os.path.join(D, "keel", m), keel_rows)
    mem, rows = peak_mb(os.path.join(D, f"mlserver_{m}"))
    res["memory"][f"mlserver ({m} only)"] = mem
    res["runs"][f"mlserver/{m}"] = phases(os.path.join(D, f"mlserver_{m}"), rows)
ml_sum = {k: round(res["memory"]["mlserver (lr only)"][k] + res["memory"]["mlserver (rf only)"][k], 1)
          for k in ("peak_rss_MB", "vmhwm_sum_MB", "peak_pss_MB")}
res["memory"]["mlserver (lr run + rf run, summed)"] = ml_sum
if os.path.isdir(os.path.join(D, "mlserver_both")):
    mem, rows = peak_mb(os.path.join(D, "mlserver_both"), [os.path.join(D, "mlserver_both", m) for m in MODELS])
    res["memory"]["mlserver (one server, both models)"] = mem
    for m in MODELS:
        res["runs"][f"mlserver_both/{m}"] = phases(os.path.join(D, "mlserver_both", m), rows)

floor = {}
try:
    fj = json.load(open(os.path.join(D, "onnx_floor.json")))
    for r in fj["results"]:
        floor[(r["model"], r["engine"])] = r
    res["onnx_floor"] = fj
except (OSError, ValueError, KeyError):
    res["onnx_floor"] = None


def floor_us(m):
    r = floor.get((m, "onnxruntime(intra_op=1)"))  # keel runs sessions with 1 intra-op thread
    return r["single_row"]["p50_us"] if r else float("nan")


# ---------------------------------------------------------------- tables
tsv = ["server\tmodel\tc\twrk_threads\trequests\trps\tp50_ms\tp90_ms\tp99_ms\tmax_ms\terrors\tnon2xx\tvalid\t"
       "server_cpu_cores\tserver_cpu_us_per_req\twrk_cpu_cores\tother_cpu_cores"]
for key, ph in res["runs"].items():
    srv, m = key.split("/")
    for c, r in sorted(ph.items()):
        tsv.append("\t".join(str(x) for x in (srv, m, c, r.get("wrk_threads"), r.get("requests"), r.get("rps"),
                                              r.get("p50_ms"), r.get("p90_ms"), r.get("p99_ms"), r.get("max_ms"),
                                              r.get("errors"), r.get("non2xx"), r["valid"], r.get("server_cpu_cores"),
                                              r.get("server_cpu_us_per_req"), r.get("wrk_cpu_cores"),
                                              r.get("other_cpu_cores"))))
open(os.path.join(D, "results.tsv"), "w").write("\n".join(tsv) + "\n")


def f(x, nd=1):
    return "n/a" if x is None or x != x else (f"{x:,.{nd}f}" if isinstance(x, float) else f"{x:,}")


md = []
e = res["env"]
md.append(f"Run {e.get('date_utc', '?')} on {e.get('cpu', '?')}, {e.get('nproc', '?')} cores, kernel {e.get('kernel', '?')}; "
          f"keel {e.get('keel_git', '?')}, MLServer {e.get('mlserver', '?')}; {e.get('duration_s', '?')} s per phase, "
          f"wrk -t1 at c=1 and 8, -t{e.get('wrk_threads_c64', '?')} at c=64")
md.append("")
md.append("| model | c | keel req/s | MLServer req/s | keel/MLS req/s | keel p50 ms | MLS p50 ms | keel p99 ms | MLS p99 ms "
          "| MLS/keel p99 | keel CPU us/req | MLS CPU us/req | other load (cores) keel / MLS |")
md.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
invalid = []
targets = {}
for m in MODELS:
    for c in CONCS:
        k = res["runs"][f"keel/{m}"].get(c, {})
        s = res["runs"][f"mlserver/{m}"].get(c, {})
        for who, r in (("keel", k), ("MLServer", s)):
            if not r.get("valid"):
                invalid.append(f"{who} {m} c={c}")
        tr = k.get("rps", 0) / s["rps"] if s.get("rps") else float("nan")
        pr = s.get("p99_ms", 0) / k["p99_ms"] if k.get("p99_ms") else float("nan")
        flag = lambda r: "" if r.get("valid") else " INVALID"
        md.append(f"| {m.upper()} | {c} | {f(k.get('rps'))}{flag(k)} | {f(s.get('rps'))}{flag(s)} | {f(tr)}x | "
                  f"{f(k.get('p50_ms'), 2)} | {f(s.get('p50_ms'), 2)} | {f(k.get('p99_ms'), 2)} | {f(s.get('p99_ms'), 2)} | "
                  f"{f(pr)}x | {f(k.get('server_cpu_us_per_req'))} | {f(s.get('server_cpu_us_per_req'))} | "
                  f"{f(k.get('other_cpu_cores'), 2)} / {f(s.get('other_cpu_cores'), 2)} |")
        if c == 64:
            targets[f"throughput c=64 {m.upper()} >= 20x MLServer"] = (tr >= 20, f"{tr:.1f}x")
        if c == 8:
            targets[f"p99 c=8 {m.upper()} <= 1/10 MLServer"] = (pr >= 10, f"keel {k.get('p99_ms', float('nan')):.2f} ms vs "
                                                                   f"{s.get('p99_ms', float('nan')):.2f} ms ({pr:.1f}x)")
md.append("")
md.append("Peak memory (MB; RSS summed over the server's process group, as the kit's proc_sampler.py measures; "
          "PSS splits pages shared between processes):")
md.append("")
md.append("| server | peak RSS | peak PSS | sum of per-process VmHWM | RSS at first load phase -> end of last | requests | RSS growth B/request |")
md.append("|---|---|---|---|---|---|---|")
for name, mem in res["memory"].items():
    md.append(f"| {name} | {f(mem['peak_rss_MB'])} | {f(mem['peak_pss_MB'])} | {f(mem['vmhwm_sum_MB'])} | "
              f"{f(mem.get('rss_at_load_start_MB'))} -> {f(mem.get('rss_at_load_end_MB'))} | {f(mem.get('requests_served'))} | "
              f"{f(mem.get('rss_growth_B_per_req'))} |")
md.append("")
fl = floor_us("lr")
cpu = {c: res["runs"]["keel/lr"].get(c, {}).get("server_cpu_us_per_req") for c in (8, 64)}
md.append(f"keel server CPU per single-row LR request minus onnxruntime floor ({f(fl, 2)} us/row, intra_op=1 p50): "
          f"c=64 {f((cpu[64] or float('nan')) - fl)} us, c=8 {f((cpu[8] or float('nan')) - fl)} us "
          f"(RF floor {f(floor_us('rf'), 2)} us/row).")
over = (cpu[64] or float("nan")) - fl
targets["keel CPU per LR request - floor < 50 us (c=64 phase)"] = (over < 50, f"{over:.1f} us")
both = res["memory"].get("mlserver (one server, both models)")
ml_ref = both["peak_rss_MB"] if both else ml_sum["peak_rss_MB"]
mr = keel_mem["peak_rss_MB"] / ml_ref if ml_ref else float("nan")
targets["peak RSS serving both models < 1/4 MLServer"] = (
    mr < 0.25, f"keel {keel_mem['peak_rss_MB']:.0f} MB vs MLServer {ml_ref:.0f} MB "
               f"({'one server, both models' if both else 'two runs summed'}) = {mr:.3f}; "
               f"vs summed runs {keel_mem['peak_rss_MB'] / ml_sum['peak_rss_MB']:.3f}" if ml_sum["peak_rss_MB"] else "")
md.append("")
md.append("| target | result | figure |")
md.append("|---|---|---|")
for t, (ok, fig) in targets.items():
    md.append(f"| {t} | {'PASS' if ok else 'FAIL'} | {fig} |")
if invalid:
    md.append("")
    md.append("INVALID phases (non-2xx or socket errors; figures not usable): " + ", ".join(invalid))
res["targets"] = {t: {"pass": bool(ok), "figure": fig} for t, (ok, fig) in targets.items()}
res["invalid"] = invalid
json.dump(res, open(os.path.join(D, "results.json"), "w"), indent=1, default=str)
text = "\n".join(md) + "\n"
open(os.path.join(D, "table.md"), "w").write(text)
print(text)
sys.exit(3 if invalid else 0)
