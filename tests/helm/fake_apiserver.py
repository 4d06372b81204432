"""A minimal Kubernetes API server for `helm template --dry-run=server`, so that the chart's
`lookup` calls see Secrets as a cluster would have them (tests/helm/test_chart.py).

    python3 fake_apiserver.py PORT OBJECTS.json

Answers discovery for the kinds the chart renders, GET of the objects in OBJECTS.json (a list of
Kubernetes objects, re-read on every request), 404 for any other GET, and echoes POST/PUT/PATCH
(server-side dry runs). Loopback only.
"""
import http.server
import json
import sys

KINDS = {  # group/version -> [(resource, kind, namespaced)]
    "v1": [("secrets", "Secret", True), ("configmaps", "ConfigMap", True), ("services", "Service", True),
           ("serviceaccounts", "ServiceAccount", True), ("pods", "Pod", True), ("namespaces", "Namespace", False)],
    "apps/v1": [("deployments", "Deployment", True)],
    "batch/v1": [("jobs", "Job", True)],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "autoscaling/v2": [("horizontalpodautoscalers", "HorizontalPodAutoscaler", True)],
    "networking.k8s.io/v1": [("networkpolicies", "NetworkPolicy", True), ("ingresses", "Ingress", True)],
    "gateway.networking.k8s.io/v1": [("httproutes", "HTTPRoute", True)],
    "monitoring.coreos.com/v1": [("servicemonitors", "ServiceMonitor", True), ("prometheusrules", "PrometheusRule", True)],
}
OBJECTS = sys.argv[2]


def resources(gv):
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": [{"name": r, "singularName": k.lower(), "namespaced": n, "kind": k,
                           "verbs": ["get", "list", "create", "update", "patch", "delete"]}
                          for r, k, n in KINDS[gv]]}


class Handler(http.server.BaseHTTPRequestHandler):
    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def not_found(self):
        self.reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})

    def do_GET(self):
        path = self.path.split("?")[0].rstrip("/")
        if path == "/version":
            return self.reply(200, {"major": "1", "minor": "35", "gitVersion": "v1.35.0"})
        if path == "/api":
            return self.reply(200, {"kind": "APIVersions", "apiVersion": "v1", "versions": ["v1"],
                                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
        if path == "/apis":
            groups = {}
            for gv in KINDS:
                if "/" in gv:
                    g, v = gv.split("/")
                    groups.setdefault(g, []).append({"groupVersion": gv, "version": v})
            return self.reply(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": vs, "preferredVersion": vs[0]} for g, vs in groups.items()]})
        if path == "/api/v1":
            return self.reply(200, resources("v1"))
        if path.startswith("/apis/") and path.count("/") == 3:
            gv = path[len("/apis/"):]
            return self.reply(200, resources(gv)) if gv in KINDS else self.not_found()
        parts = path.split("/")
        # /api/v1/namespaces/NS/RESOURCE/NAME or /apis/G/V/namespaces/NS/RESOURCE/NAME
        if "namespaces" in parts and len(parts) >= parts.index("namespaces") + 4:
            i = parts.index("namespaces")
            ns, res, name = parts[i + 1], parts[i + 2], parts[i + 3]
            with open(OBJECTS) as f:
                objects = json.load(f)
            for o in objects:
                kind = o["kind"]
                if (o["metadata"]["name"] == name and o["metadata"].get("namespace", ns) == ns
                        and any(r == res and k == kind for rs in KINDS.values() for r, k, _ in rs)):
                    return self.reply(200, o)
        return self.not_found()

    def echo(self):
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n)
        try:
            return self.reply(201, json.loads(body or b"{}"))
        except ValueError:
            return self.reply(201, {})

    do_POST = do_PUT = do_PATCH = echo

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
