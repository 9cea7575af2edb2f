//! The accounts API at the HTTP boundary: cookies, CSRF, session fixation,
//! enumeration, throttling, second factors and deletion, through the real
//! router with an SQLite store and mail in a folder.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use conclave_accounts::mail::Mailer;
use conclave_accounts::{Accounts, Settings, Store, Url};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::SESSION_COOKIE;

const HOST: &str = "localhost:7880";
const ORIGIN: &str = "http://localhost:7880";
const PW: &str = "correct horse battery staple";

struct Api {
    router: axum::Router,
    accounts: Arc<Accounts>,
    mail: PathBuf,
    dir: PathBuf,
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a browser holds: the session cookie and the CSRF token.
#[derive(Default, Clone)]
struct Browser {
    cookie: Option<String>,
    csrf: Option<String>,
}

struct Answer {
    status: StatusCode,
    body: Value,
    set_cookie: Vec<String>,
    headers: axum::http::HeaderMap,
}

async fn api() -> Api {
    let dir = std::env::temp_dir().join(format!("conclave-http-{}", conclave_types::random_base62(10)));
    let store = Store::open_sqlite(&dir.join("db.sqlite")).await.expect("store");
    let mail = dir.join("mail");
    let settings = Settings::new(Url::parse("http://localhost:7880/").expect("url"), [9u8; 32]);
    let accounts = Arc::new(
        Accounts::new(
            store,
            settings,
            Mailer::folder(mail.clone(), "noreply@conclave.invalid").expect("mailer"),
        )
        .expect("accounts"),
    );
    Api {
        router: axum::Router::new().nest_service(
            "/api/account",
            super::router(accounts.clone(), vec!["127.0.0.1".parse().expect("ip")]),
        ),
        accounts,
        mail,
        dir,
    }
}

impl Api {
    async fn call(&self, b: &mut Browser, method: &str, path: &str, body: Option<Value>) -> Answer {
        self.call_with(b, method, path, body, |r| r).await
    }

    async fn call_with(
        &self,
        b: &mut Browser,
        method: &str,
        path: &str,
        body: Option<Value>,
        change: impl FnOnce(axum::http::request::Builder) -> axum::http::request::Builder,
    ) -> Answer {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("/api/account{path}"))
            .header(header::HOST, HOST)
            .header(header::ORIGIN, ORIGIN)
            .header(header::USER_AGENT, "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0");
        if let Some(c) = &b.cookie {
            req = req.header(header::COOKIE, format!("{SESSION_COOKIE}={c}"));
        }
        if let Some(t) = &b.csrf {
            req = req.header("x-csrf-token", t);
        }
        req = change(req);
        let req = match body {
            Some(v) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(v.to_string())),
            None => req.body(Body::empty()),
        }
        .expect("request");
        let resp = self.router.clone().oneshot(req).await.expect("response");
        let status = resp.status();
        let headers = resp.headers().clone();
        let set_cookie: Vec<String> = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        for c in &set_cookie {
            if let Some(rest) = c.strip_prefix(&format!("{SESSION_COOKIE}=")) {
                let value = rest.split(';').next().unwrap_or("");
                b.cookie = (!value.is_empty()).then(|| value.to_owned());
            }
        }
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if let Some(t) = body.get("csrf").and_then(Value::as_str) {
            b.csrf = Some(t.to_owned());
        }
        Answer {
            status,
            body,
            set_cookie,
            headers,
        }
    }

    fn last_token(&self) -> String {
        let mut files: Vec<_> = std::fs::read_dir(&self.mail)
            .expect("mail dir")
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        let text = std::fs::read_to_string(files.last().expect("a mail"))
            .expect("read")
            .replace("=\r\n", "")
            .replace("=3D", "=");
        let at = text.find("#token=").expect("link") + 7;
        text[at..at + 43].to_owned()
    }

    async fn signed_in(&self, email: &str) -> Browser {
        let mut b = Browser::default();
        let r = self
            .call(
                &mut b,
                "POST",
                "/register",
                Some(json!({ "email": email, "name": "Ada Lovelace", "password": PW })),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let token = self.last_token();
        let r = self
            .call(&mut b, "POST", "/confirm", Some(json!({ "token": token })))
            .await;
        assert_eq!(r.status, StatusCode::OK);
        let r = self
            .call(
                &mut b,
                "POST",
                "/sign-in",
                Some(json!({ "email": email, "password": PW })),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        b
    }
}

#[tokio::test]
async fn sign_in_sets_a_host_prefixed_strict_cookie() {
    let a = api().await;
    let mut b = Browser::default();
    let r = a.call(&mut b, "GET", "/config", None).await;
    assert_eq!(r.body["self_registration"], true);
    assert_eq!(r.body["passkeys"], true);
    a.call(
        &mut b,
        "POST",
        "/register",
        Some(json!({ "email": "ada@example.org", "name": "Ada", "password": PW })),
    )
    .await;
    let token = a.last_token();
    a.call(&mut b, "POST", "/confirm", Some(json!({ "token": token })))
        .await;
    let r = a
        .call(
            &mut b,
            "POST",
            "/sign-in",
            Some(json!({ "email": "ada@example.org", "password": PW })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let cookie = r
        .set_cookie
        .iter()
        .find(|c| c.starts_with(SESSION_COOKIE))
        .expect("cookie");
    for attr in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains("Domain="), "{cookie}");
    assert_eq!(
        r.headers.get(header::CACHE_CONTROL).map(|v| v.as_bytes()),
        Some(&b"no-store"[..])
    );
    let me = a.call(&mut b, "GET", "/me", None).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["account"]["email"], "ada@example.org");
    assert_eq!(me.body["level"], "full");
    // Sign-out ends the session on the server.
    let r = a.call(&mut b, "POST", "/sign-out", None).await;
    assert_eq!(r.status, StatusCode::OK);
    b.cookie = Some(token_of(cookie));
    assert_eq!(
        a.call(&mut b, "GET", "/me", None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

fn token_of(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v.to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn state_changes_without_the_csrf_token_or_from_elsewhere_are_refused() {
    let a = api().await;
    let mut b = a.signed_in("ada@example.org").await;
    // No token.
    let mut no_token = Browser {
        cookie: b.cookie.clone(),
        csrf: None,
    };
    let r = a.call(&mut no_token, "POST", "/totp/start", None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = a.call(&mut no_token, "POST", "/sign-out", None).await;
    assert_eq!(
        a.call(&mut b, "GET", "/me", None).await.status,
        StatusCode::OK,
        "{:?}",
        r.body
    );
    // A wrong token.
    let mut wrong = Browser {
        cookie: b.cookie.clone(),
        csrf: Some("x".repeat(43)),
    };
    assert_eq!(
        a.call(&mut wrong, "POST", "/delete", Some(json!({ "password": PW })))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // Another site's page, even with the right token and cookie.
    let r = a
        .call_with(
            &mut b.clone(),
            "POST",
            "/delete",
            Some(json!({ "password": PW })),
            |r| r.header(header::ORIGIN, "https://evil.example"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = a
        .call_with(
            &mut b.clone(),
            "POST",
            "/delete",
            Some(json!({ "password": PW })),
            |r| r.header("sec-fetch-site", "cross-site"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Login CSRF: a sign-in posted from another site.
    let r = a
        .call_with(
            &mut Browser::default(),
            "POST",
            "/sign-in",
            Some(json!({ "email": "ada@example.org", "password": PW })),
            |r| r.header(header::ORIGIN, "http://evil.example"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A form post (not JSON) is refused too.
    let r = a
        .call_with(&mut b.clone(), "POST", "/sessions/revoke", None, |r| {
            r.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        })
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // The account is still there.
    assert_eq!(a.call(&mut b, "GET", "/me", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_planted_session_id_is_replaced_at_sign_in() {
    let a = api().await;
    let victim = a.signed_in("ada@example.org").await;
    let _ = victim;
    // An attacker's own session id planted in the victim's browser.
    let attacker = a
        .call(
            &mut Browser::default(),
            "POST",
            "/sign-in",
            Some(json!({ "email": "ada@example.org", "password": PW })),
        )
        .await;
    let planted = token_of(
        attacker
            .set_cookie
            .iter()
            .find(|c| c.starts_with(SESSION_COOKIE))
            .expect("cookie"),
    );
    let mut b = Browser {
        cookie: Some(planted.clone()),
        csrf: None,
    };
    let r = a
        .call(
            &mut b,
            "POST",
            "/sign-in",
            Some(json!({ "email": "ada@example.org", "password": PW })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_ne!(b.cookie.as_deref(), Some(planted.as_str()));
    let mut old = Browser {
        cookie: Some(planted),
        csrf: None,
    };
    assert_eq!(
        a.call(&mut old, "GET", "/me", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(a.call(&mut b, "GET", "/me", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn failed_sign_ins_look_alike_and_are_throttled() {
    let a = api().await;
    a.signed_in("ada@example.org").await;
    let unknown = a
        .call(
            &mut Browser::default(),
            "POST",
            "/sign-in",
            Some(json!({ "email": "nobody@example.org", "password": PW })),
        )
        .await;
    let wrong = a
        .call(
            &mut Browser::default(),
            "POST",
            "/sign-in",
            Some(json!({ "email": "ada@example.org", "password": "wrong wrong wrong" })),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!((unknown.status, &unknown.body), (wrong.status, &wrong.body));
    assert!(unknown.set_cookie.is_empty());
    let mut last = None;
    for _ in 0..5 {
        last = Some(
            a.call(
                &mut Browser::default(),
                "POST",
                "/sign-in",
                Some(json!({ "email": "ada@example.org", "password": "wrong wrong wrong" })),
            )
            .await,
        );
    }
    let last = last.expect("answer");
    assert_eq!(last.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(last.headers.get(header::RETRY_AFTER).is_some());
    assert!(last.body["error"].as_str().expect("text").contains("minute"));
}

#[tokio::test]
async fn totp_at_the_boundary_with_replay_refused() {
    let a = api().await;
    let mut b = a.signed_in("ada@example.org").await;
    let setup = a.call(&mut b, "POST", "/totp/start", None).await;
    assert_eq!(setup.status, StatusCode::OK, "{:?}", setup.body);
    let secret = setup.body["secret"].as_str().expect("secret").to_owned();
    let now = crate::unix_now() as i64;
    let code = conclave_accounts::totp::code_at(&secret, now).expect("code");
    let r = a
        .call(&mut b, "POST", "/totp/confirm", Some(json!({ "code": code })))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["recovery_codes"].as_array().map(Vec::len), Some(10));

    let mut c = Browser::default();
    let r = a
        .call(
            &mut c,
            "POST",
            "/sign-in",
            Some(json!({ "email": "ada@example.org", "password": PW })),
        )
        .await;
    assert_eq!(r.body["level"], "second_factor");
    // Nothing but the second step is open to this session.
    assert_eq!(
        a.call(&mut c, "GET", "/sessions", None).await.status,
        StatusCode::FORBIDDEN
    );
    // The code used at enrolment is refused (replay).
    let r = a
        .call(&mut c, "POST", "/sign-in/totp", Some(json!({ "code": code })))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let half = c.cookie.clone();
    let next = conclave_accounts::totp::code_at(&secret, now + 30).expect("code");
    let r = a
        .call(&mut c, "POST", "/sign-in/totp", Some(json!({ "code": next })))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["level"], "full");
    assert_ne!(c.cookie, half, "a new session id after the second factor");
    assert_eq!(
        a.call(&mut c, "GET", "/sessions", None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn deleting_the_account_leaves_no_personal_row() {
    let a = api().await;
    let mut b = a.signed_in("grace.hopper@example.org").await;
    let id = a.call(&mut b, "GET", "/me", None).await.body["account"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let r = a
        .call(
            &mut b,
            "POST",
            "/delete",
            Some(json!({ "password": "wrong wrong wrong" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = a
        .call(&mut b, "POST", "/delete", Some(json!({ "password": PW })))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        a.call(&mut b, "GET", "/me", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let store = a.accounts.store();
    for needle in [id.as_str(), "grace.hopper", "Ada Lovelace"] {
        assert_eq!(
            store.find_text(needle).await.expect("search"),
            Vec::<String>::new(),
            "{needle}"
        );
    }
}

#[tokio::test]
async fn password_reset_answers_alike_and_ends_sessions() {
    let a = api().await;
    let mut b = a.signed_in("ada@example.org").await;
    let unknown = a
        .call(
            &mut Browser::default(),
            "POST",
            "/password-reset/request",
            Some(json!({ "email": "nobody@example.org" })),
        )
        .await;
    let known = a
        .call(
            &mut Browser::default(),
            "POST",
            "/password-reset/request",
            Some(json!({ "email": "ada@example.org" })),
        )
        .await;
    assert_eq!((unknown.status, &unknown.body), (known.status, &known.body));
    let mut token = None;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let t = a.last_token();
        if std::fs::read_dir(&a.mail).map(|d| d.count()).unwrap_or(0) >= 2 {
            token = Some(t);
            break;
        }
    }
    let token = token.expect("a reset mail");
    let r = a
        .call(
            &mut Browser::default(),
            "POST",
            "/password-reset",
            Some(json!({ "token": token, "password": "amber lantern drifts over granite hills" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        a.call(&mut b, "GET", "/me", None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn bad_input_gets_short_errors() {
    let a = api().await;
    let mut b = Browser::default();
    for (path, body) in [
        ("/register", json!({ "email": 5 })),
        ("/confirm", json!({ "token": "x" })),
        ("/confirm", json!({ "token": "../../etc/passwd".repeat(10) })),
        (
            "/invite/accept",
            json!({ "token": "", "name": "", "password": "" }),
        ),
        ("/sign-in", json!({ "email": "", "password": "" })),
    ] {
        let r = a.call(&mut b, "POST", path, Some(body)).await;
        assert!(r.status.is_client_error(), "{path}: {}", r.status);
        let text = r.body["error"].as_str().expect("error text");
        assert!(
            text.len() < 200 && !text.contains("sqlx") && !text.contains("/tmp"),
            "{text}"
        );
    }
    // Unknown session values and junk cookies are simply not signed in.
    let mut junk = Browser {
        cookie: Some("%%%".into()),
        csrf: None,
    };
    assert_eq!(
        a.call(&mut junk, "GET", "/me", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    // An unknown OpenID provider sends the browser back with a message.
    let r = a.call(&mut b, "GET", "/oidc/nope/start", None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = a
        .call(&mut b, "GET", "/oidc/nope/callback?state=x&code=y", None)
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(
        r.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|l| l.starts_with("/account/sign-in#error="))
    );
}

#[test]
fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
    use std::net::IpAddr;
    let proxy: IpAddr = "10.0.0.1".parse().expect("ip");
    let client: IpAddr = "192.0.2.7".parse().expect("ip");
    let mut h = axum::http::HeaderMap::new();
    h.insert(
        "x-forwarded-for",
        "198.51.100.9, 192.0.2.7".parse().expect("value"),
    );
    // From the proxy: the last address it added.
    assert_eq!(super::routes::client_address(proxy, &h, &[proxy]), client);
    // From anyone else: the header is ignored.
    assert_eq!(super::routes::client_address(client, &h, &[proxy]), client);
    // A chain of trusted proxies is skipped.
    h.insert("x-forwarded-for", "192.0.2.7, 10.0.0.2".parse().expect("value"));
    let inner: IpAddr = "10.0.0.2".parse().expect("ip");
    assert_eq!(super::routes::client_address(proxy, &h, &[proxy, inner]), client);
    // Junk falls back to the peer.
    h.insert("x-forwarded-for", "junk".parse().expect("value"));
    assert_eq!(super::routes::client_address(proxy, &h, &[proxy]), proxy);
}
