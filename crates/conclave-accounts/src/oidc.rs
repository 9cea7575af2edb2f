//! OpenID Connect sign-in as a relying party: authorization code flow with
//! PKCE (S256), `state` bound to the browser, `nonce`, and ID-token
//! validation (issuer, audience, expiry, signature from the provider's
//! keys). Claims are mapped to a role and to attributes kept for
//! attribute-based access control.

use std::collections::HashMap;
use std::sync::Arc;

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::{AccountsError, Settings};

/// One configured provider.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// Short name used in URLs (`a-z 0-9 -`).
    pub id: String,
    /// Shown on the sign-in button.
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// Scopes besides `openid` (e.g. `email`, `profile`).
    pub scopes: Vec<String>,
    /// Claim holding the user's groups or roles (empty: no mapping).
    pub role_claim: String,
    /// Values of `role_claim` that make a user an administrator.
    pub admin_values: Vec<String>,
    /// Claims copied into the user's attributes.
    pub attribute_claims: Vec<String>,
}

/// What a provider said about the user, after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub provider: String,
    pub subject: String,
    /// A verified e-mail address, if the provider gave one.
    pub email: Option<String>,
    pub name: Option<String>,
    /// The role the claims map to, when the provider has a role claim.
    pub role: Option<conclave_store::Role>,
    /// JSON object of the configured attribute claims.
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// State kept between the redirect to the provider and the callback.
#[derive(Serialize, Deserialize)]
pub(crate) struct PendingLogin {
    pub provider: String,
    pub pkce_verifier: String,
    pub nonce: String,
    /// Hash of the value of the browser's binding cookie.
    pub binding_hash: String,
}

pub(crate) struct Providers {
    settings: Vec<ProviderSettings>,
    redirect_base: String,
    http: reqwest::Client,
    metadata: Mutex<HashMap<String, Arc<CoreProviderMetadata>>>,
}

impl Providers {
    pub(crate) fn new(settings: &Settings) -> Result<Self, AccountsError> {
        for p in &settings.oidc {
            if p.id.is_empty()
                || p.id.len() > 32
                || !p
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(AccountsError::Invalid(
                    "an OpenID provider id must be 1 to 32 of a-z, 0-9, -",
                ));
            }
            IssuerUrl::new(p.issuer.clone())
                .map_err(|_| AccountsError::Invalid("an OpenID provider issuer is not a URL"))?;
        }
        let http = reqwest::Client::builder()
            // Never follow redirects from the provider's endpoints (SSRF).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(15))
            .build()
            .map_err(|e| AccountsError::Internal(format!("HTTP client: {e}")))?;
        Ok(Self {
            settings: settings.oidc.clone(),
            redirect_base: settings.public_url.as_str().trim_end_matches('/').to_owned(),
            http,
            metadata: Mutex::new(HashMap::new()),
        })
    }

    fn provider(&self, id: &str) -> Result<&ProviderSettings, AccountsError> {
        self.settings
            .iter()
            .find(|p| p.id == id)
            .ok_or(AccountsError::NotFound)
    }

    /// The provider's discovery document, fetched once and kept.
    async fn metadata(&self, p: &ProviderSettings) -> Result<Arc<CoreProviderMetadata>, AccountsError> {
        let mut cache = self.metadata.lock().await;
        if let Some(m) = cache.get(&p.id) {
            return Ok(m.clone());
        }
        let issuer = IssuerUrl::new(p.issuer.clone())
            .map_err(|_| AccountsError::Invalid("an OpenID provider issuer is not a URL"))?;
        let m = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| AccountsError::External(format!("discovery of {}: {e}", p.id)))?;
        let m = Arc::new(m);
        cache.insert(p.id.clone(), m.clone());
        Ok(m)
    }

    pub(crate) fn redirect_url(&self, id: &str) -> String {
        format!("{}/api/account/oidc/{id}/callback", self.redirect_base)
    }

    async fn client(
        &self,
        p: &ProviderSettings,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        AccountsError,
    > {
        let meta = self.metadata(p).await?;
        let secret = (!p.client_secret.is_empty()).then(|| ClientSecret::new(p.client_secret.clone()));
        let redirect = RedirectUrl::new(self.redirect_url(&p.id))
            .map_err(|_| AccountsError::Internal("OpenID redirect URL".into()))?;
        Ok(
            CoreClient::from_provider_metadata((*meta).clone(), ClientId::new(p.client_id.clone()), secret)
                .set_redirect_uri(redirect),
        )
    }

    /// The provider's authorization URL and the state to keep.
    pub(crate) async fn start(
        &self,
        id: &str,
        binding_hash: String,
    ) -> Result<(String, String, PendingLogin), AccountsError> {
        let p = self.provider(id)?;
        let client = self.client(p).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for s in &p.scopes {
            request = request.add_scope(Scope::new(s.clone()));
        }
        let (url, state, nonce) = request.url();
        Ok((
            url.to_string(),
            state.secret().clone(),
            PendingLogin {
                provider: p.id.clone(),
                pkce_verifier: verifier.secret().clone(),
                nonce: nonce.secret().clone(),
                binding_hash,
            },
        ))
    }

    /// Exchanges the code, validates the ID token and maps its claims.
    pub(crate) async fn finish(&self, pending: &PendingLogin, code: &str) -> Result<Identity, AccountsError> {
        let p = self.provider(&pending.provider)?;
        let client = self.client(p).await?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| AccountsError::External(format!("token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| AccountsError::External(format!("code exchange at {}: {e}", p.id)))?;
        let id_token = response
            .id_token()
            .ok_or_else(|| AccountsError::External(format!("{} returned no ID token", p.id)))?;
        let verifier = client.id_token_verifier();
        let claims = id_token
            .claims(&verifier, &Nonce::new(pending.nonce.clone()))
            .map_err(|e| AccountsError::External(format!("ID token from {}: {e}", p.id)))?;
        // The token is verified; its payload also carries the claims that
        // the standard set does not name (groups, department, ...).
        let raw = raw_claims(&id_token.to_string())?;
        let email = claims
            .email()
            .filter(|_| claims.email_verified() == Some(true))
            .and_then(|e| crate::normalise_email(e.as_str()).ok());
        let name = claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_owned())
            .or_else(|| claims.preferred_username().map(|u| u.as_str().to_owned()));
        Ok(map_claims(
            p,
            claims.subject().as_str().to_owned(),
            email,
            name,
            &raw,
        ))
    }
}

/// The payload of a JWT whose signature was already verified.
fn raw_claims(jwt: &str) -> Result<serde_json::Map<String, serde_json::Value>, AccountsError> {
    use base64::Engine;
    let payload = jwt
        .split('.')
        .nth(1)
        .ok_or_else(|| AccountsError::External("malformed ID token".into()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| AccountsError::External("malformed ID token".into()))?;
    serde_json::from_slice(&bytes).map_err(|_| AccountsError::External("malformed ID token".into()))
}

/// Applies a provider's claim mapping.
pub fn map_claims(
    p: &ProviderSettings,
    subject: String,
    email: Option<String>,
    name: Option<String>,
    raw: &serde_json::Map<String, serde_json::Value>,
) -> Identity {
    let role = (!p.role_claim.is_empty()).then(|| {
        let values: Vec<String> = match raw.get(&p.role_claim) {
            Some(serde_json::Value::Array(a)) => {
                a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
            }
            Some(serde_json::Value::String(s)) => s.split([' ', ',']).map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        if values.iter().any(|v| p.admin_values.contains(v)) {
            conclave_store::Role::Admin
        } else {
            conclave_store::Role::User
        }
    });
    let mut attributes = serde_json::Map::new();
    for c in &p.attribute_claims {
        if let Some(v) = raw.get(c) {
            attributes.insert(c.clone(), v.clone());
        }
    }
    Identity {
        provider: p.id.clone(),
        subject,
        email,
        name,
        role,
        attributes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> ProviderSettings {
        ProviderSettings {
            id: "corp".into(),
            name: "Corp".into(),
            issuer: "http://127.0.0.1:9/".into(),
            client_id: "c".into(),
            client_secret: "s".into(),
            scopes: vec!["email".into()],
            role_claim: "groups".into(),
            admin_values: vec!["conclave-admins".into()],
            attribute_claims: vec!["groups".into(), "department".into()],
        }
    }

    #[test]
    fn claims_map_to_roles_and_attributes() {
        let raw: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
            r#"{"sub":"1","groups":["staff","conclave-admins"],"department":"R&D","secret":"x"}"#,
        )
        .expect("json");
        let id = map_claims(&provider(), "1".into(), None, Some("Ada".into()), &raw);
        assert_eq!(id.role, Some(conclave_store::Role::Admin));
        assert_eq!(id.attributes.len(), 2);
        assert!(!id.attributes.contains_key("secret"));
        let raw: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(r#"{"groups":"staff other"}"#).expect("json");
        assert_eq!(
            map_claims(&provider(), "2".into(), None, None, &raw).role,
            Some(conclave_store::Role::User)
        );
        let mut no_mapping = provider();
        no_mapping.role_claim.clear();
        assert_eq!(map_claims(&no_mapping, "3".into(), None, None, &raw).role, None);
    }

    #[test]
    fn raw_claims_refuse_junk() {
        assert!(raw_claims("nodots").is_err());
        assert!(raw_claims("a.!!!.c").is_err());
        assert!(raw_claims("a.bm90IGpzb24.c").is_err());
        assert!(raw_claims("a.eyJzdWIiOiIxIn0.c").is_ok());
    }
}
