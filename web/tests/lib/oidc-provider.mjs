// A real OpenID provider (the npm package oidc-provider) on loopback, with
// one confidential client and a plain login page of our own (the
// package's development pages load web fonts from elsewhere): any login
// name signs in and consents. Accounts named "admin-*" are in the group
// "conclave-admins".

import { createServer } from 'node:http';
import Provider from 'oidc-provider';
import { freePort } from './accounts.mjs';

const LOGIN_PAGE = (uid) => `<!doctype html><html><head><title>Test provider</title></head><body>
<h1>Test provider</h1>
<form method="post" action="/interaction/${uid}/login">
<label>Login <input name="login" autofocus></label>
<button type="submit">Sign in</button>
</form></body></html>`;

async function readForm(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
}

export const CLIENT_ID = 'conclave-test';
export const CLIENT_SECRET = 'conclave-test-secret-0123456789abcdef';

export async function startOidcProvider({ redirectUri }) {
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        redirect_uris: [redirectUri],
        response_types: ['code'],
        grant_types: ['authorization_code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
    },
    scopes: ['openid', 'email', 'profile', 'groups'],
    // Claims of the granted scopes go into the ID token itself.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    cookies: { keys: ['conclave-test-cookie-key-0123456789'] },
    findAccount: async (_ctx, id) => ({
      accountId: id,
      claims: async () => ({
        sub: id,
        email: `${id}@idp.example`,
        email_verified: true,
        name: `IdP ${id}`,
        groups: id.startsWith('admin-') ? ['staff', 'conclave-admins'] : ['staff'],
      }),
    }),
  });
  const callback = provider.callback();
  const handler = async (req, res) => {
    const m = req.url.match(/^\/interaction\/([A-Za-z0-9_-]+)(\/login)?$/);
    if (!m) return callback(req, res);
    try {
      if (req.method === 'GET' && !m[2]) {
        await provider.interactionDetails(req, res);
        res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
        return res.end(LOGIN_PAGE(m[1]));
      }
      if (req.method === 'POST' && m[2]) {
        const details = await provider.interactionDetails(req, res);
        const accountId = (await readForm(req)).get('login') || 'anonymous';
        const grant = new provider.Grant({ accountId, clientId: details.params.client_id });
        grant.addOIDCScope(String(details.params.scope));
        const grantId = await grant.save();
        return await provider.interactionFinished(req, res, { login: { accountId }, consent: { grantId } }, { mergeWithLastSubmission: false });
      }
      res.writeHead(404).end();
    } catch (err) {
      res.writeHead(500, { 'Content-Type': 'text/plain' }).end(String(err));
    }
  };
  const server = await new Promise((resolve, reject) => {
    const s = createServer((req, res) => void handler(req, res));
    s.listen(port, '127.0.0.1', () => resolve(s));
    s.on('error', reject);
  });
  return {
    issuer,
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
