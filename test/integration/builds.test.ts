// Image builds against the real server: build sandboxes made by the real
// runtime, layers captured from their upper dirs, the build cache, streamed
// build logs, the image config honoured by sandboxes, and the image store API.
// python:3.13-slim comes from a local registry mirror (the Debian base).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { ConflictError, InvalidError, NotFoundError, type App, type Image, type SbxClient } from "sbx";
import { pushPythonSlim } from "../support/images.js";
import { startRegistry, type TestRegistry } from "../support/registry.js";
import { startTestServer, type TestServer } from "../support/server.js";

let registry: TestRegistry;
let server: TestServer;
let client: SbxClient;
let app: App;

before(async () => {
  registry = await startRegistry();
  await pushPythonSlim(registry.host);
  server = await startTestServer({ mirrors: { "docker.io": registry.url } });
  client = server.client();
  app = await client.apps.fromName("it-builds", { createIfMissing: true });
});

after(async () => {
  await server?.stop();
  await registry?.stop();
});

const base = () => client.images.fromRegistry("python:3.13-slim");

/** Number of build sandboxes the server has started so far (from its log). */
const buildSandboxes = () => (server.log().match(/: sandbox bld-[a-z0-9]+ started/g) ?? []).length;

async function runIn(image: Image, argv: string[]): Promise<string> {
  const sb = await client.sandboxes.create(app, image);
  try {
    const p = await sb.exec(argv);
    const [out, err, code] = await Promise.all([p.stdout.readText(), p.stderr.readText(), p.wait()]);
    assert.equal(code, 0, `${argv.join(" ")} failed: ${err}`);
    return out;
  } finally {
    await sb.terminate();
  }
}

describe("builds", { timeout: 600_000 }, () => {
  test("a sandbox from a built image sees its ENV, WORKDIR and USER", async () => {
    const image = base().dockerfileCommands(
      [
        "RUN useradd --create-home --uid 1234 --user-group app",
        "ENV GREETING=hello SPACED=\"a b\"",
        "WORKDIR /srv/app",
        "RUN echo built > marker && chown app:app /srv/app",
        "USER app",
        "RUN id -u > whoami-at-build && echo $HOME > home-at-build",
      ],
      { env: { FROM_PARAM: "p1" } },
    );
    const out = await runIn(image, ["sh", "-c", 'echo "$GREETING|$SPACED|$FROM_PARAM"; pwd; id -u; id -g; id -G; echo $HOME; cat marker whoami-at-build home-at-build; touch mine && stat -c %u mine']);
    assert.equal(out, "hello|a b|p1\n/srv/app\n1234\n1234\n1234\n/home/app\nbuilt\n1234\n/home/app\n1234\n");
    assert.match(image.imageId ?? "", /^sha256:[a-f0-9]{64}$/);
    // The entrypoint runs as USER too, in WORKDIR.
    const sb = await client.sandboxes.create(app, image, { command: ["sh", "-c", "id -un; pwd"] });
    assert.equal(await sb.wait(), 0);
    assert.equal(await sb.stdout.readText(), "app\n/srv/app\n");
  });

  test("the same recipe twice runs no command; forceBuild runs it again", async () => {
    const recipe = ["RUN date +%s%N > /stamp && echo ran-the-$((20 + 22))-step"];
    const logs: string[] = [];
    const first = await base().dockerfileCommands(recipe).build(app, { onLog: (t) => logs.push(t) });
    assert.match(logs.join(""), /ran-the-42-step/);
    const stamp1 = await runIn(client.images.fromId(first.imageId!), ["cat", "/stamp"]);

    const before = buildSandboxes();
    const log2: string[] = [];
    const second = await base().dockerfileCommands(recipe).build(app, { onLog: (t) => log2.push(t) });
    assert.equal(second.imageId, first.imageId);
    assert.match(log2.join(""), /CACHED/);
    assert.doesNotMatch(log2.join(""), /ran-the-42-step/);
    assert.equal(buildSandboxes(), before, "a cached build started a build sandbox");
    // Lazily through sandboxes.create as well: still the first build's file.
    assert.equal(await runIn(base().dockerfileCommands(recipe), ["cat", "/stamp"]), stamp1);

    const forced = await base().dockerfileCommands(recipe, { forceBuild: true }).build(app);
    assert.notEqual(forced.imageId, first.imageId);
    assert.equal(buildSandboxes(), before + 1);
    const stamp3 = await runIn(client.images.fromId(forced.imageId!), ["cat", "/stamp"]);
    assert.notEqual(stamp3, stamp1);
  });

  test("concurrent builds of one recipe build once", async () => {
    const recipe = [`RUN echo concurrent-${Date.now()} > /c && sleep 1`];
    const before = buildSandboxes();
    const built = await Promise.all([1, 2, 3].map(() => base().dockerfileCommands(recipe).build(app)));
    assert.equal(new Set(built.map((i) => i.imageId)).size, 1);
    assert.equal(buildSandboxes(), before + 1);
  });

  test("the build log streams while the build runs", async () => {
    const seen: { text: string; at: number }[] = [];
    const t0 = Date.now();
    await base()
      .dockerfileCommands([`RUN echo first-line-${t0}; sleep 3; echo second-line`])
      .build(app, { onLog: (text) => seen.push({ text, at: Date.now() }) });
    const done = Date.now();
    const first = seen.find((s) => s.text.includes(`first-line-${t0}`));
    assert.ok(first, seen.map((s) => s.text).join(""));
    assert.ok(done - first.at >= 2000, `the first line arrived only ${done - first.at} ms before the build ended`);
    assert.match(seen.map((s) => s.text).join(""), /=> \[1\/1\] RUN echo first-line/);
  });

  test("sandboxes.create with onLog shows the build log before the sandbox starts", async () => {
    const seen: string[] = [];
    const marker = `create-log-${Date.now()}`;
    const image = base().dockerfileCommands([`RUN echo ${marker}-$((6 * 7))`]);
    const sb = await client.sandboxes.create(app, image, { onLog: (t) => seen.push(t) });
    try {
      assert.match(seen.join(""), new RegExp(`${marker}-42`));
      assert.match(image.imageId ?? "", /^sha256:/);
    } finally {
      await sb.terminate();
    }
  });

  test("a failing RUN raises InvalidError naming the instruction, exit code and output", async () => {
    const image = base().dockerfileCommands(["RUN echo preparing", "RUN echo some output here; echo oops >&2; exit 3"]);
    await assert.rejects(client.sandboxes.create(app, image), (e: unknown) => {
      assert.ok(e instanceof InvalidError, String(e));
      assert.match(e.message, /RUN echo some output here; echo oops >&2; exit 3 exited with code 3/);
      assert.match(e.message, /some output here\noops/);
      assert.equal(e.details?.exitCode, 3);
      assert.equal(e.details?.instruction, "RUN echo some output here; echo oops >&2; exit 3");
      return true;
    });
  });

  test("unsupported instructions are refused before anything is built", async () => {
    const before = buildSandboxes();
    const cases: [string, RegExp][] = [
      ["ADD https://example.com/x.tar.gz /x", /ADD is not supported/],
      ["COPY ./src /app", /COPY without --from is not supported: there is no build context/],
      ["FROM debian", /FROM is not supported/],
      ["EXPOSE 80", /EXPOSE is not supported/],
      ["RUN --mount=type=cache,target=/x true", /RUN --mount=type=cache,target=\/x is not supported/],
      ["FROBNICATE now", /unknown instruction FROBNICATE/],
    ];
    for (const [bad, reason] of cases) {
      // The bad instruction comes after a good RUN on a built parent: nothing may run at all.
      const image = base().dockerfileCommands(["RUN echo parent-step"]).dockerfileCommands(["RUN touch /x", bad]);
      await assert.rejects(image.build(app), (e: unknown) => {
        assert.ok(e instanceof InvalidError, String(e));
        assert.ok(e.message.includes(JSON.stringify(bad)), e.message);
        assert.match(e.message, reason);
        return true;
      });
    }
    assert.equal(buildSandboxes(), before);
  });

  test("COPY --from, ARG, SHELL, CMD and ENTRYPOINT", async () => {
    const image = base().dockerfileCommands([
      "ARG WHERE=/opt/copied",
      "COPY --from=python:3.13-slim /etc/os-release ${WHERE}/",
      'SHELL ["/bin/bash", "-c"]',
      "RUN [[ -f $WHERE/os-release ]] && echo bash-ok > /shell-check",
      'ENTRYPOINT ["cat"]',
      'CMD ["/shell-check"]',
    ]);
    const out = await runIn(image, ["sh", "-c", "grep -c VERSION_CODENAME=bookworm /opt/copied/os-release; cat /shell-check; echo ${WHERE:-unset}"]);
    assert.equal(out, "1\nbash-ok\nunset\n");
    const info = await client.images.inspect(image.imageId!);
    assert.deepEqual(info.config.entrypoint, ["cat"]);
    assert.deepEqual(info.config.cmd, ["/shell-check"]);
  });

  test("deletions and replaced directories are captured as whiteouts and opaque dirs", async () => {
    const parent = base().dockerfileCommands(["RUN mkdir -p /data/keep /data/replace && touch /data/keep/a /data/keep/b /data/replace/old"]);
    const child = parent.dockerfileCommands(["RUN rm /data/keep/a && rm -r /data/replace && mkdir /data/replace && touch /data/replace/new"]);
    const out = await runIn(child, ["sh", "-c", "ls /data/keep; echo --; ls /data/replace"]);
    assert.equal(out, "b\n--\nnew\n");
    const info = await client.images.inspect(child.imageId!);
    assert.equal(info.layers.length, 3); // base, parent's layer, child's layer
  });
});

describe("the image store", { timeout: 600_000 }, () => {
  test("ls shows usage; rm refuses an image in use; prune keeps cached builds unless all", async () => {
    const image = await base().dockerfileCommands([`RUN head -c 300000 /dev/urandom > /blob-${Date.now()}`]).build(app);
    const id = image.imageId!;
    const listed = (await client.images.list()).find((i) => i.imageId === id);
    assert.ok(listed);
    assert.equal(listed.source, "build");
    assert.ok(listed.buildCached);
    assert.ok(listed.layers.at(-1)!.diskBytes >= 300000, JSON.stringify(listed.layers));
    assert.ok(listed.layers[0]!.sharedWith >= 1);

    const sb = await client.sandboxes.create(app, client.images.fromId(id));
    assert.equal((await client.images.inspect(id)).inUse, true);
    await assert.rejects(client.images.remove(id), ConflictError);
    const pruned = await client.images.prune({ all: true });
    assert.ok(!pruned.removedImages.includes(id), "prune removed an image a sandbox uses");
    assert.equal(await runIn(client.images.fromId(id), ["sh", "-c", "ls / | grep -c blob-"]), "1\n");
    await sb.terminate({ wait: true });

    // Not in use any more: prune without `all` keeps it (a cached build) …
    const kept = await base().dockerfileCommands([`RUN echo kept-${Date.now()} > /k`]).build(app);
    const p1 = await client.images.prune();
    assert.ok(!p1.removedImages.includes(kept.imageId!));
    // … rm removes it and what only it used.
    const r = await client.images.remove(kept.imageId!);
    assert.deepEqual(r.removedImages, [kept.imageId]);
    assert.ok(r.freedBytes > 0);
    await assert.rejects(client.images.inspect(kept.imageId!), NotFoundError);
    // The recipe is built again (the cache entry went with the image).
    const rebuilt = await base().dockerfileCommands([`RUN echo kept-again > /k`]).build(app);
    assert.ok(rebuilt.imageId);
  });
});
