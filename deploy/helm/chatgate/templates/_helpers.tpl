{{/* Names. With the release name "chatgate" every object keeps the plain name the
     manifests always had: chatgate-gateway, chatgate-config, chatgate-secrets, ... */}}
{{- define "chatgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "chatgate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "chatgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "chatgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: chatgate
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "gateway") */}}
{{- define "chatgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "chatgate.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "chatgate.componentLabels" -}}
{{ include "chatgate.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* An image reference: repository:tag, plus @digest when one is pinned. */}}
{{- define "chatgate.image" -}}
{{- $ref := printf "%s:%s" .repository (toString .tag) -}}
{{- if .digest -}}{{- $ref = printf "%s@%s" $ref .digest -}}{{- end -}}
{{- $ref -}}
{{- end -}}

{{/* A digest makes the reference immutable: IfNotPresent is then safe; a bare tag can move. */}}
{{- define "chatgate.pullPolicy" -}}
{{- .pullPolicy | default (ternary "IfNotPresent" "Always" (not (empty .digest))) -}}
{{- end -}}

{{- define "chatgate.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "chatgate.fullname" .)) -}}
{{- end -}}

{{- define "chatgate.configName" -}}
{{- printf "%s-config" (include "chatgate.fullname" .) -}}
{{- end -}}

{{- define "chatgate.postgresql.fullname" -}}
{{- printf "%s-postgresql" (include "chatgate.fullname" .) -}}
{{- end -}}

{{- define "chatgate.postgresql.secretName" -}}
{{- .Values.postgresql.auth.existingSecret | default (include "chatgate.postgresql.fullname" .) -}}
{{- end -}}

{{- define "chatgate.redis.fullname" -}}
{{- printf "%s-redis" (include "chatgate.fullname" .) -}}
{{- end -}}

{{- define "chatgate.vllm.fullname" -}}
{{- printf "%s-vllm" (include "chatgate.fullname" .) -}}
{{- end -}}

{{- define "chatgate.datastoresSecretName" -}}
{{- printf "%s-datastores" (include "chatgate.fullname" .) -}}
{{- end -}}

{{/* Whether the gateways share Redis: the bundled one, a URL, or a key of an existing Secret. */}}
{{- define "chatgate.redisConfigured" -}}
{{- if or .Values.redis.enabled .Values.externalRedis.url .Values.externalRedis.existingSecret -}}true{{- end -}}
{{- end -}}

{{/* The most gateway pods that can run at once. */}}
{{- define "chatgate.maxGateways" -}}
{{- if .Values.gateway.autoscaling.enabled -}}
{{- max (int .Values.gateway.autoscaling.minReplicas) (int .Values.gateway.autoscaling.maxReplicas) -}}
{{- else -}}
{{- int .Values.gateway.replicas -}}
{{- end -}}
{{- end -}}

{{/* Rules the schema cannot express; every template includes this, so a bad combination
     fails the render (helm template / install) with the reason. */}}
{{- define "chatgate.validate" -}}
{{- if and (gt (int (include "chatgate.maxGateways" .)) 1) (not (include "chatgate.redisConfigured" .)) -}}
{{- fail "chatgate: more than one gateway replica (gateway.replicas or gateway.autoscaling) needs Redis for the shared rate limits (CHATGATE_REDIS_URL): set redis.enabled=true, externalRedis.url or externalRedis.existingSecret" -}}
{{- end -}}
{{- if not (or .Values.postgresql.enabled .Values.externalDatabase.url .Values.externalDatabase.existingSecret) -}}
{{- fail "chatgate: a database is required (the pods' data directory is an emptyDir): set postgresql.enabled=true, externalDatabase.url or externalDatabase.existingSecret" -}}
{{- end -}}
{{- if and .Values.postgresql.enabled (or .Values.externalDatabase.url .Values.externalDatabase.existingSecret) -}}
{{- fail "chatgate: choose one database: postgresql.enabled=true or externalDatabase, not both" -}}
{{- end -}}
{{- if and .Values.redis.enabled (or .Values.externalRedis.url .Values.externalRedis.existingSecret) -}}
{{- fail "chatgate: choose one Redis: redis.enabled=true or externalRedis, not both" -}}
{{- end -}}
{{- if and (not .Values.vllm.enabled) (not .Values.gateway.embeddedEngine.enabled) (not .Values.gateway.engines) -}}
{{- fail "chatgate: no engine: enable vllm, gateway.embeddedEngine or list gateway.engines" -}}
{{- end -}}
{{- if and .Values.gateway.autoscaling.enabled (lt (int .Values.gateway.autoscaling.maxReplicas) (int .Values.gateway.autoscaling.minReplicas)) -}}
{{- fail "chatgate: gateway.autoscaling.maxReplicas is below minReplicas" -}}
{{- end -}}
{{- end -}}

{{/* The engines the gateway attaches: the bundled vLLM, then gateway.engines. */}}
{{- define "chatgate.engines" -}}
{{- $engines := list -}}
{{- if .Values.vllm.enabled -}}
{{- $engines = append $engines (printf "%s=http://%s:%d" .Values.vllm.servedModelName (include "chatgate.vllm.fullname" .) (int .Values.vllm.service.port)) -}}
{{- end -}}
{{- range .Values.gateway.engines -}}
{{- $engines = append $engines (printf "%s=%s" .name .url) -}}
{{- end -}}
{{- join "," $engines -}}
{{- end -}}

{{- define "chatgate.defaultModel" -}}
{{- if .Values.gateway.defaultModel -}}
{{- .Values.gateway.defaultModel -}}
{{- else if .Values.vllm.enabled -}}
{{- .Values.vllm.servedModelName -}}
{{- else if .Values.gateway.engines -}}
{{- (first .Values.gateway.engines).name -}}
{{- else -}}
smollm2-135m
{{- end -}}
{{- end -}}

{{/* Grace period: the preStop sleep and the gateway's drain both run inside it, plus a margin. */}}
{{- define "chatgate.gateway.terminationGracePeriod" -}}
{{- add (int .Values.gateway.preStopSleepSeconds) (int .Values.gateway.shutdownGraceSeconds) (int .Values.gateway.terminationMarginSeconds) -}}
{{- end -}}
