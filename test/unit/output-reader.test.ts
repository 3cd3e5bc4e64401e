// The output reader on real files laid out as the agent lays them out: a
// stream ends as soon as the process's end is announced, and news that comes
// between a look at the files and the wait is not slept through. The
// fallback poll is set to a minute, so only wake-ups can end these streams.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { appendFileSync, mkdirSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileOutputReader } from "../../packages/server/src/runtime/index.js";

const SANDBOX = "sb-reader";
const POLL_MS = 60_000;
let dataDir: string;

before(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "sbx-reader-"));
});
after(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

function procDir(execId: string): string {
  const dir = join(dataDir, "sandboxes", SANDBOX, "run", "procs", execId);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "stdout"), "");
  return dir;
}

/** Reads the whole stream, or rejects when it has not ended within `ms`. */
async function readAll(it: AsyncGenerator<Uint8Array>, ms: number): Promise<string> {
  let text = "";
  const reading = (async () => {
    for await (const chunk of it) text += Buffer.from(chunk).toString();
    return text;
  })();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the stream did not end within ${ms} ms (read so far: ${JSON.stringify(text)})`)), ms);
  });
  try {
    return await Promise.race([reading, late]);
  } finally {
    clearTimeout(timer);
  }
}

test("a stream ends when the process's end is announced, before any exit file exists", async () => {
  const dir = procDir("ex-announced");
  const reader = new FileOutputReader(dataDir, POLL_MS);
  let done = false;
  const wakes = new Set<() => void>();
  const onDone = (wake: () => void) => {
    wakes.add(wake);
    return () => void wakes.delete(wake);
  };
  const it = reader.follow(SANDBOX, "ex-announced", "stdout", 0, () => done, new AbortController().signal, { onDone });
  const text = readAll(it, 10_000);
  appendFileSync(join(dir, "stdout"), "last words\n");
  // The reader takes the bytes (the watch reports them) and waits again;
  // then the end comes as the announcement alone, no file changing.
  await new Promise((r) => setTimeout(r, 300));
  done = true;
  for (const w of wakes) w();
  assert.equal(await text, "last words\n");
  assert.equal(wakes.size, 0, "the stream unsubscribed when it ended");
});

test("an exit file written before the stream starts watching is not slept through", async () => {
  // The end comes only as the exit file, while the reader is already past
  // its first look and has no watch yet: the look after the watch sees it.
  const dir = procDir("ex-racing");
  const reader = new FileOutputReader(dataDir, POLL_MS);
  const origin = reader.exitStatus.bind(reader);
  let looks = 0;
  reader.exitStatus = async (sandboxId: string, execId: string) => {
    const status = await origin(sandboxId, execId);
    if (++looks === 1) writeFileSync(join(dir, "exit"), "0 exited\n"); // lands just after the first look
    return status;
  };
  const text = await readAll(reader.follow(SANDBOX, "ex-racing", "stdout", 0, () => false, new AbortController().signal), 10_000);
  assert.equal(text, "");
  assert.ok(looks >= 2, `the reader looked ${looks} time(s)`);
});
