"""The worker pod builder and the revision hash."""

from __future__ import annotations

from typing import Any

import pytest

from bridgepool import labels
from bridgepool.spec import BridgePoolSpec
from bridgepool_operator.pods import PoolRef, build_worker_pod, refusal_message, revision_of

POOL = PoolRef(name="demo", namespace="ns1", uid="uid-1")


def spec(**fields: Any) -> BridgePoolSpec:
    template = fields.pop(
        "template",
        {
            "metadata": {"labels": {"team": "a"}, "annotations": {"note": "x"}},
            "spec": {
                "containers": [
                    {
                        "name": "worker",
                        "image": "w:1",
                        "env": [{"name": "USER_VAR", "value": "1"}],
                        "resources": {"limits": {"memory": "256Mi"}},
                    }
                ],
                "nodeSelector": {"disk": "ssd"},
            },
        },
    )
    return BridgePoolSpec.model_validate({"template": template, **fields})


def test_pod_shape() -> None:
    s = spec(
        worker={"capacity": 4, "maxRequests": 100, "maxRssBytes": 1000},
        sessions={"idleTtlSeconds": 60, "maxPerWorker": 7},
        rollout={"terminationGracePeriodSeconds": 20},
    )
    rev = revision_of(s)
    pod = build_worker_pod(POOL, s, rev)
    meta = pod["metadata"]
    assert meta["generateName"] == "demo-"
    assert "name" not in meta
    assert meta["namespace"] == "ns1"
    assert meta["labels"] == {
        "team": "a",
        labels.LABEL_POOL: "demo",
        labels.LABEL_REVISION: rev,
        labels.LABEL_COMPONENT: "worker",
        labels.LABEL_MANAGED_BY: "bridgepool-operator",
    }
    assert meta["annotations"] == {"note": "x"}
    (owner,) = meta["ownerReferences"]
    assert owner == {
        "apiVersion": "bridgepool.io/v1alpha1",
        "kind": "BridgePool",
        "name": "demo",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    body = pod["spec"]
    assert body["terminationGracePeriodSeconds"] == 20
    assert body["nodeSelector"] == {"disk": "ssd"}
    (c,) = body["containers"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env == {
        "USER_VAR": "1",
        "BRIDGEPOOL_WORKER_CAPACITY": "4",
        "BRIDGEPOOL_WORKER_SESSION_TTL_SECONDS": "60.0",
        "BRIDGEPOOL_WORKER_MAX_SESSIONS": "7",
        "BRIDGEPOOL_WORKER_MAX_REQUESTS": "100",
        "BRIDGEPOOL_WORKER_MAX_RSS_BYTES": "1000",
        "BRIDGEPOOL_WORKER_GRACE_SECONDS": "16.0",
        "BRIDGEPOOL_WORKER_HANDOFF_SESSIONS": "true",
        # one health check of the routers (interval 2 s + timeout 1 s, the defaults)
        "BRIDGEPOOL_WORKER_EXIT_LINGER_SECONDS": "3.0",
        "BRIDGEPOOL_WORKER_KEYS_DIR": "/var/run/bridgepool/keys",
    }
    assert c["ports"] == [{"name": "bridge", "containerPort": 8080, "protocol": "TCP"}]
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "bridge"}
    assert c["readinessProbe"]["failureThreshold"] == 1
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "bridge"}
    assert c["livenessProbe"]["periodSeconds"] == 30
    assert c["livenessProbe"]["failureThreshold"] == 3
    assert c["resources"] == {"limits": {"memory": "256Mi"}}


def test_pool_labels_win_over_template_labels() -> None:
    s = spec(
        template={
            "metadata": {"labels": {labels.LABEL_POOL: "other"}},
            "spec": {"containers": [{"name": "w", "image": "i"}]},
        }
    )
    pod = build_worker_pod(POOL, s, "r1")
    assert pod["metadata"]["labels"][labels.LABEL_POOL] == "demo"


def test_building_does_not_mutate_the_spec() -> None:
    s = spec()
    before = s.model_dump()
    build_worker_pod(POOL, s, "r")
    assert s.model_dump() == before


def test_service_links_are_off_unless_the_template_turns_them_on() -> None:
    # A Service named "bridgepool-worker" would otherwise set
    # BRIDGEPOOL_WORKER_PORT=tcp://... in every worker, over its own setting.
    plain = build_worker_pod(POOL, spec(), revision_of(spec()))
    assert plain["spec"]["enableServiceLinks"] is False
    container = {"name": "worker", "image": "w:1"}
    wanted = spec(template={"spec": {"containers": [container], "enableServiceLinks": True}})
    assert build_worker_pod(POOL, wanted, revision_of(wanted))["spec"]["enableServiceLinks"]


def test_revision_is_stable_and_tracks_what_lands_in_the_pod() -> None:
    base = revision_of(spec())
    assert base == revision_of(spec())
    assert len(base) == 10
    assert revision_of(spec(worker={"capacity": 2})) != base
    assert revision_of(spec(rollout={"terminationGracePeriodSeconds": 5})) != base
    assert revision_of(spec(health={"intervalSeconds": 10})) != base
    # Sizes and routing do not change the pod: no rollout for them.
    assert revision_of(spec(minReplicas=4, maxReplicas=8)) == base
    assert revision_of(spec(routing={"callTimeoutSeconds": 5})) == base
    assert revision_of(spec(rollout={"drainTimeoutSeconds": 5})) == base


INVALID_NAME = {
    "kind": "Status",
    "status": "Failure",
    "message": 'Pod "demo-4znm5" is invalid: spec.containers[0].name: Invalid value: "Worker_1": '
    "a lowercase RFC 1123 label must consist of ...",
    "reason": "Invalid",
    "details": {
        "name": "demo-4znm5",
        "kind": "Pod",
        "causes": [
            {
                "reason": "FieldValueInvalid",
                "message": 'Invalid value: "Worker_1": a lowercase RFC 1123 label must ...',
                "field": "spec.containers[0].name",
            }
        ],
    },
    "code": 422,
}
UNKNOWN_FIELDS = {
    "kind": "Status",
    "status": "Failure",
    "message": 'Pod in version "v1" cannot be handled as a Pod: strict decoding error: '
    'unknown field "spec.containers[0].imagePullPolcy", '
    'unknown field "spec.containers[0].resoures"',
    "reason": "BadRequest",
    "code": 400,
}


@pytest.mark.parametrize(
    ("status", "message"),
    [
        pytest.param(
            INVALID_NAME,
            'spec.template.spec.containers[0].name: Invalid value: "Worker_1": '
            "a lowercase RFC 1123 label must ...",
            id="invalid value",
        ),
        pytest.param(
            UNKNOWN_FIELDS,
            'strict decoding error: unknown field "spec.template.spec.containers[0].imagePullPolcy"'
            ', unknown field "spec.template.spec.containers[0].resoures"',
            id="unknown fields",
        ),
        pytest.param(
            {"message": 'Pod "demo-x" is invalid: metadata.labels: Invalid value: "a b"'},
            'metadata.labels: Invalid value: "a b"',
            id="no causes: the message without the pod's name",
        ),
        pytest.param({}, "refused", id="no message"),
    ],
)
def test_a_refusal_names_the_pools_field_and_not_the_pod(
    status: dict[str, Any], message: str
) -> None:
    assert refusal_message(status) == message


def test_the_disruption_budget_selects_the_pools_workers_and_lets_unready_ones_go() -> None:
    from bridgepool_operator.pods import build_budget

    budget = build_budget(PoolRef("web", "team-a", "u1"), 2)
    assert budget["metadata"]["name"] == "web"
    assert budget["metadata"]["ownerReferences"][0]["uid"] == "u1"
    assert budget["spec"] == {
        "minAvailable": 2,
        "selector": {"matchLabels": {"bridgepool.io/pool": "web"}},
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
    }


def test_the_worker_mounts_its_pools_keys_read_only_and_is_told_where() -> None:
    pod = build_worker_pod(POOL, spec(), revision_of(spec()))
    (worker,) = pod["spec"]["containers"]
    assert worker["volumeMounts"] == [
        {"name": "bridgepool-keys", "mountPath": "/var/run/bridgepool/keys", "readOnly": True}
    ]
    assert {"name": "BRIDGEPOOL_WORKER_KEYS_DIR", "value": "/var/run/bridgepool/keys"} in (
        worker["env"]
    )
    assert pod["spec"]["volumes"] == [
        {"name": "bridgepool-keys", "secret": {"secretName": "demo-bridgepool-keys"}}
    ]


def test_the_keys_take_the_place_of_a_template_mount_of_their_name_or_path() -> None:
    data = {"name": "data", "emptyDir": {}}
    template = {
        "spec": {
            "containers": [
                {
                    "name": "w",
                    "image": "i",
                    "volumeMounts": [
                        {"name": "data", "mountPath": "/data"},
                        {"name": "mine", "mountPath": "/var/run/bridgepool/keys"},
                        {"name": "bridgepool-keys", "mountPath": "/elsewhere"},
                    ],
                    "env": [{"name": "BRIDGEPOOL_WORKER_KEYS_DIR", "value": "/elsewhere"}],
                }
            ],
            "volumes": [data, {"name": "bridgepool-keys", "emptyDir": {}}],
        }
    }
    s = spec(template=template)
    pod = build_worker_pod(POOL, s, revision_of(s))
    (worker,) = pod["spec"]["containers"]
    assert [m["name"] for m in worker["volumeMounts"]] == ["data", "bridgepool-keys"]
    keys_dir = [e["value"] for e in worker["env"] if e["name"] == "BRIDGEPOOL_WORKER_KEYS_DIR"]
    assert keys_dir == ["/var/run/bridgepool/keys"]
    assert pod["spec"]["volumes"] == [
        data,
        {"name": "bridgepool-keys", "secret": {"secretName": "demo-bridgepool-keys"}},
    ]
