// `count` socket.io-client connections in one room, in this one Node process; the
// Socket.IO broadcast benchmark runs several of these side by side. With the transport
// `ws`, `count` plain WebSocket clients of n2gateway's JSON protocol at <url> (its /ws)
// instead, the same counting.
// usage: node broadcast_clients.mjs <url> <first id> <count> <room> [websocket|polling|ws]
//        [keep-alive|close]
// Prints READY <connected> once every client is connected and subscribed. Each
// "bench" event carries {t: publish time in ms since the epoch, i, step}; receipts
// are kept per step as a 1-ms latency histogram. On stdin, `report <step>` prints
// that step's JSON line {step, received, buckets, disconnected, requests (so far)} and
// forgets it: what arrives for a step after its report is not counted anywhere.
import { createRequire } from "node:module";
import { createInterface } from "node:readline";
import { Agent } from "node:http";

const require = createRequire(new URL("../tests/interop/package.json", import.meta.url));
const { io } = require("socket.io-client");
const WebSocket = require("ws");

const [url, first, count, room, transport = "websocket", connections = "close"] =
  process.argv.slice(2);
// socket.io-client on Node opens a TCP connection per long-polling request (its
// XMLHttpRequest has no agent); a browser keeps its connection to the server alive.
const agent = transport === "polling" && connections === "keep-alive"
  ? new Agent({ keepAlive: true }) : false;
const CONCURRENT = 50;
const steps = new Map(); // step -> {received, buckets: Map<ms, n>}
const reported = new Set();
let disconnected = 0;
let requests = 0; // HTTP requests of the long-polling transport: GETs and POSTs

function receive(payload) {
  if (reported.has(payload.step)) return;
  let step = steps.get(payload.step);
  if (!step) steps.set(payload.step, step = { received: 0, buckets: new Map() });
  const ms = Math.max(0, Math.round(Date.now() - payload.t));
  step.received += 1;
  step.buckets.set(ms, (step.buckets.get(ms) ?? 0) + 1);
}

// n2gateway's /ws: welcome, then subscribe and wait for subscribed.
function openJsonWebSocket(id) {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`${url}?userId=bench${id}`, { perMessageDeflate: false });
    socket.on("message", (data) => {
      const frame = JSON.parse(data);
      if (frame.type === "bench") receive(frame.payload);
      else if (frame.type === "welcome") socket.send(JSON.stringify({ type: "subscribe", room }));
      else if (frame.type === "subscribed") resolve(socket);
    });
    socket.on("close", () => { disconnected += 1; });
    socket.on("error", reject);
  });
}

function openSocketIO(id) {
  return new Promise((resolve, reject) => {
    const socket = io(url, { transports: [transport], auth: { userId: `bench${id}` },
      reconnection: false, forceNew: true, agent });
    socket.on("bench", receive);
    socket.on("disconnect", () => { disconnected += 1; });
    socket.on("connect_error", reject);
    socket.io.on("open", () => {
      socket.io.engine.transport.on("poll", () => { requests += 1; });
      socket.io.engine.transport.on("drain", () => { requests += 1; });
    });
    socket.on("connect", () => socket.emit("subscribe", room, (answer) =>
      answer?.ok ? resolve(socket) : reject(new Error(JSON.stringify(answer)))));
  });
}

const open = transport === "ws" ? openJsonWebSocket : openSocketIO;
const ids = Array.from({ length: Number(count) }, (_, k) => Number(first) + k);
let connected = 0;
for (let k = 0; k < ids.length; k += CONCURRENT) {
  connected += (await Promise.all(ids.slice(k, k + CONCURRENT).map(open))).length;
}
process.stdout.write(`READY ${connected}\n`);

createInterface({ input: process.stdin }).on("line", (line) => {
  const [command, arg] = line.trim().split(/\s+/);
  if (command !== "report") return;
  const id = Number(arg);
  const step = steps.get(id) ?? { received: 0, buckets: new Map() };
  steps.delete(id);
  reported.add(id);
  process.stdout.write(JSON.stringify({ step: id, received: step.received,
    buckets: Object.fromEntries(step.buckets), disconnected, requests }) + "\n");
}).on("close", () => process.exit(0));
