//! `upload --resume`: a file sent through a resumable upload session, so that an upload cut
//! off (a dropped network, a killed command) continues where the service's committed bytes end
//! when the same command runs again. The session's ID is kept in a small file under
//! `$XDG_CACHE_HOME/imaging/uploads` (else `~/.cache/imaging/uploads`), named by the address,
//! the target and the file's SHA-256, and removed once the upload is complete; a session the
//! service no longer knows (expired, cancelled) is started afresh.

use crate::authed;
use crate::transfer::{progress, upload_stream};
use imaging_proto::v1;
use imaging_proto::v1::image_ingest_client::ImageIngestClient;
use sha2::Digest;
use std::path::{Path, PathBuf};
use tonic::transport::Channel;

/// The directory of the session files.
fn state_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("imaging").join("uploads"))
}

/// Uploads `file` with `header` through a session, resuming the one an earlier run left.
pub async fn upload(
    channel: Channel,
    addr: &str,
    token: &str,
    mut header: v1::UploadHeader,
    file: &Path,
) -> anyhow::Result<v1::UploadImageResponse> {
    let bytes = bytes::Bytes::from(
        tokio::fs::read(file)
            .await
            .map_err(|err| anyhow::anyhow!("reading {}: {err}", file.display()))?,
    );
    let sha256 = sha2::Sha256::digest(&bytes).to_vec();
    header.file_name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    header.declared_size = bytes.len() as u64;
    header.sha256.clone_from(&sha256);
    // One session file per service, target and file content.
    let mut key = sha2::Sha256::new();
    key.update(addr.as_bytes());
    key.update([0]);
    key.update(format!("{:?}", header.target).as_bytes());
    key.update([0]);
    key.update(&sha256);
    let state = state_dir().map(|dir| dir.join(format!("{}.session", hex::encode(key.finalize()))));
    let mut client = ImageIngestClient::new(channel);
    let known = match &state {
        Some(path) => tokio::fs::read_to_string(path).await.ok(),
        None => None,
    };
    let mut status = None;
    if let Some(id) = known.map(|id| id.trim().to_owned()) {
        match client
            .query_upload(authed(token, v1::QueryUploadRequest { upload_id: id })?)
            .await
        {
            Ok(found) => status = Some(found.into_inner()),
            Err(err) if err.code() == tonic::Code::NotFound => {}
            Err(err) => return Err(err.into()),
        }
    }
    let status = match status {
        Some(status) => status,
        None => {
            let started = client
                .start_upload(authed(
                    token,
                    v1::StartUploadRequest {
                        header: Some(header.clone()),
                        client_metadata: String::new(),
                    },
                )?)
                .await?
                .into_inner();
            if let Some(path) = &state {
                if let Some(dir) = path.parent() {
                    tokio::fs::create_dir_all(dir).await?;
                }
                tokio::fs::write(path, &started.upload_id).await?;
            }
            started
        }
    };
    if status.complete
        && let Some(result) = status.result
    {
        forget(state.as_deref()).await;
        return Ok(result);
    }
    let offset = usize::try_from(status.committed_size)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let bar = progress(bytes.len() as u64, &header.file_name);
    if let Some(bar) = &bar {
        bar.set_position(offset as u64);
    }
    let write = v1::UploadHeader {
        upload_id: status.upload_id.clone(),
        write_offset: offset as u64,
        ..Default::default()
    };
    let stream = upload_stream(write, &bytes, offset, bar.clone());
    let answer = client.upload_image(authed(token, stream)?).await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let answer = answer
        .inspect_err(|status| {
            // A refusal carries its reason; a cut connection does not.
            use tonic_types::StatusExt;
            let refused = status.get_error_details().error_info().is_some()
                && status.code() != tonic::Code::Unavailable;
            if !refused {
                eprintln!(
                    "interrupted; run the same command again to resume (its session is kept in {})",
                    status_id(&state)
                );
            }
        })?
        .into_inner();
    anyhow::ensure!(
        answer.complete,
        "the upload stopped at {} of {} bytes; run the same command again to resume",
        answer.committed_size,
        bytes.len()
    );
    forget(state.as_deref()).await;
    Ok(answer)
}

fn status_id(state: &Option<PathBuf>) -> String {
    state
        .as_ref()
        .map_or_else(String::new, |path| path.display().to_string())
}

/// Removes a finished upload's session file.
async fn forget(state: Option<&Path>) {
    if let Some(path) = state {
        let _ = tokio::fs::remove_file(path).await;
    }
}
