// Turns (packages/server/src/runtime/turns.ts), the line creates and
// destroys wait in: at most `width` at once, first come first served, a
// waiting task whose caller gives up never runs, and a failed one frees its turn.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Turns } from "../../packages/server/src/runtime/turns.js";

/** A create that ends when told to. */
function held() {
  let end!: () => void;
  let fail!: (e: Error) => void;
  const done = new Promise<void>((resolve, reject) => {
    end = resolve;
    fail = reject;
  });
  return { done, end, fail };
}

const tick = () => new Promise((r) => setImmediate(r));

test("no more than width run at once, and the waiting start in the order they came", async () => {
  const gate = new Turns(2);
  const started: number[] = [];
  const creates = Array.from({ length: 5 }, () => held());
  const runs = creates.map((c, i) =>
    gate.run(async () => {
      started.push(i);
      await c.done;
      return i;
    }),
  );
  await tick();
  assert.deepEqual(started, [0, 1]);
  assert.deepEqual(gate.load, { running: 2, waiting: 3 });
  creates[1]!.end();
  await tick();
  assert.deepEqual(started, [0, 1, 2]);
  creates[0]!.fail(new Error("runc failed"));
  await assert.rejects(runs[0]!, /runc failed/);
  await tick();
  assert.deepEqual(started, [0, 1, 2, 3], "a failed create frees its turn");
  for (const c of creates) c.end();
  assert.deepEqual(await Promise.all(runs.slice(1)), [1, 2, 3, 4]);
  assert.deepEqual(gate.load, { running: 0, waiting: 0 });
});

test("a waiting create whose caller gives up leaves the line and never runs", async () => {
  const gate = new Turns(1);
  const first = held();
  const running = gate.run(() => first.done);
  const ac = new AbortController();
  let ran = false;
  const waiting = gate.run(async () => void (ran = true), ac.signal);
  const third = gate.run(async (waitedMs) => waitedMs);
  await tick();
  assert.deepEqual(gate.load, { running: 1, waiting: 2 });
  ac.abort(new Error("the client went away"));
  await assert.rejects(waiting, /the client went away/);
  assert.deepEqual(gate.load, { running: 1, waiting: 1 });
  await new Promise((r) => setTimeout(r, 30));
  first.end();
  await running;
  assert.ok((await third) >= 25, "a task is told how long it waited for its turn");
  assert.equal(ran, false);
  // Already aborted: not even queued.
  await assert.rejects(gate.run(async () => "no", AbortSignal.abort(new Error("too late"))), /too late/);
  assert.throws(() => new Turns(0), /turns must be a whole number ≥ 1/);
});
