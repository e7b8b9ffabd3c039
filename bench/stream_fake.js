// A provider that streams as fast as it can: 100 SSE events per answer, each event written in an I/O turn of
// its own (no pause, but never all in one write: the path under test sees events arrive apart, as from a real
// provider). Every event is built once at start-up, so the fake spends its time writing, not building.
//
//     node bench/stream_fake.js PORT [EVENTS]
//
// POST /v1/chat/completions  OpenAI chat chunks, then a usage chunk (stream_options.include_usage) and [DONE]
// POST /v1/messages          Anthropic's message_start, a text block of EVENTS deltas, message_delta, message_stop
// Anything else is a 404. The request body is read and not parsed: every answer is the same.
"use strict";

const net = require("net");

const port = Number(process.argv[2]);
const events = Number(process.argv[3] || 100);

function sse(data, name) {
  return Buffer.from((name ? `event: ${name}\n` : "") + `data: ${JSON.stringify(data)}\n\n`);
}

function chatEvents(count) {
  const base = { id: "chatcmpl-bench", object: "chat.completion.chunk", created: 1767225600, model: "gpt-6-luna" };
  const out = [sse({ ...base, choices: [{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }] })];
  for (let i = 0; i < count; i++) {
    out.push(sse({ ...base, choices: [{ index: 0, delta: { content: `w${i} ` }, finish_reason: null }] }));
  }
  out.push(sse({ ...base, choices: [{ index: 0, delta: {}, finish_reason: "stop" }] }));
  out.push(sse({ ...base, choices: [], usage: { prompt_tokens: 230, completion_tokens: count, total_tokens: 230 + count } }));
  out.push(Buffer.from("data: [DONE]\n\n"));
  return out;
}

function messagesEvents(count) {
  const out = [sse({ type: "message_start", message: {
    id: "msg_bench", type: "message", role: "assistant", model: "claude-sonnet-5-5", content: [],
    stop_reason: null, stop_sequence: null, usage: { input_tokens: 230, output_tokens: 1 } } }, "message_start")];
  out.push(sse({ type: "content_block_start", index: 0, content_block: { type: "text", text: "" } },
    "content_block_start"));
  for (let i = 0; i < count; i++) {
    out.push(sse({ type: "content_block_delta", index: 0, delta: { type: "text_delta", text: `w${i} ` } },
      "content_block_delta"));
  }
  out.push(sse({ type: "content_block_stop", index: 0 }, "content_block_stop"));
  out.push(sse({ type: "message_delta", delta: { stop_reason: "end_turn", stop_sequence: null },
    usage: { output_tokens: count } }, "message_delta"));
  out.push(sse({ type: "message_stop" }, "message_stop"));
  return out;
}

// Each event as an HTTP/1.1 chunk, framed once here; the answer's head is one buffer too.
function framed(chunks) {
  return chunks.map((c) => Buffer.concat([Buffer.from(c.length.toString(16) + "\r\n"), c, Buffer.from("\r\n")]));
}
const HEAD = Buffer.from("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n" +
  "transfer-encoding: chunked\r\n\r\n");
const LAST = Buffer.from("0\r\n\r\n");
const NOT_FOUND = Buffer.from("HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 21\r\n\r\n" +
  '{"error":"not found"}');
const ANSWERS = { "/v1/chat/completions": framed(chatEvents(events)), "/v1/messages": framed(messagesEvents(events)) };

// HTTP/1.1 by hand on the socket (keep-alive, content-length bodies, one request at a time per connection): the
// http module's per-write work made the fake, not the path under test, the limit.
function answer(socket, chunks, done) {
  socket.write(HEAD);
  let next = 0;
  const step = () => {
    if (socket.destroyed) return;
    if (next < chunks.length) { socket.write(chunks[next++]); setImmediate(step); }
    else { socket.write(LAST); done(); }
  };
  setImmediate(step);
}

const server = net.createServer((socket) => {
  socket.setNoDelay(true);
  let buffered = Buffer.alloc(0);
  let busy = false;
  const serve = () => {
    if (busy) return;
    const end = buffered.indexOf("\r\n\r\n");
    if (end < 0) return;
    const head = buffered.subarray(0, end).toString("latin1");
    const length = Number((/\r\ncontent-length:\s*(\d+)/i.exec(head) || [0, 0])[1]);
    if (buffered.length < end + 4 + length) return;
    buffered = buffered.subarray(end + 4 + length);
    const [method, target] = head.split(" ", 2);
    const chunks = method === "POST" ? ANSWERS[target.split("?")[0]] : undefined;
    if (!chunks) { socket.write(NOT_FOUND); serve(); return; }
    busy = true;
    answer(socket, chunks, () => { busy = false; serve(); });
  };
  socket.on("data", (data) => { buffered = Buffer.concat([buffered, data]); serve(); });
  socket.on("error", () => socket.destroy());
});
server.listen({ host: "127.0.0.1", port, backlog: 4096 }, () => console.log(`stream fake listening on ${port}`));
