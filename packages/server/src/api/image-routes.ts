// The image routes: builds (and pulls) with their streamed logs, the image
// list with disk usage, removal and prune. Appended to ROUTES in routes.ts.
import { Type } from "@sinclair/typebox";
import {
  HEADER_STREAM_OFFSET,
  ImageBuild,
  ImageBuildParams,
  ImageBuildRequest,
  ImageInfo,
  ImageList,
  ImageParams,
  ImagePruneRequest,
  ImageRemoveResult,
  LIMITS,
  StreamQuery,
  WaitQuery,
} from "sbx/wire";
import { imageIdsIn, toImageSource, type BuildJob } from "../core/index.js";
import type { RouteDef } from "./routes.js";
import { abortOnClose } from "./request-signal.js";
import { sendStream } from "./stream-reply.js";
import { scopeOf } from "./scope.js";


function presentBuild(j: BuildJob): ImageBuild {
  return { buildId: j.buildId, state: j.state, imageId: j.imageId, error: j.error, createdAt: j.createdAt, finishedAt: j.finishedAt };
}

type B = { buildId: string };
type I = { imageId: string };

export const IMAGE_ROUTES: RouteDef[] = [
  {
    method: "POST",
    url: "/v1/images/builds",
    summary:
      "Starts materializing an image (pull, or build of dockerfile instructions, once per recipe: a cached recipe runs nothing) and returns the build at once; invalid instructions are refused here.",
    auth: true,
    schema: { body: ImageBuildRequest, response: ImageBuild, status: 201 },
    handler: async (s, req, reply) => {
      const body = req.body as ImageBuildRequest;
      const scope = scopeOf(req);
      const source = toImageSource(body.image, (refs) => s.secrets.resolveEnv(scope, refs), scope.workspaceId);
      const job = s.builds.start(scope, source, imageIdsIn(body.image));
      void reply.status(201);
      return presentBuild(job);
    },
  },
  {
    method: "GET",
    url: "/v1/images/builds/:buildId",
    summary: "One build.",
    auth: true,
    schema: { params: ImageBuildParams, response: ImageBuild },
    handler: async (s, req) => presentBuild(s.builds.job(scopeOf(req), (req.params as B).buildId)),
  },
  {
    method: "GET",
    url: "/v1/images/builds/:buildId/wait",
    summary: "Waits until the build has finished or timeoutMs (≤ 50 000) passed; state is still running then.",
    auth: true,
    schema: { params: ImageBuildParams, querystring: WaitQuery, response: ImageBuild },
    handler: async (s, req, reply) => {
      const q = req.query as WaitQuery;
      return presentBuild(await s.builds.waitJob(scopeOf(req), (req.params as B).buildId, q.timeoutMs ?? LIMITS.maxWaitMs, abortOnClose(reply)));
    },
  },
  {
    method: "GET",
    url: "/v1/images/builds/:buildId/log",
    summary: "The build's log (progress and the output of its steps) from a byte offset, held open while the build runs; ends when it has finished and every byte was sent.",
    auth: true,
    schema: { params: ImageBuildParams, querystring: StreamQuery, rawResponse: true, response: Type.String({ format: "binary" }) },
    handler: async (s, req, reply) => {
      const offset = (req.query as { offset?: number }).offset ?? 0;
      const signal = abortOnClose(reply);
      const chunks = s.builds.followLog(scopeOf(req), (req.params as B).buildId, offset, signal);
      await sendStream(reply, chunks, {
        headers: { "content-type": "application/octet-stream", "cache-control": "no-store", [HEADER_STREAM_OFFSET]: String(offset) },
        signal,
      });
    },
  },
  {
    method: "GET",
    url: "/v1/images",
    summary: "The images of the caller's workspace (pulled, built or run by it), with the disk usage of each image and layer.",
    auth: true,
    schema: { response: ImageList },
    handler: async (s, req) => ({ images: await s.builds.list(scopeOf(req)) }),
  },
  {
    method: "GET",
    url: "/v1/images/:imageId",
    summary: "One image, with its config, layers and disk usage.",
    auth: true,
    schema: { params: ImageParams, response: ImageInfo },
    handler: async (s, req) => s.builds.inspect(scopeOf(req), (req.params as I).imageId),
  },
  {
    method: "DELETE",
    url: "/v1/images/:imageId",
    summary:
      "Removes an image from the workspace (409 while a running sandbox or build uses it); once no workspace has it, it leaves the disk with its build cache entries and the blobs and layers no other image uses.",
    auth: true,
    schema: { params: ImageParams, response: ImageRemoveResult },
    handler: async (s, req) => s.builds.remove(scopeOf(req), (req.params as I).imageId),
  },
  {
    method: "POST",
    url: "/v1/images/prune",
    summary:
      "Removes the workspace's images no running sandbox or build uses and that are not kept by the build cache (all: those too); images no workspace has leave the disk, then unused blobs and layers.",
    auth: true,
    schema: { body: ImagePruneRequest, response: ImageRemoveResult },
    handler: async (s, req) => s.builds.prune(scopeOf(req), (req.body as ImagePruneRequest).all ?? false),
  },
];
