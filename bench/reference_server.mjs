// The reference of the Socket.IO broadcast benchmark: a plain Node socket.io server
// doing n2gateway's job. Clients emit("subscribe", room, ack); the events come from
// the server itself, as n2gateway's come from its in-process bench publisher, so
// neither side pays a publish hop from a client.
// usage: node reference_server.mjs <port> <room> [websocket|polling]
// Prints "listening". On stdin, `run <step> <rate> <seconds>` broadcasts "bench"
// events {t, i, step} to the room at <rate>/s (the same 10-ms tick and catch-up as
// bench/publisher.py) and prints "done <step> <published>" at the end.
import { createRequire } from "node:module";
import { createInterface } from "node:readline";

const require = createRequire(new URL("../tests/interop/package.json", import.meta.url));
const { Server } = require("socket.io");

const [port, room, transport = "websocket"] = process.argv.slice(2);
const TICK_MS = 10;
const io = new Server(Number(port), { transports: [transport] });
io.on("connection", (socket) => {
  socket.on("subscribe", (name, ack) => {
    socket.join(name);
    ack?.({ ok: true });
  });
});

function run(step, rate, seconds) {
  const total = Math.floor(rate * seconds);
  const started = performance.now();
  let published = 0;
  const timer = setInterval(() => {
    const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * rate) + 1);
    while (published < due) {
      io.to(room).emit("bench", { t: Date.now(), i: published, step });
      published += 1;
    }
    if (published >= total) {
      clearInterval(timer);
      process.stdout.write(`done ${step} ${published}\n`);
    }
  }, TICK_MS);
}

createInterface({ input: process.stdin }).on("line", (line) => {
  const [command, ...args] = line.trim().split(/\s+/);
  if (command === "run") run(...args.map(Number));
}).on("close", () => process.exit(0));
process.stdout.write("listening\n");
