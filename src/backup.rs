//! Online backups and restores of the event log.
//!
//! A backup is a directory holding `log/` (a RocksDB checkpoint: a consistent copy of records, indexes
//! and snapshots, see `RocksLog::checkpoint`), `blobs/` (the uploads, when there are any) and `BACKUP.toml` (the manifest: the copy's head and when
//! it was taken). Only the process that has the log open can take a checkpoint, so `rookery backup`
//! opens the log itself when no server runs on it, and otherwise asks the running server through
//! `POST /backup` on the REST API (admin credential). Either way the copy is taken by the same call.
//!
//! A restore copies the files (never links them) into an empty data directory, checks the copy's head
//! against the manifest and walks its hash chain before putting it in place.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context as _};
use rookery_storage::{EventLog, RocksLog};
use serde::{Deserialize, Serialize};

use crate::Config;

/// The manifest's file name inside a backup directory.
pub const MANIFEST: &str = "BACKUP.toml";
/// The manifest format this version writes and reads.
const MANIFEST_FORMAT: u32 = 1;

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Manifest format (1).
    pub format: u32,
    /// Position of the copy's last record.
    pub position: u64,
    /// Chain link of that record (hex).
    pub chain_head: String,
    /// When the copy was taken (RFC 3339, UTC).
    pub created: String,
    /// The Rookery version that took it.
    pub rookery_version: String,
}

/// Makes `dir` absolute and checks it can receive a backup: it must not exist, or be an empty
/// directory.
///
/// # Errors
/// A sentence naming the problem.
pub fn target(dir: &Path) -> anyhow::Result<PathBuf> {
    let dir = std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))?;
    if dir.exists() {
        ensure!(dir.is_dir(), "{} exists and is not a directory", dir.display());
        let mut entries = std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        ensure!(entries.next().is_none(), "{} is not empty; a backup needs a new or empty directory", dir.display());
    }
    Ok(dir)
}

/// Takes a backup of `log` into `dir` (see [`target`]), which is created if needed, with the uploads
/// of `data_dir`'s blob store (`blobs/`, copied after the checkpoint: every blob the copied log refers to
/// was durable before the event that refers to it).
///
/// # Errors
/// A bad target, or a failure writing the copy or its manifest.
pub fn create(log: &RocksLog, data_dir: &Path, dir: &Path) -> anyhow::Result<Manifest> {
    let dir = target(dir)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (position, hash) = log.checkpoint(&dir.join("log")).with_context(|| format!("writing a checkpoint into {}", dir.display()))?;
    let blobs = crate::blobs::Blobs::under(data_dir);
    if blobs.root().is_dir() {
        copy_tree(blobs.root(), &dir.join("blobs"))?;
    }
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        position: position.0,
        chain_head: hash.to_hex(),
        created: crate::timefmt::format_time(rookery_events::Timestamp(now_ms)),
        rookery_version: env!("CARGO_PKG_VERSION").into(),
    };
    let text = toml::to_string(&manifest).context("writing the manifest")?;
    write_synced(&dir.join(MANIFEST), text.as_bytes())?;
    sync_dir(&dir)?;
    Ok(manifest)
}

/// Reads and checks a backup's manifest.
///
/// # Errors
/// A missing or malformed manifest, or a backup without its `log/` directory.
pub fn read_manifest(backup: &Path) -> anyhow::Result<Manifest> {
    let path = backup.join(MANIFEST);
    let text = std::fs::read_to_string(&path).with_context(|| format!("{} is not a Rookery backup: cannot read {}", backup.display(), path.display()))?;
    let manifest: Manifest = toml::from_str(&text).with_context(|| format!("{} is malformed", path.display()))?;
    ensure!(manifest.format == MANIFEST_FORMAT, "{} has format {}; this version reads format {MANIFEST_FORMAT}", path.display(), manifest.format);
    ensure!(backup.join("log").is_dir(), "{} has a manifest but no log/ directory", backup.display());
    Ok(manifest)
}

/// Takes a backup of the log in `config.data_dir` into `dir`: directly when no server has the log
/// open, else through the server's `POST /backup` with `token` (or the configured admin credential).
///
/// # Errors
/// A bad target, no log in the data directory, or the server refusing or failing.
pub fn run(config: &Config, dir: &Path, token: Option<&str>) -> anyhow::Result<Manifest> {
    let dir = target(dir)?;
    let log_dir = config.data_dir.join("log");
    ensure!(log_dir.join("CURRENT").is_file(), "there is no event log in {} (check --data-dir)", config.data_dir.display());
    match RocksLog::open(&log_dir, rookery_storage::RocksOptions::default()) {
        Ok(log) => {
            let manifest = create(&log, &config.data_dir, &dir);
            log.close();
            manifest
        }
        // RocksDB's LOCK file is held: a server runs on this log, so it takes the checkpoint.
        Err(e) if e.to_string().to_lowercase().contains("lock") => {
            let token = token.map(str::to_owned).or_else(|| admin_secret(config));
            ask_server(config, &dir, token.as_deref())
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("opening the event log in {}", log_dir.display()))),
    }
}

/// The first admin credential's secret, if any is configured.
fn admin_secret(config: &Config) -> Option<String> {
    config.credentials().into_iter().find(|k| k.scope == crate::config::Scope::Admin).map(|k| k.secret)
}

/// `POST /backup` to the server at `config.api_addr` (an unspecified address means this machine), then
/// reads the manifest it wrote.
fn ask_server(config: &Config, dir: &Path, token: Option<&str>) -> anyhow::Result<Manifest> {
    let mut addr = config.api_addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let body = serde_json::json!({"dir": dir.to_str().context("the backup path is not UTF-8")?}).to_string();
    let mut request =
        format!("POST /backup HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    if let Some(t) = token {
        ensure!(!t.contains(['\r', '\n']), "the token must be one line");
        request.push_str(&format!("token: {t}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .with_context(|| format!("a server holds the event log, but its REST API at {addr} does not answer (check api_addr / --config)"))?;
    // A checkpoint of a large log may take minutes (a memtable flush, then links or copies).
    stream.set_read_timeout(Some(Duration::from_secs(3600)))?;
    stream.write_all(request.as_bytes()).context("sending the backup request")?;
    let mut response = String::new();
    stream.read_to_string(&mut response).context("reading the server's answer")?;
    let (head, body) = response.split_once("\r\n\r\n").context("the server's answer is not HTTP")?;
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok()).context("the server's answer has no status")?;
    if status != 200 {
        let msg = serde_json::from_str::<serde_json::Value>(body).ok().and_then(|v| v["msg"].as_str().map(str::to_owned)).unwrap_or_else(|| body.to_owned());
        bail!("the server refused the backup ({status}): {msg}");
    }
    read_manifest(dir)
}

/// Restores `backup` into `data_dir`, which must not exist or be empty.
///
/// # Errors
/// A non-empty data directory, a malformed backup, or a copy whose head or chain does not match the
/// manifest (nothing is left in `data_dir/log` then).
pub fn restore(backup: &Path, data_dir: &Path) -> anyhow::Result<Manifest> {
    let manifest = read_manifest(backup)?;
    if data_dir.exists() {
        ensure!(data_dir.is_dir(), "{} exists and is not a directory", data_dir.display());
        let mut entries = std::fs::read_dir(data_dir).with_context(|| format!("reading {}", data_dir.display()))?;
        ensure!(entries.next().is_none(), "{} is not empty; restore only into a new or empty data directory", data_dir.display());
    }
    let staging = data_dir.join("log.restoring");
    std::fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    let checked = copy_and_check(&backup.join("log"), &staging, &manifest);
    if let Err(e) = checked {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    std::fs::rename(&staging, data_dir.join("log")).context("putting the restored log in place")?;
    if backup.join("blobs").is_dir() {
        copy_tree(&backup.join("blobs"), crate::blobs::Blobs::under(data_dir).root())?;
    }
    sync_dir(data_dir)?;
    Ok(manifest)
}

/// Copies the files under `from` into `to` (made if needed), each synced, skipping temporary files
/// (a name starting with `.`).
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if entry.file_type()?.is_file() && !entry.file_name().to_string_lossy().starts_with('.') {
            std::fs::copy(entry.path(), &target).with_context(|| format!("copying {}", entry.path().display()))?;
            std::fs::File::open(&target)?.sync_all().with_context(|| format!("syncing {}", target.display()))?;
        }
    }
    sync_dir(to)
}

fn copy_and_check(from: &Path, to: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        ensure!(entry.file_type()?.is_file(), "{} is not a file; a backup's log/ holds only files", entry.path().display());
        let target = to.join(entry.file_name());
        std::fs::copy(entry.path(), &target).with_context(|| format!("copying {}", entry.path().display()))?;
        std::fs::File::open(&target)?.sync_all().with_context(|| format!("syncing {}", target.display()))?;
    }
    sync_dir(to)?;
    let log = RocksLog::open_read_only(to).context("opening the restored log")?;
    let (position, hash) = log.head();
    ensure!(
        position.0 == manifest.position && hash.to_hex() == manifest.chain_head,
        "the backup's log ends at {position} ({}) but its manifest says {} ({})",
        hash.to_hex(),
        manifest.position,
        manifest.chain_head
    );
    rookery_actors::replay::verify_chain(&log, &mut |_| {}).map_err(|broken| anyhow::anyhow!("the backup's hash chain is broken: {broken}"))?;
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all().with_context(|| format!("syncing {}", path.display()))
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("syncing directory {}", dir.display()))
}
