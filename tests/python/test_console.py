"""The web console in a real browser: headless Chromium (Debian's ``chromium``, driven by the
``playwright`` package; its own browser download is never used) against a live ``keel serve``
with real data: models pushed with the CLI, a lake table ingested, deployments applied, decisions
and feedback sent through the API.

Every page is loaded; the figures that matter are compared with the JSON API's (decisions,
rewards and reward rates against ``GET /v1/deployments/{name}/report``, aliases against the
registry); links are followed, a table is sorted, no page logs a console error or has a failed
request, and a screenshot of each page is saved under ``target/console-screenshots/``. A second
server with ``--auth required`` checks the login flow and that the console's cookie never
authorises the JSON API.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from keel_bin import REPO_ROOT, free_ports, keel_bin

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is in python/requirements-dev.txt")

CHROMIUM = os.environ.get("KEEL_CHROMIUM", "/usr/bin/chromium")
FIXTURES = REPO_ROOT / "fixtures" / "models"
ROW = json.loads((FIXTURES / "expected.json").read_text())["models"]["bc-lr"]["rows"][0]
SHOTS = REPO_ROOT / "target" / "console-screenshots"


class Server:
    def __init__(self, tmp: Path, extra: list[str], name: str) -> None:
        self.binary, self.home = keel_bin(), tmp / "home"
        self.env = {**os.environ, "KEEL_HOME": str(self.home), "KEEL_AUTHOR": "pytest", "KEEL_USER": "ana"}
        self.extra, self.name, self.tmp = extra, name, tmp
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> str:
        out = subprocess.run([str(self.binary), *args], env=self.env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"keel {args}: {out.stderr}"
        return out.stdout

    def start(self) -> None:
        http, grpc = free_ports(2)
        self.url = f"http://127.0.0.1:{http}"
        self.log = open(self.tmp / f"{self.name}.log", "w")
        self.proc = subprocess.Popen(
            [str(self.binary), "serve", "--http-addr", f"127.0.0.1:{http}", "--grpc-addr", f"127.0.0.1:{grpc}",
             "--log-flush-ms", "100", *self.extra],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/v2/health/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            assert self.proc.poll() is None and time.time() < deadline, (self.tmp / f"{self.name}.log").read_text()
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            assert self.proc.wait(timeout=30) == 0, (self.tmp / f"{self.name}.log").read_text()
            self.log.close()

    def api(self, method: str, path: str, body: Any = None, token: str | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        req.add_header("content-type", "application/json")
        if token:
            req.add_header("authorization", f"Bearer {token}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw or b"null")
        except ValueError:
            return status, raw.decode(errors="replace")


def seed(s: Server) -> str:
    """Models, a lake table with lineage, a token for ana; returns the token."""
    csv = s.tmp / "clicks.csv"
    csv.write_text("user_email,age,clicked\n" + "".join(f"u{i}@example.com,{20 + i % 40},{i % 3 == 0}\n" for i in range(200)))
    s.cli("data", "ingest", str(csv), "--table", "clicks", "-d", "clicks of the <b>spring</b> campaign")
    s.cli("model", "push", "bc-lr", str(FIXTURES / "bc-lr.onnx"), "--alias", "production",
          "--training-data", "clicks", "-m", "auc=0.97", "-d", "logistic regression")
    s.cli("model", "push", "bc-lr", str(FIXTURES / "bc-lr-zipmap.onnx"), "-m", "auc=0.96")
    s.cli("model", "alias", "bc-lr", "staging", "2", "--reason", "try the zipmap export")
    s.cli("model", "push", "bc-rf", str(FIXTURES / "bc-rf.onnx"), "--alias", "production")
    out = json.loads(s.cli("--json", "access", "token", "create", "ana", "--scope", "view", "--scope", "data:read"))
    return out["token"]


def traffic(s: Server, token: str | None = None) -> None:
    """Two deployments: `promo` (plain variants, a holdout group) with two revisions, and
    `scoring` (model variants), each with decisions and feedback through the API."""
    promo = {"variants": [{"name": "control"}, {"name": "new-subject"}],
             "policy": {"type": "fixed_weights", "weights": [0.5, 0.5]},
             "control": {"variant": "control", "share": 0.1}, "report_bucket_seconds": 1}
    assert s.api("PUT", "/v1/deployments/promo", {"spec": promo, "reason": "launch"}, token)[0] == 200
    promo["policy"]["weights"] = [0.3, 0.7]
    assert s.api("PUT", "/v1/deployments/promo", {"spec": promo, "reason": "more <new>"}, token)[0] == 200
    for i in range(240):
        status, d = s.api("POST", "/v1/deployments/promo/decide", {"unit_id": f"u{i}"}, token)
        assert status == 200, d
        if i % 4 != 3:
            reward = 1.0 if (d["variant"] == "new-subject") == (i % 3 == 0) else 0.0
            assert s.api("POST", "/v1/deployments/promo/feedback",
                         {"decision_id": d["decision_id"], "reward": reward}, token)[0] == 200
        if i == 120:
            time.sleep(1.1)  # a second time bucket
    scoring = {"variants": [{"name": "lr", "model": "bc-lr@production"}, {"name": "rf", "model": "bc-rf@production"}],
               "policy": {"type": "thompson_beta"}}
    assert s.api("PUT", "/v1/deployments/scoring", {"spec": scoring}, token)[0] == 200
    inputs = [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": ROW}]
    for i in range(30):
        status, d = s.api("POST", "/v1/deployments/scoring/decide", {"unit_id": f"s{i}", "inputs": inputs}, token)
        assert status == 200, d
        s.api("POST", "/v1/deployments/scoring/feedback", {"decision_id": d["decision_id"], "reward": float(i % 2)}, token)


class Browser:
    """A page whose console errors, uncaught exceptions and failed requests are collected."""

    def __init__(self, browser: Any, base: str) -> None:
        self.context = browser.new_context(viewport={"width": 1366, "height": 900})
        self.page = self.context.new_page()
        self.base = base
        self.problems: list[str] = []
        self.expected_status: set[str] = set()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("requestfailed", self._failed)
        self.page.on("response", self._response)

    def _failed(self, r: Any) -> None:
        # A request the browser cancels because the test navigated on (the icon of the page
        # just left) did not fail on the server's side.
        if r.failure != "net::ERR_ABORTED":
            self.problems.append(f"failed: {r.url} {r.failure}")

    def _console(self, m: Any) -> None:
        # Chromium logs every non-2xx answer as an error; those a step expects are not problems.
        expected = m.text.startswith("Failed to load resource") and \
            m.location.get("url", "").removeprefix(self.base) in self.expected_status
        if m.type == "error" and not expected:
            self.problems.append(f"console: {m.text} at {m.location.get('url')}")

    def _response(self, r: Any) -> None:
        path = r.url.removeprefix(self.base)
        if r.status >= 400 and path not in self.expected_status:
            self.problems.append(f"{r.status}: {r.url}")

    def open(self, path: str, shot: str, status: int = 200) -> Any:
        if status >= 400:
            self.expected_status.add(path)
        response = self.page.goto(self.base + path)
        assert response is not None and response.status == status, (path, response and response.status)
        csp = response.headers.get("content-security-policy", "")
        assert "default-src 'self'" in csp, csp
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{shot}.png"), full_page=True)
        assert not self.problems, self.problems
        return response

    def cell(self, table: str, row: str, key: str) -> str:
        loc = self.page.locator(f'#{table} tr[data-row="{row}"] td[data-key="{key}"]')
        return loc.get_attribute("data-sort") or loc.inner_text()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-chromium", pytrace=False)
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def test_every_page_shows_the_apis_figures(tmp_path: Path, browser: Any) -> None:
    s = Server(tmp_path, [], "open")
    token = seed(s)
    s.start()
    try:
        traffic(s)
        b = Browser(browser, s.url)
        page = b.page

        # Overview: both deployments and their figures equal the reports'.
        b.open("/ui/", "overview")
        assert "auth off (loopback)" in page.inner_text("header")
        for name in ("promo", "scoring"):
            _, report = s.api("GET", f"/v1/deployments/{name}/report")
            decisions = report["treated_group"]["exposures"] + (report["control_group"] or {"exposures": 0})["exposures"]
            assert int(b.cell("deployments", name, "decisions")) == decisions
            assert float(b.cell("deployments", name, "reward_rate")) == pytest.approx(report["treated_group"]["rate"], abs=1e-12)
            assert int(b.cell("deployments", name, "revision")) == report["revision"]
        assert int(b.cell("deployments", "promo", "decisions")) == 240
        assert b.cell("models", "bc-lr", "production") == "1"
        assert b.cell("models", "bc-lr", "latest") == "2"

        # Follow the link to the deployment.
        page.click('#deployments a[href="/ui/deployments/promo"]')
        page.wait_for_url("**/ui/deployments/promo")
        _, report = s.api("GET", "/v1/deployments/promo/report")
        b.open("/ui/deployments/promo", "deployment-promo")
        for v in report["variants"]:
            assert int(b.cell("variants", v["name"], "exposures")) == v["exposures"]
            assert int(b.cell("variants", v["name"], "rewards")) == v["rewards"]
            assert float(b.cell("variants", v["name"], "rate")) == pytest.approx(v["rate"], abs=1e-12)
            assert float(b.cell("variants", v["name"], "share")) == pytest.approx(v["share"], abs=1e-12)
        assert int(b.cell("groups", "holdout (control)", "exposures")) == report["control_group"]["exposures"]
        assert page.locator("#lift").count() == 1
        assert page.locator("#srm").count() == 1
        # Charts: titles, axes, a line per variant, a legend.
        share = page.locator("svg#chart-share")
        assert "Traffic share per variant" in (share.locator("title").first.text_content() or "")
        assert share.locator("polyline").count() == 3, "two variants and the holdout group"
        assert share.locator("text", has_text="share of decisions").count() == 1
        assert share.locator("text", has_text="time (UTC)").count() == 1
        assert share.locator(".legend").count() == 3
        assert page.locator("svg#chart-rates circle").count() == 2
        # Over time, from the decision log: every point of the rate, share and decisions charts
        # is the timeline API's figure for its bucket and variant.
        bucket_ms = int(page.locator("#timeline").get_attribute("data-bucket-ms"))
        status, timeline = s.api("GET", f"/v1/deployments/promo/timeline?bucket={bucket_ms // 1000}s")
        assert status == 200, timeline
        assert timeline["bucket_ms"] == bucket_ms and timeline["variants"] == ["control", "new-subject"]
        assert timeline["decisions"] == 240 and len(timeline["buckets"]) >= 2, timeline
        assert sum(b["decisions"] + b["holdout"]["decisions"] for b in timeline["buckets"]) == 240
        assert sum(c["rewards"] for b in timeline["buckets"] for c in [*b["variants"], b["holdout"]]) == 180

        def points(chart: str) -> dict[tuple[str, int], float]:
            found = page.locator(f"svg#{chart} circle").evaluate_all(
                "els => els.map(e => [e.dataset.series, e.dataset.x, e.dataset.y])")
            return {(name, int(float(x))): float(y) for name, x, y in found}

        def expected(figure: str) -> dict[tuple[str, int], float]:
            want = {}
            for b in timeline["buckets"]:
                for name, c in [*zip(timeline["variants"], b["variants"]), ("holdout group", b["holdout"])]:
                    value = c[figure]
                    if figure == "share" and name != "holdout group" and b["decisions"] == 0:
                        value = None
                    if value is not None:
                        want[(name, b["start_ms"])] = float(value)
            return want

        assert points("chart-rate") == expected("rate") != {}
        assert points("chart-share") == expected("share") != {}
        assert points("chart-decisions") == expected("decisions") != {}
        rate_chart = page.locator("svg#chart-rate")
        y_label = "conversion rate" if report["reward_kind"] == "binary" else "mean reward"
        assert rate_chart.locator("text.label", has_text=y_label).count() == 1
        assert rate_chart.locator(".legend").count() == 3
        # The same call behind both: a bad bucket is a 400 saying how to write one.
        status, err = s.api("GET", "/v1/deployments/promo/timeline?bucket=5x")
        assert status == 400 and "30s, 5m, 1h, 1d" in err["error"], err
        status, err = s.api("GET", "/v1/deployments/promo/timeline?width=5m")
        assert status == 400 and "bucket" in err["error"], err
        status, err = s.api("GET", "/v1/deployments/nope/timeline")
        assert status == 404, err
        b.open("/ui/deployments/promo?bucket=5x", "deployment-bad-bucket", status=400)
        assert "30s, 5m, 1h, 1d" in page.inner_text("main")
        b.open("/ui/deployments/promo", "deployment-promo")

        # Sort the variants by decisions, both ways.
        header = page.locator("#variants th", has_text="Decisions")
        header.click()
        values = [int(x) for x in page.locator('#variants td[data-key="exposures"]').evaluate_all("els => els.map(e => e.dataset.sort)")]
        assert values == sorted(values) and len(values) == 2
        header.click()
        values = [int(x) for x in page.locator('#variants td[data-key="exposures"]').evaluate_all("els => els.map(e => e.dataset.sort)")]
        assert values == sorted(values, reverse=True)

        # The diff between the two revisions names the changed weights.
        b.open("/ui/deployments/promo?diff=1..2", "deployment-promo-diff")
        diff = page.inner_text("#diff")
        assert "- " in diff and "+ " in diff and "0.3" in diff and "0.7" in diff
        assert "more <new>" in page.inner_text("#revisions")

        b.open("/ui/deployments/scoring", "deployment-scoring")
        page.click('#variants a[href="/ui/models/bc-lr"]')
        page.wait_for_url("**/ui/models/bc-lr")

        # Models: versions, aliases and their history, who serves what.
        b.open("/ui/models", "models")
        b.open("/ui/models/bc-lr", "model-bc-lr")
        assert b.cell("aliases", "production", "version") == "1"
        assert b.cell("aliases", "staging", "version") == "2"
        history = page.inner_text("#alias-history")
        assert "try the zipmap export" in history and "pytest" in history
        assert "auc = 0.97" in b.cell("versions", "1", "metrics")
        assert "scoring" in page.locator('#versions tr[data-row="1"] td[data-key="served_by"]').inner_text()

        # The change log and its filters.
        b.open("/ui/changes", "changes")
        everything = int(page.locator('#count [data-key="shown"]').inner_text())
        assert everything >= 8
        b.open("/ui/changes?subject=deployment/promo", "changes-promo")
        assert int(page.locator('#count [data-key="shown"]').inner_text()) == 2
        b.open("/ui/changes?actor=nobody", "changes-nobody")
        assert int(page.locator('#count [data-key="shown"]').inner_text()) == 0
        b.open("/ui/changes?since=not-a-day", "changes-bad-since", status=400)
        assert "2026-12-06" in page.inner_text("main")

        # A user's mistake is a 404 page naming what is missing, with a way back.
        b.open("/ui/deployments/nope", "deployment-missing", status=404)
        assert "nope" in page.inner_text("h1")
        b.open("/ui/models/nope", "model-missing", status=404)
        b.open("/ui/deployments/promo?diff=1..9", "diff-missing", status=404)

        # Data pages act as a person: anonymous is asked to log in (auth is off, the token is
        # still verified and the catalog checks that person's grants).
        b.open("/ui/data", "data-anonymous", status=401)
        assert "Log in to see the data pages" in page.inner_text("h1")
        b.open("/ui/login?next=/ui/data", "login")
        page.fill("#token", token)
        page.click("button[type=submit]")
        page.wait_for_url("**/ui/data")
        b.open("/ui/data", "data")
        assert "signed in as ana" in page.inner_text("header")
        assert b.cell("tables", "clicks", "pii") == "1", "one column holds personal data"
        assert "user_email (email)" in page.locator('#tables tr[data-row="clicks"] td[data-key="pii"]').inner_text()
        page.click('#tables a[href="/ui/data/clicks"]')
        page.wait_for_url("**/ui/data/clicks")
        b.open("/ui/data/clicks", "data-clicks")
        assert "<b>spring</b>" in page.inner_text("main"), "escaped, shown as text"
        assert page.locator("main b", has_text="spring").count() == 0
        graph = page.locator("svg#lineage")
        for node in ("table/clicks", "model/bc-lr/1", "deployment/scoring", "decisions/scoring"):
            assert graph.locator("text", has_text=node).count() >= 1, node
        b.open("/ui/data?q=click", "data-search")
        b.open("/ui/data/nope", "data-missing", status=404)

        # Render time of the busiest page, measured in the browser (reported, not asserted).
        times = []
        for _ in range(5):
            b.open("/ui/deployments/promo", "deployment-promo")
            times.append(page.evaluate("performance.getEntriesByType('navigation')[0].responseEnd - performance.getEntriesByType('navigation')[0].requestStart"))
        print(f"\n/ui/deployments/promo: median {sorted(times)[2]:.1f} ms from request to last byte ({times})")
        assert not b.problems, b.problems
    finally:
        s.stop()

    # A damaged decision log stops that deployment only: the console says so, and still shows
    # its revisions (a page, not a 500).
    log = s.home / "experiments" / "promo" / "events.jsonl"
    data = bytearray(log.read_bytes())
    at = [i for i, c in enumerate(data) if c == ord("\n")][9] + 1
    data[at + 40] ^= 0x04
    log.write_bytes(bytes(data))
    s.start()
    try:
        b = Browser(browser, s.url)
        b.open("/ui/", "overview-failed")
        state = b.page.locator('#deployments tr[data-row="promo"] td').nth(1)
        assert state.inner_text() == "failed"
        assert "keel deployment repair promo" in (state.locator(".badge").get_attribute("title") or "")
        assert b.page.locator('#deployments tr[data-row="scoring"] td[data-key="decisions"]').inner_text() == "30"
        b.open("/ui/deployments/promo", "deployment-failed")
        assert "not serving" in b.page.inner_text("main")
        assert b.page.locator('#revisions tr[data-row="2"]').count() == 1
        assert not b.problems, b.problems
    finally:
        s.stop()


def test_login_is_required_and_the_cookie_only_opens_the_console(tmp_path: Path, browser: Any) -> None:
    s = Server(tmp_path, ["--auth", "required"], "secured")
    token = seed(s)
    s.start()
    try:
        b = Browser(browser, s.url)
        page = b.page
        b.expected_status.add("/ui/login")
        # A browser without a credential is sent to the login form, not shown a bare 401.
        page.goto(s.url + "/ui/models/bc-lr")
        assert page.url.startswith(s.url + "/ui/login?next="), page.url
        assert "requires a credential" in page.inner_text("main")
        page.fill("#token", "keel_not_a_token")
        page.click("button[type=submit]")
        assert "that token was refused" in page.inner_text("main")
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "login-refused.png"), full_page=True)
        page.fill("#token", token)
        page.click("button[type=submit]")
        page.wait_for_url("**/ui/models/bc-lr")
        assert "signed in as ana" in page.inner_text("header")
        cookies = {c["name"]: c for c in b.context.cookies()}
        cookie = cookies["keel_console"]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
        b.open("/ui/", "overview-signed-in")
        # The cookie is a credential for the console only: the JSON API ignores it.
        status, _ = s.api("GET", "/v1/deployments", headers={"cookie": f"keel_console={token}"})
        assert status == 401
        status, _ = s.api("GET", "/ui/", headers={"cookie": f"keel_console={token}"})
        assert status == 200
        # A program (no text/html) gets the JSON 401 as before.
        status, body = s.api("GET", "/ui/")
        assert status == 401 and "error" in body
        page.click("header button[type=submit]")  # log out
        page.wait_for_url("**/ui/login")
        page.goto(s.url + "/ui/")
        assert "/ui/login" in page.url
        assert not b.problems, b.problems
    finally:
        s.stop()


def test_the_deployment_page_shows_the_apis_anytime_figures(tmp_path: Path, browser: Any) -> None:
    """A fixed-weight A/B test with a uniform control group, fed 6,000 decisions and their
    rewards through the batch API: the report's anytime-valid figures (confidence sequences,
    may be best) equal an independent Python computation from the report's own counts, and the
    console's deployment page shows the same numbers as the API, beside the fixed-horizon ones."""
    import random

    from test_report_math import check_lifts, check_rates

    s = Server(tmp_path, [], "anytime")
    s.start()
    try:
        spec = {"variants": [{"name": "a"}, {"name": "b"}], "policy": {"type": "fixed_weights", "weights": [0.5, 0.5]},
                "control": {"policy": "uniform", "share": 0.3}}
        assert s.api("PUT", "/v1/deployments/ab", {"spec": spec})[0] == 200
        rng = random.Random(5)
        for chunk in range(6):
            reqs = [{"unit_id": f"u{chunk}-{i}", "context": {"region": ["north", "south"][i % 2], "before": float(i % 10)}}
                    for i in range(1000)]
            status, out = s.api("POST", "/v1/deployments/ab/decide:batch", {"requests": reqs})
            assert status == 200 and out["failed"] == 0, out
            events = []
            for i, r in enumerate(out["results"]):
                d = r["decision"]
                # last month's activity (`before`, 0-9) raises the rate: CUPED removes that part
                rate = (0.10 if d["variant"] == "a" else 0.16) + 0.03 * (i % 10 - 4.5)
                events.append({"decision_id": d["decision_id"], "reward": 1.0 if rng.random() < rate else 0.0})
            status, fb = s.api("POST", "/v1/deployments/ab/feedback:batch", {"events": events})
            assert status == 200 and fb["failed"] == 0, fb
        status, r = s.api("GET", "/v1/deployments/ab/report")
        assert status == 200, r

        # The API's figures by an independent computation. The control group rotates the
        # variants uniformly, so it is the uniform baseline; the best variant is judged within it.
        check_rates(r)
        held = r["control_group"]
        best = r["lifts"]["over_best_variant"]
        assert best["baseline"].startswith("variant b"), best["baseline"]
        best_counts = [(round(best["baseline_rate"] * best["baseline_rewards"]), best["baseline_rewards"])]
        baselines = {"over_control": [(round(held["rate"] * held["rewards"]), held["rewards"])],
                     "over_best_variant": best_counts}
        baselines["over_uniform"] = baselines["over_control"]
        assert check_lifts(r, baselines) == 3, "6,000 decisions settle every side"
        assert "anytime-valid" in r["statistics"]["anytime_valid"] and r["statistics"]["tuning_n"] == 10_000
        # b converts 60% more: the sequences already say a is not the best.
        assert [v["may_be_best"] for v in r["variants"]] == [False, True], r["variants"]

        # The console shows the API's numbers.
        b = Browser(browser, s.url)
        page = b.page
        b.open("/ui/deployments/ab", "deployment-anytime")

        def span(table: str, row: str, key: str) -> Any:
            return page.locator(f'#{table} tr[data-row="{row}"] td[data-key="{key}"] span')

        for v in r["variants"]:
            cs = span("variants", v["name"], "rate_cs")
            assert float(cs.get_attribute("data-lo")) == v["rate_cs"][0]
            assert float(cs.get_attribute("data-hi")) == v["rate_cs"][1]
            assert b.cell("variants", v["name"], "may_be_best") == ("yes" if v["may_be_best"] else "no")
            for key, field in (("lift", "lift_vs_control"), ("lift_cs", "lift_vs_control_cs")):
                lift = span("variants", v["name"], key)
                assert [float(lift.get_attribute(a)) for a in ("data-value", "data-lo", "data-hi")] == v[field]
        for group, figures in (("holdout (control)", r["control_group"]), ("policy-driven", r["treated_group"])):
            cs = span("groups", group, "rate_cs")
            assert [float(cs.get_attribute("data-lo")), float(cs.get_attribute("data-hi"))] == figures["rate_cs"]
        lift_cs = page.locator("#lift-cs")
        assert [float(lift_cs.get_attribute("data-lo")), float(lift_cs.get_attribute("data-hi"))] == \
            r["lift_over_control_group_cs"][1:]
        for row, name in (("control", "over_control"), ("uniform", "over_uniform"), ("best variant", "over_best_variant")):
            for key in ("difference", "difference_cs", "relative", "relative_cs"):
                lift = span("lifts", row, key)
                assert [float(lift.get_attribute(a)) for a in ("data-value", "data-lo", "data-hi")] == r["lifts"][name][key]
        headers = page.inner_text("#variants thead")
        assert "95% interval (fixed-horizon)" in headers and "95% sequence (anytime)" in headers
        assert "P(best) (fixed-horizon)" in headers and "May be best (anytime)" in headers
        assert not b.problems, b.problems

        # Segments by a context feature, from the decision log: the two regions add up to the
        # report, each lift has its Bonferroni-adjusted interval (m = 2: z = 2.241403 against
        # 1.959964); a feature no decision has, or an unknown parameter, is a 400 that says so.
        status, seg = s.api("GET", "/v1/deployments/ab/report?segment_by=region")
        assert status == 200, seg
        by = seg["segments"]
        assert (by["feature"], by["kind"], by["comparisons"], by["rewards"], by["missing"]) == \
            ("region", "categorical", 2, 6000, 0)
        assert [g["value"] for g in by["segments"]] == ["north", "south"]
        for i, v in enumerate(r["variants"]):
            assert sum(g["variants"][i]["rewards"] for g in by["segments"]) == v["rewards"]
        assert sum(g["control_rewards"] for g in by["segments"]) == r["control_group"]["rewards"]
        for g in by["segments"]:
            lift = g["lift_over_control"]
            d, lo, hi = lift["lift"]["difference"]
            _, alo, ahi = lift["difference_adjusted"]
            assert abs((ahi - d) / (hi - d) - 2.241403 / 1.959964) < 1e-5
        assert "Bonferroni" in by["note"]
        status, err = s.api("GET", "/v1/deployments/ab/report?segment_by=country")
        assert status == 400 and "country" in err["error"], err
        # The deployment page's breakdown shows the same figures; an unknown feature is said in
        # the section, and the rest of the page still serves.
        b.open("/ui/deployments/ab?segment_by=region&outcome=reward", "deployment-segments")
        assert page.locator("#segment-form [name=segment_by]").input_value() == "region"
        for g in by["segments"]:
            assert float(b.cell("segments", g["value"], "rewards")) == g["rewards"]
            assert float(b.cell("segments", g["value"], "treated_rate")) == g["treated_rate"]
            for key, figures in (("difference", g["lift_over_control"]["lift"]["difference"]),
                                 ("difference_adjusted", g["lift_over_control"]["difference_adjusted"])):
                lift = span("segments", g["value"], key)
                assert [float(lift.get_attribute(a)) for a in ("data-value", "data-lo", "data-hi")] == figures
            for v in g["variants"]:
                ci = span("segment-variants", f'{g["value"]}/{v["name"]}', "rate_ci")
                assert [float(ci.get_attribute("data-lo")), float(ci.get_attribute("data-hi"))] == v["rate_ci"]
        assert "Bonferroni" in page.inner_text("#segments-note")
        b.open("/ui/deployments/ab?segment_by=country", "deployment-segments-unknown")
        assert "country" in page.inner_text("#segments-error")
        assert page.locator("#variants").count() == 1
        assert not b.problems, b.problems
        status, err = s.api("GET", "/v1/deployments/ab/report?segmentby=region")
        assert status == 400 and "segment_by" in err["error"], err
        # CUPED by the pre-period covariate: the same difference, less variance.
        status, cu = s.api("GET", "/v1/deployments/ab/report?cuped=before")
        assert status == 200, cu
        c = cu["cuped"]
        assert (c["covariate"], c["baseline"], c["rewards"], c["missing"]) == ("before", "a", r["treated_group"]["rewards"], 0), c
        cmp = c["comparisons"][0]
        assert cmp["variant"] == "b" and 0.03 < cmp["variance_reduction"] <= c["correlation"] ** 2 + 0.01, c
        assert cmp["adjusted_difference"][2] - cmp["adjusted_difference"][1] < cmp["difference"][2] - cmp["difference"][1]
        status, err = s.api("GET", "/v1/deployments/ab/report?cuped=region")
        assert status == 400 and "numeric 'region'" in err["error"], err
        # The console's CUPED section shows the same figures, and says why it refuses.
        b.open("/ui/deployments/ab?cuped=before", "deployment-cuped")
        for key in ("difference", "adjusted_difference", "adjusted_difference_cs"):
            lift = span("cuped", cmp["variant"], key)
            assert [float(lift.get_attribute(a)) for a in ("data-value", "data-lo", "data-hi")] == cmp[key]
        assert float(b.cell("cuped", cmp["variant"], "variance_reduction")) == cmp["variance_reduction"]
        b.open("/ui/deployments/ab?cuped=region", "deployment-cuped-refused")
        assert "numeric 'region'" in page.inner_text("#cuped-error")
        assert not b.problems, b.problems
        # What the breakdowns compare: the decision metric by name, or a refusal naming the
        # outcomes the deployment has.
        status, named = s.api("GET", "/v1/deployments/ab/report?segment_by=region&outcome=reward")
        assert status == 200 and named["segments"] == seg["segments"], named
        status, err = s.api("GET", "/v1/deployments/ab/report?segment_by=region&outcome=refunds")
        assert status == 400 and "net" in err["error"] and "refunds" in err["error"], err
        status, err = s.api("GET", "/v1/deployments/ab/report?outcome=reward")
        assert status == 400 and "segment_by" in err["error"], err
        out = s.cli("experiment", "report", "ab", "--url", s.url, "--segment-by", "region", "--cuped", "before")
        assert "CUPED of reward by before" in out and "VARIANCE REMOVED" in out, out
        assert "reward by region (categorical; 6000 decisions with a value" in out and "Bonferroni" in out, out
        assert "FIXED: valid when the report is read once" in out and "95% CS (ANYTIME)" in out, out
    finally:
        s.stop()
    # With the server stopped, the CLI reads the decision log on disk: the same breakdowns.
    out = s.cli("--json", "experiment", "report", "ab", "--segment-by", "region", "--cuped", "before")
    offline = json.loads(out)
    assert offline["segments"] == seg["segments"] and offline["cuped"] == cu["cuped"], out


def login(b: Browser, token: str, next_path: str) -> None:
    b.page.goto(f"{b.base}/ui/login?next={next_path}")
    b.page.fill("#token", token)
    b.page.click("main button[type=submit]")
    b.page.wait_for_url(f"**{next_path}")


def test_a_second_person_approves_a_pending_alias_move_in_the_browser(tmp_path: Path, browser: Any) -> None:
    """The approvals policy holds alice's production move; alice cannot approve it in the
    console, bob can, and then the alias has moved (as bob, with both in the change log)."""
    s = Server(tmp_path, ["--auth", "required"], "approvals")
    s.cli("model", "push", "bc-lr", str(FIXTURES / "bc-lr.onnx"), "--alias", "production")
    s.cli("model", "push", "bc-lr", str(FIXTURES / "bc-rf.onnx"))
    tokens = {
        who: json.loads(s.cli("--json", "access", "token", "create", who, "--scope", "registry", "--scope", "view"))["token"]
        for who in ("alice", "bob")
    }
    declared = tmp_path / "declared"
    declared.mkdir()
    (declared / "policy.json").write_text(json.dumps({"approvals": {"aliases": ["production"]}}))
    (declared / "aliases.json").write_text(json.dumps({"bc-lr": {"production": 1}}))
    s.cli("apply", str(declared), "--yes")
    s.start()
    try:
        status, held = s.api("PUT", "/v1/models/bc-lr/aliases/production",
                             {"version": 2, "reason": "rf wins <offline>"}, tokens["alice"])
        assert status == 202, held
        change = held["change"]["id"]
        approve = f"/ui/changes/pending/{change}/approve"

        # Alice sees her change waiting and may not approve it herself.
        b = Browser(browser, s.url)
        page = b.page
        login(b, tokens["alice"], "/ui/changes/pending")
        b.open("/ui/changes/pending", "approvals-pending")
        row = page.locator(f'#pending tr[data-row="{change}"]')
        assert row.count() == 1
        assert "version 1 -> 2" in row.inner_text()
        assert "alice" in row.locator('td[data-key="by"]').inner_text()
        b.expected_status.add(approve)
        with page.expect_navigation():
            page.click(f'button.approve[data-change="{change}"]')
        assert "another person must approve" in page.inner_text("#error")
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "approvals-own-refused.png"), full_page=True)
        status, version = s.api("GET", "/v1/models/bc-lr/versions/@production", token=tokens["bob"])
        assert (status, version["version"]) == (200, 1)
        page.click("header button[type=submit]")  # log out
        page.wait_for_url("**/ui/login")

        # A form posted from another site is refused, whoever's cookie it carries.
        status, _ = s.api("POST", approve, headers={"cookie": f"keel_console={tokens['bob']}",
                                                     "origin": "http://attacker.example"})
        assert status == 403

        # Bob approves it in the browser; the alias moves, as bob.
        b.problems.clear()
        login(b, tokens["bob"], "/ui/changes/pending")
        with page.expect_navigation():
            page.click(f'button.approve[data-change="{change}"]')
        page.wait_for_url("**/ui/changes/pending?done=approved*")
        assert f"Change #{change} approved." in page.inner_text("#notice")
        assert page.locator(f'#pending tr[data-row="{change}"]').count() == 0
        decided = page.locator(f'#decided tr[data-row="{change}"]')
        assert "approved" in decided.inner_text() and "bob" in decided.inner_text()
        page.screenshot(path=str(SHOTS / "approvals-approved.png"), full_page=True)
        status, version = s.api("GET", "/v1/models/bc-lr/versions/@production", token=tokens["bob"])
        assert (status, version["version"]) == (200, 2)
        status, aliases = s.api("GET", "/v1/models/bc-lr/aliases", token=tokens["bob"])
        production = [a for a in aliases["aliases"] if a["alias"] == "production"][0]
        assert production["updated_by"] == "bob"
        b.open("/ui/changes?subject=model/bc-lr/alias/production", "approvals-change-log")
        log = page.inner_text("#changes")
        assert "change.approved" in log and "change.requested" in log
        assert not b.problems, b.problems
    finally:
        s.stop()


def wait_for(what: str, check: Any, within: float = 90.0) -> Any:
    """Polls `check()` until it returns something other than None; fails naming `what`."""
    deadline = time.time() + within
    while True:
        found = check()
        if found is not None:
            return found
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_monitoring_and_performance_show_the_libraries_figures(tmp_path: Path, browser: Any) -> None:
    """A model deployment watched by a live monitor against a reference table: decisions in
    distribution, then with feature 0 moved far away, all labelled. The deployment page's drift,
    quality and AUC equal `GET /v1/deployments/{name}/health`; the monitoring page draws both
    histograms of every column (bars adding up to the reference's and the window's rows) with
    the drift `keel monitor drift` computes on the same rows; the model's performance page shows
    `keel monitor performance`'s AUC per version."""
    s = Server(tmp_path, [], "monitoring")
    s.cli("model", "push", "bc-lr", str(FIXTURES / "bc-lr.onnx"), "--alias", "production")

    def jittered(i: int) -> list[float]:
        return [x * (1.0 + (i % 17) / 100.0) for x in ROW]

    csv = tmp_path / "bc_train.csv"
    csv.write_text(",".join(f"input_{j}" for j in range(30)) + ",label\n" + "".join(
        ",".join(str(x) for x in jittered(i)) + f",{i % 2}\n" for i in range(340)))
    s.cli("data", "ingest", str(csv), "--table", "bc_train")
    token = json.loads(s.cli("--json", "access", "token", "create", "ana", "--scope", "view", "--scope", "data:read"))["token"]
    s.start()
    try:
        spec = {"variants": [{"name": "lr", "model": "bc-lr@production"}],
                "policy": {"type": "fixed_weights", "weights": [1]},
                "monitor": {"reference": "bc_train", "ignore": ["label"], "window_seconds": 3600, "step_seconds": 1,
                            "min_rows": 40, "min_labels": 20}}
        assert s.api("PUT", "/v1/deployments/scoring", {"spec": spec})[0] == 200

        def health() -> Any:
            status, h = s.api("GET", "/v1/deployments/scoring/health")
            assert status == 200, h
            return h

        wait_for("a ready monitor", lambda: True if health()["monitor"]["state"] == "ready" else None)
        labels = []
        for i in range(120):
            x = jittered(i)
            if i >= 80:
                x[0] = ROW[0] * 3.0 + i / 10.0
            status, d = s.api("POST", "/v1/deployments/scoring/decide",
                              {"unit_id": f"u{i}", "inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": x}]})
            assert status == 200, d
            labels.append({"prediction_id": d["prediction_id"], "label": int(i % 3 == 0)})
        status, stored = s.api("POST", "/v1/labels", labels)
        assert status == 200, stored
        wait_for("a window of 120 rows with a live AUC", lambda: True if (
            (health()["monitor"].get("last_window") or {}).get("window_rows_seen") == 120
            and health()["monitor"]["auc"] is not None) else None)

        b = Browser(browser, s.url)
        page = b.page
        b.open("/ui/deployments/scoring", "deployment-monitored")
        m = health()["monitor"]
        assert float(page.locator("#live-auc").get_attribute("data-value")) == m["auc"]
        assert int(page.locator("[data-key=\"labelled\"]").first.inner_text()) == m["labelled"] == 120
        for c in m["last_window"]["features"]["columns"]:
            assert float(b.cell("drift", c["name"], "score")) == c["score"], c["name"]
            assert b.cell("drift", c["name"], "drifted") == str(int(c["drifted"])), c["name"]
        # The window compares all 120 rows (a burst within a second of an hour-long window is
        # kept whole), so the 40 shifted ones flag input_0, and the page says so.
        assert m["last_window"]["window_rows_compared"] == 120, m["last_window"]
        assert "input_0" in m["last_window"]["features"]["drifted_columns"], m["last_window"]["features"]
        assert b.cell("drift", "input_0", "drifted") == "1"
        for column, counts in m["quality"].items():
            for kind, n in counts.items():
                assert int(b.cell("quality", column, kind)) == n, (column, kind)
        for p in m["last_window"]["predictions"]:
            assert float(b.cell("score-drift", p["name"], "score")) == p["score"]

        # The monitoring page reads the tables as the signed-in person.
        login(b, token, "/ui/deployments/scoring/monitoring")

        def monitoring_rows() -> Any:
            b.open("/ui/deployments/scoring/monitoring", "monitoring")
            return True if page.locator('[data-key="current_rows"]').inner_text() == "120" else None

        wait_for("the window's 120 rows in the prediction log", monitoring_rows)
        assert page.locator('[data-key="reference_rows"]').inner_text() == "340"
        for column in ("input_0", "input_5"):
            chart = page.locator(f"svg#hist-{column}")
            assert chart.locator("text.label", has_text="share of rows").count() == 1
            assert chart.locator(".legend").count() == 2
            for side, rows in (("reference bc_train", 340), ("window", 120)):
                counts = chart.locator(f'rect.bar[data-series="{side}"]').evaluate_all("els => els.map(e => +e.dataset.count)")
                assert len(counts) == 20 and sum(counts) == rows, (column, side, counts)
        offline = json.loads(s.cli("--json", "monitor", "drift", "scoring", "--reference", "bc_train", "--ignore", "label",
                                   "--window-seconds", "3600"))
        for c in offline["features"]["columns"]:
            assert float(b.cell("drift", c["name"], "score")) == pytest.approx(c["score"], abs=1e-9), c["name"]
            assert b.cell("drift", c["name"], "drifted") == str(int(c["drifted"])), c["name"]

        # Performance over time once labels arrive, as `keel monitor performance` reports it.
        def performance() -> Any:
            report = json.loads(s.cli("--json", "monitor", "performance", "bc-lr", "--bucket", "hour"))
            return report if report["versions"] and report["versions"][0]["labelled"] == 120 else None

        report = wait_for("the labels in the lake", performance)
        b.open("/ui/models/bc-lr", "model-monitored")
        page.click("#performance-link")
        page.wait_for_url("**/ui/models/bc-lr/performance")
        b.open("/ui/models/bc-lr/performance", "model-performance")
        v = report["versions"][0]
        assert float(b.cell("performance", "v1@all", "auc")) == v["auc"]
        assert int(b.cell("performance", "v1@all", "labelled")) == 120
        for g in report["buckets"]:
            assert float(b.cell("performance", f"v1@{g['bucket']}", "auc")) == g["auc"]
        assert page.locator("svg#chart-auc circle").count() == len(report["buckets"])
        b.open("/ui/models/bc-lr/performance?bucket=week", "performance-bad-bucket", status=400)
        assert "hour or day" in page.inner_text("main")
        assert not b.problems, b.problems
    finally:
        s.stop()
