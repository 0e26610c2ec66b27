/** The express application: API, health, metrics. No business logic here. */
import express from "express";
import helmet from "helmet";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { AudienceStore } from "../audiences/audience-store.js";
import type { UserDirectory } from "../auth/users.js";
import type { Renderer } from "../mail/render.js";
import type { MessageService } from "../service/message-service.js";
import type { MessageStore } from "../store/message-store.js";
import { bearerAuth } from "./auth.js";
import { errorHandler, notFound } from "./errors.js";
import { audienceRoutes } from "./routes/audiences.js";
import { messageRoutes } from "./routes/messages.js";
import type { EventStream } from "./stream.js";

export interface AppDeps {
  redis: Redis;
  users: UserDirectory;
  service: MessageService;
  store: MessageStore;
  audiences: AudienceStore;
  renderer: Renderer;
  stream: EventStream;
  logger: Logger;
  trustProxyHops: number;
}

/** JSON bodies of messages are small; an audience as JSON may be large (CSV is streamed, unbounded). */
const JSON_LIMIT = "1mb";
const AUDIENCE_JSON_LIMIT = "50mb";

export function createApp(d: AppDeps): express.Express {
  const app = express();
  app.set("trust proxy", d.trustProxyHops); // a hop count, never `true`
  app.disable("x-powered-by");
  app.use(helmet());

  app.get("/healthz", (_req, res) => void res.json({ ok: true }));
  app.get("/readyz", async (_req, res) => {
    try {
      await d.redis.ping();
      res.json({ ok: true, redis: "up" });
    } catch (e) {
      res.status(503).json({ ok: false, redis: (e as Error).message });
    }
  });

  const api = express.Router();
  api.use(bearerAuth(d.users));
  api.use("/audiences", express.json({ limit: AUDIENCE_JSON_LIMIT, strict: true }), audienceRoutes({ audiences: d.audiences }));
  api.use(express.json({ limit: JSON_LIMIT, strict: true }));
  api.use("/messages", messageRoutes({ service: d.service, store: d.store, renderer: d.renderer }));
  api.get("/stream", d.stream.handler);
  app.use("/api", api);

  app.use(notFound);
  app.use(errorHandler(d.logger));
  return app;
}
