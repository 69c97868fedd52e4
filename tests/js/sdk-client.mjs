// One official-SDK client, run in its own worker thread: WKSDK.shared() and every manager of the
// SDK are process-wide singletons, and a worker has its own module graph and globals.
// Talks to the test (sdk.test.mjs) over postMessage:
//   in : {cmd: 'send', id, channelID, channelType, text} | {cmd: 'disconnect'}
//   out: {ev: 'status', status, reasonCode} | {ev: 'message', ...} | {ev: 'sendack', ...}
//        | {ev: 'sent', id, clientSeq, clientMsgNo} | {ev: 'log', line} | {ev: 'error', error}
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

const { uid, token, addr } = workerData;
const sdk = WKSDK.shared();
sdk.config.uid = uid;
sdk.config.token = token;
sdk.config.addr = addr;

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
    } else if (msg.cmd === 'disconnect') {
      sdk.disconnect();
      post({ ev: 'disconnected' });
    }
  } catch (e) {
    post({ ev: 'error', error: String(e && e.stack || e) });
  }
});

sdk.connect();
