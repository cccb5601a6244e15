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
