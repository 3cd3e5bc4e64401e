// The bare pipe every stream figure is compared with:
// `head -c N /dev/zero | cat > /dev/null` in one shell, timed from spawn to exit.
import { run } from "../proc.js";

export async function barePipe(bytes: number): Promise<number> {
  const r = await run(["sh", "-c", `head -c ${bytes} /dev/zero | cat > /dev/null`], { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`bare pipe exited ${r.code}: ${r.stderr.trim()}`);
  return r.ms;
}
