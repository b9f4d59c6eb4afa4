"""Console page load times with a large decision log, and the plan/apply round trip of a folder.

1. A fresh keel home: bc-lr pushed (alias production), a small lake table, a three-variant
   Thompson deployment `bench` with a 10% holdout group, a token (view, data:read, decide).
2. `keel serve` on loopback; DECISIONS decisions logged through `decide:batch` (BATCH per
   call) with a reward for every other one through `feedback:batch`.
3. Every console page loaded once to warm the server, then RUNS times each in headless
   Chromium (the `playwright` package driving Debian's `chromium`): the navigation's
   requestStart -> responseEnd (server time plus transfer) and loadEventEnd (the page shown),
   median and max; and the same page fetched RUNS times with `requests` as the anchor.
4. The deployment page after DECISIONS/100 more decisions (at once, and 6 s later), and after
   a restart of the server (the first load and the next).
5. `keel plan` and `keel apply --yes` of a folder of 20 deployments (created), then the same
   folder with every deployment's weights changed (updated): wall time of each command.

Prints Markdown tables. Nothing is asserted: figures are reported (bench/README.md, console/).

    python bench/console/pages.py --bin target/release/keel [--decisions 1000000] [--batch 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures" / "models"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Keel:
    def __init__(self, binary: str, home: Path) -> None:
        self.binary, self.home = binary, home
        self.env = {**os.environ, "KEEL_HOME": str(home), "KEEL_AUTHOR": "bench", "KEEL_USER": "bench", "KEEL_LOG": "warn"}

    def cli(self, *args: str) -> str:
        out = subprocess.run([self.binary, *args], env=self.env, capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise SystemExit(f"keel {' '.join(args)}: {out.stderr}")
        return out.stdout

    def timed(self, *args: str) -> float:
        start = time.perf_counter()
        self.cli(*args)
        return time.perf_counter() - start


def fill(base: str, token: str, decisions: int, batch: int) -> tuple[int, int, float]:
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {token}"
    made, rewarded, start = 0, 0, time.perf_counter()
    while made < decisions:
        n = min(batch, decisions - made)
        reqs = [{"unit_id": f"u{made + i}"} for i in range(n)]
        r = s.post(f"{base}/v1/deployments/bench/decide:batch", json={"requests": reqs}, timeout=600)
        r.raise_for_status()
        out = r.json()
        if out["failed"]:
            raise SystemExit(f"decide:batch refused items: {out}")
        events = []
        for i, item in enumerate(out["results"]):
            d = item["decision"]
            if i % 2 == 0:
                # variant c converts best, the holdout group worst
                p = {"a": 0.10, "b": 0.12, "c": 0.15}.get(d["variant"], 0.08)
                events.append({"decision_id": d["decision_id"], "reward": 1.0 if (made + i) % 100 < p * 100 else 0.0})
        r = s.post(f"{base}/v1/deployments/bench/feedback:batch", json={"events": events}, timeout=600)
        r.raise_for_status()
        if r.json()["failed"]:
            raise SystemExit(f"feedback:batch refused items: {r.json()}")
        made += n
        rewarded += len(events)
    return made, rewarded, time.perf_counter() - start


PAGES = [
    ("overview", "/ui/"),
    ("deployment (charts over time, auto buckets)", "/ui/deployments/bench"),
    ("deployment, hourly buckets", "/ui/deployments/bench?bucket=1h"),
    ("deployment, revision diff", "/ui/deployments/bench?diff=1..2"),
    ("models", "/ui/models"),
    ("model", "/ui/models/bc-lr"),
    ("model performance", "/ui/models/bc-lr/performance"),
    ("change log", "/ui/changes"),
    ("pending changes", "/ui/changes/pending"),
    ("data catalog", "/ui/data"),
    ("data table card + lineage", "/ui/data/clicks"),
]


def pages(base: str, token: str, runs: int, chromium: str) -> list[dict[str, Any]]:
    from playwright.sync_api import sync_playwright

    rows = []
    anchor = requests.Session()
    anchor.cookies.set("keel_console", token, path="/ui")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
        page.goto(f"{base}/ui/login?next=/ui/")
        page.fill("#token", token)
        page.click("main button[type=submit]")
        page.wait_for_url("**/ui/")
        for name, path in PAGES:
            # The first load after the fill is the cold one (the deployment page reads the whole
            # decision log once; later loads read only what was appended): timed apart.
            start = time.perf_counter()
            page.goto(base + path, timeout=0)
            cold = (time.perf_counter() - start) * 1000
            server, shown, fetched = [], [], []
            status = 0
            for _ in range(runs):
                response = page.goto(base + path)
                status = response.status if response else 0
                nav = page.evaluate("JSON.stringify(performance.getEntriesByType('navigation')[0])")
                t = json.loads(nav)
                server.append(t["responseEnd"] - t["requestStart"])
                shown.append(t["loadEventEnd"] - t["startTime"])
                start = time.perf_counter()
                r = anchor.get(base + path, headers={"accept": "text/html"}, timeout=600)
                fetched.append((time.perf_counter() - start) * 1000)
                assert r.status_code == status, (path, r.status_code, status)
            rows.append({"page": name, "path": path, "status": status, "bytes": len(r.content), "cold_ms": cold,
                         "request_to_last_byte_ms": statistics.median(server), "max_ms": max(server),
                         "load_event_ms": statistics.median(shown), "requests_get_ms": statistics.median(fetched)})
        browser.close()
    return rows


def deployment_after(base: str, token: str, what: str) -> dict[str, Any]:
    """One load of the deployment page (plain GET with the console cookie), timed."""
    s = requests.Session()
    s.cookies.set("keel_console", token, path="/ui")
    start = time.perf_counter()
    r = s.get(f"{base}/ui/deployments/bench", headers={"accept": "text/html"}, timeout=600)
    return {"what": what, "status": r.status_code, "ms": (time.perf_counter() - start) * 1000}


def start_server(binary: str, keel: Keel, home: Path, http: int, grpc: int) -> subprocess.Popen[bytes]:
    base = f"http://127.0.0.1:{http}"
    log = open(home / "server.log", "a")
    proc = subprocess.Popen([binary, "serve", "--http-addr", f"127.0.0.1:{http}", "--grpc-addr", f"127.0.0.1:{grpc}",
                             "--auth", "required"], env=keel.env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while True:
        try:
            if requests.get(f"{base}/v2/health/ready", timeout=1).status_code == 200:
                return proc
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.time() > deadline:
            raise SystemExit((home / "server.log").read_text())
        time.sleep(0.2)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def plan_apply(keel: Keel, folder: Path) -> list[tuple[str, float]]:
    def write(weights: list[float]) -> None:
        (folder / "deployments").mkdir(parents=True, exist_ok=True)
        for i in range(20):
            spec = {"variants": [{"name": "a"}, {"name": "b"}], "policy": {"type": "fixed_weights", "weights": weights},
                    "reward": {"kind": "binary", "min": 0, "max": 1, "window_seconds": 3600}}
            (folder / "deployments" / f"team{i:02}.json").write_text(json.dumps(spec))

    out = []
    write([0.5, 0.5])
    out.append(("plan, 20 to create", keel.timed("plan", str(folder))))
    out.append(("apply --yes, 20 created", keel.timed("apply", str(folder), "--yes")))
    write([0.3, 0.7])
    out.append(("plan, 20 to update", keel.timed("plan", str(folder))))
    out.append(("apply --yes, 20 updated", keel.timed("apply", str(folder), "--yes")))
    out.append(("plan, nothing to do", keel.timed("plan", str(folder))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--decisions", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--chromium", default=os.environ.get("KEEL_CHROMIUM", "/usr/bin/chromium"))
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="keel-console-bench-"))
    keel = Keel(args.bin, home)
    proc = None
    try:
        csv = home / "clicks.csv"
        csv.write_text("user_email,age,clicked\n" + "".join(f"u{i}@example.com,{20 + i % 40},{i % 3 == 0}\n" for i in range(1000)))
        keel.cli("data", "ingest", str(csv), "--table", "clicks", "-d", "clicks")
        keel.cli("model", "push", "bc-lr", str(FIXTURES / "bc-lr.onnx"), "--alias", "production", "--training-data", "clicks")
        spec = {"variants": [{"name": "a"}, {"name": "b"}, {"name": "c"}], "policy": {"type": "thompson_beta"},
                "control": {"policy": "uniform", "share": 0.1},
                "reward": {"kind": "binary", "min": 0, "max": 1, "window_seconds": 86400}, "seed": 7}
        (home / "spec.json").write_text(json.dumps(spec))
        keel.cli("deployment", "apply", "bench", "-f", str(home / "spec.json"))
        spec["control"] = {"policy": "uniform", "share": 0.12}
        (home / "spec.json").write_text(json.dumps(spec))
        keel.cli("deployment", "apply", "bench", "-f", str(home / "spec.json"), "--reason", "a larger holdout")
        token = json.loads(keel.cli("--json", "access", "token", "create", "bench", "--scope", "view",
                                    "--scope", "data:read", "--scope", "decide"))["token"]
        http, grpc = free_port(), free_port()
        base = f"http://127.0.0.1:{http}"
        proc = start_server(args.bin, keel, home, http, grpc)
        made, rewarded, took = fill(base, token, args.decisions, args.batch)
        print(f"filled: {made:,} decisions, {rewarded:,} rewards in {took:.1f} s ({made / took:,.0f} decisions/s)")
        log_bytes = sum(f.stat().st_size for f in (home / "experiments" / "bench").rglob("*") if f.is_file())
        print(f"decision log: {log_bytes / 1e6:,.1f} MB")
        rows = pages(base, token, args.runs, args.chromium)
        print("\n| page | path | status | bytes | first (cold) load (ms) | request -> last byte, median (ms) | max (ms) | load event, median (ms) | `requests` GET, median (ms) |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['page']} | `{r['path']}` | {r['status']} | {r['bytes']:,} | {r['cold_ms']:.0f} | {r['request_to_last_byte_ms']:.1f} | "
                  f"{r['max_ms']:.1f} | {r['load_event_ms']:.1f} | {r['requests_get_ms']:.1f} |")
        # The deployment page while traffic goes on: what a load costs after more decisions
        # (the server reads on the log every few seconds, and a load reads what is left), and
        # the first load after a restart (the whole log is read once, in the background from
        # the start; a load waits for that read) and the next one.
        after = []
        more = max(args.decisions // 100, args.batch)
        fill(base, token, more, args.batch)
        after.append(deployment_after(base, token, f"right after {more:,} more decisions"))
        time.sleep(6)
        after.append(deployment_after(base, token, "6 s later"))
        stop_server(proc)
        proc = None
        started = time.perf_counter()
        proc = start_server(args.bin, keel, home, http, grpc)
        ready = time.perf_counter() - started
        after.append(deployment_after(base, token, f"first load after a restart (ready after {ready:.1f} s)"))
        after.append(deployment_after(base, token, "the next load"))
        print("\n| deployment page `/ui/deployments/bench` (plain GET) | status | ms |")
        print("|---|---|---|")
        for a in after:
            print(f"| {a['what']} | {a['status']} | {a['ms']:.0f} |")
        round_trip = plan_apply(keel, home / "declared")
        print("\n| plan/apply of 20 deployments (CLI, wall time) | seconds |")
        print("|---|---|")
        for what, s in round_trip:
            print(f"| {what} | {s:.3f} |")
        print(f"| **round trip: plan + apply (create)** | **{round_trip[0][1] + round_trip[1][1]:.3f}** |")
        print(f"| **round trip: plan + apply (update)** | **{round_trip[2][1] + round_trip[3][1]:.3f}** |")
        print(f"\nanchor: `{args.bin} --version` takes {keel.timed('--version'):.3f} s (process start)")
    finally:
        if proc is not None:
            stop_server(proc)
        if os.environ.get("KEEP_HOME") != "1":
            shutil.rmtree(home, ignore_errors=True)
        else:
            print(f"home kept: {home}")


if __name__ == "__main__":
    main()
