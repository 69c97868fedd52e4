//! The scenarios S1-S8, each run against Rookery and (S1, S2) JetStream in alternating rounds, next to
//! the raw limits, with a report of offered and achieved rates, latencies and exact counts.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;

use crate::load::{self, Role, Totals};
use crate::server::Server;
use crate::{client, limits, nats, server, Plan};

/// Collected report lines and the scenarios that ran.
#[derive(Default)]
struct Report {
    lines: Vec<String>,
    ran: Vec<&'static str>,
    failures: Vec<String>,
}

impl Report {
    fn line(&mut self, s: String) {
        println!("{s}");
        self.lines.push(s);
    }
    fn check(&mut self, ok: bool, what: String) {
        if !ok {
            println!("FAILED: {what}");
            self.failures.push(what);
        }
    }
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

/// "p50 / p99 / max" in milliseconds.
fn lat(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "-".into();
    }
    format!("{} / {} / {}", ms(h.value_at_quantile(0.5)), ms(h.value_at_quantile(0.99)), ms(h.max()))
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

fn rate(n: u64, from_us: u64, to_us: u64) -> f64 {
    let secs = (to_us.saturating_sub(from_us)) as f64 / 1e6;
    if secs <= 0.0 {
        0.0
    } else {
        n as f64 / secs
    }
}

fn ratio(a: f64, b: f64) -> String {
    if b <= 0.0 {
        "-".into()
    } else {
        format!("{:.2}", a / b)
    }
}

async fn varz_groups(s: &Server) -> (u64, u64) {
    match s.varz().await {
        Ok(v) => (v["log_groups"].as_u64().unwrap_or(0), v["log_records"].as_u64().unwrap_or(0)),
        Err(_) => (0, 0),
    }
}

/// Runs the plan; fails when a scenario failed or (smoke) did not run.
pub async fn run(plan: Plan) -> anyhow::Result<()> {
    let mut r = Report::default();
    let machine = machine_line();
    r.line(format!("# rookery-bench {}", if plan.smoke { "(smoke)" } else { "" }));
    r.line(format!("machine: {machine}"));
    let have_nats = plan.nats && Command::new("nats-server").arg("--version").output().is_ok();
    if plan.nats && !have_nats {
        r.line("nats-server not installed: the JetStream peer is skipped".into());
    }
    let data = tempfile::tempdir()?;
    let sync = Arc::new(Server::start(&data.path().join("sync"), &[])?);
    let buffered = Arc::new(Server::start(&data.path().join("buffered"), &[("ROOKERY_DURABILITY", "buffered")])?);
    let nats = if have_nats { Some(nats::Nats::start().await?) } else { None };
    if let Some(n) = &nats {
        r.line(format!("peer: {} (JetStream, file storage; this version has no sync_interval setting: it fsyncs every 2 minutes)", n.version));
    }

    if plan.runs("S1") || plan.runs("limits") {
        let t = Instant::now();
        s1(&plan, &mut r, &sync, &buffered, nats.as_ref()).await?;
        println!("  (S1 took {:.1} s)", t.elapsed().as_secs_f64());
    }
    drop(buffered);
    if plan.runs("S2") {
        let t = Instant::now();
        s2(&plan, &mut r, &sync, nats.as_ref()).await?;
        println!("  (S2 took {:.1} s)", t.elapsed().as_secs_f64());
    }
    drop(nats);
    if plan.runs("S3") {
        let t = Instant::now();
        s3(&plan, &mut r, &sync).await?;
        println!("  (S3 took {:.1} s)", t.elapsed().as_secs_f64());
    }
    if plan.runs("S5") {
        let t = Instant::now();
        s5(&plan, &mut r, &sync).await?;
        println!("  (S5 took {:.1} s)", t.elapsed().as_secs_f64());
    }
    drop(sync);
    if plan.runs("S4") {
        let t = Instant::now();
        s4(&plan, &mut r).await?;
        println!("  (S4 took {:.1} s)", t.elapsed().as_secs_f64());
    }
    if plan.runs("S6") {
        let t = Instant::now();
        s6(&plan, &mut r).await?;
        println!("  (S6 took {:.1} s)", t.elapsed().as_secs_f64());
    }
    if plan.runs("S7") {
        let t = Instant::now();
        s7(&plan, &mut r).await?;
        println!("  (S7 took {:.1} s)", t.elapsed().as_secs_f64());
    }
    if plan.runs("S8") {
        let t = Instant::now();
        s8(&plan, &mut r).await?;
        println!("  (S8 took {:.1} s)", t.elapsed().as_secs_f64());
    }
    r.line(format!("scenarios ran: {}", r.ran.join(" ")));
    if plan.smoke {
        for s in ["S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8"] {
            if plan.runs(s) && !r.ran.contains(&s) {
                r.failures.push(format!("{s} did not run"));
            }
        }
    }
    if !r.failures.is_empty() {
        anyhow::bail!("{} check(s) failed: {}", r.failures.len(), r.failures.join("; "));
    }
    Ok(())
}

fn machine_line() -> String {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string()))
        .unwrap_or_default();
    let mem_gib = mem.parse::<f64>().unwrap_or(0.0) / 1024.0 / 1024.0;
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let os = std::fs::read_to_string("/etc/debian_version").map(|v| format!("Debian {}", v.trim())).unwrap_or_default();
    format!("{cpus} CPUs, {mem_gib:.0} GiB, {os}, Linux {}, {}", kernel.trim(), chrono_now())
}

fn chrono_now() -> String {
    Command::new("date").arg("-u").arg("+%Y-%m-%d %H:%M UTC").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default()
}

/// Users `prefix{0..n}` with tokens.
async fn users(s: &Arc<Server>, prefix: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let uids: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    s.tokens(&uids, 128).await?;
    Ok(uids)
}

fn sender_role(target: (String, u8), window: usize, rate: Option<f64>, secs: f64, me: u32) -> Role {
    Role { target: Some(target), window, rate, max_msgs: u32::MAX, until: Instant::now() + Duration::from_secs_f64(secs), index_base: 0, track: 0, me }
}

// ---------------------------------------------------------------------------------------------------
// S1: send rate. Many groups, one member online each; every member sends into its own group.

async fn s1(plan: &Plan, r: &mut Report, sync: &Arc<Server>, buffered: &Arc<Server>, nats: Option<&nats::Nats>) -> anyhow::Result<()> {
    let c = plan.s1_conns;
    r.line(String::new());
    r.line(format!(
        "## S1 send rate: {c} groups, one member online each, closed loop (1 SEND in flight per connection), {}s per round, {} round(s)",
        plan.secs, plan.rounds
    ));
    let mut conns = Vec::new();
    for s in [sync, buffered] {
        let uids = users(s, "s1-", c).await?;
        for (i, uid) in uids.iter().enumerate() {
            s.post("/channel", &json!({"channel_id": format!("s1g{i}"), "channel_type": 2, "subscribers": [uid]})).await?;
        }
        conns.push(load::connect_all(s.tcp, &uids, 128).await?);
    }
    let (send_len, ack_len) = client::frame_sizes("s1g0");
    let (mut rk, mut rkb, mut js, mut raw, mut sock) = (vec![], vec![], vec![], vec![], vec![]);
    let (mut rk_ack, mut rkb_ack, mut js_ack, mut sock_h) = (load::histogram(), load::histogram(), load::histogram(), load::histogram());
    let mut groups = vec![];
    let mut counts = (0u64, 0u64, 0u64);
    // CPU seconds (server, load generator) per side, summed over rounds: sync, buffered, jetstream.
    let mut cpu = [(0.0f64, 0.0f64); 3];
    for round in 0..plan.rounds {
        // Rookery, fsync per commit group (the default).
        for (k, s) in [sync, buffered].into_iter().enumerate() {
            let cs = std::mem::take(&mut conns[k]);
            let roles = (0..cs.len()).map(|i| sender_role((format!("s1g{i}"), 2), 1, None, plan.secs, i as u32)).collect();
            let (g0, r0) = varz_groups(s).await;
            let (sc, lc) = (server::cpu_secs(s.pid()), server::cpu_secs(0));
            let (back, outs) = load::run_all(cs, roles, Some(0), plan.quiet).await;
            cpu[k].0 += server::cpu_secs(s.pid()) - sc;
            cpu[k].1 += server::cpu_secs(0) - lc;
            let (g1, r1) = varz_groups(s).await;
            conns[k] = back;
            let t = load::totals(&outs);
            r.check(t.errors.is_empty() && t.refused == 0, format!("S1 rookery round {round}: errors {:?}, refused {}", t.errors.first(), t.refused));
            let achieved = rate(t.acked, t.first_send_us, t.last_ack_us);
            if k == 0 {
                rk.push(achieved);
                let _ = rk_ack.add(&t.ack_latency);
                groups.push((r1 - r0) as f64 / (g1 - g0).max(1) as f64);
                counts.0 += t.acked;
            } else {
                rkb.push(achieved);
                let _ = rkb_ack.add(&t.ack_latency);
                counts.1 += t.acked;
            }
            println!("  round {round} rookery-{}: {achieved:.0} acked SENDs/s (sent {}, acked {})", if k == 0 { "sync" } else { "buffered" }, t.sent, t.acked);
        }
        if let Some(n) = nats {
            let (sc, lc) = (server::cpu_secs(n.pid()), server::cpu_secs(0));
            let o = nats::s1(&n.url, c, 1, plan.secs).await?;
            cpu[2].0 += server::cpu_secs(n.pid()) - sc;
            cpu[2].1 += server::cpu_secs(0) - lc;
            r.check(o.error.is_none() && o.acked > 0, format!("S1 jetstream round {round}: {:?}", o.error));
            let achieved = rate(o.acked, o.first_send_us, o.last_ack_us);
            js.push(achieved);
            let _ = js_ack.add(&o.ack_latency);
            counts.2 += o.acked;
            println!("  round {round} jetstream: {achieved:.0} acked publishes/s");
        }
        // Raw limits at the group size Rookery reached in this round.
        let batch = groups.last().copied().unwrap_or(1.0).round().max(1.0) as usize;
        let total = ((rk.last().copied().unwrap_or(1000.0) * plan.secs.min(2.0)) as u64).clamp(2_000, 400_000);
        raw.push(tokio::task::spawn_blocking(move || limits::raw_group_commit(batch, total)).await??);
        let (sr, sh) = limits::raw_loopback(c, plan.secs, send_len, ack_len).await?;
        sock.push(sr);
        let _ = sock_h.add(&sh);
        println!("  round {round} raw: group commit at batch {batch}: {:.0}/s; loopback {sr:.0} round trips/s", raw.last().unwrap_or(&0.0));
    }
    let (rk_m, rkb_m, js_m, raw_m, sock_m) = (median(&rk), median(&rkb), median(&js), median(&raw), median(&sock));
    r.line(format!(
        "record {} B, SEND frame {send_len} B, SENDACK frame {ack_len} B, payload {} B before encryption; mean commit group {:.1} (median of rounds)",
        limits::record_len(),
        client::PAYLOAD,
        median(&groups)
    ));
    let per = |cpu: f64, n: u64| if n == 0 { "-".to_string() } else { format!("{:.1}", cpu * 1e6 / n as f64) };
    r.line("| side | durability | acked SENDs/s (median) | SEND->SENDACK p50 / p99 / max ms | acked total | server CPU µs per SEND | load generator CPU µs per SEND |".into());
    r.line("|---|---|---|---|---|---|---|".into());
    r.line(format!(
        "| rookery | fsync per commit group | {rk_m:.0} | {} | {} | {} | {} |",
        lat(&rk_ack),
        counts.0,
        per(cpu[0].0, counts.0),
        per(cpu[0].1, counts.0)
    ));
    r.line(format!(
        "| rookery | buffered (no fsync) | {rkb_m:.0} | {} | {} | {} | {} |",
        lat(&rkb_ack),
        counts.1,
        per(cpu[1].0, counts.1),
        per(cpu[1].1, counts.1)
    ));
    if nats.is_some() {
        r.line(format!(
            "| jetstream | file, periodic sync (2 min) | {js_m:.0} | {} | {} | {} | {} |",
            lat(&js_ack),
            counts.2,
            per(cpu[2].0, counts.2),
            per(cpu[2].1, counts.2)
        ));
    }
    r.line(format!(
        "| raw RocksDB WriteBatch + fsync, batch = mean group, 1 key/event (the log's synchronous write set) | fsync | {raw_m:.0} | - | - | - | - |"
    ));
    r.line(format!("| raw loopback TCP request/response, {c} conns | - | {sock_m:.0} | {} | - | - | - |", lat(&sock_h)));
    r.line(format!(
        "ratios: rookery(sync)/raw 1-key {}, rookery(sync)/jetstream {}, rookery(buffered)/jetstream {}, rookery(sync)/raw loopback {}",
        ratio(rk_m, raw_m),
        ratio(rk_m, js_m),
        ratio(rkb_m, js_m),
        ratio(rk_m, sock_m)
    ));
    r.ran.push("S1");
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// S2: group fan-out. One large group, every member online, one member sending.

async fn s2(plan: &Plan, r: &mut Report, sync: &Arc<Server>, nats: Option<&nats::Nats>) -> anyhow::Result<()> {
    let m = plan.s2_members;
    let msgs = plan.s2_messages;
    r.line(String::new());
    r.line(format!("## S2 group fan-out: one group of {m} members, all online, one sender, {msgs} messages per round (1 in flight), {} round(s)", plan.rounds));
    let uids = users(sync, "s2-", m).await?;
    sync.post("/channel", &json!({"channel_id": "s2big", "channel_type": 2, "subscribers": uids})).await?;
    let (mut rk, mut js) = (vec![], vec![]);
    let (mut rk_recv, mut js_recv, mut rk_ack, mut js_ack) = (load::histogram(), load::histogram(), load::histogram(), load::histogram());
    let (mut rk_cons, mut js_cons) = ((0u64, 0u64, 0u64, 0u64), (0u64, 0u64, 0u64, 0u64));
    let mut rk_send = vec![];
    // CPU seconds (server, load generator) while messages flow: rookery, jetstream.
    let mut cpu = [(0.0f64, 0.0f64); 2];
    for round in 0..plan.rounds {
        let started = Instant::now();
        let cs = load::connect_all(sync.tcp, &uids, 256).await?;
        println!("  round {round}: {} rookery connections in {:.1}s", cs.len(), started.elapsed().as_secs_f64());
        let roles: Vec<Role> = (0..cs.len())
            .map(|i| Role {
                target: (i == 0).then(|| ("s2big".to_string(), 2)),
                window: 1,
                rate: None,
                max_msgs: msgs,
                until: Instant::now() + Duration::from_secs(3600),
                index_base: 0,
                track: msgs as usize,
                me: i as u32,
            })
            .collect();
        let (sc, lc) = (server::cpu_secs(sync.pid()), server::cpu_secs(0));
        let (back, outs) = load::run_all(cs, roles, Some(u64::from(msgs) * (m as u64 - 1)), plan.quiet).await;
        cpu[0].0 += server::cpu_secs(sync.pid()) - sc;
        cpu[0].1 += server::cpu_secs(0) - lc;
        drop(back);
        let t: Totals = load::totals(&outs);
        let (expected, missing, dup) = load::conservation(&outs, |_| 0);
        r.check(
            t.errors.is_empty() && t.bad_recv == 0 && t.refused == 0,
            format!("S2 rookery round {round}: errors {:?} bad {} refused {}", t.errors.first(), t.bad_recv, t.refused),
        );
        r.check(missing == 0 && dup == 0 && expected > 0, format!("S2 rookery round {round}: expected {expected}, missing {missing}, duplicate {dup}"));
        let d = rate(t.received, t.first_send_us, t.last_recv_us);
        rk.push(d);
        rk_send.push(rate(t.acked, t.first_send_us, t.last_ack_us));
        let _ = rk_recv.add(&t.recv_latency);
        let _ = rk_ack.add(&t.ack_latency);
        rk_cons = (rk_cons.0 + expected, rk_cons.1 + t.received, rk_cons.2 + missing, rk_cons.3 + dup);
        println!("  round {round} rookery: {d:.0} deliveries/s, received {} of {expected}, missing {missing}, duplicate {dup}", t.received);
        if let Some(n) = nats {
            let (p, outs, (scpu, lcpu)) = nats::s2(&n.url, n.pid(), m - 1, msgs, 1, plan.quiet).await?;
            cpu[1].0 += scpu;
            cpu[1].1 += lcpu;
            let mut all = vec![p];
            all.extend(outs);
            let (expected, missing, dup) = load::conservation(&all, |_| 0);
            let t = load::totals(&all);
            r.check(t.errors.is_empty() && t.acked > 0, format!("S2 jetstream round {round}: {:?}", t.errors.first()));
            let d = rate(t.received, t.first_send_us, t.last_recv_us);
            js.push(d);
            let _ = js_recv.add(&t.recv_latency);
            let _ = js_ack.add(&t.ack_latency);
            js_cons = (js_cons.0 + expected, js_cons.1 + t.received, js_cons.2 + missing, js_cons.3 + dup);
            println!("  round {round} jetstream: {d:.0} deliveries/s, received {} of {expected}, missing {missing}, duplicate {dup}", t.received);
        }
    }
    let per = |cpu: f64, n: u64| if n == 0 { "-".to_string() } else { format!("{:.1}", cpu * 1e6 / n as f64) };
    r.line("| side | deliveries/s (median) | messages/s sent | SEND->SENDACK p50 / p99 / max ms | SEND->RECV p50 / p99 / max ms | expected | received | missing | duplicate | server CPU µs per delivery | load generator CPU µs per delivery |".into());
    r.line("|---|---|---|---|---|---|---|---|---|---|---|".into());
    r.line(format!(
        "| rookery (fsync) | {:.0} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} |",
        median(&rk),
        median(&rk_send),
        lat(&rk_ack),
        lat(&rk_recv),
        rk_cons.0,
        rk_cons.1,
        rk_cons.2,
        rk_cons.3,
        per(cpu[0].0, rk_cons.1),
        per(cpu[0].1, rk_cons.1)
    ));
    if nats.is_some() {
        r.line(format!(
            "| jetstream push consumer | {:.0} | - | {} | {} | {} | {} | {} | {} | {} | {} |",
            median(&js),
            lat(&js_ack),
            lat(&js_recv),
            js_cons.0,
            js_cons.1,
            js_cons.2,
            js_cons.3,
            per(cpu[1].0, js_cons.1),
            per(cpu[1].1, js_cons.1)
        ));
        r.line(format!("ratio rookery/jetstream deliveries/s: {}", ratio(median(&rk), median(&js))));
    }
    r.ran.push("S2");
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// S3: one-to-one pairs. Peak (closed loop), then half of the peak, paced.

async fn s3(plan: &Plan, r: &mut Report, sync: &Arc<Server>) -> anyhow::Result<()> {
    let p = plan.s3_pairs;
    r.line(String::new());
    r.line(format!("## S3 one-to-one: {p} pairs (both sides send to each other), {}s per phase", plan.secs));
    let uids = users(sync, "s3-", 2 * p).await?;
    let mut cs = load::connect_all(sync.tcp, &uids, 128).await?;
    let peer = |i: usize| uids[i ^ 1].clone();
    let mut rows = Vec::new();
    let mut peak = 0.0;
    for (phase, offered) in [("peak (closed loop)", None), ("half of peak (paced)", Some(()))] {
        let per_conn = offered.map(|()| peak / 2.0 / cs.len() as f64);
        let roles = (0..cs.len()).map(|i| sender_role((peer(i), 1), if per_conn.is_some() { 64 } else { 1 }, per_conn, plan.secs, i as u32)).collect();
        let (back, outs) = load::run_all(std::mem::take(&mut cs), roles, None, Duration::from_secs(1)).await;
        cs = back;
        let t = load::totals(&outs);
        r.check(
            t.errors.is_empty() && t.refused == 0 && t.bad_recv == 0,
            format!("S3 {phase}: errors {:?} refused {} bad {}", t.errors.first(), t.refused, t.bad_recv),
        );
        r.check(t.received == t.acked, format!("S3 {phase}: acked {} but received {}", t.acked, t.received));
        let achieved = rate(t.acked, t.first_send_us, t.last_ack_us);
        if per_conn.is_none() {
            peak = achieved;
        }
        let offered = per_conn.map(|c| format!("{:.0}", c * cs.len() as f64)).unwrap_or_else(|| "closed loop".into());
        rows.push(format!("| {phase} | {offered} | {achieved:.0} | {} | {} | {} | {} |", lat(&t.ack_latency), lat(&t.recv_latency), t.acked, t.received));
    }
    r.line("| phase | offered SENDs/s | acked SENDs/s | SEND->SENDACK p50 / p99 / max ms | SEND->RECV p50 / p99 / max ms | acked | received |".into());
    r.line("|---|---|---|---|---|---|---|".into());
    for row in rows {
        r.line(row);
    }
    r.ran.push("S3");
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// S5: reconnect storm. Members of the S2 group (a conversation with messages each) all drop their
// connection, reconnect and sync their conversations.

async fn s5(plan: &Plan, r: &mut Report, sync: &Arc<Server>) -> anyhow::Result<()> {
    let n = plan.s5_clients;
    r.line(String::new());
    r.line(format!("## S5 reconnect storm: {n} clients disconnect, reconnect and call /conversation/sync"));
    let uids = users(sync, "s5-", n).await?;
    sync.post("/channel", &json!({"channel_id": "s5g", "channel_type": 2, "subscribers": uids})).await?;
    for i in 0..5 {
        sync.post("/message/send", &json!({"from_uid": uids[0], "channel_id": "s5g", "channel_type": 2, "payload": "aGVsbG8=", "header": {"red_dot": 1}, "client_msg_no": format!("s5-{i}")})).await?;
    }
    let cs = load::connect_all(sync.tcp, &uids, 256).await?;
    let started = Instant::now();
    drop(cs);
    let sem = Arc::new(tokio::sync::Semaphore::new(512));
    let mut handles = Vec::new();
    for (i, uid) in uids.iter().enumerate() {
        let (s, sem, uid) = (sync.clone(), sem.clone(), uid.clone());
        handles.push(tokio::spawn(async move {
            let _p = sem.acquire().await;
            let at = Instant::now();
            let conn = client::connect(s.tcp, client::source_ip(i), &uid, &crate::server::token(&uid)).await?;
            let v = s.post("/conversation/sync", &json!({"uid": uid, "version": 0, "msg_count": 1})).await?;
            let ok = v.as_array().is_some_and(|a| a.iter().any(|c| c["channel_id"] == "s5g" && c["last_msg_seq"].as_u64().unwrap_or(0) >= 5));
            anyhow::Ok((conn, ok, at.elapsed()))
        }));
    }
    let mut h = load::histogram();
    let (mut synced, mut failed, mut keep) = (0, 0, Vec::new());
    for t in handles {
        match t.await? {
            Ok((c, ok, d)) => {
                keep.push(c);
                if ok {
                    synced += 1;
                } else {
                    failed += 1;
                }
                let _ = h.record(d.as_micros().max(1) as u64);
            }
            Err(e) => {
                failed += 1;
                println!("  S5 client failed: {e:#}");
            }
        }
    }
    let total = started.elapsed();
    r.check(synced == n && failed == 0, format!("S5: {synced} of {n} synced, {failed} failed"));
    r.line("| clients | all reconnected and synced after ms | per client (reconnect + sync) p50 / p99 / max ms | synced | failed |".into());
    r.line("|---|---|---|---|---|".into());
    r.line(format!("| {n} | {:.0} | {} | {synced} | {failed} |", total.as_secs_f64() * 1000.0, lat(&h)));
    r.ran.push("S5");
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// S4: idle connections with heartbeats, held by worker processes; server RSS before and after.

fn fd_limit_and_open(pid: u32) -> (usize, usize) {
    let limit = std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .ok()
        .and_then(|l| l.lines().find(|l| l.starts_with("Max open files")).and_then(|l| l.split_whitespace().nth(3)).and_then(|v| v.parse().ok()))
        .unwrap_or(1024);
    let open = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    (limit, open)
}

/// Descriptors left to the server's own files at the top S4 level.
const SPARE_FDS: usize = 160;

async fn s4(plan: &Plan, r: &mut Report) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Arc::new(Server::start(dir.path(), &[])?);
    let (limit, open) = fd_limit_and_open(server.pid());
    // Every connection is one descriptor in the server. RocksDB opens more files as the log grows
    // (new WAL and SST files); past the limit, accept fails with EMFILE and clients wait in the backlog.
    let cap = limit.saturating_sub(open + SPARE_FDS);
    let mut levels = plan.s4_levels.clone();
    if plan.s4_to_cap {
        levels.push(cap);
    }
    let most = levels.iter().copied().max().unwrap_or(0);
    r.line(String::new());
    r.line(format!(
        "## S4 idle connections with heartbeats (PING every 1 s per connection), server fd limit {limit}, {open} descriptors open when idle, so at most {cap} connections (cap = limit - open - {SPARE_FDS} spare for RocksDB files)"
    ));
    let started = Instant::now();
    users(&server, "s4-", most).await?;
    println!("  {most} tokens in {:.1}s", started.elapsed().as_secs_f64());
    let per_worker = 9_900;
    r.line("| connections | connected | workers | connect ms | server RSS idle kB | before this level kB | with the connections kB | RSS per connection KB (vs idle) | pings | pongs | closed |".into());
    r.line("|---|---|---|---|---|---|---|---|---|---|---|".into());
    // Freed connection memory stays in the allocator, so each level is compared with the server's RSS
    // before any connection, not with the level before.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = server.rss_kb();
    for n in levels {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = server.rss_kb();
        let fds_before = fd_limit_and_open(server.pid()).1;
        let exe = std::env::current_exe()?;
        let workers = n.div_ceil(per_worker);
        let mut children = Vec::new();
        for w in 0..workers {
            let first = w * per_worker;
            let count = per_worker.min(n - first);
            let child = Command::new(&exe)
                .args(["idle-worker", &server.tcp.to_string(), "s4-", &first.to_string(), &count.to_string(), "1000"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()?;
            children.push(child);
        }
        let mut connected = 0;
        let mut connect_ms = 0;
        let mut readers = Vec::new();
        for c in &mut children {
            let mut rd = BufReader::new(c.stdout.take().ok_or_else(|| anyhow::anyhow!("worker stdout"))?);
            let line = tokio::task::block_in_place(|| {
                let mut l = String::new();
                rd.read_line(&mut l).map(|_| l)
            })?;
            let f: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
            connected += f.first().copied().unwrap_or(0);
            connect_ms = connect_ms.max(f.get(2).copied().unwrap_or(0));
            readers.push(rd);
        }
        // Hold through at least one heartbeat of every connection.
        tokio::time::sleep(plan.s4_hold).await;
        let after = server.rss_kb();
        let (mut pings, mut pongs, mut closed) = (0, 0, 0);
        for (c, rd) in children.iter_mut().zip(readers.iter_mut()) {
            if let Some(stdin) = c.stdin.as_mut() {
                let _ = stdin.write_all(b"stop\n");
            }
            let line = tokio::task::block_in_place(|| {
                let mut l = String::new();
                rd.read_line(&mut l).map(|_| l)
            })?;
            let f: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
            pings += f.first().copied().unwrap_or(0);
            pongs += f.get(1).copied().unwrap_or(0);
            closed += f.get(2).copied().unwrap_or(0);
        }
        for mut c in children {
            let _ = c.wait();
        }
        let per = (after.saturating_sub(idle)) as f64 / n.max(1) as f64;
        r.check(connected == n as u64 && closed == 0 && pongs > 0, format!("S4 at {n}: connected {connected}, closed {closed}, pongs {pongs}"));
        r.line(format!("| {n} | {connected} | {workers} | {connect_ms} | {idle} | {before} | {after} | {per:.2} | {pings} | {pongs} | {closed} |"));
        // Let the server drop the closed sessions before the next level.
        let deadline = Instant::now() + Duration::from_secs(20);
        while fd_limit_and_open(server.pid()).1 > fds_before + 16 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    r.line("pings minus pongs are heartbeats still in flight when the workers stopped.".into());
    r.ran.push("S4");
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// S6: restart. Time from spawn until every listener is up, against the log length.

async fn s6(plan: &Plan, r: &mut Report) -> anyhow::Result<()> {
    r.line(String::new());
    r.line("## S6 restart: spawn until every listener is reported, log filled with message records over 1,000 channels".into());
    r.line("| events in log | fill s | first start (no snapshots: replays everything) s | restart after a clean stop (snapshots current) s | replayed events/s at first start |".into());
    r.line("|---|---|---|---|---|".into());
    for &events in &plan.s6_events {
        let dir = tempfile::tempdir()?;
        let path = dir.path().to_path_buf();
        let started = Instant::now();
        tokio::task::spawn_blocking(move || limits::fill(&path, events)).await??;
        let fill = started.elapsed().as_secs_f64();
        let mut s = Server::start(dir.path(), &[])?;
        let first = s.ready_after.as_secs_f64();
        let pos = s.varz().await?["log_position"].as_u64().unwrap_or(0);
        r.check(pos == events, format!("S6: log position {pos}, filled {events}"));
        s.stop();
        let s = Server::start(dir.path(), &[])?;
        let second = s.ready_after.as_secs_f64();
        drop(s);
        r.line(format!("| {events} | {fill:.1} | {first:.2} | {second:.2} | {:.0} |", events as f64 / first));
    }
    r.ran.push("S6");
    Ok(())
}

// S7: the cost of a send through the JMessage family against the same send through the WuKongIM REST
// API, on one server, in alternating rounds: the same sender, the same person channel, a payload of
// the same text. The JMessage route also resolves both usernames, applies the app's sensitive-word
// rule and reads back the message's log position (its msg_id).
async fn s7(plan: &Plan, r: &mut Report) -> anyhow::Result<()> {
    use base64::Engine as _;
    let (conns, secs) = (plan.s7_conns, plan.secs);
    r.line(format!(
        "## S7 REST send, JMessage vs WuKongIM: {conns} HTTP clients, closed loop, one person channel, {secs}s per round, {} round(s)",
        plan.rounds
    ));
    let data = tempfile::tempdir()?;
    let apps = r#"[{tag="b1", appkey="benchappkey0000000000001", master_secret="bench-secret"}]"#;
    let s = Arc::new(Server::start(data.path(), &[("ROOKERY_JMESSAGE_APPS", apps)])?);
    let auth = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("benchappkey0000000000001:bench-secret"));
    let users = json!([{"username": "sender", "password": "password"}, {"username": "receiver", "password": "password"}]);
    let resp = s.http().post(format!("http://{}/v1/users/", s.api)).header("Authorization", &auth).json(&users).send().await?;
    anyhow::ensure!(resp.status() == 201, "registering the bench users: HTTP {}", resp.status());
    let text = "hello from the benchmark, a message of ordinary length";
    let jm = json!({"version": 1, "target_type": "single", "target_id": "receiver", "from_type": "user", "from_id": "sender", "msg_type": "text", "msg_body": {"text": text}});
    let wk_payload = json!({"type": 1, "content": text}).to_string();
    let wk = json!({"from_uid": "b1#1", "channel_id": "b1#2", "channel_type": 1, "payload": base64::engine::general_purpose::STANDARD.encode(wk_payload)});
    r.line("| round | route | sends/s | p50 / p99 / max ms | errors |".into());
    r.line("|---|---|---|---|---|".into());
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..plan.rounds {
        for (i, (name, path, body, expect)) in [("jmessage", "/v1/messages", &jm, 201u16), ("wukongim", "/message/send", &wk, 200u16)].into_iter().enumerate() {
            let (body, url) = (body.clone(), format!("http://{}{}", s.api, path));
            let request = Arc::new(move |_: usize| (url.clone(), body.clone()));
            let stop = Stop::At(Instant::now() + Duration::from_secs_f64(secs));
            let (ok, errors, h, elapsed) = closed_loop(&s, conns, stop, Some(auth.clone()), expect, request).await?;
            let per_sec = ok as f64 / elapsed.as_secs_f64();
            rates[i].push(per_sec);
            r.line(format!("| {round} | {name} | {per_sec:.0} | {} | {errors} |", lat(&h)));
            r.check(errors == 0 && ok > 0, format!("S7 {name} round {round}: {ok} sent, {errors} errors"));
        }
    }
    let (j, w) = (median(&rates[0]), median(&rates[1]));
    r.line(format!("S7 median: JMessage {j:.0} sends/s, WuKongIM {w:.0} sends/s, JMessage/WuKongIM = {}", ratio(j, w)));
    r.ran.push("S7");
    Ok(())
}

/// When a closed loop stops: at an instant, or after a number of requests in all.
#[derive(Clone, Copy)]
enum Stop {
    At(Instant),
    After(usize),
}

/// The i-th request of a closed loop: its URL and JSON body.
type MakeRequest = Arc<dyn Fn(usize) -> (String, serde_json::Value) + Send + Sync>;

/// `conns` HTTP clients in a closed loop, one request in flight each, until `stop`; a request counts
/// when answered with `expect`. Returns the successes, the errors, their latencies and the wall time.
async fn closed_loop(
    s: &Arc<Server>,
    conns: usize,
    stop: Stop,
    auth: Option<String>,
    expect: u16,
    request: MakeRequest,
) -> anyhow::Result<(u64, u64, Histogram<u64>, Duration)> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            let (s, next, auth, request) = (s.clone(), next.clone(), auth.clone(), request.clone());
            tokio::spawn(async move {
                let mut h = Histogram::<u64>::new(3).expect("histogram");
                let (mut ok, mut errors) = (0u64, 0u64);
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    match stop {
                        Stop::At(deadline) if Instant::now() >= deadline => break,
                        Stop::After(n) if i >= n => break,
                        _ => {}
                    }
                    let (url, body) = request(i);
                    let mut req = s.http().post(&url).json(&body);
                    if let Some(a) = &auth {
                        req = req.header("Authorization", a);
                    }
                    let t = Instant::now();
                    match req.send().await {
                        Ok(resp) if resp.status().as_u16() == expect => {
                            ok += 1;
                            let _ = h.record(t.elapsed().as_micros() as u64);
                        }
                        _ => errors += 1,
                    }
                }
                (ok, errors, h)
            })
        })
        .collect();
    let mut h = Histogram::<u64>::new(3)?;
    let (mut ok, mut errors) = (0u64, 0u64);
    for t in tasks {
        let (o, e, th) = t.await?;
        ok += o;
        errors += e;
        h.add(th)?;
    }
    Ok((ok, errors, h, started.elapsed()))
}

// ---------------------------------------------------------------------------------------------------
// S8: a stream delta against a normal send. One group of `members` subscribers, `online` of them
// connected (protocol 5); the same number of closed-loop HTTP clients append N deltas to one stream
// message, then send N ordinary messages into the same group, in alternating rounds. Reported: rate,
// latency, log records per operation (from the chain head) and what the online members received.

async fn s8(plan: &Plan, r: &mut Report) -> anyhow::Result<()> {
    use base64::Engine as _;
    let (conns, n, members, online) = if plan.smoke { (4, 400usize, 50usize, 5usize) } else { (plan.s7_conns, 10_000, 1_000, 20) };
    r.line(format!(
        "## S8 stream delta vs send: one group of {members} members, {online} online (protocol 5), {conns} HTTP clients, {n} operations per leg, {} round(s)",
        plan.rounds
    ));
    let data = tempfile::tempdir()?;
    let s = Arc::new(Server::start(data.path(), &[])?);
    let uids = users(&s, "m", members).await?;
    let mut subscribers = uids.clone();
    subscribers.push("bot".into());
    s.post("/channel", &json!({"channel_id": "ai", "channel_type": 2, "subscribers": subscribers})).await?;
    // Online members drain what they get: RECVs are acknowledged, EVENTs counted.
    let counts = Arc::new((std::sync::atomic::AtomicU64::new(0), std::sync::atomic::AtomicU64::new(0)));
    let conns_online = load::connect_all(s.tcp, &uids[..online], 16).await?;
    let mut drains = Vec::new();
    for (mut reader, mut writer) in conns_online {
        let counts = counts.clone();
        drains.push(tokio::spawn(async move {
            while let Ok(Some(p)) = reader.next().await {
                match p {
                    rookery::gateway::packet::Packet::Recv(recv) => {
                        // A RECV sent again (DUP) is not a second push.
                        if !recv.header.dup {
                            counts.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        if writer.queue_recvack(&recv).is_err() || writer.flush().await.is_err() {
                            break;
                        }
                    }
                    rookery::gateway::packet::Packet::Event(_) => {
                        counts.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
        }));
    }
    let head = |s: Arc<Server>| async move {
        let v: serde_json::Value = s.http().get(format!("http://{}/audit/head", s.api)).send().await?.json().await?;
        anyhow::Ok(v["position"].as_u64().unwrap_or(0))
    };
    let payload = base64::engine::general_purpose::STANDARD.encode(json!({"type": 1, "content": "a reply token of ordinary length"}).to_string());
    r.line("| round | operation | ops/s | p50 / p99 / max ms | log records per op | pushes per op per online member | errors |".into());
    r.line("|---|---|---|---|---|---|---|".into());
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut records: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..plan.rounds {
        let stream_no = format!("reply-{round}");
        s.post(
            "/message/send",
            &json!({"from_uid": "bot", "channel_id": "ai", "channel_type": 2, "client_msg_no": stream_no, "is_stream": 1, "payload": payload}),
        )
        .await?;
        for (leg, name) in ["stream.delta", "send"].into_iter().enumerate() {
            let before = head(s.clone()).await?;
            // A delta leg counts EVENTs, a send leg RECVs (first copies only).
            let counter = if leg == 0 { &counts.1 } else { &counts.0 };
            let pushed_before = counter.load(std::sync::atomic::Ordering::Relaxed);
            let (api, stream_no, payload) = (s.api, stream_no.clone(), payload.clone());
            let request = Arc::new(move |i: usize| {
                if leg == 0 {
                    let delta = json!({"kind": "text", "delta": format!("token {i} ")});
                    let body = json!({"channel_id": "ai", "channel_type": 2, "from_uid": "bot", "client_msg_no": stream_no, "event_id": format!("e{i}"), "event_type": "stream.delta", "payload": delta});
                    (format!("http://{api}/message/event"), body)
                } else {
                    (format!("http://{api}/message/send"), json!({"from_uid": "bot", "channel_id": "ai", "channel_type": 2, "payload": payload}))
                }
            });
            let (ok, errors, h, elapsed) = closed_loop(&s, conns, Stop::After(n), None, 200, request).await?;
            let per_sec = ok as f64 / elapsed.as_secs_f64();
            let after = head(s.clone()).await?;
            // Pushes arrive after the answers: wait until every online member has them (or 10 s).
            let expected = pushed_before + ok * online as u64;
            let deadline = Instant::now() + Duration::from_secs(10);
            let pushed = loop {
                let now = counter.load(std::sync::atomic::Ordering::Relaxed);
                if now >= expected || Instant::now() > deadline {
                    break now - pushed_before;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            let per_op = (after - before) as f64 / ok.max(1) as f64;
            rates[leg].push(per_sec);
            records[leg].push(per_op);
            r.line(format!(
                "| {round} | {name} | {per_sec:.0} | {} | {per_op:.3} | {:.2} | {errors} |",
                lat(&h),
                pushed as f64 / (ok.max(1) * online as u64) as f64
            ));
            r.check(errors == 0 && ok == n as u64, format!("S8 {name} round {round}: {ok} of {n}, {errors} errors"));
            r.check(pushed == ok * online as u64, format!("S8 {name} round {round}: {pushed} pushes for {ok} operations and {online} online members"));
        }
        s.post(
            "/message/event",
            &json!({"channel_id": "ai", "channel_type": 2, "from_uid": "bot", "client_msg_no": stream_no, "event_id": "end", "event_type": "stream.close"}),
        )
        .await?;
        // The close's pushes belong to no leg: let them arrive before the next round counts.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for d in drains {
        d.abort();
    }
    let (d, m) = (median(&rates[0]), median(&rates[1]));
    r.line(format!(
        "S8 median: stream delta {d:.0} ops/s, send {m:.0} ops/s, delta/send = {}; log records per delta {:.3}, per send {:.3}",
        ratio(d, m),
        median(&records[0]),
        median(&records[1])
    ));
    r.ran.push("S8");
    Ok(())
}
