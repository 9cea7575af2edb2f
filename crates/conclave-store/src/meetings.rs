//! Meetings, their invitees, bans and shared files.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::ids::{FileId, MeetingId, UserId};
use crate::{Result, Store};

macro_rules! meeting_columns {
    () => {
        "id, owner_id, title, starts_at, ends_at, access, lobby, guests, passcode_hash, locked, rights, created_at, updated_at"
    };
}

/// A meeting's settings. `access`, `lobby` and `rights` are stored as
/// given; `conclave-meetings` decides what they mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingRecord {
    pub id: MeetingId,
    pub owner_id: UserId,
    pub title: String,
    pub starts_at: Option<i64>,
    pub ends_at: Option<i64>,
    pub access: String,
    pub lobby: String,
    pub guests: bool,
    /// PHC string of the passcode, if one is set.
    pub passcode_hash: Option<String>,
    pub locked: bool,
    /// JSON object of the meeting's rights.
    pub rights: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Someone invited: an account (`user`), an address (`email`), an e-mail
/// domain (`domain`) or a group (`group`), with the role they get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteeRecord {
    pub kind: String,
    pub value: String,
    pub role: String,
}

/// A file shared in a meeting (without its content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    pub id: FileId,
    pub meeting_id: MeetingId,
    /// The participant identity of who shared it.
    pub uploader: String,
    pub name: String,
    pub content_type: String,
    pub size: i64,
    pub created_at: i64,
}

fn b(flag: bool) -> i64 {
    i64::from(flag)
}

fn meeting_from_row(r: &AnyRow) -> Result<MeetingRecord> {
    Ok(MeetingRecord {
        id: MeetingId::parse(&r.try_get::<String, _>("id")?)?,
        owner_id: UserId::parse(&r.try_get::<String, _>("owner_id")?)?,
        title: r.try_get("title")?,
        starts_at: r.try_get("starts_at")?,
        ends_at: r.try_get("ends_at")?,
        access: r.try_get("access")?,
        lobby: r.try_get("lobby")?,
        guests: r.try_get::<i64, _>("guests")? != 0,
        passcode_hash: r.try_get("passcode_hash")?,
        locked: r.try_get::<i64, _>("locked")? != 0,
        rights: r.try_get("rights")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn file_from_row(r: &AnyRow) -> Result<FileRecord> {
    Ok(FileRecord {
        id: FileId::parse(&r.try_get::<String, _>("id")?)?,
        meeting_id: MeetingId::parse(&r.try_get::<String, _>("meeting_id")?)?,
        uploader: r.try_get("uploader")?,
        name: r.try_get("name")?,
        content_type: r.try_get("content_type")?,
        size: r.try_get("size")?,
        created_at: r.try_get("created_at")?,
    })
}

impl Store {
    /// Adds a meeting with its invitees, in one transaction.
    pub async fn insert_meeting(&self, m: &MeetingRecord, invitees: &[InviteeRecord]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(concat!(
            "INSERT INTO meetings (",
            meeting_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))
        .bind(m.id.as_str())
        .bind(m.owner_id.as_str())
        .bind(&m.title)
        .bind(m.starts_at)
        .bind(m.ends_at)
        .bind(&m.access)
        .bind(&m.lobby)
        .bind(b(m.guests))
        .bind(m.passcode_hash.clone())
        .bind(b(m.locked))
        .bind(&m.rights)
        .bind(m.created_at)
        .bind(m.updated_at)
        .execute(&mut *tx)
        .await?;
        for i in invitees {
            insert_invitee(&mut tx, &m.id, i).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Replaces a meeting's settings and invitees, in one transaction.
    /// `false` when there is no such meeting.
    pub async fn update_meeting(&self, m: &MeetingRecord, invitees: &[InviteeRecord]) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE meetings SET title = $2, starts_at = $3, ends_at = $4, access = $5, lobby = $6, guests = $7, \
             passcode_hash = $8, locked = $9, rights = $10, updated_at = $11 WHERE id = $1",
        )
        .bind(m.id.as_str())
        .bind(&m.title)
        .bind(m.starts_at)
        .bind(m.ends_at)
        .bind(&m.access)
        .bind(&m.lobby)
        .bind(b(m.guests))
        .bind(m.passcode_hash.clone())
        .bind(b(m.locked))
        .bind(&m.rights)
        .bind(m.updated_at)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM meeting_invitees WHERE meeting_id = $1")
            .bind(m.id.as_str())
            .execute(&mut *tx)
            .await?;
        for i in invitees {
            insert_invitee(&mut tx, &m.id, i).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    pub async fn meeting(&self, id: &MeetingId) -> Result<Option<MeetingRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            meeting_columns!(),
            " FROM meetings WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| meeting_from_row(&r)).transpose()
    }

    pub async fn invitees(&self, id: &MeetingId) -> Result<Vec<InviteeRecord>> {
        let rows = sqlx::query(
            "SELECT kind, value, role FROM meeting_invitees WHERE meeting_id = $1 ORDER BY kind, value",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(InviteeRecord {
                    kind: r.try_get("kind")?,
                    value: r.try_get("value")?,
                    role: r.try_get("role")?,
                })
            })
            .collect()
    }

    /// The meetings a user owns, newest first.
    pub async fn meetings_owned_by(&self, owner: &UserId) -> Result<Vec<MeetingRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            meeting_columns!(),
            " FROM meetings WHERE owner_id = $1 ORDER BY created_at DESC, id"
        ))
        .bind(owner.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(meeting_from_row).collect()
    }

    /// The ids of meetings with an invitee of this kind and value.
    pub async fn meetings_inviting(&self, kind: &str, value: &str) -> Result<Vec<MeetingId>> {
        let rows = sqlx::query("SELECT meeting_id FROM meeting_invitees WHERE kind = $1 AND value = $2")
            .bind(kind)
            .bind(value)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok(MeetingId::parse(&r.try_get::<String, _>("meeting_id")?)?))
            .collect()
    }

    pub async fn set_meeting_locked(&self, id: &MeetingId, locked: bool, now: i64) -> Result<()> {
        sqlx::query("UPDATE meetings SET locked = $2, updated_at = $3 WHERE id = $1")
            .bind(id.as_str())
            .bind(b(locked))
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_meeting_rights(&self, id: &MeetingId, rights: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE meetings SET rights = $2, updated_at = $3 WHERE id = $1")
            .bind(id.as_str())
            .bind(rights)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes a meeting with its invitees, bans and files.
    pub async fn delete_meeting(&self, id: &MeetingId) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        for sql in [
            "DELETE FROM meeting_invitees WHERE meeting_id = $1",
            "DELETE FROM meeting_bans WHERE meeting_id = $1",
            "DELETE FROM meeting_files WHERE meeting_id = $1",
        ] {
            sqlx::query(sql).bind(id.as_str()).execute(&mut *tx).await?;
        }
        let done = sqlx::query("DELETE FROM meetings WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Bars `subject` (a user id or a guest identity) from the meeting.
    pub async fn ban(&self, id: &MeetingId, subject: &str, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO meeting_bans (meeting_id, subject, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (meeting_id, subject) DO NOTHING",
        )
        .bind(id.as_str())
        .bind(subject)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn is_banned(&self, id: &MeetingId, subject: &str) -> Result<bool> {
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM meeting_bans WHERE meeting_id = $1 AND subject = $2")
                .bind(id.as_str())
                .bind(subject)
                .fetch_one(&self.pool)
                .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    /// Stores a shared file.
    pub async fn insert_file(&self, f: &FileRecord, data: &[u8]) -> Result<()> {
        sqlx::query(
            "INSERT INTO meeting_files (id, meeting_id, uploader, name, content_type, size, data, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(f.id.as_str())
        .bind(f.meeting_id.as_str())
        .bind(&f.uploader)
        .bind(&f.name)
        .bind(&f.content_type)
        .bind(f.size)
        .bind(data.to_vec())
        .bind(f.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A file of a meeting with its content.
    pub async fn file(&self, meeting: &MeetingId, id: &FileId) -> Result<Option<(FileRecord, Vec<u8>)>> {
        let row = sqlx::query(
            "SELECT id, meeting_id, uploader, name, content_type, size, created_at, data \
             FROM meeting_files WHERE id = $1 AND meeting_id = $2",
        )
        .bind(id.as_str())
        .bind(meeting.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((file_from_row(&r)?, r.try_get::<Vec<u8>, _>("data")?)))
            .transpose()
    }

    /// The files of a meeting, oldest first, without their content.
    pub async fn files_of(&self, meeting: &MeetingId) -> Result<Vec<FileRecord>> {
        let rows = sqlx::query(
            "SELECT id, meeting_id, uploader, name, content_type, size, created_at \
             FROM meeting_files WHERE meeting_id = $1 ORDER BY created_at, id",
        )
        .bind(meeting.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(file_from_row).collect()
    }

    /// Deletes every file of a meeting; returns how many went.
    pub async fn delete_files_of(&self, meeting: &MeetingId) -> Result<u64> {
        let done = sqlx::query("DELETE FROM meeting_files WHERE meeting_id = $1")
            .bind(meeting.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

async fn insert_invitee(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    meeting: &MeetingId,
    i: &InviteeRecord,
) -> Result<()> {
    sqlx::query("INSERT INTO meeting_invitees (meeting_id, kind, value, role) VALUES ($1, $2, $3, $4)")
        .bind(meeting.as_str())
        .bind(&i.kind)
        .bind(&i.value)
        .bind(&i.role)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
