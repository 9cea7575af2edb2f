//! Conclave's database: users, credentials, sessions, sign-in throttling
//! and the audit log, on SQLite (the default, a file in the data directory)
//! or PostgreSQL, with the same SQL through sqlx's `Any` driver.
//!
//! The schema lives in `migrations/`, applied in order at open. Every
//! statement is portable SQL with `$n` placeholders; times are seconds
//! since the Unix epoch and flags are `0` or `1`. The crate stores what it
//! is given: secrets arrive hashed or sealed, and rules (who may do what,
//! how long a link lives) belong to `conclave-accounts`.

mod ids;
mod meetings;
mod migrate;
mod records;

use std::path::Path;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, AssertSqlSafe, Row};

macro_rules! user_columns {
    () => {
        "id, email, display_name, password_hash, role, status, attributes, created_at, confirmed_at"
    };
}

macro_rules! session_columns {
    () => {
        "id_hash, user_id, csrf_token, level, created_at, last_seen_at, expires_at, authenticated_at, user_agent"
    };
}

pub use ids::{FileId, IdError, MeetingId, PasskeyId, Role, UserId, UserStatus};
pub use meetings::{FileRecord, InviteeRecord, MeetingRecord};
pub use records::*;

/// Why a storage operation failed. The texts name no stored values.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database: {0}")]
    Open(String),
    #[error("database migration {version} failed: {reason}")]
    Migrate { version: i64, reason: String },
    #[error("the database is newer than this server (schema {found}, known {known})")]
    TooNew { found: i64, known: i64 },
    #[error("the record already exists")]
    Conflict,
    #[error("a stored value is invalid: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(d) = &e
            && d.is_unique_violation()
        {
            return StoreError::Conflict;
        }
        StoreError::Database(e)
    }
}

impl From<IdError> for StoreError {
    fn from(e: IdError) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

type Result<T> = std::result::Result<T, StoreError>;

/// Which database is behind a [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A pool of connections to the database, migrated to the current schema.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// Every table of the schema, for checks that must see all stored data.
pub const TABLES: [&str; 14] = [
    "users",
    "email_tokens",
    "sessions",
    "totp_secrets",
    "recovery_codes",
    "passkeys",
    "oidc_identities",
    "pending_flows",
    "throttle",
    "audit_log",
    "meetings",
    "meeting_invitees",
    "meeting_bans",
    "meeting_files",
];

impl Store {
    /// Opens (and creates, readable by the owner only) an SQLite database file.
    pub async fn open_sqlite(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Open(format!("{}: {e}", dir.display())))?;
        }
        if !path.exists() {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            options
                .open(path)
                .map_err(|e| StoreError::Open(format!("{}: {e}", path.display())))?;
        }
        let url = format!("sqlite://{}?mode=rwc", path.display());
        Self::open(&url).await
    }

    /// Opens a database by URL (`sqlite://PATH` or `postgres://...`) and
    /// applies the migrations it lacks.
    pub async fn open(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::Open(
                "the database URL must start with sqlite:// or postgres://".into(),
            ));
        };
        let mut options = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 10 })
            .acquire_timeout(std::time::Duration::from_secs(10));
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::raw_sql(
                        "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; PRAGMA secure_delete = ON;",
                    )
                    .execute(&mut *conn)
                    .await?;
                    Ok(())
                })
            });
        }
        let pool = options
            .connect(url)
            .await
            .map_err(|e| StoreError::Open(redact_url_error(&e)))?;
        let store = Store { pool, backend };
        migrate::run(&store.pool).await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---- users ----

    /// Adds a user. [`StoreError::Conflict`] when the e-mail address is taken.
    pub async fn insert_user(&self, u: &User) -> Result<()> {
        sqlx::query(
            "INSERT INTO users (id, email, display_name, password_hash, role, status, attributes, created_at, confirmed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(u.id.as_str())
        .bind(u.email.clone())
        .bind(&u.display_name)
        .bind(u.password_hash.clone())
        .bind(u.role.as_str())
        .bind(u.status.as_str())
        .bind(&u.attributes)
        .bind(u.created_at)
        .bind(u.confirmed_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn user(&self, id: &UserId) -> Result<Option<User>> {
        let row = sqlx::query(concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| user_from_row(&r)).transpose()
    }

    /// The user with this (already normalised) e-mail address.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE email = $1"
        ))
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| user_from_row(&r)).transpose()
    }

    /// All users, oldest first.
    pub async fn users(&self) -> Result<Vec<User>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(user_from_row).collect()
    }

    pub async fn count_users_with_role(&self, role: Role) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users WHERE role = $1 AND status = $2")
            .bind(role.as_str())
            .bind(UserStatus::Active.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")?)
    }

    pub async fn set_password_hash(&self, id: &UserId, hash: &str) -> Result<()> {
        sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
            .bind(id.as_str())
            .bind(hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_status(&self, id: &UserId, status: UserStatus, confirmed_at: Option<i64>) -> Result<()> {
        sqlx::query("UPDATE users SET status = $2, confirmed_at = COALESCE($3, confirmed_at) WHERE id = $1")
            .bind(id.as_str())
            .bind(status.as_str())
            .bind(confirmed_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_role(&self, id: &UserId, role: Role) -> Result<()> {
        sqlx::query("UPDATE users SET role = $2 WHERE id = $1")
            .bind(id.as_str())
            .bind(role.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_profile(&self, id: &UserId, display_name: &str, attributes: &str) -> Result<()> {
        sqlx::query("UPDATE users SET display_name = $2, attributes = $3 WHERE id = $1")
            .bind(id.as_str())
            .bind(display_name)
            .bind(attributes)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes a user and every row that belongs to them, in one
    /// transaction. Audit entries are kept: they name users only by
    /// pseudonym.
    pub async fn delete_user(&self, id: &UserId) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let email: Option<String> = sqlx::query("SELECT email FROM users WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get::<Option<String>, _>("email"))
            .transpose()?
            .flatten();
        // The meetings the user owns go with everything that hangs off them.
        for sql in [
            "DELETE FROM meeting_invitees WHERE meeting_id IN (SELECT id FROM meetings WHERE owner_id = $1)",
            "DELETE FROM meeting_bans WHERE meeting_id IN (SELECT id FROM meetings WHERE owner_id = $1)",
            "DELETE FROM meeting_files WHERE meeting_id IN (SELECT id FROM meetings WHERE owner_id = $1)",
            "DELETE FROM meetings WHERE owner_id = $1",
            // In other people's meetings: the user as invitee, ban and file owner.
            "DELETE FROM meeting_invitees WHERE kind = 'user' AND value = $1",
            "DELETE FROM meeting_bans WHERE subject = $1",
            "DELETE FROM meeting_files WHERE uploader = $1",
        ] {
            sqlx::query(sql).bind(id.as_str()).execute(&mut *tx).await?;
        }
        if let Some(email) = email {
            sqlx::query("DELETE FROM meeting_invitees WHERE kind = 'email' AND value = $1")
                .bind(email)
                .execute(&mut *tx)
                .await?;
        }
        for table in [
            "email_tokens",
            "sessions",
            "totp_secrets",
            "recovery_codes",
            "passkeys",
            "oidc_identities",
            "pending_flows",
        ] {
            // The table names come from the list above.
            sqlx::query(AssertSqlSafe(format!("DELETE FROM {table} WHERE user_id = $1")))
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
        }
        let done = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    // ---- e-mail links ----

    pub async fn insert_email_token(&self, t: &EmailToken) -> Result<()> {
        sqlx::query(
            "INSERT INTO email_tokens (token_hash, user_id, purpose, created_at, expires_at, used_at) \
             VALUES ($1, $2, $3, $4, $5, NULL)",
        )
        .bind(&t.token_hash)
        .bind(t.user_id.as_str())
        .bind(t.purpose.as_str())
        .bind(t.created_at)
        .bind(t.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks a link used and returns its user, if the link exists, has this
    /// purpose, was not used before and has not expired. Two concurrent
    /// uses cannot both succeed.
    pub async fn use_email_token(
        &self,
        token_hash: &str,
        purpose: TokenPurpose,
        now: i64,
    ) -> Result<Option<UserId>> {
        let row = sqlx::query(
            "UPDATE email_tokens SET used_at = $3 \
             WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3 \
             RETURNING user_id",
        )
        .bind(token_hash)
        .bind(purpose.as_str())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok(UserId::parse(&r.try_get::<String, _>("user_id")?)?))
            .transpose()
    }

    /// The user of a link that could be used now, without using it.
    pub async fn peek_email_token(
        &self,
        token_hash: &str,
        purpose: TokenPurpose,
        now: i64,
    ) -> Result<Option<UserId>> {
        let row = sqlx::query(
            "SELECT user_id FROM email_tokens \
             WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3",
        )
        .bind(token_hash)
        .bind(purpose.as_str())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok(UserId::parse(&r.try_get::<String, _>("user_id")?)?))
            .transpose()
    }

    /// Removes the user's unused links of a purpose (a new one replaces them).
    pub async fn delete_email_tokens(&self, user: &UserId, purpose: TokenPurpose) -> Result<()> {
        sqlx::query("DELETE FROM email_tokens WHERE user_id = $1 AND purpose = $2")
            .bind(user.as_str())
            .bind(purpose.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ---- sessions ----

    pub async fn insert_session(&self, s: &SessionRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_id, csrf_token, level, created_at, last_seen_at, expires_at, \
             authenticated_at, user_agent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&s.id_hash)
        .bind(s.user_id.as_str())
        .bind(&s.csrf_token)
        .bind(s.level.as_str())
        .bind(s.created_at)
        .bind(s.last_seen_at)
        .bind(s.expires_at)
        .bind(s.authenticated_at)
        .bind(&s.user_agent)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn session(&self, id_hash: &str) -> Result<Option<SessionRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE id_hash = $1"
        ))
        .bind(id_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| session_from_row(&r)).transpose()
    }

    pub async fn sessions_of(&self, user: &UserId) -> Result<Vec<SessionRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE user_id = $1 ORDER BY created_at DESC"
        ))
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(session_from_row).collect()
    }

    pub async fn touch_session(&self, id_hash: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE sessions SET last_seen_at = $2 WHERE id_hash = $1")
            .bind(id_hash)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_session(&self, id_hash: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes a session of this user only.
    pub async fn delete_session_of(&self, user: &UserId, id_hash: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM sessions WHERE id_hash = $1 AND user_id = $2")
            .bind(id_hash)
            .bind(user.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes every session of the user except `keep`.
    pub async fn delete_sessions_of(&self, user: &UserId, keep: Option<&str>) -> Result<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id_hash <> $2")
            .bind(user.as_str())
            .bind(keep.unwrap_or(""))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    // ---- TOTP ----

    /// Stores a new (unconfirmed) TOTP secret, replacing an unconfirmed one.
    pub async fn put_totp(&self, t: &TotpRecord) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM totp_secrets WHERE user_id = $1")
            .bind(t.user_id.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO totp_secrets (user_id, secret, confirmed, last_step, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(t.user_id.as_str())
        .bind(&t.secret)
        .bind(i64::from(t.confirmed))
        .bind(t.last_step)
        .bind(t.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn totp(&self, user: &UserId) -> Result<Option<TotpRecord>> {
        let row = sqlx::query(
            "SELECT user_id, secret, confirmed, last_step, created_at FROM totp_secrets WHERE user_id = $1",
        )
        .bind(user.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(TotpRecord {
                user_id: UserId::parse(&r.try_get::<String, _>("user_id")?)?,
                secret: r.try_get("secret")?,
                confirmed: r.try_get::<i64, _>("confirmed")? != 0,
                last_step: r.try_get("last_step")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .transpose()
    }

    /// Records that the code of time step `step` was used, and marks the
    /// secret confirmed. Returns false when this or a later step was used
    /// already: a code is accepted at most once, even by concurrent requests.
    pub async fn claim_totp_step(&self, user: &UserId, step: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE totp_secrets SET last_step = $2, confirmed = 1 WHERE user_id = $1 AND last_step < $2",
        )
        .bind(user.as_str())
        .bind(step)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn delete_totp(&self, user: &UserId) -> Result<()> {
        sqlx::query("DELETE FROM totp_secrets WHERE user_id = $1")
            .bind(user.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ---- recovery codes ----

    /// Replaces all recovery codes of the user with these hashes.
    pub async fn replace_recovery_codes(&self, user: &UserId, hashes: &[String]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user.as_str())
            .execute(&mut *tx)
            .await?;
        for h in hashes {
            sqlx::query("INSERT INTO recovery_codes (user_id, code_hash, used_at) VALUES ($1, $2, NULL)")
                .bind(user.as_str())
                .bind(h)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Uses a recovery code once. False when it is unknown or used.
    pub async fn use_recovery_code(&self, user: &UserId, hash: &str, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE recovery_codes SET used_at = $3 WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
        )
        .bind(user.as_str())
        .bind(hash)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn unused_recovery_codes(&self, user: &UserId) -> Result<i64> {
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL")
                .bind(user.as_str())
                .fetch_one(&self.pool)
                .await?;
        Ok(row.try_get::<i64, _>("n")?)
    }

    // ---- passkeys ----

    pub async fn insert_passkey(&self, p: &PasskeyRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO passkeys (id, user_id, credential_id, name, data, created_at, last_used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(p.id.as_str())
        .bind(p.user_id.as_str())
        .bind(&p.credential_id)
        .bind(&p.name)
        .bind(&p.data)
        .bind(p.created_at)
        .bind(p.last_used_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn passkeys_of(&self, user: &UserId) -> Result<Vec<PasskeyRecord>> {
        let rows = sqlx::query(
            "SELECT id, user_id, credential_id, name, data, created_at, last_used_at FROM passkeys \
             WHERE user_id = $1 ORDER BY created_at, id",
        )
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PasskeyRecord {
                    id: PasskeyId::parse(&r.try_get::<String, _>("id")?)?,
                    user_id: UserId::parse(&r.try_get::<String, _>("user_id")?)?,
                    credential_id: r.try_get("credential_id")?,
                    name: r.try_get("name")?,
                    data: r.try_get("data")?,
                    created_at: r.try_get("created_at")?,
                    last_used_at: r.try_get("last_used_at")?,
                })
            })
            .collect()
    }

    pub async fn update_passkey(&self, id: &PasskeyId, data: &str, last_used_at: i64) -> Result<()> {
        sqlx::query("UPDATE passkeys SET data = $2, last_used_at = $3 WHERE id = $1")
            .bind(id.as_str())
            .bind(data)
            .bind(last_used_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_passkey(&self, user: &UserId, id: &PasskeyId) -> Result<bool> {
        let done = sqlx::query("DELETE FROM passkeys WHERE id = $1 AND user_id = $2")
            .bind(id.as_str())
            .bind(user.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    // ---- OpenID Connect identities ----

    pub async fn oidc_user(&self, provider: &str, subject: &str) -> Result<Option<UserId>> {
        let row = sqlx::query("SELECT user_id FROM oidc_identities WHERE provider = $1 AND subject = $2")
            .bind(provider)
            .bind(subject)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok(UserId::parse(&r.try_get::<String, _>("user_id")?)?))
            .transpose()
    }

    /// Records an external identity of a user, or updates its claims.
    pub async fn put_oidc_identity(&self, i: &OidcIdentity) -> Result<()> {
        let done = sqlx::query(
            "UPDATE oidc_identities SET claims = $3, last_login_at = $4 WHERE provider = $1 AND subject = $2",
        )
        .bind(&i.provider)
        .bind(&i.subject)
        .bind(&i.claims)
        .bind(i.last_login_at)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            sqlx::query(
                "INSERT INTO oidc_identities (provider, subject, user_id, claims, created_at, last_login_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&i.provider)
            .bind(&i.subject)
            .bind(i.user_id.as_str())
            .bind(&i.claims)
            .bind(i.created_at)
            .bind(i.last_login_at)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    pub async fn oidc_identities_of(&self, user: &UserId) -> Result<Vec<OidcIdentity>> {
        let rows = sqlx::query(
            "SELECT provider, subject, user_id, claims, created_at, last_login_at FROM oidc_identities \
             WHERE user_id = $1 ORDER BY provider",
        )
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OidcIdentity {
                    provider: r.try_get("provider")?,
                    subject: r.try_get("subject")?,
                    user_id: UserId::parse(&r.try_get::<String, _>("user_id")?)?,
                    claims: r.try_get("claims")?,
                    created_at: r.try_get("created_at")?,
                    last_login_at: r.try_get("last_login_at")?,
                })
            })
            .collect()
    }

    // ---- flows in progress (WebAuthn ceremonies, OpenID Connect logins) ----

    pub async fn put_flow(&self, f: &PendingFlow) -> Result<()> {
        sqlx::query(
            "INSERT INTO pending_flows (id_hash, kind, user_id, data, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&f.id_hash)
        .bind(&f.kind)
        .bind(f.user_id.as_ref().map(|u| u.as_str().to_owned()))
        .bind(&f.data)
        .bind(f.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes (reads and deletes) a flow of this kind that has not expired.
    /// A flow is taken at most once.
    pub async fn take_flow(&self, id_hash: &str, kind: &str, now: i64) -> Result<Option<PendingFlow>> {
        let row = sqlx::query(
            "DELETE FROM pending_flows WHERE id_hash = $1 AND kind = $2 \
             RETURNING id_hash, kind, user_id, data, expires_at",
        )
        .bind(id_hash)
        .bind(kind)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let flow = PendingFlow {
            id_hash: r.try_get("id_hash")?,
            kind: r.try_get("kind")?,
            user_id: r
                .try_get::<Option<String>, _>("user_id")?
                .map(|u| UserId::parse(&u))
                .transpose()?,
            data: r.try_get("data")?,
            expires_at: r.try_get("expires_at")?,
        };
        Ok((flow.expires_at > now).then_some(flow))
    }

    // ---- sign-in throttling ----

    pub async fn throttle(&self, key: &str) -> Result<Option<ThrottleState>> {
        let row = sqlx::query("SELECT failures, window_start, locked_until FROM throttle WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(ThrottleState {
                failures: r.try_get("failures")?,
                window_start: r.try_get("window_start")?,
                locked_until: r.try_get("locked_until")?,
            })
        })
        .transpose()
    }

    pub async fn put_throttle(&self, key: &str, s: &ThrottleState) -> Result<()> {
        let done = sqlx::query(
            "UPDATE throttle SET failures = $2, window_start = $3, locked_until = $4 WHERE key = $1",
        )
        .bind(key)
        .bind(s.failures)
        .bind(s.window_start)
        .bind(s.locked_until)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            let inserted = sqlx::query(
                "INSERT INTO throttle (key, failures, window_start, locked_until) VALUES ($1, $2, $3, $4)",
            )
            .bind(key)
            .bind(s.failures)
            .bind(s.window_start)
            .bind(s.locked_until)
            .execute(&self.pool)
            .await;
            match inserted {
                Ok(_) | Err(sqlx::Error::Database(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    pub async fn clear_throttle(&self, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM throttle WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ---- audit log ----

    pub async fn append_audit(&self, e: &AuditEntry) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_log (id, at, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&e.id)
        .bind(e.at)
        .bind(&e.actor)
        .bind(&e.action)
        .bind(&e.subject)
        .bind(&e.detail)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest audit entries, newest first.
    pub async fn audit(&self, limit: i64) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, subject, detail FROM audit_log ORDER BY at DESC, id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    subject: r.try_get("subject")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }

    // ---- housekeeping ----

    /// Removes expired sessions, links, flows and throttle entries.
    pub async fn purge_expired(&self, now: i64, idle_limit: i64) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at <= $2")
            .bind(now)
            .bind(now - idle_limit)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM email_tokens WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM pending_flows WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM throttle WHERE locked_until <= $1 AND window_start <= $2")
            .bind(now)
            .bind(now - 24 * 3600)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every table of the database as the catalogue lists it.
    pub async fn table_names(&self) -> Result<Vec<String>> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "SELECT name AS t FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            }
            Backend::Postgres => {
                "SELECT CAST(table_name AS TEXT) AS t FROM information_schema.tables \
                 WHERE table_schema = current_schema() ORDER BY 1"
            }
        };
        let rows = sqlx::query(sql).fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok(r.try_get::<String, _>("t")?)).collect()
    }

    /// The tables (as `table.column`) in which any column's text contains
    /// `needle`. Reads every column of every table the catalogue lists, so
    /// it also sees tables added later.
    pub async fn find_text(&self, needle: &str) -> Result<Vec<String>> {
        let mut found = Vec::new();
        let pattern = format!(
            "%{}%",
            needle
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        for table in self.table_names().await? {
            if !table.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(StoreError::Corrupt(format!("unexpected table name {table:?}")));
            }
            let sql = match self.backend {
                Backend::Sqlite => format!("SELECT name AS c FROM pragma_table_info('{table}')"),
                Backend::Postgres => format!(
                    "SELECT CAST(column_name AS TEXT) AS c FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND table_name = '{table}'"
                ),
            };
            // Table and column names come from the catalogue and were checked above.
            let columns: Vec<String> = sqlx::query(AssertSqlSafe(sql))
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| r.try_get::<String, _>("c"))
                .collect::<std::result::Result<_, _>>()?;
            for column in columns {
                if !column.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err(StoreError::Corrupt(format!("unexpected column name {column:?}")));
                }
                let row = sqlx::query(AssertSqlSafe(format!(
                    "SELECT COUNT(*) AS n FROM {table} WHERE CAST({column} AS TEXT) LIKE $1 ESCAPE '\\'"
                )))
                .bind(&pattern)
                .fetch_one(&self.pool)
                .await?;
                if row.try_get::<i64, _>("n")? > 0 {
                    found.push(format!("{table}.{column}"));
                }
            }
        }
        Ok(found)
    }
}

fn user_from_row(r: &AnyRow) -> Result<User> {
    Ok(User {
        id: UserId::parse(&r.try_get::<String, _>("id")?)?,
        email: r.try_get("email")?,
        display_name: r.try_get("display_name")?,
        password_hash: r.try_get("password_hash")?,
        role: Role::parse(&r.try_get::<String, _>("role")?)?,
        status: UserStatus::parse(&r.try_get::<String, _>("status")?)?,
        attributes: r.try_get("attributes")?,
        created_at: r.try_get("created_at")?,
        confirmed_at: r.try_get("confirmed_at")?,
    })
}

fn session_from_row(r: &AnyRow) -> Result<SessionRecord> {
    Ok(SessionRecord {
        id_hash: r.try_get("id_hash")?,
        user_id: UserId::parse(&r.try_get::<String, _>("user_id")?)?,
        csrf_token: r.try_get("csrf_token")?,
        level: SessionLevel::parse(&r.try_get::<String, _>("level")?)
            .ok_or_else(|| StoreError::Corrupt("session level".into()))?,
        created_at: r.try_get("created_at")?,
        last_seen_at: r.try_get("last_seen_at")?,
        expires_at: r.try_get("expires_at")?,
        authenticated_at: r.try_get("authenticated_at")?,
        user_agent: r.try_get("user_agent")?,
    })
}

/// A connection error without the URL (which may hold a password).
fn redact_url_error(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Configuration(_) => "the database URL is not valid".into(),
        sqlx::Error::Io(io) => format!("cannot reach the database: {io}"),
        sqlx::Error::Tls(_) => "TLS to the database failed".into(),
        sqlx::Error::Database(d) => format!("the database refused: {}", d.message()),
        sqlx::Error::PoolTimedOut => "timed out connecting to the database".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
