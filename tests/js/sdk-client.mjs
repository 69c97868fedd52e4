// One official-SDK client, run in its own worker thread: WKSDK.shared() and every manager of the
// SDK are process-wide singletons, and a worker has its own module graph and globals.
// Talks to the test (sdk.test.mjs) over postMessage:
//   in : {cmd: 'send', id, channelID, channelType, text} | {cmd: 'disconnect'} | {cmd: 'sync', id}
//   out: {ev: 'status', status, reasonCode} | {ev: 'message', ...} | {ev: 'sendack', ...}
//        | {ev: 'sent', id, clientSeq, clientMsgNo} | {ev: 'synced', id, conversations}
//        | {ev: 'disconnected'} | {ev: 'log', line} | {ev: 'error', error}
//
// The SDK's datasource hooks (config.provider.syncConversationsCallback / syncMessagesCallback) are
// what an application provides: here they call the server's REST API (/conversation/sync and
// /channel/messagesync, the shapes of jssdk-1.0.4 §15) and turn the JSON into the SDK's own
// Conversation and Message objects. 'sync' runs the SDK's conversation sync and then the SDK's
// message sync of every conversation, and reports what the SDK handed back.
import { parentPort, workerData } from 'node:worker_threads';
import { register } from 'node:module';
import { format } from 'node:util';
import WebSocket from 'ws';

const post = (m) => parentPort.postMessage(m);

// The SDK logs with console.log; keep its lines for the failure report instead of the output.
for (const name of ['log', 'info', 'warn', 'error', 'debug']) {
  console[name] = (...args) => post({ ev: 'log', line: format(...args) });
}
process.on('uncaughtException', (e) => post({ ev: 'error', error: String(e && e.stack || e) }));
process.on('unhandledRejection', (e) => post({ ev: 'error', error: String(e && e.stack || e) }));

// The SDK does `new WebSocket(addr)` on the global and sets binaryType = 'arraybuffer'.
globalThis.WebSocket = WebSocket;

register('./sdk-hooks.mjs', import.meta.url);
const { default: WKSDK } = await import('wukongimjssdk');

// The SDK's model classes, from the same module instances the SDK uses.
const { Channel, Conversation, Message, MessageStream, SyncOptions } = await import('wukongimjssdk/lib/model.js');
const { Setting } = await import('wukongimjssdk/lib/proto.js');

const { uid, token, addr, api, managerToken } = workerData;
const sdk = WKSDK.shared();
// The SDK has a content class for stream pieces (type 98) but does not register it; an app that
// shows streamed replies does.
sdk.register(98, () => new MessageStream());
sdk.config.uid = uid;
sdk.config.token = token;
sdk.config.addr = addr;

async function restPost(path, body) {
  const headers = { 'content-type': 'application/json' };
  if (managerToken) headers.token = managerToken;
  const res = await fetch(api + path, { method: 'POST', headers, body: JSON.stringify(body) });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`POST ${path} answered ${res.status}: ${text}`);
  return JSON.parse(text);
}

// A REST message object as the SDK's Message (built the way the SDK builds one from a RECV).
function toMessage(m) {
  const h = m.header || {};
  const msg = new Message({
    reddot: !!h.red_dot,
    dup: false,
    noPersist: !!h.no_persist,
    syncOnce: !!h.sync_once,
    setting: Setting.fromUint8(m.setting || 0),
    // message_idstr: a JSON number above 2^53 loses precision.
    messageID: m.message_idstr || String(m.message_id),
    messageSeq: m.message_seq,
    clientMsgNo: m.client_msg_no,
    fromUID: m.from_uid,
    channelID: m.channel_id,
    channelType: m.channel_type,
    timestamp: m.timestamp,
    // REST payloads are the base64 of the plaintext content JSON.
    payload: Uint8Array.from(Buffer.from(m.payload, 'base64')),
  });
  // A streamed reply: what its events came to, as an app keeps it beside the message.
  if (m.stream_data) msg.streamText = Buffer.from(m.stream_data, 'base64').toString('utf8');
  msg.streamEnd = m.end === 1;
  return msg;
}

sdk.config.provider.syncConversationsCallback = async () => {
  const body = await restPost('/conversation/sync', { uid, version: 0, last_msg_seqs: '', msg_count: 20 });
  const list = Array.isArray(body) ? body : (body.conversations || []);
  return list.map((c) => {
    const conv = new Conversation();
    conv.channel = new Channel(c.channel_id, c.channel_type);
    conv.unread = c.unread;
    conv.timestamp = c.timestamp;
    if (c.recents && c.recents.length > 0) conv.lastMessage = toMessage(c.recents[0]);
    return conv;
  });
};

sdk.config.provider.syncMessagesCallback = async (channel, opts) => {
  const body = await restPost('/channel/messagesync', {
    login_uid: uid,
    channel_id: channel.channelID,
    channel_type: channel.channelType,
    start_message_seq: opts.startMessageSeq,
    end_message_seq: opts.endMessageSeq,
    limit: opts.limit,
    pull_mode: opts.pullMode,
  });
  const list = Array.isArray(body) ? body : (body.messages || []);
  return list.map(toMessage);
};

const brief = (m) => ({
  messageID: String(m.messageID),
  messageSeq: m.messageSeq,
  fromUID: m.fromUID,
  channelID: m.channel && m.channel.channelID,
  channelType: m.channel && m.channel.channelType,
  contentType: m.content && m.content.contentType,
  text: m.content && m.content.text,
  clientMsgNo: m.clientMsgNo,
  streamText: m.streamText,
  streamEnd: m.streamEnd,
});

sdk.connectManager.addConnectStatusListener((status, reasonCode) => {
  post({ ev: 'status', status, reasonCode });
});

sdk.chatManager.addMessageListener((m) => {
  // send() also hands the sender's own outgoing message to the listeners; only report received ones.
  if (m.fromUID === uid && m.messageID === undefined) return;
  post({
    ev: 'message',
    messageID: m.messageID === undefined ? null : String(m.messageID),
    messageSeq: m.messageSeq,
    clientMsgNo: m.clientMsgNo,
    fromUID: m.fromUID,
    channelID: m.channel && m.channel.channelID,
    channelType: m.channel && m.channel.channelType,
    contentType: m.content && m.content.contentType,
    text: m.content && m.content.text,
    timestamp: m.timestamp,
    streamNo: m.streamNo || null,
    streamSeq: m.streamSeq,
    streamFlag: m.streamFlag,
    // A stream piece (content type 98): the event data the server put in it, as text.
    streamData: m.content && m.content.contentType === 98 && m.content.data ? Buffer.from(m.content.data).toString('utf8') : null,
  });
});

sdk.chatManager.addMessageStatusListener((ack) => {
  post({
    ev: 'sendack',
    clientSeq: ack.clientSeq,
    messageID: String(ack.messageID),
    messageSeq: ack.messageSeq,
    reasonCode: ack.reasonCode,
  });
});

parentPort.on('message', async (msg) => {
  try {
    if (msg.cmd === 'send') {
      const m = await sdk.chatManager.send(sdk.newMessageText(msg.text), sdk.newChannel(msg.channelID, msg.channelType));
      post({ ev: 'sent', id: msg.id, clientSeq: m.clientSeq, clientMsgNo: m.clientMsgNo });
    } else if (msg.cmd === 'sync') {
      // What an app does after (re)connecting: the SDK's conversation sync, then each conversation's
      // latest messages with the SDK's default options.
      const conversations = await sdk.conversationManager.sync({});
      const out = [];
      for (const c of conversations) {
        const messages = await sdk.chatManager.syncMessages(c.channel, new SyncOptions());
        out.push({
          channelID: c.channel.channelID,
          channelType: c.channel.channelType,
          unread: c.unread,
          lastMessage: c.lastMessage ? brief(c.lastMessage) : null,
          messages: messages.map(brief),
        });
      }
      post({ ev: 'synced', id: msg.id, conversations: out });
    } else if (msg.cmd === 'disconnect') {
      sdk.disconnect();
      post({ ev: 'disconnected' });
    }
  } catch (e) {
    post({ ev: 'error', error: String(e && e.stack || e) });
  }
});

sdk.connect();
