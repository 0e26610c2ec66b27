/**
 * Every Redis key Airlock uses, in one place.
 * All keys share the hash tag `{airlock}` so that multi-key Lua scripts work on a Redis Cluster
 * (they land in one slot). The cost is no sharding across cluster nodes; one Redis primary
 * comfortably holds millions of recipients, and Sentinel failover works unchanged.
 */
export const PREFIX = "{airlock}";

/** Marks the correction's members of keys.possibleDuplicates (the original's are bare addresses). */
export const CORRECTION_DUPLICATE_PREFIX = "correction:";

export const keys = {
  /** INCR counter for message ids. */
  messageSeq: () => `${PREFIX}:seq:message`,
  /** Hash: the message's fields (see store/message-store.ts). */
  message: (id: string) => `${PREFIX}:msg:${id}`,
  /** Sorted set (score 0, ordered by address): the frozen recipient set, addressed by index for batches. */
  recipients: (id: string) => `${PREFIX}:msg:${id}:rcpt`,
  /**
   * Scratch sorted set one submit fills in slices (store/recipient-freeze.ts) before submit.lua
   * renames it over `recipients` (so a refused submit changes nothing); its own per attempt, with an
   * expiry while it is filled.
   */
  recipientsScratch: (id: string, attempt: string) => `${PREFIX}:msg:${id}:rcpt:next:${attempt}`,
  /**
   * String, one byte per recipient at its index in the frozen set: the original's delivery state
   * (see store/lua/fanout-prologue.lua). Named apart from the former hash `…:delivery` so the two
   * formats can never be confused.
   */
  delivery: (id: string) => `${PREFIX}:msg:${id}:states`,
  /** Hash address -> SMTP reply for permanent failures. */
  failures: (id: string) => `${PREFIX}:msg:${id}:failures`,
  /** String, one byte per recipient index: the correction's delivery state. */
  correction: (id: string) => `${PREFIX}:msg:${id}:correction-states`,
  /**
   * Set of addresses whose transaction was cut off at an unknown point and retried: the address for
   * the original, CORRECTION_DUPLICATE_PREFIX + address for the correction (store/lua/fanout-prologue.lua).
   */
  possibleDuplicates: (id: string) => `${PREFIX}:msg:${id}:dup`,
  /**
   * String, one byte per recipient index: the purge of the original from that recipient's mailbox
   * (store/lua/purge.lua): zero = none (not sent, or no purge), i = being purged, p = purged,
   * n / f = not found / failed and tried again later, N / F = not found / failed for good.
   */
  purgeStates: (id: string) => `${PREFIX}:msg:${id}:purge-states`,
  /** Hash address -> the reason of the recipient's last failed purge. */
  purgeFailures: (id: string) => `${PREFIX}:msg:${id}:purge-failures`,
  /** Hash: the purge-rate token bucket shared by every worker (PURGE_RATE_PER_SECOND). */
  /** A staged send's wave of each recipient, one byte per index of the frozen set: 1 seed cohort, 2 canary, 0 or absent the rest. */
  waves: (id: string) => `${PREFIX}:msg:${id}:waves`,
  /** A staged send's plan being written (store/message-store.ts writeWavePlan): renamed over `waves` by waves.lua begin. */
  wavesPlan: (id: string) => `${PREFIX}:msg:${id}:waves-plan`,
  /** A staged send's signal evidence (JSON entries, newest first, capped: waves/signals.ts MAX_EVIDENCE). */
  signals: (id: string) => `${PREFIX}:msg:${id}:signals`,
  /** The dedupe keys of the signals counted (a re-delivered DSN, a reply's Message-ID, a reporter). */
  signalKeys: (id: string) => `${PREFIX}:msg:${id}:signal-keys`,
  purgeRate: () => `${PREFIX}:purge-rate`,
  /** Sorted set startedAt -> id: the messages whose purge has started and not ended (the sweep re-drives them). */
  purgesRunning: () => `${PREFIX}:purges-running`,
  /** Hash revision -> JSON snapshot of that revision (for diffs and audit). */
  revisions: (id: string) => `${PREFIX}:msg:${id}:revisions`,
  /** Stream: this message's audit trail. */
  audit: (id: string) => `${PREFIX}:audit:${id}`,
  /** Stream: every audit entry of every message. */
  auditAll: () => `${PREFIX}:audit`,
  /** String: the hash of the newest entry of the global audit chain (store/lua/prologue.lua). */
  auditHead: () => `${PREFIX}:audit:head`,
  /** Hash entry id -> HMAC seal of that entry of the global audit stream (audit/sealer.ts). */
  auditSeals: () => `${PREFIX}:audit-seal:macs`,
  /** String "<entry id> <seal>": the newest sealed entry of the global audit stream. */
  auditSealHead: () => `${PREFIX}:audit-seal:head`,
  /**
   * Sorted set: the leases of one user's running audience uploads (member: upload id, score: end of
   * the lease in ms, Redis time; audiences/upload-slots.ts). Named apart from audienceUpload
   * (`…:upload:<id>`) so a scan for an upload's scratch keys never meets it.
   */
  uploadSlots: (user: string) => `${PREFIX}:upload-slots:${user.toLowerCase()}`,
  /** Sorted set createdAt -> id: every message, for listing newest first. */
  messagesByTime: () => `${PREFIX}:messages`,
  /** Sorted set createdAt -> id of the messages in one state. */
  messagesInState: (state: string) => `${PREFIX}:state:${state}`,
  /** Sorted set (score 0) of an audience's addresses. */
  audience: (name: string) => `${PREFIX}:aud:${name}`,
  /** Hash address -> JSON {name?, department?} for an audience. */
  audienceDetails: (name: string) => `${PREFIX}:aud:${name}:details`,
  /**
   * Hash domain -> recipients of an audience in that domain (at most 200 domains, or as many as
   * ALLOWED_RECIPIENT_DOMAINS lists; the rest counted under "(other domains)"): "recipients by
   * domain" for approvers, and what a submit checks against ALLOWED_RECIPIENT_DOMAINS. Replaced
   * together with `audience`.
   */
  audienceDomains: (name: string) => `${PREFIX}:aud:${name}:domains`,
  /**
   * Hash name -> JSON {name, size, updatedAt, by, owner, version, directory?}: the audience catalogue.
   * `owner` (its creator) and `version` are missing from entries written before they were kept: the
   * uploader and 1. submit.lua reads `version` to record which version each list froze, and
   * `directory` (a directory audience's group and last resolution) to record what it resolved.
   */
  audiences: () => `${PREFIX}:audiences`,
  /**
   * List, newest first: one JSON {version, by, at, size, added, removed, deleted?, directory?} per
   * version of an audience (every commit of an upload or a directory resolution, and a delete). Kept when the audience is deleted, so a
   * later upload under the name continues the numbering (audiences/audience-scripts.ts).
   */
  audienceVersions: (name: string) => `${PREFIX}:aud:${name}:versions`,
  /** Scratch key an upload fills before it atomically replaces the audience. */
  audienceUpload: (uploadId: string) => `${PREFIX}:upload:${uploadId}`,
  /** Hash: the cross-worker send-rate token bucket. */
  rateBucket: () => `${PREFIX}:rate`,
  /** Pub/sub channel of state changes and progress, for SSE. */
  events: () => `${PREFIX}:events`,
  /** Hash: the details (address -> JSON) an upload fills next to `audienceUpload`, renamed with it. */
  audienceUploadDetails: (uploadId: string) => `${PREFIX}:upload:${uploadId}:details`,
  /** Hash: the domain counts an upload fills next to `audienceUpload`, renamed with it over `audienceDomains`. */
  audienceUploadDomains: (uploadId: string) => `${PREFIX}:upload:${uploadId}:domains`,
  /**
   * Sorted set (score: send time in ms, member: a unique id): an author's test sends of the last
   * window, for the per-author limit (service/test-sends.ts); expires with the window.
   */
  testSends: (author: string) => `${PREFIX}:test-sends:${author}`,
  /** Hash {user, csrf, createdAt}: a dashboard sign-in, named by the SHA-256 of its cookie value (expires when idle). */
  session: (idHash: string) => `${PREFIX}:session:${idHash}`,
  /** String (PX): held by the process re-checking an OpenID Connect session at the provider, so one refresh runs at a time. */
  sessionRecheck: (idHash: string) => `${PREFIX}:session:${idHash}:recheck`,
  /** Hash: an OpenID Connect sign-in under way (state, nonce, PKCE verifier, next), named by the SHA-256 of its cookie; used once, expires in 10 minutes. */
  oidcTransaction: (idHash: string) => `${PREFIX}:oidc-tx:${idHash}`,
  /** Hash email -> JSON [issuer, subject]: the one OpenID Connect identity each verified address belongs to (set at its first sign-in). */
  oidcBindings: () => `${PREFIX}:oidc:bindings`,
  /** Hash email -> JSON {email, name, roles, issuer, subject, checkedAt}: people seen at OpenID Connect sign-in, roles as last checked. */
  oidcPeople: () => `${PREFIX}:oidc:people`,
  /** Pub/sub: an email whose entry in `oidcPeople` changed (every process's directory reloads it). */
  oidcPeopleChanged: () => `${PREFIX}:oidc:people-changed`,
  /** String, JSON {percentage, setTo}: Redis's AOF rewrite percentage kept by the workers, and what they set Redis's own to (infra/aof-rewrite.ts). */
  aofRule: () => `${PREFIX}:aof-rule`,
} as const;

/** BullMQ prefix: its keys get the same hash tag. */
export const QUEUE_PREFIX = PREFIX;
