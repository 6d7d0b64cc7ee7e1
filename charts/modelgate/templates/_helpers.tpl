{{/* Chart name, overridable. */}}
{{- define "modelgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Base name of every object: the release name, plus the chart name unless the release name
already contains it. Kept short enough for the longest suffix ("-operator-metrics").
*/}}
{{- define "modelgate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 46 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 46 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 46 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "modelgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "modelgate.labels" -}}
helm.sh/chart: {{ include "modelgate.chart" . }}
app.kubernetes.io/name: {{ include "modelgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelgate
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: (dict "ctx" $ "component" "proxy"). */}}
{{- define "modelgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelgate.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* All labels of one component's objects: (dict "ctx" $ "component" "proxy"). */}}
{{- define "modelgate.componentLabels" -}}
{{ include "modelgate.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The image reference; a digest wins over a tag, the tag defaults to appVersion. */}}
{{- define "modelgate.image" -}}
{{- $img := .Values.image }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) }}
{{- end }}
{{- end }}

{{- define "modelgate.operator.fullname" -}}
{{- printf "%s-operator" (include "modelgate.fullname" .) }}
{{- end }}

{{- define "modelgate.proxy.fullname" -}}
{{- printf "%s-proxy" (include "modelgate.fullname" .) }}
{{- end }}

{{- define "modelgate.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "modelgate.operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "modelgate.proxy.serviceAccountName" -}}
{{- if .Values.proxy.serviceAccount.create }}
{{- default (include "modelgate.proxy.fullname" .) .Values.proxy.serviceAccount.name }}
{{- else }}
{{- required "proxy.serviceAccount.name is required when proxy.serviceAccount.create is false" .Values.proxy.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Name of the Secret holding the master key: the user's, or the one this chart creates. */}}
{{- define "modelgate.masterKeySecretName" -}}
{{- default (printf "%s-master-key" (include "modelgate.fullname" .)) .Values.masterKey.existingSecret }}
{{- end }}

{{/*
Names of cluster-scoped objects: unique per release and namespace, since the same release
name can be installed in several namespaces.
*/}}
{{- define "modelgate.clusterName" -}}
{{- printf "%s-%s-%s" .ctx.Release.Namespace (include "modelgate.fullname" .ctx) .suffix | trunc 253 | trimSuffix "-" }}
{{- end }}

{{/*
The base config (LiteLLM format, no model_list) that the operator merges under the rendered
model_list: .Values.config plus the Redis settings. Never holds a secret value: the Redis
password is an `os.environ/` reference the proxy resolves from its own environment.
*/}}
{{- define "modelgate.baseConfig" -}}
{{- $cfg := deepCopy (default (dict) .Values.config) }}
{{- if hasKey $cfg "model_list" }}
{{- fail "config.model_list is not allowed: declare ModelDeployment resources instead" }}
{{- end }}
{{- $general := default (dict) (get $cfg "general_settings") }}
{{- if hasKey $general "master_key" }}
{{- fail "config.general_settings.master_key is not allowed (the ConfigMap is readable by many): use masterKey.existingSecret" }}
{{- end }}
{{- $router := default (dict) (get $cfg "router_settings") }}
{{- if .Values.redis.enabled }}
{{- $_ := set $router "redis_host" (required "redis.host is required when redis.enabled is true" .Values.redis.host) }}
{{- $_ := set $router "redis_port" (int .Values.redis.port) }}
{{- if .Values.redis.existingSecret }}
{{- $_ := set $router "redis_password" "os.environ/REDIS_PASSWORD" }}
{{- end }}
{{- end }}
{{- $_ := set $cfg "router_settings" $router }}
{{- range $k, $v := $cfg }}
{{- if empty $v }}
{{- $_ := unset $cfg $k }}
{{- end }}
{{- end }}
{{- if $cfg }}
{{- toYaml $cfg }}
{{- else }}
{{- "{}" }}
{{- end }}
{{- end }}

{{/* The pod security context shared by both components. */}}
{{- define "modelgate.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{/* The container security context shared by both components. */}}
{{- define "modelgate.securityContext" -}}
{{- toYaml .Values.securityContext }}
{{- end }}

{{/* The proxy's grace period: preStop sleep + drain timeout + a margin, unless set. */}}
{{- define "modelgate.proxy.terminationGracePeriodSeconds" -}}
{{- $p := .Values.proxy }}
{{- if $p.terminationGracePeriodSeconds }}
{{- $p.terminationGracePeriodSeconds }}
{{- else }}
{{- add (int $p.preStopSleepSeconds) (int $p.drainTimeoutSeconds) 15 }}
{{- end }}
{{- end }}

{{/*
What the operator does in each namespace it watches: read the resources and write their
status, read the Secrets they reference (to check that the key exists), write the router
ConfigMap (server-side apply; create cannot be limited by name), read the proxies' per-replica
Leases (the config generation each serves), and publish Events.
*/}}
{{- define "modelgate.operator.watchRules" -}}
{{- if and .Values.proxy.enabled (eq (include "modelgate.proxy.secretAccess" .) "managed") }}
{{- $grant := printf "%s-proxy-secrets" .Values.routerConfigMap }}
# The Role and RoleBinding that give the proxy exactly the Secrets its config references.
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [create]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  resourceNames: [{{ $grant | quote }}]
  verbs: [get, patch, update]
{{- end }}
- apiGroups: [modelgate.dev]
  resources: [modeldeployments, modelgroupaliases]
  verbs: [get, list, watch]
- apiGroups: [modelgate.dev]
  resources: [modeldeployments/status, modelgroupaliases/status]
  verbs: [get, patch, update]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create]
- apiGroups: [""]
  resources: [configmaps]
  resourceNames: [{{ .Values.routerConfigMap | quote }}]
  verbs: [patch, update]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, list, watch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}

{{/*
How the proxy reads Secrets: managed (the operator grants exactly the referenced ones), names
(proxy.secretNames) or namespace (all). A non-empty secretNames means names.
*/}}
{{- define "modelgate.proxy.secretAccess" -}}
{{- $a := .Values.proxy.secretAccess | default "managed" }}
{{- if .Values.proxy.secretNames }}{{- $a = "names" }}{{- end }}
{{- if not (has $a (list "managed" "names" "namespace")) }}
{{- fail (printf "proxy.secretAccess must be managed, names or namespace, not %q" $a) }}
{{- end }}
{{- if and (eq $a "names") (not .Values.proxy.secretNames) }}
{{- fail "proxy.secretAccess=names needs proxy.secretNames" }}
{{- end }}
{{- $a }}
{{- end }}
