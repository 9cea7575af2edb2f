//! WebAuthn passkeys through webauthn-rs: the relying party is the host of
//! the public URL; user verification is required.

use sha2::{Digest, Sha256};
use webauthn_rs::prelude::Uuid;
use webauthn_rs::{Webauthn, WebauthnBuilder};

use crate::{AccountsError, Settings, UserId};

/// The WebAuthn relying party of this server, if its public URL has a
/// domain name (WebAuthn does not accept IP addresses).
pub(crate) fn webauthn(settings: &Settings) -> Result<Option<Webauthn>, AccountsError> {
    let Some(domain) = settings.public_url.domain() else {
        return Ok(None);
    };
    let w = WebauthnBuilder::new(domain, &settings.public_url)
        .map_err(|e| AccountsError::Internal(format!("WebAuthn relying party: {e}")))?
        .rp_name(&settings.site_name)
        .build()
        .map_err(|e| AccountsError::Internal(format!("WebAuthn relying party: {e}")))?;
    Ok(Some(w))
}

/// The WebAuthn user handle of a user: derived from the id, so it is
/// stable and reveals nothing else.
pub(crate) fn user_handle(user: &UserId) -> Uuid {
    let digest = Sha256::digest(user.as_str().as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::from_bytes(bytes)
}
