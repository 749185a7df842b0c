//! Uploading several files (or every file of a directory, not its subdirectories or hidden
//! files) as new receipts or images of their own, `concurrency` at a time: one line per file as
//! each ends (one JSON document per file with `--json`), a summary, and an exit code by the
//! class of the first failure when any failed.

use crate::output::size_text;
use crate::transfer::{progress, send};
use crate::{ExitWith, Target, exit_code, guess_type, reason_of};
use futures::StreamExt;
use imaging_proto::v1;
use std::path::{Path, PathBuf};

/// The files `paths` name: files as given, a directory's visible files in name order.
fn expand(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)?
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|p| {
                    p.is_file()
                        && !p
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// Uploads every file with `header` (its content type guessed per file if `guess`).
pub async fn upload(
    service: &Target,
    token: &str,
    header: &v1::UploadHeader,
    guess: bool,
    paths: &[PathBuf],
    concurrency: usize,
    json: bool,
) -> anyhow::Result<()> {
    let files = expand(paths)?;
    anyhow::ensure!(!files.is_empty(), "no files to upload");
    let channel = service.channel().await?;
    let total: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let bar = progress(total, &format!("{} files", files.len()));
    let results: Vec<(PathBuf, anyhow::Result<v1::UploadImageResponse>)> =
        futures::stream::iter(files)
            .map(|file| {
                let channel = channel.clone();
                let mut header = header.clone();
                if guess {
                    header.content_type = guess_type(&file);
                }
                let bar = bar.clone();
                async move {
                    let size = std::fs::metadata(&file).map_or(0, |m| m.len());
                    let result = send(channel, token, header, &file, false).await;
                    if let Some(bar) = &bar {
                        bar.inc(size);
                    }
                    (file, result)
                }
            })
            .buffer_unordered(concurrency.max(1))
            .inspect(|(file, result)| report(file, result, json, bar.as_ref()))
            .collect()
            .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let failed: Vec<&anyhow::Error> = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().err())
        .collect();
    let stored = results.len() - failed.len();
    if !json {
        println!(
            "{stored} uploaded, {} failed ({} in all)",
            failed.len(),
            size_text(
                results
                    .iter()
                    .filter_map(|(_, r)| r.as_ref().ok())
                    .map(|r| r.size_bytes)
                    .sum()
            )
        );
    }
    match failed.first() {
        None => Ok(()),
        Some(first) => {
            let code = first
                .downcast_ref::<tonic::Status>()
                .map_or(1, |status| exit_code(status.code()));
            Err(ExitWith(code).into())
        }
    }
}

/// One file's line (or JSON document).
fn report(
    file: &Path,
    result: &anyhow::Result<v1::UploadImageResponse>,
    json: bool,
    bar: Option<&indicatif::ProgressBar>,
) {
    let line = match (result, json) {
        (Ok(reply), true) => serde_json::json!({
            "file": file.display().to_string(),
            "image_id": reply.image_id,
            "size": reply.size_bytes,
            "sha256": hex::encode(&reply.sha256),
            "duplicates": reply.duplicates.iter().map(|d| d.image_id.clone()).collect::<Vec<_>>(),
        })
        .to_string(),
        (Err(err), true) => {
            let (reason, message) = reason_of(err);
            serde_json::json!({
                "file": file.display().to_string(),
                "error": {"reason": reason, "message": message},
            })
            .to_string()
        }
        (Ok(reply), false) => format!(
            "{}  {}  {}",
            file.display(),
            reply.image_id,
            size_text(reply.size_bytes)
        ),
        (Err(err), false) => {
            let (reason, message) = reason_of(err);
            format!("{}  {reason}: {message}", file.display())
        }
    };
    match bar {
        Some(bar) => bar.println(line),
        None => println!("{line}"),
    }
}
