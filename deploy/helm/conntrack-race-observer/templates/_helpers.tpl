{{/* The name of every object. */}}
{{- define "conntrack-race-observer.fullname" -}}
{{- .Values.fullnameOverride | default "conntrack-race-observer" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "conntrack-race-observer.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (include "conntrack-race-observer.fullname" .) -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "conntrack-race-observer.labels" -}}
app.kubernetes.io/name: conntrack-race-observer
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: conntrack-race-observer
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- with .Values.extraLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Annotations of every object (may be empty). */}}
{{- define "conntrack-race-observer.annotations" -}}
{{- with .Values.extraAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "conntrack-race-observer.selectorLabels" -}}
app.kubernetes.io/name: conntrack-race-observer
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: agent
{{- end -}}
