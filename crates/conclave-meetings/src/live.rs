//! What happens in running meetings, in memory: who waits in the lobby,
//! who was admitted (with the hash of the token they got), individual
//! grants and raised hands. No I/O, no clock: time is an argument.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use conclave_store::MeetingId;
use conclave_types::{ParticipantIdentity, Permissions, TrackSource};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::limit::Limiter;
use crate::model::{MeetingRole, Right, Rights};

/// How long a decided ticket can still be read by the person who waited.
pub const TICKET_KEEP_SECS: i64 = 10 * 60;
/// Most people waiting in one meeting's lobby.
pub const MAX_WAITING: usize = 200;

/// A lobby ticket: the secret a waiting person reads their state with.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Ticket(String);

impl Ticket {
    pub fn random() -> Self {
        Self(conclave_types::random_base62(22))
    }

    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 22 && s.bytes().all(|b| b.is_ascii_alphanumeric())).then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who someone is in a meeting, before and after admission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub identity: ParticipantIdentity,
    /// What a ban names: the account id, or the guest's identity.
    pub subject: String,
    /// The name shown to everyone (guests' end in " (guest)").
    pub name: String,
    pub role: MeetingRole,
    /// The domain of the confirmed address, or the identity provider.
    pub verified: Option<String>,
    /// Invited by name, domain or group (not only by holding the link).
    pub invited: bool,
}

/// Someone the hosts let in.
#[derive(Debug, Clone)]
pub struct Admission {
    pub person: Person,
    token_hash: [u8; 32],
    pub expires_at: i64,
    /// Rights a host gave or took from this person alone.
    pub grants: BTreeMap<Right, bool>,
    /// When the hand went up (Unix milliseconds).
    pub hand: Option<i64>,
}

/// A waiting person.
#[derive(Debug, Clone)]
pub struct Waiter {
    pub ticket: Ticket,
    pub person: Person,
    pub since: i64,
}

/// What a waiting person can read with their ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketState {
    Waiting,
    Admitted { token: String },
    Denied,
    Ended,
}

#[derive(Debug)]
struct TicketEntry {
    meeting: MeetingId,
    state: TicketState,
    updated_at: i64,
}

#[derive(Debug, Default)]
struct LiveMeeting {
    admitted: HashMap<ParticipantIdentity, Admission>,
    waiting: Vec<Waiter>,
}

/// Every running meeting.
#[derive(Debug, Default)]
pub struct Live {
    meetings: HashMap<MeetingId, LiveMeeting>,
    tickets: HashMap<Ticket, TicketEntry>,
    limiter: Limiter,
}

pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The LiveKit permissions that follow from a role, the meeting's rights
/// and individual grants.
pub fn permissions(rights: &Rights, role: MeetingRole, grants: &BTreeMap<Right, bool>) -> Permissions {
    let has = |r| rights.allows(role, grants, r);
    let mut sources = Vec::new();
    if has(Right::Microphone) {
        sources.push(TrackSource::Microphone);
    }
    if has(Right::Camera) {
        sources.push(TrackSource::Camera);
    }
    if has(Right::ScreenShare) {
        sources.push(TrackSource::ScreenShare);
        sources.push(TrackSource::ScreenShareAudio);
    }
    Permissions {
        can_subscribe: true,
        can_publish: !sources.is_empty(),
        sources,
        can_publish_data: has(Right::Chat),
        can_update_metadata: false,
        hidden: false,
        admin: false,
    }
}

/// The attributes the server sets on a participant.
pub fn attributes(person: &Person, hand: Option<i64>) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    a.insert("conclave.role".to_owned(), person.role.as_str().to_owned());
    if let Some(v) = &person.verified {
        a.insert("conclave.verified".to_owned(), v.clone());
    }
    if let Some(h) = hand {
        a.insert("conclave.hand".to_owned(), h.to_string());
    }
    a
}

impl Live {
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    pub fn fail(&mut self, addr: IpAddr, now: i64) {
        self.limiter.fail(addr, now);
    }

    pub fn admission(&self, meeting: &MeetingId, identity: &ParticipantIdentity) -> Option<&Admission> {
        self.meetings.get(meeting)?.admitted.get(identity)
    }

    pub fn admission_mut(
        &mut self,
        meeting: &MeetingId,
        identity: &ParticipantIdentity,
    ) -> Option<&mut Admission> {
        self.meetings.get_mut(meeting)?.admitted.get_mut(identity)
    }

    /// The admission that `token` was handed out with, if it still stands.
    pub fn admission_for_token(
        &self,
        meeting: &MeetingId,
        identity: &ParticipantIdentity,
        token: &str,
        now: i64,
    ) -> Option<&Admission> {
        let a = self.admission(meeting, identity)?;
        let same: bool = a.token_hash.ct_eq(&token_hash(token)).into();
        (same && now < a.expires_at).then_some(a)
    }

    /// Every admission of a meeting.
    pub fn admitted(&self, meeting: &MeetingId) -> impl Iterator<Item = &Admission> {
        self.meetings
            .get(meeting)
            .into_iter()
            .flat_map(|m| m.admitted.values())
    }

    /// The identities of those who moderate a meeting.
    pub fn moderators(&self, meeting: &MeetingId) -> Vec<ParticipantIdentity> {
        self.admitted(meeting)
            .filter(|a| a.person.role.moderates())
            .map(|a| a.person.identity.clone())
            .collect()
    }

    /// Lets `person` in with `token`, replacing an earlier admission of the
    /// same identity (and its token) but keeping its grants and hand.
    pub fn admit(&mut self, meeting: &MeetingId, person: Person, token: &str, expires_at: i64) -> &Admission {
        let m = self.meetings.entry(meeting.clone()).or_default();
        m.waiting.retain(|w| w.person.identity != person.identity);
        let (grants, hand) = m
            .admitted
            .remove(&person.identity)
            .map(|a| (a.grants, a.hand))
            .unwrap_or_default();
        m.admitted.entry(person.identity.clone()).or_insert(Admission {
            person,
            token_hash: token_hash(token),
            expires_at,
            grants,
            hand,
        })
    }

    /// Withdraws an admission: its token no longer opens the room.
    pub fn revoke(&mut self, meeting: &MeetingId, identity: &ParticipantIdentity) -> Option<Admission> {
        self.meetings.get_mut(meeting)?.admitted.remove(identity)
    }

    /// Puts `person` in the lobby. `None` when the lobby is full.
    pub fn wait(&mut self, meeting: &MeetingId, person: Person, now: i64) -> Option<Ticket> {
        let m = self.meetings.entry(meeting.clone()).or_default();
        // The same person asking again keeps one place, with a new ticket.
        let old: Vec<Ticket> = m
            .waiting
            .iter()
            .filter(|w| w.person.identity == person.identity)
            .map(|w| w.ticket.clone())
            .collect();
        m.waiting.retain(|w| w.person.identity != person.identity);
        if m.waiting.len() >= MAX_WAITING {
            return None;
        }
        let ticket = Ticket::random();
        m.waiting.push(Waiter {
            ticket: ticket.clone(),
            person,
            since: now,
        });
        for t in old {
            self.tickets.remove(&t);
        }
        self.tickets.insert(
            ticket.clone(),
            TicketEntry {
                meeting: meeting.clone(),
                state: TicketState::Waiting,
                updated_at: now,
            },
        );
        Some(ticket)
    }

    pub fn waiting(&self, meeting: &MeetingId) -> &[Waiter] {
        self.meetings.get(meeting).map_or(&[], |m| m.waiting.as_slice())
    }

    /// Takes a waiting person out of the lobby.
    pub fn take_waiter(&mut self, meeting: &MeetingId, ticket: &Ticket) -> Option<Waiter> {
        let m = self.meetings.get_mut(meeting)?;
        let i = m.waiting.iter().position(|w| &w.ticket == ticket)?;
        Some(m.waiting.remove(i))
    }

    /// Records what became of a ticket.
    pub fn decide(&mut self, ticket: &Ticket, state: TicketState, now: i64) {
        if let Some(t) = self.tickets.get_mut(ticket) {
            t.state = state;
            t.updated_at = now;
        }
    }

    /// The state of a ticket of `meeting`.
    pub fn ticket(&self, meeting: &MeetingId, ticket: &Ticket) -> Option<&TicketState> {
        self.tickets
            .get(ticket)
            .filter(|t| &t.meeting == meeting)
            .map(|t| &t.state)
    }

    /// The waiting person gave up.
    pub fn leave(&mut self, meeting: &MeetingId, ticket: &Ticket) -> bool {
        let gone = self.take_waiter(meeting, ticket).is_some();
        if self.ticket(meeting, ticket).is_some() {
            self.tickets.remove(ticket);
        }
        gone
    }

    /// Ends a meeting's session: nobody stays admitted, nobody waits.
    /// Returns the identities that were admitted.
    pub fn end(&mut self, meeting: &MeetingId, now: i64) -> Vec<ParticipantIdentity> {
        let Some(m) = self.meetings.remove(meeting) else {
            return Vec::new();
        };
        for w in &m.waiting {
            self.decide(&w.ticket, TicketState::Ended, now);
        }
        m.admitted.into_keys().collect()
    }

    /// Forgets expired admissions and old tickets.
    pub fn housekeeping(&mut self, now: i64) {
        for m in self.meetings.values_mut() {
            m.admitted.retain(|_, a| now < a.expires_at);
        }
        self.meetings
            .retain(|_, m| !m.admitted.is_empty() || !m.waiting.is_empty());
        self.tickets
            .retain(|_, t| t.state == TicketState::Waiting || now < t.updated_at + TICKET_KEEP_SECS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(id: &str, role: MeetingRole) -> Person {
        Person {
            identity: ParticipantIdentity::new(id).expect("identity"),
            subject: id.to_owned(),
            name: id.to_owned(),
            role,
            verified: None,
            invited: true,
        }
    }

    #[test]
    fn a_token_opens_only_its_own_admission_until_it_expires() {
        let mut l = Live::default();
        let m = MeetingId::random();
        let p = person("usr_aaaaaaaaaaaa", MeetingRole::Participant);
        l.admit(&m, p.clone(), "token-1", 100);
        assert!(l.admission_for_token(&m, &p.identity, "token-1", 50).is_some());
        assert!(l.admission_for_token(&m, &p.identity, "token-2", 50).is_none());
        assert!(l.admission_for_token(&m, &p.identity, "token-1", 100).is_none());
        assert!(
            l.admission_for_token(&MeetingId::random(), &p.identity, "token-1", 50)
                .is_none()
        );
        // A new admission replaces the old token.
        l.admit(&m, p.clone(), "token-3", 200);
        assert!(l.admission_for_token(&m, &p.identity, "token-1", 50).is_none());
        assert!(l.admission_for_token(&m, &p.identity, "token-3", 50).is_some());
        l.revoke(&m, &p.identity);
        assert!(l.admission_for_token(&m, &p.identity, "token-3", 50).is_none());
    }

    #[test]
    fn the_lobby_keeps_one_place_per_person_and_ending_tells_the_waiting() {
        let mut l = Live::default();
        let m = MeetingId::random();
        let p = person("gst_aaaaaaaaaaaa", MeetingRole::Guest);
        let t1 = l.wait(&m, p.clone(), 1).expect("ticket");
        let t2 = l.wait(&m, p.clone(), 2).expect("ticket");
        assert_eq!(l.waiting(&m).len(), 1);
        assert_eq!(l.ticket(&m, &t1), None);
        assert_eq!(l.ticket(&m, &t2), Some(&TicketState::Waiting));
        assert_eq!(
            l.ticket(&MeetingId::random(), &t2),
            None,
            "a ticket belongs to one meeting"
        );
        l.end(&m, 3);
        assert_eq!(l.ticket(&m, &t2), Some(&TicketState::Ended));
        assert!(l.waiting(&m).is_empty());
        l.housekeeping(3 + TICKET_KEEP_SECS);
        assert_eq!(l.ticket(&m, &t2), None);
    }

    #[test]
    fn permissions_follow_rights_and_nobody_may_edit_their_own_attributes() {
        let r = Rights::default();
        let p = permissions(&r, MeetingRole::Participant, &BTreeMap::new());
        assert!(p.may_publish(TrackSource::Microphone) && p.may_publish(TrackSource::Camera));
        assert!(!p.may_publish(TrackSource::ScreenShare));
        assert!(p.can_publish_data && !p.can_update_metadata && !p.hidden && !p.admin);
        let silent = BTreeMap::from([
            (Right::Microphone, false),
            (Right::Camera, false),
            (Right::Chat, false),
        ]);
        let p = permissions(&r, MeetingRole::Guest, &silent);
        assert!(!p.can_publish && !p.may_publish(TrackSource::Microphone) && !p.can_publish_data);
        let h = permissions(&r, MeetingRole::Cohost, &silent);
        assert!(h.may_publish(TrackSource::ScreenShare) && h.can_publish_data);
    }
}
