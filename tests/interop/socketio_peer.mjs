// The official socket.io-client, driven line by line: each stdin line is a JSON
// command, each stdout line a JSON record of what the client saw.
//   {"op":"connect","url":...,"auth":{...},"options":{...},"refreshable":true}
//   (options: the client's own, default when absent; refreshable: auth is a function
//   handing out the latest auth, which setAuth changes)
//   {"op":"emit","event":..,"args":[..],"tag":..}   {"op":"closeTransport"}
//   {"op":"setAuth","auth":{...}}   {"op":"exit"}
import { io } from "socket.io-client";

import { out, serve } from "./peer_commands.mjs";

let socket;
let latestAuth;

function connect({ url, auth, options, refreshable }) {
  latestAuth = auth;
  socket = io(url, {
    auth: refreshable ? (cb) => cb(latestAuth) : auth,
    reconnectionDelay: 700,
    reconnectionDelayMax: 700,
    randomizationFactor: 0,
    ...options,
  });
  socket.on("connect", () => {
    out({ type: "connect", recovered: socket.recovered === true,
          transport: socket.io.engine.transport.name });
    socket.io.engine.once("upgrade", (transport) =>
      out({ type: "upgrade", transport: transport.name }));
  });
  socket.on("connect_error", (err) => out({ type: "connect_error", message: err.message }));
  // A closed transport's details carry the WebSocket close code and reason.
  socket.on("disconnect", (reason, details) => out({
    type: "disconnect", reason, code: details?.context?.code, closeReason: details?.context?.reason,
  }));
  socket.onAny((event, ...args) => out({ type: "event", event, args }));
}

const commands = {
  connect,
  emit: ({ event, args, tag }) =>
    socket.emit(event, ...args, (answer) => out({ type: "ack", tag, answer })),
  closeTransport: () => socket.io.engine.close(),
  setAuth: ({ auth }) => { latestAuth = auth; },
};

serve(commands, () => socket?.close());
