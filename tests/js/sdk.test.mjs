#!/usr/bin/env node
// The official WuKongIM JS SDK from npm (wukongimjssdk 1.0.4) against a running Rookery server.
//
//   node tests/js/sdk.test.mjs --ws ws://127.0.0.1:5200 --api http://127.0.0.1:5001
//   (or ROOKERY_WS_URL / ROOKERY_API_URL in the environment)
//
// Registers web tokens for two users over REST, creates a group with both, connects one SDK per
// user (each in its own worker thread: the SDK is a process-wide singleton), and checks:
//   * both connect with their registered tokens (status Connected);
//   * person channel, both ways: SENDACK reason 1 to the sender, and the SDK of the recipient hands
//     its message listeners the decrypted text, with channel = the sender's uid and type 1;
//   * group channel, both ways: the same, with channel = the group id and type 2;
//   * a SENDACK's messageID/messageSeq equal those of the RECV;
//   * a wrong token gets status ConnectFail with reason 2 (authFail), and the SDK does not retry;
//   * the session of the same uid that is already connected keeps working after that refusal;
//   * a second master login of the same uid and device (web) kicks the first: its status listener sees
//     ConnectKick with reason 12, then Disconnect, and it does NOT reconnect (it would kick the new
//     session 3 s later); the server lists one session; messages go to the new session only;
//   * a client that was offline recovers what was sent meanwhile through the SDK's datasource hooks:
//     the SDK's conversation sync (hook -> POST /conversation/sync) reports the person and group
//     conversations with their unread count and last message, and the SDK's message sync (hook ->
//     POST /channel/messagesync) returns the missed messages, decoded, in order, with the ids and seqs
//     of their SENDACKs.
// With `--openim SECRET` it instead drives the OpenIM family (see `openim()` below).
// Exits 0 when every check passes, 1 otherwise; the whole run is bounded by a timeout.
import { Worker } from 'node:worker_threads';

const TIMEOUT_MS = Number(process.env.ROOKERY_JSSDK_TIMEOUT_MS || 60000);
const STEP_MS = 15000;

function arg(name) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const wsURL = arg('--ws') || process.env.ROOKERY_WS_URL;
const apiURL = (arg('--api') || process.env.ROOKERY_API_URL || '').replace(/\/$/, '');
const managerToken = process.env.ROOKERY_MANAGER_TOKEN;
if (!wsURL || !apiURL) {
  console.error('usage: node sdk.test.mjs --ws ws://HOST:PORT --api http://HOST:PORT');
  process.exit(2);
}

const ConnectStatus = { Disconnect: 0, Connected: 1, Connecting: 2, ConnectFail: 3, ConnectKick: 4 };
const clients = [];
let passed = 0;

function ok(what) {
  passed++;
  console.log(`ok ${passed} - ${what}`);
}

async function fail(what) {
  console.log(`not ok - ${what}`);
  for (const c of clients) {
    if (c.logs.length) {
      console.log(`# SDK output of ${c.name}:`);
      for (const l of c.logs.slice(-40)) console.log(`#   ${l.replace(/\s+/g, ' ').slice(0, 300)}`);
    }
    if (c.events.length) {
      console.log(`# events seen by ${c.name}:`);
      for (const e of c.events.slice(-40)) console.log(`#   ${JSON.stringify(e)}`);
    }
  }
  process.exit(1);
}

function check(cond, what, detail) {
  if (!cond) return fail(detail === undefined ? what : `${what}: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`);
  ok(what);
}

const overall = setTimeout(() => fail(`overall timeout of ${TIMEOUT_MS} ms`), TIMEOUT_MS);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function rest(path, body) {
  const headers = { 'content-type': 'application/json' };
  if (managerToken) headers.token = managerToken;
  let res;
  try {
    res = await fetch(apiURL + path, { method: 'POST', headers, body: JSON.stringify(body) });
  } catch (e) {
    return fail(`POST ${path}: ${e}`);
  }
  const text = await res.text();
  if (res.status !== 200) return fail(`POST ${path} ${JSON.stringify(body)} answered ${res.status}: ${text}`);
  return text;
}

/// Starts one SDK client; events are kept in order and waited on with `waitFor`.
function startClient(name, uid, token) {
  const c = { name, uid, events: [], logs: [], waiters: [] };
  c.worker = new Worker(new URL('./sdk-client.mjs', import.meta.url), { workerData: { uid, token, addr: wsURL, api: apiURL, managerToken } });
  c.worker.on('message', (m) => {
    if (m.ev === 'log') {
      c.logs.push(m.line);
      return;
    }
    c.events.push(m);
    if (m.ev === 'error') {
      fail(`${name}: exception inside the SDK worker: ${m.error}`);
      return;
    }
    for (const w of [...c.waiters]) {
      if (w.pred(m)) {
        c.waiters.splice(c.waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  });
  c.worker.on('error', (e) => fail(`${name}: worker crashed: ${e && e.stack || e}`));
  clients.push(c);
  return c;
}

/// The first event (already seen or future) matching `pred`, or a failure after STEP_MS.
function waitFor(c, what, pred, ms = STEP_MS) {
  const seen = c.events.find(pred);
  if (seen) return Promise.resolve(seen);
  return new Promise((resolve) => {
    const w = { pred, resolve };
    c.waiters.push(w);
    setTimeout(() => {
      if (c.waiters.includes(w)) fail(`${c.name}: timed out after ${ms} ms waiting for ${what}`);
    }, ms);
  });
}

let sendId = 0;
/// Sends `text` from `from` into a channel; waits for the SDK's SENDACK and the recipients' RECVs.
async function exchange(from, to, channelID, channelType, text, label) {
  const id = ++sendId;
  from.worker.postMessage({ cmd: 'send', id, channelID, channelType, text });
  const sent = await waitFor(from, `send #${id}`, (e) => e.ev === 'sent' && e.id === id);
  const ack = await waitFor(from, `SENDACK of clientSeq ${sent.clientSeq}`, (e) => e.ev === 'sendack' && e.clientSeq === sent.clientSeq);
  check(ack.reasonCode === 1, `${label}: SENDACK reason 1 (success)`, ack);
  check(/^[1-9][0-9]*$/.test(ack.messageID) && ack.messageSeq > 0, `${label}: SENDACK carries a message id and seq`, ack);
  const expectChannel = channelType === 1 ? from.uid : channelID;
  for (const r of to) {
    const m = await waitFor(r, `the RECV of "${text}"`, (e) => e.ev === 'message' && e.clientMsgNo === sent.clientMsgNo);
    check(m.text === text && m.contentType === 1, `${label}: ${r.name} got the decrypted text`, m);
    check(m.fromUID === from.uid, `${label}: ${r.name} sees fromUID ${from.uid}`, m);
    check(m.channelID === expectChannel && m.channelType === channelType,
      `${label}: ${r.name} sees channel (${expectChannel}, ${channelType})`, m);
    check(m.messageID === ack.messageID && m.messageSeq === ack.messageSeq,
      `${label}: ${r.name}'s messageID/messageSeq equal the SENDACK's`, { recv: m, ack });
  }
}

/// Sends `text` and waits for its SENDACK only (the recipients are offline).
async function sendOnly(from, channelID, channelType, text, label) {
  const id = ++sendId;
  from.worker.postMessage({ cmd: 'send', id, channelID, channelType, text });
  const sent = await waitFor(from, `send #${id}`, (e) => e.ev === 'sent' && e.id === id);
  const ack = await waitFor(from, `SENDACK of clientSeq ${sent.clientSeq}`, (e) => e.ev === 'sendack' && e.clientSeq === sent.clientSeq);
  check(ack.reasonCode === 1, `${label}: SENDACK reason 1`, ack);
  return { text, clientMsgNo: sent.clientMsgNo, messageID: ack.messageID, messageSeq: ack.messageSeq };
}

/// The online sessions of `uid` as the server lists them.
async function onlineSessions(uid) {
  return JSON.parse(await rest('/user/onlinestatus', [uid]));
}

/// One event of a stream message over REST (the AI backend's side).
async function streamEvent(channelID, clientMsgNo, eventID, type, payload) {
  return JSON.parse(await rest('/message/event', { channel_id: channelID, channel_type: 2, from_uid: streamBot(channelID), client_msg_no: clientMsgNo, event_id: eventID, event_type: type, payload }));
}
const streamBot = (group) => `bot-${group}`;

/// The stream pieces `c` received for `clientMsgNo`, in arrival order.
const pieces = (c, clientMsgNo) => c.events.filter((e) => e.ev === 'message' && e.streamNo === clientMsgNo);

async function main() {
  const run = `${process.pid}${Date.now().toString(36)}`;
  const alice = { uid: `alice${run}`, token: `tok-alice-${run}` };
  const bob = { uid: `bob${run}`, token: `tok-bob-${run}` };
  const group = `grp${run}`;
  console.log(`# server ws=${wsURL} api=${apiURL}`);

  // device_flag 1 = web: the SDK always logs in as a web device.
  for (const u of [alice, bob]) await rest('/user/token', { uid: u.uid, token: u.token, device_flag: 1, device_level: 1 });
  await rest('/channel', { channel_id: group, channel_type: 2, subscribers: [alice.uid, bob.uid] });
  ok('tokens registered and group created over REST');

  const a = startClient('alice', alice.uid, alice.token);
  const b = startClient('bob', bob.uid, bob.token);
  for (const c of [a, b]) {
    const s = await waitFor(c, 'a connect status', (e) => e.ev === 'status');
    check(s.status === ConnectStatus.Connected, `${c.name} connects with its registered token`, s);
  }

  await exchange(a, [b], bob.uid, 1, 'hello bob, from alice (person)', 'person alice->bob');
  await exchange(b, [a], alice.uid, 1, 'hi alice, from bob (person) ✓ ünïcødé', 'person bob->alice');
  await exchange(a, [b], group, 2, 'hello group, from alice', 'group alice->group');
  await exchange(b, [a], group, 2, 'hello group, from bob', 'group bob->group');

  // --- A streamed reply (an AI bot's answer arriving piece by piece), received live. ---
  const bot = streamBot(group);
  await rest('/channel/subscriber_add', { channel_id: group, channel_type: 2, subscribers: [bot] });
  const reply1 = `ai1-${run}`;
  const openStream = (clientMsgNo) => rest('/message/send', { from_uid: bot, channel_id: group, channel_type: 2, client_msg_no: clientMsgNo, is_stream: 1,
    payload: Buffer.from(JSON.stringify({ type: 1, content: '' })).toString('base64') });
  await openStream(reply1);
  const words = ['Hello', ' from', ' the', ' model'];
  for (const [i, w] of words.entries()) await streamEvent(group, reply1, `d${i}`, 'stream.delta', { kind: 'text', delta: w });
  await streamEvent(group, reply1, 'end', 'stream.close', { end_reason: 1 });
  for (const c of [a, b]) {
    await waitFor(c, 'the end of the streamed reply', (e) => e.ev === 'message' && e.streamNo === reply1 && e.streamFlag === 2);
    const got = pieces(c, reply1);
    check(got.length === words.length + 2 && got[0].streamFlag === 0 && got[0].contentType === 1,
      `${c.name}: the stream message arrives first (flag start), then one piece per event`, got);
    const events = got.slice(1).map((p) => JSON.parse(p.streamData));
    check(got.slice(1).every((p, i) => p.streamSeq === i + 1 && p.contentType === 98 && p.messageID === got[0].messageID),
      `${c.name}: pieces carry their event seq and the message's id, as content type 98`, got);
    check(events.slice(0, words.length).map((e) => e.payload.delta).join('') === words.join('') && events[words.length].stream_status === 'closed',
      `${c.name}: the pieces spell the reply and the last one closes it`, events);
  }

  // A wrong token for alice's uid: a failing CONNACK (not a silent close, which makes the SDK retry
  // every 3 s forever), reason 2 = authFail.
  const bad = startClient('alice-wrong-token', alice.uid, `wrong-${alice.token}`);
  const s = await waitFor(bad, 'a connect status', (e) => e.ev === 'status');
  check(s.status === ConnectStatus.ConnectFail, 'a wrong token gets status ConnectFail', s);
  check(s.reasonCode === 2, 'a wrong token gets reason code 2 (authFail)', s);
  // The SDK stops reconnecting after a failing CONNACK; give it the 3 s it would wait for a retry.
  await new Promise((r) => setTimeout(r, 3500));
  const extra = bad.events.filter((e) => e.ev === 'status' && e.status === ConnectStatus.Connected);
  check(extra.length === 0, 'the refused client never becomes Connected', bad.events);
  const unexpected = a.events.filter((e) => e.ev === 'status' && e.status !== ConnectStatus.Connected);
  check(unexpected.length === 0, "the refused login does not disturb alice's session", unexpected);

  await exchange(b, [a], alice.uid, 1, 'still there, alice?', 'person bob->alice after the refused login');

  // Nobody received anything twice or anything unexpected.
  for (const c of [a, b]) {
    const msgs = c.events.filter((e) => e.ev === 'message' && !e.streamNo);
    const nos = new Set(msgs.map((m) => m.clientMsgNo));
    check(nos.size === msgs.length, `${c.name} got each message exactly once`, msgs);
  }
  check(a.events.filter((e) => e.ev === 'message' && !e.streamNo).length === 3 && b.events.filter((e) => e.ev === 'message' && !e.streamNo).length === 2,
    'alice got 3 messages and bob 2', null);

  // --- Kick: a second login of alice's web device with her master token. ---
  const a2 = startClient('alice-second', alice.uid, alice.token);
  const s2 = await waitFor(a2, 'a connect status', (e) => e.ev === 'status');
  check(s2.status === ConnectStatus.Connected, 'a second master login of the same device flag connects', s2);
  const kick = await waitFor(a, 'the kick', (e) => e.ev === 'status' && e.status === ConnectStatus.ConnectKick);
  check(kick.reasonCode === 12, 'the first session sees ConnectKick with reason 12 (connectKick)', kick);
  const kickAt = a.events.indexOf(kick);
  await waitFor(a, 'Disconnect after the kick', (e) => e.ev === 'status' && e.status === ConnectStatus.Disconnect && a.events.indexOf(e) > kickAt);
  ok('the server closes the kicked connection');
  // The SDK would retry 3 s after a close it did not expect; give it more than that.
  await sleep(4500);
  const after = a.events.slice(kickAt + 1).filter((e) => e.ev === 'status' && e.status === ConnectStatus.Connected);
  check(after.length === 0, 'the kicked SDK does not reconnect', a.events.slice(kickAt));
  const a2Bad = a2.events.filter((e) => e.ev === 'status' && e.status !== ConnectStatus.Connected);
  check(a2Bad.length === 0, 'the new session is not kicked back', a2.events);
  const online = await onlineSessions(alice.uid);
  check(online.length === 1 && online[0].device_flag === 1, 'the server lists exactly one web session for alice', online);
  await exchange(b, [a2], alice.uid, 1, 'to the new alice session', 'person bob->alice after the kick');
  check(!a.events.some((e) => e.ev === 'message' && e.text === 'to the new alice session'), 'the kicked session receives nothing more', null);

  // --- Offline recovery through the datasource hooks. ---
  b.worker.postMessage({ cmd: 'disconnect' });
  await waitFor(b, 'disconnect()', (e) => e.ev === 'disconnected');
  for (let i = 0; i < 50 && (await onlineSessions(bob.uid)).length > 0; i++) await sleep(100);
  check((await onlineSessions(bob.uid)).length === 0, 'bob is offline after disconnect()', null);
  const missed = [];
  for (const text of ['while you were away 1', 'while you were away 2 ✓', 'while you were away 3']) {
    missed.push(await sendOnly(a2, bob.uid, 1, text, `offline person message "${text}"`));
  }
  const missedGroup = await sendOnly(a2, group, 2, 'group news while bob was away', 'offline group message');
  // A reply starts streaming while bob is away and finishes after he is back.
  const reply2 = `ai2-${run}`;
  await openStream(reply2);
  await streamEvent(group, reply2, 'd0', 'stream.delta', { kind: 'text', delta: 'Answer' });
  await streamEvent(group, reply2, 'd1', 'stream.delta', { kind: 'text', delta: ' part' });

  const b2 = startClient('bob-again', bob.uid, bob.token);
  const s3 = await waitFor(b2, 'a connect status', (e) => e.ev === 'status');
  check(s3.status === ConnectStatus.Connected, 'bob connects again', s3);
  // The rest of the reply arrives live; what was missed is in /message/eventsync.
  await streamEvent(group, reply2, 'd2', 'stream.delta', { kind: 'text', delta: ' two' });
  await streamEvent(group, reply2, 'end', 'stream.close', {});
  await waitFor(b2, 'the end of the second reply', (e) => e.ev === 'message' && e.streamNo === reply2 && e.streamFlag === 2);
  const live2 = pieces(b2, reply2);
  check(live2.map((p) => p.streamSeq).join(',') === '3,4', 'after reconnecting bob gets the rest of the reply live (seqs 3, 4)', live2);
  const missedEvents = JSON.parse(await rest('/message/eventsync', { channel_id: group, channel_type: 2, client_msg_no: reply2, from_msg_event_seq: 0, limit: 100 }));
  check(missedEvents.data.events.map((e) => e.payload && e.payload.delta).slice(0, 3).join('') === 'Answer part two' && missedEvents.data.more === 0,
    '/message/eventsync gives every event of the reply, the missed ones included', missedEvents);
  b2.worker.postMessage({ cmd: 'sync', id: 1 });
  const synced = await waitFor(b2, 'the sync result', (e) => e.ev === 'synced' && e.id === 1);
  const personConv = synced.conversations.find((c) => c.channelID === alice.uid && c.channelType === 1);
  check(personConv !== undefined, "the SDK's conversation sync lists the person chat under alice's uid", synced.conversations);
  // bob's own last message (before the kick) moved his read point; the 3 sent while he was away are unread.
  check(personConv.unread === missed.length, `the person conversation has unread ${missed.length}`, personConv);
  const lastP = missed[missed.length - 1];
  check(personConv.lastMessage && personConv.lastMessage.text === lastP.text && personConv.lastMessage.messageID === lastP.messageID
    && personConv.lastMessage.messageSeq === lastP.messageSeq, 'its last message is the last one sent while bob was away', personConv.lastMessage);
  const got = personConv.messages.filter((m) => missed.some((x) => x.messageID === m.messageID));
  check(got.length === missed.length && got.every((m, i) => m.text === missed[i].text && m.messageSeq === missed[i].messageSeq
    && m.fromUID === alice.uid && m.channelID === alice.uid && m.contentType === 1),
  "the SDK's message sync returns every missed person message, decoded, in order, with its SENDACK's id and seq", personConv.messages);
  const seqs = personConv.messages.map((m) => m.messageSeq);
  check(seqs.every((q, i) => i === 0 || q > seqs[i - 1]), 'the synced person messages are in seq order', seqs);
  const groupConv = synced.conversations.find((c) => c.channelID === group && c.channelType === 2);
  check(groupConv && groupConv.lastMessage && groupConv.lastMessage.clientMsgNo === reply2 && groupConv.lastMessage.streamText === 'Answer part two'
    && groupConv.lastMessage.streamEnd, 'the group conversation ends with the finished streamed reply, its text included', groupConv);
  check(groupConv.messages.some((m) => m.messageID === missedGroup.messageID && m.text === missedGroup.text && m.fromUID === alice.uid),
    "the SDK's message sync returns the missed group message", groupConv.messages);
  const streamed = groupConv.messages.filter((m) => m.clientMsgNo === reply1 || m.clientMsgNo === reply2);
  check(streamed.length === 2 && streamed[0].streamText === words.join('') && streamed[1].streamText === 'Answer part two' && streamed.every((m) => m.streamEnd),
    "the SDK's message sync returns both streamed replies, finished, with their text", streamed);
  // After syncing, live delivery goes on as before.
  await exchange(a2, [b2], bob.uid, 1, 'welcome back', 'person alice->bob after the sync');

  clearTimeout(overall);
  console.log(`# all ${passed} checks passed`);
  for (const c of clients) await c.worker.terminate();
  process.exit(0);
}

/// POST to the OpenIM family: errCode 0 expected; answers the parsed body.
async function oim(path, body, token) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.token = token;
  const res = await fetch(apiURL + path, { method: 'POST', headers, body: JSON.stringify(body) });
  const text = await res.text();
  const v = JSON.parse(text);
  if (res.status !== 200 || v.errCode !== 0) return fail(`POST ${path} answered ${res.status}: ${text}`);
  return v;
}

/// `--openim SECRET`: users registered through the OpenIM family log in with the tokens they got
/// (web platform 5) as their internal uids, receive what the app manager sends with /manager/send_msg,
/// and answer over WKProto; a replaced token no longer logs in.
async function openim(secret) {
  const run = `${process.pid}${Date.now().toString(36)}`;
  const reg = async (uid, platform) => (await oim('/auth/user_register', { secret, platform, uid, name: uid })).data;
  const admin = await reg('openIM123456', 1);
  const alice = await reg(`alice${run}`, 5);
  const bob = await reg(`bob${run}`, 5);
  check(alice.imUid && alice.token && alice.expiredTime > Date.now() / 1000, 'users registered with web tokens', alice);

  const a = startClient('alice', alice.imUid, alice.token);
  const s = await waitFor(a, 'a connect status', (e) => e.ev === 'status');
  check(s.status === ConnectStatus.Connected, 'alice connects with the token /auth/user_register issued', s);
  const b = startClient('bob', bob.imUid, bob.token);
  check((await waitFor(b, 'a connect status', (e) => e.ev === 'status')).status === ConnectStatus.Connected, 'bob connects too');

  const op = `op-${run}`;
  const sent = await oim('/manager/send_msg', {
    operationID: op, sendID: bob.uid, recvID: alice.uid, content: { text: 'nihao' }, contentType: 101, sessionType: 1,
  }, admin.token);
  const m = await waitFor(a, 'the send_msg message', (e) => e.ev === 'message' && e.clientMsgNo === op);
  check(m.text === 'nihao' && m.contentType === 1 && m.fromUID === bob.imUid && m.channelID === bob.imUid && m.channelType === 1,
    "alice's SDK renders the manager's text message from bob", m);
  check(/^[1-9][0-9]*$/.test(sent.msgID) && sent.sendTime > 0, 'send_msg answers msgID and sendTime', sent);
  await exchange(a, [b], bob.imUid, 1, 'hello back', 'alice answers bob over WKProto');

  // A new web token for alice replaces the old one: the old one is refused with authFail.
  await oim('/auth/user_token', { secret, platform: 5, uid: alice.uid });
  const stale = startClient('alice-stale', alice.imUid, alice.token);
  const st = await waitFor(stale, 'a connect status', (e) => e.ev === 'status' && e.status !== ConnectStatus.Connecting);
  check(st.status === ConnectStatus.ConnectFail && st.reasonCode === 2, 'a replaced token gets ConnectFail reason 2 (authFail)', st);

  clearTimeout(overall);
  console.log(`# all ${passed} checks passed`);
  for (const c of clients) await c.worker.terminate();
  process.exit(0);
}

const openimSecret = arg('--openim');
(openimSecret ? openim(openimSecret) : main()).catch((e) => fail(`unexpected error: ${e && e.stack || e}`));
