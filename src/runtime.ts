/**
 * Builds a running Airlock from a Config: connections, stores, service, transport, HTTP server,
 * workers. Entry points (src/main.ts, src/api-main.ts, workers/main.ts) choose which parts run.
 * Development conveniences (spawned Redis, demo users, outbox, a link secret kept under ./data) live here and
 * only here, behind `!config.production`.
 */
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { createServer, type Server } from "node:http";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { Redis } from "ioredis";
import { pino, type Logger } from "pino";
import { AudienceStore } from "./audiences/audience-store.js";
import { AuditSealer } from "./audit/sealer.js";
import { AuditLog, auditedSettings } from "./audit/audit-log.js";
import { AIRLOCK_ACTOR } from "./domain/message.js";
import { UserDirectory, seedDemoUsers, watchUsersFile } from "./auth/users.js";
import { OidcClient } from "./auth/oidc-client.js";
import { OidcPeople, OidcPeopleMirror } from "./auth/oidc-people.js";
import { OidcSignIn } from "./auth/oidc-sign-in.js";
import type { Config } from "./config.js";
import { createApp } from "./http/app.js";
import { answerMalformedRequests } from "./http/errors.js";
import { createMetrics } from "./metrics/metrics.js";
import { createPageRenderer } from "./http/pages.js";
import { SessionStore } from "./http/dashboard/sessions.js";
import { createDashboardViews } from "./http/dashboard/views.js";
import { LinkService } from "./links/link-service.js";
import { LinkTokens } from "./links/link-tokens.js";
import { createNotificationRenderer } from "./mail/notifications.js";
import { ensureNotifierGroup, NotificationDispatcher } from "./notify/dispatcher.js";
import { messageSummary } from "./notify/summary.js";
import { EventStream } from "./http/stream.js";
import { startRedisProcess, type RedisProcess } from "./infra/redis-process.js";
import { createRedisClient } from "./infra/redis-connection.js";
import { createRenderer, templatesDir, type Renderer } from "./mail/render.js";
import { createOutboxTransport, createSmtpTransport, type MailTransport } from "./mail/transport.js";
import { BullScheduler } from "./queues/scheduler.js";
import { BulkPace } from "./store/bulk-pace.js";
import { AofRewriteKeeper } from "./infra/aof-rewrite.js";
import { MessageService } from "./service/message-service.js";
import { DirectoryAudiences } from "./service/directory-audiences.js";
import { LdapDirectory } from "./directory/ldap-directory.js";
import { directorySettings } from "./directory/settings.js";
import { RedisTestSendLimit, testMailThrough } from "./service/test-sends.js";
import { MessageStore, SweepReads } from "./store/message-store.js";
import { systemClock, type Clock } from "./domain/clock.js";
import { FollowUps } from "./service/follow-ups.js";
import { FanoutProcessor } from "../workers/fanout.js";
import { migrateDeliveryStates } from "./store/migrate-delivery-states.js";
import { MimeCache } from "../workers/mime-cache.js";
import { NotifyProcessor } from "../workers/notify.js";
import { runWorkers, type RunningWorkers } from "../workers/run-workers.js";
import { TimerProcessor } from "../workers/timers.js";
import { PurgeProcessor, type PurgeTiming } from "../workers/purge.js";
import type { PurgeConnector } from "./purge/connector.js";
import { createPurgeConnector } from "./purge/purge-settings.js";
import { ReportLinks } from "./waves/report-link.js";
import { waveSettings } from "./waves/settings.js";
import { Verp } from "./inbound/verp.js";
import { startInboundListener } from "./inbound/listener.js";
import { inboundSignals } from "./inbound/signal-handler.js";
import { WavePlanner } from "../workers/wave-planner.js";
import { createHmac } from "node:crypto";

/** The token of a staged send's Reply-To address (inbound/verp.ts): one reply address per message. */
const REPLY_TOKEN = "r";

/** A secret of its own for one use, derived from LINK_SECRET (a report link or a VERP tag is never an approver link). */
function derivedSecret(secret: string, label: string): string {
  return createHmac("sha256", secret).update(`airlock-derived-v1\n${label}`).digest("hex");
}

export interface RuntimeOptions {
  config: Config;
  clock?: Clock;
  logger?: Logger;
  /** Where development data goes (spawned Redis, outbox, demo users). Default ./data. */
  dataDir?: string;
  /** A transport to use instead of the one SMTP_URL names (tests). */
  transport?: MailTransport;
  /** The purge of recalled messages from mailboxes, instead of the one the PURGE_* settings name. */
  purge?: PurgeSetup | null;
  /** The inbound SMTP listener's port instead of INBOUND_SMTP_PORT (tests: 0, a free one). */
  inboundPort?: number;
}

/** A purge connector and how it is paced (PURGE_* settings). */
export interface PurgeSetup {
  connector: PurgeConnector;
  timing: PurgeTiming;
  /** How long the standard correction waits for a recipient's purge to answer (PURGE_CORRECTION_WAIT_SECONDS). */
  correctionWaitMs: number;
}

export interface Runtime {
  config: Config;
  logger: Logger;
  redis: Redis;
  users: UserDirectory;
  usersFile: string | null;
  store: MessageStore;
  audiences: AudienceStore;
  service: MessageService;
  scheduler: BullScheduler;
  renderer: Renderer;
  linkSecret: string;
  /** AUDIT_SECRET (development: kept under the data directory): keys the audit seals. */
  auditSecret: string;
  tokens: LinkTokens;
  outboxDir: string | null;
  /** A staged send's report links and VERP addresses (null without RETURN_PATH_DOMAIN). */
  reportLinks: ReportLinks;
  verp: Verp | null;
  /** The inbound SMTP listener's port once startWorkers started it (RETURN_PATH_DOMAIN), else null. */
  inboundPort: number | null;
  startApi(port?: number): Promise<{ server: Server; url: string }>;
  startWorkers(): Promise<RunningWorkers>;
  /** GET /metrics and /healthz alone, for a worker-only process (its histograms live only there). */
  startMetricsServer(port: number): Promise<{ url: string }>;
  /** Stops everything this runtime started, in order. Always resolves. */
  stop(): Promise<void>;
}

export async function createRuntime(opts: RuntimeOptions): Promise<Runtime> {
  const { config } = opts;
  const clock = opts.clock ?? systemClock;
  const logger = opts.logger ?? pino({ level: config.LOG_LEVEL, base: { service: "airlock" } });
  const dataDir = resolve(opts.dataDir ?? "data");
  // Stopped in this order: servers and workers (newest first), then the queues, then connections.
  const stops: Array<() => Promise<unknown> | unknown> = [];
  const connections: Redis[] = [];

  let redisUrl = config.REDIS_URL;
  let spawned: RedisProcess | null = null;
  if (!redisUrl && !config.REDIS_SENTINELS) {
    spawned = await startRedisProcess({ dir: resolve(dataDir, "redis"), port: 6390 });
    redisUrl = spawned.url;
    logger.info(`development: started redis-server at ${redisUrl}, data in ${spawned.dir}`);
  }

  // REDIS_URL, or the primary the sentinels name (REDIS_URL then gives only password, db and TLS).
  const target = { url: redisUrl, sentinels: config.REDIS_SENTINELS, sentinelName: config.REDIS_SENTINEL_NAME };
  const connect = (name: string, workers = false) => {
    const c = createRedisClient(target, { connectionName: `airlock-${name}`, workers });
    c.on("error", (e) => logger.warn(`redis (${name}): ${e.message}`));
    connections.push(c);
    return c;
  };
  /** Closes a connection the process no longer needs, before it stops. */
  const release = async (c: Redis) => {
    await c.quit().catch(() => c.disconnect());
    connections.splice(connections.indexOf(c) >>> 0, 1); // >>> 0: one not in the list (-1) removes nothing
  };
  const redis = connect("api");
  try {
    await assertSafeRedis(redis, config, logger);
    // Before any worker could read them: delivery states written by a version before 3470d4e.
    await migrateDeliveryStates(redis, (line) => logger.warn(line));
  } catch (e) {
    // Refused: leave nothing running behind (a connection retrying forever, a spawned server).
    redis.disconnect();
    if (spawned) await spawned.stop();
    throw e;
  }

  let usersFile = config.USERS_FILE ?? null;
  if (!usersFile) usersFile = seedDemoUsers(resolve(dataDir, "dev-users.json"));
  const users = UserDirectory.fromFile(usersFile, { allowPlainTokens: !config.production });
  stops.push(watchUsersFile(usersFile, users, logger));

  const linkSecret = config.LINK_SECRET ?? developmentSecret(resolve(dataDir, "link-secret"));
  const auditSecret = config.AUDIT_SECRET ?? developmentSecret(resolve(dataDir, "audit-secret"));
  const outboxDir = config.SMTP_URL ? null : resolve(dataDir, "outbox");
  const transport =
    opts.transport ?? (config.SMTP_URL ? createSmtpTransport({ url: config.SMTP_URL, poolSize: config.SMTP_POOL_SIZE, ehloName: config.SMTP_EHLO_NAME, tls: config.SMTP_TLS, caFile: config.SMTP_CA_FILE }) : createOutboxTransport(outboxDir!));

  // REDIS_MIN_REPLICAS_ACK: decisions answer once replicas have them (WAIT, on a connection of their own).
  const replicas = config.REDIS_MIN_REPLICAS_ACK;
  const bull = connect("queues", true);
  const scheduler = new BullScheduler(bull, clock);
  const metrics = createMetrics({ redis, queues: [scheduler.timers, scheduler.fanout, scheduler.notifications, scheduler.purge] });
  // Uploads and freezes give way to running sends (store/bulk-pace.ts).
  const pace = new BulkPace({ ratio: config.BULK_PACE_RATIO, sendsRunning: () => scheduler.sendsRunning(), onWait: (ms) => metrics.bulkPaced.inc(ms / 1000) });
  const store = new MessageStore(redis, clock, { replicas, timeoutMs: config.REDIS_REPLICA_ACK_TIMEOUT_MS, ...(replicas > 0 ? { connection: connect("decisions") } : {}) }, pace);
  const audiences = new AudienceStore({ redis, clock, allowedDomains: config.ALLOWED_RECIPIENT_DOMAINS, pace });
  const followUps = new FollowUps({ scheduler, logger, metrics });
  const renderer = createRenderer(templatesDir(), { companyName: config.COMPANY_NAME, logoUrl: config.COMPANY_LOGO_URL ?? null, footer: config.COMPANY_FOOTER });
  // Staged sends: the early waves' report link and reply address, part of the mail every build makes.
  const waves = waveSettings(config);
  const reportLinks = new ReportLinks(derivedSecret(linkSecret, "report-link"), config.PUBLIC_URL);
  const verp = config.RETURN_PATH_DOMAIN ? new Verp({ domain: config.RETURN_PATH_DOMAIN, secret: derivedSecret(linkSecret, "verp") }) : null;
  renderer.earlyWaveMarks = (id) => ({ reportUrl: reportLinks.url(id), replyTo: verp ? verp.replyAddress(id, REPLY_TOKEN) : null });
  const testSends = { testMail: testMailThrough(transport), testSendLimit: new RedisTestSendLimit(redis, clock) };
  const purge = opts.purge !== undefined ? opts.purge : purgeSetup(config, logger);
  if (purge) stops.push(() => purge.connector.close());
  const ldap = directorySettings(config);
  const directoryAudiences = new DirectoryAudiences({ audiences, directory: ldap ? new LdapDirectory(ldap) : null, maxChangePercent: config.DIRECTORY_MAX_CHANGE_PERCENT, logger });
  const service = new MessageService({
    store,
    followUps,
    renderer,
    clock,
    config,
    logger,
    metrics,
    recipientDomains: audiences,
    directoryAudiences,
    purge: purge && { correctionWaitMs: purge.correctionWaitMs },
    staging: { from: waves.from },
    bulkPace: pace,
    ...testSends,
  });
  const tokens = new LinkTokens(redis, linkSecret, clock);
  // Before anything can write an audit entry, so the first message's notifications are not missed.
  await ensureNotifierGroup(redis);
  const audit = new AuditLog(redis, clock);
  const signOn = config.oidc ? await startSignOn(config, { redis, clock, audit, logger, users, subscriber: connect("oidc-people"), stops }) : null;
  // Which settings this process runs with, on the record (secrets only as set or unset).
  await audit.append(AIRLOCK_ACTOR, "settings", { process: `${hostname()}-${process.pid}`, settings: auditedSettings(config) });
  const sealer = new AuditSealer({ redis, reader: connect("audit-sealer", true), secret: auditSecret, logger });
  sealer.start();
  stops.push(() => sealer.stop());

  const runtime: Runtime = {
    config,
    logger,
    redis,
    users,
    usersFile,
    store,
    audiences,
    service,
    scheduler,
    renderer,
    linkSecret,
    auditSecret,
    tokens,
    outboxDir,
    reportLinks,
    verp,
    inboundPort: null,
    async startApi(port = config.PORT) {
      const stream = new EventStream(connect("events"));
      const app = createApp({
        redis,
        users,
        service,
        store,
        audiences,
        directoryAudiences,
        renderer,
        stream,
        logger,
        trustProxyHops: config.TRUST_PROXY_HOPS,
        links: new LinkService({ tokens, store, service, users, renderer, clock }),
        pages: createPageRenderer(templatesDir()),
        summary: (m) => messageSummary({ store, users, publicUrl: config.PUBLIC_URL }, m),
        publicUrl: config.PUBLIC_URL,
        rateLimits: { api: config.API_RATE_LIMIT_PER_MINUTE, links: config.LINK_RATE_LIMIT_PER_MINUTE },
        metrics: metrics.registry,
        sessions: new SessionStore(redis, users, clock, audit, { tokenSignIn: config.DASHBOARD_TOKEN_SIGNIN, oidc: signOn }),
        signOn,
        views: createDashboardViews(templatesDir()),
        queues: [scheduler.fanout, scheduler.timers, scheduler.notifications, scheduler.purge],
        outboxDir,
        clock,
        auditSecret,
        reportLinks,
      });
      const server = await new Promise<Server>((res, rej) => {
        const s = app.listen(port, (err?: Error) => (err ? rej(err) : res(s)));
        answerMalformedRequests(s);
      });
      stops.unshift(
        () => stream.close(),
        () => new Promise<void>((res) => {
          server.close(() => res());
          server.closeAllConnections();
        }),
      );
      const addr = server.address();
      const actualPort = typeof addr === "object" && addr ? addr.port : port;
      return { server, url: `http://localhost:${actualPort}` };
    },
    async startMetricsServer(port) {
      const server = createServer((req, res) => {
        if (req.url === "/healthz") return void res.writeHead(200, { "content-type": "application/json" }).end('{"ok":true}');
        if (req.url !== "/metrics" || (req.method !== "GET" && req.method !== "HEAD")) return void res.writeHead(404).end();
        metrics.registry.metrics().then(
          (text) => res.writeHead(200, { "content-type": metrics.registry.contentType }).end(text),
          (e: unknown) => res.writeHead(503, { "content-type": "text/plain" }).end(`metrics unavailable: ${(e as Error).message}\n`), // Redis unreachable
        );
      });
      answerMalformedRequests(server);
      await new Promise<void>((res, rej) => server.once("error", rej).listen(port, () => res()));
      stops.unshift(() => new Promise<void>((res) => server.close(() => res())));
      const addr = server.address();
      return { url: `http://localhost:${typeof addr === "object" && addr ? addr.port : port}/metrics` };
    },
    async startWorkers() {
      const workerConn = connect("workers", true);
      const fanout = new FanoutProcessor({ store, followUps, transport, mime: new MimeCache(store, renderer), config, logger, metrics, verp });
      const planner = new WavePlanner({ store, redis, followUps, settings: waves, logger });
      const timers = new TimerProcessor({ store, reads: new SweepReads(redis), followUps, clock, logger, planner, purgeRetryEveryMs: purge?.timing.retryEveryMs ?? null });
      const purging = purge && new PurgeProcessor({ store, connector: purge.connector, scheduler, timing: purge.timing, clock, logger });
      const notify = new NotifyProcessor({
        store,
        users,
        tokens,
        renderer: createNotificationRenderer(templatesDir()),
        mail: renderer,
        transport,
        clock,
        config,
        logger,
      });
      await scheduler.ensureSweep();
      const running = runWorkers({ connection: workerConn, fanout, timers, notify, purge: purging, concurrency: config.SMTP_POOL_SIZE, lockMs: config.WORKER_LOCK_SECONDS * 1000, logger });
      const dispatcher = new NotificationDispatcher({
        redis: connect("notifier", true),
        store,
        users,
        queue: scheduler,
        logger,
        clock,
        consumer: `${hostname()}-${process.pid}-${randomBytes(4).toString("hex")}`,
        allowedDomains: config.ALLOWED_RECIPIENT_DOMAINS,
      });
      dispatcher.start();
      stops.unshift(() => running.close(), () => dispatcher.stop());
      // Redis's AOF rewrite forks it and stalls writes for a moment: run it while Redis is quiet (infra/aof-rewrite.ts).
      // A connection of its own: the keeper WATCHes its key.
      const aofConn = connect("aof-rewrite");
      if (config.REDIS_AOF_REWRITE === "when-quiet") {
        const keeper = new AofRewriteKeeper({ redis: aofConn, sendsRunning: () => scheduler.sendsRunning(), log: logger, onRewrite: (start) => metrics.aofRewrites.inc({ start }) });
        stops.unshift(keeper.start());
      } else {
        // Not a reason to refuse to start: the rule stays as it is, and the log says why.
        await AofRewriteKeeper.handBack(aofConn, logger).catch((e: unknown) => logger.warn(`could not give Redis its AOF rewrite rule back: ${(e as Error).message}`));
        await release(aofConn); // used once: not kept open until the process stops
      }
      // Bounces and replies of staged sends, with RETURN_PATH_DOMAIN: one listener per worker process.
      if (verp) {
        const inbound = await startInboundListener({
          verp,
          handler: inboundSignals(store, logger),
          port: opts.inboundPort ?? config.INBOUND_SMTP_PORT,
          ...(config.INBOUND_SMTP_HOST ? { host: config.INBOUND_SMTP_HOST } : {}),
          logger: { info: (m) => logger.info(m), warn: (m) => logger.warn(m) },
        });
        runtime.inboundPort = inbound.port;
        logger.info(`inbound SMTP for ${verp.domain} (bounces and replies of staged sends) on port ${inbound.port}`);
        stops.unshift(() => inbound.close());
      }
      return running;
    },
    async stop() {
      for (const s of stops) await Promise.resolve().then(s).catch((e: unknown) => logger.warn(`stopping: ${(e as Error).message}`));
      stops.length = 0;
      await scheduler.close();
      await transport.close().catch(() => {});
      await Promise.all(connections.map((c) => c.quit().catch(() => c.disconnect())));
      connections.length = 0;
      if (spawned) await spawned.stop();
    },
  };
  return runtime;
}

/**
 * OpenID Connect sign-in: the client, and the registry of people who signed in with it, mirrored in
 * this process and consulted by its user directory (API and workers alike: approval requests reach
 * approvers who are not in USERS_FILE). Discovery is tried once now for the log; a provider that is
 * down at start does not stop Airlock (sign-in says so until it is back).
 */
async function startSignOn(
  config: Config,
  d: { redis: Redis; clock: Clock; audit: AuditLog; logger: Logger; users: UserDirectory; subscriber: Redis; stops: Array<() => unknown> },
): Promise<OidcSignIn> {
  const settings = config.oidc!;
  const people = new OidcPeople(d.redis, d.clock);
  const mirror = new OidcPeopleMirror(people, d.subscriber, d.clock, d.logger);
  await mirror.start();
  d.users.attach(mirror);
  d.stops.push(() => mirror.stop());
  const client = new OidcClient(settings, config.OIDC_CLIENT_SECRET!, d.clock);
  client.check().then(
    () => d.logger.info(`OpenID Connect sign-in: ${settings.issuer} (client ${settings.clientId})`),
    (e: unknown) => d.logger.warn(`OpenID Connect provider ${settings.issuer} not reachable yet (sign-in will say so until it is): ${(e as Error).message}`),
  );
  return new OidcSignIn({ client, people, redis: d.redis, audit: d.audit, settings, logger: d.logger });
}

/** The purge connector the PURGE_* settings name, and its pace; null without PURGE_CONNECTOR. */
function purgeSetup(config: Config, logger: Logger): PurgeSetup | null {
  const p = config.purge;
  const connector = createPurgeConnector(p, { info: (m) => logger.info(m), warn: (m) => logger.warn(m) });
  if (!connector) return null;
  return {
    connector,
    timing: { concurrency: p.concurrency, ratePerSecond: p.ratePerSecond, retryForMs: p.notFoundRetryMinutes * 60_000, retryEveryMs: p.notFoundRetryEverySeconds * 1000 },
    correctionWaitMs: p.correctionWaitSeconds * 1000,
  };
}

/** Development only: a random secret kept next to the data (links in the outbox, the audit seals survive a restart). */
function developmentSecret(path: string): string {
  if (!existsSync(path)) {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, randomBytes(32).toString("hex") + "\n", { mode: 0o600 });
  }
  return readFileSync(path, "utf8").trim();
}

/** Evicted keys would be lost approvals and recalls: refuse any policy but noeviction. */
async function assertSafeRedis(redis: Redis, config: Config, logger: Logger): Promise<void> {
  const [, policy] = (await redis.config("GET", "maxmemory-policy")) as [string, string];
  if (policy !== "noeviction") throw new Error(`Redis maxmemory-policy is ${policy}; Airlock needs noeviction (evicted keys would be lost approvals or recalls)`);
  const [, aof] = (await redis.config("GET", "appendonly")) as [string, string];
  if (aof !== "yes") {
    const say = config.production ? logger.error.bind(logger) : logger.warn.bind(logger);
    say("Redis append-only file is OFF: a Redis restart may lose approvals, recalls and audit entries. Set appendonly yes.");
  }
  // Advice, not safety: without it, replacing a million-recipient audience blocks Redis ~0.3 s.
  const lazy = (await redis.config("GET", "lazyfree-lazy-*")) as string[]; // [name, value, name, value, ...]
  const lazyfree = (name: string) => lazy[lazy.indexOf(name) + 1];
  if (lazyfree("lazyfree-lazy-server-del") !== "yes" || lazyfree("lazyfree-lazy-user-del") !== "yes") {
    logger.warn("Redis frees large keys in place (lazyfree-lazy-server-del/lazyfree-lazy-user-del not yes): replacing a large audience will block Redis for a moment. Set both to yes.");
  }
}
