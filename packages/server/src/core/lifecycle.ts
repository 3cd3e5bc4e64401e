// The sandbox state machine. Every change of state goes through
// `assertTransition`, so an impossible step (exec on a finished sandbox,
// starting twice) fails loudly with both states named.
import { FailedPreconditionError } from "./errors.js";
import type { SandboxStateName } from "./ports.js";

/** state → the states it may move to. */
export const TRANSITIONS: Readonly<Record<SandboxStateName, readonly SandboxStateName[]>> = {
  created: ["scheduled", "finished"],
  scheduled: ["started", "finished"],
  started: ["finished"],
  finished: [],
};

export function canTransition(from: SandboxStateName, to: SandboxStateName): boolean {
  return TRANSITIONS[from].includes(to);
}

export function assertTransition(sandboxId: string, from: SandboxStateName, to: SandboxStateName): void {
  if (!canTransition(from, to)) {
    throw new FailedPreconditionError(`sandbox ${sandboxId} cannot go from ${from} to ${to}`);
  }
}
