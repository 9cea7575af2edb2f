//! The meeting rules at the server's boundaries: the HTTP API and the
//! signalling socket of a real `conclave serve`, each test trying to break
//! one rule. Accounts and their sessions are written to the database
//! before the server starts (signing in is tested with the accounts).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use conclave_client::driver::{self, App};
use conclave_client::server_process::ServerProcess;
use conclave_client::{Client, ClientEvent, TrackSpec};
use conclave_store::{Role, SessionLevel, SessionRecord, Store, User, UserId, UserStatus};
use conclave_types::TrackSource;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

struct Person {
    id: UserId,
    cookie: String,
    csrf: String,
}

struct World {
    server: ServerProcess,
    http: reqwest::Client,
    owner: Person,
    invitee: Person,
    outsider: Person,
    _dir: PathBuf,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn token43(seed: &str) -> String {
    let h = Sha256::digest(format!("{seed}-{}", now()).as_bytes());
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..43)
        .map(|i| char::from(alphabet[usize::from(h[i % 32] ^ (i as u8)) % 64]))
        .collect()
}

async fn person(store: &Store, email: &str, name: &str) -> Person {
    let id = UserId::random();
    store
        .insert_user(&User {
            id: id.clone(),
            email: Some(email.into()),
            display_name: name.into(),
            password_hash: None,
            role: Role::User,
            status: UserStatus::Active,
            attributes: "{}".into(),
            created_at: now(),
            confirmed_at: Some(now()),
        })
        .await
        .expect("user");
    let cookie = token43(email);
    let csrf = format!("csrf-{}", id.as_str());
    store
        .insert_session(&SessionRecord {
            id_hash: Sha256::digest(cookie.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            user_id: id.clone(),
            csrf_token: csrf.clone(),
            level: SessionLevel::Full,
            created_at: now(),
            last_seen_at: now(),
            expires_at: now() + 3600,
            authenticated_at: now(),
            user_agent: "test".into(),
        })
        .await
        .expect("session");
    Person { id, cookie, csrf }
}

async fn world() -> World {
    // Tests run in parallel threads: the clock alone can give two of them
    // the same directory (and so one database migrated twice at once).
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "conclave-meetings-test-{}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir).expect("data dir");
    let store = Store::open_sqlite(&dir.join("conclave.db")).await.expect("store");
    let owner = person(&store, "olga@example.org", "Olga Owner").await;
    let invitee = person(&store, "ingo@example.org", "Ingo Invitee").await;
    let outsider = person(&store, "otto@elsewhere.org", "Otto Outsider").await;
    store.close().await;
    let data_dir = dir.display().to_string();
    let server = ServerProcess::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_conclave")),
        &[
            ("CONCLAVE_SERVER_DATA_DIR", data_dir.as_str()),
            ("CONCLAVE_MEETINGS_ALLOW_GUESTS", "true"),
            ("CONCLAVE_LOG_LEVEL", "info"),
        ],
    )
    .expect("server");
    World {
        server,
        http: reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("http client"),
        owner,
        invitee,
        outsider,
        _dir: dir,
    }
}

enum Auth<'a> {
    None,
    Account(&'a Person),
    Bearer(&'a str),
}

impl World {
    async fn call(&self, method: &str, path: &str, auth: Auth<'_>, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.server.url);
        let mut req = match method {
            "GET" => self.http.get(&url),
            _ => self.http.post(&url).header("Origin", &self.server.url),
        };
        match auth {
            Auth::None => {}
            Auth::Account(p) => {
                req = req
                    .header("Cookie", format!("__Host-conclave_session={}", p.cookie))
                    .header("X-CSRF-Token", &p.csrf);
            }
            Auth::Bearer(t) => req = req.header("Authorization", format!("Bearer {t}")),
        }
        if let Some(b) = body {
            req = req.header("Content-Type", "application/json").body(b.to_string());
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn create(&self, spec: Value) -> String {
        let (s, v) = self
            .call("POST", "/api/meetings", Auth::Account(&self.owner), Some(spec))
            .await;
        assert_eq!(s, 200, "{v}");
        v["id"].as_str().expect("id").to_owned()
    }

    /// Enters as the owner, who is admitted at once.
    async fn owner_token(&self, id: &str) -> String {
        let (s, v) = self
            .call(
                "POST",
                &format!("/api/meetings/{id}/enter"),
                Auth::Account(&self.owner),
                Some(json!({})),
            )
            .await;
        assert_eq!((s, v["state"].as_str()), (200, Some("admitted")), "{v}");
        v["token"].as_str().expect("token").to_owned()
    }

    /// The invitee enters, waits, and the owner admits them.
    async fn admitted_invitee(&self, id: &str, owner_token: &str) -> String {
        let (s, v) = self
            .call(
                "POST",
                &format!("/api/meetings/{id}/enter"),
                Auth::Account(&self.invitee),
                Some(json!({})),
            )
            .await;
        assert_eq!((s, v["state"].as_str()), (202, Some("waiting")), "{v}");
        let ticket = v["ticket"].as_str().expect("ticket").to_owned();
        let (s, v) = self
            .call(
                "POST",
                &format!("/api/meetings/{id}/lobby/admit"),
                Auth::Bearer(owner_token),
                Some(json!({ "ticket": ticket })),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let (s, v) = self
            .call(
                "GET",
                &format!("/api/meetings/{id}/lobby/{ticket}"),
                Auth::None,
                None,
            )
            .await;
        assert_eq!((s, v["state"].as_str()), (200, Some("admitted")), "{v}");
        v["token"].as_str().expect("token").to_owned()
    }

    /// Whether the SFU would let this token in (`/rtc/validate` runs the
    /// same checks as `/rtc`).
    async fn door(&self, token: &str) -> u16 {
        self.call(
            "GET",
            &format!("/rtc/validate?access_token={token}"),
            Auth::None,
            None,
        )
        .await
        .0
    }
}

fn private(invitee: &str) -> Value {
    json!({ "title": "Security review", "invitees": [{ "kind": "email", "value": invitee, "role": "participant" }] })
}

#[tokio::test]
async fn a_private_meeting_keeps_out_whoever_is_not_invited_even_with_the_link() {
    let w = world().await;
    let id = w.create(private("ingo@example.org")).await;
    let missing = "mtg_0000000000000000000000";
    // Same answer for a meeting one may not see and one that does not exist.
    let (s1, forbidden) = w
        .call(
            "GET",
            &format!("/api/meetings/{id}/invitation"),
            Auth::Account(&w.outsider),
            None,
        )
        .await;
    let (s2, absent) = w
        .call(
            "GET",
            &format!("/api/meetings/{missing}/invitation"),
            Auth::Account(&w.outsider),
            None,
        )
        .await;
    assert_eq!((s1, &forbidden), (s2, &absent));
    assert_eq!(s1, 404);
    // Entering with the forwarded link: refused, as a signed-in outsider and
    // as a guest (the meeting does not allow guests).
    let (s, _) = w
        .call(
            "POST",
            &format!("/api/meetings/{id}/enter"),
            Auth::Account(&w.outsider),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = w
        .call(
            "POST",
            &format!("/api/meetings/{id}/enter"),
            Auth::None,
            Some(json!({ "name": "Mallory" })),
        )
        .await;
    assert_eq!(s, 404);
    // The invitee sees the invitation with the owner's verified name.
    let (s, v) = w
        .call(
            "GET",
            &format!("/api/meetings/{id}/invitation"),
            Auth::Account(&w.invitee),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["owner"]["name"], "Olga Owner");
    assert_eq!(v["owner"]["verified"], "example.org");
    assert_eq!(
        v["service"].as_str(),
        Some(w.server.url.replace("127.0.0.1", "localhost").as_str())
    );
    // A token signed with the server's own API key, but not handed out at
    // admission, does not open the meeting's room.
    let forged = w.server.token(&id, w.outsider.id.as_str()).expect("token");
    assert_eq!(w.door(&forged).await, 403);
    let forged = w.server.token(&id, w.invitee.id.as_str()).expect("token");
    assert_eq!(w.door(&forged).await, 403);
    // Every room named like a meeting is guarded, even one no meeting has.
    let odd = w.server.token("mtg_x", "someone").expect("token");
    assert_eq!(w.door(&odd).await, 403);
    // Nor can an open room be opened under a meeting's name.
    let (s, _) = w
        .call(
            "POST",
            "/api/join",
            Auth::None,
            Some(json!({ "room": id, "name": "Mallory" })),
        )
        .await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn guessing_meeting_ids_is_limited_per_source() {
    let w = world().await;
    let mut last = (0, Value::Null);
    for i in 0..=conclave_meetings_limit() {
        last = w
            .call(
                "GET",
                &format!("/api/meetings/mtg_{i:022}/invitation"),
                Auth::None,
                None,
            )
            .await;
    }
    assert_eq!(last.0, 429, "{}", last.1);
}

/// Failed lookups a source may make before it must wait (`limit.rs`).
fn conclave_meetings_limit() -> u32 {
    30
}

#[tokio::test]
async fn everyone_but_the_hosts_waits_in_the_lobby_until_admitted() {
    let w = world().await;
    let id = w.create(private("ingo@example.org")).await;
    let owner = w.owner_token(&id).await;
    assert_eq!(w.door(&owner).await, 200);
    let (s, v) = w
        .call(
            "POST",
            &format!("/api/meetings/{id}/enter"),
            Auth::Account(&w.invitee),
            Some(json!({})),
        )
        .await;
    assert_eq!((s, v["state"].as_str()), (202, Some("waiting")), "{v}");
    let ticket = v["ticket"].as_str().expect("ticket").to_owned();
    // The host sees who waits; the waiting person has no token yet.
    let (_, state) = w
        .call(
            "GET",
            &format!("/api/meetings/{id}/state"),
            Auth::Bearer(&owner),
            None,
        )
        .await;
    assert_eq!(state["lobby"][0]["name"], "Ingo Invitee");
    assert_eq!(state["lobby"][0]["verified"], "example.org");
    let (_, v) = w
        .call(
            "GET",
            &format!("/api/meetings/{id}/lobby/{ticket}"),
            Auth::None,
            None,
        )
        .await;
    assert_eq!(v["state"], "waiting");
    assert!(v.get("token").is_none());
    // Someone else's ticket guessing: nothing.
    let (s, _) = w
        .call(
            "GET",
            &format!("/api/meetings/{id}/lobby/AAAAAAAAAAAAAAAAAAAAAA"),
            Auth::None,
            None,
        )
        .await;
    assert_eq!(s, 404);
    // A participant cannot admit; the host can.
    let (s, v) = w
        .call(
            "POST",
            &format!("/api/meetings/{id}/lobby/admit"),
            Auth::Bearer(&owner),
            Some(json!({ "ticket": ticket })),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = w
        .call(
            "GET",
            &format!("/api/meetings/{id}/lobby/{ticket}"),
            Auth::None,
            None,
        )
        .await;
    assert_eq!(v["state"], "admitted");
    let token = v["token"].as_str().expect("token");
    assert_eq!(w.door(token).await, 200);
    let (s, _) = w
        .call(
            "POST",
            &format!("/api/meetings/{id}/lobby/admit"),
            Auth::Bearer(token),
            Some(json!({ "all": true })),
        )
        .await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn a_locked_meeting_lets_in_nobody_new_not_even_invitees() {
    let w = world().await;
    let id = w.create(private("ingo@example.org")).await;
    let owner = w.owner_token(&id).await;
    let (s, _) = w
        .call(
            "POST",
            &format!("/api/meetings/{id}/lock"),
            Auth::Bearer(&owner),
            Some(json!({ "locked": true })),
        )
        .await;
    assert_eq!(s, 200);
    let (s, v) = w
        .call(
            "POST",
            &format!("/api/meetings/{id}/enter"),
            Auth::Account(&w.invitee),
            Some(json!({})),
        )
        .await;
    assert_eq!((s, v["locked"].as_bool()), (403, Some(true)), "{v}");
    // Hosts still enter.
    w.owner_token(&id).await;
}

#[tokio::test]
async fn removed_and_banned_participants_cannot_come_back() {
    let w = world().await;
    let id = w.create(private("ingo@example.org")).await;
    let owner = w.owner_token(&id).await;
    let token = w.admitted_invitee(&id, &owner).await;
    // A participant cannot remove the host.
    let (s, _) = w
        .call(
            "POST",
            &format!("/api/meetings/{id}/moderate"),
            Auth::Bearer(&token),
            Some(json!({ "identity": w.owner.id.as_str(), "action": "remove" })),
        )
        .await;
    assert_eq!(s, 403);
    let (s, v) = w
        .call(
            "POST",
            &format!("/api/meetings/{id}/moderate"),
            Auth::Bearer(&owner),
            Some(json!({ "identity": w.invitee.id.as_str(), "action": "ban" })),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // The token of the banned participant no longer opens the room, and the
    // invitation no longer lets them in.
    assert_eq!(w.door(&token).await, 403);
    let (s, _) = w
        .call(
            "POST",
            &format!("/api/meetings/{id}/enter"),
            Auth::Account(&w.invitee),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn nobody_can_switch_on_someone_elses_microphone_or_camera() {
    let w = world().await;
    let id = w.create(private("ingo@example.org")).await;
    let owner = w.owner_token(&id).await;
    w.admitted_invitee(&id, &owner).await;
    // No moderation action switches a device on.
    for action in ["unmute", "start_camera", "enable_microphone", "set_muted"] {
        let (s, v) = w
            .call(
                "POST",
                &format!("/api/meetings/{id}/moderate"),
                Auth::Bearer(&owner),
                Some(json!({ "identity": w.invitee.id.as_str(), "action": action, "muted": false })),
            )
            .await;
        assert_eq!(s, 400, "{action}: {v}");
    }
    // Granting a right is not switching on: it only lets the person decide.
    let (s, _) = w
        .call(
            "POST",
            &format!("/api/meetings/{id}/moderate"),
            Auth::Bearer(&owner),
            Some(
                json!({ "identity": w.invitee.id.as_str(), "action": "ask_unmute", "source": "microphone" }),
            ),
        )
        .await;
    assert_eq!(s, 200);
    // The server API refuses an unmute of someone else's track.
    let admin = {
        let c = conclave_token::Claims {
            iss: conclave_client::server_process::API_KEY.into(),
            exp: (now() + 600) as u64,
            video: conclave_token::VideoGrant {
                room_admin: true,
                room: id.clone(),
                ..conclave_token::VideoGrant::default()
            },
            ..conclave_token::Claims::default()
        };
        conclave_token::sign(
            &c,
            &conclave_token::ApiKey::new(conclave_client::server_process::API_KEY),
            &conclave_token::ApiSecret::new("conclave-test-secret-0123456789abcdef"),
        )
        .expect("admin token")
    };
    let resp = w
        .http
        .post(format!("{}/twirp/livekit.RoomService/MutePublishedTrack", w.server.url))
        .header("Authorization", format!("Bearer {admin}"))
        .header("Content-Type", "application/json")
        .body(json!({ "room": id, "identity": w.invitee.id.as_str(), "track_sid": "TR_aaaaaaaaaaaa", "muted": false }).to_string())
        .send()
        .await
        .expect("twirp");
    assert!(!resp.status().is_success(), "{}", resp.status());
    assert!(
        w.server
            .log()
            .contains("refused a request to unmute someone else's track")
    );
}

#[tokio::test]
async fn participants_cannot_moderate_or_change_the_rules() {
    let w = world().await;
    let id = w.create(private("ingo@example.org")).await;
    let owner = w.owner_token(&id).await;
    let token = w.admitted_invitee(&id, &owner).await;
    for (path, body) in [
        ("lock", json!({ "locked": true })),
        (
            "rights",
            json!({ "rights": { "microphone": "everyone", "camera": "everyone", "screen_share": "everyone", "chat": "everyone", "files": "everyone" } }),
        ),
        (
            "moderate",
            json!({ "identity": w.owner.id.as_str(), "action": "mute" }),
        ),
        (
            "moderate",
            json!({ "identity": w.invitee.id.as_str(), "action": "grant", "rights": { "screen_share": true } }),
        ),
        ("end", json!({})),
    ] {
        let (s, v) = w
            .call(
                "POST",
                &format!("/api/meetings/{id}/{path}"),
                Auth::Bearer(&token),
                Some(body),
            )
            .await;
        assert_eq!(s, 403, "{path}: {v}");
    }
    // Nor can anyone outside use the API with their account.
    let (s, _) = w
        .call(
            "GET",
            &format!("/api/meetings/{id}/state"),
            Auth::Account(&w.outsider),
            None,
        )
        .await;
    assert_eq!(s, 403);
    // Without the CSRF token a signed-in browser cannot create meetings.
    let resp = w
        .http
        .post(format!("{}/api/meetings", w.server.url))
        .header("Origin", &w.server.url)
        .header("Cookie", format!("__Host-conclave_session={}", w.owner.cookie))
        .header("Content-Type", "application/json")
        .body(json!({ "title": "x" }).to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 401);
    // From another site, not at all.
    let resp = w
        .http
        .post(format!("{}/api/meetings", w.server.url))
        .header("Origin", "https://evil.example")
        .header("Cookie", format!("__Host-conclave_session={}", w.owner.cookie))
        .header("X-CSRF-Token", &w.owner.csrf)
        .header("Content-Type", "application/json")
        .body(json!({ "title": "x" }).to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 403);
}

/// Publishes what it is given and stops once the microphone is published,
/// remembering what was accepted.
struct Publisher {
    published: Vec<String>,
    refused: Vec<String>,
    others: Option<usize>,
    deadline: Instant,
}

impl App for Publisher {
    fn on_event(&mut self, _now: Instant, event: &ClientEvent, _client: &mut Client) {
        match event {
            ClientEvent::Published { cid, .. } => self.published.push(cid.clone()),
            ClientEvent::Refused { cid, .. } => self.refused.push(cid.clone()),
            ClientEvent::Joined { others, .. } => self.others = Some(*others),
            _ => {}
        }
    }
    fn next_wake(&self) -> Option<Instant> {
        Some(self.deadline)
    }
    fn on_wake(&mut self, _now: Instant, _client: &mut Client) {}
    fn done(&self) -> bool {
        self.published.iter().any(|c| c == "mic") || Instant::now() >= self.deadline
    }
}

#[tokio::test]
async fn the_sfu_refuses_a_screen_share_without_the_right() {
    let w = world().await;
    let id = w.create(private("ingo@example.org")).await;
    let owner = w.owner_token(&id).await;
    let token = w.admitted_invitee(&id, &owner).await;
    // By default only hosts share their screen. The participant's client
    // announces a screen share first, then a microphone: the server
    // handles them in order, so once the microphone is accepted the
    // screen share was already refused.
    let mut screen = TrackSpec::audio("screen");
    screen.source = TrackSource::ScreenShareAudio;
    let mut app = Publisher {
        published: Vec::new(),
        refused: Vec::new(),
        others: None,
        deadline: Instant::now() + std::time::Duration::from_secs(60),
    };
    driver::run(
        &w.server.url,
        &token,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        vec![screen, TrackSpec::audio("mic")],
        &mut app,
    )
    .await
    .expect("session");
    assert_eq!(app.published, vec!["mic".to_owned()], "{}", w.server.log());
    assert_eq!(app.refused, vec!["screen".to_owned()]);
    assert!(
        w.server
            .log()
            .contains("refused to publish a track without permission")
    );
    // The host grants the right; a new session may share the screen.
    let (s, _) = w
        .call(
            "POST",
            &format!("/api/meetings/{id}/moderate"),
            Auth::Bearer(&owner),
            Some(json!({ "identity": w.invitee.id.as_str(), "action": "grant", "rights": { "screen_share": true } })),
        )
        .await;
    assert_eq!(s, 200);
    let mut screen = TrackSpec::audio("screen");
    screen.source = TrackSource::ScreenShareAudio;
    let mut app = Publisher {
        published: Vec::new(),
        refused: Vec::new(),
        others: None,
        deadline: Instant::now() + std::time::Duration::from_secs(60),
    };
    driver::run(
        &w.server.url,
        &token,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        vec![screen, TrackSpec::audio("mic")],
        &mut app,
    )
    .await
    .expect("session");
    assert!(app.refused.is_empty(), "{:?}", app.refused);
    assert_eq!(app.published, vec!["screen".to_owned(), "mic".to_owned()]);
}

#[tokio::test]
async fn guests_enter_only_where_allowed_and_are_labelled() {
    let w = world().await;
    let id = w
        .create(json!({ "title": "Open day", "access": "link", "guests": true, "passcode": "4711-mango" }))
        .await;
    let owner = w.owner_token(&id).await;
    // The passcode is asked of everyone but the hosts.
    let (s, v) = w
        .call(
            "POST",
            &format!("/api/meetings/{id}/enter"),
            Auth::None,
            Some(json!({ "name": "Gina" })),
        )
        .await;
    assert_eq!((s, v["passcode"].as_bool()), (403, Some(true)), "{v}");
    let (s, v) = w
        .call(
            "POST",
            &format!("/api/meetings/{id}/enter"),
            Auth::None,
            Some(json!({ "name": "Gina", "passcode": "4711-mango" })),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let (_, state) = w
        .call(
            "GET",
            &format!("/api/meetings/{id}/state"),
            Auth::Bearer(&owner),
            None,
        )
        .await;
    assert_eq!(state["lobby"][0]["name"], "Gina (guest)");
    assert_eq!(state["lobby"][0]["guest"], true);
}

#[tokio::test]
async fn files_need_the_right_an_allowed_type_and_a_place_in_the_meeting() {
    let w = world().await;
    let id = w.create(private("ingo@example.org")).await;
    let owner = w.owner_token(&id).await;
    let token = w.admitted_invitee(&id, &owner).await;
    let upload = |bearer: String, name: &'static str, data: &'static [u8]| {
        let req = w
            .http
            .post(format!("{}/api/meetings/{id}/files", w.server.url))
            .header("Authorization", format!("Bearer {bearer}"))
            .header("X-File-Name", name)
            .body(data);
        async move {
            let r = req.send().await.expect("upload");
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
    };
    // By default only hosts share files.
    assert_eq!(upload(token.clone(), "plan.pdf", b"%PDF-1.7 plan").await.0, 403);
    // A page dressed up as a document, and an executable, are refused.
    assert_eq!(
        upload(owner.clone(), "plan.pdf", b"<html><script>1</script>")
            .await
            .0,
        415
    );
    assert_eq!(upload(owner.clone(), "tool.exe", b"MZ\x90\x00").await.0, 415);
    let (s, body) = upload(owner.clone(), "plan.pdf", b"%PDF-1.7 plan").await;
    assert_eq!(s, 200, "{body}");
    let file: Value = serde_json::from_str(&body).expect("json");
    let file_id = file["id"].as_str().expect("id");
    // Participants download it as an attachment that the browser will not run.
    let r = w
        .http
        .get(format!("{}/api/meetings/{id}/files/{file_id}", w.server.url))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await
        .expect("download");
    assert_eq!(r.status().as_u16(), 200);
    let disposition = r
        .headers()
        .get("content-disposition")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(disposition.starts_with("attachment"), "{disposition}");
    assert_eq!(
        r.headers()
            .get("x-content-type-options")
            .and_then(|v| v.to_str().ok()),
        Some("nosniff")
    );
    assert_eq!(r.bytes().await.expect("bytes").as_ref(), b"%PDF-1.7 plan");
    // Without a token of this meeting: nothing.
    let r = w
        .http
        .get(format!("{}/api/meetings/{id}/files/{file_id}", w.server.url))
        .send()
        .await
        .expect("download");
    assert_eq!(r.status().as_u16(), 403);
    // Ending the meeting deletes its files and every admission.
    let (s, _) = w
        .call(
            "POST",
            &format!("/api/meetings/{id}/end"),
            Auth::Bearer(&owner),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(w.door(&token).await, 403);
    let owner = w.owner_token(&id).await;
    let (_, state) = w
        .call(
            "GET",
            &format!("/api/meetings/{id}/state"),
            Auth::Bearer(&owner),
            None,
        )
        .await;
    assert_eq!(state["files"], json!([]));
}
