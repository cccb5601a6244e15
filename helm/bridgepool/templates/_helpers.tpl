{{/*
Names, labels and shared pieces. The per-component helpers take a dict:
  (dict "root" $ "component" "operator")   or "router"
*/}}

{{/* The chart's name, or nameOverride. */}}
{{- define "bridgepool.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object of the release: fullnameOverride, else the release
name, followed by the chart name unless the release name already holds it.
*/}}
{{- define "bridgepool.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := include "bridgepool.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "bridgepool.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* A component's object name: <fullname>-<component>. */}}
{{- define "bridgepool.componentFullname" -}}
{{- printf "%s-%s" (include "bridgepool.fullname" .root | trunc 50 | trimSuffix "-") .component }}
{{- end }}

{{/* What selects a component's pods; never changes over upgrades. */}}
{{- define "bridgepool.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bridgepool.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Labels on every object of a component. */}}
{{- define "bridgepool.labels" -}}
helm.sh/chart: {{ include "bridgepool.chart" .root }}
{{ include "bridgepool.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: bridgepool
{{- end }}

{{/* The service account a component's pods run as. */}}
{{- define "bridgepool.serviceAccountName" -}}
{{- $sa := (index .root.Values .component).serviceAccount }}
{{- if $sa.create }}
{{- default (include "bridgepool.componentFullname" .) $sa.name }}
{{- else }}
{{- default "default" $sa.name }}
{{- end }}
{{- end }}

{{/* repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "bridgepool.image" -}}
{{- $image := (index .root.Values .component).image }}
{{- printf "%s:%s" $image.repository (default .root.Chart.AppVersion $image.tag) }}
{{- end }}

{{/* The label every worker pod carries (bridgepool/labels.py: LABEL_POOL). */}}
{{- define "bridgepool.workerPoolLabel" -}}
bridgepool.io/pool
{{- end }}

{{/*
Hardening shared by every pod: a fixed non-root uid (the images' user 10001),
the runtime's default seccomp profile.
*/}}
{{- define "bridgepool.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* ...and by every container: nothing written outside /tmp, no privileges. */}}
{{- define "bridgepool.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
The pod-spec fields every component takes from its values the same way:
pull secrets, scheduling.
*/}}
{{- define "bridgepool.podScheduling" -}}
{{- $values := index .root.Values .component }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
What selects the operator's worker pods, in every pool's namespace
(bridgepool/labels.py: LABEL_COMPONENT, COMPONENT_WORKER, LABEL_MANAGED_BY,
MANAGED_BY).
*/}}
{{- define "bridgepool.workerSelectorLabels" -}}
app.kubernetes.io/component: worker
app.kubernetes.io/managed-by: bridgepool-operator
{{- end }}

{{/* A component's selector labels as k=v,k=v, the way the operator takes them. */}}
{{- define "bridgepool.selectorString" -}}
{{- $pairs := list }}
{{- range $key, $value := include "bridgepool.selectorLabels" . | fromYaml }}
{{- $pairs = append $pairs (printf "%s=%s" $key $value) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{/*
The release key (bridgepool.credentials): the user's Secret
(workerKeys.existingSecret), else the chart's. And the scrape token, in a
Secret of its own so Prometheus, which reads it, never reads the key.
*/}}
{{- define "bridgepool.workerKeysSecret" -}}
{{- .Values.workerKeys.existingSecret | default (include "bridgepool.componentFullname" (dict "root" . "component" "worker-keys")) }}
{{- end }}

{{- define "bridgepool.scrapeTokenSecret" -}}
{{- include "bridgepool.componentFullname" (dict "root" . "component" "scrape-token") }}
{{- end }}

{{/* A new random key: 64 hex digits. */}}
{{- define "bridgepool.newKey" -}}
{{- randAlphaNum 64 | sha256sum }}
{{- end }}

{{/* Where the operator and the router read the release key directory. */}}
{{- define "bridgepool.releaseKeysDir" -}}
/var/run/bridgepool/release-keys
{{- end }}

{{/*
The release key directory as one volume, laid out as the components read it
(files key, previous, scrape-token). "previous" is there only during a
rotation: its source is optional, so a Secret without it still mounts.
*/}}
{{- define "bridgepool.releaseKeysVolume" -}}
- name: release-keys
  projected:
    sources:
      - secret:
          name: {{ include "bridgepool.workerKeysSecret" . }}
          items:
            - key: key
              path: key
      - secret:
          name: {{ include "bridgepool.workerKeysSecret" . }}
          optional: true
          items:
            - key: previous
              path: previous
      - secret:
          name: {{ include "bridgepool.scrapeTokenSecret" . }}
          items:
            - key: token
              path: scrape-token
{{- end }}

{{- define "bridgepool.releaseKeysMount" -}}
- name: release-keys
  mountPath: {{ include "bridgepool.releaseKeysDir" . }}
  readOnly: true
{{- end }}
