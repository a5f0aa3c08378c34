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

{{- define "lmi.nats.fullname" -}}{{ include "lmi.fullname" . }}-nats{{- end -}}

{{/* "true" when the chart installs its own NATS: nats.install, and router.events names no NATS of
the user's. */}}
{{- define "lmi.natsInstalled" -}}
{{- if and .Values.nats.install (not .Values.router.events.natsUrl) (not .Values.router.events.urlSecret.name) -}}
true
{{- end -}}
{{- end -}}

{{/* The configuration of the chart's own NATS (one JetStream server). */}}
{{- define "lmi.nats.config" -}}
server_name: $POD_NAME
listen: 0.0.0.0:4222
http: 0.0.0.0:8222
# A 1 MiB event plus its headers is more than the default 1 MiB.
max_payload: 2MB
jetstream {
  store_dir: /data
  max_file_store: {{ .Values.nats.jetstream.maxFileStore }}
  max_memory_store: {{ .Values.nats.jetstream.maxMemoryStore }}
}
{{- end -}}

{{/* LMI_NATS_URL (a URL of router.events, a key of a Secret, or the chart's own NATS) and the
credentials and TLS files (LMI_NATS_*_FILE, mounted by lmi.natsVolumeMounts); nothing without a
NATS. The operator counts queued events with it, the routers store and dispatch them. */}}
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
{{- else if include "lmi.natsInstalled" $ }}
{{- /* The Service's address from the variables Kubernetes gives every pod for the Services of its
namespace (Helm creates Services before workloads): no dependence on cluster DNS. */}}
{{- $var := include "lmi.nats.fullname" $ | upper | replace "-" "_" }}
- name: LMI_NATS_URL
  value: {{ printf "nats://$(%s_SERVICE_HOST):$(%s_SERVICE_PORT)" $var $var | quote }}
{{- end }}
{{- if .credentialsSecret.name }}
- name: LMI_NATS_CREDENTIALS_FILE
  value: /etc/lmi/nats-credentials/{{ .credentialsSecret.key | default "nats.creds" }}
{{- end }}
{{- if .tls.caSecret.name }}
- name: LMI_NATS_CA_FILE
  value: /etc/lmi/nats-ca/{{ .tls.caSecret.key | default "ca.crt" }}
{{- end }}
{{- if .tls.clientCertSecret }}
- name: LMI_NATS_CLIENT_CERT_FILE
  value: /etc/lmi/nats-client/tls.crt
- name: LMI_NATS_CLIENT_KEY_FILE
  value: /etc/lmi/nats-client/tls.key
{{- end }}
{{- end }}
{{- end -}}

{{/* The Secrets behind LMI_NATS_*_FILE, as volume mounts and volumes. */}}
{{- define "lmi.natsVolumeMounts" -}}
{{- with .Values.router.events }}
{{- if .credentialsSecret.name }}
- name: nats-credentials
  mountPath: /etc/lmi/nats-credentials
  readOnly: true
{{- end }}
{{- if .tls.caSecret.name }}
- name: nats-ca
  mountPath: /etc/lmi/nats-ca
  readOnly: true
{{- end }}
{{- if .tls.clientCertSecret }}
- name: nats-client
  mountPath: /etc/lmi/nats-client
  readOnly: true
{{- end }}
{{- end }}
{{- end -}}

{{- define "lmi.natsVolumes" -}}
{{- with .Values.router.events }}
{{- if .credentialsSecret.name }}
- name: nats-credentials
  secret:
    secretName: {{ .credentialsSecret.name | quote }}
{{- end }}
{{- if .tls.caSecret.name }}
- name: nats-ca
  secret:
    secretName: {{ .tls.caSecret.name | quote }}
{{- end }}
{{- if .tls.clientCertSecret }}
- name: nats-client
  secret:
    # A kubernetes.io/tls Secret (tls.crt, tls.key), e.g. from cert-manager.
    secretName: {{ .tls.clientCertSecret | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
The address of a function URL, {id} for the URL id: the urlTemplate value, else the host form on
the URL domain.
*/}}
{{- define "lmi.urlTemplate" -}}
{{- with .Values.router.urls.urlTemplate -}}
{{ . }}
{{- else -}}
{{ .Values.router.urls.scheme }}://{id}.{{ .Values.router.urls.domain }}/
{{- end -}}
{{- end }}

{{/*
The host names of the URL listener: *.<domain> and the extra ones.
*/}}
{{- define "lmi.urlHosts" -}}
{{- $hosts := list (printf "*.%s" .Values.router.urls.domain) -}}
{{- range .extra }}{{ $hosts = append $hosts . }}{{ end -}}
{{ toJson $hosts }}
{{- end }}
