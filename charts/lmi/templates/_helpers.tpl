{{/* Name of the chart, or nameOverride. */}}
{{- define "lmi.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Base name of every object: fullnameOverride, else the release name (plus "-lmi" unless it contains it). */}}
{{- define "lmi.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "lmi.operator.fullname" -}}{{ include "lmi.fullname" . }}-operator{{- end -}}
{{- define "lmi.router.fullname" -}}{{ include "lmi.fullname" . }}-router{{- end -}}

{{/* Labels on every object. */}}
{{- define "lmi.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "lmi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: lmi
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component ("operator" or "router"); pass (dict "root" $ "component" "x"). */}}
{{- define "lmi.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lmi.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* An image reference; pass (dict "root" $ "repository" "x"). */}}
{{- define "lmi.image" -}}
{{- $tag := default .root.Chart.AppVersion .root.Values.image.tag -}}
{{- if .root.Values.image.registry -}}
{{- printf "%s/%s:%s" (trimSuffix "/" .root.Values.image.registry) .repository $tag -}}
{{- else -}}
{{- printf "%s:%s" .repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "lmi.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "lmi.operator.fullname" .) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "lmi.router.serviceAccountName" -}}
{{- if .Values.router.serviceAccount.create -}}
{{- default (include "lmi.router.fullname" .) .Values.router.serviceAccount.name -}}
{{- else -}}
{{- required "router.serviceAccount.name is required when router.serviceAccount.create is false" .Values.router.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Restricted Pod Security (https://kubernetes.io/docs/concepts/security/pod-security-standards/#restricted), pod level. */}}
{{- define "lmi.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Restricted Pod Security, container level. */}}
{{- define "lmi.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Spread replicas over nodes and zones (soft); pass (dict "root" $ "component" "x"). */}}
{{- define "lmi.topologySpread" -}}
- maxSkew: 1
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "lmi.selectorLabels" . | nindent 6 }}
- maxSkew: 1
  topologyKey: topology.kubernetes.io/zone
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "lmi.selectorLabels" . | nindent 6 }}
{{- end -}}

{{/* LMI_NATS_URL from router.events (a URL, or a key of a Secret); nothing without one. The
operator counts queued events with it, the routers store and dispatch them. */}}
{{- define "lmi.natsUrlEnv" -}}
{{- with .Values.router.events }}
{{- if .urlSecret.name }}
- name: LMI_NATS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .urlSecret.name | quote }}
      key: {{ .urlSecret.key | default "url" | quote }}
{{- else if .natsUrl }}
- name: LMI_NATS_URL
  value: {{ .natsUrl | quote }}
{{- end }}
{{- end }}
{{- end -}}
