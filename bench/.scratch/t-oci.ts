import { OciBaseline, nsenterOnce } from "../baselines/oci.ts";
import { ensureBaseRootfsTar } from "../../packages/server/src/images/base-image.ts";
const tar = await ensureBaseRootfsTar();
let t = performance.now();
const b = await OciBaseline.prepare("/tmp/sbx-bench-try", tar);
console.log("prepare", performance.now() - t, b.crunWrapped);
try {
  for (const rt of ["runc", "crun"] as const) { const bun = await b.bundle("echo", ["echo", "hi"], rt); for (let i = 0; i < 5; i++) console.log(rt, await b.runOnce(rt, bun, "hi\n")); }
  const s = await b.bundle("sleep", ["sleep", "infinity"]);
  const c = await b.startDetached("runc", s);
  console.log(c);
  for (let i = 0; i < 5; i++) console.log("exec", await b.exec("runc", c.id, ["true"]));
  for (let i = 0; i < 5; i++) console.log("nsenter", await nsenterOnce(c.pid, ["true"]));
} finally { await b.cleanup(); }
