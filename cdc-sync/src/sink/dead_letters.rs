//! Dead letters: a record that cannot be applied is rolled back alone
//! (savepoint) and kept in `strangler_cdc_dead_letters` with the reason;
//! the Kafka transport also publishes it to `<prefix>.dlq`: a row is stored
//! unpublished with the batch, published after the commit and then marked,
//! and a worker publishes what is left unmarked when it starts — so a crash
//! between commit and publish loses no dead letter (an outbox).

use serde_json::Value;

use super::{db_err, Sink, SinkError};
use crate::event::Record;

/// Sets a record that cannot be applied aside, with the reason.
pub(super) async fn dead_letter(
    conn: &mut sqlx::PgConnection,
    sink: &str,
    r: &Record,
    reason: &str,
    published: bool,
) -> Result<(), SinkError> {
    tracing::warn!(sink, topic = %r.topic, reason, "event set aside to the dead-letter table");
    sqlx::query("INSERT INTO strangler_cdc_dead_letters (sink, topic, key, value, reason, published) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(sink)
        .bind(&r.topic)
        .bind(r.key.as_ref().map(Value::to_string))
        .bind(r.value.as_ref().map(Value::to_string))
        .bind(reason)
        .bind(published)
        .execute(conn)
        .await
        .map_err(db_err(sink))?;
    Ok(())
}

/// A dead letter waiting for its topic: id, topic, key, value, reason.
pub type Unpublished = (i64, String, Option<String>, Option<String>, String);

impl Sink {
    /// Keeps new dead letters unpublished until marked (the Kafka
    /// transport publishes them to its dead-letter topic).
    pub fn publishing_dead_letters(mut self) -> Sink {
        self.publishes_dead_letters = true;
        self
    }

    /// Dead letters of this sink not yet published, oldest first.
    pub async fn unpublished_dead_letters(&mut self) -> Result<Vec<Unpublished>, SinkError> {
        sqlx::query_as(
            "SELECT id, topic, key, value, reason FROM strangler_cdc_dead_letters WHERE sink = $1 AND NOT published ORDER BY id",
        )
        .bind(&self.name)
        .fetch_all(&mut self.conn)
        .await
        .map_err(|e| self.db(e))
    }

    /// Marks dead letters as published.
    pub async fn mark_dead_letters_published(&mut self, ids: &[i64]) -> Result<(), SinkError> {
        sqlx::query("UPDATE strangler_cdc_dead_letters SET published = true WHERE id = ANY($1)")
            .bind(ids)
            .execute(&mut self.conn)
            .await
            .map_err(|e| self.db(e))?;
        Ok(())
    }

    /// Dead letters kept so far.
    pub async fn dead_letters(&mut self) -> Result<i64, SinkError> {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM strangler_cdc_dead_letters WHERE sink = $1")
                .bind(&self.name)
                .fetch_one(&mut self.conn)
                .await
                .map_err(db_err(&self.name))?;
        Ok(n)
    }
}
