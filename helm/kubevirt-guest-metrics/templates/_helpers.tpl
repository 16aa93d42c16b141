{{/*
Names. Kubernetes names and label values stop at 63 characters.
*/}}
{{- define "kubevirt-guest-metrics.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kubevirt-guest-metrics.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
"<fullname>-<suffix>" within 63 characters: fullname is cut, never the suffix.
Call with (list . "suffix").
*/}}
{{- define "kubevirt-guest-metrics.suffixed" -}}
{{- $root := index . 0 }}
{{- $suffix := index . 1 }}
{{- printf "%s-%s" (include "kubevirt-guest-metrics.fullname" $root | trunc (int (sub 62 (len $suffix))) | trimSuffix "-") $suffix }}
{{- end }}

{{/*
The status-reporter's objects: Deployment, Services, Lease, TLS Secret, RBAC.
Cut so that "<this>-selfsigned" (the longest name built on it) fits in 63.
*/}}
{{- define "kubevirt-guest-metrics.reporter" -}}
{{- printf "%s-status-reporter" (include "kubevirt-guest-metrics.fullname" . | trunc 36 | trimSuffix "-") }}
{{- end }}

{{- define "kubevirt-guest-metrics.metricsService" -}}
{{- printf "%s-metrics" (include "kubevirt-guest-metrics.reporter" .) }}
{{- end }}

{{- define "kubevirt-guest-metrics.tlsSecret" -}}
{{- printf "%s-tls" (include "kubevirt-guest-metrics.reporter" .) }}
{{- end }}

{{- define "kubevirt-guest-metrics.leaseName" -}}
{{- include "kubevirt-guest-metrics.reporter" . }}
{{- end }}

{{- define "kubevirt-guest-metrics.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kubevirt-guest-metrics.reporter" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kubevirt-guest-metrics.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "kubevirt-guest-metrics.labels" -}}
helm.sh/chart: {{ include "kubevirt-guest-metrics.chart" . }}
{{ include "kubevirt-guest-metrics.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubevirt-guest-metrics
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels: stable across upgrades (a Deployment's selector is immutable).
*/}}
{{- define "kubevirt-guest-metrics.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubevirt-guest-metrics.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kubevirt-guest-metrics.reporterSelectorLabels" -}}
{{ include "kubevirt-guest-metrics.selectorLabels" . }}
app.kubernetes.io/component: status-reporter
{{- end }}

{{/*
The image, registry/repository:tag@digest; an empty tag means the chart's appVersion.
*/}}
{{- define "kubevirt-guest-metrics.image" -}}
{{- $repo := .Values.image.repository }}
{{- if .Values.image.registry }}
{{- $repo = printf "%s/%s" .Values.image.registry .Values.image.repository }}
{{- end }}
{{- $ref := printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) }}
{{- if .Values.image.digest }}
{{- $ref = printf "%s@%s" $ref .Values.image.digest }}
{{- end }}
{{- $ref }}
{{- end }}

{{/*
Where the status-reporter's HTTPS service answers, inside the cluster.
*/}}
{{- define "kubevirt-guest-metrics.serviceHost" -}}
{{- printf "%s.%s.svc" (include "kubevirt-guest-metrics.reporter" .) .Release.Namespace }}
{{- end }}

{{- define "kubevirt-guest-metrics.reportsURL" -}}
{{- $port := int .Values.service.port }}
{{- if eq $port 443 }}
{{- printf "https://%s/v1/reports" (include "kubevirt-guest-metrics.serviceHost" .) }}
{{- else }}
{{- printf "https://%s:%d/v1/reports" (include "kubevirt-guest-metrics.serviceHost" .) $port }}
{{- end }}
{{- end }}

{{/*
The generated TLS material (tls.certManager.enabled=false), as JSON:
{"ca": PEM, "crt": PEM, "key": PEM}.
Computed once per render and kept on the root context, so the Secret, the
webhook's caBundle and the Deployment's checksum see the same certificates.
An existing Secret (helm upgrade) is reused, so certificates do not change at
every upgrade; `lookup` answers nothing under `helm template`, which then
generates a fresh pair each time.
*/}}
{{- define "kubevirt-guest-metrics.generatedTLS" -}}
{{- if not (hasKey . "kubevirtGuestMetricsTLS") }}
{{- $tls := dict }}
{{- $secret := lookup "v1" "Secret" .Release.Namespace (include "kubevirt-guest-metrics.tlsSecret" .) }}
{{- $data := dig "data" dict $secret }}
{{- if and (index $data "ca.crt") (index $data "tls.crt") (index $data "tls.key") }}
{{- $tls = dict "ca" (index $data "ca.crt" | b64dec) "crt" (index $data "tls.crt" | b64dec) "key" (index $data "tls.key" | b64dec) }}
{{- else }}
{{- $days := int .Values.tls.generated.validityDays }}
{{- $host := include "kubevirt-guest-metrics.serviceHost" . }}
{{- $svc := include "kubevirt-guest-metrics.reporter" . }}
{{- $ca := genCA (printf "%s-ca" $svc) $days }}
{{- $names := list $svc (printf "%s.%s" $svc .Release.Namespace) $host }}
{{- $cert := genSignedCert $host nil $names $days $ca }}
{{- $tls = dict "ca" $ca.Cert "crt" $cert.Cert "key" $cert.Key }}
{{- end }}
{{- $_ := set . "kubevirtGuestMetricsTLS" $tls }}
{{- end }}
{{- toJson (get . "kubevirtGuestMetricsTLS") }}
{{- end }}

{{/*
"2m" -> "2 minutes": how the rule file's annotations spell a `for`.
*/}}
{{- define "kubevirt-guest-metrics.humanDuration" -}}
{{- $units := dict "s" "second" "m" "minute" "h" "hour" "d" "day" }}
{{- if regexMatch `^[0-9]+[smhd]$` . }}
{{- $n := trimSuffix (regexFind `[smhd]$` .) . | int }}
{{- $unit := index $units (regexFind `[smhd]$` .) }}
{{- printf "%d %s%s" $n $unit (ternary "" "s" (eq $n 1)) }}
{{- else }}
{{- . }}
{{- end }}
{{- end }}

{{/*
"true" when the cluster serves prometheus-operator's monitoring.coreos.com/v1
API for the kind, else "". Call with (list . "Kind"). A cluster lists each
served kind ("monitoring.coreos.com/v1/ServiceMonitor"); `helm template` knows
only what --api-versions gives, so the group-version alone counts too.
*/}}
{{- define "kubevirt-guest-metrics.hasMonitoringAPI" -}}
{{- $caps := (index . 0).Capabilities.APIVersions }}
{{- if or ($caps.Has (printf "monitoring.coreos.com/v1/%s" (index . 1))) ($caps.Has "monitoring.coreos.com/v1") }}true{{ end }}
{{- end }}
