"""A real Prometheus scrapes a real worker with the shipped scrape config (issue 5).

Prometheus (Debian's `prometheus` binary) runs on a free loopback port with its
TSDB in a temporary directory and deploy/prometheus/prometheus.yml — the shipped
`rater` job and rule files, only the target pointed at this module's worker and
the intervals shortened to 1 s. Known CDRs go through the worker (tests/
integration/ops_traffic.py works the numbers out by hand) and the counters are
read back through Prometheus's HTTP query API until they equal those numbers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from rater.rating.clock import now_ms
from tests.deploy._support import ALERTS
from tests.deploy.promconfig import prometheus_config
from tests.integration import ops_traffic as ops
from tests.integration.harness import Deployment, Worker, free_port, running_worker

pytestmark = pytest.mark.integration

JOB = "rater"
SETTLE_TIMEOUT_S = 45.0


class Prometheus:
    """`prometheus` in a subprocess on 127.0.0.1, its TSDB and log under `workdir`."""

    def __init__(self, workdir: Path, targets: list[str]) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("the prometheus binary is not installed: apt-get install prometheus")
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        config = prometheus_config(targets, job=JOB, with_rules=True)
        config["global"].update(scrape_interval="1s", scrape_timeout="1s",
                                evaluation_interval="1s")
        for job in config["scrape_configs"]:
            job.update(scrape_interval="1s", scrape_timeout="1s")
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log_path = workdir / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Prometheus:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, f"--config.file={self.config_path}",
                 f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}",
                 "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited with {self.process.returncode}:\n"
                                     f"{self.log_path.read_text(errors='replace')}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus not ready after {timeout:.0f}s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=5) as answer:
            body = json.loads(answer.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str, *by: str) -> dict[Any, float]:
        """An instant query: {label value (tuple when several `by`): value}."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        out: dict[Any, float] = {}
        for item in data["result"]:
            key = tuple(item["metric"].get(name, "") for name in by)
            out[key[0] if len(key) == 1 else key] = float(item["value"][1])
        return out


def settle(read: Callable[[], dict[str, Any]], want: dict[str, Any],
           timeout: float = SETTLE_TIMEOUT_S) -> None:
    """Poll `read()` until it equals `want` exactly; fail showing the difference."""
    deadline = time.monotonic() + timeout
    got: dict[str, Any] = {}
    while time.monotonic() < deadline:
        got = read()
        if got == want:
            return
        time.sleep(0.5)
    diff = {k: (got.get(k), want.get(k)) for k in set(got) | set(want) if got.get(k) != want.get(k)}
    raise AssertionError(f"Prometheus never showed the expected values; (got, want): {diff}")


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    yield Deployment(partitions=3)


@pytest.fixture(scope="module")
async def worker(deployment: Deployment) -> AsyncIterator[Worker]:
    async with running_worker(deployment) as running:
        yield running


@pytest.fixture(scope="module")
def prometheus(worker: Worker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    server = Prometheus(tmp_path_factory.mktemp("prometheus"), [f"127.0.0.1:{worker.port}"])
    server.start()
    try:
        yield server
    finally:
        server.stop()


def sel(name: str, **labels: str) -> str:
    matchers = ",".join([f'job="{JOB}"'] + [f'{k}="{v}"' for k, v in labels.items()])
    return f"{name}{{{matchers}}}"


def counters(prom: Prometheus) -> dict[str, Any]:
    """Every counter the traffic moves, as Prometheus answers it now."""
    return {
        "cdrs": prom.query(f"sum by (outcome) ({sel('rater_cdrs_total')})", "outcome"),
        "seconds": prom.query(f"sum by (zone, kind) ({sel('rater_billable_seconds_total')})",
                              "zone", "kind"),
        "dead_letters": prom.query(
            f"sum by (reason) ({sel('rater_dead_letters_total', source='cdr')})", "reason"),
        "charges": prom.query(f"sum({sel('rater_overage_charges_total')})").get((), 0.0),
        "amount": {k: round(v, 6) for k, v in prom.query(
            f"sum by (currency) ({sel('rater_overage_amount_total')})", "currency").items()},
        "alerts": prom.query(f"sum by (threshold) ({sel('rater_threshold_alerts_total')})",
                             "threshold"),
        "subscription_events": prom.query(
            f"sum by (type) ({sel('rater_subscription_events_total')})", "type"),
    }


def as_float(values: Mapping[Any, float]) -> dict[Any, float]:
    return {k: float(v) for k, v in values.items()}


@pytest.fixture(scope="module")
async def driven(deployment: Deployment, worker: Worker, prometheus: Prometheus) -> str:
    """Both phases of the known traffic, with Prometheus scraping in between; returns
    the worker's instance label. Phase 1's values are checked here, as read through
    Prometheus before phase 2 moves them on (the leakage alert needs that rise)."""
    settings = deployment.settings
    instance = f"127.0.0.1:{worker.port}"
    # the shipped job scrapes the worker: up == 1 for exactly this target
    settle(lambda: {"up": prometheus.query(sel("up"), "instance")}, {"up": {instance: 1.0}})

    await ops.load_subscriptions(settings)
    traffic = ops.build_traffic(now_ms())
    await ops.drive(settings, traffic.phase1, rated=3, dead=0)
    settle(lambda: {k: v for k, v in counters(prometheus).items() if k in ("cdrs", "seconds")},
           {"cdrs": as_float(ops.PHASE1_OUTCOMES), "seconds": as_float(ops.PHASE1_SECONDS)})
    await ops.drive(settings, traffic.phase2, rated=ops.RATED_RECORDS,
                    dead=ops.DEAD_TOTAL)
    return instance


def test_prometheus_reads_back_the_exact_counters(
    deployment: Deployment, prometheus: Prometheus, driven: str
) -> None:
    settle(lambda: counters(prometheus), {
        "cdrs": as_float(ops.OUTCOMES),
        "seconds": as_float(ops.SECONDS),
        "dead_letters": as_float(ops.DEAD_LETTERS),
        "charges": float(ops.CHARGES),
        "amount": ops.AMOUNT,
        "alerts": as_float(ops.THRESHOLD_ALERTS),
        "subscription_events": as_float(ops.SUBSCRIPTION_EVENTS),
    })
    # one target, one series per label set: nothing above was summed over instances
    assert prometheus.query(sel("up"), "instance") == {driven: 1.0}
    assert prometheus.query(sel("rater_ready"), "instance") == {driven: 1.0}
    assert set(prometheus.query(sel("rater_cdrs_total"), "instance")) == {driven}
    assert len(prometheus.api("query", query=sel("rater_cdrs_total"))["result"]) == len(
        ops.OUTCOMES)
    # the rating histograms came through too: 40 CDRs over one or more batches
    assert prometheus.query(f"sum({sel('rater_rating_batch_size_sum')})") == {(): 40.0}
    batches = prometheus.query(f"sum({sel('rater_rating_batch_size_count')})")[()]
    assert prometheus.query(
        f"sum({sel('rater_rating_batch_duration_seconds_count')})") == {(): batches}
    assert 2 <= batches <= 40
    # consumer lag of every partition of the CDR topic, drained to 0
    settings = deployment.settings
    settle(lambda: {"lag": prometheus.query(
        sel("rater_consumer_lag_messages", topic=settings.topics.cdr), "partition")},
        {"lag": {str(p): 0.0 for p in range(deployment.partitions)}})


def test_prometheus_loads_the_shipped_alert_rules(prometheus: Prometheus, driven: str) -> None:
    def rules() -> dict[str, Any]:
        groups = prometheus.api("rules")["groups"]
        return {rule["name"]: rule for group in groups for rule in group["rules"]}

    loaded = rules()
    assert set(ALERTS) <= set(loaded), f"missing: {set(ALERTS) - set(loaded)}"
    # every rule evaluates against the live series without error
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while any(r["health"] != "ok" for r in loaded.values()) and time.monotonic() < deadline:
        time.sleep(0.5)
        loaded = rules()
    assert {name: (r["health"], r.get("lastError")) for name, r in loaded.items()
            if r["health"] != "ok"} == {}
    # the worker is up and ready: neither availability alert is even pending
    assert loaded["RaterDown"]["state"] == "inactive"
    assert loaded["RaterNotReady"]["state"] == "inactive"


def test_revenue_leakage_alert_goes_pending_on_live_unbilled_seconds(
    prometheus: Prometheus, driven: str
) -> None:
    """Phase 2 moved domestic unbilled seconds from 60 to 300 between scrapes, so
    the RaterRevenueLeakage rule sees a positive rate: pending (its `for` is 15m)."""
    def leakage() -> dict[str, Any]:
        alerts = prometheus.api("alerts")["alerts"]
        return {"pending": sorted(a["labels"]["zone"] for a in alerts
                                  if a["labels"]["alertname"] == "RaterRevenueLeakage"
                                  and a["state"] == "pending")}

    settle(leakage, {"pending": ["domestic"]})
