//! HS256 JWT signing and verification.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde::de::IgnoredAny;
use sha2::Sha256;

use crate::claims::ObjectOnly;
use crate::{ApiKey, ApiSecret, Claims, TokenError};

type HmacSha256 = Hmac<Sha256>;

/// The longest token accepted, in bytes (16 KiB).
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Default clock leeway, in seconds, applied to both `nbf` and `exp`: a token
/// is accepted from `nbf - 10` until just before `exp + 10`.
pub const DEFAULT_LEEWAY_SECS: u64 = 10;

const HEADER_JSON: &[u8] = br#"{"alg":"HS256","typ":"JWT"}"#;

/// The JOSE header fields this crate looks at. Others (`kid`, `cty`, ...) are
/// ignored, except `crit` and `b64`, which would change how the token must be
/// read and are therefore refused.
#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Option<IgnoredAny>,
    #[serde(default)]
    b64: Option<IgnoredAny>,
}

fn mac_for(secret: &ApiSecret) -> Result<HmacSha256, TokenError> {
    // HMAC accepts keys of any length; the error cannot happen.
    HmacSha256::new_from_slice(secret.as_bytes()).map_err(|_| TokenError::Encode)
}

/// Signs `claims` as an HS256 JWT with header `{"alg":"HS256","typ":"JWT"}`.
///
/// `iss` is set to `key` whatever `claims.iss` holds. Refuses an empty key or
/// secret, claims without `exp`, a `roomJoin` grant without identity, and a
/// result longer than [`MAX_TOKEN_LEN`] (which no verifier here would accept).
pub fn sign(claims: &Claims, key: &ApiKey, secret: &ApiSecret) -> Result<String, TokenError> {
    if key.as_str().is_empty() || secret.is_empty() {
        return Err(TokenError::EmptyCredentials);
    }
    if claims.exp == 0 {
        return Err(TokenError::MissingExpiry);
    }
    if claims.video.room_join && claims.sub.is_empty() {
        return Err(TokenError::MissingIdentity);
    }
    let mut claims = claims.clone();
    key.as_str().clone_into(&mut claims.iss);
    let payload = serde_json::to_vec(&claims).map_err(|_| TokenError::Encode)?;

    let mut token = URL_SAFE_NO_PAD.encode(HEADER_JSON);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
    let mut mac = mac_for(secret)?;
    mac.update(token.as_bytes());
    let tag = mac.finalize().into_bytes();
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(tag, &mut token);
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLarge);
    }
    Ok(token)
}

/// Checks tokens against a set of API keys and their secrets.
///
/// Never reads the clock: the caller passes the current unix time.
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: HashMap<ApiKey, ApiSecret>,
    leeway_secs: u64,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    /// A verifier with no keys (it refuses everything) and the default
    /// leeway of [`DEFAULT_LEEWAY_SECS`].
    #[must_use]
    pub fn new() -> Self {
        Self {
            keys: HashMap::new(),
            leeway_secs: DEFAULT_LEEWAY_SECS,
        }
    }

    /// Sets the clock leeway in seconds.
    #[must_use]
    pub fn with_leeway(mut self, secs: u64) -> Self {
        self.leeway_secs = secs;
        self
    }

    /// The clock leeway in seconds.
    #[must_use]
    pub fn leeway(&self) -> u64 {
        self.leeway_secs
    }

    /// Adds (or replaces) an API key. An empty key or secret is refused: a
    /// token signed with an empty secret could be forged by anyone.
    pub fn insert(&mut self, key: ApiKey, secret: ApiSecret) -> Result<(), TokenError> {
        if key.as_str().is_empty() || secret.is_empty() {
            return Err(TokenError::EmptyCredentials);
        }
        self.keys.insert(key, secret);
        Ok(())
    }

    /// Removes an API key; tokens it signed stop verifying.
    pub fn remove(&mut self, key: &str) -> bool {
        self.keys.remove(key).is_some()
    }

    /// The secret of `key`, for code that must sign with it (for instance a
    /// server's own tokens or webhook signatures).
    #[must_use]
    pub fn secret(&self, key: &str) -> Option<&ApiSecret> {
        self.keys.get(key)
    }

    /// Number of keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no keys.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies `token` at time `now_unix` (unix seconds) and returns its
    /// claims.
    ///
    /// In order, refuses: a token over [`MAX_TOKEN_LEN`] bytes; anything but
    /// three base64url (unpadded) parts; a header whose `alg` is not exactly
    /// `HS256` (so `none`, `HS512`, `RS256`, ... are refused) or whose `typ`
    /// is present and not `JWT`, or that carries `crit`/`b64`; claims that
    /// are not a JSON object of the expected types; a missing or unknown
    /// `iss`; a bad signature (compared in constant time); a missing `exp`;
    /// `now_unix >= exp + leeway`; `nbf > now_unix + leeway`; and a
    /// `roomJoin` grant without identity (`sub`). Time checks come after the
    /// signature check, so a forged token never learns more than
    /// "invalid signature".
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };

        let header: Header = decode_json(header_b64)?;
        if header.alg != "HS256" {
            return Err(TokenError::UnsupportedAlgorithm);
        }
        if header
            .typ
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("JWT"))
            || header.crit.is_some()
            || header.b64.is_some()
        {
            return Err(TokenError::Malformed);
        }

        let claims: Claims = decode_json(payload_b64)?;
        let secret = if claims.iss.is_empty() {
            None
        } else {
            self.keys.get(claims.iss.as_str())
        }
        .ok_or(TokenError::UnknownKey)?;

        let signature = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| TokenError::Malformed)?;
        let signed_len = header_b64.len() + 1 + payload_b64.len();
        let signed = token.as_bytes().get(..signed_len).ok_or(TokenError::Malformed)?;
        let mut mac = mac_for(secret)?;
        mac.update(signed);
        mac.verify_slice(&signature)
            .map_err(|_| TokenError::BadSignature)?;

        if claims.exp == 0 {
            return Err(TokenError::MissingExpiry);
        }
        if claims.exp.saturating_add(self.leeway_secs) <= now_unix {
            return Err(TokenError::Expired);
        }
        if claims.nbf > now_unix.saturating_add(self.leeway_secs) {
            return Err(TokenError::NotYetValid);
        }
        if claims.video.room_join && claims.sub.is_empty() {
            return Err(TokenError::MissingIdentity);
        }
        Ok(claims)
    }
}

fn decode_json<T: for<'de> Deserialize<'de>>(part: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice::<ObjectOnly<T>>(&bytes)
        .map(|o| o.0)
        .map_err(|_| TokenError::Malformed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{TrackSource, VideoGrant};

    // Minted once by the Python `livekit-api` 1.2.2 package (`AccessToken`),
    // with a 100-year TTL, key PY_KEY and secret PY_SECRET.
    const PY_KEY: &str = "pykey";
    const PY_SECRET: &str = "pysecret-0123456789-0123456789-abcdef";
    const PY_NBF: u64 = 1_795_336_931;
    const PY_EXP: u64 = 4_948_936_931;
    /// identity alice, name Alice, metadata, attributes {team: blue},
    /// room_join conclave-room, can_publish_sources [camera, microphone],
    /// can_update_own_metadata.
    const PY_ALICE: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJuYW1lIjoiQWxpY2UiLCJtZXRhZGF0YSI6IntcInJvbGVcIjpcImhvc3RcIn0iLCJ2aWRlbyI6eyJyb29tSm9pbiI6dHJ1ZSwicm9vbSI6ImNvbmNsYXZlLXJvb20iLCJjYW5QdWJsaXNoIjp0cnVlLCJjYW5TdWJzY3JpYmUiOnRydWUsImNhblB1Ymxpc2hEYXRhIjp0cnVlLCJjYW5QdWJsaXNoU291cmNlcyI6WyJjYW1lcmEiLCJtaWNyb3Bob25lIl0sImNhblVwZGF0ZU93bk1ldGFkYXRhIjp0cnVlfSwiYXR0cmlidXRlcyI6eyJ0ZWFtIjoiYmx1ZSJ9LCJzdWIiOiJhbGljZSIsImlzcyI6InB5a2V5IiwibmJmIjoxNzk1MzM2OTMxLCJleHAiOjQ5NDg5MzY5MzF9.KQ_0U710Cy_d1mZmv2q0KAcQMTRtG8fQZXA-ETz_voM";
    /// The shape RoomService calls send: room_admin on conclave-room, `"sub":""`.
    const PY_ADMIN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ2aWRlbyI6eyJyb29tQWRtaW4iOnRydWUsInJvb20iOiJjb25jbGF2ZS1yb29tIiwiY2FuUHVibGlzaCI6dHJ1ZSwiY2FuU3Vic2NyaWJlIjp0cnVlLCJjYW5QdWJsaXNoRGF0YSI6dHJ1ZX0sInN1YiI6IiIsImlzcyI6InB5a2V5IiwibmJmIjoxNzk1MzM2OTMxLCJleHAiOjQ5NDg5MzY5MzF9.QEcMJPvsf27CwQ_mF3ivadGUSpD55hj7GzDJcgLzIKw";
    /// identity bot, kind agent, hidden, agent, can_publish=false.
    const PY_AGENT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJraW5kIjoiYWdlbnQiLCJ2aWRlbyI6eyJyb29tSm9pbiI6dHJ1ZSwicm9vbSI6ImNvbmNsYXZlLXJvb20iLCJjYW5QdWJsaXNoIjpmYWxzZSwiY2FuU3Vic2NyaWJlIjp0cnVlLCJjYW5QdWJsaXNoRGF0YSI6dHJ1ZSwiaGlkZGVuIjp0cnVlLCJhZ2VudCI6dHJ1ZX0sInN1YiI6ImJvdCIsImlzcyI6InB5a2V5IiwibmJmIjoxNzk1MzM2OTMxLCJleHAiOjQ5NDg5MzY5MzF9.f3fEYtMT8MfthjCfLTkyVnNxH4HRjsXPAuebuyFmFS0";
    /// identity bob, 60-second TTL: nbf PY_NBF, exp BOB_EXP (long past).
    const PY_BOB_SHORT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ2aWRlbyI6eyJyb29tSm9pbiI6dHJ1ZSwicm9vbSI6ImNvbmNsYXZlLXJvb20iLCJjYW5QdWJsaXNoIjp0cnVlLCJjYW5TdWJzY3JpYmUiOnRydWUsImNhblB1Ymxpc2hEYXRhIjp0cnVlfSwic3ViIjoiYm9iIiwiaXNzIjoicHlrZXkiLCJuYmYiOjE3OTUzMzY5MzEsImV4cCI6MTc5NTMzNjk5MX0.AVXhKtM0pNgMyRExCXTWTqY30Gf7ECPYr2dU5qcO540";
    const BOB_EXP: u64 = 1_795_336_991;

    // Minted once by the Node `livekit-server-sdk` 2.19.2 package: header
    // without `typ`, canPublishSources [camera, microphone], canPublishData false.
    const NODE_KEY: &str = "nodekey";
    const NODE_SECRET: &str = "nodesecret-nodesecret-nodesecret-0123";
    const NODE_USER: &str = "eyJhbGciOiJIUzI1NiJ9.eyJtZXRhZGF0YSI6IntcIm1cIjoxfSIsImF0dHJpYnV0ZXMiOnsiayI6InYifSwibmFtZSI6Ik5vZGUgVXNlciIsInZpZGVvIjp7InJvb21Kb2luIjp0cnVlLCJyb29tIjoibm9kZXJvb20iLCJjYW5QdWJsaXNoU291cmNlcyI6WyJjYW1lcmEiLCJtaWNyb3Bob25lIl0sImNhblB1Ymxpc2hEYXRhIjpmYWxzZX0sImlzcyI6Im5vZGVrZXkiLCJleHAiOjUzOTUzMzY5MjMsIm5iZiI6MTc5NTMzNjkyMywic3ViIjoibm9kZXVzZXIifQ.oC577SBk5eIqldhUkdbbuT90repNiZG3z4DHTO81_sM";

    const NOW: u64 = 1_795_400_000;

    fn verifier() -> Verifier {
        let mut v = Verifier::new();
        v.insert(ApiKey::new(PY_KEY), ApiSecret::new(PY_SECRET)).unwrap();
        v.insert(ApiKey::new(NODE_KEY), ApiSecret::new(NODE_SECRET))
            .unwrap();
        v
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A token with arbitrary header and payload JSON, HS256-signed with `secret`.
    fn forge(header: &str, payload: &str, secret: &str) -> String {
        let signing_input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
        let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(signing_input.as_bytes());
        format!("{signing_input}.{}", b64(&mac.finalize().into_bytes()))
    }

    const HS256: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

    #[test]
    fn python_tokens_verify() {
        let v = verifier();
        let c = v.verify(PY_ALICE, NOW).unwrap();
        assert_eq!(c.iss, PY_KEY);
        assert_eq!(c.sub, "alice");
        assert_eq!(c.name, "Alice");
        assert_eq!(c.metadata, r#"{"role":"host"}"#);
        assert_eq!(c.attributes.get("team").map(String::as_str), Some("blue"));
        assert_eq!((c.nbf, c.exp), (PY_NBF, PY_EXP));
        let g = c.join_grant(Some("conclave-room")).unwrap();
        assert_eq!(g.identity, "alice");
        assert!(g.can_publish && g.can_subscribe && g.can_publish_data);
        assert!(g.can_update_own_metadata);
        assert_eq!(
            g.publish_sources,
            vec![TrackSource::Camera, TrackSource::Microphone]
        );
        assert_eq!(c.join_grant(Some("other-room")), Err(TokenError::RoomMismatch));

        let admin = v.verify(PY_ADMIN, NOW).unwrap();
        assert!(admin.sub.is_empty());
        assert_eq!(admin.join_grant(None), Err(TokenError::JoinNotAllowed));
        assert!(admin.require_room_admin("conclave-room").is_ok());
        assert_eq!(
            admin.require_room_admin("other-room"),
            Err(TokenError::PermissionDenied)
        );
        assert_eq!(admin.require_room_create(), Err(TokenError::PermissionDenied));

        let agent = v.verify(PY_AGENT, NOW).unwrap();
        assert_eq!(agent.kind.as_deref(), Some("agent"));
        let g = agent.join_grant(None).unwrap();
        assert!(g.hidden && g.agent && !g.can_publish && g.can_publish_data);
        assert!(g.publish_sources.is_empty());
    }

    #[test]
    fn node_token_verifies() {
        let c = verifier().verify(NODE_USER, NOW).unwrap();
        assert_eq!(c.iss, NODE_KEY);
        let g = c.join_grant(Some("noderoom")).unwrap();
        assert_eq!(g.identity, "nodeuser");
        assert_eq!(g.name, "Node User");
        assert!(g.can_publish && !g.can_publish_data);
        assert!(g.can_publish_source(TrackSource::Camera));
        assert!(!g.can_publish_source(TrackSource::ScreenShare));
    }

    /// This exact token, signed here, was checked once with the Python
    /// `livekit-api` `TokenVerifier` and the Node `livekit-server-sdk`
    /// `TokenVerifier`: both accept it and read the same grants.
    const RUST_SIGNED: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJweWtleSIsInN1YiI6InJ1c3R5IiwibmFtZSI6IlJ1c3R5IiwibWV0YWRhdGEiOiJ7XCJmcm9tXCI6XCJydXN0XCJ9IiwiYXR0cmlidXRlcyI6eyJsYW5nIjoicnVzdCJ9LCJuYmYiOjE3OTUzMzY5MzEsImV4cCI6NDk0ODkzNjkzMSwidmlkZW8iOnsicm9vbUpvaW4iOnRydWUsInJvb20iOiJjb25jbGF2ZS1yb29tIiwiY2FuUHVibGlzaERhdGEiOmZhbHNlLCJjYW5QdWJsaXNoU291cmNlcyI6WyJjYW1lcmEiLCJzY3JlZW5fc2hhcmUiXX19.YFqbXD0wz-Z8jFeyODC83YWusCfkVdALTVzKpNrmxlc";

    #[test]
    fn signing_is_deterministic_and_sdk_compatible() {
        let mut c = Claims::for_join("rusty", "conclave-room", PY_NBF, PY_EXP - PY_NBF);
        c.name = "Rusty".into();
        c.metadata = r#"{"from":"rust"}"#.into();
        c.attributes.insert("lang".into(), "rust".into());
        c.video.can_publish_sources = vec![TrackSource::Camera, TrackSource::ScreenShare];
        c.video.can_publish_data = Some(false);
        let token = sign(&c, &ApiKey::new(PY_KEY), &ApiSecret::new(PY_SECRET)).unwrap();
        assert_eq!(token, RUST_SIGNED);
        let back = verifier().verify(&token, NOW).unwrap();
        let g = back.join_grant(Some("conclave-room")).unwrap();
        assert!(g.can_publish && !g.can_publish_data);
        assert_eq!(
            g.publish_sources,
            vec![TrackSource::Camera, TrackSource::ScreenShare]
        );
    }

    #[test]
    fn short_python_token_respects_time_and_leeway() {
        let v = verifier();
        assert!(v.verify(PY_BOB_SHORT, PY_NBF).is_ok());
        assert!(v.verify(PY_BOB_SHORT, BOB_EXP).is_ok(), "within leeway");
        assert!(v.verify(PY_BOB_SHORT, BOB_EXP + 9).is_ok(), "within leeway");
        assert_eq!(v.verify(PY_BOB_SHORT, BOB_EXP + 10), Err(TokenError::Expired));
        assert_eq!(v.verify(PY_BOB_SHORT, NOW), Err(TokenError::Expired));
        assert!(v.verify(PY_BOB_SHORT, PY_NBF - 10).is_ok(), "within leeway");
        assert_eq!(v.verify(PY_BOB_SHORT, PY_NBF - 11), Err(TokenError::NotYetValid));
        let strict = verifier().with_leeway(0);
        assert_eq!(strict.leeway(), 0);
        assert_eq!(strict.verify(PY_BOB_SHORT, BOB_EXP), Err(TokenError::Expired));
        assert_eq!(
            strict.verify(PY_BOB_SHORT, PY_NBF - 1),
            Err(TokenError::NotYetValid)
        );
    }

    #[test]
    fn round_trip() {
        let key = ApiKey::new("k1");
        let secret = ApiSecret::new("a-secret-that-is-long-enough-0123456789");
        let mut claims = Claims::for_join("carol", "room-a", 1000, 600);
        claims.iss = "ignored".into();
        claims.name = "Carol".into();
        claims.video.can_publish_sources = vec![TrackSource::ScreenShare];
        claims.video.hidden = true;
        claims.jti = Some("id-1".into());
        claims.iat = Some(1000);
        let token = sign(&claims, &key, &secret).unwrap();
        let mut v = Verifier::new();
        v.insert(key.clone(), secret).unwrap();
        let back = v.verify(&token, 1200).unwrap();
        claims.iss = "k1".into();
        assert_eq!(back, claims);
        assert_eq!(v.verify(&token, 1610), Err(TokenError::Expired));

        // The output is a standard JWT with the usual header.
        let header = token.split('.').next().unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(header).unwrap(), HEADER_JSON);
        assert!(v.secret("k1").is_some());
        assert!(v.remove("k1"));
        assert_eq!(v.verify(&token, 1200), Err(TokenError::UnknownKey));
    }

    #[test]
    fn several_keys() {
        let v = verifier();
        assert_eq!(v.len(), 2);
        assert!(v.verify(PY_ALICE, NOW).is_ok());
        assert!(v.verify(NODE_USER, NOW).is_ok());
    }

    #[test]
    fn sign_refuses_bad_input() {
        let key = ApiKey::new("k");
        let secret = ApiSecret::new("s");
        let ok = Claims::for_join("a", "r", 0, 10);
        assert!(sign(&ok, &key, &secret).is_ok());
        assert_eq!(
            sign(&ok, &ApiKey::new(""), &secret),
            Err(TokenError::EmptyCredentials)
        );
        assert_eq!(
            sign(&ok, &key, &ApiSecret::new("")),
            Err(TokenError::EmptyCredentials)
        );
        let mut no_exp = ok.clone();
        no_exp.exp = 0;
        assert_eq!(sign(&no_exp, &key, &secret), Err(TokenError::MissingExpiry));
        let anon = Claims::for_join("", "r", 0, 10);
        assert_eq!(sign(&anon, &key, &secret), Err(TokenError::MissingIdentity));
        let mut huge = ok;
        huge.metadata = "x".repeat(MAX_TOKEN_LEN);
        assert_eq!(sign(&huge, &key, &secret), Err(TokenError::TooLarge));

        let mut v = Verifier::default();
        assert!(v.is_empty());
        assert_eq!(
            v.insert(ApiKey::new("k"), ApiSecret::new("")),
            Err(TokenError::EmptyCredentials)
        );
        assert_eq!(
            v.insert(ApiKey::new(""), ApiSecret::new("s")),
            Err(TokenError::EmptyCredentials)
        );
    }

    fn payload(extra: &str) -> String {
        format!(
            r#"{{"iss":"{PY_KEY}","sub":"x","exp":{PY_EXP},"nbf":0,"video":{{"roomJoin":true,"room":"r"}}{extra}}}"#
        )
    }

    #[test]
    fn forged_baseline_verifies() {
        // Sanity check for the helpers the refusal tests below rely on.
        let v = verifier();
        assert!(v.verify(&forge(HS256, &payload(""), PY_SECRET), NOW).is_ok());
        assert!(
            v.verify(&forge(r#"{"alg":"HS256"}"#, &payload(""), PY_SECRET), NOW)
                .is_ok()
        );
        assert!(
            v.verify(
                &forge(
                    r#"{"typ":"jwt","alg":"HS256","kid":"x"}"#,
                    &payload(""),
                    PY_SECRET
                ),
                NOW
            )
            .is_ok()
        );
    }

    #[test]
    fn refuses_alg_none() {
        let v = verifier();
        let unsigned = format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(payload("").as_bytes())
        );
        assert_eq!(v.verify(&unsigned, NOW), Err(TokenError::UnsupportedAlgorithm));
        for alg in ["none", "None", "NONE", "hs256", "HS256 ", ""] {
            let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
            assert_eq!(
                v.verify(&forge(&header, &payload(""), PY_SECRET), NOW),
                Err(TokenError::UnsupportedAlgorithm),
                "{alg}"
            );
        }
    }

    #[test]
    fn refuses_other_algorithms() {
        let v = verifier();
        for alg in ["HS384", "HS512", "RS256", "ES256", "PS256", "EdDSA"] {
            let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
            assert_eq!(
                v.verify(&forge(&header, &payload(""), PY_SECRET), NOW),
                Err(TokenError::UnsupportedAlgorithm),
                "{alg}"
            );
        }
        // A genuine HS512 signature is still refused.
        let input = format!(
            "{}.{}",
            b64(br#"{"alg":"HS512","typ":"JWT"}"#),
            b64(payload("").as_bytes())
        );
        let mut mac = Hmac::<sha2::Sha512>::new_from_slice(PY_SECRET.as_bytes()).unwrap();
        mac.update(input.as_bytes());
        let token = format!("{input}.{}", b64(&mac.finalize().into_bytes()));
        assert_eq!(v.verify(&token, NOW), Err(TokenError::UnsupportedAlgorithm));
    }

    #[test]
    fn refuses_odd_headers() {
        let v = verifier();
        for header in [
            r#"{"alg":"HS256","typ":"JWS"}"#,
            r#"{"alg":"HS256","crit":["b64"],"b64":false}"#,
            r#"{"alg":"HS256","b64":false}"#,
            r#"{"alg":"HS256","alg":"HS256"}"#,
            r#"{"alg":["HS256"]}"#,
            r#"{"typ":"JWT"}"#,
            r#"[]"#,
            r#"["HS256"]"#,
            r#"null"#,
            "",
        ] {
            assert_eq!(
                v.verify(&forge(header, &payload(""), PY_SECRET), NOW),
                Err(TokenError::Malformed),
                "{header}"
            );
        }
    }

    #[test]
    fn refuses_wrong_secret_and_unknown_key() {
        let v = verifier();
        assert_eq!(
            v.verify(&forge(HS256, &payload(""), "not-the-secret"), NOW),
            Err(TokenError::BadSignature)
        );
        let other = sign(
            &Claims::for_join("x", "r", NOW, 60),
            &ApiKey::new("stranger"),
            &ApiSecret::new(PY_SECRET),
        )
        .unwrap();
        assert_eq!(v.verify(&other, NOW), Err(TokenError::UnknownKey));
        let no_iss = r#"{"sub":"x","exp":4948936931,"video":{"roomJoin":true,"room":"r"}}"#;
        assert_eq!(
            v.verify(&forge(HS256, no_iss, PY_SECRET), NOW),
            Err(TokenError::UnknownKey)
        );
        let empty_iss = r#"{"iss":"","sub":"x","exp":4948936931}"#;
        assert_eq!(
            v.verify(&forge(HS256, empty_iss, PY_SECRET), NOW),
            Err(TokenError::UnknownKey)
        );
        // Keys are compared exactly.
        let upper = payload("").replace(PY_KEY, "PYKEY");
        assert_eq!(
            v.verify(&forge(HS256, &upper, PY_SECRET), NOW),
            Err(TokenError::UnknownKey)
        );
    }

    #[test]
    fn refuses_tampering() {
        let v = verifier();
        let parts: Vec<&str> = PY_ALICE.split('.').collect();
        // Payload changed to another room, signature kept.
        let json = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        let evil = json.replace("conclave-room", "other-room");
        let tampered = format!("{}.{}.{}", parts[0], b64(evil.as_bytes()), parts[2]);
        assert_eq!(v.verify(&tampered, NOW), Err(TokenError::BadSignature));
        // Header re-encoded without typ, signature kept.
        let tampered = format!("{}.{}.{}", b64(br#"{"alg":"HS256"}"#), parts[1], parts[2]);
        assert_eq!(v.verify(&tampered, NOW), Err(TokenError::BadSignature));
        // One signature character changed.
        let mut sig = parts[2].to_owned();
        sig.replace_range(0..1, if sig.starts_with('A') { "B" } else { "A" });
        let tampered = format!("{}.{}.{sig}", parts[0], parts[1]);
        assert_eq!(v.verify(&tampered, NOW), Err(TokenError::BadSignature));
        // Signature truncated, extended, or removed.
        let short = &PY_ALICE[..PY_ALICE.len() - 3];
        assert_eq!(v.verify(short, NOW), Err(TokenError::BadSignature));
        let long = format!("{PY_ALICE}AAAA");
        assert_eq!(v.verify(&long, NOW), Err(TokenError::BadSignature));
        let stripped = format!("{}.{}.", parts[0], parts[1]);
        assert_eq!(v.verify(&stripped, NOW), Err(TokenError::BadSignature));
        // Padding, which the unpadded encoding does not allow.
        let padded = format!("{PY_ALICE}=");
        assert_eq!(v.verify(&padded, NOW), Err(TokenError::Malformed));
    }

    #[test]
    fn refuses_expired_and_not_yet_valid() {
        let v = verifier();
        let expired = payload("").replace(&PY_EXP.to_string(), &(NOW - 11).to_string());
        assert_eq!(
            v.verify(&forge(HS256, &expired, PY_SECRET), NOW),
            Err(TokenError::Expired)
        );
        let future = payload(&format!(r#","nbf":{}"#, NOW + 11)).replace(r#""nbf":0,"#, "");
        assert_eq!(
            v.verify(&forge(HS256, &future, PY_SECRET), NOW),
            Err(TokenError::NotYetValid)
        );
        let no_exp = r#"{"iss":"pykey","sub":"x","video":{"roomJoin":true,"room":"r"}}"#;
        assert_eq!(
            v.verify(&forge(HS256, no_exp, PY_SECRET), NOW),
            Err(TokenError::MissingExpiry)
        );
        let null_exp = r#"{"iss":"pykey","sub":"x","exp":null}"#;
        assert_eq!(
            v.verify(&forge(HS256, null_exp, PY_SECRET), NOW),
            Err(TokenError::MissingExpiry)
        );
        let string_exp = r#"{"iss":"pykey","sub":"x","exp":"4948936931"}"#;
        assert_eq!(
            v.verify(&forge(HS256, string_exp, PY_SECRET), NOW),
            Err(TokenError::Malformed)
        );
        // Fractional dates are accepted (NumericDate allows them).
        let frac = payload("").replace(&PY_EXP.to_string(), "4948936931.5");
        assert!(v.verify(&forge(HS256, &frac, PY_SECRET), NOW).is_ok());
    }

    #[test]
    fn refuses_join_without_identity() {
        let v = verifier();
        for sub in [r#""sub":"","#, ""] {
            let p =
                format!(r#"{{"iss":"pykey",{sub}"exp":4948936931,"video":{{"roomJoin":true,"room":"r"}}}}"#);
            assert_eq!(
                v.verify(&forge(HS256, &p, PY_SECRET), NOW),
                Err(TokenError::MissingIdentity)
            );
        }
        // Without roomJoin an identity is not needed, but joining is refused.
        let p = r#"{"iss":"pykey","exp":4948936931,"video":{"room":"r","roomAdmin":true}}"#;
        let c = v.verify(&forge(HS256, p, PY_SECRET), NOW).unwrap();
        assert_eq!(c.join_grant(Some("r")), Err(TokenError::JoinNotAllowed));
        let c = v.verify(&forge(HS256, &payload(""), PY_SECRET), NOW).unwrap();
        assert_eq!(
            c.video,
            VideoGrant {
                room_join: true,
                room: "r".into(),
                ..VideoGrant::default()
            }
        );
    }

    #[test]
    fn refuses_garbage() {
        let v = verifier();
        for junk in [
            "",
            ".",
            "..",
            "...",
            "abc",
            "a.b",
            "a.b.c",
            "a.b.c.d",
            "Bearer x.y.z",
            "eyJhbGciOiJIUzI1NiJ9",
            "eyJhbGciOiJIUzI1NiJ9.e30",
            "eyJhbGciOiJIUzI1NiJ9.e30.",
            "eyJhbGciOiJIUzI1NiJ9.!!.AAAA",
            "\u{0}\u{1}.\u{2}.\u{3}",
            "ü.ö.ä",
        ] {
            let got = v.verify(junk, NOW);
            assert!(
                matches!(got, Err(TokenError::Malformed | TokenError::UnknownKey)),
                "{junk:?}: {got:?}"
            );
        }
        assert_eq!(
            v.verify(&forge(HS256, "not json", PY_SECRET), NOW),
            Err(TokenError::Malformed)
        );
        for not_object in ["[1,2]", "[]", r#"["pykey","x"]"#, "null", "1", r#""x""#] {
            assert_eq!(
                v.verify(&forge(HS256, not_object, PY_SECRET), NOW),
                Err(TokenError::Malformed),
                "{not_object}"
            );
        }
    }

    #[test]
    fn refuses_oversized() {
        let v = verifier();
        let big = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(v.verify(&big, NOW), Err(TokenError::TooLarge));
        let at_limit = "a".repeat(MAX_TOKEN_LEN);
        assert_eq!(v.verify(&at_limit, NOW), Err(TokenError::Malformed));
        let fat = payload(&format!(r#","metadata":"{}""#, "m".repeat(MAX_TOKEN_LEN)));
        assert_eq!(
            v.verify(&forge(HS256, &fat, PY_SECRET), NOW),
            Err(TokenError::TooLarge)
        );
    }

    /// A small deterministic generator (xorshift64*), so the test needs no
    /// extra dependency and always feeds the same inputs.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % u64::try_from(n).unwrap()).unwrap()
        }
    }

    #[test]
    fn never_panics_on_random_input() {
        let v = verifier();
        let mut rng = Rng(0x00C0_FFEE_1234_5678);
        let seeds = [PY_ALICE, PY_ADMIN, PY_AGENT, NODE_USER];
        for round in 0..20_000 {
            let original = seeds[round % seeds.len()];
            let mut bytes = original.as_bytes().to_vec();
            match round % 5 {
                // Flip one to four bits anywhere.
                0 | 1 => {
                    for _ in 0..=rng.below(4) {
                        let i = rng.below(bytes.len());
                        bytes[i] ^= 1 << rng.below(8);
                    }
                }
                // Truncate, or cut a piece out.
                2 => {
                    let a = rng.below(bytes.len());
                    let b = a + rng.below(bytes.len() - a + 1);
                    if rng.below(2) == 0 {
                        bytes.truncate(a);
                    } else {
                        bytes.drain(a..b);
                    }
                }
                // Entirely random bytes, with many dots.
                3 => {
                    let len = rng.below(300);
                    bytes = (0..len)
                        .map(|_| {
                            if rng.below(8) == 0 {
                                b'.'
                            } else {
                                u8::try_from(rng.next() & 0xff).unwrap()
                            }
                        })
                        .collect();
                }
                // Correctly signed but mangled JSON payloads (exercises the
                // parser past the signature check).
                _ => {
                    let mut json = payload(r#","attributes":{"a":"b"},"iat":1.5"#).into_bytes();
                    for _ in 0..=rng.below(3) {
                        let i = rng.below(json.len());
                        json[i] = b"{}[]\",:0-.e\\ntu"[rng.below(15)];
                    }
                    let json = String::from_utf8_lossy(&json).into_owned();
                    let token = forge(HS256, &json, PY_SECRET);
                    let _ = v.verify(&token, NOW);
                    continue;
                }
            }
            let mutated = String::from_utf8_lossy(&bytes).into_owned();
            let result = v.verify(&mutated, NOW);
            if mutated != original {
                assert!(result.is_err(), "mutated token verified: {mutated}");
            }
        }
    }
}
