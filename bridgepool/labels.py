"""Kubernetes names shared by the operator (which writes them on worker pods) and
the router (which discovers workers by them). Defined once, here."""

from __future__ import annotations

GROUP = "bridgepool.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "BridgePool"
PLURAL = "bridgepools"
SINGULAR = "bridgepool"
SHORT_NAME = "bp"

# Labels on every worker pod.
LABEL_POOL = f"{GROUP}/pool"  # the BridgePool's name
LABEL_REVISION = f"{GROUP}/revision"  # hash of the pod template the pod was built from
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
COMPONENT_WORKER = "worker"
MANAGED_BY = "bridgepool-operator"

# Annotations on worker pods.
# Present (value: RFC 3339 time the drain began) when the pod is draining:
# the router gives it no new sessions; the operator deletes it once its
# sessions have ended or the drain timeout has passed.
ANNOTATION_DRAINING = f"{GROUP}/draining"
# Why the pod is draining (scale-down, rollout, unhealthy, recycle).
ANNOTATION_DRAIN_REASON = f"{GROUP}/drain-reason"

# Annotation on a BridgePool: the last spec the operator could use (JSON). A
# later spec it cannot use does not stop the pool healing on this one.
ANNOTATION_LAST_VALID_SPEC = f"{GROUP}/last-valid-spec"


# Each pool's keys (bridgepool.credentials): a Secret the operator writes beside
# the pool, which its worker pods mount read-only as their key directory.
WORKER_KEYS_VOLUME = "bridgepool-keys"
WORKER_KEYS_DIR = "/var/run/bridgepool/keys"


def keys_secret_name(pool: str) -> str:
    """The Secret holding the keys of one pool's workers."""
    return f"{pool}-bridgepool-keys"


def network_policy_name(pool: str) -> str:
    """The NetworkPolicy that says who may reach one pool's workers."""
    return f"{pool}-bridgepool-workers"


def pool_selector(pool: str) -> str:
    """The label selector of one pool's worker pods."""
    return f"{LABEL_POOL}={pool}"


# On a BridgePool: the handler files its workers load when the pool runs on one
# machine (``bridgepool run``), comma-separated, relative to the YAML file.
# The operator ignores it: on a cluster the image holds the handlers.
ANNOTATION_LOCAL_HANDLERS = f"{GROUP}/local-handlers"
