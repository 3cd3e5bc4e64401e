// Object ids: a type prefix and 20 random base-32 characters (100 bits), so
// ids are unguessable and never reused.
import { randomBytes } from "node:crypto";

const ALPHABET = "abcdefghijklmnopqrstuvwxyz234567";

export type IdPrefix = "sb" | "ap" | "ex" | "tk" | "vo" | "ws";

export function newId(prefix: IdPrefix): string {
  const bytes = randomBytes(20);
  let s = "";
  for (const b of bytes) s += ALPHABET[b & 31];
  return `${prefix}-${s}`;
}
