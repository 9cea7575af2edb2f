//! What a meeting is: access, lobby, roles, rights, invitees, and the
//! checks on what a host may set.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::MeetingsError;

/// Longest title, in characters.
pub const MAX_TITLE: usize = 200;
/// Most invitees of one meeting.
pub const MAX_INVITEES: usize = 500;
/// Longest passcode, in characters.
pub const MAX_PASSCODE: usize = 64;

/// Who may ask to enter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Only invitees (and the hosts).
    #[default]
    Invited,
    /// Any signed-in user with the link, through the lobby.
    Link,
}

/// Who waits in the lobby.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LobbyMode {
    /// Everyone but the hosts.
    #[default]
    Everyone,
    /// Only people who were not invited (link holders, guests).
    Uninvited,
}

/// A person's role in a meeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum MeetingRole {
    Guest,
    Participant,
    Cohost,
    Host,
    Owner,
}

impl MeetingRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MeetingRole::Guest => "guest",
            MeetingRole::Participant => "participant",
            MeetingRole::Cohost => "cohost",
            MeetingRole::Host => "host",
            MeetingRole::Owner => "owner",
        }
    }

    /// Owner, host or co-host: admits, mutes, removes.
    pub fn moderates(self) -> bool {
        self >= MeetingRole::Cohost
    }

    /// Owner or host: also bans, locks, changes rights and roles, ends.
    pub fn hosts(self) -> bool {
        self >= MeetingRole::Host
    }
}

/// A role an invitation can give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InviteeRole {
    Participant,
    Cohost,
    Host,
}

impl InviteeRole {
    pub fn as_str(self) -> &'static str {
        match self {
            InviteeRole::Participant => "participant",
            InviteeRole::Cohost => "cohost",
            InviteeRole::Host => "host",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "participant" => Some(InviteeRole::Participant),
            "cohost" => Some(InviteeRole::Cohost),
            "host" => Some(InviteeRole::Host),
            _ => None,
        }
    }

    pub fn meeting_role(self) -> MeetingRole {
        match self {
            InviteeRole::Participant => MeetingRole::Participant,
            InviteeRole::Cohost => MeetingRole::Cohost,
            InviteeRole::Host => MeetingRole::Host,
        }
    }
}

/// How an invitee is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InviteeKind {
    /// An e-mail address (of a confirmed account).
    Email,
    /// Every confirmed address in a domain.
    Domain,
    /// Members of a group named by an identity provider.
    Group,
}

impl InviteeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InviteeKind::Email => "email",
            InviteeKind::Domain => "domain",
            InviteeKind::Group => "group",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "email" => Some(InviteeKind::Email),
            "domain" => Some(InviteeKind::Domain),
            "group" => Some(InviteeKind::Group),
            _ => None,
        }
    }
}

/// One invitation of a meeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invitee {
    pub kind: InviteeKind,
    pub value: String,
    pub role: InviteeRole,
}

/// Something a participant may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Right {
    Microphone,
    Camera,
    ScreenShare,
    Chat,
    Files,
}

impl Right {
    pub const ALL: [Right; 5] = [
        Right::Microphone,
        Right::Camera,
        Right::ScreenShare,
        Right::Chat,
        Right::Files,
    ];
}

/// Who has a right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Holders {
    Everyone,
    Hosts,
}

/// The meeting-wide rights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rights {
    pub microphone: Holders,
    pub camera: Holders,
    pub screen_share: Holders,
    pub chat: Holders,
    pub files: Holders,
}

impl Default for Rights {
    fn default() -> Self {
        Self {
            microphone: Holders::Everyone,
            camera: Holders::Everyone,
            screen_share: Holders::Hosts,
            chat: Holders::Everyone,
            files: Holders::Hosts,
        }
    }
}

impl Rights {
    pub fn holders(&self, right: Right) -> Holders {
        match right {
            Right::Microphone => self.microphone,
            Right::Camera => self.camera,
            Right::ScreenShare => self.screen_share,
            Right::Chat => self.chat,
            Right::Files => self.files,
        }
    }

    /// Whether someone with `role` and the individual `grants` has `right`.
    pub fn allows(&self, role: MeetingRole, grants: &BTreeMap<Right, bool>, right: Right) -> bool {
        if role.moderates() {
            return true;
        }
        if let Some(g) = grants.get(&right) {
            return *g;
        }
        self.holders(right) == Holders::Everyone
    }
}

/// A meeting as a host describes it when creating or editing it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeetingSpec {
    pub title: String,
    #[serde(default)]
    pub starts_at: Option<i64>,
    #[serde(default)]
    pub ends_at: Option<i64>,
    #[serde(default)]
    pub access: Access,
    #[serde(default)]
    pub lobby: LobbyMode,
    #[serde(default)]
    pub guests: bool,
    /// `None` keeps the current passcode, `""` removes it.
    #[serde(default)]
    pub passcode: Option<String>,
    #[serde(default)]
    pub invitees: Vec<Invitee>,
    #[serde(default)]
    pub rights: Rights,
}

/// Normalises an e-mail address the way accounts store it; `None` when it
/// is not one.
pub fn normalise_email(raw: &str) -> Option<String> {
    let e = raw.trim().to_lowercase();
    let (local, domain) = e.split_once('@')?;
    if local.is_empty()
        || e.len() > 254
        || !valid_domain(domain)
        || e.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return None;
    }
    Some(e)
}

/// Normalises a domain name; `None` when it is not one.
pub fn normalise_domain(raw: &str) -> Option<String> {
    let d = raw.trim().trim_start_matches('@').to_lowercase();
    valid_domain(&d).then_some(d)
}

fn valid_domain(d: &str) -> bool {
    d.len() <= 253
        && d.contains('.')
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
}

impl MeetingSpec {
    /// Checks and normalises what a host entered.
    pub fn validate(mut self) -> Result<Self, MeetingsError> {
        let bad = |m: &'static str| MeetingsError::Invalid(m);
        self.title = self.title.trim().to_owned();
        let n = self.title.chars().count();
        if n == 0 || n > MAX_TITLE || self.title.chars().any(char::is_control) {
            return Err(bad("a title has 1 to 200 characters"));
        }
        for t in [self.starts_at, self.ends_at].into_iter().flatten() {
            if !(0..=253_402_300_799).contains(&t) {
                return Err(bad("start and end are seconds since 1970"));
            }
        }
        if let (Some(s), Some(e)) = (self.starts_at, self.ends_at)
            && e < s
        {
            return Err(bad("a meeting cannot end before it starts"));
        }
        if let Some(p) = &self.passcode {
            let n = p.chars().count();
            if !p.is_empty() && (!(4..=MAX_PASSCODE).contains(&n) || p.chars().any(char::is_control)) {
                return Err(bad("a passcode has 4 to 64 characters"));
            }
        }
        if self.invitees.len() > MAX_INVITEES {
            return Err(bad("at most 500 invitees"));
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::with_capacity(self.invitees.len());
        for mut i in self.invitees {
            i.value = match i.kind {
                InviteeKind::Email => {
                    normalise_email(&i.value).ok_or(bad("an invitee's e-mail address is not valid"))?
                }
                InviteeKind::Domain => {
                    normalise_domain(&i.value).ok_or(bad("an invitee's domain is not valid"))?
                }
                InviteeKind::Group => {
                    let g = i.value.trim().to_owned();
                    if g.is_empty() || g.chars().count() > 200 || g.chars().any(char::is_control) {
                        return Err(bad("a group name has 1 to 200 characters"));
                    }
                    g
                }
            };
            if seen.insert((i.kind.as_str(), i.value.clone())) {
                out.push(i);
            }
        }
        self.invitees = out;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Result<MeetingSpec, MeetingsError> {
        serde_json::from_value::<MeetingSpec>(json)
            .map_err(|_| MeetingsError::Invalid("json"))?
            .validate()
    }

    #[test]
    fn defaults_are_private_with_a_lobby_for_everyone() {
        let s = spec(serde_json::json!({"title": "Weekly"})).expect("valid");
        assert_eq!(
            (s.access, s.lobby, s.guests),
            (Access::Invited, LobbyMode::Everyone, false)
        );
        assert_eq!(s.rights.screen_share, Holders::Hosts);
        assert_eq!(s.rights.files, Holders::Hosts);
    }

    #[test]
    fn bad_specs_are_refused() {
        for bad in [
            serde_json::json!({"title": ""}),
            serde_json::json!({"title": "x".repeat(201)}),
            serde_json::json!({"title": "a\u{7}"}),
            serde_json::json!({"title": "t", "starts_at": 10, "ends_at": 5}),
            serde_json::json!({"title": "t", "passcode": "abc"}),
            serde_json::json!({"title": "t", "invitees": [{"kind": "email", "value": "nobody", "role": "host"}]}),
            serde_json::json!({"title": "t", "invitees": [{"kind": "domain", "value": "-x.org", "role": "host"}]}),
            serde_json::json!({"title": "t", "invitees": [{"kind": "user", "value": "x", "role": "host"}]}),
            serde_json::json!({"title": "t", "invitees": [{"kind": "email", "value": "a@b.org", "role": "owner"}]}),
            serde_json::json!({"title": "t", "hidden": true}),
        ] {
            assert!(spec(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn invitees_are_normalised_and_deduplicated() {
        let s = spec(serde_json::json!({"title": "t", "invitees": [
            {"kind": "email", "value": " Ada@Example.ORG ", "role": "host"},
            {"kind": "email", "value": "ada@example.org", "role": "participant"},
            {"kind": "domain", "value": "@Example.org", "role": "participant"},
        ]}))
        .expect("valid");
        assert_eq!(s.invitees.len(), 2);
        assert_eq!(s.invitees[0].value, "ada@example.org");
        assert_eq!(s.invitees[1].value, "example.org");
    }

    #[test]
    fn hosts_have_every_right_and_grants_override() {
        let r = Rights::default();
        let none = BTreeMap::new();
        assert!(r.allows(MeetingRole::Cohost, &none, Right::ScreenShare));
        assert!(!r.allows(MeetingRole::Participant, &none, Right::ScreenShare));
        assert!(r.allows(MeetingRole::Guest, &none, Right::Microphone));
        let grants = BTreeMap::from([(Right::ScreenShare, true), (Right::Microphone, false)]);
        assert!(r.allows(MeetingRole::Participant, &grants, Right::ScreenShare));
        assert!(!r.allows(MeetingRole::Participant, &grants, Right::Microphone));
    }
}
