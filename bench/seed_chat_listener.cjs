// The seed's design (seeds/002 `ChatDbListener`), for bench/chat_sync.py to compare
// against: one `pg` LISTEN client; on each NOTIFY one SELECT of the row joined with
// its user through a `pg` Pool (default size, 10); then socket.io emits to
// `user:<id>`, to everyone for a student, and `users:updated` to everyone. The seed's
// per-message console.log is left out (it would only slow the seed down).
// env: DATABASE_URL, PORT. Prints {"ready": true} once LISTEN is in effect.
const { Client, Pool } = require('pg');
const { Server } = require('socket.io');

const connectionString = process.env.DATABASE_URL;
const pool = new Pool({ connectionString });
const io = new Server(Number(process.env.PORT));
const client = new Client({ connectionString });

async function handleNewMessage(payload) {
  const messageData = JSON.parse(payload);
  const result = await pool.query(
    `SELECT c.*, json_build_object('user_id', u.user_id, 'full_name', u.full_name,
            'avatar_url', u.avatar_url) AS users
     FROM chats c LEFT JOIN users u ON u.user_id = c.user_id WHERE c.chat_id = $1`,
    [messageData.chat_id]);
  if (result.rows.length === 0) return;
  const fullMessage = result.rows[0];
  io.to(`user:${fullMessage.user_id}`).emit('message:new', fullMessage);
  if (fullMessage.sender === 'student') io.emit('message:new', fullMessage);
  io.emit('users:updated');
}

function handleMessageRead(payload) {
  const readData = JSON.parse(payload);
  io.to(`user:${readData.user_id}`).emit('message:read', {
    messageId: readData.chat_id,
    read_by_student: readData.read_by_student,
    read_by_teacher: readData.read_by_teacher,
  });
  io.emit('users:updated');
}

(async () => {
  await client.connect();
  await client.query('LISTEN chat_messages');
  await client.query('LISTEN chat_messages_read');
  client.on('notification', async (msg) => {
    try {
      if (msg.channel === 'chat_messages') await handleNewMessage(msg.payload);
      else if (msg.channel === 'chat_messages_read') handleMessageRead(msg.payload);
    } catch (error) {
      console.error(error.message);
    }
  });
  process.stdout.write(JSON.stringify({ ready: true }) + '\n');
})();
