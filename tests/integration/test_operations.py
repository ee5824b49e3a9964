"""What an operator uses, against one real worker under simulated traffic (shared by the tests):
Prometheus metrics, the Grafana dashboard's queries, the operator page in headless Chromium,
a librdkafka client (kcat) on both sides, and re-driving dead letters.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from schemas import View
from streams.admin import create_topics
from streams.cli import build_parser
from streams.embedded import free_port, start_process
from streams.metrics import PREFIX
from streams.partitioning import partition_for
from streams.producer import to_wire
from streams.settings import Settings
from tests.conftest import WorkerProcess, run

pytestmark = pytest.mark.integration
ROOT = Path(__file__).parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "coursepulse.json"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
KCAT = shutil.which("kcat") or shutil.which("kafkacat")
NOW = int(time.time() * 1000) - 3_600_000


@dataclasses.dataclass
class Ops:
    settings: Settings
    worker: WorkerProcess
    env: dict[str, str]
    kcat_env: dict[str, str] | None = None

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.worker.port}/metrics", timeout=5) as r:
            assert r.headers["Content-Type"].startswith("text/plain")
            return r.read().decode()

    def families(self) -> dict[str, object]:
        return {f.name: f for f in text_string_to_metric_families(self.metrics_text())}

    def profile(self, user_id: str) -> dict | None:
        return self.worker.get_json(f"/profiles/{user_id}")


@pytest.fixture(scope="module")
def ops(services: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ops]:
    """One worker (memory store, 4 partitions) and the simulator producing ~60 events/s."""
    tag = uuid.uuid4().hex[:8]
    settings = dataclasses.replace(services, topic_prefix=f"ops{tag}-", app_id=f"cp-ops-{tag}",
                                   redis_prefix=f"cp-test-ops-{tag}:", partitions=4, store="memory://")
    run(create_topics(settings))
    tmp = tmp_path_factory.mktemp("ops")
    port = free_port()
    env = {**os.environ, **settings.to_env(), "COURSEPULSE_WEB_PORT": str(port),
           "COURSEPULSE_DATA_DIR": str(tmp / "w0"), "PYTHONUNBUFFERED": "1"}
    worker = WorkerProcess(start_process([sys.executable, "-m", "streams.cli", "worker"], tmp / "w0.log", env),
                           port, tmp / "w0.log")
    sim = None
    try:
        worker.wait_until(lambda: worker.get_json("/healthz") is not None, 60, "the worker's web server")
        sim = start_process([sys.executable, "-m", "streams.cli", "simulate", "--rate", "60", "--duration", "300",
                             "--users", "300", "--days", "30", "--bad-fraction", "0.03"], tmp / "sim.log", env)
        worker.wait_until(lambda: worker.counter("events_in") > 300 and worker.counter("recommendations_published") > 0,
                          90, "simulated traffic processed")
        yield Ops(settings, worker, env)
    finally:
        if sim is not None and sim.poll() is None:
            sim.terminate()
            sim.wait(timeout=20)
        worker.stop()


# --------------------------------------------------------------------------- metrics


def test_metrics_parse_every_family_has_help_and_the_live_figures_are_there(ops: Ops):
    ops.worker.wait_until(lambda: ops.worker.counter("dlq") > 0, 60, "a dead letter from the simulator")
    families = ops.families()
    undocumented = [name for name, f in families.items() if not f.documentation]
    assert not undocumented
    assert not [name for name, f in families.items() if "Not declared" in f.documentation]

    def samples(family: str, suffix: str = "") -> list:
        return [s for s in families[PREFIX + family].samples if s.name == PREFIX + family + suffix]

    topics = {s.labels["topic"] for s in samples("events_in", "_total")}
    assert topics <= {"views", "purchases", "shares"} and "views" in topics
    assert all(s.labels["kind"] for s in samples("dlq", "_total"))
    lag = samples("consumer_lag")
    assert {s.labels["topic"] for s in lag} >= {"views", "purchases", "shares"}
    assert {int(s.labels["partition"]) for s in lag if s.labels["topic"] == "views"} == set(range(4))
    assert all(s.value >= 0 for s in lag)
    assert {s.labels["partition"] for s in samples("watermark_ms")} <= {"0", "1", "2", "3"}
    latency = families[PREFIX + "event_output_latency_seconds"]
    assert latency.type == "histogram"
    count = [s for s in latency.samples if s.name.endswith("_count") and s.labels["topic"] == "views"]
    assert count and count[0].value > 0
    assert samples("recovery_completed")[0].value == 1
    assert samples("redis_behind") and samples("redis_resync_needed")[0].value == 0
    assert samples("churn_model_labels")  # one per owned partition
    assert {s.labels["segment"] for s in samples("profiles_published", "_total")}
    ops.worker.wait_until(lambda: ops.worker.counter("rec_discoveries") > 0, 30, "a discovery after a list")
    assert 0 <= ops.worker.stats()["rec_hit_rate"] <= 1
    sent = {s.labels["topic"] for s in samples("records_sent", "_total")}
    assert {"recommendations", "user-profiles", "events-dlq"} <= sent
    # /stats: the same figures as JSON
    stats = ops.worker.stats()
    assert stats["events_in"]["views"] > 0 and "views:0" in stats["consumer_lag"]
    assert stats["event_output_latency_seconds"]["views"]["count"] > 0
    # /consumer: the same reader of the consumer, per partition, with what continuity expects next
    page = ops.worker.get_json("/consumer")
    views = {row["partition"]: row for row in page["assigned"] if row["topic"] == ops.settings.topic("views")}
    assert set(views) == set(range(4)) and page["flow_control_active"] is True
    assert all(row["expected"] is not None and row["committed"] is not None for row in views.values())
    assert all(row["end"] is None or row["end"] >= row["committed"] for row in views.values())


def _dashboard_metric_names() -> set[str]:
    """Every metric name in the dashboard's PromQL expressions (as queried: a sample name such
    as ``coursepulse_events_in_total`` or ``..._bucket``)."""
    names = set()
    for panel in orjson.loads(DASHBOARD.read_bytes())["panels"]:
        for target in panel["targets"]:
            names.update(re.findall(r"\b(coursepulse_[a-z0-9_]+)", target["expr"]))
    return names


def test_every_metric_the_dashboard_queries_is_exported(ops: Ops):
    wanted = _dashboard_metric_names()
    assert len(wanted) > 20
    families = ops.families()
    # a family's sample names (counter: _total; histogram: _bucket, _sum, _count), also before
    # any sample exists
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    exported = {name + suffix for name, f in families.items() for suffix in suffixes.get(f.type, ("",))}
    assert not wanted - exported, f"the dashboard queries metrics the worker does not export: {sorted(wanted - exported)}"
    # and the core ones carry samples on a live worker
    for name in ("events_in", "consumer_lag", "event_output_latency_seconds", "records_sent", "profiles_published"):
        assert families[PREFIX + name].samples, name


# --------------------------------------------------------------------------- the operator page


def _user_with_a_list(ops: Ops) -> str:
    stats = ops.worker.get_json("/ops/recent?n=50") or {}
    for alert in stats.get("alerts", []):
        if ops.profile(alert["record"]["user_id"]):
            return alert["record"]["user_id"]
    import redis

    r = redis.Redis.from_url(ops.settings.redis_url, **ops.settings.redis_options())
    for key in r.scan_iter(f"{ops.settings.redis_prefix}rec:*", count=200):
        return key.decode().rsplit(":", 1)[1]
    pytest.fail("no user with a list in Redis")


@pytest.mark.e2e
def test_operator_page_in_headless_chromium_shows_live_numbers_and_a_user(ops: Ops, tmp_path: Path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's `chromium`; apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api", reason="the test extra installs playwright")
    user = _user_with_a_list(ops)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1500})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"http://127.0.0.1:{ops.worker.port}/")
            assert page.title() == "CoursePulse worker"
            page.wait_for_selector("#throughput td.n", timeout=15_000)
            page.wait_for_selector("#lag td.n", timeout=15_000)

            def total_views() -> float:
                row = page.locator("#throughput tr", has_text="views").first.locator("td").nth(2).inner_text()
                return float(row.replace(",", ""))

            first = total_views()
            page.wait_for_function(
                "(n) => { const r = [...document.querySelectorAll('#throughput tr')].find(t => t.textContent.startsWith('views'));"
                " return r && Number(r.cells[2].textContent.replace(/,/g, '')) > n; }", arg=first, timeout=20_000)
            assert total_views() > first  # live: the numbers move
            assert "views:0" in page.inner_text("#lag")
            assert page.locator("#dlqkinds td").count() >= 3
            page.wait_for_selector("#dlq td code", timeout=15_000)  # the latest dead letters, with their original
            assert "recommendation HR@N" in page.inner_text("#quality")
            page.fill("#uid", user)
            page.click("#lookup button")
            page.wait_for_selector("#user-profile", timeout=10_000)
            assert user in page.inner_text("#user-profile")
            page.wait_for_selector("#user-recs tr >> nth=1", timeout=10_000)
            page.fill("#uid", "nobody-at-all")
            page.click("#lookup button")
            page.wait_for_function("document.querySelector('#user-profile').textContent.includes('no profile')")
            page.fill("#uid", user)
            page.click("#lookup button")
            page.wait_for_selector("#user-recs tr >> nth=1", timeout=10_000)
            shot = Path(os.environ.get("COURSEPULSE_OPERATOR_SCREENSHOT", tmp_path / "operator-page.png"))
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            assert not errors, errors
        finally:
            browser.close()


# --------------------------------------------------------------------------- a librdkafka client


def _librdkafka_env(tmp: Path) -> dict[str, str]:
    """kcat's environment. librdkafka before 2.1 (Debian 12 ships 2.0.2) mis-skips the tagged
    fields of an ApiVersions v3 response (Tansu sends four; the handshake fails with "Read
    underflow"): kcat then runs on the librdkafka of the ``confluent-kafka`` wheel (test extra)."""
    version = re.search(rb"librdkafka (\d+)\.(\d+)", subprocess.run([KCAT, "-V"], capture_output=True, check=False).stdout)
    if version and (int(version[1]), int(version[2])) >= (2, 1):
        return dict(os.environ)
    import importlib.util

    spec = importlib.util.find_spec("confluent_kafka")
    libs = sorted(Path(spec.origin).parents[1].glob("confluent_kafka.libs/librdkafka*.so*")) if spec and spec.origin else []
    if not libs:
        pytest.skip("kcat's librdkafka is older than 2.1 and no newer one is at hand (pip install confluent-kafka)")
    (tmp / "librdkafka.so.1").symlink_to(libs[0])
    return {**os.environ, "LD_LIBRARY_PATH": f"{tmp}:{os.environ.get('LD_LIBRARY_PATH', '')}"}


def _kcat(ops: Ops, *args: str, stdin: bytes | None = None, timeout: float = 60) -> bytes:
    proc = subprocess.run([KCAT, "-b", ops.settings.bootstrap_servers, *args], input=stdin, env=ops.kcat_env,
                          capture_output=True, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    return proc.stdout


def test_kcat_produces_with_librdkafka_default_partitioner_and_reads_the_outputs(ops: Ops, tmp_path: Path):
    if KCAT is None:
        pytest.skip("kcat is not installed (.ci/run installs Debian's `kcat`; apt-get install kcat)")
    ops.kcat_env = _librdkafka_env(tmp_path)
    tag = uuid.uuid4().hex[:6]
    users = [f"kcat-{tag}-{i}" for i in range(8)]
    lines = []
    for i, uid in enumerate(users):
        for j in range(3):
            view = View(event_id=f"{uid}-v{j}", user_id=uid, ts=NOW + j * 60_000, schema_version=1,
                        course_id=f"c{(i + j) % 5}", lesson_id=f"l{j}", watch_seconds=300.0, progress=0.3 * (j + 1))
            _, key, value = to_wire(view)
            lines.append(key + b"\t" + value)
    before = ops.worker.counter("mispartitioned")
    # librdkafka's default partitioner (consistent_random: CRC32 of the key), not Kafka's murmur2
    _kcat(ops, "-P", "-t", ops.settings.topic("views"), "-K", "\t", stdin=b"\n".join(lines) + b"\n")
    ops.worker.wait_until(lambda: all((ops.profile(u) or {}).get("views") == 3 for u in users), 60,
                          "every kcat user's three views in their profile")
    assert ops.worker.counter("mispartitioned") > before  # some keys' CRC32 and murmur2 partitions differ

    def read(topic: str) -> dict[str, tuple[int, dict]]:
        out = _kcat(ops, "-C", "-t", ops.settings.topic(topic), "-o", "beginning", "-e", "-q", "-X", "fetch.wait.max.ms=20",
                    "-f", "%k\t%p\t%s\n")
        latest = {}
        for line in out.splitlines():
            key, partition, value = line.split(b"\t", 2)
            if key.decode() in users:
                latest[key.decode()] = (int(partition), orjson.loads(value))
        return latest

    profiles = read("user-profiles")
    assert set(profiles) == set(users)
    for uid, (partition, profile) in profiles.items():
        assert partition == partition_for(uid.encode(), ops.settings.partitions)  # the owner's partition
        assert profile["user_id"] == uid and profile["views"] == 3 and profile["purchases"] == 0
    lists = read("recommendations")
    assert lists, "no recommendation list for the kcat users"
    for uid, (partition, rec) in lists.items():
        assert partition == partition_for(uid.encode(), ops.settings.partitions)
        assert rec["user_id"] == uid and rec["items"]


# --------------------------------------------------------------------------- dead letters


def _cli(ops: Ops, monkeypatch: pytest.MonkeyPatch, *argv: str) -> str:
    for name, value in ops.settings.to_env().items():
        monkeypatch.setenv(name, value)
    out = io.StringIO()
    from streams.dlq import run_dlq

    args = build_parser().parse_args(list(argv))
    assert run_dlq(args, out) == 0
    return out.getvalue()


def test_mis_keyed_records_redriven_with_fix_key_land_exactly_once(ops: Ops, monkeypatch: pytest.MonkeyPatch):
    tag = uuid.uuid4().hex[:6]
    users = [f"dlq-{tag}-{i}" for i in range(3)]
    records = []
    for uid in users:
        for j in range(2):
            view = View(event_id=f"{uid}-v{j}", user_id=uid, ts=NOW + j * 60_000, schema_version=1,
                        course_id=f"c{j}", lesson_id=f"l{j}", watch_seconds=120.0, progress=0.5)
            _, _, value = to_wire(view)
            records.append((b"the-session-id", value))  # a producer keying by the wrong field

    async def send() -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=ops.settings.bootstrap_servers)
        await producer.start()
        try:
            for key, value in records:
                await producer.send(ops.settings.topic("views"), key=key, value=value)
            await producer.flush()
        finally:
            await producer.stop()

    run(send())

    def mine() -> list[dict]:
        out = _cli(ops, monkeypatch, "dlq", "list", "--kind", "key_mismatch", "--since", "10m", "--json")
        return [d for d in map(json.loads, out.splitlines()) if tag in (d.get("original_text") or "")]

    deadline = time.monotonic() + 30
    while len(mine()) < len(records) and time.monotonic() < deadline:
        time.sleep(0.5)
    letters = mine()
    assert len(letters) == len(records)
    assert all(d["source_topic"] == ops.settings.topic("views") and "the-session-id" in d["error"] for d in letters)
    assert all(ops.profile(u) is None for u in users)
    listing = _cli(ops, monkeypatch, "dlq", "list", "--kind", "key_mismatch")
    assert "key_mismatch" in listing and "dead letters" in listing.splitlines()[-1]

    dry = _cli(ops, monkeypatch, "dlq", "redrive", "--kind", "key_mismatch", "--since", "10m", "--fix-key", "--dry-run")
    assert dry.startswith("would re-send ")
    time.sleep(1.0)
    assert all(ops.profile(u) is None for u in users)  # a dry run sends nothing

    for attempt in range(2):  # re-driving twice: the second time every event is a repeat
        out = _cli(ops, monkeypatch, "dlq", "redrive", "--kind", "key_mismatch", "--since", "10m", "--fix-key", "--json")
        report = json.loads(out.splitlines()[-1])
        assert report["sent"] >= len(records) and not report["dry_run"]
        if attempt == 0:
            ops.worker.wait_until(lambda: all((ops.profile(u) or {}).get("views") == 2 for u in users), 60,
                                  "the re-driven views in the users' profiles")
    # a new event per user, sent after the second redrive to the same partitions: once it is
    # applied, the re-sent repeats before it were too
    records = []
    for uid in users:
        view = View(event_id=f"{uid}-after", user_id=uid, ts=NOW + 600_000, schema_version=1,
                    course_id="c9", lesson_id="l9", watch_seconds=60.0, progress=0.1)
        _, key, value = to_wire(view)
        records.append((key, value))
    run(send())
    ops.worker.wait_until(lambda: all((ops.profile(u) or {}).get("views") == 3 for u in users), 60,
                          "the event sent after the second redrive")
    for uid in users:
        assert ops.profile(uid)["views"] == 3  # 2 re-driven views applied once (after two redrives) + 1
