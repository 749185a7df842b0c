//! What the CLI prints: aligned `key  value` lines for people, one JSON document with `--json`.

use imaging_proto::v1;

/// A result: `key  value` lines, or one JSON object.
pub fn show(json: bool, fields: &[(&str, serde_json::Value)]) {
    if json {
        let object: serde_json::Map<String, serde_json::Value> = fields
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.clone()))
            .collect();
        println!("{}", serde_json::Value::Object(object));
        return;
    }
    let width = fields.iter().map(|(key, _)| key.len()).max().unwrap_or(0);
    for (key, value) in fields {
        let text = match value {
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        println!("{key:width$}  {text}");
    }
}

/// Bytes for people: `1.4 MB (1432110 bytes)`.
pub fn size_text(bytes: u64) -> String {
    let (value, unit) = match bytes {
        b if b >= 1_000_000_000 => (b as f64 / 1e9, "GB"),
        b if b >= 1_000_000 => (b as f64 / 1e6, "MB"),
        b if b >= 1_000 => (b as f64 / 1e3, "KB"),
        b => return format!("{b} bytes"),
    };
    format!("{value:.1} {unit} ({bytes} bytes)")
}

/// A size: a number in JSON, readable otherwise.
pub fn size(json: bool, bytes: u64) -> serde_json::Value {
    if json {
        bytes.into()
    } else {
        size_text(bytes).into()
    }
}

/// The local time zone's offset, read once while the process has one thread (the only time the
/// platform lets it be read safely); UTC if it cannot be.
pub static LOCAL_OFFSET: std::sync::OnceLock<time::UtcOffset> = std::sync::OnceLock::new();

/// Unix ms for people: local time, then RFC 3339 (UTC): `2026-12-02 21:25:02 +01:00
/// (2026-12-02T20:25:02Z)`.
pub fn local_time_text(ms: i64) -> String {
    let offset = LOCAL_OFFSET.get().copied().unwrap_or(time::UtcOffset::UTC);
    let local = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .map(|at| at.to_offset(offset))
        .and_then(|at| {
            at.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second] [offset_hour sign:mandatory]:[offset_minute]"
            ))
            .ok()
        })
        .unwrap_or_default();
    format!("{local} ({})", time_text(ms))
}

/// A time: RFC 3339 (UTC) in JSON, local and RFC 3339 for people.
pub fn when(json: bool, ms: i64) -> String {
    if json {
        time_text(ms)
    } else {
        local_time_text(ms)
    }
}

/// Unix ms as RFC 3339 (UTC).
pub fn time_text(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Earlier images an upload duplicates: a list in JSON, `id (match)` items otherwise.
pub fn duplicates(json: bool, found: &[v1::Duplicate]) -> serde_json::Value {
    let name = |d: &v1::Duplicate| match d.r#match() {
        v1::DuplicateMatch::Exact => "exact",
        _ => "perceptual",
    };
    if json {
        found
            .iter()
            .map(|d| serde_json::json!({"image_id": d.image_id, "match": name(d), "distance": d.distance}))
            .collect::<Vec<_>>()
            .into()
    } else if found.is_empty() {
        "none".into()
    } else {
        found
            .iter()
            .map(|d| format!("{} ({})", d.image_id, name(d)))
            .collect::<Vec<_>>()
            .join(", ")
            .into()
    }
}

pub fn status_name(value: i32) -> &'static str {
    match v1::ProcessingStatus::try_from(value) {
        Ok(v1::ProcessingStatus::Accepted) => "ACCEPTED",
        Ok(v1::ProcessingStatus::Processing) => "PROCESSING",
        Ok(v1::ProcessingStatus::Processed) => "PROCESSED",
        Ok(v1::ProcessingStatus::Failed) => "FAILED",
        _ => "",
    }
}

/// The fields of an upload's answer (an asynchronous one: its ID and status).
pub fn upload_fields(
    json: bool,
    process_async: bool,
    reply: v1::UploadImageResponse,
) -> Vec<(&'static str, serde_json::Value)> {
    if process_async {
        return vec![
            ("image_id", reply.image_id.into()),
            ("status", status_name(reply.processing_status).into()),
            ("content_type", reply.content_type.into()),
        ];
    }
    vec![
        ("image_id", reply.image_id.into()),
        ("path", reply.path.into()),
        ("content_type", reply.content_type.into()),
        ("size", size(json, reply.size_bytes)),
        ("width", reply.width.into()),
        ("height", reply.height.into()),
        ("pages", reply.page_count.into()),
        ("sha256", hex::encode(&reply.sha256).into()),
        ("replayed", reply.replayed.into()),
        ("duplicates", duplicates(json, &reply.duplicates)),
    ]
}
