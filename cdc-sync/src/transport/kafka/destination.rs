//! Kafka as a pipeline destination: a batch is durable once the broker has
//! acknowledged every record of it. With a state store, where the snapshot
//! stands is recorded there (`strangler_state`'s `published_snapshot.rs`):
//! an initial snapshot killed mid-way resumes from the slot (still at its
//! consistent point) — tables published are kept, the others are copied
//! in chunks while the stream replays everything since that point — and a
//! chunked copy resumes after the last chunk published.

use strangler_state::store::StateStore;

use super::{KafkaProducer, TransportError};
use crate::event::Record;
use crate::incremental::ChunkProgress;
use crate::lsn::Lsn;
use crate::pipeline::{Destination, Pending, PipelineError, Progress, StatusReporter};

pub struct KafkaDestination<'a> {
    pub producer: &'a KafkaProducer,
    /// Whether a complete snapshot was published before.
    pub snapshot_done: bool,
    /// Where the snapshot's progress is kept (`None`: a snapshot killed
    /// mid-way starts over).
    pub store: Option<&'a StateStore>,
    pub slot: String,
    /// The source's tables (`schema.table`).
    pub tables: Vec<String>,
}

fn store_err(e: strangler_state::StoreError) -> PipelineError {
    TransportError::Store(e).into()
}

#[async_trait::async_trait]
impl Destination for KafkaDestination<'_> {
    fn snapshot_unfinished(&self) -> bool {
        !self.snapshot_done
    }

    fn taken_from_slot(&self) -> Option<Lsn> {
        // A snapshot published from the slot: the topics hold its changes.
        self.snapshot_done.then_some(Lsn(0))
    }

    async fn resume_position(&mut self) -> Result<Option<Lsn>, PipelineError> {
        // What the broker acknowledged (or, before anything streamed, where
        // the published snapshot was consistent).
        let (Some(store), true) = (self.store, self.snapshot_done) else {
            return Ok(None);
        };
        if let Some((_, l)) = store.published(&self.slot).await.map_err(store_err)? {
            if l > 0 {
                return Ok(Some(Lsn::from_i64(l)));
            }
        }
        Ok(store
            .published_snapshot(&self.slot)
            .await
            .map_err(store_err)?
            .map(|(began, _)| Lsn::from_i64(began))
            .filter(|l| l.0 > 0))
    }

    async fn snapshot_shape(&mut self, shape: &Record) -> Result<(), PipelineError> {
        Ok(self.producer.publish(std::slice::from_ref(shape)).await?)
    }

    async fn write(
        &mut self,
        batch: &[Record],
        _through: Lsn,
        snapshot_complete: bool,
        progress: &mut Progress,
        _status: &dyn StatusReporter,
    ) -> Result<(), PipelineError> {
        self.producer.publish(batch).await?;
        progress.published += batch.len() as u64;
        if snapshot_complete {
            self.snapshot_done = true;
        }
        Ok(())
    }

    async fn start_write(
        &mut self,
        batch: &[Record],
        _through: Lsn,
        progress: &mut Progress,
    ) -> Result<Option<Pending>, PipelineError> {
        let acknowledged = self.producer.enqueue(batch).await?;
        progress.published += batch.len() as u64;
        Ok(Some(Box::pin(async move { Ok(acknowledged.await?) })))
    }

    async fn snapshot_begun(&mut self, lsn: Lsn) -> Result<(), PipelineError> {
        if let Some(store) = self.store {
            store
                .published_snapshot_begun(&self.slot, lsn.as_i64())
                .await
                .map_err(store_err)?;
        }
        Ok(())
    }

    async fn snapshot_table_done(&mut self, table: &str) -> Result<(), PipelineError> {
        if let Some(store) = self.store {
            store
                .published_chunk(&self.slot, table, None, true)
                .await
                .map_err(store_err)?;
        }
        Ok(())
    }

    async fn snapshot_unfinished_tables(
        &mut self,
        consistent: Lsn,
    ) -> Result<Option<Vec<String>>, PipelineError> {
        if self.snapshot_done {
            return Ok(Some(Vec::new()));
        }
        let Some(store) = self.store else {
            return Ok(None);
        };
        let Some((began, done)) = store
            .published_snapshot(&self.slot)
            .await
            .map_err(store_err)?
        else {
            return Ok(None);
        };
        if consistent.0 == 0 || began != consistent.as_i64() {
            return Ok(None);
        }
        let mut unfinished: Vec<String> = self
            .tables
            .iter()
            .filter(|t| !done.contains(t))
            .cloned()
            .collect();
        unfinished.sort();
        Ok(Some(unfinished))
    }

    async fn resume_snapshot(&mut self, consistent: Lsn) -> Result<(), PipelineError> {
        let (Some(store), Some(unfinished)) = (
            self.store,
            self.snapshot_unfinished_tables(consistent).await?,
        ) else {
            return Err(crate::source::SourceError::Invalid(
                "the interrupted snapshot cannot be resumed".into(),
            )
            .into());
        };
        store
            .published_resume(&self.slot, &unfinished)
            .await
            .map_err(store_err)?;
        self.snapshot_done = true;
        Ok(())
    }

    async fn chunk_progress(&mut self, p: &ChunkProgress) -> Result<(), PipelineError> {
        if let Some(store) = self.store {
            let after = p
                .after
                .as_ref()
                .map(|k| serde_json::Value::from(k.clone()).to_string());
            store
                .published_chunk(&self.slot, &p.table, after.as_deref(), p.complete)
                .await
                .map_err(store_err)?;
        }
        Ok(())
    }

    async fn chunked_in_progress(
        &mut self,
    ) -> Result<Vec<(String, Option<Vec<String>>)>, PipelineError> {
        let Some(store) = self.store else {
            return Ok(Vec::new());
        };
        Ok(store
            .published_unfinished(&self.slot)
            .await
            .map_err(store_err)?
            .into_iter()
            .map(|(table, after)| {
                let after = after.and_then(|a| serde_json::from_str::<Vec<String>>(&a).ok());
                (table, after)
            })
            .collect())
    }

    async fn confirmed(&mut self, lsn: Lsn, _wrote: bool, slot: &str, status: &dyn StatusReporter) {
        status.published(slot, lsn).await;
    }
}
