// Drives the official Phoenix JS client against a Phoenix server and prints
// one JSON object with what it saw.
//   node phoenix_join.mjs <socket endpoint, e.g. ws://127.0.0.1:4000/socket> <token> <rejected token> <expired page id>
// The server is expected to push "pages:new_message" to users:1 once joined,
// and to refuse the expired page's channel, and a multiple_pages join naming it.
import { Socket } from "phoenix";
import WebSocket from "ws";

const [endpoint, token, rejectedToken, expiredPage] = process.argv.slice(2);
const seen = { joined: null, event: null, heartbeatReply: false, rejected: null, expired: null,
               multipleRefused: null };

const socket = new Socket(endpoint, {
  transport: WebSocket, // Node 20 has no global WebSocket
  heartbeatIntervalMs: 200,
  reconnectAfterMs: () => 60_000,
  rejoinAfterMs: () => 60_000,
});

function finish(code) {
  process.stdout.write(JSON.stringify(seen) + "\n");
  socket.disconnect(() => process.exit(code));
  setTimeout(() => process.exit(code), 500);
}

function check() {
  if (seen.joined && seen.event && seen.heartbeatReply && seen.rejected && seen.expired && seen.multipleRefused) {
    finish(0);
  }
}

socket.onMessage(({ topic, event, payload }) => {
  if (topic === "phoenix" && event === "phx_reply" && payload.status === "ok") {
    seen.heartbeatReply = true;
    check();
  }
});
socket.connect();

const users = socket.channel("users:1", { accessToken: token, userId: "1", platform: "web" });
users.on("pages:new_message", (payload) => {
  seen.event = payload;
  check();
});
users.join().receive("ok", (response) => {
  seen.joined = response;
  check();
});

const refused = socket.channel("users:2", { accessToken: rejectedToken, userId: "2", platform: "web" });
refused.join().receive("error", (response) => {
  seen.rejected = response;
  refused.leave();
  check();
});

const expired = socket.channel(`pages:${expiredPage}`, { accessToken: token, userId: "1", platform: "web" });
expired.join().receive("error", (response) => {
  seen.expired = response;
  expired.leave();
  check();
});

const multiple = socket.channel("multiple_pages:1", {
  accessToken: token, userId: "1", platform: "web", pageIds: ["101", expiredPage],
});
multiple.join().receive("error", (response) => {
  seen.multipleRefused = response;
  multiple.leave();
  check();
});

setTimeout(() => finish(1), 10_000);
