"""The deployment files (Dockerfile, docker-compose.yml, deploy/k8s/) agree with the code.

Docker and a cluster are not needed: the files are parsed and checked against
``streams.settings.ENV`` (every environment variable is a known setting) and
``streams.cli.build_parser()`` (every command line of a CoursePulse container parses).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.cli import build_parser
from streams.settings import ENV, Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s"

#: environment variables that are deliberately not settings of streams/settings.py
NON_SETTINGS = frozenset({"PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PATH"})

COURSEPULSE_SERVICES = ("topics", "worker", "simulator")
WORKER_KINDS = ("StatefulSet", "Deployment", "Job")


# --------------------------------------------------------------------------- helpers


def _resolve(value: Any, environ: dict[str, str] | None = None) -> str:
    """Compose variable interpolation (``${VAR:-default}``, ``${VAR-default}``, ``${VAR}``,
    ``$VAR``, ``$$``) against ``environ`` (default: nothing set, i.e. the file's defaults)."""
    environ = environ or {}
    text = str(value)

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("braced") or m.group("bare")
        op, default = m.group("op"), m.group("default") or ""
        if name in environ and (op != ":-" or environ[name] != ""):
            return environ[name]
        return default if op else ""

    pattern = r"\$\$|\$\{(?P<braced>\w+)(?:(?P<op>:?-)(?P<default>[^}]*))?\}|\$(?P<bare>\w+)"
    return re.sub(pattern, sub, text)


def _env_dict(environment: Any) -> dict[str, str]:
    """A compose ``environment`` (mapping or list of ``K=V``) as a dict of raw strings."""
    if environment is None:
        return {}
    if isinstance(environment, dict):
        return {str(k): "" if v is None else str(v) for k, v in environment.items()}
    out: dict[str, str] = {}
    for item in environment:
        key, _, val = str(item).partition("=")
        out[key] = val
    return out


def _parses(argv: list[str]) -> Any:
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits on bad input
        pytest.fail(f"`coursepulse {' '.join(argv)}` does not parse (exit {exc.code})")


def _assert_known_env(names: Any, where: str) -> None:
    unknown = sorted(set(names) - set(ENV) - NON_SETTINGS)
    assert not unknown, f"{where}: not settings of streams/settings.py: {unknown}"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


@pytest.fixture(scope="module")
def worker_env(services: dict[str, Any]) -> dict[str, str]:
    return {k: _resolve(v) for k, v in _env_dict(services["worker"].get("environment")).items()}


def _k8s_files() -> list[Path]:
    return sorted(p for p in K8S.iterdir() if p.suffix in (".yaml", ".yml") and p.stem != "kustomization")


@pytest.fixture(scope="module")
def k8s_docs() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in _k8s_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path, doc))
    return docs


def _one(docs: list[tuple[Path, dict[str, Any]]], kind: str) -> dict[str, Any]:
    found = [d for _, d in docs if d.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def configmap(k8s_docs: list[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    return _one(k8s_docs, "ConfigMap")


@pytest.fixture(scope="module")
def cm_settings(configmap: dict[str, Any]) -> Settings:
    return Settings.from_env({k: str(v) for k, v in configmap["data"].items()})


@pytest.fixture(scope="module")
def statefulset(k8s_docs: list[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    return _one(k8s_docs, "StatefulSet")


def _workloads(docs: list[tuple[Path, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """(``Kind/name``, container) of every container of every workload."""
    out = []
    for _, doc in docs:
        if doc.get("kind") in WORKER_KINDS:
            pod = doc["spec"]["template"]["spec"]
            for c in [*pod.get("initContainers", []), *pod["containers"]]:
                out.append((f"{doc['kind']}/{doc['metadata']['name']}", c))
    return out


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        instr, _, args = buf.partition(" ")
        out.append((instr.upper(), args.strip()))
        buf = ""
    return out


def _final_stage() -> list[tuple[str, str]]:
    instrs = _dockerfile_instructions()
    last_from = max(i for i, (instr, _) in enumerate(instrs) if instr == "FROM")
    return instrs[last_from:]


def _dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instr, args in _final_stage():
        if instr == "ENV":
            for token in shlex.split(args):
                key, _, val = token.partition("=")
                env[key] = val
    return env


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile_entrypoint_cmd_and_base() -> None:
    stage = _final_stage()
    assert stage[0][1].split()[0] == "python:3.11-slim"
    entry = [json.loads(a) for i, a in stage if i == "ENTRYPOINT"]
    cmd = [json.loads(a) for i, a in stage if i == "CMD"]
    assert entry == [["coursepulse"]]
    assert cmd == [["worker"]]
    _parses(cmd[0])


def test_dockerfile_installs_rocksdb_extra() -> None:
    runs = " ".join(a for i, a in _dockerfile_instructions() if i == "RUN")
    assert re.search(r"pip install [^&;]*[\"']?\.\[rocksdb\][\"']?", runs), "pip install .[rocksdb] missing"


def test_dockerfile_non_root_port_and_healthcheck() -> None:
    stage = _final_stage()
    users = [a for i, a in stage if i == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    exposed = {a for i, a in stage if i == "EXPOSE"}
    env = _dockerfile_env()
    port = env.get("COURSEPULSE_WEB_PORT", str(ENV["COURSEPULSE_WEB_PORT"][1]))
    assert port in exposed
    health = [a for i, a in stage if i == "HEALTHCHECK"]
    assert len(health) == 1 and "/readyz" in health[0] and "python" in health[0]
    assert "curl" not in health[0]


def test_dockerfile_env_are_settings() -> None:
    env = _dockerfile_env()
    _assert_known_env(env, "Dockerfile ENV")
    settings = Settings.from_env(env)
    assert settings.store.startswith("rocksdb")
    # the data dir is created (and chowned) in the image, so fresh volumes are writable
    runs = " ".join(a for i, a in _final_stage() if i == "RUN")
    assert settings.data_dir in runs


# --------------------------------------------------------------------------- docker-compose.yml


def test_compose_shares_one_env_block(compose: dict[str, Any], services: dict[str, Any]) -> None:
    shared = _env_dict(compose["x-coursepulse-env"])
    _assert_known_env(shared, "x-coursepulse-env")
    for name in COURSEPULSE_SERVICES:
        assert _env_dict(services[name].get("environment")) == shared, f"{name} env differs"


def test_compose_env_are_settings(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        is_ours = "build" in svc or str(svc.get("image", "")).startswith("coursepulse")
        assert is_ours == (name in COURSEPULSE_SERVICES), name
        if is_ours:
            _assert_known_env(_env_dict(svc.get("environment")), f"compose service {name}")


def test_compose_commands_parse(services: dict[str, Any]) -> None:
    expected = {"topics": "topics", "worker": "worker", "simulator": "simulate"}
    for name, command in expected.items():
        cmd = services[name]["command"]
        argv = shlex.split(cmd) if isinstance(cmd, str) else [str(a) for a in cmd]
        args = _parses(argv)
        assert args.command == command
    sim = _parses([str(a) for a in services["simulator"]["command"]])
    assert sim.rate == 200 and sim.out is None  # produces to Kafka


def test_compose_worker_is_scalable(services: dict[str, Any], worker_env: dict[str, str]) -> None:
    worker = services["worker"]
    assert "container_name" not in worker
    assert "build" in worker
    for port in worker.get("ports", []):
        if isinstance(port, dict):
            assert "published" not in port, f"fixed host port {port}"
        else:
            spec = str(port).split("/")[0]
            parts = spec.split(":")
            # "6066" or "ip::6066" leave the host port to Docker; "h:6066" / "ip:h:6066" pin it
            assert len(parts) == 1 or (len(parts) == 3 and parts[1] == ""), f"fixed host port {port}"
    web_port = worker_env["COURSEPULSE_WEB_PORT"]
    assert web_port in {str(p) for p in worker.get("expose", [])}
    targets = [p["target"] if isinstance(p, dict) else str(p).split(":")[-1] for p in worker.get("ports", [])]
    assert all(str(t) == web_port for t in targets)


def test_compose_worker_state_is_per_replica(services: dict[str, Any], compose: dict[str, Any],
                                           worker_env: dict[str, str]) -> None:
    data_dir = worker_env["COURSEPULSE_DATA_DIR"]
    mounts = services["worker"].get("volumes", [])
    matching = []
    for vol in mounts:
        if isinstance(vol, dict):
            source, target = vol.get("source"), vol["target"]
        else:
            parts = str(vol).split(":")
            source, target = (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
        if target == data_dir:
            matching.append(source)
    assert len(matching) == 1, f"no volume mounted at COURSEPULSE_DATA_DIR={data_dir}"
    # a named volume would be shared by every scaled replica (RocksDB locks): must be anonymous
    named = set(compose.get("volumes") or {})
    assert matching[0] is None or matching[0] not in named


def test_compose_depends_on(services: dict[str, Any]) -> None:
    def conditions(name: str) -> dict[str, str]:
        dep = services[name]["depends_on"]
        assert isinstance(dep, dict), f"{name}: depends_on needs conditions"
        return {k: v["condition"] for k, v in dep.items()}

    worker = conditions("worker")
    assert worker["topics"] == "service_completed_successfully"
    assert worker["redis"] == "service_healthy"
    assert worker.get("kafka", "service_healthy") == "service_healthy"
    assert conditions("topics") == {"kafka": "service_healthy"}
    assert conditions("simulator")["topics"] == "service_completed_successfully"
    # the conditions above need healthchecks on kafka and redis
    assert "kafka-topics.sh" in " ".join(services["kafka"]["healthcheck"]["test"])
    assert "--list" in " ".join(services["kafka"]["healthcheck"]["test"])
    assert services["redis"]["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]
    assert str(services["topics"].get("restart", "no")) == "no"


def test_compose_kafka_kraft(services: dict[str, Any], worker_env: dict[str, str]) -> None:
    kafka = services["kafka"]
    assert str(kafka["image"]).startswith("apache/kafka:")
    env = _env_dict(kafka["environment"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_NODE_ID"] and env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@")
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    # the address the CoursePulse containers use is an advertised listener
    broker = Settings.from_env(worker_env).bootstrap_servers
    advertised = [a.split("://", 1)[1] for a in env["KAFKA_ADVERTISED_LISTENERS"].split(",")]
    assert broker in advertised
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in env["KAFKA_LISTENERS"]


def test_compose_worker_settings(services: dict[str, Any], worker_env: dict[str, str]) -> None:
    settings = Settings.from_env(worker_env)
    assert settings.kafka_broker == "kafka://kafka:9092"
    assert settings.redis_url.startswith("redis://redis:")
    assert settings.store == "rocksdb://"
    assert settings.web_host == "0.0.0.0"
    assert settings.processing_guarantee == "at_least_once"  # the default of the file
    # ... and exactly_once can be switched on from the shell
    raw = _env_dict(services["worker"]["environment"])
    eo = {k: _resolve(v, {"COURSEPULSE_PROCESSING_GUARANTEE": "exactly_once"}) for k, v in raw.items()}
    assert Settings.from_env(eo).processing_guarantee == "exactly_once"


# --------------------------------------------------------------------------- deploy/k8s


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    assert set(listed) == {p.name for p in _k8s_files()}


def test_k8s_every_doc_is_a_resource(k8s_docs: list[tuple[Path, dict[str, Any]]]) -> None:
    kinds = {d["kind"] for _, d in k8s_docs}
    assert {"ConfigMap", "StatefulSet", "Service", "ScaledObject", "PodDisruptionBudget",
            "Deployment", "Job"} <= kinds
    for path, doc in k8s_docs:
        assert doc.get("apiVersion") and doc["metadata"].get("name"), path.name


def test_configmap_is_settings(configmap: dict[str, Any], cm_settings: Settings) -> None:
    _assert_known_env(configmap["data"], "ConfigMap")
    assert all(isinstance(v, str) for v in configmap["data"].values()), "ConfigMap values must be strings"
    assert cm_settings.store == "rocksdb://"
    assert cm_settings.web_host == "0.0.0.0"
    assert cm_settings.kafka_broker and cm_settings.redis_url


def test_k8s_containers_env_and_args(k8s_docs: list[tuple[Path, dict[str, Any]]],
                                    configmap: dict[str, Any]) -> None:
    workloads = _workloads(k8s_docs)
    assert {c["name"] for _, c in workloads} >= {"worker", "simulator", "topics"}
    for where, c in workloads:
        assert c["image"].split(":")[0].rsplit("/", 1)[-1] == "coursepulse", where
        _assert_known_env([e["name"] for e in c.get("env", [])], where)
        refs = [e["configMapRef"]["name"] for e in c.get("envFrom", []) if "configMapRef" in e]
        assert refs == [configmap["metadata"]["name"]], where
        command = c.get("command")
        assert command is None or command[0] == "coursepulse", where
        argv = [str(a) for a in (command[1:] if command else []) + c.get("args", [])]
        _parses(argv)
    by_name = {c["name"]: c for _, c in workloads}
    assert by_name["worker"]["args"] == ["worker"]
    assert by_name["topics"]["args"] == ["topics"]
    assert by_name["simulator"]["args"][0] == "simulate"


def test_statefulset_storage_probes_and_resources(statefulset: dict[str, Any], cm_settings: Settings) -> None:
    spec = statefulset["spec"]
    pod = spec["template"]["spec"]
    (c,) = pod["containers"]
    assert spec["podManagementPolicy"] == "Parallel"
    assert "replicas" not in spec, "KEDA owns the replica count"
    assert pod["terminationGracePeriodSeconds"] >= 30
    # RocksDB on the per-pod PVC
    claims = {t["metadata"]["name"] for t in spec["volumeClaimTemplates"]}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert [n for n, path in mounts.items() if path == cm_settings.data_dir and n in claims]
    assert pod["securityContext"].get("fsGroup") is not None
    # liveness (and start-up) on /livez, readiness on /readyz, at COURSEPULSE_WEB_PORT
    named = {p.get("name"): p["containerPort"] for p in c["ports"]}
    assert cm_settings.web_port in named.values()
    for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
        get = c[probe]["httpGet"]
        port = named.get(get["port"], get["port"])
        assert (get["path"], port) == (path, cm_settings.web_port), probe
    if "startupProbe" in c:
        get = c["startupProbe"]["httpGet"]
        assert (get["path"], named.get(get["port"], get["port"])) == ("/livez", cm_settings.web_port)
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][kind]), kind
    notes = spec["template"]["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true"
    assert notes["prometheus.io/port"] == str(cm_settings.web_port)
    assert notes["prometheus.io/path"] == "/metrics"


def test_service_pdb_select_the_workers(k8s_docs: list[tuple[Path, dict[str, Any]]],
                                        statefulset: dict[str, Any], cm_settings: Settings) -> None:
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert statefulset["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = _one(k8s_docs, "Service")
    assert service["spec"]["clusterIP"] == "None"
    assert service["metadata"]["name"] == statefulset["spec"]["serviceName"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert [p["port"] for p in service["spec"]["ports"]] == [cm_settings.web_port]
    pdb = _one(k8s_docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_keda_scales_to_the_partition_count(k8s_docs: list[tuple[Path, dict[str, Any]]],
                                            statefulset: dict[str, Any], cm_settings: Settings,
                                            worker_env: dict[str, str]) -> None:
    so = _one(k8s_docs, "ScaledObject")
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    target = so["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("StatefulSet", statefulset["metadata"]["name"])
    assert so["spec"]["maxReplicaCount"] == cm_settings.partitions
    assert so["spec"]["maxReplicaCount"] == Settings.from_env(worker_env).partitions
    assert 1 <= so["spec"].get("minReplicaCount", 0) <= so["spec"]["maxReplicaCount"]
    (trigger,) = so["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert meta["consumerGroup"] == cm_settings.app_id
    assert meta["topic"] == cm_settings.topic("views")
    assert meta["bootstrapServers"] == cm_settings.bootstrap_servers
    assert int(meta["lagThreshold"]) > 0


def test_simulator_off_and_topics_job(k8s_docs: list[tuple[Path, dict[str, Any]]]) -> None:
    deployment = _one(k8s_docs, "Deployment")
    assert deployment["spec"]["replicas"] == 0
    job = _one(k8s_docs, "Job")
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")


# --------------------------------------------------------------------------- monitoring

PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = ROOT / "deploy" / "grafana"


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads((GRAFANA / "dashboards" / "coursepulse.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def test_compose_monitoring_is_an_optional_profile(services: dict[str, Any]) -> None:
    for name in ("prometheus", "grafana"):
        assert services[name].get("profiles") == ["monitoring"], name
        for volume in services[name]["volumes"]:
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts a missing {source}"
    for name in COURSEPULSE_SERVICES:  # the default `docker compose up` is unchanged
        assert "profiles" not in services[name]


def test_prometheus_scrapes_every_worker_replica(worker_env: dict[str, str]) -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["worker"] and sd["type"] == "A"
    assert str(sd["port"]) == worker_env["COURSEPULSE_WEB_PORT"]


def test_grafana_provisions_the_datasource_the_dashboard_uses() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (ds,) = datasources["datasources"]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    dashboard = json.loads((GRAFANA / "dashboards" / "coursepulse.json").read_text())
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert uids == {ds["uid"]}
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "coursepulse.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and all(p["title"] for p in dashboard["panels"])


def test_dashboard_queries_only_declared_metrics() -> None:
    """Each metric a panel queries is in the worker's catalogue (a live worker exporting them
    all: tests/integration/test_operations.py)."""
    from streams.metrics import CATALOGUE, family_name

    declared = set()
    for name, spec in CATALOGUE.items():
        family = family_name(name)
        declared |= {family + s for s in {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(spec.type, ("",))}
    queried = {n for e in _dashboard_exprs() for n in re.findall(r"\b(coursepulse_[a-z0-9_]+)", e)}
    assert queried and not queried - declared, sorted(queried - declared)
