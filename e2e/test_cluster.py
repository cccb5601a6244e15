"""The cluster itself does what the project's components rely on."""

from __future__ import annotations

import pytest
from kubernetes import client

from e2e import support

pytestmark = pytest.mark.e2e

# Runs in a pod: call the API server the way an in-cluster client does, through
# the `kubernetes` Service, verifying its certificate and sending the pod's
# service account token.
IN_CLUSTER_CALL = """
import json, os, ssl, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
host = os.environ["KUBERNETES_SERVICE_HOST"]
port = os.environ["KUBERNETES_SERVICE_PORT"]
token = open(f"{sa}/token").read()
ctx = ssl.create_default_context(cafile=f"{sa}/ca.crt")
req = urllib.request.Request(
    f"https://{host}:{port}/api", headers={"Authorization": f"Bearer {token}"}
)
with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
    print("API", resp.status, json.load(resp)["kind"])
"""


def test_pods_reach_the_api_server_through_the_kubernetes_service(
    core: client.CoreV1Api, namespace: str, worker_image: str
) -> None:
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="api-caller"),
        spec=client.V1PodSpec(
            restart_policy="Never",
            containers=[
                client.V1Container(
                    name="caller",
                    image=worker_image,
                    image_pull_policy="Never",
                    command=["python3", "-c", IN_CLUSTER_CALL],
                )
            ],
        ),
    )
    core.create_namespaced_pod(namespace, pod)

    done = support.wait_for_pod(
        core, namespace, "api-caller", until=lambda p: p.status.phase in ("Succeeded", "Failed")
    )

    log = core.read_namespaced_pod_log("api-caller", namespace)
    assert done.status.phase == "Succeeded", log
    assert "API 200 APIVersions" in log
