// An image's USER ("name", "uid", "name:group", "uid:gid"…) resolved to ids
// against the image's own /etc/passwd and /etc/group, as Docker does it
// (moby's user.GetExecUser): a name must exist in passwd; a numeric uid need
// not (its gid is then 0); a group given by name must exist in group.
//
// The files are read from the layer dirs directly (top layer first, honouring
// overlayfs whiteouts and opaque dirs), never through a symlink: layer
// content is untrusted, and a symlink /etc/passwd → /etc/shadow would
// otherwise make the server read (and quote in errors) a host file.

import { execFileSync } from "node:child_process";
import { constants as fsc } from "node:fs";
import * as fsp from "node:fs/promises";
import * as path from "node:path";
import type { ImageUser } from "../core/ports.js";
import { ImageConfigError } from "./errors.js";

const MAX_DB_BYTES = 4 << 20;
const MAX_ID = 0xffff_fffe;

type Found = { kind: "file"; data: string } | { kind: "absent" };

async function lstatOrNull(p: string) {
  try {
    return await fsp.lstat(p);
  } catch {
    return null;
  }
}

function isOpaque(dir: string): boolean {
  try {
    return execFileSync("getfattr", ["--only-values", "--absolute-names", "-n", "trusted.overlay.opaque", dir], {
      stdio: ["ignore", "pipe", "ignore"],
    }).toString() === "y";
  } catch {
    return false;
  }
}

/** Looks for `rel` (e.g. "etc/passwd") in one layer: the file, absent-for-good (whiteout/opaque), or not here. */
async function lookInLayer(layer: string, rel: string): Promise<Found | { kind: "next" }> {
  const parts = rel.split("/");
  let cur = layer;
  let opaque = false; // a dir on the way hides lower layers
  for (let i = 0; i < parts.length; i++) {
    cur = path.join(cur, parts[i]!);
    const st = await lstatOrNull(cur);
    if (!st) return { kind: opaque ? "absent" : "next" };
    if (st.isCharacterDevice() && st.rdev === 0) return { kind: "absent" }; // whiteout
    const last = i === parts.length - 1;
    if (!last) {
      if (!st.isDirectory()) return { kind: "absent" }; // a symlink or file shadows the dir
      if (!opaque && isOpaque(cur)) opaque = true;
      continue;
    }
    if (!st.isFile()) return { kind: "absent" };
    if (st.size > MAX_DB_BYTES) throw new ImageConfigError(`/${rel} is larger than ${MAX_DB_BYTES} bytes`);
    const fh = await fsp.open(cur, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
    try {
      const again = await fh.stat();
      if (!again.isFile()) return { kind: "absent" };
      return { kind: "file", data: (await fh.readFile({ encoding: "utf8" })).slice(0, MAX_DB_BYTES) };
    } finally {
      await fh.close();
    }
  }
  return { kind: "next" };
}

/** The content of `rel` in the merged view of `layers` (lowest first), or null. */
export async function readLayeredFile(layers: string[], rel: string): Promise<string | null> {
  for (let i = layers.length - 1; i >= 0; i--) {
    const r = await lookInLayer(layers[i]!, rel);
    if (r.kind === "file") return r.data;
    if (r.kind === "absent") return null;
  }
  return null;
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

function parseDb(text: string | null): string[][] {
  if (!text) return [];
  return text
    .split("\n")
    .filter((l) => l.trim() !== "" && !l.startsWith("#"))
    .map((l) => l.split(":"));
}

const isNum = (s: string) => /^\d{1,10}$/.test(s) && Number(s) <= MAX_ID;

/**
 * Resolves a USER value against the merged /etc/passwd and /etc/group of
 * `layers`. `what` names the image in errors. Throws ImageConfigError.
 */
export async function resolveUser(layers: string[], user: string, what: string): Promise<ImageUser> {
  const [u, g] = user.includes(":") ? [user.slice(0, user.indexOf(":")), user.slice(user.indexOf(":") + 1)] : [user, undefined];
  if (u === "" || g === "") throw new ImageConfigError(`${what}: USER ${JSON.stringify(user)} is malformed (expected user[:group])`);
  const passwd: PasswdEntry[] = parseDb(await readLayeredFile(layers, "etc/passwd"))
    .filter((f) => f.length >= 7 && isNum(f[2]!) && isNum(f[3]!))
    .map((f) => ({ name: f[0]!, uid: Number(f[2]), gid: Number(f[3]), home: f[5]! }));
  let entry = passwd.find((p) => p.name === u);
  if (!entry && isNum(u)) entry = passwd.find((p) => p.uid === Number(u));
  if (!entry && !isNum(u)) {
    throw new ImageConfigError(`${what}: USER ${JSON.stringify(u)} is not in the image's /etc/passwd (create it with useradd, or give a numeric uid)`);
  }
  const uid = entry ? entry.uid : Number(u);
  let gid = entry ? entry.gid : 0;
  if (g !== undefined) {
    if (isNum(g)) gid = Number(g);
    else {
      const grp = parseDb(await readLayeredFile(layers, "etc/group")).find((f) => f.length >= 3 && f[0] === g && isNum(f[2]!));
      if (!grp) throw new ImageConfigError(`${what}: group ${JSON.stringify(g)} of USER ${JSON.stringify(user)} is not in the image's /etc/group`);
      gid = Number(grp[2]);
    }
  }
  if (uid > 65535 || gid > 65535) {
    throw new ImageConfigError(`${what}: USER ${JSON.stringify(user)} maps to ${uid}:${gid}; sandboxes have ids 0..65535 only`);
  }
  return { uid, gid, home: entry?.home || "/" };
}
