// `sbx secrets create`'s argument handling: KEY=VALUE and --from-env, with
// errors that never echo a value.
import { test } from "node:test";
import assert from "node:assert/strict";
import { UsageError } from "../../packages/cli/src/args.js";
import { secretEntries } from "../../packages/cli/src/secrets.js";

test("KEY=VALUE arguments and --from-env keys make the secret", () => {
  assert.deepEqual(secretEntries("secrets create", ["A=1", "B=x=y", "C="], ["HOME_X"], { HOME_X: "from env" }), {
    A: "1",
    B: "x=y",
    C: "",
    HOME_X: "from env",
  });
});

test("errors name the argument or key, never a value", () => {
  const value = "hunter2-very-secret";
  for (const [items, fromEnv] of [[[value], []], [[`=${value}`], []], [[], ["UNSET_KEY"]], [[], []]] as [string[], string[]][]) {
    assert.throws(
      () => secretEntries("secrets create", items, fromEnv, {}),
      (err: unknown) => err instanceof UsageError && !err.message.includes(value),
    );
  }
  assert.throws(() => secretEntries("secrets create", [], ["UNSET_KEY"], {}), /UNSET_KEY is not set/);
});
