{{/* ---------------------------------------------------------------------------------------------
Names and labels
--------------------------------------------------------------------------------------------- */}}
{{- define "mcpauth.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mcpauth.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The three components: values key, service name. */}}
{{- define "mcpauth.components" -}}
authService: auth-service
tokenVault: token-vault
mcpService: mcp-service
{{- end -}}

{{/* Full name of a component's objects: (dict "root" $ "svc" "auth-service") */}}
{{- define "mcpauth.cname" -}}
{{- printf "%s-%s" (include "mcpauth.fullname" .root) .svc -}}
{{- end -}}

{{- define "mcpauth.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "mcpauth.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mcpauth
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* (dict "root" $ "svc" "auth-service") */}}
{{- define "mcpauth.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mcpauth.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .svc }}
{{- end -}}

{{- define "mcpauth.componentLabels" -}}
{{ include "mcpauth.labels" .root }}
app.kubernetes.io/component: {{ .svc }}
{{- end -}}

{{- define "mcpauth.image" -}}
{{- $img := .c.image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default .root.Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{- define "mcpauth.serviceAccountName" -}}
{{- if .c.serviceAccount.create -}}
{{- default (include "mcpauth.cname" .) .c.serviceAccount.name -}}
{{- else -}}
{{- default "default" .c.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* ---------------------------------------------------------------------------------------------
TOML: a values tree rendered in the services' own format. Integral numbers are written as
integers (Helm reads every YAML number as a float); null values are left out.
--------------------------------------------------------------------------------------------- */}}
{{- define "mcpauth.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{- define "mcpauth.toml.value" -}}
{{- $v := . -}}
{{- if kindIs "string" $v -}}{{ toJson $v }}
{{- else if kindIs "bool" $v -}}{{ $v }}
{{- else if or (kindIs "float64" $v) (kindIs "int" $v) (kindIs "int64" $v) -}}
{{- if eq (float64 (int64 $v)) (float64 $v) -}}{{ int64 $v }}{{- else -}}{{ $v }}{{- end -}}
{{- else if kindIs "slice" $v -}}[{{- range $i, $e := $v -}}{{ if $i }}, {{ end }}{{ include "mcpauth.toml.value" $e }}{{- end -}}]
{{- else if kindIs "map" $v -}}{ {{- $first := true -}}{{- range $k, $e := $v -}}{{- if not (kindIs "invalid" $e) -}}{{ if not $first }}, {{ end }}{{ include "mcpauth.toml.key" $k }} = {{ include "mcpauth.toml.value" $e }}{{- $first = false -}}{{- end -}}{{- end -}} }
{{- else -}}{{ fail (printf "config: cannot write %v (%s) as TOML" $v (kindOf $v)) }}
{{- end -}}
{{- end -}}

{{/* (dict "path" "a.b" "t" $map) */}}
{{- define "mcpauth.toml.table" -}}
{{- $path := .path -}}
{{- $t := .t -}}
{{- range $k, $v := $t -}}
{{- if not (or (kindIs "invalid" $v) (kindIs "map" $v) (and (kindIs "slice" $v) (gt (len $v) 0) (kindIs "map" (first $v)))) }}
{{ include "mcpauth.toml.key" $k }} = {{ include "mcpauth.toml.value" $v }}
{{- end -}}
{{- end -}}
{{- range $k, $v := $t -}}
{{- $p := ternary (include "mcpauth.toml.key" $k) (printf "%s.%s" $path (include "mcpauth.toml.key" $k)) (eq $path "") -}}
{{- if kindIs "map" $v }}

[{{ $p }}]
{{- include "mcpauth.toml.table" (dict "path" $p "t" $v) -}}
{{- else if and (kindIs "slice" $v) (gt (len $v) 0) (kindIs "map" (first $v)) -}}
{{- range $e := $v }}

[[{{ $p }}]]
{{- include "mcpauth.toml.table" (dict "path" $p "t" $e) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* ---------------------------------------------------------------------------------------------
Secrets. The internal Secret holds the token keys, the vault key ring and the four service
credentials with their SHA-256. Generated once per render and memoised in .Values so that every
template (Secret, ConfigMaps, checksums) sees the same values; on upgrade the existing Secret's
values are kept (lookup), and only ids added to the key rings get new keys.
--------------------------------------------------------------------------------------------- */}}
{{- define "mcpauth.internalSecretName" -}}
{{- default (printf "%s-internal" (include "mcpauth.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "mcpauth.credentialPairs" -}}
- [mcp-service, auth-service]
- [token-vault, auth-service]
- [auth-service, token-vault]
- [mcp-service, token-vault]
{{- end -}}

{{/* Returns the Secret's data (plain text) as JSON; {} with an existingSecret. */}}
{{- define "mcpauth.generated" -}}
{{- if not (hasKey .Values "__mcpauthGenerated") -}}
{{- $out := dict -}}
{{- if not .Values.secrets.existingSecret -}}
{{- $old := dict -}}
{{- $found := lookup "v1" "Secret" .Release.Namespace (include "mcpauth.internalSecretName" .) -}}
{{- if $found -}}{{- $old = default dict $found.data -}}{{- end -}}
{{- range $pair := include "mcpauth.credentialPairs" . | fromYamlArray -}}
{{- $base := printf "%s-at-%s" (index $pair 0) (index $pair 1) -}}
{{- $cred := "" -}}
{{- if hasKey $old (printf "%s.credential" $base) -}}
{{- $cred = index $old (printf "%s.credential" $base) | b64dec -}}
{{- else -}}
{{- $cred = randAlphaNum 48 -}}
{{- end -}}
{{- $_ := set $out (printf "%s.credential" $base) $cred -}}
{{- $_ := set $out (printf "%s.sha256" $base) (sha256sum $cred) -}}
{{- end -}}
{{- range $ring := list (list "token-key" .Values.secrets.tokenKeys) (list "vault-key" .Values.secrets.vaultKeys) -}}
{{- range $id := (index $ring 1).ids -}}
{{- $k := printf "%s-%s" (index $ring 0) $id -}}
{{- if hasKey $old $k -}}
{{- $_ := set $out $k (index $old $k | b64dec) -}}
{{- else -}}
{{- $_ := set $out $k (randBytes 32) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $_ := set .Values "__mcpauthGenerated" $out -}}
{{- end -}}
{{- toJson (index .Values "__mcpauthGenerated") -}}
{{- end -}}

{{/* A caller's credential_sha256 in the callee's table: the hash itself when generated, else a
file: reference to the existing Secret's <caller>-at-<callee>.sha256. */}}
{{- define "mcpauth.callerHash" -}}
{{- $base := printf "%s-at-%s" .caller .callee -}}
{{- if .root.Values.secrets.existingSecret -}}
{{- printf "file:/var/run/secrets/mcpauth/internal/%s.sha256" $base -}}
{{- else -}}
{{- index (include "mcpauth.generated" .root | fromJson) (printf "%s.sha256" $base) -}}
{{- end -}}
{{- end -}}

{{- define "mcpauth.urlsSecretName" -}}
{{- printf "%s-urls" (include "mcpauth.fullname" .) -}}
{{- end -}}

{{/* The internal Secret's items each component mounts (only its own). */}}
{{- define "mcpauth.secretItems" -}}
{{- $v := .root.Values -}}
{{- if eq .svc "auth-service" -}}
{{- range $v.secrets.tokenKeys.ids }}
- token-key-{{ . }}
{{- end }}
- auth-service-at-token-vault.credential
{{- if $v.secrets.existingSecret }}
- mcp-service-at-auth-service.sha256
- token-vault-at-auth-service.sha256
{{- end }}
{{- else if eq .svc "token-vault" -}}
{{- range $v.secrets.vaultKeys.ids }}
- vault-key-{{ . }}
{{- end }}
- token-vault-at-auth-service.credential
{{- if $v.secrets.existingSecret }}
- auth-service-at-token-vault.sha256
- mcp-service-at-token-vault.sha256
{{- end }}
{{- else -}}
- mcp-service-at-auth-service.credential
- mcp-service-at-token-vault.credential
{{- end -}}
{{- end -}}

{{- define "mcpauth.grpcScheme" -}}
{{- ternary "https" "http" .Values.internalTls.enabled -}}
{{- end -}}

{{/* Volumes of a component's pods and jobs: config, its internal Secret items, URLs, TLS. */}}
{{- define "mcpauth.volumes" -}}
{{- $v := .root.Values -}}
- name: config
  configMap:
    name: {{ include "mcpauth.cname" . }}
- name: internal
  secret:
    secretName: {{ include "mcpauth.internalSecretName" .root }}
    defaultMode: 0440
    items:
      {{- range include "mcpauth.secretItems" . | fromYamlArray }}
      - key: {{ . }}
        path: {{ . }}
      {{- end }}
{{- if ne .svc "mcp-service" }}
{{- $db := ternary $v.database.auth $v.database.vault (eq .svc "auth-service") }}
{{- if not (or $db.existingSecret $db.url) }}
{{- fail (printf "database.%s.existingSecret (or database.%s.url) is required: %s's Postgres URL" (ternary "auth" "vault" (eq .svc "auth-service")) (ternary "auth" "vault" (eq .svc "auth-service")) .svc) }}
{{- end }}
- name: database
  secret:
    secretName: {{ default (include "mcpauth.urlsSecretName" .root) $db.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ ternary $db.key (ternary "auth-database-url" "vault-database-url" (eq .svc "auth-service")) (ne $db.existingSecret "") }}
        path: url
{{- end }}
{{- if not (or $v.redis.existingSecret $v.redis.url) }}
{{- fail "redis.existingSecret (or redis.url) is required: the Redis URL" }}
{{- end }}
- name: redis
  secret:
    secretName: {{ default (include "mcpauth.urlsSecretName" .root) $v.redis.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ ternary $v.redis.key "redis-url" (ne $v.redis.existingSecret "") }}
        path: url
{{- if $v.internalTls.enabled }}
- name: tls
  secret:
    secretName: {{ required (printf "internalTls.secrets.%s is required with internalTls.enabled" .key) (index $v.internalTls.secrets .key) }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{- define "mcpauth.volumeMounts" -}}
- name: config
  mountPath: /etc/mcpauth
  readOnly: true
- name: internal
  mountPath: /var/run/secrets/mcpauth/internal
  readOnly: true
{{- if ne .svc "mcp-service" }}
- name: database
  mountPath: /var/run/secrets/mcpauth/database
  readOnly: true
{{- end }}
- name: redis
  mountPath: /var/run/secrets/mcpauth/redis
  readOnly: true
{{- if .root.Values.internalTls.enabled }}
- name: tls
  mountPath: /var/run/secrets/mcpauth/tls
  readOnly: true
{{- end }}
{{- end -}}

{{/* sha256 of what the pods of a component read: config and secrets. */}}
{{- define "mcpauth.checksums" -}}
checksum/config: {{ include "mcpauth.config" . | sha256sum }}
checksum/secret: {{ list (include "mcpauth.generated" .root) .root.Values.database .root.Values.redis .root.Values.secrets .root.Values.internalTls | toJson | sha256sum }}
{{- end -}}

{{- define "mcpauth.containerPorts" -}}
{{- if eq . "auth-service" -}}
http: 8080
grpc: 9090
admin: 8180
{{- else if eq . "token-vault" -}}
grpc: 9091
admin: 8182
{{- else -}}
http: 8081
admin: 8181
{{- end -}}
{{- end -}}
