"""The deployment artefacts in deploy/ agree with the programs they run.

What can break without anyone noticing until a rollout: a flag renamed in the
CLI but not in a manifest or unit, a probe on a route that does not exist (or
needs a token), a port that differs between ``--listen``, the container, the
probes and the Service, a Secret or key that nothing generates, a selector that
matches no pod, a manifest the kustomization forgets. Every command line here is
parsed with tether's own argument parser (``tether.cli.build_parser``), and the
pool's probes are asked of a real ``tether pool serve`` started with the
manifest's own arguments.

Not checked here: that the image builds (no Docker engine) and that a cluster
accepts the manifests (no cluster). ``kubectl kustomize`` and ``systemd-analyze
verify`` are run when installed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read the manifests")

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
SYSTEMD = DEPLOY / "systemd"

WORKLOAD_KINDS = ("Deployment", "DaemonSet", "StatefulSet")
#: What the kubelet would put in the Downward API fields the manifests use.
FIELD_SAMPLES = {"spec.nodeName": "gpu-node-1", "status.hostIP": "10.0.0.7"}
#: What an operator would put in the generated Secrets.
SECRET_SAMPLES = {
    ("tether-pool-db", "url"): "postgresql://tether:secret@db.example.com/tether",
    ("tether-node-token", "token"): "tn_0123456789ab_secret",
}


# --------------------------------------------------------------------------- reading


def load_yaml(path: Path) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    for doc in docs:
        assert isinstance(doc, dict), f"{path}: a document is not a mapping"
    return docs


def kustomization(root: Path = K8S) -> dict[str, Any]:
    (doc,) = load_yaml(root / "kustomization.yaml")
    return doc


def manifests(root: Path = K8S) -> list[dict[str, Any]]:
    return [d for name in kustomization(root)["resources"] for d in load_yaml(root / name)]


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in WORKLOAD_KINDS]


def workload(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    (found,) = [
        d
        for d in workloads(docs)
        if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
        == component
    ]
    return found


def pod_spec(w: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = w["spec"]["template"]["spec"]
    return spec


def only_container(w: dict[str, Any]) -> dict[str, Any]:
    (c,) = pod_spec(w)["containers"]
    return c


def generated_secrets(root: Path = K8S) -> dict[str, set[str]]:
    """Secret name -> keys, from the kustomization's secretGenerator and Secret documents."""
    out: dict[str, set[str]] = {}
    for gen in kustomization(root).get("secretGenerator", []):
        keys = out.setdefault(gen["name"], set())
        for item in gen.get("files", []):
            keys.add(item.split("=", 1)[0] if "=" in item else Path(item).name)
        for item in gen.get("literals", []):
            keys.add(item.split("=", 1)[0])
    for doc in manifests(root):
        if doc["kind"] == "Secret":
            keys = out.setdefault(doc["metadata"]["name"], set())
            keys.update(doc.get("data", {}), doc.get("stringData", {}))
    return out


def strip_hash(name: str) -> str:
    """``tether-node-token-kck6f9kg7m`` -> ``tether-node-token`` (kustomize's suffix)."""
    return re.sub(r"-[a-z0-9]{10}$", "", name)


_K8S_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet would build it, with sample values."""
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
            continue
        source = var["valueFrom"]
        if "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            assert path in FIELD_SAMPLES, f"env {var['name']}: no sample for field {path}"
            env[var["name"]] = FIELD_SAMPLES[path]
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            env[var["name"]] = SECRET_SAMPLES[(strip_hash(ref["name"]), ref["key"])]
        else:
            pytest.fail(f"env {var['name']}: unexpected source {source}")
    return env


def container_argv(container: dict[str, Any]) -> list[str]:
    """command + args with ``$(VAR)`` expanded; a reference to nothing fails.

    The kubelet leaves an undefined ``$(VAR)`` in place, so the program would be
    handed the literal text: a broken deployment that parses fine.
    """
    env = container_env(container)

    def expand(word: str) -> str:
        def one(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in env:
                pytest.fail(f"container {container['name']}: $({name}) is not in its env")
            return env[name]

        return _K8S_REF.sub(one, word)

    return [expand(str(w)) for w in [*container.get("command", []), *container.get("args", [])]]


def parse_tether(argv: list[str], where: str) -> argparse.Namespace:
    """argv[0] must be the ``tether`` command; the rest goes through tether's real parser."""
    from tether.cli import build_parser

    assert Path(argv[0]).name == "tether", f"{where}: runs {argv[0]!r}, not tether"
    parser = build_parser()
    # argparse prints and exits on an error; keep its message for the failure.
    errors: list[str] = []
    _trap_errors(parser, errors)
    try:
        return parser.parse_args(argv[1:])
    except SystemExit:
        pytest.fail(f"{where}: tether rejects {shlex.join(argv)}: {'; '.join(errors)}")


def _trap_errors(parser: argparse.ArgumentParser, errors: list[str]) -> None:
    # tether accepts --bootstrap-token for --bootstrap-token-file; a deployment
    # file must not lean on that: the prefix breaks when a flag is renamed or added.
    parser.allow_abbrev = False

    def error(message: str) -> None:
        errors.append(f"{parser.prog}: {message}")
        raise SystemExit(2)

    parser.error = error  # type: ignore[method-assign,assignment]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _trap_errors(sub, errors)


def port_of(container: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's port (number or name) as a number of this container."""
    if isinstance(port, int):
        assert any(p["containerPort"] == port for p in container["ports"]), port
        return port
    found = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    assert found, f"container {container['name']} has no port named {port!r}"
    return int(found[0])


def pool_routes() -> set[str]:
    """The paths the real pool app serves (its OpenAPI URL included)."""
    pytest.importorskip("fastapi", reason="the pool service needs pip install 'tether[pool]'")
    import tempfile

    from tether.pool._api import create_app
    from tether.pool._service import PoolService, ServiceConfig
    from tether.pool._store import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(str(Path(tmp) / "pool.db"))
        try:
            app = create_app(PoolService(store, ServiceConfig()))
            paths = {getattr(r, "path", "") for r in app.routes}
        finally:
            store.close()
    assert app.openapi_url is not None
    return {p for p in paths if p} | {app.openapi_url}


# --------------------------------------------------------------------------- kubernetes


def test_every_yaml_file_parses_and_the_kustomization_lists_every_manifest() -> None:
    files = sorted(p for p in DEPLOY.rglob("*.y*ml"))
    assert files, "no YAML under deploy/"
    for path in files:
        for doc in load_yaml(path):
            if path.name != "kustomization.yaml":
                assert doc.get("apiVersion") and doc.get("kind"), f"{path}: {doc}"
                assert doc.get("metadata", {}).get("name"), f"{path}: a document has no name"
    on_disk = {p.name for p in K8S.glob("*.y*ml")} - {"kustomization.yaml"}
    listed = kustomization()["resources"]
    assert sorted(listed) == sorted(set(listed)), "a resource is listed twice"
    assert set(listed) == on_disk, "kustomization.yaml must list exactly the manifests here"
    assert not [p for p in K8S.rglob("*.y*ml") if p.parent != K8S], "manifests outside the base"


def test_container_command_lines_parse_with_the_real_cli() -> None:
    docs = manifests()
    assert {w["kind"] for w in workloads(docs)} >= {"DaemonSet"}
    images = {i["name"] for i in kustomization().get("images", [])}
    for w in workloads(docs):
        for c in pod_spec(w)["containers"]:
            where = f"{w['kind']}/{w['metadata']['name']} container {c['name']}"
            args = parse_tether(container_argv(c), where)
            assert getattr(args, "handler", None) is not None, where
            assert c["image"].split(":")[0] in images, f"{where}: image not set by kustomization"
    pool = parse_tether(container_argv(only_container(workload(docs, "pool"))), "pool")
    assert (pool.command, pool.pool_command) == ("pool", "serve")
    acceptor = parse_tether(container_argv(only_container(workload(docs, "acceptor"))), "acc")
    assert acceptor.command == "serve"


def test_pool_listens_where_its_container_port_probes_and_service_point() -> None:
    from tether.pool._server import parse_listen

    docs = manifests()
    w = workload(docs, "pool")
    c = only_container(w)
    args = parse_tether(container_argv(c), "pool")
    host, port = parse_listen(args.listen)
    assert host in ("0.0.0.0", "::"), f"the pool listens on {host}: unreachable from other pods"
    assert [p["containerPort"] for p in c["ports"]] == [port]
    routes = pool_routes()
    probes = [c[k] for k in ("startupProbe", "livenessProbe", "readinessProbe") if k in c]
    assert len(probes) >= 2, "the pool needs liveness and readiness probes"
    # Liveness must not touch the database (an outage would restart a pool that
    # recovers by itself); readiness must (an outage takes it out of the Service).
    for kind in ("startupProbe", "livenessProbe"):
        if kind in c:
            assert c[kind]["httpGet"]["path"] == "/v1/health", kind
    assert c["readinessProbe"]["httpGet"]["path"] == "/v1/ready"
    for probe in probes:
        get = probe["httpGet"]
        assert port_of(c, get["port"]) == port
        assert get["path"] in routes, f"probe on {get['path']}, which the pool does not serve"
    annotations = w["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port
    assert annotations["prometheus.io/path"] in routes
    labels = w["spec"]["template"]["metadata"]["labels"]
    services = [
        s
        for s in docs
        if s["kind"] == "Service" and s["spec"]["selector"].items() <= labels.items()
    ]
    assert services, "no Service selects the pool"
    for s in services:
        for p in s["spec"]["ports"]:
            assert port_of(c, p.get("targetPort", p["port"])) == port


def test_workload_and_service_selectors_match_their_pods() -> None:
    docs = manifests()
    pods = [(pod_spec(w), w["spec"]["template"]["metadata"]["labels"]) for w in workloads(docs)]
    for w in workloads(docs):
        labels = w["spec"]["template"]["metadata"]["labels"]
        assert w["spec"]["selector"]["matchLabels"].items() <= labels.items(), w["metadata"]
        assert pod_spec(w)["serviceAccountName"] in {
            d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"
        }
    for s in (d for d in docs if d["kind"] == "Service"):
        selected = [
            spec for spec, labels in pods if s["spec"]["selector"].items() <= labels.items()
        ]
        assert selected, f"Service {s['metadata']['name']} selects no pod"
    for policy in (d for d in docs if d["kind"] == "NetworkPolicy"):
        match = policy["spec"]["podSelector"].get("matchLabels", {})
        selected = [spec for spec, labels in pods if match.items() <= labels.items()]
        assert selected, f"NetworkPolicy {policy['metadata']['name']} selects no pod"
        for rule in policy["spec"].get("ingress", []):
            for peer in rule.get("from", []):
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    peer_match = peer["podSelector"]["matchLabels"].items()
                    assert any(peer_match <= labels.items() for _, labels in pods), peer
            for p in rule.get("ports", []):
                for spec in selected:
                    (c,) = spec["containers"]
                    port_of(c, p["port"])


def test_network_policies_let_clients_reach_acceptors_and_acceptors_reach_the_pool() -> None:
    docs = manifests()
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    acceptor_labels = workload(docs, "acceptor")["spec"]["template"]["metadata"]["labels"]
    pool_labels = workload(docs, "pool")["spec"]["template"]["metadata"]["labels"]

    def admitted(target: dict[str, str]) -> list[dict[str, Any]]:
        return [
            peer
            for p in policies
            if p["spec"]["podSelector"].get("matchLabels", {}).items() <= target.items()
            for rule in p["spec"].get("ingress", [])
            for peer in rule.get("from", [])
        ]

    assert any(
        peer.get("podSelector", {}).get("matchLabels", {}).items() <= acceptor_labels.items()
        and "namespaceSelector" not in peer
        for peer in admitted(pool_labels)
    ), "acceptors cannot reach the pool"
    client_ns = [
        p["namespaceSelector"] for p in admitted(acceptor_labels) if "namespaceSelector" in p
    ]
    assert client_ns, "no client may reach the acceptors"
    assert all(
        ns in [p.get("namespaceSelector") for p in admitted(pool_labels)] for ns in client_ns
    ), "clients that may reach the acceptors must reach the pool too (they ask it first)"


def test_secrets_and_keys_referenced_are_generated() -> None:
    docs = manifests()
    secrets = generated_secrets()
    assert secrets, "the kustomization generates no Secret"
    used = 0
    for w in workloads(docs):
        spec = pod_spec(w)
        for c in spec["containers"]:
            for var in c.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    used += 1
                    assert ref["key"] in secrets.get(ref["name"], set()), ref
        for v in spec.get("volumes", []):
            if "secret" in v:
                used += 1
                assert v["secret"]["secretName"] in secrets, v
                for item in v["secret"].get("items", []):
                    assert item["key"] in secrets[v["secret"]["secretName"]], item
    assert used >= 2
    for gen in kustomization().get("secretGenerator", []):
        for item in gen.get("files", []):
            path = item.split("=", 1)[-1]
            assert (K8S / path).parent.is_dir(), f"{path}: no such folder"
            ignored = subprocess.run(
                ["git", "check-ignore", "-q", str(K8S / path)], cwd=ROOT, check=False
            )
            assert ignored.returncode == 0, f"{path} holds a secret: git must ignore it"


def test_acceptor_registers_with_the_pool_service_and_advertises_its_host_port() -> None:
    from urllib.parse import urlsplit

    from tether.transport import parse_address

    docs = manifests()
    w = workload(docs, "acceptor")
    spec = pod_spec(w)
    c = only_container(w)
    args = parse_tether(container_argv(c), "acceptor")
    (port,) = c["ports"]
    listen = parse_address(args.listen)
    assert listen.host in ("0.0.0.0", "::")
    assert listen.port == port["containerPort"]
    advertised = parse_address(args.advertise)
    assert advertised.host == FIELD_SAMPLES["status.hostIP"], "advertise the node's IP"
    assert advertised.port == port["hostPort"], "clients dial the host port"
    assert args.name == FIELD_SAMPLES["spec.nodeName"]
    assert args.replace, "a restarted pod must take its node name back"
    # --pool names the pool's Service, on a port it serves.
    url = urlsplit(args.pool)
    services = {s["metadata"]["name"]: s for s in docs if s["kind"] == "Service"}
    assert url.hostname in services, f"--pool {args.pool}: no Service {url.hostname}"
    assert url.port in [p["port"] for p in services[url.hostname]["spec"]["ports"]]
    # The node token file lies in a mounted Secret, under a key the Secret has.
    token = Path(args.node_token_file)
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    holders = [
        volumes[name]
        for name, m in mounts.items()
        if token.parent == Path(m["mountPath"]) and "secret" in volumes[name]
    ]
    assert holders, f"{token} is not in a mounted Secret"
    secret = holders[0]["secret"]
    assert token.name in generated_secrets()[secret["secretName"]]
    mode = secret.get("defaultMode", 0o644)
    ctx = spec["securityContext"]
    readable = mode & 0o004 or (mode & 0o040 and ctx.get("fsGroup") is not None)
    assert readable, f"user {ctx.get('runAsUser')} cannot read the token (mode {mode:o})"
    # GPU nodes: the NVIDIA runtime, their taint tolerated.
    assert spec["runtimeClassName"] == "nvidia"
    assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    assert any("nvidia.com/gpu" in k for k in spec["nodeSelector"])
    assert c["resources"]["requests"]


@dataclass
class RunningPool:
    url: str
    log: Path


@contextlib.contextmanager
def pool_with_manifest_args(tmp: Path, argv: list[str]) -> Iterator[RunningPool]:
    """``tether pool serve`` with the manifest's arguments, on loopback and a temporary SQLite."""
    replace = {
        "--listen": "127.0.0.1:0",
        "--db": str(tmp / "pool.db"),
        "--bootstrap-token-file": str(tmp / "admin-token"),
    }
    args = list(argv[1:])
    for i, word in enumerate(args[:-1]):
        if word in replace:
            args[i + 1] = replace[word]
    tmp.mkdir(parents=True, exist_ok=True)
    ready, log = tmp / "ready", tmp / "pool.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    for key in ("TETHER_POOL", "TETHER_POOL_TOKEN", "TETHER_CONFIG"):
        env.pop(key, None)
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tether", *args, "--ready-file", str(ready)],
            cwd=tmp,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the pool did not start:\n{log.read_text()}")
            time.sleep(0.05)
        yield RunningPool(ready.read_text().strip(), log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_pool_probes_and_scrape_answer_without_a_token(tmp_path: Path) -> None:
    """What the kubelet and Prometheus ask (no token), asked of a real pool."""
    pytest.importorskip("uvicorn", reason="the pool service needs pip install 'tether[pool]'")
    w = workload(manifests(), "pool")
    c = only_container(w)
    paths = {
        c[k]["httpGet"]["path"]
        for k in ("startupProbe", "livenessProbe", "readinessProbe")
        if k in c
    }
    metrics = w["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"]
    argv = container_argv(c)
    with pool_with_manifest_args(tmp_path / "public", argv) as pool:
        for path in sorted(paths | {metrics}):
            status, body = get_without_token(pool.url + path)
            assert status == 200, f"GET {path} without a token: {status} {body[:200]!r}"
            if path == metrics:
                assert b"tether_pool_" in body
    # The probes do not lean on --public-metrics; annotation scraping (no token) does.
    assert "--public-metrics" in argv, "annotation scraping sends no token"
    private = [a for a in argv if a != "--public-metrics"]
    with pool_with_manifest_args(tmp_path / "private", private) as pool:
        for path in sorted(paths):
            status, body = get_without_token(pool.url + path)
            assert status == 200, f"GET {path} without a token: {status} {body[:200]!r}"
        assert get_without_token(pool.url + metrics)[0] == 401


def get_without_token(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def test_kustomize_builds_and_generated_names_are_wired(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the kustomization was checked by hand only")
    base = tmp_path / "kubernetes"
    shutil.copytree(K8S, base)
    for (name, key), value in SECRET_SAMPLES.items():
        gen = next(g for g in kustomization(base)["secretGenerator"] if g["name"] == name)
        (item,) = [f for f in gen["files"] if f.split("=", 1)[0] == key]
        (base / item.split("=", 1)[-1]).write_text(value + "\n")
    out = subprocess.run(
        [kubectl, "kustomize", str(base)], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    secrets = {d["metadata"]["name"] for d in docs if d["kind"] == "Secret"}
    assert {strip_hash(s) for s in secrets} == {n for n, _ in SECRET_SAMPLES}
    for d in docs:
        if d["kind"] != "Namespace":
            assert d["metadata"].get("namespace") == "tether", d["metadata"]
    for w in workloads(docs):
        spec = pod_spec(w)
        for c in spec["containers"]:
            assert "/" in c["image"], "the images transformer did not apply"
            parse_tether(container_argv(c), f"built {w['metadata']['name']}")
            for var in c.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] in secrets, "a secretKeyRef misses the generated name"
        for v in spec.get("volumes", []):
            if "secret" in v:
                assert v["secret"]["secretName"] in secrets


# --------------------------------------------------------------------------- systemd


def read_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections -> (key, value) in order; keys repeat, as systemd allows."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line[0] in "#;":
            continue
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + " " + lines[i].strip()
            i += 1
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"{path}: cannot read {line!r}"
        current.append((key.strip(), value.strip()))
    return sections


def unit_values(unit: dict[str, list[tuple[str, str]]], key: str) -> list[str]:
    return [v for k, v in unit.get("Service", []) if k == key]


def read_env_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path}: {line!r}"
        env[key.strip()] = value.strip().strip("'\"")
    return env


def unit_env(unit: dict[str, list[tuple[str, str]]], path: Path) -> dict[str, str]:
    """Environment= and the EnvironmentFile= (its example lies beside the unit)."""
    env: dict[str, str] = {}
    for value in unit_values(unit, "EnvironmentFile"):
        example = SYSTEMD / Path(value.lstrip("-")).name
        assert example.exists(), f"{path.name}: no example {example.name} for {value}"
        env.update(read_env_file(example))
    for value in unit_values(unit, "Environment"):
        for item in shlex.split(value):
            key, _, val = item.partition("=")
            env[key] = val
    return env


_SD_WORD = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")
_SD_BRACED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def exec_argv(line: str, env: dict[str, str], where: str) -> list[str]:
    """An Exec line as systemd runs it: prefixes off, ``${X}`` one word, ``$X`` split."""
    line = line.lstrip("-+@!:")
    assert "%" not in line, f"{where}: specifiers are not expected (escape % as %%)"

    def lookup(name: str) -> str:
        if name not in env:
            pytest.fail(f"{where}: ${name} is set by neither Environment= nor the env file")
        return env[name]

    argv: list[str] = []
    for word in shlex.split(line):
        m = _SD_WORD.match(word)
        if m:
            argv.extend(lookup(m.group(1)).split())
        else:
            argv.append(_SD_BRACED.sub(lambda b: lookup(b.group(1)), word))
    return argv


def units() -> dict[str, dict[str, list[tuple[str, str]]]]:
    found = {p.name: read_unit(p) for p in sorted(SYSTEMD.glob("*.service"))}
    assert set(found) == {"tether-pool.service", "tether-acceptor.service"}
    return found


def test_systemd_exec_start_parses_with_the_real_cli() -> None:
    from tether.pool._server import parse_listen
    from tether.transport import parse_address

    for name, unit in units().items():
        env = unit_env(unit, SYSTEMD / name)
        (start,) = unit_values(unit, "ExecStart")
        args = parse_tether(exec_argv(start, env, name), name)
        if name == "tether-pool.service":
            assert (args.command, args.pool_command) == ("pool", "serve")
            parse_listen(args.listen)
            state = unit_values(unit, "StateDirectory")
            assert str(args.bootstrap_token_file).startswith(f"/var/lib/{state[0]}/")
        else:
            assert args.command == "serve"
            assert args.pool and args.node_token_file, "the acceptor must join the pool"
            parse_address(args.listen)
            assert args.replace


def test_systemd_units_run_as_a_dedicated_user_and_restart_on_failure() -> None:
    sysusers = (SYSTEMD / "tether.sysusers.conf").read_text().split("\n")
    users = {line.split()[1] for line in sysusers if line.startswith("u ")}
    for name, unit in units().items():
        (user,) = unit_values(unit, "User")
        assert user in users and user != "root", name
        assert unit_values(unit, "Restart") == ["on-failure"], name
        assert unit_values(unit, "NoNewPrivileges") == ["yes"], name


def test_acceptor_unit_hardening_leaves_the_devices_usable() -> None:
    unit = units()["tether-acceptor.service"]
    for key, bad in (
        ("PrivateDevices", {"yes", "true", "1", "on"}),
        ("DevicePolicy", {"closed", "strict"}),
        ("ProcSubset", {"pid"}),  # device discovery reads /proc/meminfo, /proc/cpuinfo
        ("MemoryDenyWriteExecute", {"yes", "true", "1", "on"}),  # JIT compilers
    ):
        assert not set(unit_values(unit, key)) & bad, f"{key}= would break the accelerators"
    # CUDA's /dev/nvidia-uvm cannot be created under NoNewPrivileges: done with "+".
    assert any(v.startswith(("-+", "+-")) for v in unit_values(unit, "ExecStartPre"))


def test_systemd_analyze_verify_is_silent(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    tether = shutil.which("tether", path=str(Path(sys.executable).parent)) or sys.executable
    for unit in SYSTEMD.glob("*.service"):
        # The units point at /opt/tether (docs/deploy.md); verify wants a real file.
        (tmp_path / unit.name).write_text(
            unit.read_text().replace("/opt/tether/bin/tether", tether)
        )
    out = subprocess.run(
        [tool, "verify", *sorted(str(p) for p in tmp_path.glob("*.service"))],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0 and not out.stderr.strip() and not out.stdout.strip(), (
        out.stdout + out.stderr
    )


# --------------------------------------------------------------------------- image


def test_dockerfile_installs_what_the_manifests_run() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = re.search(r"^FROM python:(\d+)\.(\d+)", text, re.M)
    assert base, "the image is not built on python:X.Y"
    assert project["requires-python"] == ">=3.11" and (int(base[1]), int(base[2])) >= (3, 11)
    extras = re.search(r'pip install "\.\[([a-z,]+)\]"', text)
    assert extras, "the Dockerfile does not install this project with extras"
    assert set(extras[1].split(",")) == {"pool", "nvidia"}
    assert set(extras[1].split(",")) <= set(project["optional-dependencies"])
    assert 'ENTRYPOINT ["tether"]' in text and "tether" in project["scripts"]
    for src in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for path in src.split():
            assert (ROOT / path).exists(), f"COPY {path}: no such file"
    assert re.search(r"^ARG TORCH_VERSION=\d+\.\d+\.\d+$", text, re.M), "pin torch"
    uid = re.search(r"--uid (\d+)", text)
    assert uid
    for w in workloads(manifests()):
        assert pod_spec(w)["securityContext"]["runAsUser"] == int(uid[1])
