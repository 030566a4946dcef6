// The seed's design (seeds/002), for comparison: one LISTEN client, one SELECT per
// NOTIFY through a pool, emitted with a socket.io server. Prints one JSON line per
// message it is about to emit, with the time, for bench/chat_sync.py.
const { Client, Pool } = require('pg');
const { Server } = require('socket.io');

const connectionString = process.env.DATABASE_URL;
const pool = new Pool({ connectionString });
const io = new Server(Number(process.env.PORT || 0));
const client = new Client({ connectionString });

async function handleNewMessage(payload) {
  const { chat_id } = JSON.parse(payload);
  const result = await pool.query(
    `SELECT c.*, json_build_object('user_id', u.user_id, 'full_name', u.full_name,
            'avatar_url', u.avatar_url) AS users
     FROM chats c LEFT JOIN users u ON u.user_id = c.user_id WHERE c.chat_id = $1`,
    [chat_id]);
  if (result.rows.length === 0) return;
  const message = result.rows[0];
  process.stdout.write(JSON.stringify({ id: message.chat_id, message: message.message,
                                        t: Date.now() / 1000 }) + '\n');
  io.to(`user:${message.user_id}`).emit('message:new', message);
  if (message.sender === 'student') io.emit('message:new', message);
  io.emit('users:updated');
}

(async () => {
  await client.connect();
  await client.query('LISTEN chat_messages');
  client.on('notification', (msg) => {
    handleNewMessage(msg.payload).catch((e) => console.error(e.message));
  });
  process.stdout.write(JSON.stringify({ ready: true }) + '\n');
})();
