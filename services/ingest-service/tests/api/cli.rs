//! `imaging-cli` run as a user runs it, against a real service process: readable results and
//! `--json`, the SHA-256 in hex, an asynchronous upload followed with `status`, and the exit
//! codes of refusals.

use crate::process::ServiceProcess;
use sha2::Digest;
use std::process::Output;
use std::time::Duration;

async fn cli(service: &ServiceProcess, token: &str, args: &[&str]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_imaging-cli"));
    command
        .env("IMAGING_ADDR", format!("http://{}", service.addr))
        .env("IMAGING_TOKEN", token)
        .args(args);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// A service process with workspace w1 registered, and a token of u1 in it.
async fn started() -> (ServiceProcess, String) {
    let service = ServiceProcess::start().await;
    service
        .register_workspace(&service.channel().await, "w1")
        .await;
    let token = service.token("u1", "w1", &[]);
    (service, token)
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// The value of `key` in `key  value` lines.
fn field(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|line| {
            let (name, value) = line.split_once("  ")?;
            (name.trim() == key).then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no {key} in {text}"))
}

#[tokio::test]
async fn the_cli_prints_readable_results_or_json_and_exits_by_class() {
    let (service, token) = started().await;
    let dir = tempfile::tempdir().unwrap();
    let png = imaging_e2e::fixtures::png(300, 200);
    let file = dir.path().join("receipt.png");
    std::fs::write(&file, &png).unwrap();
    let sha = hex::encode(sha2::Sha256::digest(&png));
    let path = file.to_str().unwrap();

    // A synchronous upload: aligned lines, the digest in hex, the size for people.
    let uploaded = stdout(&cli(&service, &token, &["upload", "receipt", path]).await);
    assert_eq!(field(&uploaded, "sha256"), sha);
    assert_eq!(field(&uploaded, "width"), "300");
    assert!(
        field(&uploaded, "size").ends_with(&format!("({} bytes)", png.len())),
        "{uploaded}"
    );
    let id = field(&uploaded, "image_id");
    // The same as JSON.
    let got: serde_json::Value = serde_json::from_str(&stdout(
        &cli(&service, &token, &["--json", "get", "receipt", &id]).await,
    ))
    .unwrap();
    assert_eq!(got["sha256"], sha.as_str());
    assert_eq!(got["size"], png.len());
    assert!(got["url"].as_str().unwrap().starts_with("http"));

    // An asynchronous upload, followed until it is processed.
    let accepted = stdout(&cli(&service, &token, &["upload", "receipt", path, "--async"]).await);
    assert_eq!(field(&accepted, "status"), "ACCEPTED");
    let receipt = field(&accepted, "image_id");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status: serde_json::Value = serde_json::from_str(&stdout(
            &cli(&service, &token, &["status", &receipt, "--json"]).await,
        ))
        .unwrap();
        if status["status"] == "PROCESSED" {
            break status;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status["received_bytes"], png.len());
    assert!(status["logs"].as_array().unwrap().len() >= 3);
    let readable = stdout(&cli(&service, &token, &["status", &receipt]).await);
    assert_eq!(field(&readable, "status"), "PROCESSED");
    // Times for people: local, then ISO 8601 in UTC.
    let received = field(&readable, "received_at");
    assert_eq!(
        received.rsplit_once(" (").unwrap().1,
        format!("{})", status["received_at"].as_str().unwrap()),
        "{received}"
    );
    assert!(readable.contains("INFO"), "{readable}");

    // A retry with the same idempotency key replays the first result.
    let first = stdout(
        &cli(
            &service,
            &token,
            &["upload", "receipt", path, "--idempotency-key", "k-1"],
        )
        .await,
    );
    let replay = stdout(
        &cli(
            &service,
            &token,
            &["upload", "receipt", path, "--idempotency-key", "k-1"],
        )
        .await,
    );
    assert_eq!(field(&first, "replayed"), "false");
    assert_eq!(field(&replay, "replayed"), "true");
    assert_eq!(field(&replay, "image_id"), field(&first, "image_id"));

    // Refusals: the reason on stderr and an exit code by class.
    let missing = cli(&service, &token, &["get", "receipt", &"0".repeat(32)]).await;
    assert_eq!(missing.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&missing.stderr).starts_with("IMAGE_NOT_FOUND: "));
    let unauthorized = cli(&service, "not-a-token", &["usage", "w1"]).await;
    assert_eq!(unauthorized.status.code(), Some(3));
    let refused = cli(
        &service,
        &token,
        &["upload", "receipt", path, "--content-type", "image/jpeg"],
    )
    .await;
    assert_eq!(refused.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&refused.stderr).starts_with("CONTENT_TYPE_MISMATCH: "));
    // A refusal with something to do about it says what.
    let service_token = service.token("registry", "*", &["service"]);
    stdout(
        &cli(
            &service,
            &service_token,
            &["register-workspace", "tiny", "--quota-bytes", "100"],
        )
        .await,
    );
    let tiny = service.token("u1", "tiny", &[]);
    let full = cli(&service, &tiny, &["upload", "receipt", path]).await;
    assert_eq!(full.status.code(), Some(5));
    let said = String::from_utf8_lossy(&full.stderr).into_owned();
    assert!(said.starts_with("QUOTA_EXCEEDED: "), "{said}");
    assert!(
        said.contains("workspace tiny uses 0 bytes of 100 bytes; delete images or raise its quota"),
        "{said}"
    );
    let mut gone = ServiceProcess::start().await;
    gone.kill();
    let unreachable = cli(&gone, &token, &["usage", "w1"]).await;
    assert_eq!(unreachable.status.code(), Some(6));
}

#[tokio::test]
async fn the_cli_lists_appends_downloads_checked_bytes_and_deletes() {
    let (service, token) = started().await;
    let dir = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    let png = imaging_e2e::fixtures::png(120, 80);
    let png_path = dir.path().join("a.png");
    std::fs::write(&png_path, &png).unwrap();
    let path = png_path.to_str().unwrap();
    for _ in 0..3 {
        let uploaded = stdout(&cli(&service, &token, &["upload", "receipt", path]).await);
        ids.push(field(&uploaded, "image_id"));
    }
    // The second copy names the first as an exact duplicate.
    let again: serde_json::Value = serde_json::from_str(&stdout(
        &cli(&service, &token, &["--json", "get", "receipt", &ids[1]]).await,
    ))
    .unwrap();
    assert_eq!(again["duplicates"][0]["image_id"], ids[0].as_str());
    assert_eq!(again["duplicates"][0]["match"], "exact");

    // Listed newest first, a page at a time or all at once.
    let page: serde_json::Value = serde_json::from_str(&stdout(
        &cli(&service, &token, &["--json", "list", "--limit", "2"]).await,
    ))
    .unwrap();
    let listed: Vec<&str> = page["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["image_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[2].as_str(), ids[1].as_str()]);
    let next = page["next_page_token"].as_str().unwrap();
    assert!(!next.is_empty());
    let rest = stdout(
        &cli(
            &service,
            &token,
            &["list", "--limit", "2", "--page-token", next],
        )
        .await,
    );
    assert!(rest.contains(&ids[0]) && !rest.contains("more:"), "{rest}");
    let all = stdout(&cli(&service, &token, &["list", "--limit", "1", "--all"]).await);
    let order: Vec<&str> = all
        .lines()
        .map(|line| line.split_whitespace().last().unwrap())
        .collect();
    assert_eq!(order, [ids[2].as_str(), ids[1].as_str(), ids[0].as_str()]);

    // Downloaded byte for byte; an existing file is kept unless --force.
    let out = dir.path().join("copy.png");
    let out_path = out.to_str().unwrap();
    let downloaded = stdout(
        &cli(
            &service,
            &token,
            &["download", "receipt", &ids[0], "-o", out_path],
        )
        .await,
    );
    assert_eq!(std::fs::read(&out).unwrap(), png);
    assert_eq!(
        field(&downloaded, "sha256"),
        hex::encode(sha2::Sha256::digest(&png))
    );
    let kept = cli(
        &service,
        &token,
        &["download", "receipt", &ids[0], "-o", out_path],
    )
    .await;
    assert_eq!(kept.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&kept.stderr).contains("--force"));
    stdout(
        &cli(
            &service,
            &token,
            &["download", "receipt", &ids[1], "-o", out_path, "--force"],
        )
        .await,
    );

    // Appended to: the receipt becomes a two-page PDF.
    let jpeg_path = dir.path().join("b.jpg");
    std::fs::write(&jpeg_path, imaging_e2e::fixtures::jpeg(60, 40)).unwrap();
    let appended = stdout(
        &cli(
            &service,
            &token,
            &["append", "receipt", &ids[0], jpeg_path.to_str().unwrap()],
        )
        .await,
    );
    assert_eq!(field(&appended, "content_type"), "application/pdf");
    assert_eq!(field(&appended, "pages"), "2");
    let pdf = dir.path().join("receipt.pdf");
    stdout(
        &cli(
            &service,
            &token,
            &["download", "receipt", &ids[0], "-o", pdf.to_str().unwrap()],
        )
        .await,
    );
    assert_eq!(
        imaging_e2e::fixtures::pdf_pages(&std::fs::read(&pdf).unwrap()),
        2
    );

    // Deleted: its bytes given back; then it is not found.
    let deleted: serde_json::Value = serde_json::from_str(&stdout(
        &cli(&service, &token, &["--json", "delete", "receipt", &ids[2]]).await,
    ))
    .unwrap();
    assert_eq!(deleted["released"], png.len());
    let missing = cli(&service, &token, &["get", "receipt", &ids[2]]).await;
    assert_eq!(missing.status.code(), Some(4));
}

#[tokio::test]
async fn the_cli_uploads_a_directory_a_few_at_once_and_sums_it_up() {
    let (service, token) = started().await;
    let dir = tempfile::tempdir().unwrap();
    for n in 0..5u32 {
        std::fs::write(
            dir.path().join(format!("scan-{n}.png")),
            imaging_e2e::fixtures::png(50 + n, 40),
        )
        .unwrap();
    }
    // A file that is not what its name says, and a hidden one (left out).
    std::fs::write(
        dir.path().join("broken.jpg"),
        imaging_e2e::fixtures::png(10, 10),
    )
    .unwrap();
    std::fs::write(
        dir.path().join(".hidden.png"),
        imaging_e2e::fixtures::png(10, 10),
    )
    .unwrap();
    let path = dir.path().to_str().unwrap();
    let output = cli(
        &service,
        &token,
        &["upload", "receipt", path, "--concurrency", "3"],
    )
    .await;
    assert_eq!(output.status.code(), Some(5), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("broken.jpg  CONTENT_TYPE_MISMATCH: "),
        "{text}"
    );
    assert!(
        text.lines()
            .last()
            .unwrap()
            .starts_with("5 uploaded, 1 failed"),
        "{text}"
    );
    assert!(!text.contains(".hidden"), "{text}");
    // JSON: one document per file.
    let output = cli(
        &service,
        &token,
        &[
            "--json",
            "upload",
            "receipt",
            &format!("{path}/scan-0.png"),
            &format!("{path}/scan-1.png"),
        ],
    )
    .await;
    assert!(output.status.success(), "{output:?}");
    let docs: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(docs.len(), 2);
    assert!(
        docs.iter()
            .all(|d| d["image_id"].as_str().unwrap().len() == 32)
    );
    // Both were uploaded before: each names earlier images.
    assert!(
        docs.iter()
            .all(|d| !d["duplicates"].as_array().unwrap().is_empty())
    );
    let listed = stdout(&cli(&service, &token, &["list", "--all"]).await);
    assert_eq!(listed.lines().count(), 7, "{listed}");
}

#[tokio::test]
async fn the_cli_reads_a_profile_completes_shells_and_shows_progress_only_to_a_terminal() {
    let (service, token) = started().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[default]\naddr = \"http://127.0.0.1:1\"\n\n[local]\naddr = \"http://{}\"\ntoken = \"{token}\"\n",
            service.addr
        ),
    )
    .unwrap();
    let run = |args: Vec<String>, profile: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_imaging-cli"));
        command
            .env_remove("IMAGING_ADDR")
            .env_remove("IMAGING_TOKEN")
            .env("IMAGING_CONFIG", &config)
            .args(args);
        if let Some(profile) = profile {
            command.env("IMAGING_PROFILE", profile);
        }
        command.output().unwrap()
    };
    // The profile gives the address and the token; the default one a dead address.
    let listed = run(vec!["list".into()], Some("local"));
    assert!(listed.status.success(), "{listed:?}");
    let dead = run(vec!["list".into()], None);
    assert_eq!(dead.status.code(), Some(6));
    let unknown = run(vec!["list".into()], Some("nope"));
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no profile nope"));
    // Completions for bash.
    let completions = run(vec!["completions".into(), "bash".into()], None);
    let script = String::from_utf8(completions.stdout).unwrap();
    assert!(
        script.contains("complete -F _imaging__cli") && script.contains("download"),
        "{script}"
    );

    // A 600 KB upload: no progress when stdout is not a terminal ...
    let big = dir.path().join("big.png");
    std::fs::write(&big, imaging_e2e::fixtures::noise_png(450)).unwrap();
    assert!(std::fs::metadata(&big).unwrap().len() > 300_000);
    let quiet = run(
        vec!["upload".into(), "receipt".into(), big.display().to_string()],
        Some("local"),
    );
    assert!(quiet.status.success(), "{quiet:?}");
    assert!(
        quiet.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&quiet.stderr)
    );
    // ... and a bar under a pseudo-terminal (`script` runs it on one).
    let command = format!(
        "IMAGING_CONFIG={} IMAGING_PROFILE=local {} upload receipt {}",
        config.display(),
        env!("CARGO_BIN_EXE_imaging-cli"),
        big.display()
    );
    let watched = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_remove("IMAGING_ADDR")
        .env_remove("IMAGING_TOKEN")
        .output()
        .expect("script (util-linux) runs the CLI on a pseudo-terminal");
    assert!(watched.status.success(), "{watched:?}");
    let seen = String::from_utf8_lossy(&watched.stdout);
    assert!(seen.contains("big.png [") && seen.contains("ETA"), "{seen}");
    assert!(seen.contains("image_id"), "{seen}");
}

#[tokio::test]
async fn an_upload_cut_off_with_resume_continues_where_it_stopped() {
    let (service, token) = started().await;
    let dir = tempfile::tempdir().unwrap();
    let bytes = imaging_e2e::fixtures::noise_png(1300);
    assert!(bytes.len() > 4_000_000, "{}", bytes.len());
    let file = dir.path().join("long-scan.png");
    std::fs::write(&file, &bytes).unwrap();
    // The connection is lost once 2 MB went through; later connections get through.
    let proxy = imaging_e2e::proxy::CutProxy::start(&service.addr, &service.addr, 2_000_000).await;
    let cache = dir.path().join("cache");
    let run = || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_imaging-cli"));
        command
            .env("IMAGING_ADDR", &proxy.base)
            .env("IMAGING_TOKEN", &token)
            .env("XDG_CACHE_HOME", &cache)
            .args(["upload", "receipt", file.to_str().unwrap(), "--resume"]);
        async move {
            tokio::task::spawn_blocking(move || command.output().unwrap())
                .await
                .unwrap()
        }
    };
    let cut = run().await;
    assert!(!cut.status.success(), "{cut:?}");
    assert!(proxy.was_cut());
    assert!(
        String::from_utf8_lossy(&cut.stderr).contains("run the same command again to resume"),
        "{cut:?}"
    );
    let before = proxy.sent();
    let resumed = run().await;
    let text = stdout(&resumed);
    // Only what the service had not committed went again.
    let again = proxy.sent() - before;
    assert!(
        again < bytes.len() as u64 * 3 / 4,
        "{again} bytes sent again of {}",
        bytes.len()
    );
    let id = field(&text, "image_id");
    assert_eq!(
        field(&text, "sha256"),
        hex::encode(sha2::Sha256::digest(&bytes))
    );
    let out = dir.path().join("back.png");
    stdout(
        &cli(
            &service,
            &token,
            &["download", "receipt", &id, "-o", out.to_str().unwrap()],
        )
        .await,
    );
    assert_eq!(std::fs::read(&out).unwrap(), bytes);
    // The session file is gone once complete.
    let left: Vec<_> = std::fs::read_dir(cache.join("imaging").join("uploads"))
        .unwrap()
        .collect();
    assert!(left.is_empty());
}

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let status = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl (the README's test command installs it)");
    assert!(status.success(), "openssl {args:?}");
}

#[tokio::test]
async fn the_cli_reaches_a_tls_endpoint_it_trusts_and_refuses_one_it_does_not() {
    let (service, token) = started().await;
    // A certificate authority of the test's own, and a certificate it signs for localhost.
    let dir = tempfile::tempdir().unwrap();
    let days = ["-days", "1"];
    openssl(
        dir.path(),
        &[
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-subj",
                "/CN=imaging test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign",
            ][..],
            &days,
        ]
        .concat(),
    );
    openssl(
        dir.path(),
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.path().join("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir.path(),
        &[
            &[
                "x509",
                "-req",
                "-in",
                "leaf.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "leaf.pem",
                "-extfile",
                "leaf.ext",
            ][..],
            &days,
        ]
        .concat(),
    );
    let port = imaging_e2e::free_port();
    let upstream = service.addr.rsplit(':').next().unwrap().to_owned();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/clients/tls_proxy.py"
    );
    let mut proxy = std::process::Command::new("python3")
        .current_dir(dir.path())
        .args([script, &port.to_string(), "leaf.pem", "leaf.key", &upstream])
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the TLS proxy never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let addr = format!("https://localhost:{port}");
    let ca = dir.path().join("ca.pem");
    let trusted = cli(
        &service,
        &token,
        &["--addr", &addr, "--ca-file", ca.to_str().unwrap(), "list"],
    )
    .await;
    let untrusted = cli(&service, &token, &["--addr", &addr, "list"]).await;
    let _ = proxy.kill();
    let _ = proxy.wait();
    assert!(trusted.status.success(), "{trusted:?}");
    assert_eq!(untrusted.status.code(), Some(6), "{untrusted:?}");
}
