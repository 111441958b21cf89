{{/*
What every object of the release shares. A template passes (dict "root" $ "component"
NAME) where a component is named.
*/}}

{{/* The name objects start with: the release's, or "<release>-hookgate". */}}
{{- define "hookgate.fullname" -}}
{{- if contains "hookgate" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-hookgate" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The labels a component's pods are selected by. */}}
{{- define "hookgate.selector" -}}
app.kubernetes.io/name: hookgate
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* A component's object labels. */}}
{{- define "hookgate.labels" -}}
{{ include "hookgate.selector" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{/* A component's object metadata: name, namespace, labels. */}}
{{- define "hookgate.metadata" -}}
name: {{ include "hookgate.fullname" .root }}-{{ .component }}
namespace: {{ .root.Release.Namespace }}
labels:
  {{- include "hookgate.labels" . | nindent 2 }}
{{- end -}}

{{- define "hookgate.image" -}}
{{- with .Values.image -}}
{{- if .digest -}}
{{ .repository }}@{{ .digest }}
{{- else -}}
{{ .repository }}:{{ .tag | default $.Chart.AppVersion }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Every pod: a fixed non-root user and the runtime's seccomp profile. */}}
{{- define "hookgate.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{/* Every container: read-only root, no capabilities, no escalation. */}}
{{- define "hookgate.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end -}}

{{/* The configs at /etc/hookgate and the secrets they name at /run/secrets/hookgate. */}}
{{- define "hookgate.configMounts" -}}
- {name: config, mountPath: /etc/hookgate, readOnly: true}
- {name: secrets, mountPath: /run/secrets/hookgate, readOnly: true}
{{- end -}}

{{- define "hookgate.configVolumes" -}}
- name: config
  configMap: {name: {{ include "hookgate.fullname" . }}-config}
- name: secrets
  secret: {secretName: {{ .Values.secretName }}, defaultMode: 0400}
{{- end -}}

{{/* Every pod's annotations: the configs' checksum (pods roll when the configs change)
and the podAnnotations value. */}}
{{- define "hookgate.podAnnotations" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Where every pod may run: nodeSelector, tolerations, affinity, when given. */}}
{{- define "hookgate.scheduling" -}}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
