"""Unit tests of the mcpauth chart's rendering: plain assertions over `helm template` output.

Run by scripts/test-helm.sh (make test-helm) with the tools of scripts/install-helm-tools.sh:
    HELM=.tools/helm/bin/helm .tools/helm/venv/bin/python tests/helm/test_chart.py
"""
import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import unittest

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART = os.path.join(ROOT, "helm", "mcpauth")
EXAMPLES = os.path.join(CHART, "examples")
HELM = os.environ.get("HELM", os.path.join(ROOT, ".tools", "helm", "bin", "helm"))
URLS = ["--set", "database.auth.url=postgres://a@db/auth", "--set", "database.vault.url=postgres://a@db/vault",
        "--set", "redis.url=redis://redis:6379"]
PAIRS = [("mcp-service", "auth-service"), ("token-vault", "auth-service"),
         ("auth-service", "token-vault"), ("mcp-service", "token-vault")]


def helm_template(*args, namespace="default", check=True):
    p = subprocess.run([HELM, "template", "r", CHART, "-n", namespace, *args], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"helm template {' '.join(args)} failed:\n{p.stderr}")
    return p


def render(*args, **kw):
    out = helm_template(*args, **kw).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def find(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    return found


def one(docs, kind, name):
    f = find(docs, kind, name)
    assert len(f) == 1, f"expected one {kind} {name}, found {len(f)}"
    return f[0]


def config(docs, svc):
    return tomllib.loads(one(docs, "ConfigMap", f"r-mcpauth-{svc}")["data"][f"{svc}.toml"])


def secret_data(docs, name="r-mcpauth-internal"):
    return {k: base64.b64decode(v).decode() for k, v in one(docs, "Secret", name)["data"].items()}


def pod_specs(docs):
    for d in docs:
        if d["kind"] in ("Deployment", "Job"):
            yield d["metadata"]["name"], d["spec"]["template"]["spec"]
        elif d["kind"] == "Pod":
            yield d["metadata"]["name"], d["spec"]


def mounted_files(spec, container):
    """path -> (secret or configmap name, key) of every file the container sees from volumes."""
    vols = {v["name"]: v for v in spec["volumes"]}
    files = {}
    for m in container.get("volumeMounts", []):
        v = vols[m["name"]]
        src = v.get("secret") or v.get("configMap")
        name = src.get("secretName") or src.get("name")
        for item in src.get("items", []):
            files[f"{m['mountPath']}/{item['path']}"] = (name, item["key"])
    return files


class FakeApiServer:
    """tests/helm/fake_apiserver.py on a free loopback port, serving the objects given."""

    def __init__(self, objects):
        self.dir = tempfile.mkdtemp(prefix="mcpauth-helm-")
        self.objects = os.path.join(self.dir, "objects.json")
        self.set(objects)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "helm", "fake_apiserver.py"),
                                      str(self.port), self.objects])
        self.kubeconfig = os.path.join(self.dir, "kubeconfig")
        with open(self.kubeconfig, "w") as f:
            yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "c",
                            "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
                            "users": [{"name": "u", "user": {}}],
                            "contexts": [{"name": "c", "context": {"cluster": "fake", "user": "u"}}]}, f)
        for _ in range(50):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)

    def set(self, objects):
        with open(self.objects, "w") as f:
            json.dump(objects, f)

    def render(self, *args):
        return render("--dry-run=server", "--disable-openapi-validation", "--kubeconfig", self.kubeconfig,
                      *args, namespace="ns1")

    def close(self):
        self.proc.terminate()
        self.proc.wait()


class GeneratedSecrets(unittest.TestCase):
    def test_hashes_in_the_callers_tables_match_the_generated_credentials(self):
        docs = render(*URLS)
        data = secret_data(docs)
        creds = [data[f"{a}-at-{b}.credential"] for a, b in PAIRS]
        self.assertEqual(len(set(creds)), 4, "the four credentials must differ")
        for a, b in PAIRS:
            cred = data[f"{a}-at-{b}.credential"]
            self.assertGreaterEqual(len(cred), 32)
            self.assertEqual(data[f"{a}-at-{b}.sha256"], hashlib.sha256(cred.encode()).hexdigest())
        auth, vault = config(docs, "auth-service"), config(docs, "token-vault")
        self.assertEqual({c["name"]: c["credential_sha256"] for c in auth["grpc"]["callers"]}, {
            "mcp-service": hashlib.sha256(data["mcp-service-at-auth-service.credential"].encode()).hexdigest(),
            "token-vault": hashlib.sha256(data["token-vault-at-auth-service.credential"].encode()).hexdigest()})
        # Least privilege at auth-service: explicit permissions, no `admin`; mcp-service may start
        # connect flows only for tokens of the chart's resource.
        self.assertEqual({c["name"]: (c["permissions"], c.get("resources")) for c in auth["grpc"]["callers"]}, {
            "mcp-service": (["introspect", "start_connect"], [auth["resources"][0]["uri"]]),
            "token-vault": (["introspect"], None)})
        self.assertEqual({c["name"]: (c["credential_sha256"], c["permissions"]) for c in vault["grpc"]["callers"]}, {
            "auth-service": (hashlib.sha256(data["auth-service-at-token-vault.credential"].encode()).hexdigest(), ["put"]),
            "mcp-service": (hashlib.sha256(data["mcp-service-at-token-vault.credential"].encode()).hexdigest(), ["get"])})
        for k in ("token-key-k1", "vault-key-k1"):
            self.assertEqual(len(base64.b64decode(data[k])), 32, k)

    def test_each_service_reads_its_credentials_from_the_mounted_secret(self):
        docs = render(*URLS)
        wanted = {
            "auth-service": {"vault.credential": "auth-service-at-token-vault.credential"},
            "token-vault": {"introspection.credential": "token-vault-at-auth-service.credential"},
            "mcp-service": {"verifier.grpc.credential": "mcp-service-at-auth-service.credential",
                            "vault.credential": "mcp-service-at-token-vault.credential"},
        }
        for svc, refs in wanted.items():
            cfg = config(docs, svc)
            spec = one(docs, "Deployment", f"r-mcpauth-{svc}")["spec"]["template"]["spec"]
            files = mounted_files(spec, spec["containers"][0])
            for dotted, key in refs.items():
                v = cfg
                for part in dotted.split("."):
                    v = v[part]
                self.assertTrue(v.startswith("file:"), v)
                self.assertEqual(files[v[len("file:"):]], ("r-mcpauth-internal", key), f"{svc} {dotted}")
            # a service sees only its own credentials and keys
            keys = {k for (_, k) in files.values()}
            other_creds = {f"{a}-at-{b}.credential" for a, b in PAIRS if a != svc}
            self.assertFalse(keys & other_creds, f"{svc} mounts another service's credential: {keys & other_creds}")
        self.assertEqual(config(docs, "auth-service")["tokens"]["keys"],
                         [{"id": "k1", "secret": "file:/var/run/secrets/mcpauth/internal/token-key-k1"}])

    def test_secrets_are_stable_across_renders_with_lookup(self):
        api = FakeApiServer([])
        try:
            first = api.render(*URLS)
            sec = one(first, "Secret", "r-mcpauth-internal")
            sec["metadata"]["namespace"] = "ns1"
            api.set([sec])
            second = api.render(*URLS)
            self.assertEqual(secret_data(first), secret_data(second))
            for svc in ("auth-service", "token-vault", "mcp-service"):
                self.assertEqual(config(first, svc), config(second, svc))
                a = one(first, "Deployment", f"r-mcpauth-{svc}")["spec"]["template"]["metadata"]["annotations"]
                b = one(second, "Deployment", f"r-mcpauth-{svc}")["spec"]["template"]["metadata"]["annotations"]
                self.assertEqual(a, b, f"{svc}: checksums changed between identical upgrades")
            # rotation: a new vault key id gets a new key, the old one is kept
            third = api.render(*URLS, "--set", "secrets.vaultKeys.ids={k1,k2}", "--set", "secrets.vaultKeys.current=k2")
            d1, d3 = secret_data(first), secret_data(third)
            self.assertEqual(d1["vault-key-k1"], d3["vault-key-k1"])
            self.assertEqual(len(base64.b64decode(d3["vault-key-k2"])), 32)
            enc = config(third, "token-vault")["encryption"]
            self.assertEqual(enc["current_key"], "k2")
            self.assertEqual([k["id"] for k in enc["keys"]], ["k1", "k2"])
        finally:
            api.close()

    def test_without_lookup_data_each_install_generates_new_secrets(self):
        self.assertNotEqual(secret_data(render(*URLS)), secret_data(render(*URLS)))

    def test_existing_secret_is_used_by_reference(self):
        docs = render("-f", os.path.join(EXAMPLES, "production.yaml"))
        self.assertFalse(find(docs, "Secret"), "no Secret is rendered when every secret exists")
        auth = config(docs, "auth-service")
        spec = one(docs, "Deployment", "r-mcpauth-auth-service")["spec"]["template"]["spec"]
        files = mounted_files(spec, spec["containers"][0])
        for c in auth["grpc"]["callers"]:
            path = c["credential_sha256"][len("file:"):]
            self.assertEqual(files[path], ("mcpauth-internal", f"{c['name']}-at-auth-service.sha256"))
        self.assertEqual(files["/var/run/secrets/mcpauth/database/url"], ("mcpauth-postgres", "auth-url"))

    def test_checksums_roll_pods_on_change(self):
        a = one(render(*URLS, "--set", "secrets.existingSecret=s"), "Deployment", "r-mcpauth-auth-service")
        b = one(render(*URLS, "--set", "secrets.existingSecret=s", "--set", "authService.config.log.filter=debug"),
                "Deployment", "r-mcpauth-auth-service")
        c = one(render(*URLS, "--set", "secrets.existingSecret=t"), "Deployment", "r-mcpauth-auth-service")
        ann = lambda d: d["spec"]["template"]["metadata"]["annotations"]
        self.assertNotEqual(ann(a)["checksum/config"], ann(b)["checksum/config"])
        self.assertEqual(ann(a)["checksum/secret"], ann(b)["checksum/secret"])
        self.assertNotEqual(ann(a)["checksum/secret"], ann(c)["checksum/secret"])


class Exposure(unittest.TestCase):
    def test_ingress_and_httproute_never_route_admin_ports(self):
        for f in ("minimal.yaml", "production.yaml", "external-as.yaml"):
            docs = render("-f", os.path.join(EXAMPLES, f), "--set", "httpRoute.enabled=true",
                          "--set", "httpRoute.parentRefs[0].name=gw")
            services = {d["metadata"]["name"]: d for d in find(docs, "Service")}
            ing = find(docs, "Ingress")
            self.assertEqual(len(ing), 1, f)
            paths = []
            for rule in ing[0]["spec"]["rules"]:
                for p in rule["http"]["paths"]:
                    svc = services[p["backend"]["service"]["name"]]
                    port = p["backend"]["service"]["port"]["name"]
                    self.assertEqual(port, "http", f)
                    self.assertIn("http", [x["name"] for x in svc["spec"]["ports"]])
                    paths.append(p["path"])
            for bad in ("/metrics", "/healthz", "/readyz", "/"):
                self.assertNotIn(bad, paths, f)
            for route in find(docs, "HTTPRoute"):
                for rule in route["spec"]["rules"]:
                    for ref in rule["backendRefs"]:
                        svc = services[ref["name"]]
                        by_port = {x["port"]: x["name"] for x in svc["spec"]["ports"]}
                        self.assertEqual(by_port[ref["port"]], "http", f)
            admin_ports = {8180, 8181, 8182}
            for name, svc in services.items():
                ports = {x["targetPort"] for x in svc["spec"]["ports"]}
                if name.endswith("-admin"):
                    self.assertEqual(ports, {"admin"})
                else:
                    self.assertNotIn("admin", ports, name)
                    self.assertFalse(admin_ports & {x["port"] for x in svc["spec"]["ports"]}, name)

    def test_mcp_endpoint_and_oauth_endpoints_are_routed(self):
        docs = render("-f", os.path.join(EXAMPLES, "minimal.yaml"))
        rules = {r["host"]: [p["path"] for p in r["http"]["paths"]] for r in one(docs, "Ingress", "r-mcpauth")["spec"]["rules"]}
        self.assertIn("/mcp", rules["mcp.example.com"])
        self.assertIn("/.well-known/oauth-protected-resource", rules["mcp.example.com"])
        for p in ("/.well-known/oauth-authorization-server", "/authorize", "/token", "/register"):
            self.assertIn(p, rules["auth.example.com"])

    def test_network_policies(self):
        docs = render(*URLS)
        pols = {d["metadata"]["name"]: d for d in find(docs, "NetworkPolicy")}
        self.assertEqual(set(pols), {"r-mcpauth-auth-service", "r-mcpauth-token-vault", "r-mcpauth-mcp-service"})
        comp = lambda peer: peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")

        def rule_for(pol, port):
            rules = [r for r in pol["spec"]["ingress"] if any(p["port"] == port for p in r["ports"])]
            self.assertEqual(len(rules), 1)
            return rules[0]
        vault = rule_for(pols["r-mcpauth-token-vault"], 9091)
        self.assertEqual(sorted(comp(p) for p in vault["from"]), ["auth-service", "mcp-service"])
        self.assertEqual(len(pols["r-mcpauth-token-vault"]["spec"]["ingress"]), 2, "gRPC and admin only")
        grpc = rule_for(pols["r-mcpauth-auth-service"], 9090)
        self.assertEqual(sorted(comp(p) for p in grpc["from"]), ["mcp-service", "token-vault"])
        extra = render(*URLS, "--set-json", 'networkPolicy.extraAuthGrpcCallers=[{"podSelector":{"matchLabels":{"app":"x"}}}]')
        grpc = rule_for(one(extra, "NetworkPolicy", "r-mcpauth-auth-service"), 9090)
        self.assertIn({"podSelector": {"matchLabels": {"app": "x"}}}, grpc["from"])
        for name, port in (("auth-service", 8180), ("mcp-service", 8181), ("token-vault", 8182)):
            admin = rule_for(pols[f"r-mcpauth-{name}"], port)
            self.assertEqual(admin["from"], [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}])
            self.assertIn("Egress", pols[f"r-mcpauth-{name}"]["spec"]["policyTypes"])
        self.assertFalse(find(render(*URLS, "--set", "networkPolicy.enabled=false"), "NetworkPolicy"))
        # with httpFrom (the ingress controller), the helm test Pod may still reach the HTTP ports
        prod = render("-f", os.path.join(EXAMPLES, "production.yaml"))
        test_pod = one(prod, "Pod", "r-mcpauth-test-metadata")["metadata"]["labels"]
        for name in ("auth-service", "mcp-service"):
            http_rule = rule_for(one(prod, "NetworkPolicy", f"r-mcpauth-{name}"), 8080 if name == "auth-service" else 8081)
            sels = [p["podSelector"]["matchLabels"] for p in http_rule["from"] if "podSelector" in p]
            self.assertTrue(any(all(test_pod.get(k) == v for k, v in s.items()) for s in sels), name)
            self.assertIn({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}, http_rule["from"])


class Pods(unittest.TestCase):
    def test_every_container_is_locked_down(self):
        for args in (URLS, ["-f", os.path.join(EXAMPLES, "production.yaml"), "--set", "tokenVault.rekey.enabled=true"]):
            docs = render(*args)
            n = 0
            for name, spec in pod_specs(docs):
                self.assertIs(spec.get("automountServiceAccountToken"), False, name)
                self.assertEqual(spec["securityContext"]["seccompProfile"], {"type": "RuntimeDefault"}, name)
                for c in spec.get("initContainers", []) + spec["containers"]:
                    sc = c["securityContext"]
                    n += 1
                    self.assertIs(sc["runAsNonRoot"], True, name)
                    self.assertIsInstance(sc["runAsUser"], int, name)
                    self.assertNotEqual(sc["runAsUser"], 0, name)
                    self.assertIs(sc["readOnlyRootFilesystem"], True, name)
                    self.assertIs(sc["allowPrivilegeEscalation"], False, name)
                    self.assertEqual(sc["capabilities"], {"drop": ["ALL"]}, name)
                    self.assertEqual(sc["seccompProfile"], {"type": "RuntimeDefault"}, name)
            self.assertGreaterEqual(n, 6)
        for sa in find(render(*URLS), "ServiceAccount"):
            self.assertIs(sa["automountServiceAccountToken"], False)

    def test_probes_drain_and_ports_match_the_config(self):
        docs = render(*URLS)
        for svc, admin in (("auth-service", 8180), ("mcp-service", 8181), ("token-vault", 8182)):
            d = one(docs, "Deployment", f"r-mcpauth-{svc}")
            spec = d["spec"]["template"]["spec"]
            c = spec["containers"][0]
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            cfg = config(docs, svc)
            self.assertEqual(cfg["admin"]["addr"], f"0.0.0.0:{admin}")
            self.assertEqual(ports["admin"], admin)
            self.assertEqual(c["startupProbe"]["httpGet"], {"path": "/readyz", "port": "admin"})
            self.assertEqual(c["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "admin"})
            self.assertEqual(c["livenessProbe"]["httpGet"], {"path": "/healthz", "port": "admin"})
            drain = cfg["shutdown"]["drain_delay_secs"]
            self.assertEqual(c["lifecycle"]["preStop"]["sleep"]["seconds"], drain)
            self.assertGreaterEqual(spec["terminationGracePeriodSeconds"], 2 * drain + 20)
            self.assertEqual(c["args"], ["--config", f"/etc/mcpauth/{svc}.toml", "serve"])
            if "http" in cfg:
                self.assertEqual(ports["http"], int(cfg["http"]["addr"].rsplit(":", 1)[1]))
            if "grpc" in cfg:
                self.assertEqual(ports["grpc"], int(cfg["grpc"]["addr"].rsplit(":", 1)[1]))
        tuned = one(render(*URLS, "--set", "mcpService.probes.liveness.periodSeconds=30"), "Deployment",
                    "r-mcpauth-mcp-service")["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
        self.assertEqual((tuned["periodSeconds"], tuned["httpGet"]["path"]), (30, "/healthz"))
        # Kubernetes 1.29 has no preStop sleep action (beta from 1.30): the service's drain alone.
        old = render(*URLS, "--kube-version", "1.29.0")
        self.assertNotIn("lifecycle", one(old, "Deployment", "r-mcpauth-auth-service")["spec"]["template"]["spec"]["containers"][0])
        p = helm_template(*URLS, "--set", "terminationGracePeriodSeconds=10", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("terminationGracePeriodSeconds (10) must be at least", p.stderr)

    def test_hooks_are_ordered_after_the_secret(self):
        docs = render(*URLS, "--set", "tokenVault.rekey.enabled=true")
        w = lambda d: int(d["metadata"]["annotations"]["helm.sh/hook-weight"])
        sec = one(docs, "Secret", "r-mcpauth-internal")
        self.assertIn("pre-install", sec["metadata"]["annotations"]["helm.sh/hook"])
        jobs = {d["metadata"]["name"]: d for d in find(docs, "Job")}
        self.assertEqual(set(jobs), {"r-mcpauth-auth-service-migrate", "r-mcpauth-token-vault-migrate", "r-mcpauth-token-vault-rekey"})
        for name, j in jobs.items():
            self.assertGreater(w(j), w(sec), name)
            self.assertIn("backoffLimit", j["spec"])
            self.assertIn("ttlSecondsAfterFinished", j["spec"])
        self.assertEqual(jobs["r-mcpauth-auth-service-migrate"]["metadata"]["annotations"]["helm.sh/hook"], "pre-install,pre-upgrade")
        self.assertEqual(jobs["r-mcpauth-token-vault-migrate"]["spec"]["template"]["spec"]["containers"][0]["args"],
                         ["--config", "/etc/mcpauth/token-vault.toml", "migrate"])
        self.assertEqual(jobs["r-mcpauth-token-vault-rekey"]["spec"]["template"]["spec"]["containers"][0]["args"][2:],
                         ["rekey", "--batch", "500"])

    def test_components_can_be_disabled_and_scaled(self):
        docs = render("-f", os.path.join(EXAMPLES, "external-as.yaml"))
        self.assertEqual([d["metadata"]["name"] for d in find(docs, "Deployment")], ["r-mcpauth-mcp-service"])
        mcp = config(docs, "mcp-service")
        self.assertEqual(mcp["verifier"]["mode"], "jwt")
        self.assertNotIn("grpc", mcp["verifier"])
        self.assertNotIn("vault", mcp)
        self.assertEqual(mcp["authorization_servers"], ["https://login.example.com"])
        prod = render("-f", os.path.join(EXAMPLES, "production.yaml"))
        hpa = one(prod, "HorizontalPodAutoscaler", "r-mcpauth-auth-service")
        self.assertEqual([m["resource"]["name"] for m in hpa["spec"]["metrics"]], ["cpu", "memory"])
        self.assertIn("behavior", hpa["spec"])
        self.assertNotIn("replicas", one(prod, "Deployment", "r-mcpauth-auth-service")["spec"])
        self.assertEqual(one(prod, "Deployment", "r-mcpauth-token-vault")["spec"]["replicas"], 3)
        self.assertEqual(len(find(prod, "PodDisruptionBudget")), 3)
        self.assertEqual(len(find(prod, "ServiceMonitor")), 3, "forced on")
        self.assertEqual(len(find(render(*URLS, "--set", "authService.serviceMonitor.enabled=true"), "ServiceMonitor")), 0,
                         "not without the CRD API")
        self.assertEqual(len(find(render(*URLS, "--set", "authService.serviceMonitor.enabled=true",
                                         "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"), "ServiceMonitor")), 1)
        tsc = one(prod, "Deployment", "r-mcpauth-mcp-service")["spec"]["template"]["spec"]["topologySpreadConstraints"][0]
        self.assertEqual(tsc["labelSelector"]["matchLabels"]["app.kubernetes.io/component"], "mcp-service")
        grpc = [p for p in one(prod, "Service", "r-mcpauth-auth-service")["spec"]["ports"] if p["name"] == "grpc"][0]
        self.assertEqual(grpc["appProtocol"], "grpc")

    def test_plaintext_grpc_is_allowed_only_without_internal_tls(self):
        plain = render(*URLS)
        tls = render("-f", os.path.join(EXAMPLES, "production.yaml"))
        for svc in ("auth-service", "token-vault", "mcp-service"):
            self.assertIs(config(plain, svc)["allow_plaintext_grpc"], True, svc)
            self.assertNotIn("allow_plaintext_grpc", config(tls, svc), svc)
        self.assertTrue(config(tls, "mcp-service")["verifier"]["grpc"]["addr"].startswith("https://"))
        self.assertTrue(config(tls, "token-vault")["introspection"]["addr"].startswith("https://"))
        self.assertEqual(config(tls, "auth-service")["grpc"]["tls"]["client_ca_file"], "/var/run/secrets/mcpauth/tls/ca.crt")

    def test_config_is_valid_toml_with_integers_and_user_lists(self):
        docs = render(*URLS, "--set-json",
                      'authService.config={"clients":[{"client_id":"c1","redirect_uris":["https://x/cb"]}],"tokens":{"access_ttl_secs":900},"grpc":{"callers":[{"name":"ops","credential_sha256":"ab","permissions":["admin"]}]}}')
        auth = config(docs, "auth-service")
        self.assertEqual(auth["tokens"]["access_ttl_secs"], 900)
        self.assertIsInstance(auth["database"]["max_connections"], int)
        self.assertEqual(auth["tokens"]["current_key"], "k1", "merged, not replaced")
        self.assertEqual(auth["clients"][0]["redirect_uris"], ["https://x/cb"])
        self.assertEqual([c["name"] for c in auth["grpc"]["callers"]], ["mcp-service", "token-vault", "ops"])


class Chart(unittest.TestCase):
    def test_app_version_is_the_workspace_version(self):
        # scripts/images.sh tags mcpauth/<service>:<workspace version>; the chart's default tag is appVersion.
        with open(os.path.join(CHART, "Chart.yaml")) as f:
            chart = yaml.safe_load(f)
        with open(os.path.join(ROOT, "Cargo.toml"), "rb") as f:
            cargo = tomllib.load(f)
        self.assertEqual(chart["appVersion"], cargo["workspace"]["package"]["version"])
        image = one(render(*URLS), "Deployment", "r-mcpauth-auth-service")["spec"]["template"]["spec"]["containers"][0]["image"]
        self.assertEqual(image, f"mcpauth/auth-service:{chart['appVersion']}")
        digest = "sha256:" + "a" * 64
        pinned = one(render(*URLS, "--set", f"authService.image.digest={digest}"), "Deployment", "r-mcpauth-auth-service")
        self.assertEqual(pinned["spec"]["template"]["spec"]["containers"][0]["image"], f"mcpauth/auth-service@{digest}")


class Schema(unittest.TestCase):
    def refused(self, *args):
        p = helm_template(*URLS, *args, check=False)
        self.assertNotEqual(p.returncode, 0, args)
        return p.stderr

    def test_schema_rejects_typos_and_wrong_types(self):
        self.assertIn("replicaCont", self.refused("--set", "authService.replicaCont=2"))
        self.assertIn("ingres", self.refused("--set", "ingres.enabled=true"))
        self.assertIn("tokn", self.refused("--set", "authService.config.tokn.x=1"))
        self.assertIn("replicaCount", self.refused("--set-json", 'authService.replicaCount="two"'))
        self.assertIn("podAntiAffinityPreset", self.refused("--set", "mcpService.podAntiAffinityPreset=always"))
        self.assertIn("issuer", self.refused("--set", "issuer=https://auth.example.com/"))

    def test_required_urls(self):
        p = helm_template(check=False)
        self.assertIn("database.auth.existingSecret (or database.auth.url) is required", p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
