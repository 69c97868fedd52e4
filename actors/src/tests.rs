//! Actor behaviour against a real RocksDB log in a temporary directory.

use std::sync::Arc;
use std::time::Duration;

use rookery_events::*;
use rookery_storage::{EventLog, RocksLog, RocksOptions};

use crate::*;

fn origin() -> Origin {
    Origin::system(RequestId([1; 16]))
}

fn group() -> ChannelKey {
    ChannelKey::new("g1", ChannelType::GROUP)
}

fn open(dir: &tempfile::TempDir) -> Arc<dyn EventLog> {
    Arc::new(RocksLog::open(dir.path(), RocksOptions::default()).expect("open log"))
}

fn start(log: Arc<dyn EventLog>, idle: Duration) -> Core {
    Core::start(log, Arc::new(SystemClock), CoreConfig { idle_timeout: idle, snapshot_every: 7, arbiters: 2, dedupe_window: 4096 }).expect("core starts")
}

fn message(from: &str, cmn: &str) -> SendMessage {
    SendMessage {
        message_id: MessageId(0),
        client_msg_no: ClientMsgNo::from(cmn),
        from_uid: from.into(),
        header: MessageHeader { red_dot: true, ..Default::default() },
        setting: 0,
        stream_no: None,
        expire: 0,
        topic: None,
        payload: format!("payload of {cmn}").into_bytes(),
        sender: SenderStanding::default(),
        peer: PeerPolicy::default(),
    }
}

async fn members(core: &Core, uids: &[&str]) {
    let uids = uids.iter().map(|u| Uid::from(*u)).collect();
    core.channel(&group(), ChannelCommand::AddSubscribers { uids, reset: false }, origin()).await.expect("subscribers added");
}

#[actix::test]
async fn concurrent_sends_get_dense_unique_seqs_in_commit_order() {
    let dir = tempfile::tempdir().unwrap();
    let core = start(open(&dir), Duration::from_secs(60));
    members(&core, &["a", "b"]).await;
    let sends = (0..200).map(|i| {
        let core = core.clone();
        async move { core.send(&group(), message(if i % 2 == 0 { "a" } else { "b" }, &format!("m{i}")), origin()).await }
    });
    let results = futures::future::join_all(sends).await;
    let mut seqs: Vec<u64> = results.iter().map(|r| r.as_ref().expect("sent").message_seq.0).collect();
    seqs.sort();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
    let stored = core.messages(&group(), 1, u64::MAX, 1000, false, false).unwrap();
    assert_eq!(stored.iter().map(|m| m.message_seq.0).collect::<Vec<_>>(), (1..=200).collect::<Vec<_>>());
    let ids: std::collections::BTreeSet<_> = stored.iter().map(|m| m.message_id).collect();
    assert_eq!(ids.len(), 200);
}

fn uids_of(list: &[Uid]) -> Vec<&str> {
    let mut v: Vec<&str> = list.iter().map(|u| u.0.as_str()).collect();
    v.sort_unstable();
    v
}

/// A send is answered with who receives it: the subscribers as of the message, one list shared until
/// the membership changes, nothing for a retry; a person channel's are its two parties.
#[actix::test]
async fn a_send_is_answered_with_its_recipients() {
    let dir = tempfile::tempdir().unwrap();
    let core = start(open(&dir), Duration::from_secs(60));
    members(&core, &["a", "b"]).await;
    let first = core.send(&group(), message("a", "m1"), origin()).await.unwrap();
    let second = core.send(&group(), message("b", "m2"), origin()).await.unwrap();
    assert_eq!(uids_of(&first.recipients), ["a", "b"]);
    assert!(Arc::ptr_eq(&first.recipients, &second.recipients), "built once, shared");
    assert!(Arc::ptr_eq(&core.recipients(&group()).await.unwrap(), &second.recipients));
    let retry = core.send(&group(), message("a", "m1"), origin()).await.unwrap();
    assert!(retry.duplicate && retry.recipients.is_empty(), "a retry was delivered with its original");

    members(&core, &["c"]).await;
    core.channel(&group(), ChannelCommand::RemoveSubscribers(vec!["a".into()]), origin()).await.unwrap();
    let third = core.send(&group(), message("b", "m3"), origin()).await.unwrap();
    assert_eq!(uids_of(&third.recipients), ["b", "c"], "the membership as of the message");
    assert_eq!(uids_of(&first.recipients), ["a", "b"], "an earlier answer keeps its list");
    assert_eq!(uids_of(&core.recipients(&group()).await.unwrap()), ["b", "c"]);

    let person = ChannelKey::new(person_channel_id(&"a".into(), &"z".into()).0, ChannelType::PERSON);
    let direct = core.send(&person, message("a", "p1"), origin()).await.unwrap();
    assert_eq!(uids_of(&direct.recipients), ["a", "z"]);
    let own = ChannelKey::new(person_channel_id(&"a".into(), &"a".into()).0, ChannelType::PERSON);
    assert_eq!(uids_of(&core.send(&own, message("a", "p2"), origin()).await.unwrap().recipients), ["a"]);
}

/// A sender's bans live on their own person channel; while its actor is live the core reads what the
/// actor published, else it asks. Either way a ban or its lifting counts from its acknowledgement on,
/// also across passivation.
#[actix::test]
async fn a_senders_ban_counts_from_its_acknowledgement_on() {
    let dir = tempfile::tempdir().unwrap();
    let core = start(open(&dir), Duration::from_millis(200));
    members(&core, &["a"]).await;
    let own = ChannelKey::new("a", ChannelType::PERSON);
    let set = |info: ChannelInfo| ChannelCommand::Upsert { info, subscribers: Vec::new(), reset: false };
    let ban = ChannelInfo { ban: true, ..ChannelInfo::default() };
    let send_ban = ChannelInfo { send_ban: true, ..ChannelInfo::default() };
    core.send(&group(), message("a", "first"), origin()).await.expect("not banned");
    for (n, (info, allowed)) in
        [(ban, false), (ChannelInfo::default(), true), (send_ban, false), (ChannelInfo::default(), true), (send_ban, false)].into_iter().enumerate()
    {
        core.channel(&own, set(info), origin()).await.unwrap();
        let sent = core.send(&group(), message("a", &format!("m{n}")), origin()).await;
        assert_eq!(sent.is_ok(), allowed, "step {n}: {sent:?}");
        if !allowed {
            assert_eq!(sent.unwrap_err(), CoreError::Rejected(Rejection::SendBanned));
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while core.stats().channel_actors > 0 {
        assert!(std::time::Instant::now() < deadline, "channel actors were never passivated");
        actix::clock::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        core.send(&group(), message("a", "after"), origin()).await.unwrap_err(),
        CoreError::Rejected(Rejection::SendBanned),
        "still banned after passivation"
    );
    core.channel(&own, set(ChannelInfo::default()), origin()).await.unwrap();
    core.send(&group(), message("a", "lifted"), origin()).await.expect("lifted");
}

/// A channel writes its snapshot after `snapshot_every` (7 here) events of its own, however fast the
/// rest of the log grows: a restart replays at most that many of its events, and a busy server does
/// not re-encode every channel's state every few messages.
#[actix::test]
async fn a_channel_snapshots_after_its_own_events_not_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    let core = start(log.clone(), Duration::from_secs(60));
    let quiet = ChannelKey::new("quiet", ChannelType::GROUP);
    let busy = ChannelKey::new("busy", ChannelType::GROUP);
    for key in [&quiet, &busy] {
        core.channel(key, ChannelCommand::AddSubscribers { uids: vec!["a".into()], reset: false }, origin()).await.unwrap();
    }
    let snapshot = || log.get_snapshot(&StreamId::Channel(quiet.clone()).key()).unwrap().map(|s| s.position);
    // Two events so far (created, subscribers added), then four messages, each after 20 in the other channel.
    for i in 0..4 {
        for j in 0..20 {
            core.send(&busy, message("a", &format!("b{i}-{j}")), origin()).await.unwrap();
        }
        core.send(&quiet, message("a", &format!("q{i}")), origin()).await.unwrap();
    }
    assert_eq!(snapshot(), None, "6 events of its own: no snapshot yet, though the log grew by more than 80");
    core.send(&quiet, message("a", "q4"), origin()).await.unwrap();
    let position = snapshot().expect("the seventh event writes it");
    assert_eq!(core.channel_state(&quiet).await.unwrap().position, position, "as of its last event");
}

#[actix::test]
async fn a_retried_send_returns_the_original_even_while_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let core = start(open(&dir), Duration::from_secs(60));
    members(&core, &["a"]).await;
    let tries = (0..10).map(|_| {
        let core = core.clone();
        async move { core.send(&group(), message("a", "same"), origin()).await.expect("sent") }
    });
    let results = futures::future::join_all(tries).await;
    assert!(results.iter().all(|r| r.message_id == results[0].message_id && r.message_seq == MessageSeq(1)));
    assert_eq!(results.iter().filter(|r| !r.duplicate).count(), 1);
    let later = core.send(&group(), message("a", "same"), origin()).await.unwrap();
    assert_eq!((later.message_id, later.message_seq, later.duplicate), (results[0].message_id, MessageSeq(1), true));
    assert_eq!(core.channel_state(&group()).await.unwrap().last_message_seq, MessageSeq(1));
}

#[actix::test]
async fn retries_are_recognised_within_the_window_also_when_loaded_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let config = CoreConfig { idle_timeout: Duration::from_millis(200), snapshot_every: 7, arbiters: 2, dedupe_window: 4 };
    let core = Core::start(open(&dir), Arc::new(SystemClock), config).expect("core starts");
    members(&core, &["a", "b"]).await;
    let mut sent = Vec::new();
    for i in 1..=6 {
        sent.push(core.send(&group(), message("a", &format!("m{i}")), origin()).await.unwrap());
    }
    let mut command = message("a", "c1");
    command.header.sync_once = true;
    let first_command = core.send(&group(), command.clone(), origin()).await.unwrap();
    // Passivated, the channel loads its window from the log at the next send with a client_msg_no.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while core.stats().channel_actors > 0 {
        assert!(std::time::Instant::now() < deadline, "channel actors were never passivated");
        actix::clock::sleep(Duration::from_millis(50)).await;
    }
    let again = core.send(&group(), message("a", "m3"), origin()).await.unwrap();
    assert_eq!((again.message_id, again.message_seq, again.duplicate), (sent[2].message_id, MessageSeq(3), true), "seq 3 is among the last 4 of 6");
    let late = core.send(&group(), message("a", "m2"), origin()).await.unwrap();
    assert_eq!((late.message_seq, late.duplicate), (MessageSeq(7), false), "seq 2 is not: the retry is a new message");
    let again = core.send(&group(), command, origin()).await.unwrap();
    assert_eq!((again.message_id, again.message_seq, again.duplicate), (first_command.message_id, MessageSeq(1), true), "commands have their own window");
    // The window slides with every send: seq 7 pushed seq 3 out.
    assert_eq!(core.send(&group(), message("a", "m3"), origin()).await.unwrap().message_seq, MessageSeq(8));
    // A number is the sender's own: another sender's m6 is a new message.
    assert!(!core.send(&group(), message("b", "m6"), origin()).await.unwrap().duplicate);
    assert!(core.send(&group(), message("a", "m6"), origin()).await.unwrap().duplicate);
    assert_eq!(core.channel_state(&group()).await.unwrap().last_message_seq, MessageSeq(9));
}

#[actix::test]
async fn rejected_commands_append_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    let core = start(log.clone(), Duration::from_secs(60));
    members(&core, &["a"]).await;
    let head = log.head();
    let err = core.send(&group(), message("stranger", "x"), origin()).await.unwrap_err();
    assert_eq!(err, CoreError::Rejected(Rejection::NotSubscriber));
    let err = core.channel(&group(), ChannelCommand::RemoveSubscribers(vec![]), origin()).await.unwrap_err();
    assert!(matches!(err, CoreError::Rejected(Rejection::Invalid(_))));
    assert_eq!(log.head(), head);
}

#[actix::test]
async fn passivated_actors_come_back_with_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let core = start(open(&dir), Duration::from_millis(200));
    members(&core, &["a", "b"]).await;
    for i in 0..20 {
        core.send(&group(), message("a", &format!("m{i}")), origin()).await.unwrap();
    }
    let before = core.channel_state(&group()).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while core.stats().channel_actors > 0 {
        assert!(std::time::Instant::now() < deadline, "channel actors were never passivated");
        actix::clock::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(core.channel_state(&group()).await.unwrap(), before);
    let next = core.send(&group(), message("b", "after"), origin()).await.unwrap();
    assert_eq!(next.message_seq, MessageSeq(21));
}

#[actix::test]
async fn command_messages_are_queued_per_recipient_until_acked() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    let core = start(log.clone(), Duration::from_secs(60));
    members(&core, &["a", "b"]).await;
    // Load b's actor first so it learns of the queue entry by notification, and a's afterwards, by replay.
    core.user_state(&"b".into()).await.unwrap();
    let mut cmd = message("a", "c1");
    cmd.header.sync_once = true;
    let sent = core.send(&group(), cmd, origin()).await.unwrap();
    assert_eq!(sent.message_seq, MessageSeq(1));
    for uid in ["a", "b"] {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let pending = loop {
            let state = core.user_state(&uid.into()).await.unwrap();
            if !state.pending_commands.is_empty() || std::time::Instant::now() > deadline {
                break state.pending_commands;
            }
            actix::clock::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(pending.len(), 1, "{uid} has the command queued");
        let (&position, entry) = pending.iter().next().unwrap();
        assert_eq!((entry.message_seq, entry.message_id), (MessageSeq(1), sent.message_id));
        core.user(&uid.into(), UserCommand::AckSync(vec![position]), origin()).await.unwrap();
        assert!(core.user_state(&uid.into()).await.unwrap().pending_commands.is_empty());
    }
    // Ordinary messages keep their own sequence.
    assert_eq!(core.send(&group(), message("a", "n1"), origin()).await.unwrap().message_seq, MessageSeq(1));
    assert_eq!(replay::verify(&*log, &mut |_| {}).map(|r| r.events > 0), Ok(true));
}

#[actix::test]
async fn catch_up_then_verify_agree_with_a_full_replay() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    let core = start(log.clone(), Duration::from_secs(60));
    members(&core, &["a", "b", "c"]).await;
    core.system(SystemCommand::AddSystemUids(vec!["bot".into()]), origin()).await.unwrap();
    for i in 0..30 {
        core.send(&group(), message(["a", "b", "c"][i % 3], &format!("m{i}")), origin()).await.unwrap();
    }
    core.channel(&group(), ChannelCommand::List(ListKind::Blacklist, ListOp::Add(vec!["c".into()])), origin()).await.unwrap();
    core.user(&"a".into(), UserCommand::SetToken { device_flag: DeviceFlag::APP, device_level: DeviceLevel::MASTER, token: "t".into() }, origin())
        .await
        .unwrap();
    let report = replay::verify(&*log, &mut |_| {}).expect("live snapshots agree with a full replay");
    assert_eq!(report.head.0, log.head().0);
    let caught = replay::catch_up(&*log, &mut |_| {}).unwrap();
    assert_eq!(caught.done, log.head().0 .0);
    replay::verify(&*log, &mut |_| {}).expect("refreshed snapshots agree with a full replay");
    assert!(core.system_view().is_system(&"bot".into()));
}

/// Every channel and user state rebuilt as of every past position equals a brute-force fold of the
/// whole log up to that position, whether the rebuild starts from a snapshot or from nothing.
#[actix::test]
async fn past_states_equal_a_fold_of_the_log_up_to_each_position() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    let core = start(log.clone(), Duration::from_secs(60));
    members(&core, &["a", "b"]).await;
    core.user(&"b".into(), UserCommand::SetToken { device_flag: DeviceFlag::APP, device_level: DeviceLevel::MASTER, token: "t1".into() }, origin())
        .await
        .unwrap();
    for i in 0..12 {
        core.send(&group(), message(["a", "b"][i % 2], &format!("m{i}")), origin()).await.unwrap();
    }
    core.channel(&group(), ChannelCommand::RemoveSubscribers(vec!["a".into()]), origin()).await.unwrap();
    core.channel(&group(), ChannelCommand::List(ListKind::Blacklist, ListOp::Add(vec!["c".into()])), origin()).await.unwrap();
    core.system(SystemCommand::AddSystemUids(vec!["b".into()]), origin()).await.unwrap();
    for i in 12..20 {
        core.send(&group(), message("b", &format!("m{i}")), origin()).await.unwrap();
    }
    let head = log.head().0;
    let mut channel = ChannelState::default();
    let mut user_b = UserState::default();
    let mut system = SystemState::default();
    let mut bodies = Vec::new();
    scan_bodies(&*log, Position(1), &mut |p, body| {
        bodies.push((p, body.clone()));
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    let mut used_snapshot = false;
    for (p, body) in bodies {
        match (&body.stream, &body.event) {
            (StreamId::Channel(k) | StreamId::ChannelCommands(k), Event::Channel(e)) if *k == group() => channel.apply(p, e),
            (StreamId::User(u), Event::User(e)) if u.0 == "b" => user_b.apply(p, e),
            (StreamId::System, Event::System(e)) => system.apply(p, e),
            _ => {}
        }
        let past = history::channel_at(&*log, &group(), history::At::Position(p)).unwrap();
        used_snapshot |= past.from_snapshot;
        assert_eq!(past.state, channel, "channel as of {p}");
        let past_user = history::user_at(&*log, &"b".into(), history::At::Position(p)).unwrap();
        assert_eq!(past_user.user.state, user_b, "user as of {p}");
        assert_eq!(past_user.is_system, system.is_system(&"b".into()), "system flag as of {p}");
    }
    assert!(used_snapshot, "snapshot_every = 7 leaves snapshots to start from");
    assert_eq!(history::channel_at(&*log, &group(), history::At::Position(Position(u64::MAX))).unwrap().state, core.channel_state(&group()).await.unwrap());

    // "b" sent the last message, so nothing is unread now.
    let now = history::user_at(&*log, &"b".into(), history::At::Position(head)).unwrap();
    assert_eq!(now.conversations.iter().map(|c| (c.last_message_seq, c.unread)).collect::<Vec<_>>(), vec![(20, 0)]);
    assert!(now.is_system);
    // Right after "a"'s first message, "b" had one unread message.
    let first = core.messages_at(&group(), 1, 1, 1, false, false).unwrap()[0].0;
    let then = history::user_at(&*log, &"b".into(), history::At::Position(first)).unwrap();
    assert_eq!(then.conversations.iter().map(|c| (c.last_message_seq, c.unread)).collect::<Vec<_>>(), vec![(1, 1)]);
    assert!(!then.is_system);
}

/// A time resolves to the last position recorded at or before it.
#[actix::test]
async fn a_time_resolves_to_the_last_event_recorded_by_then() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    let core = start(log.clone(), Duration::from_secs(60));
    members(&core, &["a"]).await;
    for i in 0..5 {
        core.send(&group(), message("a", &format!("m{i}")), origin()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let mut times = Vec::new();
    scan_bodies(&*log, Position(1), &mut |p, body| {
        times.push((p, body.meta.recorded_at));
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(history::resolve(&*log, history::At::Time(Timestamp(times[0].1 .0 - 1))).unwrap(), Position::ZERO);
    for &(_, t) in &times {
        let expected = times.iter().filter(|(_, r)| *r <= t).map(|(p, _)| *p).max().unwrap();
        assert_eq!(history::resolve(&*log, history::At::Time(t)).unwrap(), expected, "time {t:?}");
    }
    assert_eq!(history::resolve(&*log, history::At::Time(Timestamp(u64::MAX))).unwrap(), log.head().0);
    assert_eq!(history::resolve(&*log, history::At::Position(Position(u64::MAX))).unwrap(), log.head().0);
}

/// Erasure rewrites exactly one sender's payloads, records itself, and leaves a log whose chain and
/// replay still verify.
#[actix::test]
async fn erasing_a_senders_payloads_keeps_the_chain_and_the_others_messages() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    let core = start(log.clone(), Duration::from_secs(60));
    members(&core, &["a", "b"]).await;
    for i in 0..6 {
        core.send(&group(), message(["a", "b"][i % 2], &format!("m{i}")), origin()).await.unwrap();
    }
    let mut command = message("a", "cmd");
    command.header = MessageHeader { sync_once: true, ..Default::default() };
    core.send(&group(), command, origin()).await.unwrap();
    let head_before = log.head();

    let done = core.erase_payloads(&group(), &"a".into(), "request 17", origin()).await.unwrap();
    assert_eq!((done.examined, done.erased, done.events.len()), (7, 4, 2), "3 ordinary and 1 command message of a; one event per sequence");
    let ordinary = core.messages(&group(), 1, u64::MAX, 100, false, false).unwrap();
    for m in &ordinary {
        assert_eq!(m.payload.is_inline(), m.from_uid.0 == "b", "seq {}", m.message_seq.0);
    }
    assert!(ordinary.iter().filter(|m| m.from_uid.0 == "b").all(|m| m.payload.bytes().starts_with(b"payload of")));
    assert!(!core.messages(&group(), 1, u64::MAX, 100, false, true).unwrap()[0].payload.is_inline());
    // The records before the erasure keep their links: the old head is still a link of the chain.
    assert_eq!(log.read_range(head_before.0, 1).unwrap()[0].hash(), head_before.1);
    replay::verify_chain(&*log, &mut |_| {}).expect("the chain verifies after erasure");
    replay::verify(&*log, &mut |_| {}).expect("replay agrees after erasure");
    let recorded = log.read_range(done.events[0], 1).unwrap();
    let body = EnvelopeBody::decode(&recorded[0].body).unwrap();
    assert!(
        matches!(&body.event, Event::Channel(ChannelEvent::PayloadsErased { from_uid, erased: 3, reason, .. }) if from_uid.0 == "a" && reason == "request 17"),
        "{body:?}"
    );

    // Again: nothing left to erase, and the request is still recorded.
    let again = core.erase_payloads(&group(), &"a".into(), "request 18", origin()).await.unwrap();
    assert_eq!((again.erased, again.events.len()), (0, 2));
    assert!(core.erase_payloads(&group(), &"a".into(), " ", origin()).await.is_err(), "a reason is required");
    let empty = ChannelKey::new("quiet", ChannelType::GROUP);
    core.channel(&empty, ChannelCommand::AddSubscribers { uids: vec!["a".into()], reset: false }, origin()).await.unwrap();
    assert!(core.erase_payloads(&empty, &"a".into(), "r", origin()).await.is_err(), "nothing stored, nothing to record");
    assert_eq!(erasure::channels_with_messages_from(&*log, &"a".into()).unwrap().into_iter().collect::<Vec<_>>(), vec![group()]);
}

fn signup(name: &str) -> NewAccount {
    NewAccount {
        username: name.into(),
        profile: Profile { nickname: Some(name.to_uppercase()), ..Default::default() },
        password: PasswordHash { scheme: 1, iterations: 1, salt: vec![1], hash: vec![2] },
    }
}

/// A tenant snapshots every `snapshot_every` events (7 here), comes back from snapshot plus tail
/// after its actor stops, and agrees with a full replay; reads run inside the actor.
#[actix::test]
async fn a_tenant_snapshots_recovers_and_agrees_with_a_full_replay() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    let core = start(log.clone(), Duration::from_secs(60));
    for i in 0..10 {
        let (position, events) = core.tenant("a1", TenantCommand::Register(vec![signup(&format!("user{i}")), signup("user0")]), origin()).await.unwrap();
        assert!(position.is_some());
        // "user0" is registered once, by the first batch (which names it twice).
        assert!(matches!(&events[..], [TenantEvent::UsersRegistered { users, .. }] if users.len() == 1 && users[0].n == i + 1), "{events:?}");
    }
    let patch = Profile { region: Some("north".into()), ..Default::default() };
    core.tenant("a1", TenantCommand::UpdateProfile { username: "user3".into(), patch }, origin()).await.unwrap();
    let missing = core.tenant("a1", TenantCommand::Unregister(vec!["user1".into(), "nobody".into()]), origin()).await.unwrap_err();
    assert_eq!(missing, CoreError::Rejected(Rejection::NotFound("user \"nobody\"".into())));
    core.tenant("a1", TenantCommand::Unregister(vec!["user1".into()]), origin()).await.unwrap();
    assert!(log.get_snapshot(&StreamId::Tenant("a1".into()).key()).unwrap().is_some(), "snapshotted after 7 events");

    let read = |core: Core| async move {
        core.tenant_read("a1", |s| (s.users.len(), s.last_n, s.account("user3").map(|(n, a)| (n, a.profile.clone())))).await.unwrap()
    };
    let live = read(core.clone()).await;
    assert_eq!((live.0, live.1), (9, 10));
    assert_eq!(live.2.as_ref().map(|(n, p)| (*n, p.region.as_deref())), Some((4, Some("north"))));
    replay::verify(&*log, &mut |_| {}).expect("the tenant's snapshot plus tail agrees with a full replay");

    // Another core on the same log rebuilds the tenant from snapshot and tail.
    drop(core);
    let again = start(log.clone(), Duration::from_secs(60));
    assert_eq!(read(again.clone()).await, live);
    let past = history::tenant_at(&*log, "a1", history::At::Position(Position(3))).unwrap();
    assert_eq!(past.state.users.len(), 3, "three registrations by position 3");
}

/// Snapshots and a checkpoint an older build wrote are not decoded but ignored: the aggregates come
/// back from the log, and the catch-up folds the whole log once into snapshots of this format.
#[actix::test]
async fn snapshots_of_an_older_format_are_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir);
    let core = start(log.clone(), Duration::from_secs(60));
    members(&core, &["a", "b"]).await;
    for i in 0..20 {
        core.send(&group(), message("a", &format!("m{i}")), origin()).await.unwrap();
    }
    let live = core.channel_state(&group()).await.unwrap();
    drop(core);
    // What an older build left: a snapshot in format 1 (whatever its bytes) and a checkpoint without a format.
    let key = StreamId::Channel(group()).key();
    let at = log.get_snapshot(&key).unwrap().expect("snapshotted").position;
    log.put_snapshot(&key, &rookery_storage::Snapshot { position: at, state: vec![1, 0xde, 0xad] }).unwrap();
    log.put_snapshot(b"!checkpoint", &rookery_storage::Snapshot { position: log.head().0, state: Vec::new() }).unwrap();

    let caught = replay::catch_up(&*log, &mut |_| {}).unwrap();
    assert_eq!(caught.done, log.head().0 .0, "the whole log, once");
    let snapshot = log.get_snapshot(&key).unwrap().expect("rewritten");
    assert_eq!(snapshot.state[0], STATE_FORMAT);
    let again = start(log.clone(), Duration::from_secs(60));
    assert_eq!(again.channel_state(&group()).await.unwrap(), live);
    replay::verify(&*log, &mut |_| {}).expect("agrees with a full replay");
    assert_eq!(replay::catch_up(&*log, &mut |_| {}).unwrap().done, 0, "the new checkpoint is kept");
}
