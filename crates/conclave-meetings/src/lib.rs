//! Conclave's meetings, without HTTP: who may enter a meeting, the lobby,
//! roles and rights, moderation, and files shared in a meeting.
//!
//! A meeting is private unless its host opens it to link holders: only
//! invited accounts get in, and everyone but the hosts waits in the lobby
//! until a host admits them. Admission hands out a LiveKit access token
//! whose hash is kept with the admission; the SFU accepts a token for a
//! meeting's room only while that admission stands ([`Meetings::check_join`]),
//! so a removed, banned or uninvited person cannot connect, whatever token
//! they hold. Rights become LiveKit permissions; what changes them returns
//! [`Effect`]s that the server applies to the SFU.
//!
//! Time is an argument (`now`, Unix seconds); the crate never reads the
//! clock. Errors carry only texts that are safe to show.

mod files;
mod limit;
mod live;
mod model;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use conclave_store::{
    FileId, FileRecord, InviteeRecord, MeetingId, MeetingRecord, Store, StoreError, UserId,
};
use conclave_token::{ApiKey, ApiSecret, Claims, Verifier, VideoGrant};
use conclave_types::{ParticipantIdentity, Permissions, RoomName, TrackSource};
use serde::Serialize;

pub use files::FileRefusal;
pub use limit::{MAX_FAILURES, WINDOW_SECS};
pub use live::{Ticket, TicketState, attributes, permissions};
pub use model::{
    Access, Holders, Invitee, InviteeKind, InviteeRole, LobbyMode, MeetingRole, MeetingSpec, Right, Rights,
};

use live::{Live, Person};

/// How long an admission (and its token) lasts, in seconds.
pub const ADMISSION_SECS: i64 = 6 * 3600;
/// Longest chat message the web app sends, in characters.
pub const MAX_CHAT_CHARS: usize = 4000;

/// Why a meeting operation failed. [`MeetingsError::client_message`] is
/// what a client may see.
#[derive(Debug, thiserror::Error)]
pub enum MeetingsError {
    /// A missing meeting and a forbidden one look the same.
    #[error("no such meeting, or no access")]
    NotFound,
    #[error("the meeting is locked")]
    Locked,
    #[error("a passcode is needed")]
    Passcode,
    #[error("too many attempts")]
    TooMany { retry_after: i64 },
    #[error("not allowed")]
    Forbidden,
    #[error("the lobby is full")]
    LobbyFull,
    #[error("invalid request: {0}")]
    Invalid(&'static str),
    #[error("file refused: {0}")]
    File(#[from] FileRefusal),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("internal: {0}")]
    Internal(&'static str),
}

impl MeetingsError {
    /// A short text for the client, without internal detail.
    pub fn client_message(&self) -> String {
        match self {
            MeetingsError::NotFound => "No such meeting, or you may not enter it.".into(),
            MeetingsError::Locked => "The meeting is locked.".into(),
            MeetingsError::Passcode => "The passcode is missing or wrong.".into(),
            MeetingsError::TooMany { .. } => "Too many attempts. Please wait and try again.".into(),
            MeetingsError::Forbidden => "You may not do this in this meeting.".into(),
            MeetingsError::LobbyFull => "Too many people are waiting. Please try again later.".into(),
            MeetingsError::Invalid(m) => {
                let mut s = m.to_string();
                if let Some(f) = s.get_mut(0..1) {
                    f.make_ascii_uppercase();
                }
                format!("{s}.")
            }
            MeetingsError::File(r) => {
                let mut s = r.to_string();
                if let Some(f) = s.get_mut(0..1) {
                    f.make_ascii_uppercase();
                }
                format!("{s}.")
            }
            MeetingsError::Store(_) | MeetingsError::Internal(_) => {
                "Something went wrong on the server.".into()
            }
        }
    }
}

type Result<T> = std::result::Result<T, MeetingsError>;

/// The operator's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Whether meetings may let in people without an account at all.
    pub allow_guests: bool,
    /// Largest shared file.
    pub max_file_bytes: usize,
    /// The address participants reach the server at, for links.
    pub public_url: String,
}

/// A signed-in user, as the meetings see them.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: UserId,
    /// Confirmed address, normalised.
    pub email: Option<String>,
    pub name: String,
    /// Groups named by an identity provider.
    pub groups: Vec<String>,
    /// What the server vouches for: the address's domain or the provider.
    pub verified: Option<String>,
}

/// Who asks to enter.
#[derive(Debug, Clone)]
pub enum Entrant {
    Account(Account),
    Guest { name: String },
}

/// A participant acting inside a meeting, known by their access token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub meeting: MeetingId,
    pub identity: ParticipantIdentity,
    pub role: MeetingRole,
    pub name: String,
}

/// What the server must do to the SFU after a change.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// New permissions for a participant, if connected.
    Permissions {
        room: RoomName,
        identity: ParticipantIdentity,
        permissions: Permissions,
    },
    /// Server-set attributes; an empty value removes one.
    Attributes {
        room: RoomName,
        identity: ParticipantIdentity,
        attributes: BTreeMap<String, String>,
    },
    /// Mutes every track of these sources.
    Mute {
        room: RoomName,
        identity: ParticipantIdentity,
        sources: Vec<TrackSource>,
    },
    /// Disconnects a participant.
    Remove {
        room: RoomName,
        identity: ParticipantIdentity,
    },
    /// A reliable data packet from the server (to everyone when `to` is empty).
    Notify {
        room: RoomName,
        to: Vec<ParticipantIdentity>,
        topic: &'static str,
        payload: String,
    },
    /// Disconnects everyone and closes the room.
    Close { room: RoomName },
}

impl Effect {
    /// The room the effect changes.
    pub fn room(&self) -> &RoomName {
        match self {
            Effect::Permissions { room, .. }
            | Effect::Attributes { room, .. }
            | Effect::Mute { room, .. }
            | Effect::Remove { room, .. }
            | Effect::Notify { room, .. }
            | Effect::Close { room } => room,
        }
    }
}

/// What someone who asked to enter gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Admitted(Admitted),
    Waiting { ticket: Ticket },
}

/// An admission: the token, and who the participant is in the room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Admitted {
    pub token: String,
    pub identity: String,
    pub role: MeetingRole,
    pub room: String,
}

/// What the SFU needs to let an admitted participant in.
#[derive(Debug, Clone)]
pub struct JoinAdmission {
    pub name: String,
    pub permissions: Permissions,
    pub attributes: BTreeMap<String, String>,
}

/// A meeting as its owner and hosts see it.
#[derive(Debug, Clone, Serialize)]
pub struct MeetingView {
    pub id: String,
    pub title: String,
    pub starts_at: Option<i64>,
    pub ends_at: Option<i64>,
    pub access: Access,
    pub lobby: LobbyMode,
    pub guests: bool,
    pub has_passcode: bool,
    pub locked: bool,
    pub invitees: Vec<Invitee>,
    pub rights: Rights,
    pub owner: OwnerView,
    pub role: MeetingRole,
    pub link: String,
}

/// A meeting in someone's list.
#[derive(Debug, Clone, Serialize)]
pub struct MeetingSummary {
    pub id: String,
    pub title: String,
    pub starts_at: Option<i64>,
    pub ends_at: Option<i64>,
    pub owner: OwnerView,
    pub role: MeetingRole,
    pub link: String,
}

/// The owner as this server vouches for them.
#[derive(Debug, Clone, Serialize)]
pub struct OwnerView {
    pub name: String,
    pub verified: Option<String>,
}

/// What the invitation page shows.
#[derive(Debug, Clone, Serialize)]
pub struct Invitation {
    pub id: String,
    pub title: String,
    pub starts_at: Option<i64>,
    pub ends_at: Option<i64>,
    pub owner: OwnerView,
    /// This server's address, as configured.
    pub service: String,
    pub passcode: bool,
    pub guests: bool,
    pub locked: bool,
    /// The role the viewer would have (`guest` for people without an account).
    pub role: MeetingRole,
}

/// One waiting person, as the hosts see them.
#[derive(Debug, Clone, Serialize)]
pub struct WaiterView {
    pub ticket: Ticket,
    pub name: String,
    pub guest: bool,
    pub verified: Option<String>,
    pub invited: bool,
    pub since: i64,
}

/// A participant's view of the meeting they are in.
#[derive(Debug, Clone, Serialize)]
pub struct StateView {
    pub identity: String,
    pub role: MeetingRole,
    /// The caller's own rights.
    pub rights: BTreeMap<Right, bool>,
    /// The meeting-wide rights.
    pub meeting_rights: Rights,
    pub locked: bool,
    /// Only for those who moderate.
    pub lobby: Option<Vec<WaiterView>>,
    pub files: Vec<FileView>,
}

/// A shared file, as participants see it.
#[derive(Debug, Clone, Serialize)]
pub struct FileView {
    pub id: String,
    pub name: String,
    pub size: i64,
    #[serde(rename = "type")]
    pub content_type: String,
    pub from: String,
}

/// Whom a lobby decision is about.
#[derive(Debug, Clone)]
pub enum LobbyTarget {
    One(Ticket),
    All,
}

/// A moderation action.
#[derive(Debug, Clone)]
pub enum Moderation {
    Mute,
    StopCamera,
    StopScreenShare,
    LowerHand,
    /// Asks the participant to switch on their microphone or camera; they decide.
    AskUnmute(Right),
    Remove,
    SetRole(MeetingRole),
    /// Gives or takes rights from one participant.
    Grant(BTreeMap<Right, bool>),
}

/// The meetings service.
pub struct Meetings {
    store: Store,
    settings: Settings,
    key: ApiKey,
    secret: ApiSecret,
    verifier: Verifier,
    live: Mutex<Live>,
    changed: tokio::sync::Notify,
}

/// Checks a file a participant wants to share, as an upload is checked:
/// its cleaned name and its media type, or why it is refused. Never
/// panics, whatever the bytes.
pub fn check_shared_file(
    name: &str,
    data: &[u8],
    max_bytes: usize,
) -> std::result::Result<(String, &'static str), FileRefusal> {
    let name = files::clean_name(name)?;
    let t = files::check(&name, data, max_bytes)?;
    Ok((name, t.media_type))
}

fn room_of(id: &MeetingId) -> Result<RoomName> {
    RoomName::new(id.as_str()).map_err(|_| MeetingsError::Internal("meeting id is no room name"))
}

fn domain_of(email: &str) -> Option<&str> {
    email.rsplit_once('@').map(|(_, d)| d)
}

fn rights_of(m: &MeetingRecord) -> Rights {
    serde_json::from_str(&m.rights).unwrap_or_default()
}

fn parse_access(m: &MeetingRecord) -> Access {
    if m.access == "link" {
        Access::Link
    } else {
        Access::Invited
    }
}

fn parse_lobby(m: &MeetingRecord) -> LobbyMode {
    if m.lobby == "uninvited" {
        LobbyMode::Uninvited
    } else {
        LobbyMode::Everyone
    }
}

fn access_str(a: Access) -> &'static str {
    match a {
        Access::Invited => "invited",
        Access::Link => "link",
    }
}

fn lobby_str(l: LobbyMode) -> &'static str {
    match l {
        LobbyMode::Everyone => "everyone",
        LobbyMode::Uninvited => "uninvited",
    }
}

fn invitees_of(records: &[InviteeRecord]) -> Vec<Invitee> {
    records
        .iter()
        .filter_map(|r| {
            Some(Invitee {
                kind: InviteeKind::parse(&r.kind)?,
                value: r.value.clone(),
                role: InviteeRole::parse(&r.role)?,
            })
        })
        .collect()
}

/// Hashes a passcode with Argon2id on a blocking thread (it takes tens of
/// milliseconds of CPU).
async fn hash_passcode(passcode: &str) -> Result<String> {
    let passcode = passcode.to_owned();
    tokio::task::spawn_blocking(move || {
        use argon2::PasswordHasher;
        argon2::Argon2::default()
            .hash_password(passcode.as_bytes())
            .map(|h| h.to_string())
            .map_err(|_| MeetingsError::Internal("passcode hashing failed"))
    })
    .await
    .map_err(|_| MeetingsError::Internal("passcode hashing failed"))?
}

fn passcode_matches(hash: &str, passcode: &str) -> bool {
    use argon2::PasswordVerifier;
    use argon2::password_hash::phc::PasswordHash;
    PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(passcode.as_bytes(), &h)
            .is_ok()
    })
}

impl Meetings {
    /// `key` and `secret` sign the access tokens that admission hands out.
    pub fn new(store: Store, settings: Settings, key: ApiKey, secret: ApiSecret) -> Result<Arc<Self>> {
        let mut verifier = Verifier::new();
        verifier
            .insert(key.clone(), secret.clone())
            .map_err(|_| MeetingsError::Internal("bad API credentials"))?;
        Ok(Arc::new(Self {
            store,
            settings,
            key,
            secret,
            verifier,
            live: Mutex::new(Live::default()),
            changed: tokio::sync::Notify::new(),
        }))
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn live(&self) -> MutexGuard<'_, Live> {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn link(&self, id: &MeetingId) -> String {
        format!("{}/m/{}", self.settings.public_url.trim_end_matches('/'), id)
    }

    async fn owner_view(&self, m: &MeetingRecord) -> Result<OwnerView> {
        let owner = self.store.user(&m.owner_id).await?;
        Ok(match owner {
            Some(u) => OwnerView {
                name: u.display_name,
                verified: u.email.as_deref().and_then(domain_of).map(str::to_owned),
            },
            None => OwnerView {
                name: "(deleted account)".into(),
                verified: None,
            },
        })
    }

    /// The role an account has in a meeting, and whether it was invited;
    /// `None` when it may not enter.
    fn role_of(m: &MeetingRecord, invitees: &[Invitee], a: &Account) -> Option<(MeetingRole, bool)> {
        if m.owner_id == a.id {
            return Some((MeetingRole::Owner, true));
        }
        let domain = a.email.as_deref().and_then(domain_of);
        let best = invitees
            .iter()
            .filter(|i| match i.kind {
                InviteeKind::Email => a.email.as_deref() == Some(i.value.as_str()),
                InviteeKind::Domain => domain == Some(i.value.as_str()),
                InviteeKind::Group => a.groups.iter().any(|g| g == &i.value),
            })
            .map(|i| i.role.meeting_role())
            .max();
        match best {
            Some(r) => Some((r, true)),
            None if parse_access(m) == Access::Link => Some((MeetingRole::Participant, false)),
            None => None,
        }
    }

    /// Loads a meeting and the entrant's place in it, counting a failure
    /// against `source` when there is none.
    async fn place(
        &self,
        id: &str,
        who: Option<&Entrant>,
        source: IpAddr,
        now: i64,
    ) -> Result<(MeetingRecord, Option<(MeetingRole, bool)>)> {
        if let Some(wait) = self.live().limiter().blocked(source, now) {
            return Err(MeetingsError::TooMany { retry_after: wait });
        }
        let fail = |this: &Self| {
            this.live().fail(source, now);
            MeetingsError::NotFound
        };
        let Ok(id) = MeetingId::parse(id) else {
            return Err(fail(self));
        };
        let Some(m) = self.store.meeting(&id).await? else {
            return Err(fail(self));
        };
        let place = match who {
            Some(Entrant::Account(a)) => {
                let invitees = invitees_of(&self.store.invitees(&id).await?);
                let place = Self::role_of(&m, &invitees, a);
                if place.is_some() && self.store.is_banned(&id, a.id.as_str()).await? {
                    return Err(MeetingsError::NotFound);
                }
                place
            }
            Some(Entrant::Guest { .. }) | None => {
                (self.settings.allow_guests && m.guests).then_some((MeetingRole::Guest, false))
            }
        };
        if place.is_none() {
            return Err(fail(self));
        }
        Ok((m, place))
    }

    fn mint(
        &self,
        room: &RoomName,
        person: &Person,
        rights: &Rights,
        grants: &BTreeMap<Right, bool>,
        now: i64,
    ) -> Result<String> {
        let p = permissions(rights, person.role, grants);
        let now_u = u64::try_from(now).map_err(|_| MeetingsError::Internal("time before 1970"))?;
        let mut claims = Claims::for_join(
            person.identity.as_str(),
            room.as_str(),
            now_u,
            ADMISSION_SECS as u64,
        );
        claims.name = person.name.clone();
        claims.attributes = attributes(person, None);
        claims.video = VideoGrant {
            room_join: true,
            room: room.as_str().to_owned(),
            can_publish: Some(p.can_publish),
            can_subscribe: Some(true),
            can_publish_data: Some(p.can_publish_data),
            can_publish_sources: p.sources.clone(),
            ..VideoGrant::default()
        };
        conclave_token::sign(&claims, &self.key, &self.secret)
            .map_err(|_| MeetingsError::Internal("cannot sign token"))
    }

    /// Admits `person` into meeting `m` now.
    fn admit_now(&self, live: &mut Live, m: &MeetingRecord, person: Person, now: i64) -> Result<Admitted> {
        let room = room_of(&m.id)?;
        let grants = live
            .admission(&m.id, &person.identity)
            .map(|a| a.grants.clone())
            .unwrap_or_default();
        let token = self.mint(&room, &person, &rights_of(m), &grants, now)?;
        let role = person.role;
        let identity = person.identity.to_string();
        live.admit(&m.id, person, &token, now + ADMISSION_SECS);
        Ok(Admitted {
            token,
            identity,
            role,
            room: room.to_string(),
        })
    }

    fn lobby_notice(&self, live: &Live, id: &MeetingId) -> Result<Effect> {
        let waiting: Vec<WaiterView> = live.waiting(id).iter().map(waiter_view).collect();
        Ok(Effect::Notify {
            room: room_of(id)?,
            to: live.moderators(id),
            topic: "conclave.lobby",
            payload: serde_json::json!({ "waiting": waiting }).to_string(),
        })
    }

    // ------------------------------------------------------------ accounts

    /// Creates a meeting owned by `owner`.
    pub async fn create(&self, owner: &Account, spec: MeetingSpec, now: i64) -> Result<MeetingView> {
        let spec = spec.validate()?;
        let passcode_hash = match spec.passcode.as_deref() {
            None | Some("") => None,
            Some(p) => Some(hash_passcode(p).await?),
        };
        let m = MeetingRecord {
            id: MeetingId::random(),
            owner_id: owner.id.clone(),
            title: spec.title.clone(),
            starts_at: spec.starts_at,
            ends_at: spec.ends_at,
            access: access_str(spec.access).into(),
            lobby: lobby_str(spec.lobby).into(),
            guests: spec.guests,
            passcode_hash,
            locked: false,
            rights: serde_json::to_string(&spec.rights).map_err(|_| MeetingsError::Internal("rights"))?,
            created_at: now,
            updated_at: now,
        };
        self.store
            .insert_meeting(&m, &invitee_records(&spec.invitees))
            .await?;
        tracing::info!(meeting = %m.id, "meeting created");
        self.view(&m, spec.invitees, MeetingRole::Owner).await
    }

    async fn view(
        &self,
        m: &MeetingRecord,
        invitees: Vec<Invitee>,
        role: MeetingRole,
    ) -> Result<MeetingView> {
        Ok(MeetingView {
            id: m.id.to_string(),
            title: m.title.clone(),
            starts_at: m.starts_at,
            ends_at: m.ends_at,
            access: parse_access(m),
            lobby: parse_lobby(m),
            guests: m.guests,
            has_passcode: m.passcode_hash.is_some(),
            locked: m.locked,
            invitees,
            rights: rights_of(m),
            owner: self.owner_view(m).await?,
            role,
            link: self.link(&m.id),
        })
    }

    /// A meeting the account owns or hosts, for editing.
    async fn hosted(&self, a: &Account, id: &str) -> Result<(MeetingRecord, Vec<Invitee>, MeetingRole)> {
        let id = MeetingId::parse(id).map_err(|_| MeetingsError::NotFound)?;
        let m = self.store.meeting(&id).await?.ok_or(MeetingsError::NotFound)?;
        let invitees = invitees_of(&self.store.invitees(&id).await?);
        match Self::role_of(&m, &invitees, a) {
            Some((role, _)) if role.hosts() => Ok((m, invitees, role)),
            Some(_) => Err(MeetingsError::Forbidden),
            None => Err(MeetingsError::NotFound),
        }
    }

    pub async fn get(&self, a: &Account, id: &str) -> Result<MeetingView> {
        let (m, invitees, role) = self.hosted(a, id).await?;
        self.view(&m, invitees, role).await
    }

    /// Changes a meeting (owner and hosts). Returns the effects of changed rights.
    pub async fn update(
        &self,
        a: &Account,
        id: &str,
        spec: MeetingSpec,
        now: i64,
    ) -> Result<(MeetingView, Vec<Effect>)> {
        let (mut m, _, role) = self.hosted(a, id).await?;
        let spec = spec.validate()?;
        m.title = spec.title.clone();
        m.starts_at = spec.starts_at;
        m.ends_at = spec.ends_at;
        m.access = access_str(spec.access).into();
        m.lobby = lobby_str(spec.lobby).into();
        m.guests = spec.guests;
        match spec.passcode.as_deref() {
            None => {}
            Some("") => m.passcode_hash = None,
            Some(p) => m.passcode_hash = Some(hash_passcode(p).await?),
        }
        let rights_changed = rights_of(&m) != spec.rights;
        m.rights = serde_json::to_string(&spec.rights).map_err(|_| MeetingsError::Internal("rights"))?;
        m.updated_at = now;
        if !self
            .store
            .update_meeting(&m, &invitee_records(&spec.invitees))
            .await?
        {
            return Err(MeetingsError::NotFound);
        }
        let effects = if rights_changed {
            self.rights_effects(&m)?
        } else {
            Vec::new()
        };
        Ok((self.view(&m, spec.invitees, role).await?, effects))
    }

    /// Deletes a meeting (owner only), ending it if it runs.
    pub async fn delete(&self, a: &Account, id: &str, now: i64) -> Result<Vec<Effect>> {
        let (m, _, role) = self.hosted(a, id).await?;
        if role != MeetingRole::Owner {
            return Err(MeetingsError::Forbidden);
        }
        self.store.delete_meeting(&m.id).await?;
        tracing::info!(meeting = %m.id, "meeting deleted");
        let effects = self.finish(&m.id, now)?;
        Ok(effects)
    }

    /// Meetings the account owns or is invited to.
    pub async fn list(&self, a: &Account) -> Result<Vec<MeetingSummary>> {
        let mut ids: Vec<MeetingId> = self
            .store
            .meetings_owned_by(&a.id)
            .await?
            .into_iter()
            .map(|m| m.id)
            .collect();
        if let Some(e) = &a.email {
            ids.extend(self.store.meetings_inviting("email", e).await?);
            if let Some(d) = domain_of(e) {
                ids.extend(self.store.meetings_inviting("domain", d).await?);
            }
        }
        for g in &a.groups {
            ids.extend(self.store.meetings_inviting("group", g).await?);
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for id in ids {
            if !seen.insert(id.clone()) {
                continue;
            }
            let Some(m) = self.store.meeting(&id).await? else {
                continue;
            };
            let invitees = invitees_of(&self.store.invitees(&id).await?);
            let Some((role, _)) = Self::role_of(&m, &invitees, a) else {
                continue;
            };
            out.push(MeetingSummary {
                id: m.id.to_string(),
                title: m.title.clone(),
                starts_at: m.starts_at,
                ends_at: m.ends_at,
                owner: self.owner_view(&m).await?,
                role,
                link: self.link(&m.id),
            });
        }
        out.sort_by(|x, y| (x.starts_at, &x.title).cmp(&(y.starts_at, &y.title)));
        Ok(out)
    }

    // ------------------------------------------------------------ entering

    /// What the invitation page shows to `viewer` (no account: as a guest).
    pub async fn invitation(
        &self,
        viewer: Option<&Account>,
        id: &str,
        source: IpAddr,
        now: i64,
    ) -> Result<Invitation> {
        let who = viewer.map(|a| Entrant::Account(a.clone()));
        let (m, place) = self.place(id, who.as_ref(), source, now).await?;
        let role = place.map_or(MeetingRole::Guest, |p| p.0);
        Ok(Invitation {
            id: m.id.to_string(),
            title: m.title.clone(),
            starts_at: m.starts_at,
            ends_at: m.ends_at,
            owner: self.owner_view(&m).await?,
            service: self.settings.public_url.clone(),
            passcode: m.passcode_hash.is_some() && !role.moderates(),
            guests: self.settings.allow_guests && m.guests,
            locked: m.locked,
            role,
        })
    }

    /// Someone asks to enter: admitted at once, or a place in the lobby.
    pub async fn enter(
        &self,
        who: Entrant,
        id: &str,
        passcode: Option<&str>,
        source: IpAddr,
        now: i64,
    ) -> Result<(Entry, Vec<Effect>)> {
        let (m, place) = self.place(id, Some(&who), source, now).await?;
        let (role, invited) = place.ok_or(MeetingsError::NotFound)?;
        if m.locked && !role.moderates() {
            return Err(MeetingsError::Locked);
        }
        if let Some(hash) = &m.passcode_hash
            && !role.moderates()
        {
            let given = passcode.unwrap_or("").to_owned();
            let hash = hash.clone();
            let ok = tokio::task::spawn_blocking(move || passcode_matches(&hash, &given))
                .await
                .map_err(|_| MeetingsError::Internal("passcode check failed"))?;
            if !ok {
                self.live().fail(source, now);
                return Err(MeetingsError::Passcode);
            }
        }
        let person = match &who {
            Entrant::Account(a) => Person {
                identity: ParticipantIdentity::new(a.id.as_str())
                    .map_err(|_| MeetingsError::Internal("identity"))?,
                subject: a.id.to_string(),
                name: a.name.clone(),
                role,
                verified: a.verified.clone(),
                invited,
            },
            Entrant::Guest { name } => {
                let name = clean_guest_name(name)?;
                let identity = format!("gst_{}", conclave_types::random_base62(22));
                Person {
                    identity: ParticipantIdentity::new(identity.clone())
                        .map_err(|_| MeetingsError::Internal("identity"))?,
                    subject: identity,
                    name: format!("{name} (guest)"),
                    role,
                    verified: None,
                    invited: false,
                }
            }
        };
        let mut live = self.live();
        let already = live.admission(&m.id, &person.identity).is_some();
        let direct = role.moderates() || already || (invited && parse_lobby(&m) == LobbyMode::Uninvited);
        if direct {
            let admitted = self.admit_now(&mut live, &m, person, now)?;
            tracing::info!(meeting = %m.id, role = role.as_str(), "admitted on entry");
            let effects = if role.moderates() {
                // A host arriving sees who already waits.
                vec![self.lobby_notice(&live, &m.id)?]
            } else {
                Vec::new()
            };
            return Ok((Entry::Admitted(admitted), effects));
        }
        let ticket = live.wait(&m.id, person, now).ok_or(MeetingsError::LobbyFull)?;
        tracing::info!(meeting = %m.id, "waiting in the lobby");
        let notice = self.lobby_notice(&live, &m.id)?;
        drop(live);
        self.changed.notify_waiters();
        Ok((Entry::Waiting { ticket }, vec![notice]))
    }

    /// The state of a lobby ticket; with `wait`, waits up to that long for
    /// a change while the person is still waiting.
    pub async fn lobby_state(&self, id: &str, ticket: &str, wait: Option<Duration>) -> Result<TicketState> {
        let id = MeetingId::parse(id).map_err(|_| MeetingsError::NotFound)?;
        let ticket = Ticket::parse(ticket).ok_or(MeetingsError::NotFound)?;
        let deadline = wait.map(|w| tokio::time::Instant::now() + w);
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let state = self
                .live()
                .ticket(&id, &ticket)
                .cloned()
                .ok_or(MeetingsError::NotFound)?;
            match (&state, deadline) {
                (TicketState::Waiting, Some(d)) if tokio::time::Instant::now() < d => {
                    if tokio::time::timeout_at(d, notified).await.is_err() {
                        return Ok(TicketState::Waiting);
                    }
                }
                _ => return Ok(state),
            }
        }
    }

    /// The waiting person stops waiting.
    pub fn leave_lobby(&self, id: &str, ticket: &str) -> Result<Vec<Effect>> {
        let id = MeetingId::parse(id).map_err(|_| MeetingsError::NotFound)?;
        let ticket = Ticket::parse(ticket).ok_or(MeetingsError::NotFound)?;
        let mut live = self.live();
        if !live.leave(&id, &ticket) {
            return Err(MeetingsError::NotFound);
        }
        Ok(vec![self.lobby_notice(&live, &id)?])
    }

    /// The check at the SFU's door: `None` when `room` is no meeting;
    /// otherwise the admission that `token` stands for, with the current
    /// name, permissions and attributes (which win over the token's).
    pub async fn check_join(
        &self,
        room: &RoomName,
        identity: &ParticipantIdentity,
        token: &str,
        now: i64,
    ) -> Option<Result<JoinAdmission>> {
        if !room.as_str().starts_with("mtg_") {
            return None;
        }
        // Every room named like a meeting is guarded, even one that no
        // meeting could have.
        let Ok(id) = MeetingId::parse(room.as_str()) else {
            return Some(Err(MeetingsError::NotFound));
        };
        Some(self.join_admission(&id, identity, token, now).await)
    }

    async fn join_admission(
        &self,
        id: &MeetingId,
        identity: &ParticipantIdentity,
        token: &str,
        now: i64,
    ) -> Result<JoinAdmission> {
        let grants = {
            let live = self.live();
            let a = live
                .admission_for_token(id, identity, token, now)
                .ok_or(MeetingsError::NotFound)?;
            (a.person.clone(), a.grants.clone(), a.hand)
        };
        let m = self.store.meeting(id).await?.ok_or(MeetingsError::NotFound)?;
        let (person, grants, hand) = grants;
        Ok(JoinAdmission {
            name: person.name.clone(),
            permissions: permissions(&rights_of(&m), person.role, &grants),
            attributes: attributes(&person, hand),
        })
    }

    // ------------------------------------------------------ in the meeting

    /// Who holds `token` in meeting `id`.
    pub fn authenticate(&self, id: &str, token: &str, now: i64) -> Result<Caller> {
        let id = MeetingId::parse(id).map_err(|_| MeetingsError::NotFound)?;
        let now_u = u64::try_from(now).map_err(|_| MeetingsError::Internal("time"))?;
        let claims = self
            .verifier
            .verify(token, now_u)
            .map_err(|_| MeetingsError::Forbidden)?;
        if claims.video.room != id.as_str() {
            return Err(MeetingsError::Forbidden);
        }
        let identity = ParticipantIdentity::new(claims.sub).map_err(|_| MeetingsError::Forbidden)?;
        let live = self.live();
        let a = live
            .admission_for_token(&id, &identity, token, now)
            .ok_or(MeetingsError::Forbidden)?;
        Ok(Caller {
            meeting: id,
            identity,
            role: a.person.role,
            name: a.person.name.clone(),
        })
    }

    async fn running(&self, c: &Caller) -> Result<MeetingRecord> {
        self.store
            .meeting(&c.meeting)
            .await?
            .ok_or(MeetingsError::NotFound)
    }

    /// The caller's view of the meeting.
    pub async fn state(&self, c: &Caller) -> Result<StateView> {
        let m = self.running(c).await?;
        let rights = rights_of(&m);
        let files = self
            .store
            .files_of(&m.id)
            .await?
            .iter()
            .map(|f| self.file_view(f))
            .collect();
        let live = self.live();
        let grants = live
            .admission(&m.id, &c.identity)
            .map(|a| a.grants.clone())
            .unwrap_or_default();
        Ok(StateView {
            identity: c.identity.to_string(),
            role: c.role,
            rights: Right::ALL
                .iter()
                .map(|r| (*r, rights.allows(c.role, &grants, *r)))
                .collect(),
            meeting_rights: rights,
            locked: m.locked,
            lobby: c
                .role
                .moderates()
                .then(|| live.waiting(&m.id).iter().map(waiter_view).collect()),
            files,
        })
    }

    fn file_view(&self, f: &FileRecord) -> FileView {
        let from = ParticipantIdentity::new(f.uploader.clone())
            .ok()
            .and_then(|i| {
                self.live()
                    .admission(&f.meeting_id, &i)
                    .map(|a| a.person.name.clone())
            })
            .unwrap_or_else(|| "a participant".into());
        FileView {
            id: f.id.to_string(),
            name: f.name.clone(),
            size: f.size,
            content_type: f.content_type.clone(),
            from,
        }
    }

    /// Admits or denies someone waiting, or everyone.
    pub async fn decide(
        &self,
        c: &Caller,
        target: LobbyTarget,
        admit: bool,
        now: i64,
    ) -> Result<Vec<Effect>> {
        if !c.role.moderates() {
            return Err(MeetingsError::Forbidden);
        }
        let m = self.running(c).await?;
        let mut live = self.live();
        let tickets: Vec<Ticket> = match target {
            LobbyTarget::One(t) => vec![t],
            LobbyTarget::All => live.waiting(&m.id).iter().map(|w| w.ticket.clone()).collect(),
        };
        let mut found = false;
        for t in tickets {
            let Some(w) = live.take_waiter(&m.id, &t) else {
                continue;
            };
            found = true;
            if admit {
                let admitted = self.admit_now(&mut live, &m, w.person, now)?;
                live.decide(
                    &t,
                    TicketState::Admitted {
                        token: admitted.token,
                    },
                    now,
                );
            } else {
                live.decide(&t, TicketState::Denied, now);
            }
        }
        if !found {
            return Err(MeetingsError::Invalid("nobody with this ticket is waiting"));
        }
        tracing::info!(meeting = %m.id, admit, "lobby decision");
        let notice = self.lobby_notice(&live, &m.id)?;
        drop(live);
        self.changed.notify_waiters();
        Ok(vec![notice])
    }

    fn meeting_notice(&self, m: &MeetingRecord, ended: bool) -> Result<Effect> {
        Ok(Effect::Notify {
            room: room_of(&m.id)?,
            to: Vec::new(),
            topic: "conclave.meeting",
            payload: serde_json::json!({ "locked": m.locked, "rights": rights_of(m), "ended": ended })
                .to_string(),
        })
    }

    /// Locks or unlocks the meeting (hosts).
    pub async fn lock(&self, c: &Caller, locked: bool, now: i64) -> Result<Vec<Effect>> {
        if !c.role.hosts() {
            return Err(MeetingsError::Forbidden);
        }
        let mut m = self.running(c).await?;
        self.store.set_meeting_locked(&m.id, locked, now).await?;
        m.locked = locked;
        tracing::info!(meeting = %m.id, locked, "meeting lock changed");
        Ok(vec![self.meeting_notice(&m, false)?])
    }

    /// New permissions for everyone admitted, after the rights changed.
    fn rights_effects(&self, m: &MeetingRecord) -> Result<Vec<Effect>> {
        let rights = rights_of(m);
        let room = room_of(&m.id)?;
        let live = self.live();
        let mut out = Vec::new();
        for a in live.admitted(&m.id) {
            out.extend(permission_effects(
                &room,
                &rights,
                a.person.role,
                &a.person.identity,
                &a.grants,
            ));
        }
        out.push(self.meeting_notice(m, false)?);
        Ok(out)
    }

    /// Changes the meeting-wide rights (hosts).
    pub async fn set_rights(&self, c: &Caller, rights: Rights, now: i64) -> Result<Vec<Effect>> {
        if !c.role.hosts() {
            return Err(MeetingsError::Forbidden);
        }
        let mut m = self.running(c).await?;
        m.rights = serde_json::to_string(&rights).map_err(|_| MeetingsError::Internal("rights"))?;
        self.store.set_meeting_rights(&m.id, &m.rights, now).await?;
        tracing::info!(meeting = %m.id, "meeting rights changed");
        self.rights_effects(&m)
    }

    /// Acts on a participant.
    pub async fn moderate(&self, c: &Caller, target: &str, action: Moderation) -> Result<Vec<Effect>> {
        let needs_host = matches!(action, Moderation::SetRole(_) | Moderation::Grant(_));
        if !c.role.moderates() || (needs_host && !c.role.hosts()) {
            return Err(MeetingsError::Forbidden);
        }
        let m = self.running(c).await?;
        let room = room_of(&m.id)?;
        let target =
            ParticipantIdentity::new(target).map_err(|_| MeetingsError::Invalid("no such participant"))?;
        let mut live = self.live();
        let a = live
            .admission(&m.id, &target)
            .cloned()
            .ok_or(MeetingsError::Invalid("no such participant"))?;
        // Nobody acts on a more senior role; the owner cannot be removed.
        let acts_on_senior =
            a.person.role > c.role || (a.person.role == MeetingRole::Owner && c.identity != target);
        if acts_on_senior && !matches!(action, Moderation::AskUnmute(_)) {
            return Err(MeetingsError::Forbidden);
        }
        let mute = |sources: Vec<TrackSource>| Effect::Mute {
            room: room.clone(),
            identity: target.clone(),
            sources,
        };
        let effects = match action {
            Moderation::Mute => vec![mute(vec![TrackSource::Microphone])],
            Moderation::StopCamera => vec![mute(vec![TrackSource::Camera])],
            Moderation::StopScreenShare => vec![mute(vec![
                TrackSource::ScreenShare,
                TrackSource::ScreenShareAudio,
            ])],
            Moderation::LowerHand => {
                if let Some(adm) = live.admission_mut(&m.id, &target) {
                    adm.hand = None;
                }
                vec![Effect::Attributes {
                    room: room.clone(),
                    identity: target.clone(),
                    attributes: BTreeMap::from([("conclave.hand".to_owned(), String::new())]),
                }]
            }
            Moderation::AskUnmute(right) => {
                let source = match right {
                    Right::Microphone => "microphone",
                    Right::Camera => "camera",
                    _ => {
                        return Err(MeetingsError::Invalid(
                            "one can ask for the microphone or the camera",
                        ));
                    }
                };
                vec![Effect::Notify {
                    room: room.clone(),
                    to: vec![target.clone()],
                    topic: "conclave.ask",
                    payload: serde_json::json!({ "source": source, "from": c.name }).to_string(),
                }]
            }
            Moderation::Remove => {
                if target == c.identity {
                    return Err(MeetingsError::Invalid("use leave to leave"));
                }
                live.revoke(&m.id, &target);
                vec![Effect::Remove {
                    room: room.clone(),
                    identity: target.clone(),
                }]
            }
            Moderation::SetRole(role) => {
                if !matches!(role, MeetingRole::Cohost | MeetingRole::Participant) || a.person.role.hosts() {
                    return Err(MeetingsError::Invalid(
                        "one can make a participant co-host and back",
                    ));
                }
                if a.person.role == MeetingRole::Guest {
                    return Err(MeetingsError::Invalid("guests cannot become co-hosts"));
                }
                let adm = live
                    .admission_mut(&m.id, &target)
                    .ok_or(MeetingsError::Invalid("no such participant"))?;
                adm.person.role = role;
                let person = adm.person.clone();
                let grants = adm.grants.clone();
                let hand = adm.hand;
                let mut e = permission_effects(&room, &rights_of(&m), role, &target, &grants);
                e.push(Effect::Attributes {
                    room: room.clone(),
                    identity: target.clone(),
                    attributes: attributes(&person, hand),
                });
                e
            }
            Moderation::Grant(grants) => {
                let adm = live
                    .admission_mut(&m.id, &target)
                    .ok_or(MeetingsError::Invalid("no such participant"))?;
                for (r, g) in grants {
                    adm.grants.insert(r, g);
                }
                let grants = adm.grants.clone();
                permission_effects(&room, &rights_of(&m), adm.person.role, &target, &grants)
            }
        };
        Ok(effects)
    }

    /// Bars a participant from the meeting for good and removes them.
    pub async fn ban(&self, c: &Caller, target: &str, now: i64) -> Result<Vec<Effect>> {
        if !c.role.hosts() {
            return Err(MeetingsError::Forbidden);
        }
        let subject = {
            let id = ParticipantIdentity::new(target)
                .map_err(|_| MeetingsError::Invalid("no such participant"))?;
            let live = self.live();
            live.admission(&c.meeting, &id)
                .map(|a| a.person.subject.clone())
                .ok_or(MeetingsError::Invalid("no such participant"))?
        };
        self.store.ban(&c.meeting, &subject, now).await?;
        let effects = self.moderate(c, target, Moderation::Remove).await?;
        tracing::info!(meeting = %c.meeting, "participant banned");
        Ok(effects)
    }

    /// Raises or lowers the caller's own hand.
    pub fn hand(&self, c: &Caller, raised: bool, now_ms: i64) -> Result<Vec<Effect>> {
        let mut live = self.live();
        let a = live
            .admission_mut(&c.meeting, &c.identity)
            .ok_or(MeetingsError::Forbidden)?;
        a.hand = raised.then_some(now_ms);
        Ok(vec![Effect::Attributes {
            room: room_of(&c.meeting)?,
            identity: c.identity.clone(),
            attributes: BTreeMap::from([(
                "conclave.hand".to_owned(),
                a.hand.map(|h| h.to_string()).unwrap_or_default(),
            )]),
        }])
    }

    /// Shares a file with the meeting.
    pub async fn upload(
        &self,
        c: &Caller,
        name: &str,
        data: &[u8],
        now: i64,
    ) -> Result<(FileView, Vec<Effect>)> {
        let m = self.running(c).await?;
        let grants = self
            .live()
            .admission(&m.id, &c.identity)
            .map(|a| a.grants.clone())
            .unwrap_or_default();
        if !rights_of(&m).allows(c.role, &grants, Right::Files) {
            return Err(MeetingsError::Forbidden);
        }
        let name = files::clean_name(name)?;
        let t = files::check(&name, data, self.settings.max_file_bytes)?;
        let f = FileRecord {
            id: FileId::random(),
            meeting_id: m.id.clone(),
            uploader: c.identity.to_string(),
            name,
            content_type: t.media_type.to_owned(),
            size: i64::try_from(data.len()).map_err(|_| MeetingsError::File(FileRefusal::TooLarge))?,
            created_at: now,
        };
        self.store.insert_file(&f, data).await?;
        let view = self.file_view(&f);
        let notice = Effect::Notify {
            room: room_of(&m.id)?,
            to: Vec::new(),
            topic: "conclave.file",
            payload: serde_json::to_string(&view).map_err(|_| MeetingsError::Internal("file view"))?,
        };
        Ok((view, vec![notice]))
    }

    /// A shared file, for a participant of its meeting.
    pub async fn download(&self, c: &Caller, file: &str) -> Result<(FileRecord, Vec<u8>)> {
        let id = FileId::parse(file).map_err(|_| MeetingsError::NotFound)?;
        self.store
            .file(&c.meeting, &id)
            .await?
            .ok_or(MeetingsError::NotFound)
    }

    /// Ends the meeting for everyone (hosts): everyone leaves, nobody waits,
    /// shared files are deleted.
    pub async fn end(&self, c: &Caller, now: i64) -> Result<Vec<Effect>> {
        if !c.role.hosts() {
            return Err(MeetingsError::Forbidden);
        }
        let m = self.running(c).await?;
        let mut effects = vec![self.meeting_notice(&m, true)?];
        effects.extend(self.finish(&m.id, now)?);
        let removed = self.store.delete_files_of(&m.id).await?;
        tracing::info!(meeting = %m.id, files = removed, "meeting ended");
        Ok(effects)
    }

    fn finish(&self, id: &MeetingId, now: i64) -> Result<Vec<Effect>> {
        self.live().end(id, now);
        self.changed.notify_waiters();
        Ok(vec![Effect::Close { room: room_of(id)? }])
    }

    /// Forgets expired admissions and tickets.
    pub fn housekeeping(&self, now: i64) {
        self.live().housekeeping(now);
    }
}

fn permission_effects(
    room: &RoomName,
    rights: &Rights,
    role: MeetingRole,
    identity: &ParticipantIdentity,
    grants: &BTreeMap<Right, bool>,
) -> Vec<Effect> {
    let p = permissions(rights, role, grants);
    let revoked: Vec<TrackSource> = TrackSource::ALL
        .into_iter()
        .filter(|s| !p.may_publish(*s))
        .collect();
    let mut out = vec![Effect::Permissions {
        room: room.clone(),
        identity: identity.clone(),
        permissions: p,
    }];
    if !revoked.is_empty() {
        out.push(Effect::Mute {
            room: room.clone(),
            identity: identity.clone(),
            sources: revoked,
        });
    }
    out
}

fn waiter_view(w: &live::Waiter) -> WaiterView {
    WaiterView {
        ticket: w.ticket.clone(),
        name: w.person.name.clone(),
        guest: w.person.role == MeetingRole::Guest,
        verified: w.person.verified.clone(),
        invited: w.person.invited,
        since: w.since,
    }
}

fn invitee_records(invitees: &[Invitee]) -> Vec<InviteeRecord> {
    invitees
        .iter()
        .map(|i| InviteeRecord {
            kind: i.kind.as_str().into(),
            value: i.value.clone(),
            role: i.role.as_str().into(),
        })
        .collect()
}

/// A guest's name: 1 to 64 characters, no control characters, and not
/// pretending to be a role.
fn clean_guest_name(raw: &str) -> Result<String> {
    let n: String = raw.trim().chars().filter(|c| !c.is_control()).collect();
    let len = n.chars().count();
    if !(1..=64).contains(&len) {
        return Err(MeetingsError::Invalid("a name has 1 to 64 characters"));
    }
    Ok(n)
}
