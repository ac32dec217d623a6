//! The embedded sinks as a pipeline [`Destination`]: a batch is durable
//! once every sink has committed it together with its offset.

use crate::event::Record;
use crate::lsn::Lsn;
use crate::pipeline::{Destination, PipelineError, Progress, StatusReporter};

use super::{CopyJob, Sink};

/// Every sink of an embedded pipeline, applied in turn.
pub struct Sinks<'a>(pub &'a mut [Sink]);

#[async_trait::async_trait]
impl Destination for Sinks<'_> {
    fn snapshot_unfinished(&self) -> bool {
        self.0.iter().any(|s| !s.snapshot_done())
    }

    fn taken_from_slot(&self) -> Option<Lsn> {
        self.0
            .iter()
            .filter(|s| s.snapshot_done() || s.position().0 > 0)
            .map(|s| s.position())
            .max()
    }

    async fn resume_position(&mut self) -> Result<Option<Lsn>, PipelineError> {
        // The oldest of the sinks that stream: each skips what it has (a
        // sink without a snapshot gets one first).
        Ok(self
            .0
            .iter()
            .filter(|s| s.snapshot_done())
            .map(|s| s.position())
            .min()
            .filter(|l| l.0 > 0))
    }

    async fn reset(&mut self) -> Result<(), PipelineError> {
        for s in self.0.iter_mut() {
            s.reset().await?;
        }
        Ok(())
    }

    async fn write(
        &mut self,
        batch: &[Record],
        through: Lsn,
        snapshot_complete: bool,
        progress: &mut Progress,
        status: &dyn StatusReporter,
    ) -> Result<(), PipelineError> {
        // A snapshot's rows (and its end) go to the sinks taking one: a
        // sink that streams already keeps its position (a snapshot for a
        // sink added beside it, from a source without a slot).
        let snapshot = through.0 == 0 || snapshot_complete;
        for sink in self
            .0
            .iter_mut()
            .filter(|s| !(snapshot && s.snapshot_done()))
        {
            let a = sink.apply(batch, through, snapshot_complete).await?;
            progress.count_applied(&sink.name, a.rows);
            progress.dead_letters += a.dead_letters;
            if through.0 > 0 {
                for (s, t) in sink.reported_tables() {
                    status.applied(&sink.name, (s, &t), through).await;
                }
            }
        }
        Ok(())
    }

    async fn write_part(
        &mut self,
        part: &[Record],
        through: Lsn,
        last: bool,
        progress: &mut Progress,
        status: &dyn StatusReporter,
    ) -> Result<(), PipelineError> {
        for sink in self.0.iter_mut() {
            let a = sink.apply_part(part, through, last).await?;
            progress.count_applied(&sink.name, a.rows);
            progress.dead_letters += a.dead_letters;
            if last {
                for (s, t) in sink.reported_tables() {
                    status.applied(&sink.name, (s, &t), through).await;
                }
            }
        }
        Ok(())
    }

    async fn snapshot_begun(&mut self, lsn: Lsn) -> Result<(), PipelineError> {
        for sink in self.0.iter_mut().filter(|s| !s.snapshot_done()) {
            sink.snapshot_begun(lsn).await?;
        }
        Ok(())
    }

    async fn snapshot_table_done(&mut self, table: &str) -> Result<(), PipelineError> {
        for sink in self.0.iter_mut().filter(|s| !s.snapshot_done()) {
            sink.snapshot_table_done(table).await?;
        }
        Ok(())
    }

    async fn snapshot_unfinished_tables(
        &mut self,
        consistent: Lsn,
    ) -> Result<Option<Vec<String>>, PipelineError> {
        // Unfinished in any sink: copied again in chunks (harmless for a
        // sink that had it).
        let mut all = Vec::new();
        for sink in self.0.iter_mut() {
            let Some(mine) = sink.snapshot_unfinished_tables(consistent).await? else {
                return Ok(None);
            };
            all.extend(mine);
        }
        all.sort();
        all.dedup();
        Ok(Some(all))
    }

    async fn adopt_new_sinks(&mut self, confirmed: Lsn) -> Result<Vec<String>, PipelineError> {
        // Only beside sinks that stream already: with none, the initial
        // snapshot is everyone's.
        if !self.0.iter().any(|s| s.snapshot_done()) {
            return Ok(Vec::new());
        }
        let mut adopted = Vec::new();
        for sink in self.0.iter_mut().filter(|s| s.is_fresh()) {
            let tables: Vec<String> = sink.tables().map(|(s, _)| s.to_string()).collect();
            sink.resume_snapshot(confirmed, &tables).await?;
            adopted.push(sink.name.clone());
        }
        Ok(adopted)
    }

    async fn resume_snapshot(&mut self, consistent: Lsn) -> Result<(), PipelineError> {
        let Some(tables) = self.snapshot_unfinished_tables(consistent).await? else {
            return Err(crate::source::SourceError::Invalid(format!(
                "no snapshot began at {consistent} to resume"
            ))
            .into());
        };
        for sink in self.0.iter_mut() {
            sink.resume_snapshot(consistent, &tables).await?;
        }
        Ok(())
    }

    async fn chunk_progress(
        &mut self,
        p: &crate::pipeline::ChunkProgress,
    ) -> Result<(), PipelineError> {
        for sink in self.0.iter_mut() {
            if sink.skip_chunks_of(&p.table) {
                if p.after.is_none() && !p.complete {
                    // A new copy of the table requested meanwhile: it is
                    // this sink's too (it starts once the other ends), so
                    // it is recorded here — a restart in between still
                    // copies it.
                    sink.record_chunk(p).await?;
                } else if p.complete {
                    // The copy for other sinks ended.
                    sink.set_skip_chunks(&p.table, false);
                }
                continue;
            }
            sink.record_chunk(p).await?;
            sink.set_copying(&p.table, !p.complete);
        }
        Ok(())
    }

    async fn chunked_in_progress(
        &mut self,
    ) -> Result<Vec<(String, Option<Vec<String>>)>, PipelineError> {
        // Every table some sink has unfinished (sinks may take different
        // tables); sinks that disagree on where it stands start it over
        // (copying again is harmless; skipping is not).
        let mut all: Vec<(String, Option<Vec<String>>)> = Vec::new();
        let mut unfinished_in: Vec<Vec<String>> = Vec::new();
        for sink in self.0.iter_mut() {
            let mine = sink.unfinished_chunks().await?;
            let mut tables = Vec::new();
            for (t, after) in mine {
                sink.set_copying(&t, true);
                tables.push(t.clone());
                match all.iter_mut().find(|(at, _)| *at == t) {
                    Some((_, a)) if *a != after => *a = None,
                    Some(_) => {}
                    None => all.push((t, after)),
                }
            }
            unfinished_in.push(tables);
        }
        // A sink that has a table complete while another copies it (a sink
        // added later) skips that copy's rows: it is not copied again.
        for (sink, mine) in self.0.iter_mut().zip(&unfinished_in) {
            for (t, _) in &all {
                if !mine.contains(t) && sink.target_of(t).is_some() {
                    sink.set_skip_chunks(t, true);
                }
            }
        }
        Ok(all)
    }

    async fn snapshot_shape(&mut self, shape: &Record) -> Result<(), PipelineError> {
        for sink in self.0.iter_mut().filter(|s| !s.snapshot_done()) {
            sink.note_snapshot_shape(shape).await?;
        }
        Ok(())
    }

    async fn copy_columns(
        &mut self,
        table: &str,
        columns: &[(String, String)],
    ) -> Result<Option<Vec<String>>, PipelineError> {
        // One sink takes the table (COPY text goes to one connection);
        // several, or none: records.
        let mut takers = self.0.iter().filter(|s| s.target_of(table).is_some());
        let (Some(sink), None) = (takers.next(), takers.next()) else {
            return Ok(None);
        };
        Ok(sink
            .copy_columns(table, columns)
            .map(|pairs| pairs.into_iter().map(|(src, _)| src).collect()))
    }

    async fn copy_job(
        &mut self,
        table: &str,
        columns: &[String],
        direct: Option<bool>,
    ) -> Result<CopyJob, PipelineError> {
        let job = match self.0.iter_mut().find(|s| s.target_of(table).is_some()) {
            Some(sink) => sink.copy_job(table, columns, direct).await?,
            None => None,
        };
        job.ok_or_else(|| {
            crate::source::SourceError::Invalid(format!("{table}: no sink takes it as COPY text"))
                .into()
        })
    }

    async fn confirmed(&mut self, lsn: Lsn, wrote: bool, _slot: &str, status: &dyn StatusReporter) {
        // An idle or skipped position: every table is applied up to it.
        if !wrote {
            for sink in self.0.iter() {
                for (s, t) in sink.reported_tables() {
                    status.applied(&sink.name, (s, &t), lsn).await;
                }
            }
        }
    }
}
