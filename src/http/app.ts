/** The express application: API, links, health. No business logic here. */
import { join } from "node:path";
import express from "express";
import { rateLimit } from "express-rate-limit";
import helmet from "helmet";
import type { Registry } from "prom-client";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { AudienceStore } from "../audiences/audience-store.js";
import type { OidcSignIn } from "../auth/oidc-sign-in.js";
import type { DirectoryAudiences } from "../service/directory-audiences.js";
import type { UserDirectory } from "../auth/users.js";
import { DomainError } from "../domain/errors.js";
import type { Message } from "../domain/message.js";
import type { LinkService } from "../links/link-service.js";
import type { MessageSummary } from "../notify/notification-data.js";
import { templatesDir, type Renderer } from "../mail/render.js";
import type { MessageService } from "../service/message-service.js";
import type { MessageStore } from "../store/message-store.js";
import { verifyAudit } from "../audit/verify.js";
import type { Queue } from "bullmq";
import { bearerAuth, currentUser } from "./auth.js";
import { bearerOrSession, loadSession, sessionCookie, sessionOf } from "./dashboard/guards.js";
import { queueBoard, QUEUE_BOARD_PATH } from "./dashboard/queue-board.js";
import { dashboardRoutes, errorPage } from "./dashboard/routes.js";
import type { SessionStore } from "./dashboard/sessions.js";
import type { DashboardViews } from "./dashboard/views.js";
import { errorHandler, notFound } from "./errors.js";
import { audienceRoutes } from "./routes/audiences.js";
import { linkRoutes, type PageRenderer } from "./routes/links.js";
import { messageRoutes } from "./routes/messages.js";
import { reportRateLimited, reportRoutes } from "./routes/report.js";
import { createReportPages } from "./report-pages.js";
import type { ReportLinks } from "../waves/report-link.js";
import type { EventStream } from "./stream.js";

export interface AppDeps {
  redis: Redis;
  users: UserDirectory;
  service: MessageService;
  store: MessageStore;
  audiences: AudienceStore;
  /** Directory audiences (defining, resolving); without it a `directoryGroup` body is a 422. */
  directoryAudiences?: DirectoryAudiences;
  renderer: Renderer;
  stream: EventStream;
  logger: Logger;
  trustProxyHops: number;
  links: LinkService;
  pages: PageRenderer;
  summary(m: Message): Promise<MessageSummary>;
  publicUrl: string;
  /** Requests per minute per client address (after `trust proxy`), for /api and for /links. */
  rateLimits: { api: number; links: number };
  metrics: Registry;
  sessions: SessionStore;
  views: DashboardViews;
  /** The queues shown on the dashboard and the board. */
  queues: Queue[];
  /** The development outbox, or null when mail goes to SMTP. */
  outboxDir: string | null;
  clock: { now(): number };
  /** AUDIT_SECRET: /api/audit/verify checks the seals with it. */
  auditSecret: string;
  /** OpenID Connect sign-in (/auth/login, /auth/callback), when configured. */
  signOn: OidcSignIn | null;
  /** A staged send's "report a problem" links (waves/report-link.ts): /report/:token. */
  reportLinks: ReportLinks;
}

/** JSON bodies of messages are small. Audiences (JSON or CSV) are streamed by their route, unbounded in bytes. */
const JSON_LIMIT = "1mb";

/**
 * Refuses a JSON body that is not valid UTF-8 instead of letting the parser turn the bad bytes into
 * U+FFFD: a subject with replacement characters would otherwise be approved and sent as such.
 * (body-parser passes our error on with its status: 400.)
 */
function strictUtf8(_req: unknown, _res: unknown, buf: Buffer, encoding: string): void {
  if (!/^utf-?8$/i.test(encoding)) return; // another declared charset was decoded as declared
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(buf);
  } catch {
    throw new DomainError("invalid_input", "the request body is not valid UTF-8");
  }
}

export function createApp(d: AppDeps): express.Express {
  const app = express();
  app.set("trust proxy", d.trustProxyHops); // a hop count, never `true`
  app.disable("x-powered-by");
  app.use(helmet());
  app.use("/static", express.static(join(templatesDir(), "static"), { index: false, maxAge: "1h", fallthrough: false }));

  // Resolves the dashboard's session cookie (if any) once, for the pages, /api and the links.
  app.use(loadSession(d.sessions));

  app.get("/healthz", (_req, res) => void res.json({ ok: true }));
  // Unauthenticated (spec): counts and latencies only, no subjects, addresses or ids.
  app.get("/metrics", async (_req, res) => {
    try {
      res.type(d.metrics.contentType).send(await d.metrics.metrics());
    } catch (e) {
      res.status(503).type("text").send(`metrics unavailable: ${(e as Error).message}\n`); // Redis unreachable
    }
  });
  app.get("/readyz", async (_req, res) => {
    try {
      await d.redis.ping();
      res.json({ ok: true, redis: "up" });
    } catch (e) {
      res.status(503).json({ ok: false, redis: (e as Error).message });
    }
  });

  // Per client address: `trust proxy` is a hop count, so X-Forwarded-For cannot be forged past the
  // proxies we know of. Counted in each process's memory: with N API processes a client gets up
  // to N times the limit, which is fine for its purpose (stopping a runaway script or a guesser).
  const limiter = (perMinute: number, refuse: express.RequestHandler) =>
    rateLimit({ windowMs: 60_000, limit: perMinute, standardHeaders: "draft-8", legacyHeaders: false, handler: refuse });

  app.use(
    "/links",
    limiter(d.rateLimits.links, (_req, res) => {
      res.status(429).set("Cache-Control", "no-store").type("html");
      res.send(d.pages.result({ tone: "warning", heading: "Too many requests", detail: "Wait a minute and open the link again. Nothing was changed.", message: null, dashboardUrl: d.publicUrl + "/" }));
    }),
    linkRoutes({ links: d.links, pages: d.pages, users: d.users, publicUrl: d.publicUrl, summary: d.summary, domains: (name) => d.audiences.domains(name) }),
  );

  // A staged send's "Report a problem" link (SPEC "Staged sends"): a recipient's page, rate-limited like the approver links.
  const reportPages = createReportPages();
  app.use(
    "/report",
    limiter(d.rateLimits.links, reportRateLimited(reportPages)),
    reportRoutes({
      links: d.reportLinks,
      sink: d.store,
      pages: reportPages,
      publicUrl: d.publicUrl,
      logger: { info: (m) => d.logger.info(m), warn: (m) => d.logger.warn(m) },
      subject: async (id) => {
        const m = await d.store.get(id);
        return m ? { subject: m.subject } : null;
      },
    }),
  );

  const api = express.Router();
  api.use(limiter(d.rateLimits.api, (_req, _res, next) => next(new DomainError("rate_limited", "too many requests: wait a minute"))));
  api.use(bearerOrSession(bearerAuth(d.users), d.publicUrl));
  api.use("/audiences", audienceRoutes({ audiences: d.audiences, ...(d.directoryAudiences ? { directoryAudiences: d.directoryAudiences } : {}) }));
  api.use(express.json({ limit: JSON_LIMIT, strict: true, verify: strictUtf8 }));
  api.use("/messages", messageRoutes({ service: d.service, store: d.store, renderer: d.renderer }));
  api.get(
    "/stream",
    d.stream.handler(async (req) => {
      if (req.headers.authorization === undefined && sessionOf(req)) return (await d.sessions.get(sessionCookie(req))) !== null;
      return d.users.byAddress(currentUser(req).email) !== null;
    }),
  );
  api.get("/audit/verify", async (req, res) => {
    if (!currentUser(req).roles.includes("admin")) throw new DomainError("forbidden", "only an admin may verify the audit trail");
    res.json(await verifyAudit(d.redis, { secret: d.auditSecret }));
  });
  app.use("/api", api);

  // Sign-in answers a token guesser as the links do.
  app.post("/signin", limiter(d.rateLimits.links, (req, res) => errorPage(d, req, res, 429, "Too many attempts", "Wait a minute and try again.")));
  // Each /auth/login writes a transaction to Redis and each callback may call the provider: limited like the links.
  app.use("/auth", limiter(d.rateLimits.links, (req, res) => errorPage(d, req, res, 429, "Too many attempts", "Wait a minute and try again.")));
  app.use(
    QUEUE_BOARD_PATH,
    queueBoard(d.queues, d.publicUrl, (status, heading, detail) => (req, res) => errorPage(d, req, res, status, heading, detail)),
  );
  // Pages cost more than API calls (a history page reads up to 2,000 messages): the API's limit applies.
  app.use(
    rateLimit({
      windowMs: 60_000,
      limit: d.rateLimits.api,
      standardHeaders: "draft-8",
      legacyHeaders: false,
      skip: (req) => !/^\/(messages|history|fragments|outbox|compose|mine)?(\/|$)/.test(req.path),
      handler: (req, res) => errorPage(d, req, res, 429, "Too many requests", "Wait a minute and reload."),
    }),
  );
  app.use(
    dashboardRoutes({
      sessions: d.sessions,
      service: d.service,
      store: d.store,
      redis: d.redis,
      views: d.views,
      queues: d.queues,
      outboxDir: d.outboxDir,
      publicUrl: d.publicUrl,
      clock: d.clock,
      logger: d.logger,
      renderer: d.renderer,
      audiences: d.audiences,
      signOn: d.signOn,
    }),
  );

  // An unknown address typed into a browser gets a page; the API and scripts get the JSON error.
  app.use((req, res, next) => {
    if (req.path.startsWith("/api/") || (req.method !== "GET" && req.method !== "HEAD") || !req.accepts("html")) return next();
    errorPage(d, req, res, 404, "Not found", "There is no page at this address.");
  });
  app.use(notFound);
  app.use(errorHandler(d.logger));
  return app;
}
