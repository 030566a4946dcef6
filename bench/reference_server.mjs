// The reference: a plain Node socket.io server doing the same job as n2gateway in
// the broadcast benchmark. Clients emit("subscribe", room, ack); a publisher emits
// ("publish", room, event, payload) and the server broadcasts it to the room.
import { createRequire } from "node:module";
const require = createRequire(new URL("../tests/interop/package.json", import.meta.url));
const { Server } = require("socket.io");

const io = new Server(Number(process.argv[2]), { transports: ["websocket"] });
io.on("connection", (socket) => {
  socket.on("subscribe", (room, ack) => {
    socket.join(room);
    ack?.({ ok: true });
  });
  socket.on("publish", (room, event, payload) => io.to(room).emit(event, payload));
});
process.stdout.write("listening\n");
