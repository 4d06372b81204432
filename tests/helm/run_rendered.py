"""Render and run: what the chart renders, run as containers (no Kubernetes cluster here).

Two scenarios, each on a fresh network, database and Redis:
  production  examples/production.yaml + tests/helm/run-values.yaml: 2 replicas per component,
              existing Secrets, mTLS on the internal gRPC hops (plus a SIGTERM drain check);
  minimal     examples/minimal.yaml with 2 replicas each: the chart's generated Secret (hashes in
              the callers tables), plaintext gRPC, a local user from a Secret.
For each, on one Docker network, the test:
  - creates the Secrets the production example expects to exist (init-secrets output for the
    internal set, an openssl CA and one certificate per component, the Postgres/Redis URLs),
  - starts Postgres and Redis (network aliases postgres, redis),
  - runs the hook Jobs in hook-weight order (the migrations) and requires exit 0,
  - starts every Deployment's replicas with the rendered image, command/args, env, securityContext
    (user, read-only root, dropped capabilities, no-new-privileges), memory limit, and every
    ConfigMap/Secret volume written out and bind-mounted at its rendered mountPath; each pod gets
    the names of the Services whose selector matches its labels as network aliases,
  - waits for every rendered readinessProbe, then checks each rendered probe (startup, readiness,
    liveness) answers 200 on its rendered port, and that the public ports do not serve them,
  - puts a round-robin TCP proxy on 127.0.0.1 in front of each public Service (the ingress),
  - runs the official MCP TypeScript SDK client's whole flow (tests/e2e/docker-compose-flow.mjs),
  - revokes the access token at one auth-service replica and measures how long until every
    mcp-service replica refuses it (must be under a second),
  - runs the `helm test` Pod (metadata of both services answer and agree),
  - sends SIGTERM to one mcp-service replica: /readyz must turn 503 at once while /healthz still
    answers, and the process must exit 0 within the rendered terminationGracePeriodSeconds.
Cleans up its containers, network and files. Run by scripts/test-helm-run.sh.
"""
import asyncio
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART = os.path.join(ROOT, "helm", "mcpauth")
HELM = os.environ.get("HELM", os.path.join(ROOT, ".tools", "helm", "bin", "helm"))
DOCKER = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else shutil.which("docker")
NODE = os.path.join(ROOT, ".tools", "bin", "node")
PROJECT = "mcpauth-helm-run"
RELEASE, NAMESPACE = "mcpauth", "mcpauth"
DEMO_PASSWORD = "mcpauth-helm-demo"
# The images run (scripts/images.sh tags mcpauth/<service>:<version>, the chart's appVersion);
# RUN_IMAGE_PREFIX / RUN_IMAGE_TAG select others (e.g. images of an unmerged integration).
IMAGE_PREFIX = os.environ.get("RUN_IMAGE_PREFIX", "mcpauth/")
IMAGE_TAG = os.environ.get("RUN_IMAGE_TAG", "")
T0 = time.monotonic()


def say(msg):
    print(f"test-helm-run [{time.monotonic() - T0:5.1f}s]: {msg}", flush=True)


class Fail(Exception):
    pass


def docker(*args, check=True, capture=True, input=None):
    p = subprocess.run([DOCKER, *args], capture_output=capture, text=True, input=input)
    if check and p.returncode != 0:
        raise Fail(f"docker {' '.join(args[:3])}…: {p.stderr.strip()}")
    return p.stdout.strip() if capture else ""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url, method="GET", headers=None, data=None, timeout=3):
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        return 0, str(e).encode()


class Proxy:
    """A round-robin TCP proxy on 127.0.0.1:port to the given backends (a Service's endpoints)."""

    def __init__(self, port, backends):
        self.port, self.backends, self.n = port, backends, 0
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self.run, args=(ready,), daemon=True).start()
        ready.wait(5)

    def run(self, ready):
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self.handle, "127.0.0.1", self.port))
        ready.set()
        self.loop.run_until_complete(server.serve_forever())

    async def handle(self, reader, writer):
        host, port = self.backends[self.n % len(self.backends)]
        self.n += 1
        try:
            r2, w2 = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return

        async def pipe(r, w):
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                w.close()
        await asyncio.gather(pipe(reader, w2), pipe(r2, writer))


class Run:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="mcpauth-helm-run-")
        os.chmod(self.dir, 0o755)
        self.containers = []
        self.secrets = {}  # name -> {key: bytes}
        self.pods = {}  # deployment name -> [(container name, ip, spec)]
        self.t0 = time.monotonic()

    # --- fixtures: what a production install expects to exist ------------------------------------
    def fixtures(self):
        docker("network", "create", PROJECT)
        self.network = True
        gen = os.path.join(self.dir, "init-secrets")
        os.makedirs(gen)
        os.chmod(gen, 0o777)
        docker("run", "--rm", "--network", "none", "-v", f"{gen}:/out", "-e", f"MCPAUTH_INIT_USER_PASSWORD={DEMO_PASSWORD}",
               "--user", "10001:10001", self.image("auth-service"), "init-secrets", "--dir=/out",
               "--database-url=auth-url=postgres://mcpauth@postgres:5432/mcpauth",
               "--database-url=vault-url=postgres://mcpauth@postgres:5432/token_vault", "--user=demo")
        files = {f: open(os.path.join(gen, f), "rb").read() for f in os.listdir(gen) if not f.startswith(".")}
        self.secrets["mcpauth-internal"] = {k: v for k, v in files.items()
                                            if k.startswith(("token-key-", "vault-key-")) or "-at-" in k}
        self.secrets["mcpauth-postgres"] = {"auth-url": files["auth-url"], "vault-url": files["vault-url"]}
        self.secrets["mcpauth-redis"] = {"url": b"redis://redis:6379"}
        self.secrets["mcpauth-oidc"] = {"client-secret": b"unused-in-this-test"}
        # examples/minimal.yaml's names
        self.secrets["mcpauth-db"] = {"auth": files["auth-url"], "vault": files["vault-url"]}
        self.secrets["mcpauth-users"] = {"admin.argon2": files["demo.argon2"]}
        self.demo_hash = files["demo.argon2"].decode().strip()
        self.tls()
        pw = files["postgres-password"].decode().strip()
        self.start("postgres", "postgres:15", ["-e", "POSTGRES_USER=mcpauth", "-e", f"POSTGRES_PASSWORD={pw}",
                                              "-e", "POSTGRES_DB=mcpauth", "--network-alias", "postgres"])
        self.start("redis", "redis:7", ["--network-alias", "redis"])
        deadline = time.monotonic() + 90
        while subprocess.run([DOCKER, "exec", f"{PROJECT}-postgres", "pg_isready", "-h", "127.0.0.1", "-U", "mcpauth",
                              "-d", "mcpauth"], capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise Fail("postgres did not become ready")
            time.sleep(1)
        docker("exec", "-e", f"PGPASSWORD={pw}", f"{PROJECT}-postgres", "psql", "-h", "127.0.0.1", "-U", "mcpauth",
               "-d", "mcpauth", "-qc", "CREATE DATABASE token_vault")
        say("fixtures: init-secrets set, CA + 3 certificates, Postgres (2 databases), Redis")

    def tls(self):
        d = os.path.join(self.dir, "pki")
        os.makedirs(d)
        ossl = lambda *a: subprocess.run(["openssl", *a], cwd=d, check=True, capture_output=True)
        ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
             "-subj", "/CN=mcpauth test CA", "-keyout", "ca.key", "-out", "ca.crt")
        ca = open(os.path.join(d, "ca.crt"), "rb").read()
        for key, svc in (("auth", "auth-service"), ("vault", "token-vault"), ("mcp", "mcp-service")):
            name = f"{RELEASE}-{svc}"
            ext = os.path.join(d, f"{key}.ext")
            with open(ext, "w") as f:
                f.write(f"subjectAltName=DNS:{name},DNS:{name}.{NAMESPACE}.svc,DNS:{name}.{NAMESPACE}.svc.cluster.local\n"
                        "extendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature\n")
            ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={svc}",
                 "-keyout", f"{key}.key", "-out", f"{key}.csr")
            ossl("x509", "-req", "-in", f"{key}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "2", "-extfile", ext, "-out", f"{key}.crt")
            ossl("pkcs8", "-topk8", "-nocrypt", "-in", f"{key}.key", "-out", f"{key}.pk8")
            self.secrets[f"mcpauth-{svc}-tls"] = {"tls.crt": open(os.path.join(d, f"{key}.crt"), "rb").read(),
                                                  "tls.key": open(os.path.join(d, f"{key}.pk8"), "rb").read(),
                                                  "ca.crt": ca}

    def image(self, svc):
        if IMAGE_TAG:
            return f"{IMAGE_PREFIX}{svc}:{IMAGE_TAG}"
        version = yaml.safe_load(open(os.path.join(CHART, "Chart.yaml")))["appVersion"]
        return f"{IMAGE_PREFIX}{svc}:{version}"

    def start(self, name, image, args):
        cname = f"{PROJECT}-{name}"
        docker("rm", "-f", cname, check=False)
        docker("run", "-d", "--name", cname, "--network", PROJECT, *args, image)
        self.containers.append(cname)
        return cname

    # --- rendering ---------------------------------------------------------------------------------
    def render(self, scenario, issuer, resource):
        if scenario == "production":
            users = json.dumps([{"username": "demo", "password_hash": self.demo_hash}])
            values = ["-f", os.path.join(CHART, "examples", "production.yaml"),
                      "-f", os.path.join(ROOT, "tests", "helm", "run-values.yaml"),
                      "--set-json", f"authService.config.login.users={users}"]
        else:  # minimal: generated keys and credentials, plaintext gRPC, a user from a Secret
            values = ["-f", os.path.join(CHART, "examples", "minimal.yaml"),
                      *[a for k in ("authService", "tokenVault", "mcpService") for a in ("--set", f"{k}.replicaCount=2")]]
        p = subprocess.run([HELM, "template", RELEASE, CHART, "-n", NAMESPACE, *values,
                            "--set", f"issuer={issuer}", "--set", f"resource={resource}",
                            *[a for key, svc in (("authService", "auth-service"), ("tokenVault", "token-vault"),
                                                 ("mcpService", "mcp-service"))
                              for a in ("--set", f"{key}.image.repository={self.image(svc).rsplit(':', 1)[0]}",
                                        "--set", f"{key}.image.tag={self.image(svc).rsplit(':', 1)[1]}")]],
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise Fail(f"helm template: {p.stderr}")
        self.docs = [d for d in yaml.safe_load_all(p.stdout) if d]
        for d in self.docs:
            if d["kind"] == "Secret":
                self.secrets[d["metadata"]["name"]] = {k: base64.b64decode(v) for k, v in d.get("data", {}).items()}
        self.configmaps = {d["metadata"]["name"]: d["data"] for d in self.docs if d["kind"] == "ConfigMap"}
        self.services = [d for d in self.docs if d["kind"] == "Service"]
        kinds = sorted({d["kind"] for d in self.docs})
        say(f"rendered {len(self.docs)} objects ({', '.join(kinds)})")

    # --- pods ----------------------------------------------------------------------------------------
    def volume_dir(self, pod, vol):
        src = vol.get("secret") or vol.get("configMap")
        if "secret" in vol:
            name = src["secretName"]
            if name not in self.secrets:
                raise Fail(f"{pod}: volume {vol['name']}: Secret {name} does not exist")
            data = self.secrets[name]
        elif "configMap" in vol:
            name = src["name"]
            if name not in self.configmaps:
                raise Fail(f"{pod}: volume {vol['name']}: ConfigMap {name} does not exist")
            data = {k: v.encode() for k, v in self.configmaps[name].items()}
        else:
            raise Fail(f"{pod}: volume {vol['name']}: only configMap and secret volumes are run here")
        items = src.get("items") or [{"key": k, "path": k} for k in data]
        mode = src.get("defaultMode", 0o644)
        d = os.path.join(self.dir, "volumes", pod, vol["name"])
        os.makedirs(d)
        for it in items:
            if it["key"] not in data:
                raise Fail(f"{pod}: volume {vol['name']}: key {it['key']} not in {name}")
            path = os.path.join(d, it["path"])
            with open(path, "wb") as f:
                f.write(data[it["key"]])
            os.chmod(path, mode)
        return d

    def docker_args(self, pod, meta_labels, spec, container):
        sc = {**spec.get("securityContext", {}), **container.get("securityContext", {})}
        pod_sc = spec.get("securityContext", {})
        args = ["--hostname", pod[:63]]
        if "runAsUser" in sc:
            args += ["--user", f"{sc['runAsUser']}:{sc.get('runAsGroup', sc['runAsUser'])}"]
        if pod_sc.get("fsGroup") is not None:
            args += ["--group-add", str(pod_sc["fsGroup"])]
        if sc.get("readOnlyRootFilesystem"):
            args += ["--read-only"]
        if "ALL" in sc.get("capabilities", {}).get("drop", []):
            args += ["--cap-drop", "ALL"]
        if sc.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges:true"]
        mem = container.get("resources", {}).get("limits", {}).get("memory")
        if mem:
            args += ["--memory", mem.replace("Mi", "m").replace("Gi", "g")]
        for e in container.get("env", []):
            if "value" in e:
                args += ["-e", f"{e['name']}={e['value']}"]
            else:
                ref = e["valueFrom"]["secretKeyRef"]
                args += ["-e", f"{e['name']}={self.secrets[ref['name']][ref['key']].decode()}"]
        vols = {v["name"]: v for v in spec.get("volumes", [])}
        dirs = {}
        for m in container.get("volumeMounts", []):
            if m["name"] not in dirs:
                dirs[m["name"]] = self.volume_dir(pod, vols[m["name"]])
            if "secret" in vols[m["name"]]:
                # Secret files are root:fsGroup 0440 in a pod; here the same through the owner.
                for f in os.listdir(dirs[m["name"]]):
                    os.chown(os.path.join(dirs[m["name"]], f), 0, pod_sc.get("fsGroup", 0))
            args += ["-v", f"{dirs[m['name']]}:{m['mountPath']}{':ro' if m.get('readOnly') else ''}"]
        if "terminationGracePeriodSeconds" in spec:
            args += ["--stop-timeout", str(spec["terminationGracePeriodSeconds"])]
        for svc in self.services:
            sel = svc["spec"].get("selector", {})
            if sel and all(meta_labels.get(k) == v for k, v in sel.items()):
                args += ["--network-alias", svc["metadata"]["name"]]
        cmd = []
        if container.get("command"):
            args += ["--entrypoint", container["command"][0]]
            cmd = container["command"][1:]
        return args, [container["image"], *cmd, *container.get("args", [])]

    def run_jobs(self):
        jobs = [d for d in self.docs if d["kind"] == "Job"
                and any(h in d["metadata"]["annotations"]["helm.sh/hook"].split(",") for h in ("pre-install",))]
        jobs.sort(key=lambda d: int(d["metadata"]["annotations"].get("helm.sh/hook-weight", "0")))
        for job in jobs:
            name = job["metadata"]["name"]
            tmpl = job["spec"]["template"]
            for c in tmpl["spec"]["containers"]:
                args, image_cmd = self.docker_args(name, tmpl["metadata"]["labels"], tmpl["spec"], c)
                cname = f"{PROJECT}-{name}"
                docker("rm", "-f", cname, check=False)
                self.containers.append(cname)
                p = subprocess.run([DOCKER, "run", "--name", cname, "--network", PROJECT, *args, *image_cmd],
                                   capture_output=True, text=True)
                if p.returncode != 0:
                    raise Fail(f"hook Job {name} exited {p.returncode}: {(p.stdout + p.stderr).strip()[-800:]}")
            say(f"hook Job {name} (weight {job['metadata']['annotations']['helm.sh/hook-weight']}) exited 0")

    def run_deployments(self):
        for d in [d for d in self.docs if d["kind"] == "Deployment"]:
            name = d["metadata"]["name"]
            tmpl = d["spec"]["template"]
            self.pods[name] = []
            for i in range(d["spec"].get("replicas", 1)):
                pod = f"{name}-{i}"
                c = tmpl["spec"]["containers"][0]
                args, image_cmd = self.docker_args(pod, tmpl["metadata"]["labels"], tmpl["spec"], c)
                cname = f"{PROJECT}-{pod}"
                docker("rm", "-f", cname, check=False)
                docker("run", "-d", "--name", cname, "--network", PROJECT, *args, *image_cmd)
                self.containers.append(cname)
                ip = docker("inspect", "-f", f"{{{{(index .NetworkSettings.Networks \"{PROJECT}\").IPAddress}}}}", cname)
                self.pods[name].append((cname, ip, c))
            say(f"Deployment {name}: {len(self.pods[name])} replicas started")

    @staticmethod
    def port_of(container, port):
        if isinstance(port, int):
            return port
        return next(p["containerPort"] for p in container["ports"] if p["name"] == port)

    def wait_ready(self, timeout=120):
        deadline = time.monotonic() + timeout
        for name, pods in self.pods.items():
            for cname, ip, c in pods:
                probe = c["readinessProbe"]["httpGet"]
                url = f"http://{ip}:{self.port_of(c, probe['port'])}{probe['path']}"
                while http(url, timeout=1)[0] != 200:
                    state = docker("inspect", "-f", "{{.State.Status}}", cname)
                    if state != "running" or time.monotonic() > deadline:
                        logs = subprocess.run([DOCKER, "logs", "--tail", "30", cname], capture_output=True, text=True)
                        raise Fail(f"{cname} not ready ({state}): {url}\n{logs.stdout}{logs.stderr}")
                    time.sleep(0.5)
        say(f"every pod ready (readinessProbe) {time.monotonic() - self.t0:.0f} s after this scenario began")

    def check_probes(self):
        n = 0
        for name, pods in self.pods.items():
            for cname, ip, c in pods:
                for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                    g = c[kind]["httpGet"]
                    url = f"http://{ip}:{self.port_of(c, g['port'])}{g['path']}"
                    status, _ = http(url)
                    if status != 200:
                        raise Fail(f"{cname} {kind} {url} answered {status}")
                    n += 1
                for p in c["ports"]:
                    if p["name"] == "http":
                        for path in ("/metrics", "/readyz", "/healthz"):
                            status, _ = http(f"http://{ip}:{p['containerPort']}{path}")
                            if status != 404:
                                raise Fail(f"{cname}: the public port serves {path} ({status}), expected 404")
        say(f"{n} rendered probes answered 200 on their rendered ports; public ports answer 404 for admin paths")

    def run_test_pods(self):
        """The `helm test` hook Pods, as `helm test` runs them: each must exit 0."""
        pods = [d for d in self.docs if d["kind"] == "Pod" and d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
        if not pods:
            raise Fail("the chart rendered no helm test Pod")
        for pod in pods:
            name = pod["metadata"]["name"]
            for c in pod["spec"]["containers"]:
                args, image_cmd = self.docker_args(name, pod["metadata"]["labels"], pod["spec"], c)
                cname = f"{PROJECT}-{name}"
                docker("rm", "-f", cname, check=False)
                self.containers.append(cname)
                p = subprocess.run([DOCKER, "run", "--name", cname, "--network", PROJECT, *args, *image_cmd],
                                   capture_output=True, text=True)
                out = (p.stdout + p.stderr).strip()
                if p.returncode != 0:
                    raise Fail(f"helm test Pod {name} exited {p.returncode}: {out[-600:]}")
                say(f"helm test Pod {name}: {out.splitlines()[-1] if out else 'exit 0'}")

    def drain(self, deployment):
        """SIGTERM to one replica, as the kubelet sends after preStop: /readyz turns 503 while the
        pod still serves, and the container is gone well within terminationGracePeriodSeconds."""
        cname, ip, c = self.pods[deployment][-1]
        grace = next(d for d in self.docs if d["kind"] == "Deployment" and d["metadata"]["name"] == deployment)[
            "spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        g = c["readinessProbe"]["httpGet"]
        ready_url = f"http://{ip}:{self.port_of(c, g['port'])}{g['path']}"
        live = c["livenessProbe"]["httpGet"]
        live_url = f"http://{ip}:{self.port_of(c, live['port'])}{live['path']}"
        t0 = time.monotonic()
        docker("kill", "-s", "TERM", cname)
        not_ready = None
        while time.monotonic() - t0 < grace:
            status = http(ready_url, timeout=1)[0]
            if status == 503 and not_ready is None:
                not_ready = time.monotonic() - t0
                if http(live_url, timeout=1)[0] != 200:
                    raise Fail(f"{cname}: not serving /healthz while draining")
            if docker("inspect", "-f", "{{.State.Status}}", cname) != "running":
                break
            time.sleep(0.05)
        gone = time.monotonic() - t0
        code = docker("inspect", "-f", "{{.State.ExitCode}}", cname)
        if not_ready is None or not_ready > 1:
            raise Fail(f"{cname}: /readyz did not answer 503 within 1 s of SIGTERM ({not_ready})")
        if gone >= grace or code != "0":
            raise Fail(f"{cname}: exit {code} {gone:.1f} s after SIGTERM (terminationGracePeriodSeconds {grace})")
        say(f"SIGTERM to {cname}: /readyz 503 after {not_ready * 1000:.0f} ms while still serving, "
            f"exit 0 after {gone:.1f} s (grace {grace} s)")

    def endpoints(self, deployment, port_name):
        return [(ip, self.port_of(c, port_name)) for _, ip, c in self.pods[deployment]]

    def cleanup(self):
        for c in reversed(self.containers):
            subprocess.run([DOCKER, "rm", "-f", c], capture_output=True)
        if getattr(self, "network", False):
            subprocess.run([DOCKER, "network", "rm", PROJECT], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def dump_logs(self):
        for c in self.containers:
            p = subprocess.run([DOCKER, "logs", "--tail", "15", c], capture_output=True, text=True)
            print(f"--- {c}\n{(p.stdout + p.stderr).strip()}", file=sys.stderr)


def revocation(run, state_file, mcp_host, auth_host):
    state = json.load(open(state_file))
    token, client_id = state["tokens"]["access_token"], state["client"]["client_id"]
    init = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "helm-run", "version": "0"}}}).encode()
    hdr = {"Host": mcp_host, "Authorization": f"Bearer {token}", "Content-Type": "application/json",
           "Accept": "application/json, text/event-stream"}
    mcps = run.endpoints(f"{RELEASE}-mcp-service", "http")
    for ip, port in mcps:
        status, body = http(f"http://{ip}:{port}/mcp", "POST", hdr, init)
        if status != 200:
            raise Fail(f"mcp-service {ip}: the access token was not accepted before revocation ({status}: {body[:200]!r})")
    ip, port = run.endpoints(f"{RELEASE}-auth-service", "http")[0]
    form = urllib.parse.urlencode({"token": token, "client_id": client_id}).encode()
    t0 = time.monotonic()
    status, body = http(f"http://{ip}:{port}/revoke", "POST",
                        {"Host": auth_host, "Content-Type": "application/x-www-form-urlencoded"}, form)
    if status != 200:
        raise Fail(f"POST /revoke at auth-service {ip} answered {status}: {body[:200]!r}")
    refused = {}
    while len(refused) < len(mcps) and time.monotonic() - t0 < 5:
        for ip, port in mcps:
            if ip not in refused and http(f"http://{ip}:{port}/mcp", "POST", hdr, init, timeout=1)[0] == 401:
                refused[ip] = time.monotonic() - t0
        time.sleep(0.02)
    if len(refused) < len(mcps):
        raise Fail(f"the revoked token is still accepted 5 s later by {[ip for ip, _ in mcps if ip not in refused]}")
    worst = max(refused.values())
    say("revoked at one auth-service replica; refused by every mcp-service replica after "
        + ", ".join(f"{v * 1000:.0f} ms" for v in refused.values()))
    if worst >= 1.0:
        raise Fail(f"revocation took {worst:.2f} s to reach every mcp-service replica (limit 1 s)")
    return worst


SCENARIOS = {
    # name: (login user, checks after the flow)
    "production": ("demo", True),   # examples/production.yaml: existing Secrets, mTLS, 2 replicas each
    "minimal": ("admin", False),    # examples/minimal.yaml: generated Secret, plaintext gRPC, 2 replicas each
}


def scenario(name):
    user, full = SCENARIOS[name]
    say(f"=== {name}")
    run = Run()
    try:
        auth_port, mcp_port = free_port(), free_port()
        issuer, resource = f"http://localhost:{auth_port}", f"http://localhost:{mcp_port}/mcp"
        run.fixtures()
        run.render(name, issuer, resource)
        run.run_jobs()
        run.run_deployments()
        run.wait_ready()
        run.check_probes()
        Proxy(auth_port, run.endpoints(f"{RELEASE}-auth-service", "http"))
        Proxy(mcp_port, run.endpoints(f"{RELEASE}-mcp-service", "http"))
        say(f"Services on the host: issuer {issuer}, MCP {resource} (round robin over 2 pods each)")
        state_file = os.path.join(run.dir, "flow-state.json")
        env = {**os.environ, "STATE_FILE": state_file, "PHASE": "first", "MCP_URL": resource, "ISSUER": issuer,
               "DEMO_USER": user, "DEMO_PASSWORD": DEMO_PASSWORD}
        p = subprocess.run([NODE if os.path.exists(NODE) else "node", os.path.join(ROOT, "tests", "e2e", "docker-compose-flow.mjs")],
                           env=env, capture_output=True, text=True, timeout=180)
        print("\n".join("  " + line for line in (p.stdout + p.stderr).strip().splitlines()))
        if p.returncode != 0:
            raise Fail("the MCP TypeScript SDK flow through the rendered Services failed")
        say("MCP TypeScript SDK: the whole flow passed through the rendered auth-service and mcp-service")
        revocation(run, state_file, f"localhost:{mcp_port}", f"localhost:{auth_port}")
        run.run_test_pods()
        if full:
            run.drain(f"{RELEASE}-mcp-service")
        return True
    except Fail as e:
        print(f"test-helm-run: FAIL ({name}): {e}", file=sys.stderr)
        run.dump_logs()
        return False
    finally:
        run.cleanup()


def main():
    names = sys.argv[1:] or list(SCENARIOS)
    failed = [n for n in names if not scenario(n)]
    if failed:
        sys.exit(f"test-helm-run: FAIL: {', '.join(failed)}")
    say(f"PASS: {', '.join(names)} — the rendered chart runs (hook Jobs, 6 pods, probes, SDK flow, "
        "revocation across replicas, helm test; drain on SIGTERM)")


if __name__ == "__main__":
    main()
