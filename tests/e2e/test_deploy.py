"""docs/reference.md §11: the Kubernetes example parses and keeps its promises: the app
and the sidecar in one pod, config from a ConfigMap that passes `check`,
credentials for the sidecar only, probes on the admin port, a locked-down
container."""

from __future__ import annotations

import subprocess

import yaml

import harness

K8S = harness.REPO_ROOT / "docker" / "k8s" / "sidecar.yaml"


def _docs():
    return {d["kind"]: d for d in yaml.safe_load_all(K8S.read_text()) if d}


def test_manifests_parse_and_have_the_expected_objects():
    docs = _docs()
    assert {"ServiceAccount", "ConfigMap", "Deployment"} <= set(docs)
    for d in docs.values():
        assert d["apiVersion"] and d["metadata"]["name"]


def test_configmap_config_passes_check(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text(_docs()["ConfigMap"]["data"]["config.toml"])
    out = subprocess.run([harness.tenantgate_bin(), "check", "--config", str(cfg)], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr


def test_only_the_sidecar_gets_aws_credentials_and_it_is_locked_down():
    docs = _docs()
    sa = docs["ServiceAccount"]["metadata"]["annotations"]
    assert sa["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    pod = docs["Deployment"]["spec"]["template"]
    assert pod["metadata"]["annotations"]["eks.amazonaws.com/skip-containers"] == "app"
    assert pod["spec"]["serviceAccountName"] == docs["ServiceAccount"]["metadata"]["name"]
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    app, tg = containers["app"], containers["tenantgate"]
    for env in app.get("env", []):
        assert not env["name"].startswith("AWS_"), env
    admin = {p["name"]: p["containerPort"] for p in tg["ports"]}["admin"]
    assert tg["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert tg["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in (tg["readinessProbe"], tg["livenessProbe"]):
        assert probe["httpGet"]["port"] in ("admin", admin)
    sc = tg["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert tg["resources"]["requests"]["memory"] and tg["resources"]["limits"]["memory"]
    mounts = {m["mountPath"] for m in tg["volumeMounts"]}
    assert "/etc/tenantgate" in mounts and tg["args"][-1] == "/etc/tenantgate/config.toml"


def test_manifests_pass_the_kubernetes_schema():
    """docs/reference.md §11: every object validates (strict: no unknown fields) against
    the Kubernetes OpenAPI schema bundled with kubernetes-validate; a typo in
    a field name would fail here."""
    import copy

    import kubernetes_validate

    docs = [d for d in yaml.safe_load_all(K8S.read_text()) if d]
    for d in docs:
        kubernetes_validate.validate(d, "1.33", strict=True)
    broken = copy.deepcopy(_docs()["Deployment"])
    broken["spec"]["template"]["spec"]["containers"][1]["readinessProbes"] = {}
    try:
        kubernetes_validate.validate(broken, "1.33", strict=True)
    except kubernetes_validate.ValidationError:
        pass
    else:
        raise AssertionError("the schema check accepted an unknown field")
