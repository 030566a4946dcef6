// The official socket.io-client, driven line by line: each stdin line is a JSON
// command, each stdout line a JSON record of what the client saw.
//   {"op":"connect","url":...,"auth":{...}}   {"op":"emit","event":..,"args":[..],"tag":..}
//   {"op":"closeTransport"}   {"op":"exit"}
import { createInterface } from "node:readline";
import { io } from "socket.io-client";

let socket;
const out = (record) => process.stdout.write(JSON.stringify(record) + "\n");

function connect({ url, auth }) {
  socket = io(url, {
    transports: ["websocket"],
    auth,
    reconnectionDelay: 700,
    reconnectionDelayMax: 700,
    randomizationFactor: 0,
  });
  socket.on("connect", () => out({ type: "connect", recovered: socket.recovered === true }));
  socket.on("connect_error", (err) => out({ type: "connect_error", message: err.message }));
  socket.on("disconnect", (reason) => out({ type: "disconnect", reason }));
  socket.onAny((event, ...args) => out({ type: "event", event, args }));
}

const commands = {
  connect,
  emit: ({ event, args, tag }) =>
    socket.emit(event, ...args, (answer) => out({ type: "ack", tag, answer })),
  closeTransport: () => socket.io.engine.close(),
  exit: () => {
    socket?.close();
    process.exit(0);
  },
};

createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line);
  commands[command.op](command);
});
// A test that dies must not leave this process behind.
process.stdin.on("end", () => process.exit(0));
setTimeout(() => process.exit(3), 60_000).unref();
