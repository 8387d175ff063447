// The OpenID Connect provider of the sign-in tests: panva's oidc-provider, configured from the
// JSON in the OIDC_TEST_CONFIG environment variable (written by tests/monitor/auth/oidc/provider.py):
//   { port, audience, scope, clients: [client metadata], accounts: {sub: claims},
//     machines: {client_id: claims}, ttl: {client_id: seconds}, other_audience }
// Staff sign in through its development login form (any password); their access tokens are
// JWTs for the service's audience (resource indicators) with the account's claims in them.
// Prints "ready <issuer>" once it listens.
import crypto from "node:crypto";
import Provider from "oidc-provider";

const config = JSON.parse(process.env.OIDC_TEST_CONFIG);
const issuer = `http://127.0.0.1:${config.port}`;

function signingKey(kty, options, alg) {
  const { privateKey } = crypto.generateKeyPairSync(kty, options);
  return { ...privateKey.export({ format: "jwk" }), kid: `${alg}-${crypto.randomUUID()}`, alg, use: "sig" };
}

// the claims an access token carries: the account's (staff) or the machine client's
function tokenClaims(token) {
  if (token.accountId) return config.accounts[token.accountId] || {};
  return config.machines[token.clientId] || {};
}

const provider = new Provider(issuer, {
  clients: config.clients,
  jwks: {
    keys: [
      signingKey("rsa", { modulusLength: 2048 }, "RS256"),
      signingKey("ec", { namedCurve: "P-256" }, "ES256"),
    ],
  },
  async findAccount(_ctx, sub) {
    if (!(sub in config.accounts)) return undefined;
    return { accountId: sub, async claims() { return { sub }; } };
  },
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => config.audience,
      useGrantedResource: async () => true,
      async getResourceServerInfo(_ctx, resource, client) {
        if (resource !== config.audience && resource !== config.other_audience) {
          throw new Provider.errors.InvalidTarget();
        }
        return {
          scope: "monitor",
          audience: resource,
          accessTokenFormat: "jwt",
          accessTokenTTL: (config.ttl || {})[client.clientId] || 600,
          jwt: { sign: { alg: client.clientId.startsWith("es256") ? "ES256" : "RS256" } },
        };
      },
    },
  },
  async extraTokenClaims(_ctx, token) {
    return tokenClaims(token);
  },
});

provider.listen(config.port, "127.0.0.1", () => {
  process.stdout.write(`ready ${issuer}\n`);
});
