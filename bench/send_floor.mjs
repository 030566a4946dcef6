// The Node sender of bench/send_floor.py: accepts <receivers> connections, then for
// each `run <rate> <seconds>` line on stdin writes the frame to every connection
// <rate> times a second and prints `done <events>`.
// usage: node send_floor.mjs <receivers> <frame, in hex>
import { createServer } from "node:net";
import { createInterface } from "node:readline";

const receivers = Number(process.argv[2]);
const FRAME = Buffer.from(process.argv[3], "hex");
const connections = [];
const lines = createInterface({ input: process.stdin });
let accepted;
const ready = new Promise((resolve) => { accepted = resolve; });

const server = createServer((socket) => {
  socket.setNoDelay(true);
  socket.on("error", () => {});
  connections.push(socket);
  if (connections.length === receivers) accepted();
});
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});

function run(rate, seconds) {
  return new Promise((resolve) => {
    const events = Math.max(1, Math.floor(rate * seconds));
    const started = performance.now();
    let sent = 0;
    const tick = () => {
      for (const socket of connections) socket.write(FRAME);
      sent += 1;
      if (sent === events) {
        resolve(events);
      } else {
        setTimeout(tick, Math.max(0, started + (sent * 1000) / rate - performance.now()));
      }
    };
    tick();
  });
}

lines.on("line", async (line) => {
  const [, rate, seconds] = line.trim().split(/\s+/);
  await ready;
  process.stdout.write(`done ${await run(Number(rate), Number(seconds))}\n`);
}).on("close", () => process.exit(0));
