//! `rookery serve` runs the server; `verify` and `replay --verify` check a data directory; `audit`
//! queries its events; `export` and `import` move the event log as JSON lines.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use rookery::Config;

#[derive(Parser)]
#[command(name = "rookery", version, about = "Event-sourced IM server compatible with WuKongIM")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// TOML settings file (settings also come from ROOKERY_* environment variables).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory (overrides the file and the environment).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Print the effective settings (defaults, file, WK_* and ROOKERY_* environment) as TOML, with
    /// secrets shown as "<hidden>"; exits non-zero when they would not let the server start.
    Config {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Walk the hash chain of the event log and report the first broken link. Works on the data
    /// directory of a running server (it opens the log read-only).
    Verify {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Write the event log as JSON lines (one header line, then one line per event). Works on the
    /// data directory of a running server (it opens the log read-only).
    Export {
        /// The only format: JSON lines.
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl"])]
        format: String,
        /// First event: a log position, or an RFC 3339 time (events recorded after it).
        #[arg(long)]
        since: Option<String>,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Append an export to the log in the data directory, which must be empty (or end exactly where
    /// an `--since` export begins), then build the snapshots. The server must not be running on it.
    Import {
        /// Read here instead of standard input.
        #[arg(long, short)]
        input: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Write a consistent copy of the event log (records, indexes, snapshots) into DIR, which must be
    /// new or empty. Works while a server runs on the data directory (it then asks that server through
    /// `POST /backup`, with --token or the configured admin credential) and when none does.
    Backup {
        /// Where the backup goes.
        dir: PathBuf,
        /// Admin credential for a running server (default: manager_token or the first admin api key).
        #[arg(long)]
        token: Option<String>,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Put a backup into a new or empty data directory, after checking its head and hash chain.
    Restore {
        /// A directory written by `rookery backup`.
        backup: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where to restore: a new or empty directory. Required, so a restore never lands in the
        /// configured data directory by default.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Rebuild all state from position 1 and compare it with the snapshot-based state.
    Replay {
        /// Required: verification is the only replay mode.
        #[arg(long)]
        verify: bool,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Query the event log: one page of matching events, newest first unless `--order asc`. Works on
    /// the data directory of a running server (it opens the log read-only). Answers exactly what
    /// `GET /audit/events` answers (docs/AUDIT.md).
    Audit(Box<AuditArgs>),
}

/// The filters of `rookery audit`.
#[derive(clap::Args)]
struct AuditArgs {
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Stored channel id (person chats: `big@small`); needs --channel-type.
    #[arg(long)]
    channel: Option<String>,
    #[arg(long)]
    channel_type: Option<String>,
    /// Events of this user's stream and its sends as a client.
    #[arg(long)]
    uid: Option<String>,
    /// A credential name or client uid (`api:NAME`, `client:UID` to say which).
    #[arg(long)]
    actor: Option<String>,
    /// Event kind, e.g. channel.message_appended.
    #[arg(long)]
    kind: Option<String>,
    /// RFC 3339 time or Unix milliseconds, inclusive.
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    until: Option<String>,
    /// Lowest log position, inclusive.
    #[arg(long)]
    from: Option<String>,
    /// Highest log position, inclusive.
    #[arg(long)]
    to: Option<String>,
    /// Events per page (1 to 1000, default 100).
    #[arg(long)]
    limit: Option<String>,
    /// desc (default) or asc.
    #[arg(long)]
    order: Option<String>,
    /// Continue from a previous page's next cursor.
    #[arg(long)]
    cursor: Option<String>,
    /// Print the page as the API's JSON instead of one line per event.
    #[arg(long)]
    json: bool,
}

/// Loads the settings and starts logging in the configured format.
fn load(config: Option<PathBuf>, data_dir: Option<PathBuf>) -> anyhow::Result<Config> {
    let mut c = Config::load(config.as_deref()).context("loading settings")?;
    if let Some(d) = data_dir {
        c.data_dir = d;
    }
    init_logs(c.log_format);
    for name in Config::ignored_env() {
        tracing::warn!(variable = %name, "ignoring an environment variable that names no setting");
    }
    Ok(c)
}

/// Log lines go to standard error (standard output carries listener addresses and command output),
/// filtered by `RUST_LOG` (default `info`).
fn init_logs(format: rookery::config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        rookery::config::LogFormat::Text => builder.init(),
        rookery::config::LogFormat::Json => builder.json().init(),
    }
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve { config, data_dir } => {
            let config = load(config, data_dir)?;
            let system = actix::System::with_tokio_rt(|| tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime"));
            system.block_on(async {
                // Installed before anything is bound, so a SIGTERM at any point of start-up is a
                // graceful stop rather than the default kill.
                let stop = shutdown_signal()?;
                rookery::run(config, stop).await
            })
        }
        Command::Config { config, data_dir } => {
            let config = load(config, data_dir)?;
            print!("{}", config.to_toml().map_err(anyhow::Error::msg)?);
            if let Err(problem) = config.validate() {
                eprintln!("config: these settings would not start the server: {problem}");
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Backup { dir, token, config, data_dir } => {
            let config = load(config, data_dir)?;
            let manifest = rookery::backup::run(&config, &dir, token.as_deref())?;
            println!("ok: backup in {} ends at position {}, chain head {}", dir.display(), manifest.position, manifest.chain_head);
            Ok(())
        }
        Command::Restore { backup, config, data_dir } => {
            let config = load(config, Some(data_dir))?;
            let manifest = rookery::backup::restore(&backup, &config.data_dir)?;
            println!(
                "ok: restored {} into {}: position {}, chain head {}",
                backup.display(),
                config.data_dir.display(),
                manifest.position,
                manifest.chain_head
            );
            Ok(())
        }
        Command::Verify { config, data_dir } => verify(&load(config, data_dir)?),
        Command::Export { format: _, since, output, config, data_dir } => export(&load(config, data_dir)?, since.as_deref(), output.as_deref()),
        Command::Import { input, config, data_dir } => import(&load(config, data_dir)?, input.as_deref()),
        Command::Audit(args) => audit(*args),
        Command::Replay { verify, config, data_dir } => {
            anyhow::ensure!(verify, "only `rookery replay --verify` is supported");
            replay_verify(&load(config, data_dir)?)
        }
    }
}

/// Opens the configured data directory's log read-only (beside a running server).
fn open_read_only(config: &Config) -> anyhow::Result<rookery_storage::RocksLog> {
    let dir = config.data_dir.join("log");
    rookery_storage::RocksLog::open_read_only(&dir).with_context(|| format!("opening event log in {}", dir.display()))
}

/// `rookery verify`: walks the hash chain of the whole log.
fn verify(config: &Config) -> anyhow::Result<()> {
    let log = open_read_only(config)?;
    match rookery_actors::replay::verify_chain(&log, &mut |p| eprintln!("verify: {} / {} events ({:.1}%)", p.done, p.total, p.percent())) {
        Ok((events, (position, hash))) => {
            println!("ok: {events} events, chain head {} at position {position}", hash.to_hex());
            Ok(())
        }
        Err(broken) => {
            eprintln!("verify failed: {broken}");
            std::process::exit(1);
        }
    }
}

/// `rookery export`: the log from `since` (a position or a time) as JSON lines, to `output` or stdout.
fn export(config: &Config, since: Option<&str>, output: Option<&std::path::Path>) -> anyhow::Result<()> {
    let log = open_read_only(config)?;
    let since = match since.map(str::trim) {
        None | Some("") => rookery_storage::Position(1),
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => rookery_storage::Position(p.parse().context("--since position is too large")?),
        Some(t) => {
            let t = rookery::timefmt::parse_time("--since", t).map_err(|e| anyhow::anyhow!("--since must be a log position or a time: {e}"))?;
            rookery_actors::history::resolve(&log, rookery_actors::history::At::Time(t))?.next()
        }
    };
    let bar = progress_bar("export");
    let mut out: Box<dyn std::io::Write> = match output {
        Some(path) => Box::new(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 20, &mut out);
    let blobs = rookery::blobs::Blobs::under(&config.data_dir);
    let summary = rookery::transfer::export(&log, Some(&blobs), since, &mut out, &mut |done, total| update(&bar, done, total))?;
    drop(out);
    bar.finish_and_clear();
    eprintln!("exported {} events, chain head {} at position {}", summary.events, summary.head_hash.to_hex(), summary.head);
    Ok(())
}

/// `rookery import`: appends an export (from `input` or stdin) to the configured log, then builds snapshots.
fn import(config: &Config, input: Option<&std::path::Path>) -> anyhow::Result<()> {
    let log = rookery::open_log(config)?;
    let mut input: Box<dyn std::io::BufRead> = match input {
        Some(path) => Box::new(std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?)),
        None => Box::new(std::io::stdin().lock()),
    };
    let bar = progress_bar("import");
    let blobs = rookery::blobs::Blobs::under(&config.data_dir);
    let summary = rookery::transfer::import(&log, Some(&blobs), &mut input, &mut |done, total| update(&bar, done, total))?;
    bar.finish_and_clear();
    eprintln!("imported {} events; building snapshots", summary.events);
    rookery_actors::replay::catch_up(&log, &mut |p| eprintln!("snapshots: {} / {} events ({:.1}%)", p.done, p.total, p.percent()))?;
    println!("ok: {} events, chain head {} at position {}", summary.events, summary.head_hash.to_hex(), summary.head);
    Ok(())
}

/// `rookery audit`: one page of the audit trail, as lines or as the API's JSON.
fn audit(args: AuditArgs) -> anyhow::Result<()> {
    let AuditArgs { config, data_dir, channel, channel_type, uid, actor, kind, since, until, from, to, limit, order, cursor, json } = args;
    let raw = rookery::audit::RawQuery { channel_id: channel, channel_type, uid, actor, kind, since, until, from, to, limit, order, cursor };
    let query = match raw.parse() {
        Ok(q) => q,
        Err(msg) => {
            eprintln!("audit: {msg}");
            std::process::exit(2);
        }
    };
    let config = load(config, data_dir)?;
    let log = open_read_only(&config)?;
    let page = rookery::audit::run(&log, &query)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rookery::audit::page_json(&page))?);
    } else {
        for e in &page.events {
            println!("{}", rookery::audit::envelope_line(e));
        }
        match page.next_cursor {
            Some(c) => eprintln!("{} events ({} records read); more with --cursor {}", page.events.len(), page.examined, c.0),
            None => eprintln!("{} events ({} records read); no more", page.events.len(), page.examined),
        }
    }
    Ok(())
}

/// `rookery replay --verify`: rebuilds every aggregate from the first event and compares.
fn replay_verify(config: &Config) -> anyhow::Result<()> {
    let log = rookery::open_log(config)?;
    let report = rookery_actors::replay::verify(&log, &mut |p| {
        eprintln!("verify: {} / {} events ({:.1}%), {} events/s", p.done, p.total, p.percent(), p.rate() as u64);
    });
    match report {
        Ok(r) => {
            println!("ok: {} events, {} aggregates, chain head {} at position {}", r.events, r.aggregates, r.head.1.to_hex(), r.head.0);
            Ok(())
        }
        Err(difference) => {
            eprintln!("verify failed: {difference}");
            std::process::exit(1);
        }
    }
}

/// Completes on SIGTERM or SIGINT. The handlers are installed when this is called, not when the
/// future is first polled.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

/// A progress bar on standard error; hidden when standard error is not a terminal.
fn progress_bar(what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    bar.set_style(indicatif::ProgressStyle::with_template("{prefix} {bar:40} {pos}/{len} events ({per_sec}, {eta} left)").expect("valid template"));
    bar.set_prefix(what.to_string());
    bar
}

fn update(bar: &indicatif::ProgressBar, done: u64, total: u64) {
    bar.set_length(total);
    bar.set_position(done);
}
