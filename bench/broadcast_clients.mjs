// N socket.io-client connections in one room; publishes at rising rates and reports,
// per rate, deliveries/s and the p99 publish-to-delivery latency as JSON lines.
// argv: kind (n2gateway|reference) url clients rates(comma) seconds
import { createRequire } from "node:module";
const require = createRequire(new URL("../tests/interop/package.json", import.meta.url));
const { io } = require("socket.io-client");

const [kind, url, clientCount, rateList, seconds] = process.argv.slice(2);
const ROOM = "bench";
let latencies = [];

function open(auth) {
  return io(url, { transports: ["websocket"], auth, reconnection: false, forceNew: true });
}

const clients = [];
for (let i = 0; i < Number(clientCount); i++) {
  const socket = open({ userId: `bench${i}` });
  socket.on("tick", (payload) => latencies.push(Date.now() - payload.t));
  clients.push(new Promise((resolve) => socket.on("connect", () =>
    socket.emit("subscribe", ROOM, () => resolve(socket)))));
}
await Promise.all(clients);
const publisher = kind === "reference" ? open({ userId: "publisher" }) : null;

async function publish(n) {
  const payload = { t: Date.now(), n };
  if (publisher) publisher.emit("publish", ROOM, "tick", payload);
  else await fetch(url + "/api/publish", { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ rooms: [ROOM], event: "tick", payload }) });
}

for (const rate of rateList.split(",").map(Number)) {
  latencies = [];
  const total = Math.round(rate * Number(seconds));
  const started = Date.now();
  for (let n = 0; n < total; n++) {
    const due = started + (n * 1000) / rate;
    const wait = due - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    publish(n);
  }
  await new Promise((r) => setTimeout(r, 1000)); // let the tail arrive
  const elapsed = (Date.now() - started) / 1000 - 1;
  latencies.sort((a, b) => a - b);
  const expected = total * Number(clientCount);
  const p99 = latencies.length ? latencies[Math.floor(latencies.length * 0.99) - 1] ?? latencies.at(-1) : null;
  process.stdout.write(JSON.stringify({ kind, rate, expected, delivered: latencies.length,
    deliveriesPerSecond: Math.round(latencies.length / elapsed), p99 }) + "\n");
}
process.exit(0);
