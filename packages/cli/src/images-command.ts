// `sbx images ls|inspect|pull|build|rm|prune`: the server's image store.
// pull and build stream the server's log with a progress line (on a
// terminal: a spinner, the current step and the elapsed time).
import { readFile } from "node:fs/promises";
import { SbxClient, type Image, type ImageInfo } from "sbx";
import { UsageError, bool, list, pairs, parse, str, type Command } from "./args.js";
import { subcommand, table } from "./table.js";

function human(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

const short = (id: string) => id.replace(/^sha256:/, "").slice(0, 12);

/**
 * Shows a build log as it arrives. On a terminal the last line of stderr is
 * a status line (spinner, current step, elapsed seconds), redrawn every
 * 100 ms and cleared before log text is written above it.
 */
export class Progress {
  private readonly tty = process.stderr.isTTY === true;
  private readonly t0 = Date.now();
  private step = "starting";
  private frame = 0;
  private timer: NodeJS.Timeout | undefined;
  private atLineStart = true;

  constructor(private readonly what: string) {
    if (this.tty) this.timer = setInterval(() => this.draw(), 100);
  }

  log = (text: string): void => {
    for (const line of text.split("\n")) {
      const m = /^=> (\[\d+\/\d+\] .*|pulling .*|CACHED .*|image .*)$/.exec(line);
      if (m) this.step = m[1]!.slice(0, 60);
    }
    if (this.tty) process.stderr.write("\r\x1b[K");
    process.stderr.write(text);
    this.atLineStart = text.endsWith("\n");
    this.draw();
  };

  private draw(): void {
    if (!this.tty || !this.atLineStart) return;
    const spin = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"[this.frame++ % 10];
    process.stderr.write(`\r\x1b[K${spin} ${this.what}: ${this.step} (${((Date.now() - this.t0) / 1000).toFixed(1)} s)`);
  }

  done(ok: boolean): void {
    if (this.timer) clearInterval(this.timer);
    if (this.tty) process.stderr.write("\r\x1b[K");
    if (!this.atLineStart) process.stderr.write("\n");
    process.stderr.write(`${ok ? "done" : "failed"}: ${this.what} in ${((Date.now() - this.t0) / 1000).toFixed(1)} s\n`);
  }
}

async function buildWithProgress(image: Image, what: string): Promise<string> {
  const progress = new Progress(what);
  try {
    await image.build(undefined, { onLog: progress.log });
    progress.done(true);
  } catch (err) {
    progress.done(false);
    throw err;
  }
  process.stdout.write(`${image.imageId}\n`);
  return image.imageId!;
}

const LS_USAGE = `usage: sbx images ls [--json]

Lists the images the server holds with their disk usage (blobs plus unpacked
layers, each layer counted once; UNIQUE is what removing only that image
frees).

options:
  --json        one JSON object per line
  -h, --help    show this help
`;

const ls: Command = {
  summary: "list images and their disk usage",
  usage: LS_USAGE,
  async run(args) {
    const p = parse("images ls", LS_USAGE, args, { json: { type: "boolean" } });
    if (!p) return 0;
    if (p.positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(p.positionals[0])}`, "images ls");
    const images = await new SbxClient().images.list();
    if (bool(p, "json")) {
      for (const i of images) process.stdout.write(`${JSON.stringify(i)}\n`);
      return 0;
    }
    const flags = (i: ImageInfo) => [i.inUse ? "in-use" : "", i.buildCached ? "cached-build" : ""].filter(Boolean).join(",") || "-";
    table([
      ["IMAGE ID", "SOURCE", "REF / PARENT", "LAYERS", "SIZE", "UNIQUE", "CREATED", "FLAGS"],
      ...images.map((i) => [
        short(i.imageId),
        i.source,
        i.ref ?? (i.parentId ? `on ${short(i.parentId)}` : "-"),
        String(i.layers.length),
        human(i.diskBytes),
        human(i.uniqueBytes),
        i.created,
        flags(i),
      ]),
    ]);
    return 0;
  },
};

const INSPECT_USAGE = `usage: sbx images inspect IMAGE_ID

Prints an image's config, layers and disk usage as JSON.

options:
  -h, --help    show this help
`;

const inspect: Command = {
  summary: "show one image",
  usage: INSPECT_USAGE,
  async run(args) {
    const p = parse("images inspect", INSPECT_USAGE, args, {});
    if (!p) return 0;
    const [id] = p.positionals;
    if (!id) throw new UsageError("missing IMAGE_ID", "images inspect");
    process.stdout.write(`${JSON.stringify(await new SbxClient().images.inspect(id), null, 2)}\n`);
    return 0;
  },
};

const PULL_USAGE = `usage: sbx images pull REF

Pulls an image (e.g. python:3.13-slim) into the server's store, showing
progress, and prints its id.

options:
  -h, --help    show this help
`;

const pull: Command = {
  summary: "pull an image",
  usage: PULL_USAGE,
  async run(args) {
    const p = parse("images pull", PULL_USAGE, args, {});
    if (!p) return 0;
    const [ref] = p.positionals;
    if (!ref) throw new UsageError("missing REF", "images pull");
    await buildWithProgress(new SbxClient().images.fromRegistry(ref), `pull ${ref}`);
    return 0;
  },
};

const BUILD_USAGE = `usage: sbx images build [--from REF] [-f FILE] [-c INSTRUCTION]... [options]

Builds an image from Dockerfile instructions on a base image, showing the
build log, and prints the image id. The same recipe is built once: a second
build runs no command (unless --force).

options:
  --from REF            base image (default: Debian slim; a FROM line in FILE also sets it)
  -f, --file FILE       instructions, one per line (RUN, ENV, ARG, WORKDIR, USER, SHELL,
                        CMD, ENTRYPOINT, COPY --from=IMAGE); \\ continues a line
  -c, --command TEXT    one instruction (repeatable; after those of FILE)
  -e, --env KEY=VAL     environment variable set in the image (repeatable)
  --force               build even when the recipe is cached
  -h, --help            show this help
`;

const build: Command = {
  summary: "build an image from Dockerfile instructions",
  usage: BUILD_USAGE,
  async run(args) {
    const p = parse("images build", BUILD_USAGE, args, {
      from: { type: "string" },
      file: { type: "string", short: "f" },
      command: { type: "string", short: "c", multiple: true },
      env: { type: "string", short: "e", multiple: true },
      force: { type: "boolean" },
    });
    if (!p) return 0;
    if (p.positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(p.positionals[0])}`, "images build");
    let from = str(p, "from");
    const commands: string[] = [];
    const file = str(p, "file");
    if (file) {
      const text = await readFile(file, "utf8");
      const body: string[] = [];
      for (const line of text.split("\n")) {
        const m = /^\s*FROM\s+(\S+)\s*$/i.exec(line);
        if (m && body.every((l) => l.trim() === "" || l.trim().startsWith("#"))) from ??= m[1]!;
        else body.push(line);
      }
      commands.push(body.join("\n"));
    }
    commands.push(...list(p, "command"));
    if (commands.every((c) => c.trim() === "")) throw new UsageError("no instructions: give -f FILE or -c INSTRUCTION", "images build");
    const client = new SbxClient();
    const base = from ? client.images.fromRegistry(from) : client.images.debianSlim();
    const env = pairs("images build", "env", list(p, "env"));
    const image = base.dockerfileCommands(commands, { ...(env ? { env } : {}), forceBuild: bool(p, "force") });
    await buildWithProgress(image, `build on ${from ?? "debianSlim"}`);
    return 0;
  },
};

const RM_USAGE = `usage: sbx images rm IMAGE_ID...

Removes images (refused while a running sandbox or build uses one), their
build cache entries, and the blobs and layers no other image uses.

options:
  -h, --help    show this help
`;

const rm: Command = {
  summary: "remove images",
  usage: RM_USAGE,
  async run(args) {
    const p = parse("images rm", RM_USAGE, args, {});
    if (!p) return 0;
    if (p.positionals.length === 0) throw new UsageError("missing IMAGE_ID", "images rm");
    const client = new SbxClient();
    for (const id of p.positionals) {
      const r = await client.images.remove(id);
      process.stdout.write(`${id} (freed ${human(r.freedBytes)})\n`);
    }
    return 0;
  },
};

const PRUNE_USAGE = `usage: sbx images prune [--all]

Removes images that no running sandbox or build uses and that no cached build
keeps, then blobs and layers no image uses.

options:
  --all         drop the build cache too (everything unused goes)
  -h, --help    show this help
`;

const prune: Command = {
  summary: "remove unused images",
  usage: PRUNE_USAGE,
  async run(args) {
    const p = parse("images prune", PRUNE_USAGE, args, { all: { type: "boolean" } });
    if (!p) return 0;
    const r = await new SbxClient().images.prune({ all: bool(p, "all") });
    for (const id of r.removedImages) process.stdout.write(`${id}\n`);
    process.stderr.write(`removed ${r.removedImages.length} image(s), freed ${human(r.freedBytes)}\n`);
    return 0;
  },
};

export const images = subcommand("images", "list, pull, build and remove images", { ls, inspect, pull, build, rm, prune });
