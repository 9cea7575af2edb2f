//! LiveKit-compatible access tokens.
//!
//! An access token is a JWT signed with HS256 (HMAC-SHA-256) using the secret
//! of an API key; its `iss` claim names the key. Conclave accepts the tokens
//! that the official LiveKit server SDKs mint, and mints tokens they accept.
//!
//! This crate is sans-IO: it never reads the clock or the environment.
//! Callers pass the current unix time in seconds.
//!
//! - [`sign`] turns [`Claims`] into a token.
//! - [`Verifier`] holds one or more [`ApiKey`]/[`ApiSecret`] pairs and checks
//!   tokens: algorithm, key, signature, expiry, not-before (with a leeway of
//!   [`DEFAULT_LEEWAY_SECS`]), size (at most [`MAX_TOKEN_LEN`]) and identity.
//! - [`Claims::join_grant`] resolves what a participant may do in the room
//!   its token names ([`JoinGrant`]); the `require_*` methods of [`Claims`]
//!   check the grants of server-API (RoomService) calls.
//!
//! Every failure is a [`TokenError`] whose message is safe to show a client.
//!
//! ```
//! use conclave_token::{sign, ApiKey, ApiSecret, Claims, Verifier};
//!
//! let key = ApiKey::new("APIdevkey");
//! let secret = ApiSecret::new("a-long-random-secret-of-32-bytes-or-more");
//! let now = 1_800_000_000;
//! let token = sign(&Claims::for_join("alice", "standup", now, 3600), &key, &secret)?;
//!
//! let mut verifier = Verifier::new();
//! verifier.insert(key, secret)?;
//! let claims = verifier.verify(&token, now + 5)?;
//! let grant = claims.join_grant(Some("standup"))?;
//! assert_eq!(grant.identity, "alice");
//! assert!(claims.join_grant(Some("other-room")).is_err());
//! # Ok::<(), conclave_token::TokenError>(())
//! ```

#![forbid(unsafe_code)]

mod claims;
mod error;
mod jwt;
mod keys;

pub use claims::{Claims, JoinGrant, TrackSource, VideoGrant};
pub use error::TokenError;
pub use jwt::{DEFAULT_LEEWAY_SECS, MAX_TOKEN_LEN, Verifier, sign};
pub use keys::{ApiKey, ApiSecret};
