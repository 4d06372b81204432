{{/* The configuration each service gets, as a values tree (rendered to TOML by configmap.yaml).
The chart computes listeners, wiring, credentials and key rings; <component>.config is deep-merged
over it (grpc.callers given there are added to the chart's). */}}

{{- define "mcpauth.tlsServer" -}}
{{- $t := dict "cert_file" "/var/run/secrets/mcpauth/tls/tls.crt" "key_file" "/var/run/secrets/mcpauth/tls/tls.key" -}}
{{- if .Values.internalTls.mutual -}}{{- $_ := set $t "client_ca_file" "/var/run/secrets/mcpauth/tls/ca.crt" -}}{{- end -}}
{{- toJson $t -}}
{{- end -}}

{{- define "mcpauth.tlsClient" -}}
{{- $t := dict "ca_file" "/var/run/secrets/mcpauth/tls/ca.crt" -}}
{{- if .Values.internalTls.mutual -}}{{- $_ := set $t "cert_file" "/var/run/secrets/mcpauth/tls/tls.crt" -}}{{- $_ := set $t "key_file" "/var/run/secrets/mcpauth/tls/tls.key" -}}{{- end -}}
{{- toJson $t -}}
{{- end -}}

{{- define "mcpauth.common" -}}
{{- $ := .root -}}
{{- $c := .c -}}
{{- $d := dict
  "admin" (dict "addr" (printf "0.0.0.0:%v" (int .adminPort)))
  "shutdown" (dict "drain_delay_secs" (int $.Values.drainDelaySeconds))
  "log" (dict "format" "json" "filter" "info")
-}}
{{- if not $.Values.internalTls.enabled -}}
{{- /* Plaintext gRPC between the pods is the operator's choice here (internalTls off: a trusted
network, or a mesh that encrypts): say so, as the services require for non-loopback http://. */ -}}
{{- $_ := set $d "allow_plaintext_grpc" true -}}
{{- end -}}
{{- toJson $d -}}
{{- end -}}

{{- define "mcpauth.config.auth-service" -}}
{{- $ := . -}}
{{- $v := .Values -}}
{{- $c := .Values.authService -}}
{{- $d := include "mcpauth.common" (dict "root" $ "c" $c "adminPort" 8180) | fromJson -}}
{{- $_ := set $d "issuer" $v.issuer -}}
{{- $_ := set $d "http" (dict "addr" "0.0.0.0:8080" "shutdown_timeout_secs" (int $v.shutdownTimeoutSeconds)) -}}
{{- $callers := list -}}
{{- if $v.mcpService.enabled -}}
{{- /* Least privilege (docs/grpc.md): no chart-made caller holds `admin`. */ -}}
{{- $callers = append $callers (dict "name" "mcp-service" "permissions" (list "introspect" "start_connect") "resources" (list $v.resource) "credential_sha256" (include "mcpauth.callerHash" (dict "root" $ "caller" "mcp-service" "callee" "auth-service"))) -}}
{{- end -}}
{{- if $v.tokenVault.enabled -}}
{{- $callers = append $callers (dict "name" "token-vault" "permissions" (list "introspect") "credential_sha256" (include "mcpauth.callerHash" (dict "root" $ "caller" "token-vault" "callee" "auth-service"))) -}}
{{- end -}}
{{- $grpc := dict "addr" "0.0.0.0:9090" "callers" $callers -}}
{{- if $v.internalTls.enabled -}}{{- $_ := set $grpc "tls" (include "mcpauth.tlsServer" $ | fromJson) -}}{{- end -}}
{{- $_ := set $d "grpc" $grpc -}}
{{- $_ := set $d "database" (dict "url" "file:/var/run/secrets/mcpauth/database/url" "max_connections" (int $c.databaseMaxConnections)) -}}
{{- $_ := set $d "redis" (dict "url" "file:/var/run/secrets/mcpauth/redis/url" "key_prefix" $v.redis.keyPrefix "pool_size" (int $c.redisPoolSize)) -}}
{{- $_ := set $d "login" (dict "provider" "local") -}}
{{- $keys := list -}}
{{- range $v.secrets.tokenKeys.ids -}}
{{- $keys = append $keys (dict "id" . "secret" (printf "file:/var/run/secrets/mcpauth/internal/token-key-%s" .)) -}}
{{- end -}}
{{- $_ := set $d "tokens" (dict "current_key" $v.secrets.tokenKeys.current "keys" $keys) -}}
{{- if $v.tokenVault.enabled -}}
{{- $vault := dict "addr" (printf "%s://%s:%v" (include "mcpauth.grpcScheme" $) (include "mcpauth.cname" (dict "root" $ "svc" "token-vault")) (int $v.tokenVault.service.grpcPort)) "credential" "file:/var/run/secrets/mcpauth/internal/auth-service-at-token-vault.credential" -}}
{{- if $v.internalTls.enabled -}}{{- $_ := set $vault "tls" (include "mcpauth.tlsClient" $ | fromJson) -}}{{- end -}}
{{- $_ := set $d "vault" $vault -}}
{{- end -}}
{{- $_ := set $d "resources" (list (dict "uri" $v.resource "scopes" (list "mcp:tools.read" "mcp:tools.write") "default_scopes" (list "mcp:tools.read"))) -}}
{{- toJson $d -}}
{{- end -}}

{{- define "mcpauth.config.token-vault" -}}
{{- $ := . -}}
{{- $v := .Values -}}
{{- $c := .Values.tokenVault -}}
{{- $d := include "mcpauth.common" (dict "root" $ "c" $c "adminPort" 8182) | fromJson -}}
{{- $callers := list -}}
{{- if $v.authService.enabled -}}
{{- $callers = append $callers (dict "name" "auth-service" "permissions" (list "put") "credential_sha256" (include "mcpauth.callerHash" (dict "root" $ "caller" "auth-service" "callee" "token-vault"))) -}}
{{- end -}}
{{- if $v.mcpService.enabled -}}
{{- $callers = append $callers (dict "name" "mcp-service" "permissions" (list "get") "credential_sha256" (include "mcpauth.callerHash" (dict "root" $ "caller" "mcp-service" "callee" "token-vault"))) -}}
{{- end -}}
{{- $grpc := dict "addr" "0.0.0.0:9091" "callers" $callers -}}
{{- if $v.internalTls.enabled -}}{{- $_ := set $grpc "tls" (include "mcpauth.tlsServer" $ | fromJson) -}}{{- end -}}
{{- $_ := set $d "grpc" $grpc -}}
{{- $_ := set $d "database" (dict "url" "file:/var/run/secrets/mcpauth/database/url" "max_connections" (int $c.databaseMaxConnections)) -}}
{{- $_ := set $d "redis" (dict "url" "file:/var/run/secrets/mcpauth/redis/url" "key_prefix" (printf "%s-vault" $v.redis.keyPrefix) "auth_key_prefix" $v.redis.keyPrefix "pool_size" (int $c.redisPoolSize)) -}}
{{- $intro := dict "addr" (printf "%s://%s:%v" (include "mcpauth.grpcScheme" $) (include "mcpauth.cname" (dict "root" $ "svc" "auth-service")) (int $v.authService.service.grpcPort)) "credential" "file:/var/run/secrets/mcpauth/internal/token-vault-at-auth-service.credential" "accepted_resources" (list $v.resource) -}}
{{- if $v.internalTls.enabled -}}{{- $_ := set $intro "tls" (include "mcpauth.tlsClient" $ | fromJson) -}}{{- end -}}
{{- $_ := set $d "introspection" $intro -}}
{{- $keys := list -}}
{{- range $v.secrets.vaultKeys.ids -}}
{{- $keys = append $keys (dict "id" . "secret" (printf "file:/var/run/secrets/mcpauth/internal/vault-key-%s" .)) -}}
{{- end -}}
{{- $_ := set $d "encryption" (dict "current_key" $v.secrets.vaultKeys.current "keys" $keys) -}}
{{- toJson $d -}}
{{- end -}}

{{- define "mcpauth.config.mcp-service" -}}
{{- $ := . -}}
{{- $v := .Values -}}
{{- $c := .Values.mcpService -}}
{{- $d := include "mcpauth.common" (dict "root" $ "c" $c "adminPort" 8181) | fromJson -}}
{{- $_ := set $d "resource" $v.resource -}}
{{- $_ := set $d "authorization_servers" (default (list $v.issuer) $v.authorizationServers) -}}
{{- $u := urlParse $v.resource -}}
{{- $_ := set $d "http" (dict "addr" "0.0.0.0:8081" "shutdown_timeout_secs" (int $v.shutdownTimeoutSeconds) "allowed_origins" (list (printf "%s://%s" $u.scheme $u.host))) -}}
{{- if $v.authService.enabled -}}
{{- $g := dict "addr" (printf "%s://%s:%v" (include "mcpauth.grpcScheme" $) (include "mcpauth.cname" (dict "root" $ "svc" "auth-service")) (int $v.authService.service.grpcPort)) "credential" "file:/var/run/secrets/mcpauth/internal/mcp-service-at-auth-service.credential" -}}
{{- if $v.internalTls.enabled -}}{{- $_ := set $g "tls" (include "mcpauth.tlsClient" $ | fromJson) -}}{{- end -}}
{{- $_ := set $d "verifier" (dict "mode" "introspection_grpc" "grpc" $g) -}}
{{- end -}}
{{- $_ := set $d "redis" (dict "url" "file:/var/run/secrets/mcpauth/redis/url" "auth_key_prefix" $v.redis.keyPrefix "key_prefix" (printf "%s-mcp" $v.redis.keyPrefix) "pool_size" (int $c.redisPoolSize)) -}}
{{- if $v.tokenVault.enabled -}}
{{- $vault := dict "addr" (printf "%s://%s:%v" (include "mcpauth.grpcScheme" $) (include "mcpauth.cname" (dict "root" $ "svc" "token-vault")) (int $v.tokenVault.service.grpcPort)) "credential" "file:/var/run/secrets/mcpauth/internal/mcp-service-at-token-vault.credential" "key_prefix" (printf "%s-vault" $v.redis.keyPrefix) -}}
{{- if $v.internalTls.enabled -}}{{- $_ := set $vault "tls" (include "mcpauth.tlsClient" $ | fromJson) -}}{{- end -}}
{{- $_ := set $d "vault" $vault -}}
{{- end -}}
{{- toJson $d -}}
{{- end -}}

{{/* The final tree: the chart's, with <component>.config merged over it. */}}
{{- define "mcpauth.config" -}}
{{- $base := include (printf "mcpauth.config.%s" .svc) .root | fromJson -}}
{{- $user := deepCopy (default dict .c.config) -}}
{{- $extraCallers := list -}}
{{- if and (hasKey $user "grpc") (kindIs "map" $user.grpc) (hasKey $user.grpc "callers") -}}
{{- $extraCallers = $user.grpc.callers -}}
{{- $_ := unset $user.grpc "callers" -}}
{{- end -}}
{{- $merged := mustMergeOverwrite $base $user -}}
{{- if and $extraCallers (hasKey $merged "grpc") -}}
{{- $_ := set $merged.grpc "callers" (concat $merged.grpc.callers $extraCallers) -}}
{{- end -}}
{{- toJson $merged -}}
{{- end -}}
