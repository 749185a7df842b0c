//! Appending an upload's pages to a report PDF: an incremental update built from the record
//! alone (its layout and running hash), so nothing of the report is read, committed against the
//! record read; a report written whole by an earlier version is taken over once.

use super::digest::RunningSha256;
use super::lock::with_lock;
use super::place::lock_name;
use super::plan::UploadPlan;
use super::process::{Body, Content, ReportUpdateInfo, blocking, reserve_for};
use super::{Ingestor, MAX_ATTEMPTS};
use crate::error::IngestError;
use crate::state::{ImageRecord, ReportState};
use crate::storage::StorageError;
use bytes::Bytes;
use imaging_pipeline::{self as pipeline, Limits, MediaType};

impl Ingestor {
    /// Appends the upload's pages to the report PDF. Building the pages parses PDFs and decodes
    /// PNGs, which validates them; a JPEG is embedded as it is, so it is checked first (every
    /// coefficient entropy-decoded, see `pipeline::inspect`).
    /// The append is an incremental update built from the record alone (its layout and running
    /// hash): nothing of the report is read, and storage makes the new object from the old one
    /// and the increment. It is committed against the record read; if another append got there
    /// first, it is built again on the new report.
    pub(super) async fn append_report(
        &self,
        plan: &UploadPlan,
        bytes: Bytes,
        limits: Limits,
    ) -> Result<ImageRecord, IngestError> {
        let media = plan.media;
        if media == MediaType::Jpeg {
            let (work, _) =
                reserve_for(self, &bytes, media, pipeline::Step::Inspect, limits).await?;
            let checked = bytes.clone();
            blocking(self, "inspect", &work, move || {
                pipeline::inspect(&checked, media, &limits)
            })
            .await?;
        }
        with_lock(&self.catalog, lock_name(plan), self.locks, async {
            for _ in 0..MAX_ATTEMPTS {
                let previous = self
                    .catalog
                    .image(&plan.workspace, &plan.target.catalog_key())
                    .await?;
                let state = previous.as_ref().and_then(|record| {
                    let state = record.report.as_ref()?;
                    Some((state.layout.clone(), RunningSha256::decode(&state.digest)?))
                });
                // Only a report without a layout (written whole by an earlier version) is read,
                // once, to take it over.
                let read = match (&previous, &state) {
                    (Some(record), None) => record.size,
                    _ => 0,
                };
                let step = pipeline::Step::Report { report_bytes: read };
                let (work, _) = reserve_for(self, &bytes, media, step, limits).await?;
                let upload = bytes.clone();
                let content = match (&previous, state) {
                    (None, _) => {
                        let update = blocking(self, "report", &work, move || {
                            pipeline::start_report(&upload, media, &limits)
                        })
                        .await?;
                        let info = ReportUpdateInfo::from(&update);
                        Content::report(update.bytes, &info)
                    }
                    (Some(record), Some((layout, mut digest))) => {
                        let (size, pages) = (record.size, record.page_count);
                        let update = blocking(self, "report", &work, move || {
                            pipeline::append_to_report(
                                &layout, size, pages, &upload, media, &limits,
                            )
                        })
                        .await?;
                        digest.update(&update.bytes);
                        let tail = Bytes::from(update.bytes);
                        Content {
                            size: size + tail.len() as u64,
                            sha256: digest.digest(),
                            body: Body::Appended {
                                base: record.key.clone(),
                                base_len: size,
                                tail,
                            },
                            media: MediaType::Pdf,
                            width: 0,
                            height: 0,
                            pages: update.page_count,
                            report: Some(ReportState {
                                layout: update.layout,
                                digest: digest.encode(),
                            }),
                            fingerprint: None,
                        }
                    }
                    (Some(record), None) => {
                        let Some(existing) = self.objects.get(&record.key).await? else {
                            // Replaced (and deleted) since it was read: read the new one.
                            continue;
                        };
                        // A report written whole by an earlier version, or a receipt that is
                        // one image or PDF: read once, made the first version of a report.
                        let current = MediaType::from_declared(&record.content_type)
                            .unwrap_or(MediaType::Pdf);
                        let (whole, info) = blocking(self, "report", &work, move || {
                            let adopted = if current == MediaType::Pdf {
                                pipeline::adopt_report(&existing, &limits)?
                            } else {
                                pipeline::start_report(&existing, current, &limits)?
                            };
                            let appended = pipeline::append_to_report(
                                &adopted.layout,
                                adopted.bytes.len() as u64,
                                adopted.page_count,
                                &upload,
                                media,
                                &limits,
                            )?;
                            let mut whole = adopted.bytes;
                            whole.extend_from_slice(&appended.bytes);
                            Ok((whole, ReportUpdateInfo::from(&appended)))
                        })
                        .await?;
                        Content::report(whole, &info)
                    }
                };
                self.check_report_bounds(&content)?;
                match self.commit(plan, content, previous).await {
                    Ok(Some(record)) => return Ok(record),
                    // Another append committed first (or removed the report it built on).
                    Ok(None) | Err(IngestError::Storage(StorageError::BaseChanged(_))) => {}
                    Err(err) => return Err(err),
                }
            }
            Err(IngestError::Busy)
        })
        .await
    }

    /// Refuses a report past its configured size or page bound.
    fn check_report_bounds(&self, content: &Content) -> Result<(), IngestError> {
        if content.size > self.limits.report.max_bytes {
            return Err(IngestError::ReportTooLarge {
                what: "bytes",
                limit: self.limits.report.max_bytes,
            });
        }
        if content.pages > self.limits.report.max_pages {
            return Err(IngestError::ReportTooLarge {
                what: "pages",
                limit: u64::from(self.limits.report.max_pages),
            });
        }
        Ok(())
    }
}
