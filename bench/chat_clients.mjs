// Dashboard clients for bench/chat_sync.py: N official socket.io-client connections
// that receive every student `message:new`, stamping each on arrival. The message
// text is "<step tag> <insert time, epoch seconds>", written by the inserting SQL.
// argv: url side(n2gateway|seed) clients
// stdin, one JSON command a line; stdout, one JSON answer a line:
//   {"op":"count","tag":T}  -> {"complete": messages of T received by every client}
//   {"op":"report","tag":T} -> {"rows": [[insert ms, latency ms of client 0, ...], ...],
//                               "duplicates", "disconnects"}, and forgets T
import { createInterface } from "node:readline";
import { createRequire } from "node:module";
const require = createRequire(new URL("../tests/interop/package.json", import.meta.url));
const { io } = require("socket.io-client");

const [url, side, clientCount] = process.argv.slice(2);
const count = Number(clientCount);
const steps = new Map(); // tag -> Map(chat id -> {t, latencies: [per client]})
let duplicates = 0;
let disconnects = 0;

function receive(client, message) {
  // The wall clock, the one clock_timestamp() reads: performance.now() is monotonic and
  // drifts from it while the system clock is slewed (seen: 5 ms a second, latencies
  // going negative within a run). Date.now() costs sub-millisecond precision only.
  const now = Date.now();
  const [tag, inserted] = String(message.message).split(" ");
  let step = steps.get(tag);
  if (step === undefined) steps.set(tag, (step = new Map()));
  let row = step.get(message.chat_id);
  if (row === undefined) {
    row = { t: Number(inserted) * 1000, latencies: new Array(count).fill(null), complete: 0 };
    step.set(message.chat_id, row);
  }
  if (row.latencies[client] !== null) {
    duplicates += 1;
    return;
  }
  row.latencies[client] = now - row.t;
  row.complete += 1;
}

function connect(client) {
  // Each is its own connection (forceNew), as separate dashboards would be.
  const socket = io(url, { transports: ["websocket"], auth: { userId: `dashboard${client}` },
                           reconnection: false, forceNew: true });
  socket.on("message:new", (message) => receive(client, message));
  socket.on("disconnect", () => { disconnects += 1; });
  return new Promise((resolve, reject) => {
    socket.on("connect_error", reject);
    socket.on("connect", () => {
      // The seed emits student messages to every socket; n2gateway to room `staff`.
      if (side === "seed") return resolve();
      socket.emit("subscribe", "staff", (answer) =>
        answer?.ok ? resolve() : reject(new Error(JSON.stringify(answer))));
    });
  });
}

const out = (record) => process.stdout.write(JSON.stringify(record) + "\n");
const commands = {
  count: ({ tag }) => {
    let complete = 0;
    for (const row of steps.get(tag)?.values() ?? []) if (row.complete === count) complete += 1;
    out({ complete });
  },
  report: ({ tag }) => {
    const rows = [...(steps.get(tag)?.values() ?? [])].map((row) => [row.t, ...row.latencies]);
    steps.delete(tag);
    out({ rows, duplicates, disconnects });
  },
  exit: () => process.exit(0),
};

try {
  await Promise.all(Array.from({ length: count }, (_, client) => connect(client)));
} catch (error) {
  out({ error: String(error?.message ?? error) });
  process.exit(1);
}
out({ ready: count });
createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line);
  commands[command.op](command);
});
process.stdin.on("end", () => process.exit(0));
