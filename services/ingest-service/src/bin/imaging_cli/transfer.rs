//! Moving bytes: an upload streamed in chunks, a download streamed to a file and checked, each
//! with a progress bar (bytes, rate, time left) when a person watches: stdout a terminal and
//! the file over [`PROGRESS_FROM`]; silent otherwise.

use crate::authed;
use futures::StreamExt;
use imaging_proto::v1;
use imaging_proto::v1::image_ingest_client::ImageIngestClient;
use sha2::Digest;
use std::io::IsTerminal;
use std::path::Path;
use tokio::io::AsyncWriteExt;
use tonic::transport::Channel;

/// Files smaller than this show no progress.
pub const PROGRESS_FROM: u64 = 256 * 1024;
/// Bytes per upload message.
const CHUNK: usize = 256 * 1024;

/// A progress bar for `total` bytes of `what`, if a person watches (stdout is a terminal, or
/// `IMAGING_PROGRESS=always`, or never with `IMAGING_PROGRESS=never`).
pub fn progress(total: u64, what: &str) -> Option<indicatif::ProgressBar> {
    let wanted = match std::env::var("IMAGING_PROGRESS").as_deref() {
        Ok("always") => true,
        Ok("never") => false,
        _ => std::io::stdout().is_terminal(),
    };
    if !wanted || total < PROGRESS_FROM {
        return None;
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    Some(bar)
}

/// Uploads `file` with `header` (its name, size and SHA-256 filled in), streaming it in chunks.
pub async fn send(
    channel: Channel,
    token: &str,
    mut header: v1::UploadHeader,
    file: &Path,
    show_progress: bool,
) -> anyhow::Result<v1::UploadImageResponse> {
    let bytes = tokio::fs::read(file)
        .await
        .map_err(|err| anyhow::anyhow!("reading {}: {err}", file.display()))?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    header.file_name.clone_from(&name);
    header.declared_size = bytes.len() as u64;
    header.sha256 = sha2::Sha256::digest(&bytes).to_vec();
    let bytes = bytes::Bytes::from(bytes);
    let bar = if show_progress {
        progress(bytes.len() as u64, &name)
    } else {
        None
    };
    let stream = upload_stream(header, &bytes, 0, bar.clone());
    let answer = ImageIngestClient::new(channel)
        .upload_image(authed(token, stream)?)
        .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(answer?.into_inner())
}

/// The messages of an upload: `header`, then `bytes` from `from` on in chunks (slices, no
/// copies), moving `bar` as the transport takes each.
pub fn upload_stream(
    header: v1::UploadHeader,
    bytes: &bytes::Bytes,
    from: usize,
    bar: Option<indicatif::ProgressBar>,
) -> impl futures::Stream<Item = v1::UploadImageRequest> + Send + 'static {
    let mut messages = vec![v1::UploadImageRequest {
        part: Some(v1::upload_image_request::Part::Header(header)),
    }];
    let mut at = from.min(bytes.len());
    while at < bytes.len() {
        let end = (at + CHUNK).min(bytes.len());
        messages.push(v1::UploadImageRequest {
            part: Some(v1::upload_image_request::Part::Chunk(bytes.slice(at..end))),
        });
        at = end;
    }
    tokio_stream::iter(messages).inspect(move |message| {
        if let (Some(bar), Some(v1::upload_image_request::Part::Chunk(chunk))) =
            (&bar, &message.part)
        {
            bar.inc(chunk.len() as u64);
        }
    })
}

/// Streams `url` into `output` (through a temporary file next to it, renamed once complete),
/// checking the bytes against `sha256`; the bytes written.
pub async fn download(url: &str, output: &Path, force: bool, sha256: &[u8]) -> anyhow::Result<u64> {
    anyhow::ensure!(
        force || !output.exists(),
        "{} exists; pass --force to overwrite it",
        output.display()
    );
    let response = reqwest::get(url).await?.error_for_status()?;
    let bar = response
        .content_length()
        .and_then(|total| progress(total, &output.display().to_string()));
    let dir = output
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let temp = dir.join(format!(
        ".imaging-download-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let mut file = tokio::fs::File::create(&temp).await?;
    let mut digest = sha2::Sha256::new();
    let mut written = 0u64;
    let mut body = response.bytes_stream();
    let copied: anyhow::Result<()> = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            digest.update(&chunk);
            written += chunk.len() as u64;
            file.write_all(&chunk).await?;
            if let Some(bar) = &bar {
                bar.inc(chunk.len() as u64);
            }
        }
        file.flush().await?;
        Ok(())
    }
    .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let matches = digest.finalize()[..] == *sha256;
    if copied.is_err() || !matches {
        let _ = tokio::fs::remove_file(&temp).await;
        copied?;
        anyhow::bail!("the downloaded bytes do not match the image's SHA-256; nothing was written");
    }
    tokio::fs::rename(&temp, output).await?;
    Ok(written)
}
