// What every driven peer shares: JSON records out, one JSON command per stdin line
// in, and an exit when the test goes away.
import { createInterface } from "node:readline";

export const out = (record) => process.stdout.write(JSON.stringify(record) + "\n");

export function serve(commands, close) {
  commands.exit = () => {
    close();
    process.exit(0);
  };
  createInterface({ input: process.stdin }).on("line", (line) => {
    const command = JSON.parse(line);
    commands[command.op](command);
  });
  // A test that dies must not leave this process behind.
  process.stdin.on("end", () => process.exit(0));
  setTimeout(() => process.exit(3), 60_000).unref();
}
