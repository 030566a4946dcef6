// The official socket.io server playing TPOS's realtime service: namespace
// /chatomni behind an auth middleware, a "join" handler, scripted emits.
//   node tpos_server.mjs [pingIntervalMs] [pingTimeoutMs]
// Prints JSON lines on stdout: {"listening": port} first, then what happens.
// Reads commands on stdin, one per line, each answered {"done": "<command>"}:
//   emit <room> <event> <json>   emit an event to a room of /chatomni
//   reject <token>               refuse this token from now on (connect error)
//   disconnect                   server-side disconnect of every /chatomni socket
//   close                        close every client's underlying connection
//   quit
// A token that is a JWT past its exp is refused, as TPOS refuses an expired one.
// Secrets are never printed: the auth checks are reported as booleans.
import { createServer } from "node:http";
import { createInterface } from "node:readline";
import { Server } from "socket.io";

const [pingInterval = 25000, pingTimeout = 20000] = process.argv.slice(2).map(Number);
const rejected = new Set();
const say = (message) => process.stdout.write(JSON.stringify(message) + "\n");

const httpServer = createServer();
const io = new Server(httpServer, { transports: ["websocket"], pingInterval, pingTimeout });
const nsp = io.of("/chatomni");

io.engine.on("connection", (raw) => {
  say({ transport: { query: raw.request.url.split("?")[1], origin: raw.request.headers.origin } });
});

function expired(token) {
  try {
    const { exp } = JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString());
    return typeof exp === "number" && exp * 1000 <= Date.now();
  } catch {
    return false;  // not a JWT
  }
}

nsp.use((socket, next) => {
  const { token, room } = socket.handshake.auth;
  const header = socket.handshake.headers.authorization;
  const tooOld = Boolean(token) && expired(token);
  if (!token || rejected.has(token) || tooOld || header !== `Bearer ${token}`) {
    const why = tooOld ? { expired: true } : {};
    say({ refused: { room, headerMatches: header === `Bearer ${token}`, ...why } });
    return next(new Error("unauthorized"));
  }
  next();
});

nsp.on("connection", (socket) => {
  const { token, room } = socket.handshake.auth;
  say({ connected: { room, queryRoom: socket.handshake.query.room } });
  socket.on("join", (data) => {
    socket.join(data.room);
    say({ joined: { room: data.room, tokenMatches: data.token === token } });
  });
  socket.on("disconnect", (reason) => say({ disconnected: reason }));
});

function run(line) {
  const [command, ...rest] = line.split(" ");
  switch (command) {
    case "emit": {
      const [room, event, ...json] = rest;
      nsp.to(room).emit(event, JSON.parse(json.join(" ")));
      break;
    }
    case "reject":
      rejected.add(rest[0]);
      break;
    case "disconnect":
      nsp.disconnectSockets(false);
      break;
    case "close":
      nsp.disconnectSockets(true);
      break;
    case "quit":
      io.close();
      process.exit(0);
  }
  say({ done: command });
}

createInterface({ input: process.stdin }).on("line", (line) => line && run(line));
process.stdin.on("end", () => process.exit(0));
httpServer.listen(0, "127.0.0.1", () => say({ listening: httpServer.address().port }));
