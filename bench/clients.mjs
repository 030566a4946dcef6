// Bench load generator: `count` WebSocket clients of the gateway in one Node process.
// usage: node clients.mjs <ws base url> <first id> <count> <room|-> 
// Prints READY once every client is connected (and subscribed to <room>), then on
// SIGTERM prints one JSON line: frames received, a 1-ms latency histogram
// (publish-to-receive from payload.t) and how many arrived out of order.
import { createRequire } from "module";

// `ws` is the one pinned for the interop tests (tests/interop/package.json).
const WebSocket = createRequire(new URL("../tests/interop/package.json", import.meta.url))("ws");

const [base, first, count, room] = process.argv.slice(2);
const histogram = new Uint32Array(60001);
let received = 0, disordered = 0, ready = 0, closed = 0;
const CONCURRENT = 200;

function open(id) {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`${base}?userId=${id}`, { perMessageDeflate: false });
    let last = -1;
    socket.on("message", (data) => {
      const frame = JSON.parse(data);
      if (frame.type === "welcome") {
        if (room === "-") resolve(socket);
        else socket.send(JSON.stringify({ type: "subscribe", room }));
      } else if (frame.type === "subscribed") {
        resolve(socket);
      } else if (frame.type === "bench") {
        received += 1;
        const ms = Math.max(0, Math.round(Date.now() - frame.payload.t));
        histogram[Math.min(ms, 60000)] += 1;
        if (frame.payload.i <= last) disordered += 1;
        last = frame.payload.i;
      }
    });
    socket.on("close", () => { closed += 1; });
    socket.on("error", reject);
  });
}

const ids = Array.from({ length: Number(count) }, (_, k) => Number(first) + k);
const sockets = [];
for (let k = 0; k < ids.length; k += CONCURRENT) {
  sockets.push(...await Promise.all(ids.slice(k, k + CONCURRENT).map(open)));
}
ready = sockets.length;
process.stdout.write(`READY ${ready}\n`);

process.on("SIGTERM", () => {
  const buckets = {};
  histogram.forEach((n, ms) => { if (n) buckets[ms] = n; });
  process.stdout.write(JSON.stringify({ ready, received, disordered, closed, buckets }) + "\n");
  process.exit(0);
});
setInterval(() => {}, 1 << 30);
