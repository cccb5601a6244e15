{{/*
The rights of each component, written once and used by both RBAC modes
(cluster-wide ClusterRoles, or a Role per watched namespace). Every verb
here is one the code (or kopf, for the operator) uses, and no more.
*/}}

{{/* Operator, namespaced resources. */}}
{{- define "bridgepool.operator.namespacedRules" -}}
# The pools: listed and watched; patched for kopf's finalizer and its
# bookkeeping annotations.
- apiGroups: ["bridgepool.io"]
  resources: ["bridgepools"]
  verbs: ["list", "watch", "patch"]
# The status the operator writes after each pass.
- apiGroups: ["bridgepool.io"]
  resources: ["bridgepools/status"]
  verbs: ["patch"]
# Worker pods: indexed and watched, created, drain-annotated, deleted.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# Events on the pools (kopf posts core/v1 events).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# Each pool's PodDisruptionBudget: created, then patched as the pool's size changes.
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["create", "patch"]
# Each pool's Secret of keys, which its workers mount: created; when it exists,
# read and replaced if it differs. It goes with the pool (owner reference).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "update"]
# Each pool's NetworkPolicy: the same, and deleted when the pool turns it off.
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "create", "update", "delete"]
{{- end }}

{{/*
Operator, cluster-scoped: kopf watches CRDs to learn which resources exist;
when it serves a list of namespaces it also watches namespaces to learn
which of them exist (it ignores namespaces when it serves the cluster).
*/}}
{{- define "bridgepool.operator.clusterRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- if .Values.watchNamespaces }}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- end }}

{{/* Router: discovery lists and watches worker pods and the pools' settings. */}}
{{- define "bridgepool.router.namespacedRules" -}}
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
- apiGroups: ["bridgepool.io"]
  resources: ["bridgepools"]
  verbs: ["list", "watch"]
{{- end }}

{{/*
Router, cluster-scoped: with auth.mode kubernetes it asks the API server who
each caller is (TokenReview) and whether they may make the call on the pool
(SubjectAccessReview). Both APIs are cluster-scoped and create-only, so even a
router serving a list of namespaces needs a ClusterRole for them.
*/}}
{{- define "bridgepool.router.clusterRules" -}}
{{- if eq .Values.auth.mode "kubernetes" -}}
- apiGroups: ["authentication.k8s.io"]
  resources: ["tokenreviews"]
  verbs: ["create"]
- apiGroups: ["authorization.k8s.io"]
  resources: ["subjectaccessreviews"]
  verbs: ["create"]
{{- end }}
{{- end }}

{{/*
People calling pools through the router: what the router's
SubjectAccessReviews ask for (execute, anonymously or in a session; end a
session; a pool's detail; the list of pools).
*/}}
{{- define "bridgepool.caller.rules" -}}
- apiGroups: ["bridgepool.io"]
  resources: ["bridgepools/execute"]
  verbs: ["create"]
- apiGroups: ["bridgepool.io"]
  resources: ["bridgepools/sessions"]
  verbs: ["delete"]
- apiGroups: ["bridgepool.io"]
  resources: ["bridgepools"]
  verbs: ["get", "list"]
{{- end }}

{{/* People looking at pools: a pool's detail and the list of pools. */}}
{{- define "bridgepool.viewer.rules" -}}
- apiGroups: ["bridgepool.io"]
  resources: ["bridgepools"]
  verbs: ["get", "list"]
{{- end }}
