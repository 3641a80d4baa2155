{{/* The release's base name, at most 63 characters. */}}
{{- define "policyctl.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "policyctl.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Labels selecting the webhook pods. */}}
{{- define "policyctl.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end -}}

{{/* Labels selecting the audit pod. */}}
{{- define "policyctl.auditSelectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: audit
{{- end -}}

{{/* The Secret holding the serving certificate. */}}
{{- define "policyctl.tlsSecret" -}}
{{- .Values.certificates.secret.name | default (printf "%s-tls" (include "policyctl.fullname" .)) -}}
{{- end -}}

{{/* Fails the render on a bad certificate configuration. */}}
{{- define "policyctl.checkCertificates" -}}
{{- if not (has .Values.certificates.mode (list "certManager" "secret")) -}}
{{- fail (printf "certificates.mode must be certManager or secret, not %q" .Values.certificates.mode) -}}
{{- end -}}
{{- if and (eq .Values.certificates.mode "secret") (not .Values.certificates.secret.caBundle) -}}
{{- fail "certificates.mode=secret needs certificates.secret.caBundle (printed by `policyctl certs`)" -}}
{{- end -}}
{{- end -}}

{{/* The webhooks' clientConfig and namespaceSelector, shared by both configurations. Argument: dict root, path. */}}
{{- define "policyctl.webhookCommon" -}}
clientConfig:
  service:
    name: {{ include "policyctl.fullname" .root }}
    namespace: {{ .root.Release.Namespace }}
    path: {{ .path }}
    port: 443
{{- if eq .root.Values.certificates.mode "secret" }}
  caBundle: {{ .root.Values.certificates.secret.caBundle }}
{{- end }}
namespaceSelector:
  matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values:
{{- range .root.Values.webhooks.excludedNamespaces }}
    - {{ . }}
{{- end }}
    - {{ .root.Release.Namespace }}
{{- with .root.Values.webhooks.matchConditions }}
matchConditions:
{{- toYaml . | nindent 0 }}
{{- end }}
rules:
- apiGroups: ["*"]
  apiVersions: ["*"]
  operations:
{{- range .root.Values.webhooks.operations }}
  - {{ . }}
{{- end }}
  resources: ["*"]
  scope: "*"
{{- end -}}
