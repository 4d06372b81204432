"""helm/mcpauth/values.schema.json, generated from values.yaml: every object closed
(additionalProperties: false, so a misspelled key is refused), types from the defaults, plus the
rules below (enums, ranges, URL shapes, the top-level sections of each service's config).

    python3 tests/helm/gen_schema.py           write the schema
    python3 tests/helm/gen_schema.py --check   fail when the committed schema differs (make test-helm)
"""
import json
import os
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMA = os.path.join(ROOT, 'helm', 'mcpauth', 'values.schema.json')
vals = yaml.safe_load(open(os.path.join(ROOT, 'helm', 'mcpauth', 'values.yaml')))
FREE = {'commonLabels','podAnnotations','podLabels','nodeSelector','affinity','resources','annotations','labels',
        'behavior','monitoringNamespaceSelector','dnsConfig','strategy','startup','readiness','liveness','podSecurityContext','containerSecurityContext'}
SECTIONS = {
 'authService': 'issuer dev_mode http grpc database redis log telemetry login tokens registration introspection cimd rate_limit resources clients upstream vault admin shutdown',
 'tokenVault': 'grpc http database redis log telemetry introspection encryption refresh providers admin shutdown',
 'mcpService': 'resource authorization_servers scopes_supported scope_implications http log telemetry verifier redis sessions vault connect providers connectors admin shutdown',
}
ENUMS = {'podAntiAffinityPreset': ["", "soft", "hard"], 'pullPolicy': None, 'type': ["ClusterIP","NodePort","LoadBalancer"]}
def scalar(v):
    if isinstance(v,bool): return {'type':'boolean'}
    if isinstance(v,int): return {'type':'integer'}
    if isinstance(v,float): return {'type':'number'}
    if isinstance(v,str): return {'type':'string'}
    raise Exception(v)
def node(key, v, path):
    if key == 'config':
        comp = path[0]
        return {'type':'object','description':'service configuration (TOML tree) merged over the chart\'s',
                'additionalProperties': False,
                'properties': {s: {} for s in SECTIONS[comp].split()}}
    if key in FREE:
        return {'type':'object'}
    if key.endswith('Port') and isinstance(v,int) and not isinstance(v,bool):
        return {'type':'integer','minimum':1,'maximum':65535}
    if key == 'pullPolicy':
        return {'type':'string','enum':["","Always","IfNotPresent","Never"]}
    if key == 'podAntiAffinityPreset':
        return {'type':'string','enum':["","soft","hard"]}
    if key == 'type' and path[-1] == 'service':
        return {'type':'string','enum':["ClusterIP","NodePort","LoadBalancer"]}
    if key in ('issuer','resource'):
        return {'type':'string','pattern':'^https?://[^/]+(/.*[^/])?$'}
    if key == 'digest':
        return {'type':'string','pattern':'^(sha256:[0-9a-f]{64})?$'}
    if key == 'minAvailable':
        return {'type':['integer','string','null']}
    if key == 'maxUnavailable':
        return {'type':['integer','string']}
    if key == 'targetMemoryUtilizationPercentage':
        return {'type':['integer','null'],'minimum':1}
    if key in ('replicaCount','minReplicas','maxReplicas','backoffLimit','ttlSecondsAfterFinished','activeDeadlineSeconds','batch','databaseMaxConnections','redisPoolSize','drainDelaySeconds','shutdownTimeoutSeconds','terminationGracePeriodSeconds','targetCPUUtilizationPercentage','revisionHistoryLimit'):
        return {'type':'integer','minimum':0}
    if key == 'ids':
        return {'type':'array','minItems':1,'items':{'type':'string','pattern':'^[A-Za-z0-9_.-]+$'}}
    if isinstance(v, dict):
        return {'type':'object','additionalProperties':False,
                'properties':{k: node(k, x, path+[k]) for k,x in v.items()}}
    if isinstance(v, list):
        if key == 'identityProviderPorts': return {'type':'array','items':{'type':'integer','minimum':1,'maximum':65535}}
        if key == 'authorizationServers': return {'type':'array','items':{'type':'string'}}
        return {'type':'array','items':{'type':'object'}}
    return scalar(v)
schema = {'$schema':'http://json-schema.org/draft-07/schema#','title':'mcpauth chart values',
          'type':'object','additionalProperties':False,
          'properties':{k: node(k,v,[k]) for k,v in vals.items()}}
text = json.dumps(schema, indent=2) + "\n"
if "--check" in sys.argv:
    if open(SCHEMA).read() != text:
        sys.exit("values.schema.json differs from what values.yaml implies: python3 tests/helm/gen_schema.py")
else:
    open(SCHEMA, "w").write(text)
