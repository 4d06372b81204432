// RFC 8693 token exchange done by a client nobody here wrote: oauth4webapi's
// genericTokenEndpointRequest (v3's name for genericGrantRequest) and
// processGenericTokenEndpointResponse. Called from oauth-flow.mjs with a user's access token;
// scripts/e2e.sh configures the exchanging client and the policy (E2E_EXCHANGE_* below).
import * as oauth from 'oauth4webapi';

export const GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

/** The exchanging client and target from the environment, or undefined when not configured. */
export function exchangeConfig(env = process.env) {
  if (!env.E2E_EXCHANGE_CLIENT_ID) return undefined;
  return {
    client: { client_id: env.E2E_EXCHANGE_CLIENT_ID, token_endpoint_auth_method: 'client_secret_basic' },
    secret: env.E2E_EXCHANGE_CLIENT_SECRET ?? '',
    target: env.E2E_EXCHANGE_TARGET,
  };
}

/** Exchanges `subjectToken` for a token at `exchanger.target`; resolves to the processed response. */
export async function exchange(as, exchanger, subjectToken, options, extra = {}) {
  const res = await oauth.genericTokenEndpointRequest(
    as,
    exchanger.client,
    oauth.ClientSecretBasic(exchanger.secret),
    GRANT,
    new URLSearchParams({ subject_token: subjectToken, subject_token_type: ACCESS_TOKEN_TYPE, resource: exchanger.target, ...extra }),
    options,
  );
  return oauth.processGenericTokenEndpointResponse(as, exchanger.client, res);
}
