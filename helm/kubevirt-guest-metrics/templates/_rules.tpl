{{/*
The rule groups the chart ships, as a YAML list.

- Recording rules: read, unchanged, from promrules/kubevirt-guest-metrics.rules.yaml
  (files/ links to it); the guest-load group's go when
  guestLoad.recordingRules.enabled is false. In the `none` case of
  guestLoad.kubevirtRules (kubevirt-guest-metrics.guestLoadCase) the group of
  promrules/kubevirt-vep67-names.rules.yaml follows: the same values under
  VEP 67's and KubeVirt's names, which KubeVirt v1.6.4+ records itself.
- Alerts: written here, with their thresholds, `for`, severities and the
  numbers in their texts taken from values (alerts.<Name>.*) -- templated
  directly, nothing is rewritten in the rule file's text. The values'
  defaults are the rule file's, and helm/tests checks that the default render
  equals the rule file exactly (promrules/ stays the source of truth). Each
  alert is placed where the rule file has it; an alert in the file that the
  chart does not define, or the other way round, stops the render.
- runbook_url: see kubevirt-guest-metrics.runbookURL.
*/}}
{{- define "kubevirt-guest-metrics.ruleGroups" -}}
{{- $guestLoadGroup := "kubevirt-guest-metrics.guest-load" }}
{{- $file := "files/kubevirt-guest-metrics.rules.yaml" }}
{{- $source := .Files.Get $file | fromYaml }}
{{- if or (not $source) (hasKey $source "Error") (not $source.groups) }}
{{- fail (printf "%s is missing or holds no rule groups (%v): it must link to promrules/kubevirt-guest-metrics.rules.yaml" $file $source) }}
{{- end }}
{{- $alerts := include "kubevirt-guest-metrics.alerts" . | fromYaml }}
{{- $placed := dict }}
{{- $groups := list }}
{{- $seenGuestLoad := false }}
{{- range $group := $source.groups }}
{{- $isGuestLoad := eq $group.name $guestLoadGroup }}
{{- if $isGuestLoad }}{{ $seenGuestLoad = true }}{{ end }}
{{- $rules := list }}
{{- range $rule := $group.rules }}
{{- if $rule.record }}
{{- if or (not $isGuestLoad) $.Values.guestLoad.recordingRules.enabled }}
{{- $rules = append $rules $rule }}
{{- end }}
{{- else }}
{{- $name := $rule.alert }}
{{- if not (hasKey $alerts $name) }}
{{- fail (printf "alert %s of %s is not defined by the chart (templates/_rules.tpl) nor in values.yaml alerts.%s" $name $file $name) }}
{{- end }}
{{- $_ := set $placed $name true }}
{{- $a := index $.Values.alerts $name }}
{{- if and $a.enabled (or (not $isGuestLoad) $.Values.guestLoad.queueAlerts.enabled) }}
{{- $rules = append $rules (index $alerts $name) }}
{{- end }}
{{- end }}
{{- end }}
{{- if $rules }}
{{- $groups = append $groups (set (deepCopy $group) "rules" $rules) }}
{{- end }}
{{- end }}
{{- if not $seenGuestLoad }}
{{- fail (printf "%s has no group %s, which guestLoad.* switches" $file $guestLoadGroup) }}
{{- end }}
{{- if and $.Values.guestLoad.queueAlerts.enabled (not $.Values.guestLoad.recordingRules.enabled) }}
{{- fail "guestLoad.queueAlerts.enabled=true needs guestLoad.recordingRules.enabled=true: the queue alerts read this chart's own recorded run queue (vmi_node:kubevirt_vmi_guest_queue_length:clamp_min). Where KubeVirt records the run queue itself, set guestLoad.kubevirtRules=kubevirt instead (chart README)" }}
{{- end }}
{{- $case := include "kubevirt-guest-metrics.guestLoadCase" . | fromYaml }}
{{- if and (eq $case.case "none") $.Values.guestLoad.recordingRules.enabled }}
{{- $namesFile := "files/kubevirt-vep67-names.rules.yaml" }}
{{- $names := .Files.Get $namesFile | fromYaml }}
{{- if or (not $names) (hasKey $names "Error") (not $names.groups) }}
{{- fail (printf "%s is missing or holds no rule groups (%v): it must link to promrules/kubevirt-vep67-names.rules.yaml" $namesFile $names) }}
{{- end }}
{{- $groups = concat $groups $names.groups }}
{{- end }}
{{- range $name, $_ := $alerts }}
{{- if not (hasKey $placed $name) }}
{{- fail (printf "the chart defines alert %s, which %s does not have" $name $file) }}
{{- end }}
{{- end }}
{{- toYaml $groups }}
{{- end }}

{{/*
The alerts, as a YAML map name -> rule. Prometheus' own template actions
({{ $labels.name }}, {{ $value }}) sit in raw strings, which Helm leaves alone.
*/}}
{{- define "kubevirt-guest-metrics.alerts" -}}
{{- $v := .Values.alerts }}
{{- $out := dict }}

{{- /* GuestVCPUQueueHighWarning: run queue above threshold (10), no `for` (VEP 67). */}}
{{- $a := $v.GuestVCPUQueueHighWarning }}
{{- $t := include "kubevirt-guest-metrics.number" $a.threshold }}
{{- $r := dict "alert" "GuestVCPUQueueHighWarning" "expr" (printf "vmi_node:kubevirt_vmi_guest_queue_length:clamp_min > %s" $t) }}
{{- if $a.for }}{{ $_ := set $r "for" $a.for }}{{ end }}
{{- $_ := set $r "labels" (include "kubevirt-guest-metrics.alertLabels" (list $a.severity "none") | fromYaml) }}
{{- $_ := set $r "annotations" (dict
  "summary" (printf "Guest vCPU run queue is above %s." $t)
  "description" (printf `VirtualMachineInstance {{ $labels.namespace }}/{{ $labels.name }} on node {{ $labels.node }} has a guest run queue of {{ printf "%%.1f" $value }} runnable threads beyond its vCPUs (1-minute guest load minus vCPU count), above %s.` $t)
  "runbook_url" (include "kubevirt-guest-metrics.runbookURL" (list . "GuestVCPUQueueHighWarning"))) }}
{{- $_ := set $out "GuestVCPUQueueHighWarning" $r }}

{{- /* GuestVCPUQueueHighCritical: run queue above threshold (20) for `for` (2m). */}}
{{- $a = $v.GuestVCPUQueueHighCritical }}
{{- $t = include "kubevirt-guest-metrics.number" $a.threshold }}
{{- $r = dict "alert" "GuestVCPUQueueHighCritical" "expr" (printf "vmi_node:kubevirt_vmi_guest_queue_length:clamp_min > %s" $t) }}
{{- $summary := printf "Guest vCPU run queue is above %s." $t }}
{{- $description := printf `VirtualMachineInstance {{ $labels.namespace }}/{{ $labels.name }} on node {{ $labels.node }} has a guest run queue above %s (now {{ printf "%%.1f" $value }} runnable threads beyond its vCPUs).` $t }}
{{- if $a.for }}
{{- $_ := set $r "for" $a.for }}
{{- $d := include "kubevirt-guest-metrics.humanDuration" $a.for }}
{{- $summary = printf "Guest vCPU run queue has been above %s for %s." $t $d }}
{{- $description = printf `VirtualMachineInstance {{ $labels.namespace }}/{{ $labels.name }} on node {{ $labels.node }} has had a guest run queue above %s for %s (now {{ printf "%%.1f" $value }} runnable threads beyond its vCPUs).` $t $d }}
{{- end }}
{{- $_ := set $r "labels" (include "kubevirt-guest-metrics.alertLabels" (list $a.severity "none") | fromYaml) }}
{{- $_ := set $r "annotations" (dict "summary" $summary "description" $description
  "runbook_url" (include "kubevirt-guest-metrics.runbookURL" (list . "GuestVCPUQueueHighCritical"))) }}
{{- $_ := set $out "GuestVCPUQueueHighCritical" $r }}

{{- /* GuestLoadMetricsMissing: a running VMI without guest load for `for` (30m). */}}
{{- $a = $v.GuestLoadMetricsMissing }}
{{- $r = dict "alert" "GuestLoadMetricsMissing" "expr" "group by (namespace, name) (kubevirt_vmi_vcpu_seconds_total)\nunless on (namespace, name)\ngroup by (namespace, name) (kubevirt_vmi_guest_load_1m)\n" }}
{{- $since := "" }}
{{- if $a.for }}
{{- $_ := set $r "for" $a.for }}
{{- $since = printf " for %s" (include "kubevirt-guest-metrics.humanDuration" $a.for) }}
{{- end }}
{{- $_ := set $r "labels" (include "kubevirt-guest-metrics.alertLabels" (list $a.severity "none") | fromYaml) }}
{{- $_ := set $r "annotations" (dict
  "summary" (printf "A running VMI has had no guest load metrics%s." $since)
  "description" (printf `VirtualMachineInstance {{ $labels.namespace }}/{{ $labels.name }} is running but no source has exported kubevirt_vmi_guest_load_1m for it%s, so its guest run-queue alerts cannot fire. Usually the guest agent is absent or older than qemu-guest-agent 10.0, or the launcher pod has no guest-exporter sidecar.` $since)
  "runbook_url" (include "kubevirt-guest-metrics.runbookURL" (list . "GuestLoadMetricsMissing"))) }}
{{- $_ := set $out "GuestLoadMetricsMissing" $r }}

{{- /* GuestMetricsStatusReporterDown: no replica leading for `for` (10m). */}}
{{- $a = $v.GuestMetricsStatusReporterDown }}
{{- $r = dict "alert" "GuestMetricsStatusReporterDown" "expr" "absent(status_reporter_leader == 1)" }}
{{- $for := "" }}
{{- if $a.for }}
{{- $_ := set $r "for" $a.for }}
{{- $for = include "kubevirt-guest-metrics.humanDuration" $a.for }}
{{- end }}
{{- $_ := set $r "labels" (include "kubevirt-guest-metrics.alertLabels" (list $a.severity "warning") | fromYaml) }}
{{- $_ := set $r "annotations" (dict
  "summary" (ternary (printf "No kubevirt-guest-metrics status-reporter has been leading for %s." $for) "No kubevirt-guest-metrics status-reporter is leading." (ne $for ""))
  "description" (printf "%s (no replica is leading, none is running, or Prometheus does not scrape them). Guest-exporter reports are not accepted, overcommit ratios are not recorded and guest load from this project is missing." (ternary (printf "For %s no status-reporter replica has reported status_reporter_leader == 1" $for) "No status-reporter replica reports status_reporter_leader == 1" (ne $for "")))
  "runbook_url" (include "kubevirt-guest-metrics.runbookURL" (list . "GuestMetricsStatusReporterDown"))) }}
{{- $_ := set $out "GuestMetricsStatusReporterDown" $r }}

{{- /* GuestMetricsSidecarSilent: an injected sidecar with no accepted report for `for` (15m). */}}
{{- $a = $v.GuestMetricsSidecarSilent }}
{{- $r = dict "alert" "GuestMetricsSidecarSilent" "expr" "max by (namespace, name, reason) (status_reporter_vmi_report_state{state=\"silent\"}) == 1\n" }}
{{- $since = "" }}
{{- if $a.for }}
{{- $_ := set $r "for" $a.for }}
{{- $since = printf " for %s" (include "kubevirt-guest-metrics.humanDuration" $a.for) }}
{{- end }}
{{- $_ := set $r "labels" (include "kubevirt-guest-metrics.alertLabels" (list $a.severity "none") | fromYaml) }}
{{- $_ := set $r "annotations" (dict
  "summary" (printf "A VMI's guest-exporter sidecar has had no report accepted%s." $since)
  "description" (printf `VirtualMachineInstance {{ $labels.namespace }}/{{ $labels.name }} has the guest-exporter sidecar, but the status-reporter has accepted no report from it ({{ $labels.reason }})%s, so its guest load and overcommit ratios are missing. Usually the launcher pod cannot reach the status-reporter: bridge binding or Multus on the pod network, or an egress NetworkPolicy in the VM's namespace.` $since)
  "runbook_url" (include "kubevirt-guest-metrics.runbookURL" (list . "GuestMetricsSidecarSilent"))) }}
{{- $_ := set $out "GuestMetricsSidecarSilent" $r }}
{{- toYaml $out }}
{{- end }}

{{/*
Which guest-load rules KubeVirt loads itself (guestLoad.kubevirtRules), as
YAML {case: none|kubevirt, how: <why, for NOTES>}.
- none: KubeVirt records none of VEP 67's names (before v1.6.4, or its
  PrometheusRule is not deployed): the chart records them too.
- kubevirt: KubeVirt v1.6.4+ records them (kubevirt_vmi_vcpu_count or
  vmi:kubevirt_vmi_vcpu:count, kubevirt_vmi_guest_vcpu_queue, from v1.8.3
  vmi:kubevirt_vmi_guest_queue_length:sum) and its queue alerts read them: the
  chart records only its own names, so no series is recorded twice and no
  KubeVirt alert fires from the chart's series.
- auto: the KubeVirt CR's status.observedKubeVirtVersion (helm lookup, at
  install and upgrade). Before v1.6.4: `none`. From v1.6.4: `kubevirt` if
  KubeVirt's PrometheusRule prometheus-kubevirt-rules exists in the CR's
  namespace, else `none` -- virt-operator creates it only where it finds the
  PrometheusRule CRD and a Prometheus service account in a monitor namespace
  (pkg/virt-operator/resource/generate/install/strategy.go), which
  kube-prometheus-stack's often is not; without the PrometheusRule API it
  cannot exist. Lookup returns nothing under `helm template`, --dry-run and
  GitOps renders: then `kubevirt`, the case that can never record a series
  twice (its cost: no VEP 67 names where KubeVirt's rules are not loaded).
  The version is compared without regular expressions: vMAJOR.MINOR.PATCH,
  any -pre-release or +build suffix ignored (v1.6.4-rc.0 counts as v1.6.4).
*/}}
{{- define "kubevirt-guest-metrics.guestLoadCase" -}}
{{- $want := .Values.guestLoad.kubevirtRules }}
{{- if ne $want "auto" }}
case: {{ $want }}
how: {{ printf "guestLoad.kubevirtRules=%s" $want | quote }}
{{- else }}
{{- $version := "" }}
{{- $cr := "" }}
{{- $crNamespace := "" }}
{{- $list := lookup "kubevirt.io/v1" "KubeVirt" "" "" }}
{{- range $item := (dig "items" list $list) }}
{{- $v := dig "status" "observedKubeVirtVersion" "" $item }}
{{- if and $v (not $version) }}
{{- $version = $v }}
{{- $crNamespace = $item.metadata.namespace }}
{{- $cr = printf "%s/%s" $item.metadata.namespace $item.metadata.name }}
{{- end }}
{{- end }}
{{- $parts := splitList "." (trimPrefix "v" (first (splitList "+" (first (splitList "-" (toString $version)))))) }}
{{- $valid := eq (len $parts) 3 }}
{{- range $parts }}{{ if ne (toString (atoi .)) . }}{{ $valid = false }}{{ end }}{{ end }}
{{- if not $version }}
case: kubevirt
how: "auto, no KubeVirt CR with status.observedKubeVirtVersion was visible (helm template, --dry-run, a GitOps render, or KubeVirt not installed yet): default kubevirt"
{{- else if not $valid }}
case: kubevirt
how: {{ printf "auto, KubeVirt CR %s observes version %q, which is not vMAJOR.MINOR.PATCH: default kubevirt" $cr $version | quote }}
{{- else if ge (add (mul (atoi (index $parts 0)) 1000000) (mul (atoi (index $parts 1)) 1000) (atoi (index $parts 2))) 1006004 }}
{{- $ruleName := "prometheus-kubevirt-rules" }}
{{- $kvRule := dict }}
{{- if include "kubevirt-guest-metrics.hasMonitoringAPI" (list . "PrometheusRule") }}
{{- $kvRule = lookup "monitoring.coreos.com/v1" "PrometheusRule" $crNamespace $ruleName }}
{{- end }}
{{- if $kvRule }}
case: kubevirt
how: {{ printf "auto, KubeVirt CR %s observes %s and its PrometheusRule %s/%s, with its own guest-load rules (v1.6.4+), is deployed" $cr $version $crNamespace $ruleName | quote }}
{{- else }}
case: none
how: {{ printf "auto, KubeVirt CR %s observes %s but has not deployed its PrometheusRule %s/%s, so its guest-load rules are not loaded" $cr $version $crNamespace $ruleName | quote }}
{{- end }}
{{- else }}
case: none
how: {{ printf "auto, KubeVirt CR %s observes %s, before v1.6.4: no guest-load rules of its own" $cr $version | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* KubeVirt's alert labels; call with (list severity operator_health_impact). */}}
{{- define "kubevirt-guest-metrics.alertLabels" -}}
severity: {{ index . 0 | required "every alert needs alerts.<Name>.severity" }}
operator_health_impact: {{ index . 1 }}
kubernetes_operator_part_of: kubevirt
kubernetes_operator_component: kubevirt-guest-metrics
{{- end }}

{{/* A number as Prometheus reads it: 10, not 10.0 or 1e+01. */}}
{{- define "kubevirt-guest-metrics.number" -}}
{{- if kindIs "invalid" . }}{{ fail "every queue alert needs alerts.<Name>.threshold" }}{{ end }}
{{- $f := float64 . }}
{{- if eq $f (float64 (int64 $f)) }}{{ int64 $f }}{{ else }}{{ $f }}{{ end }}
{{- end }}

{{/*
runbook_url of an alert; call with (list . "AlertName"). Every one resolves
to a runbook this repository ships (runbooks/, also in the chart's
files/runbooks/ and its ConfigMap <fullname>-runbooks):
- alerts.runbookBaseURL set: <runbookBaseURL><AlertName><runbookURLSuffix>,
  wherever you publish runbooks/;
- else, for the alerts KubeVirt itself ships with a runbook on its site
  (kubevirt/monitoring docs/runbooks): https://kubevirt.io/monitoring/runbooks/<AlertName>;
- else (this project's own alerts; it has no public site): the runbook in
  the cluster, as the API path of the chart's runbook ConfigMap with the
  runbook's key as the fragment. `kubectl get --raw` reads the path (NOTES
  shows the command for one key).
*/}}
{{- define "kubevirt-guest-metrics.runbookURL" -}}
{{- $root := index . 0 }}
{{- $name := index . 1 }}
{{- if not ($root.Files.Get (printf "files/runbooks/%s.md" $name)) }}
{{- fail (printf "files/runbooks/%s.md is missing: it must link to runbooks/%s.md" $name $name) }}
{{- end }}
{{- $a := $root.Values.alerts }}
{{- if $a.runbookBaseURL }}
{{- printf "%s%s%s" $a.runbookBaseURL $name $a.runbookURLSuffix }}
{{- else if has $name (list "GuestVCPUQueueHighWarning" "GuestVCPUQueueHighCritical") }}
{{- printf "https://kubevirt.io/monitoring/runbooks/%s" $name }}
{{- else }}
{{- printf "/api/v1/namespaces/%s/configmaps/%s#%s.md" $root.Release.Namespace (include "kubevirt-guest-metrics.suffixed" (list $root "runbooks")) $name }}
{{- end }}
{{- end }}
