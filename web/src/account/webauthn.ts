// WebAuthn ceremonies: turns the server's JSON options (base64url strings)
// into the browser's binary form and the browser's credentials back.

function fromB64url(s: string): ArrayBuffer {
  const b64 = s.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((s.length + 3) % 4);
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out.buffer;
}

function toB64url(buf: ArrayBuffer | null): string | null {
  if (!buf) return null;
  const bytes = new Uint8Array(buf);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

interface JsonDescriptor {
  id: string;
  type: string;
  transports?: string[];
}

type Json = Record<string, unknown>;

function descriptors(list: unknown): PublicKeyCredentialDescriptor[] | undefined {
  if (!Array.isArray(list)) return undefined;
  return (list as JsonDescriptor[]).map((d) => ({
    id: fromB64url(d.id),
    type: 'public-key',
    ...(d.transports ? { transports: d.transports as AuthenticatorTransport[] } : {}),
  }));
}

export function available(): boolean {
  return typeof window.PublicKeyCredential === 'function' && !!navigator.credentials;
}

/** Registers a passkey; `options` is the server's `{ publicKey: ... }`. */
export async function create(options: Json): Promise<Json> {
  const pk = options.publicKey as Json;
  const user = pk.user as Json;
  const publicKey = {
    ...pk,
    challenge: fromB64url(pk.challenge as string),
    user: { ...user, id: fromB64url(user.id as string) },
    excludeCredentials: descriptors(pk.excludeCredentials),
  } as unknown as PublicKeyCredentialCreationOptions;
  const cred = (await navigator.credentials.create({ publicKey })) as PublicKeyCredential | null;
  if (!cred) throw new Error('No passkey was created.');
  const response = cred.response as AuthenticatorAttestationResponse;
  return {
    id: cred.id,
    rawId: toB64url(cred.rawId),
    type: cred.type,
    response: {
      attestationObject: toB64url(response.attestationObject),
      clientDataJSON: toB64url(response.clientDataJSON),
      transports: typeof response.getTransports === 'function' ? response.getTransports() : [],
    },
    extensions: cred.getClientExtensionResults(),
  };
}

/** Signs a challenge with a passkey; `options` is the server's `{ publicKey: ... }`. */
export async function get(options: Json): Promise<Json> {
  const pk = options.publicKey as Json;
  const publicKey = {
    ...pk,
    challenge: fromB64url(pk.challenge as string),
    allowCredentials: descriptors(pk.allowCredentials),
  } as unknown as PublicKeyCredentialRequestOptions;
  const cred = (await navigator.credentials.get({ publicKey })) as PublicKeyCredential | null;
  if (!cred) throw new Error('No passkey was used.');
  const response = cred.response as AuthenticatorAssertionResponse;
  return {
    id: cred.id,
    rawId: toB64url(cred.rawId),
    type: cred.type,
    response: {
      authenticatorData: toB64url(response.authenticatorData),
      clientDataJSON: toB64url(response.clientDataJSON),
      signature: toB64url(response.signature),
      userHandle: toB64url(response.userHandle),
    },
    extensions: cred.getClientExtensionResults(),
  };
}
