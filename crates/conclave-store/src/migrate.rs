//! Schema migrations: the files of `migrations/` in order, each applied
//! once, inside a transaction, and recorded in `schema_version`.

use sqlx::{AnyPool, AssertSqlSafe, Row};

use crate::StoreError;

/// `(version, SQL)` in order. A released migration is never edited; a
/// change is a new file.
const MIGRATIONS: [(i64, &str); 2] = [
    (1, include_str!("../migrations/0001_accounts.sql")),
    (2, include_str!("../migrations/0002_meetings.sql")),
];

/// The statements of a migration file: split at `;` line ends, comments dropped.
fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        let line = line.trim_end();
        if line.trim_start().starts_with("--") || line.trim().is_empty() {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if line.ends_with(';') {
            out.push(current.trim().trim_end_matches(';').to_owned());
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_owned());
    }
    out
}

pub(crate) async fn run(pool: &AnyPool) -> Result<(), StoreError> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .execute(pool)
    .await?;
    let row = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM schema_version")
        .fetch_one(pool)
        .await?;
    let current: i64 = row.try_get("v")?;
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > known {
        return Err(StoreError::TooNew {
            found: current,
            known,
        });
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    for (version, sql) in MIGRATIONS {
        if version <= current {
            continue;
        }
        let fail = |e: sqlx::Error| StoreError::Migrate {
            version,
            reason: e.to_string(),
        };
        let mut tx = pool.begin().await.map_err(fail)?;
        for statement in statements(sql) {
            // The statements are the embedded migration files.
            sqlx::query(AssertSqlSafe(statement))
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
        }
        sqlx::query("INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)")
            .bind(version)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        tracing::info!(version, "database migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_split_and_comments_dropped() {
        let s = statements("-- a comment\nCREATE TABLE a (x BIGINT);\n\nCREATE INDEX i\n  ON a (x);\n");
        assert_eq!(s, vec!["CREATE TABLE a (x BIGINT)", "CREATE INDEX i\n  ON a (x)"]);
        for (_, sql) in MIGRATIONS {
            assert!(!statements(sql).is_empty());
        }
    }
}
