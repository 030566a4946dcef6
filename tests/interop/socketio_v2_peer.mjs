// socket.io-client 2.x (Engine.IO 3), driven like socketio_peer.mjs: it only
// connects, and records what the application would see.
//   {"op":"connect","url":...,"auth":{...}}   {"op":"exit"}
import io from "socket.io-client-v2";

import { out, serve } from "./peer_commands.mjs";

let socket;

function connect({ url, auth }) {
  socket = io(url, { query: auth, reconnectionDelay: 300, reconnectionDelayMax: 300 });
  socket.on("connect", () => out({ type: "connect" }));
  // 2.x reports a server's refusal of the main namespace as "error", and a
  // transport failure as "connect_error".
  socket.on("error", (reason) => out({ type: "error", message: String(reason) }));
  socket.on("connect_error", (err) => out({ type: "connect_error", message: err.message }));
  socket.on("disconnect", (reason) => out({ type: "disconnect", reason }));
}

serve({ connect }, () => socket?.close());
