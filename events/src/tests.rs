//! Domain rules, each as given (past events) / when (command) / then (events or rejection).

use crate::*;

fn uids(list: &[&str]) -> Vec<Uid> {
    list.iter().map(|s| Uid::from(*s)).collect()
}

fn group() -> ChannelKey {
    ChannelKey::new("g1", ChannelType::GROUP)
}

/// The only code here that calls `decide` and `apply`.
fn check<A: Aggregate>(key: &A::Key, given: &[A::Event], when: A::Command, then: Result<Vec<A::Event>, Rejection>)
where
    A::Event: PartialEq,
{
    let mut state = A::default();
    for (i, e) in given.iter().enumerate() {
        state.apply(Position(i as u64 + 1), e);
    }
    let got = state.decide(key, &when, Timestamp(1_700_000_000_000));
    assert_eq!(got, then);
    if let Ok(events) = got {
        // Applying what was decided must never panic, and deciding must not have changed state.
        let before = state.clone();
        for e in &events {
            state.apply(Position(given.len() as u64 + 1), e);
        }
        if events.is_empty() {
            assert_eq!(state, before);
        }
    }
}

fn send(from: &str, payload: &[u8]) -> ChannelCommand {
    ChannelCommand::Send(Box::new(SendMessage {
        message_id: MessageId(42),
        client_msg_no: ClientMsgNo::from("c1"),
        from_uid: from.into(),
        header: MessageHeader { red_dot: true, ..Default::default() },
        setting: 0,
        stream_no: None,
        expire: 0,
        topic: None,
        payload: payload.to_vec(),
        sender: SenderStanding::default(),
        peer: PeerPolicy::default(),
    }))
}

fn appended(seq: u64, from: &str, red_dot_ordinal: u64) -> ChannelEvent {
    ChannelEvent::MessageAppended(Box::new(Message {
        channel: group(),
        message_seq: MessageSeq(seq),
        message_id: MessageId(42),
        client_msg_no: ClientMsgNo::from("c1"),
        from_uid: from.into(),
        header: MessageHeader { red_dot: true, ..Default::default() },
        setting: 0,
        stream_no: None,
        expire: 0,
        topic: None,
        timestamp: Timestamp(1_700_000_000_000),
        red_dot_ordinal,
        payload: Payload::Inline(b"hi".to_vec()),
    }))
}

fn created() -> ChannelEvent {
    ChannelEvent::Created { info: ChannelInfo::default() }
}

#[test]
fn subscriber_add_creates_the_channel_and_skips_existing_members() {
    check::<ChannelState>(
        &group(),
        &[],
        ChannelCommand::AddSubscribers { uids: uids(&["a", "b", "a"]), reset: false },
        Ok(vec![created(), ChannelEvent::SubscribersAdded { uids: uids(&["a", "b"]) }]),
    );
    check::<ChannelState>(
        &group(),
        &[created(), ChannelEvent::SubscribersAdded { uids: uids(&["a"]) }],
        ChannelCommand::AddSubscribers { uids: uids(&["a", "c"]), reset: false },
        Ok(vec![ChannelEvent::SubscribersAdded { uids: uids(&["c"]) }]),
    );
}

#[test]
fn subscriber_add_rejects_empty_lists_and_person_channels() {
    check::<ChannelState>(
        &group(),
        &[],
        ChannelCommand::AddSubscribers { uids: vec![], reset: false },
        Err(Rejection::Invalid("subscribers must not be empty".into())),
    );
    check::<ChannelState>(
        &ChannelKey::new("u1", ChannelType::PERSON),
        &[],
        ChannelCommand::AddSubscribers { uids: uids(&["a"]), reset: false },
        Err(Rejection::Invalid("channel type 1 cannot have subscribers".into())),
    );
}

#[test]
fn reset_replaces_the_set() {
    check::<ChannelState>(
        &group(),
        &[created(), ChannelEvent::SubscribersAdded { uids: uids(&["a", "b"]) }],
        ChannelCommand::Upsert { info: ChannelInfo::default(), subscribers: uids(&["c"]), reset: true },
        Ok(vec![ChannelEvent::SubscribersReset { uids: uids(&["c"]) }]),
    );
}

#[test]
fn unknown_channel_type_is_rejected() {
    check::<ChannelState>(
        &ChannelKey::new("x", ChannelType(0)),
        &[],
        ChannelCommand::SetInfo(ChannelInfo::default()),
        Err(Rejection::Invalid("unknown channel_type 0".into())),
    );
}

#[test]
fn sends_get_dense_sequence_numbers() {
    let members = ChannelEvent::SubscribersAdded { uids: uids(&["a", "b"]) };
    check::<ChannelState>(&group(), &[created(), members.clone()], send("a", b"hi"), Ok(vec![appended(1, "a", 1)]));
    check::<ChannelState>(&group(), &[created(), members, appended(1, "a", 1)], send("b", b"hi"), Ok(vec![appended(2, "b", 2)]));
}

#[test]
fn send_permissions_follow_the_rule_order() {
    let members = ChannelEvent::SubscribersAdded { uids: uids(&["a", "b"]) };
    check::<ChannelState>(&group(), &[], send("a", b"x"), Err(Rejection::ChannelNotFound));
    check::<ChannelState>(&group(), &[created()], send("a", b"x"), Err(Rejection::NotSubscriber));
    check::<ChannelState>(
        &group(),
        &[created(), members.clone(), ChannelEvent::BlacklistAdded { uids: uids(&["a"]) }],
        send("a", b"x"),
        Err(Rejection::InBlacklist),
    );
    check::<ChannelState>(
        &group(),
        &[created(), members.clone(), ChannelEvent::WhitelistAdded { uids: uids(&["b"]) }],
        send("a", b"x"),
        Err(Rejection::NotInWhitelist),
    );
    check::<ChannelState>(
        &group(),
        &[created(), members.clone(), ChannelEvent::InfoUpdated { info: ChannelInfo { ban: true, ..Default::default() } }],
        send("a", b"x"),
        Err(Rejection::Banned),
    );
    check::<ChannelState>(&group(), &[created(), members, ChannelEvent::Deleted], send("a", b"x"), Err(Rejection::Disbanded));
}

#[test]
fn system_senders_bypass_lists_and_membership() {
    let mut cmd = send("sys", b"x");
    if let ChannelCommand::Send(m) = &mut cmd {
        m.sender.is_system = true;
    }
    check::<ChannelState>(
        &group(),
        &[created(), ChannelEvent::BlacklistAdded { uids: uids(&["sys"]) }],
        cmd,
        Ok(vec![ChannelEvent::MessageAppended(Box::new(Message {
            from_uid: "sys".into(),
            payload: Payload::Inline(b"x".to_vec()),
            ..match appended(1, "sys", 1) {
                ChannelEvent::MessageAppended(m) => *m,
                _ => unreachable!(),
            }
        }))]),
    );
}

#[test]
fn even_system_senders_need_an_existing_group() {
    let mut cmd = send("sys", b"x");
    if let ChannelCommand::Send(m) = &mut cmd {
        m.sender.is_system = true;
    }
    check::<ChannelState>(&group(), &[], cmd, Err(Rejection::ChannelNotFound));
}

#[test]
fn person_channel_denylist_of_the_receiver_wins() {
    let key = ChannelKey::new(person_channel_id(&"a".into(), &"b".into()), ChannelType::PERSON);
    let mut cmd = send("a", b"x");
    if let ChannelCommand::Send(m) = &mut cmd {
        m.peer.blocked = true;
    }
    check::<ChannelState>(&key, &[], cmd, Err(Rejection::InBlacklist));
}

#[test]
fn no_persist_is_checked_but_not_stored() {
    let mut cmd = send("a", b"x");
    if let ChannelCommand::Send(m) = &mut cmd {
        m.header.no_persist = true;
    }
    check::<ChannelState>(&group(), &[created(), ChannelEvent::SubscribersAdded { uids: uids(&["a"]) }], cmd, Ok(vec![]));
}

#[test]
fn empty_payload_and_sender_are_rejected() {
    check::<ChannelState>(&group(), &[created()], send("a", b""), Err(Rejection::Invalid("payload must not be empty".into())));
    check::<ChannelState>(&group(), &[created()], send("", b"x"), Err(Rejection::Invalid("from_uid must not be empty".into())));
}

#[test]
fn lists_reject_empty_add_and_allow_empty_set() {
    check::<ChannelState>(
        &group(),
        &[created()],
        ChannelCommand::List(ListKind::Blacklist, ListOp::Add(vec![])),
        Err(Rejection::Invalid("uids must not be empty".into())),
    );
    check::<ChannelState>(
        &group(),
        &[created(), ChannelEvent::WhitelistAdded { uids: uids(&["a"]) }],
        ChannelCommand::List(ListKind::Whitelist, ListOp::Set(vec![])),
        Ok(vec![ChannelEvent::WhitelistSet { uids: vec![] }]),
    );
    check::<ChannelState>(&group(), &[], ChannelCommand::List(ListKind::Blacklist, ListOp::Add(uids(&["a"]))), Err(Rejection::ChannelNotFound));
}

#[test]
fn tokens_are_stored_as_hashes_and_quit_removes_them() {
    let uid = Uid::from("u1");
    let set = UserCommand::SetToken { device_flag: DeviceFlag::WEB, device_level: DeviceLevel::MASTER, token: "t".into() };
    let set_event = UserEvent::TokenSet { device_flag: DeviceFlag::WEB, device_level: DeviceLevel::MASTER, token_hash: sha256(b"t") };
    check::<UserState>(&uid, &[], set.clone(), Ok(vec![set_event.clone()]));
    check::<UserState>(&uid, std::slice::from_ref(&set_event), set, Ok(vec![]));
    check::<UserState>(&uid, &[set_event], UserCommand::QuitDevice(None), Ok(vec![UserEvent::DeviceQuit { device_flag: None }]));
    check::<UserState>(&uid, &[], UserCommand::QuitDevice(None), Ok(vec![]));
    check::<UserState>(
        &uid,
        &[],
        UserCommand::SetToken { device_flag: DeviceFlag(7), device_level: DeviceLevel::SLAVE, token: "t".into() },
        Err(Rejection::Invalid("unknown device_flag 7".into())),
    );
}

#[test]
fn platform_tokens_expire_are_replaced_per_platform_and_leave_with_their_device() {
    let uid = Uid::from("o1#1");
    let issue = |platform, token: &str| UserCommand::IssuePlatformToken { platform, token: token.into(), expires_at: Timestamp(1_000) };
    let web = UserEvent::PlatformTokenIssued { platform: 5, token_hash: sha256(b"w"), expires_at: Timestamp(1_000) };
    check::<UserState>(&uid, &[], issue(5, "w"), Ok(vec![web.clone()]));
    check::<UserState>(&uid, &[], issue(0, "w"), Err(Rejection::Invalid("platform must be 1 to 7, got 0".into())));
    check::<UserState>(&uid, &[], issue(8, "w"), Err(Rejection::Invalid("platform must be 1 to 7, got 8".into())));
    check::<UserState>(&uid, &[], issue(5, ""), Err(Rejection::Invalid("token must not be empty".into())));
    let mut state = UserState::default();
    state.apply(Position(1), &web);
    let token = &state.platform_tokens[&5];
    assert!(token.admits("w", Timestamp(999)) && !token.admits("w", Timestamp(1_000)) && !token.admits("x", Timestamp(1)));
    // A second web token replaces the first.
    state.apply(Position(2), &UserEvent::PlatformTokenIssued { platform: 5, token_hash: sha256(b"w2"), expires_at: Timestamp(2_000) });
    assert!(!state.platform_tokens[&5].admits("w", Timestamp(1)));
    // Logging the web devices out ends the web platforms' tokens only.
    state.apply(Position(3), &UserEvent::PlatformTokenIssued { platform: 1, token_hash: sha256(b"i"), expires_at: Timestamp(2_000) });
    check::<UserState>(&uid, &[web], UserCommand::QuitDevice(Some(DeviceFlag::WEB)), Ok(vec![UserEvent::DeviceQuit { device_flag: Some(DeviceFlag::WEB) }]));
    state.apply(Position(4), &UserEvent::DeviceQuit { device_flag: Some(DeviceFlag::WEB) });
    assert_eq!(state.platform_tokens.keys().copied().collect::<Vec<_>>(), vec![1]);
    assert_eq!(platform_device_flag(2), DeviceFlag(0));
    assert_eq!(platform_device_flag(7), DeviceFlag(2));
}

#[test]
fn sync_ack_only_records_pending_entries() {
    let queued = UserEvent::CommandQueued { channel: group(), message_seq: MessageSeq(1), message_id: MessageId(9) };
    check::<UserState>(
        &"u1".into(),
        &[queued],
        UserCommand::AckSync(vec![Position(1), Position(7)]),
        Ok(vec![UserEvent::SyncAcked { entries: vec![Position(1)] }]),
    );
}

#[test]
fn command_acks_by_message_id_record_only_queued_entries() {
    let queued = |seq, id| UserEvent::CommandQueued { channel: group(), message_seq: MessageSeq(seq), message_id: MessageId(id) };
    let history = [queued(1, 9), queued(2, 10)];
    check::<UserState>(
        &"u1".into(),
        &history,
        UserCommand::AckCommandMessages(vec![MessageId(10), MessageId(77)]),
        Ok(vec![UserEvent::SyncAcked { entries: vec![Position(2)] }]),
    );
    check::<UserState>(&"u1".into(), &history, UserCommand::AckCommandMessages(vec![MessageId(77)]), Ok(vec![]));
}

#[test]
fn system_uids_add_only_new_ones() {
    check::<SystemState>(
        &(),
        &[SystemEvent::SystemUidsAdded { uids: uids(&["a"]) }],
        SystemCommand::AddSystemUids(uids(&["a", "b"])),
        Ok(vec![SystemEvent::SystemUidsAdded { uids: uids(&["b"]) }]),
    );
    check::<SystemState>(&(), &[], SystemCommand::RemoveSystemUids(uids(&["a"])), Ok(vec![]));
}

#[test]
fn digest_ignores_erasure_of_payloads() {
    let body = EnvelopeBody {
        stream: StreamId::Channel(group()),
        meta: Meta { recorded_at: Timestamp(1), actor: Actor::System, request_id: RequestId([7; 16]), source: None, user_agent: None },
        event: Event::Channel(appended(1, "a", 1)),
    };
    let mut erased = body.clone();
    if let Event::Channel(ChannelEvent::MessageAppended(m)) = &mut erased.event {
        m.payload = m.payload.erased();
    }
    assert_ne!(body.encode(), erased.encode());
    assert_eq!(body.digest(), erased.digest());
    assert_eq!(EnvelopeBody::decode(&body.encode()), Ok(body.clone()));
    // The write path's one-pass form gives the same digest and bytes, and leaves the body as it was.
    let other = EnvelopeBody { event: Event::Channel(ChannelEvent::SubscribersAdded { uids: uids(&["a"]) }), ..body.clone() };
    for original in [body, erased, other] {
        let mut b = original.clone();
        assert_eq!(b.digest_and_encode(), (original.digest(), original.encode()));
        assert_eq!(b, original);
    }
}

#[test]
fn decoding_rejects_unknown_formats_and_trailing_bytes() {
    assert_eq!(EnvelopeBody::decode(&[]), Err(DecodeError::Empty));
    assert_eq!(EnvelopeBody::decode(&[9, 0]), Err(DecodeError::UnknownFormat(9)));
    let mut bytes = EnvelopeBody {
        stream: StreamId::System,
        meta: Meta { recorded_at: Timestamp(1), actor: Actor::System, request_id: RequestId([0; 16]), source: None, user_agent: None },
        event: Event::System(SystemEvent::SystemUidsAdded { uids: uids(&["a"]) }),
    }
    .encode();
    bytes.push(0);
    assert_eq!(EnvelopeBody::decode(&bytes), Err(DecodeError::Trailing(1)));
}

#[test]
fn stream_keys_are_distinct_per_kind() {
    let k = group();
    let keys = [
        StreamId::Channel(k.clone()).key(),
        StreamId::ChannelCommands(k).key(),
        StreamId::User("g1".into()).key(),
        StreamId::System.key(),
        StreamId::Tenant("g1".into()).key(),
    ];
    for (i, a) in keys.iter().enumerate() {
        assert!(!a.contains(&0xFF));
        for b in &keys[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn unread_counts_red_dots_of_others_after_the_latest_read_point() {
    let m = |seq, red_dots| ChannelMark { seq: MessageSeq(seq), red_dots };
    let joined = ConversationMarks { joined: Some(m(10, 8)), ..Default::default() };
    assert_eq!(joined.unread(m(15, 12), None), 4);
    // The user's own message at seq 13 means everything up to it was read.
    assert_eq!(joined.unread(m(15, 12), Some(m(13, 11))), 1);
    // An explicit setting counts on top of red dots that came after it.
    let set = ConversationMarks { unread_set: Some((2, m(14, 11))), ..joined.clone() };
    assert_eq!(set.unread(m(15, 12), None), 3);
    // Deleting the conversation clears what came before.
    let deleted = ConversationMarks { deleted_at: m(15, 12), ..joined };
    assert_eq!(deleted.unread(m(15, 12), None), 0);
}

#[test]
fn unread_cannot_be_set_above_the_channel_count() {
    check::<UserState>(
        &"u1".into(),
        &[],
        UserCommand::SetUnread { channel: group(), unread: 5, at: ChannelMark { seq: MessageSeq(3), red_dots: 1 } },
        Err(Rejection::Invalid("unread 5 is more than the channel's 3 messages".into())),
    );
}

#[test]
fn unread_by_seq_counts_every_message_after_the_read_point() {
    let m = |seq: u64, red_dots: u64| ChannelMark { seq: MessageSeq(seq), red_dots };
    let joined = ConversationMarks { joined: Some(m(10, 8)), ..ConversationMarks::default() };
    assert_eq!(joined.unread_by_seq(m(15, 9), None), 5, "five messages, one of them with a red dot");
    assert_eq!(joined.unread(m(15, 9), None), 1);
    assert_eq!(joined.unread_by_seq(m(15, 9), Some(m(13, 9))), 2, "the user's own message moves the read point");
    let set = ConversationMarks { unread_set: Some((4, m(12, 8))), ..joined.clone() };
    assert_eq!(set.unread_by_seq(m(15, 9), None), 7, "on top of a value set later than the base");
}

#[test]
fn a_client_cannot_bring_an_open_channel_into_being_by_posting_to_it() {
    let from_client = |cmd: ChannelCommand| match cmd {
        ChannelCommand::Send(mut m) => {
            m.sender.via_client = true;
            ChannelCommand::Send(m)
        }
        other => other,
    };
    for ty in [ChannelType::TEMP, ChannelType::INFO, ChannelType::CUSTOMER_SERVICE] {
        let key = ChannelKey::new("nowhere", ty);
        check::<ChannelState>(&key, &[], from_client(send("u1", b"hi")), Err(Rejection::ChannelNotFound));
        // The app server's API may, as before; so may a client once the channel exists.
        let decided = ChannelState::default().decide(&key, &send("u1", b"hi"), Timestamp(1_700_000_000_000));
        assert!(matches!(decided.as_deref(), Ok([ChannelEvent::MessageAppended(_)])), "{ty:?}: {decided:?}");
        let mut existing = ChannelState::default();
        existing.apply(Position(1), &created());
        let decided = existing.decide(&key, &from_client(send("u1", b"hi")), Timestamp(1_700_000_000_000));
        assert!(matches!(decided.as_deref(), Ok([ChannelEvent::MessageAppended(_)])), "{ty:?}: {decided:?}");
    }
}

fn pw(b: u8) -> PasswordHash {
    PasswordHash { scheme: 1, iterations: 10, salt: vec![b; 16], hash: vec![b; 32] }
}

fn new_account(name: &str) -> NewAccount {
    NewAccount { username: name.into(), profile: Profile { nickname: Some(format!("nick {name}")), ..Default::default() }, password: pw(1) }
}

fn registered(first_n: u64, names: &[&str]) -> TenantEvent {
    let users = names
        .iter()
        .enumerate()
        .map(|(i, name)| Registration {
            n: first_n + i as u64,
            username: (*name).into(),
            profile: Profile { nickname: Some(format!("nick {name}")), ..Default::default() },
            password: pw(1),
        })
        .collect();
    TenantEvent::UsersRegistered { users, at: Timestamp(1_700_000_000_000) }
}

#[test]
fn registering_numbers_new_accounts_and_skips_taken_or_repeated_names() {
    let tag = "a1".to_owned();
    check::<TenantState>(
        &tag,
        &[registered(1, &["ann"])],
        TenantCommand::Register(vec![new_account("ann"), new_account("bob"), new_account("bob"), new_account("cy")]),
        Ok(vec![registered(2, &["bob", "cy"])]),
    );
    check::<TenantState>(&tag, &[registered(1, &["ann"])], TenantCommand::Register(vec![new_account("ann")]), Ok(vec![]));
}

#[test]
fn a_deleted_name_registers_again_under_a_new_number() {
    let tag = "a1".to_owned();
    check::<TenantState>(
        &tag,
        &[registered(1, &["ann", "bob"]), TenantEvent::UsersUnregistered { ns: vec![1] }],
        TenantCommand::Register(vec![new_account("ann")]),
        Ok(vec![registered(3, &["ann"])]),
    );
}

#[test]
fn a_profile_update_records_only_what_changes() {
    let tag = "a1".to_owned();
    let patch = Profile { nickname: Some("nick ann".into()), gender: Some(2), ..Default::default() };
    check::<TenantState>(
        &tag,
        &[registered(1, &["ann"])],
        TenantCommand::UpdateProfile { username: "ann".into(), patch },
        Ok(vec![TenantEvent::ProfileUpdated { n: 1, patch: Profile { gender: Some(2), ..Default::default() }, at: Timestamp(1_700_000_000_000) }]),
    );
    let same = Profile { nickname: Some("nick ann".into()), ..Default::default() };
    check::<TenantState>(&tag, &[registered(1, &["ann"])], TenantCommand::UpdateProfile { username: "ann".into(), patch: same }, Ok(vec![]));
}

#[test]
fn unknown_accounts_are_refused_and_a_batch_delete_is_all_or_nothing() {
    let tag = "a1".to_owned();
    let given = [registered(1, &["ann"])];
    check::<TenantState>(
        &tag,
        &given,
        TenantCommand::UpdateProfile { username: "zed".into(), patch: Profile::default() },
        Err(Rejection::NotFound("user \"zed\"".into())),
    );
    check::<TenantState>(
        &tag,
        &given,
        TenantCommand::ChangePassword { username: "zed".into(), password: pw(2) },
        Err(Rejection::NotFound("user \"zed\"".into())),
    );
    check::<TenantState>(&tag, &given, TenantCommand::Unregister(vec!["ann".into(), "zed".into()]), Err(Rejection::NotFound("user \"zed\"".into())));
    check::<TenantState>(&tag, &given, TenantCommand::Unregister(vec!["ann".into(), "ann".into()]), Ok(vec![TenantEvent::UsersUnregistered { ns: vec![1] }]));
}

#[test]
fn applying_keeps_names_and_numbers_in_step() {
    let mut s = TenantState::default();
    s.apply(Position(1), &registered(1, &["ann", "bob"]));
    s.apply(Position(2), &TenantEvent::PasswordChanged { n: 2, password: pw(9), at: Timestamp(5) });
    s.apply(Position(3), &TenantEvent::UsersUnregistered { ns: vec![1] });
    assert_eq!(s.account("ann"), None);
    let (n, bob) = s.account("bob").unwrap();
    assert_eq!((n, bob.password.hash[0], bob.mtime, s.last_n), (2, 9, Timestamp(5), 2));
}

#[test]
fn tenant_uids_round_trip_and_nothing_else_parses_as_one() {
    assert_eq!(tenant_uid("a1", 42).0, "a1#42");
    assert_eq!(tenant_uid_parts(&tenant_uid("a1", 42)), Some(("a1", 42)));
    for other in ["a1", "a1#", "#4", "a1#04", "a1#0", "A1#4", "toolongtag#4", "a1#4#5", "a1#x"] {
        assert_eq!(tenant_uid_parts(&Uid::from(other)), None, "{other}");
    }
}

fn jm_group() -> ChannelKey {
    tenant_group("a1", 1)
}

fn profile_of(owner: &str) -> GroupProfile {
    GroupProfile {
        tenant: "a1".into(),
        n: 1,
        name: "g".into(),
        desc: String::new(),
        avatar: String::new(),
        public: false,
        owner: owner.into(),
        max_members: 3,
        muted: Default::default(),
        managers: Default::default(),
        mute_all: false,
        ctime: Timestamp(1_700_000_000_000),
        mtime: Timestamp(1_700_000_000_000),
    }
}

fn group_created(owner: &str, members: &[&str]) -> Vec<ChannelEvent> {
    vec![created(), ChannelEvent::GroupCreated { profile: Box::new(profile_of(owner)) }, ChannelEvent::SubscribersAdded { uids: uids(members) }]
}

fn members_change(add: &[&str], remove: &[&str]) -> ChannelCommand {
    ChannelCommand::Group(GroupCommand::Members { add: uids(add), remove: uids(remove) })
}

#[test]
fn a_group_is_created_once_with_its_owner_as_a_member_and_within_its_size() {
    let new = |members: &[&str]| {
        ChannelCommand::Group(GroupCommand::Create(Box::new(NewGroup { profile: profile_of("o"), members: uids(members), notice: String::new() })))
    };
    check::<ChannelState>(&jm_group(), &[], new(&["a", "o", "a"]), Ok(group_created("o", &["o", "a"])));
    check::<ChannelState>(&jm_group(), &[], new(&["a", "b", "c"]), Err(Rejection::GroupFull));
    check::<ChannelState>(&jm_group(), &group_created("o", &["o"]), new(&[]), Err(Rejection::Exists(format!("group {}", jm_group().id))));
    // Managers are named at creation, among the members and never the owner.
    let managed = |managers: &[&str]| {
        let mut profile = profile_of("o");
        profile.managers = uids(managers).into_iter().collect();
        ChannelCommand::Group(GroupCommand::Create(Box::new(NewGroup { profile, members: uids(&["a"]), notice: String::new() })))
    };
    assert!(ChannelState::default().decide(&jm_group(), &managed(&["a"]), Timestamp(0)).is_ok());
    // A notice given at creation is its own event, kept by the group until it is deleted.
    let noticed = ChannelCommand::Group(GroupCommand::Create(Box::new(NewGroup { profile: profile_of("o"), members: vec![], notice: "hi".into() })));
    let events = ChannelState::default().decide(&jm_group(), &noticed, Timestamp(5)).unwrap();
    assert!(events.contains(&ChannelEvent::GroupNoticeSet { notice: "hi".into(), at: Timestamp(5) }));
    let mut state = ChannelState::default();
    for (i, e) in events.iter().enumerate() {
        state.apply(Position(i as u64 + 1), e);
    }
    assert_eq!(state.notice, "hi");
    state.apply(Position(9), &ChannelEvent::Deleted);
    assert_eq!(state.notice, "");
    for bad in ["o", "z"] {
        check::<ChannelState>(&jm_group(), &[], managed(&[bad]), Err(Rejection::Invalid(format!("manager {bad} must be a member other than the owner"))));
    }
}

#[test]
fn member_changes_are_strict_and_keep_the_owner() {
    let given = group_created("o", &["o", "a"]);
    check::<ChannelState>(&jm_group(), &given, members_change(&["a"], &[]), Err(Rejection::Exists("member a".into())));
    check::<ChannelState>(&jm_group(), &given, members_change(&[], &["z"]), Err(Rejection::NotFound("member z".into())));
    check::<ChannelState>(&jm_group(), &given, members_change(&["b", "c"], &[]), Err(Rejection::GroupFull));
    check::<ChannelState>(
        &jm_group(),
        &given,
        members_change(&["b", "c"], &["a"]),
        Ok(vec![ChannelEvent::SubscribersRemoved { uids: uids(&["a"]) }, ChannelEvent::SubscribersAdded { uids: uids(&["b", "c"]) }]),
    );
    assert!(matches!(ChannelState::default().decide(&jm_group(), &members_change(&[], &["o"]), Timestamp(0)), Err(Rejection::ChannelNotFound)));
    let mut state = ChannelState::default();
    for (i, e) in given.iter().enumerate() {
        state.apply(Position(i as u64 + 1), e);
    }
    assert!(matches!(state.decide(&jm_group(), &members_change(&[], &["o"]), Timestamp(0)), Err(Rejection::Invalid(_))), "the owner stays while others do");
    check::<ChannelState>(
        &jm_group(),
        &given,
        members_change(&[], &["o", "a"]),
        Ok(vec![ChannelEvent::SubscribersRemoved { uids: uids(&["o", "a"]) }, ChannelEvent::Deleted]),
    );
}

#[test]
fn muted_members_cannot_send_until_their_mute_ends_or_is_lifted() {
    let now = Timestamp(1_700_000_000_000);
    let mut given = group_created("o", &["o", "a"]);
    given.push(ChannelEvent::MembersMuted { uids: uids(&["a"]), until: Timestamp(now.0 + 1), at: now });
    check::<ChannelState>(&jm_group(), &given, send("a", b"x"), Err(Rejection::Muted));
    given.push(ChannelEvent::MembersMuted { uids: uids(&["a"]), until: Timestamp(now.0 - 1), at: now });
    let mut state = ChannelState::default();
    for (i, e) in given.iter().enumerate() {
        state.apply(Position(i as u64 + 1), e);
    }
    assert!(state.decide(&jm_group(), &send("a", b"x"), now).is_ok(), "a mute that ended");
    check::<ChannelState>(
        &jm_group(),
        &given,
        ChannelCommand::Group(GroupCommand::Mute { uids: uids(&["a"]), until: None }),
        Ok(vec![ChannelEvent::MembersMuted { uids: uids(&["a"]), until: Timestamp(0), at: now }]),
    );
    check::<ChannelState>(
        &jm_group(),
        &given,
        ChannelCommand::Group(GroupCommand::Mute { uids: uids(&["z"]), until: None }),
        Err(Rejection::NotFound("member z".into())),
    );
}

#[test]
fn an_owner_transfer_keeps_the_old_owner_as_a_member_and_leaving_drops_a_mute() {
    let now = Timestamp(1_700_000_000_000);
    let given = group_created("o", &["o", "a"]);
    check::<ChannelState>(
        &jm_group(),
        &given,
        ChannelCommand::Group(GroupCommand::TransferOwner("a".into())),
        Ok(vec![ChannelEvent::OwnerTransferred { from: "o".into(), to: "a".into(), at: now }]),
    );
    check::<ChannelState>(&jm_group(), &given, ChannelCommand::Group(GroupCommand::TransferOwner("z".into())), Err(Rejection::NotFound("member z".into())));
    let mut state = ChannelState::default();
    for (i, e) in given.iter().enumerate() {
        state.apply(Position(i as u64 + 1), e);
    }
    state.apply(Position(9), &ChannelEvent::MembersMuted { uids: uids(&["a"]), until: MUTED_UNTIL_LIFTED, at: now });
    state.apply(Position(10), &ChannelEvent::SubscribersRemoved { uids: uids(&["a"]) });
    assert!(state.group.as_ref().unwrap().muted.is_empty());
    state.apply(Position(11), &ChannelEvent::Deleted);
    assert_eq!(state.group, None);
}

#[test]
fn tenant_group_ids_round_trip() {
    let k = tenant_group("a1", 12);
    assert_eq!((k.id.0.as_str(), k.ty), ("a1#g12", ChannelType::GROUP));
    assert_eq!(tenant_group_parts(&k.id), Some(("a1", 12)));
    assert_eq!(tenant_group_parts(&"a1#12".into()), None);
    assert_eq!(tenant_uid_parts(&"a1#g12".into()), None);
}

#[test]
fn only_the_sender_retracts_a_message_once_and_within_the_window() {
    let now = Timestamp(1_700_000_000_000);
    let given = [created(), ChannelEvent::SubscribersAdded { uids: uids(&["a", "b"]) }, appended(1, "a", 1)];
    let revoke = |by: &str, sent_at: u64, window_ms: Option<u64>| ChannelCommand::Revoke {
        seq: MessageSeq(1),
        from: "a".into(),
        sent_at: Timestamp(sent_at),
        by: by.into(),
        window_ms,
    };
    check::<ChannelState>(
        &group(),
        &given,
        revoke("a", now.0 - 1000, Some(180_000)),
        Ok(vec![ChannelEvent::MessageRevoked { seq: MessageSeq(1), by: "a".into(), at: now }]),
    );
    check::<ChannelState>(&group(), &given, revoke("b", now.0, None), Err(Rejection::NotAllowed("only its sender may retract a message".into())));
    check::<ChannelState>(
        &group(),
        &given,
        revoke("a", now.0 - 180_001, Some(180_000)),
        Err(Rejection::Expired("message 1 can no longer be retracted".into())),
    );
    check::<ChannelState>(&group(), &given, revoke("a", 0, None), Ok(vec![ChannelEvent::MessageRevoked { seq: MessageSeq(1), by: "a".into(), at: now }]));
    let mut twice = given.to_vec();
    twice.push(ChannelEvent::MessageRevoked { seq: MessageSeq(1), by: "a".into(), at: now });
    check::<ChannelState>(&group(), &twice, revoke("a", now.0, None), Err(Rejection::Exists("retraction of message 1".into())));
    let beyond = ChannelCommand::Revoke { seq: MessageSeq(2), from: "a".into(), sent_at: now, by: "a".into(), window_ms: None };
    check::<ChannelState>(&group(), &given, beyond, Err(Rejection::NotFound("message 2".into())));
}

#[test]
fn friendships_are_mutual_strict_to_add_and_gone_with_either_account() {
    let tag = "a1".to_owned();
    let given = [registered(1, &["ann", "bob", "cy"])];
    let add = |peers: &[&str]| TenantCommand::AddFriends { username: "ann".into(), peers: peers.iter().map(|p| (*p).to_owned()).collect() };
    let at = Timestamp(1_700_000_000_000);
    check::<TenantState>(&tag, &given, add(&["bob", "cy", "bob"]), Ok(vec![TenantEvent::FriendsAdded { n: 1, peers: vec![2, 3], at }]));
    check::<TenantState>(&tag, &given, add(&["zed"]), Err(Rejection::NotFound("user \"zed\"".into())));
    check::<TenantState>(&tag, &given, add(&["ann"]), Err(Rejection::Invalid("a user cannot befriend itself".into())));
    let friends = [registered(1, &["ann", "bob", "cy"]), TenantEvent::FriendsAdded { n: 1, peers: vec![2], at }];
    check::<TenantState>(&tag, &friends, add(&["cy", "bob"]), Err(Rejection::Exists("friendship with \"bob\"".into())));
    let from_bob = TenantCommand::SetFriendNotes { username: "bob".into(), notes: vec![("ann".into(), Some("A".into()), None)] };
    check::<TenantState>(
        &tag,
        &friends,
        from_bob,
        Ok(vec![TenantEvent::FriendNotesSet { n: 2, notes: vec![NoteChange { peer: 1, note_name: Some("A".into()), others: None }] }]),
    );
    let to_stranger = TenantCommand::SetFriendNotes { username: "bob".into(), notes: vec![("cy".into(), Some("C".into()), None)] };
    check::<TenantState>(&tag, &friends, to_stranger, Err(Rejection::NotFound("friend \"cy\"".into())));
    let remove = TenantCommand::RemoveFriends { username: "bob".into(), peers: vec!["ann".into(), "cy".into()] };
    check::<TenantState>(&tag, &friends, remove, Ok(vec![TenantEvent::FriendsRemoved { n: 2, peers: vec![1] }]));

    let mut s = TenantState::default();
    for (i, e) in friends.iter().enumerate() {
        s.apply(Position(i as u64 + 1), e);
    }
    assert!(s.friends[&2].contains_key(&1), "both ways");
    s.apply(Position(9), &TenantEvent::UsersUnregistered { ns: vec![1] });
    assert!(s.friends.is_empty(), "a deleted account's friendships end on both sides: {:?}", s.friends);
}

#[test]
fn sensitive_words_are_listed_in_order_within_their_limits_and_masked_when_switched_on() {
    let tag = "a1".to_owned();
    let at = Timestamp(1_700_000_000_000);
    let add = |words: &[&str]| TenantCommand::AddSensitiveWords(words.iter().map(|w| (*w).to_owned()).collect());
    check::<TenantState>(
        &tag,
        &[],
        add(&["FUCK", "坏词", "FUCK"]),
        Ok(vec![TenantEvent::SensitiveWordsAdded { words: vec!["FUCK".into(), "坏词".into()], at }]),
    );
    check::<TenantState>(&tag, &[], add(&["abcdefghijk"]), Err(Rejection::Invalid("a sensitive word is 1 to 10 characters, got 11".into())));
    assert!(TenantState::default().decide(&tag, &add(&["一二三四五六七八九十"]), at).is_ok(), "ten characters of three bytes each");
    let full: Vec<String> = (0..100).map(|i| format!("w{i}")).collect();
    let given = [TenantEvent::SensitiveWordsAdded { words: full, at }];
    check::<TenantState>(&tag, &given, add(&["w1"]), Ok(vec![]));
    check::<TenantState>(&tag, &given, add(&["w100"]), Err(Rejection::Invalid("the list holds at most 100 words".into())));
    let rename = |old: &str, new: &str| TenantCommand::RenameSensitiveWord { old: old.into(), new: new.into() };
    check::<TenantState>(&tag, &given, rename("w1", "x"), Ok(vec![TenantEvent::SensitiveWordRenamed { old: "w1".into(), new: "x".into(), at }]));
    check::<TenantState>(&tag, &given, rename("zz", "x"), Err(Rejection::NotFound("sensitive word \"zz\"".into())));
    check::<TenantState>(&tag, &given, rename("w1", "w2"), Err(Rejection::Exists("sensitive word \"w2\"".into())));

    let mut s = TenantState::default();
    s.apply(Position(1), &TenantEvent::SensitiveWordsAdded { words: vec!["fuck".into(), "坏词".into()], at });
    assert_eq!(s.masked("what the FUCK, 坏词!"), None, "the filter is off");
    s.apply(Position(2), &TenantEvent::SensitiveFilterSwitched { on: true });
    assert_eq!(s.masked("what the FuCk, 坏词!").as_deref(), Some("what the ****, **!"));
    assert_eq!(s.masked("clean"), None);
    assert_eq!(mask_words("aaa", ["aa"].into_iter()), "***", "overlapping matches");
}

#[test]
fn no_disturb_refuses_a_group_switched_twice_and_shields_are_idempotent() {
    let tag = "a1".to_owned();
    let given = [registered(1, &["ann", "bob"]), TenantEvent::GroupOpened { n: 7 }];
    let set = |groups_add: Vec<u64>, groups_remove: Vec<u64>| TenantCommand::SetNoDisturb {
        username: "ann".into(),
        single_add: vec!["bob".into()],
        single_remove: vec![],
        groups_add,
        groups_remove,
        global: Some(false),
    };
    let changed =
        TenantEvent::NoDisturbChanged { n: 1, single_added: vec![2], single_removed: vec![], groups_added: vec![7], groups_removed: vec![], global: None };
    check::<TenantState>(&tag, &given, set(vec![7], vec![]), Ok(vec![changed.clone()]));
    check::<TenantState>(&tag, &given, set(vec![8], vec![]), Err(Rejection::NotFound("group 8".into())));
    check::<TenantState>(&tag, &given, set(vec![], vec![7]), Err(Rejection::NotAllowed("no-disturb of group 7 is off already".into())));
    let on = [given[0].clone(), given[1].clone(), changed];
    check::<TenantState>(&tag, &on, set(vec![7], vec![]), Err(Rejection::Exists("no-disturb of group 7".into())));
    check::<TenantState>(&tag, &on, set(vec![], vec![]), Ok(vec![]));
    let shield = |add: Vec<u64>| TenantCommand::ShieldGroups { username: "ann".into(), add, remove: vec![] };
    check::<TenantState>(&tag, &on, shield(vec![7, 7]), Ok(vec![TenantEvent::GroupsShielded { n: 1, added: vec![7], removed: vec![] }]));
    check::<TenantState>(&tag, &on, shield(vec![9]), Err(Rejection::NotFound("group 9".into())));
}

#[test]
fn a_room_records_when_each_member_joined_and_forgets_those_who_left() {
    let room = tenant_room("a1", 1);
    let now = Timestamp(1_700_000_000_000);
    let new = ChannelCommand::Group(GroupCommand::Create(Box::new(NewGroup { profile: profile_of("o"), members: uids(&["a"]), notice: String::new() })));
    check::<ChannelState>(
        &room,
        &[],
        new,
        Ok(vec![
            created(),
            ChannelEvent::GroupCreated { profile: Box::new(profile_of("o")) },
            ChannelEvent::RoomMembersAdded { uids: uids(&["o", "a"]), at: now },
        ]),
    );
    let mut s = ChannelState::default();
    s.apply(Position(1), &created());
    s.apply(Position(2), &ChannelEvent::GroupCreated { profile: Box::new(profile_of("o")) });
    s.apply(Position(3), &ChannelEvent::RoomMembersAdded { uids: uids(&["o", "a"]), at: now });
    assert_eq!((s.subscribers.len(), s.joined_at.get(&Uid::from("a"))), (2, Some(&now)));
    s.apply(Position(4), &ChannelEvent::SubscribersRemoved { uids: uids(&["a"]) });
    assert_eq!(s.joined_at.get(&Uid::from("a")), None);
    assert_eq!(tenant_room_parts(&room.id), Some(("a1", 1)));
    assert_eq!(room.ty, ChannelType::LIVE);
}

#[test]
fn friend_requests_go_to_their_addressee_once_and_an_agreement_makes_friends() {
    let tag = "p1".to_owned();
    let users = registered(1, &["ann", "bob", "cat"]);
    let ask = |from, to| TenantCommand::RequestFriend { from, to, postscript: "hi".into() };
    let asked = TenantEvent::FriendRequested { nid: 1, from: 1, to: 2, postscript: "hi".into(), at: Timestamp(5) };
    check::<TenantState>(
        &tag,
        std::slice::from_ref(&users),
        ask(1, 2),
        Ok(vec![TenantEvent::FriendRequested { nid: 1, from: 1, to: 2, postscript: "hi".into(), at: Timestamp(1_700_000_000_000) }]),
    );
    check::<TenantState>(&tag, std::slice::from_ref(&users), ask(1, 1), Err(Rejection::Invalid("a user cannot ask itself to be friends".into())));
    check::<TenantState>(&tag, std::slice::from_ref(&users), ask(1, 9), Err(Rejection::NotFound("user 9".into())));
    let pending = [users.clone(), asked.clone()];
    for (from, to) in [(1, 2), (2, 1)] {
        assert!(matches!(TenantState::default().decide(&tag, &ask(from, to), Timestamp(0)), Err(Rejection::NotFound(_))));
        let mut s = TenantState::default();
        pending.iter().enumerate().for_each(|(i, e)| s.apply(Position(i as u64 + 1), e));
        assert!(matches!(s.decide(&tag, &ask(from, to), Timestamp(0)), Err(Rejection::Exists(_))), "one pending request per pair");
    }
    let answer = |by, agree| TenantCommand::AnswerFriendRequest { by, nid: 1, agree };
    check::<TenantState>(&tag, &pending, answer(1, true), Err(Rejection::NotAllowed("only the addressee of friend request 1 may answer it".into())));
    check::<TenantState>(&tag, &pending, answer(3, true), Err(Rejection::NotAllowed("only the addressee of friend request 1 may answer it".into())));
    let agreed = TenantEvent::FriendRequestAnswered { nid: 1, agree: true, at: Timestamp(1_700_000_000_000) };
    check::<TenantState>(&tag, &pending, answer(2, true), Ok(vec![agreed.clone()]));
    let answered = [users.clone(), asked, agreed];
    check::<TenantState>(&tag, &answered, answer(2, false), Err(Rejection::Exists("an answer to friend request 1".into())));
    let mut s = TenantState::default();
    answered.iter().enumerate().for_each(|(i, e)| s.apply(Position(i as u64 + 1), e));
    assert!(s.friends[&1].contains_key(&2) && s.friends[&2].contains_key(&1), "friends both ways");
    assert!(matches!(s.decide(&tag, &ask(2, 1), Timestamp(0)), Err(Rejection::Exists(_))), "friends already");
}

#[test]
fn a_default_reply_clears_the_other_defaults_of_its_type() {
    let tag = "p1".to_owned();
    let reply = |kind, is_default| Reply { kind, title: "t".into(), keyword: String::new(), content: "c".into(), weights: 0, is_default };
    let mut s = TenantState::default();
    for (id, r) in [(1, reply(1, true)), (2, reply(2, true)), (3, reply(1, true))] {
        s.apply(Position(id), &TenantEvent::ReplySaved { id, reply: r });
    }
    assert_eq!((s.replies[&1].is_default, s.replies[&2].is_default, s.replies[&3].is_default), (false, true, true));
    assert!(matches!(s.decide(&tag, &TenantCommand::SaveReply { id: None, reply: reply(4, false) }, Timestamp(0)), Err(Rejection::Invalid(_))));
    assert!(matches!(s.decide(&tag, &TenantCommand::SaveReply { id: Some(9), reply: reply(1, false) }, Timestamp(0)), Err(Rejection::NotFound(_))));
    assert_eq!(s.decide(&tag, &TenantCommand::SaveReply { id: Some(3), reply: reply(1, true) }, Timestamp(0)), Ok(vec![]));
    assert_eq!(s.decide(&tag, &TenantCommand::RemoveReply(2), Timestamp(0)), Ok(vec![TenantEvent::ReplyRemoved { id: 2 }]));
}

#[test]
fn group_commands_on_behalf_of_a_user_follow_its_role() {
    let mut given = group_created("o", &["o", "m", "a"]);
    given[1] = ChannelEvent::GroupCreated { profile: Box::new(GroupProfile { max_members: 10, ..profile_of("o") }) };
    given.push(ChannelEvent::ManagersChanged { added: uids(&["m"]), removed: vec![], at: Timestamp(1) });
    let decide = |by: &str, cmd: GroupCommand| {
        let mut s = ChannelState::default();
        given.iter().enumerate().for_each(|(i, e)| s.apply(Position(i as u64 + 1), e));
        s.decide(&jm_group(), &ChannelCommand::Group(GroupCommand::As { by: by.into(), cmd: Box::new(cmd) }), Timestamp(2))
    };
    let members = |add: &[&str], remove: &[&str]| GroupCommand::Members { add: uids(add), remove: uids(remove) };
    let mute = |who: &[&str]| GroupCommand::Mute { uids: uids(who), until: Some(Timestamp(99)) };
    // Only the owner removes others, names managers, disbands.
    for by in ["m", "a"] {
        assert!(matches!(decide(by, members(&[], &["o"])), Err(Rejection::NotAllowed(_))), "{by}");
        assert!(matches!(decide(by, GroupCommand::SetManager { uid: "a".into(), on: true }), Err(Rejection::NotAllowed(_))), "{by}");
        assert!(matches!(decide(by, GroupCommand::Disband), Err(Rejection::NotAllowed(_))), "{by}");
    }
    assert!(decide("o", members(&[], &["a"])).is_ok());
    assert_eq!(
        decide("o", GroupCommand::SetManager { uid: "a".into(), on: true }),
        Ok(vec![ChannelEvent::ManagersChanged { added: uids(&["a"]), removed: vec![], at: Timestamp(2) }])
    );
    assert_eq!(decide("o", GroupCommand::Disband), Ok(vec![ChannelEvent::Deleted]));
    // The owner or a manager mutes; a manager never the owner or a manager; members do not.
    assert!(decide("m", mute(&["a"])).is_ok() && decide("o", mute(&["m"])).is_ok());
    assert!(matches!(decide("m", mute(&["o"])), Err(Rejection::NotAllowed(_))));
    assert!(matches!(decide("a", mute(&["a"])), Err(Rejection::NotAllowed(_))));
    assert_eq!(decide("m", GroupCommand::MuteAll(true)), Ok(vec![ChannelEvent::MuteAllSet { on: true, at: Timestamp(2) }]));
    assert!(matches!(decide("a", GroupCommand::MuteAll(true)), Err(Rejection::NotAllowed(_))));
    // Any member invites and leaves; a non-member joins only itself, only a public group.
    assert!(decide("a", members(&["x"], &[])).is_ok() && decide("a", members(&[], &["a"])).is_ok());
    assert!(matches!(decide("x", members(&["x"], &[])), Err(Rejection::NotAllowed(_))), "a private group");
    assert!(matches!(decide("x", members(&["y"], &[])), Err(Rejection::NotAllowed(_))));
}

#[test]
fn a_message_is_deleted_for_everyone_by_its_sender_once_and_hidden_for_one_user() {
    let mut state = ChannelState::default();
    for (i, e) in [created(), appended(1, "a", 1)].iter().enumerate() {
        state.apply(Position(i as u64 + 1), e);
    }
    let delete = |by: &str| ChannelCommand::DeleteMessage { seq: MessageSeq(1), from: "a".into(), by: by.into() };
    assert!(matches!(state.decide(&group(), &delete("b"), Timestamp(3)), Err(Rejection::NotAllowed(_))));
    let deleted = state.decide(&group(), &delete("a"), Timestamp(3)).unwrap();
    state.apply(Position(3), &deleted[0]);
    assert!(state.deleted_messages.contains_key(&MessageSeq(1)));
    assert!(matches!(state.decide(&group(), &delete("a"), Timestamp(4)), Err(Rejection::NotFound(_))), "once");

    let uid = Uid::from("b");
    let hide = |seqs: &[u64]| UserCommand::HideMessages { channel: group(), seqs: seqs.iter().map(|q| MessageSeq(*q)).collect() };
    let hidden = UserEvent::MessagesHidden { channel: group(), seqs: vec![MessageSeq(1), MessageSeq(2)] };
    check::<UserState>(&uid, &[], hide(&[2, 1, 2, 0]), Ok(vec![hidden.clone()]));
    check::<UserState>(&uid, std::slice::from_ref(&hidden), hide(&[1]), Ok(vec![]));
    let pin = UserCommand::SetConversation { channel: group(), pinned: Some(true), remark: Some(String::new()) };
    check::<UserState>(&uid, &[], pin.clone(), Ok(vec![UserEvent::ConversationSettingsChanged { channel: group(), pinned: Some(true), remark: None }]));
}

#[test]
fn a_clients_command_message_reaches_a_bounded_number_of_subscribers() {
    let members: Vec<String> = (0..=MAX_CLIENT_COMMAND_RECIPIENTS).map(|i| format!("u{i}")).collect();
    let mut state = ChannelState::default();
    state.apply(Position(1), &created());
    state.apply(Position(2), &ChannelEvent::SubscribersAdded { uids: members.iter().map(|m| Uid::from(m.as_str())).collect() });
    let command = |via_client: bool| {
        let ChannelCommand::Send(mut m) = send("u0", b"cmd") else { unreachable!() };
        m.header.sync_once = true;
        m.sender.via_client = via_client;
        ChannelCommand::Send(m)
    };
    assert!(matches!(state.decide(&group(), &command(true), Timestamp(1)), Err(Rejection::NotAllowed(_))), "one over the bound, from a client");
    assert!(state.decide(&group(), &command(false), Timestamp(1)).is_ok(), "the server API is not bound");
    state.apply(Position(3), &ChannelEvent::SubscribersRemoved { uids: vec![Uid::from("u1")] });
    assert!(state.decide(&group(), &command(true), Timestamp(1)).is_ok(), "at the bound");
}
