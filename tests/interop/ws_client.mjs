// The `ws` npm client against the gateway's /ws: subscribe (optionally resuming),
// collect events until `count` arrived, send one malformed frame, print JSON.
// usage: node ws_client.mjs <url> <room> <offset|-> <count>
import WebSocket from "ws";

const [url, room, offset, count] = process.argv.slice(2);
const seen = { welcome: null, subscribed: false, events: [], error: null, close: null };
const socket = new WebSocket(url);
const timer = setTimeout(() => { console.log(JSON.stringify({ timeout: true, ...seen })); process.exit(2); }, 20000);

socket.on("message", (data, isBinary) => {
  const frame = JSON.parse(data.toString());
  if (frame.type === "welcome") {
    seen.welcome = frame;
    const subscribe = { type: "subscribe", room };
    if (offset !== "-") subscribe.offset = offset;
    socket.send(JSON.stringify(subscribe));
  } else if (frame.type === "subscribed") {
    seen.subscribed = true;
    process.stdout.write("SUBSCRIBED\n");
  } else if (frame.type === "error") {
    seen.error = frame.message;
    socket.close(1000);
  } else if (frame.offset !== undefined) {
    seen.events.push(frame);
    if (seen.events.length === Number(count)) socket.send("{oops");
  }
});
socket.on("close", (code, reason) => {
  seen.close = { code, reason: reason.toString() };
  clearTimeout(timer);
  console.log(JSON.stringify(seen));
});
