// `count` socket.io-client connections in one room, in this one Node process; the
// Socket.IO broadcast benchmark runs several of these side by side.
// usage: node broadcast_clients.mjs <url> <first id> <count> <room>
// Prints READY <connected> once every client is connected and subscribed. Each
// "bench" event carries {t: publish time in ms since the epoch, i, step}; receipts
// are kept per step as a 1-ms latency histogram. On stdin, `report <step>` prints
// that step's JSON line {step, received, buckets, disconnected} and forgets it: what
// arrives for a step after its report is not counted anywhere.
import { createRequire } from "node:module";
import { createInterface } from "node:readline";

const require = createRequire(new URL("../tests/interop/package.json", import.meta.url));
const { io } = require("socket.io-client");

const [url, first, count, room] = process.argv.slice(2);
const CONCURRENT = 50;
const steps = new Map(); // step -> {received, buckets: Map<ms, n>}
const reported = new Set();
let disconnected = 0;

function receive(payload) {
  if (reported.has(payload.step)) return;
  let step = steps.get(payload.step);
  if (!step) steps.set(payload.step, step = { received: 0, buckets: new Map() });
  const ms = Math.max(0, Math.round(Date.now() - payload.t));
  step.received += 1;
  step.buckets.set(ms, (step.buckets.get(ms) ?? 0) + 1);
}

function open(id) {
  return new Promise((resolve, reject) => {
    const socket = io(url, { transports: ["websocket"], auth: { userId: `bench${id}` },
      reconnection: false, forceNew: true });
    socket.on("bench", receive);
    socket.on("disconnect", () => { disconnected += 1; });
    socket.on("connect_error", reject);
    socket.on("connect", () => socket.emit("subscribe", room, (answer) =>
      answer?.ok ? resolve(socket) : reject(new Error(JSON.stringify(answer)))));
  });
}

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
    buckets: Object.fromEntries(step.buckets), disconnected }) + "\n");
}).on("close", () => process.exit(0));
