-- Meetings: their settings, invitees, bans and shared files.
-- Portable SQL: it runs unchanged on SQLite and PostgreSQL.

CREATE TABLE meetings (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    title TEXT NOT NULL,
    starts_at BIGINT,
    ends_at BIGINT,
    access TEXT NOT NULL,
    lobby TEXT NOT NULL,
    guests BIGINT NOT NULL,
    passcode_hash TEXT,
    locked BIGINT NOT NULL,
    rights TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX meetings_owner ON meetings (owner_id);

CREATE TABLE meeting_invitees (
    meeting_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    role TEXT NOT NULL,
    PRIMARY KEY (meeting_id, kind, value)
);
CREATE INDEX meeting_invitees_value ON meeting_invitees (kind, value);

CREATE TABLE meeting_bans (
    meeting_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (meeting_id, subject)
);
CREATE INDEX meeting_bans_subject ON meeting_bans (subject);

CREATE TABLE meeting_files (
    id TEXT PRIMARY KEY,
    meeting_id TEXT NOT NULL,
    uploader TEXT NOT NULL,
    name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    data BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX meeting_files_meeting ON meeting_files (meeting_id);
CREATE INDEX meeting_files_uploader ON meeting_files (uploader);
