/**
 * People who signed in with OpenID Connect, kept in Redis so that every process (API and workers)
 * knows them: approval requests go to every approver, link holders are looked up, names shown.
 *
 * - **Bindings**: the first sign-in of a verified address binds it to that (issuer, subject), for
 *   good. A different subject presenting the same address is refused. So throughout the domain,
 *   where a person is their lower-cased address (authors, approvals, "not the author"), one
 *   address is one identity. (An address also in USERS_FILE is the same person: the company
 *   controls both, and the provider verified the address.)
 * - **The registry**: each person's name and roles as of their last sign-in or re-check. An entry
 *   counts for REGISTRY_VALID_MS after that check; a re-check that ends a session removes it.
 * - **The mirror** (`OidcPeopleMirror`): each process's copy, loaded at start, updated on the
 *   change channel, and read again in full every MIRROR_RELOAD_MS (pub/sub loses what is published
 *   while a connection is down). `UserDirectory.attach` consults it.
 */
import type { Redis } from "ioredis";
import { z } from "zod";
import type { Clock } from "../domain/clock.js";
import { keys } from "../store/keys.js";
import { ROLES, sha256, type User } from "./users.js";

/**
 * How long roles as last checked still count for notifications and approver links without a new
 * sign-in or re-check: a session's absolute age (7 days). Someone removed from a group at the
 * provider who never signs in again stops being asked to approve after this.
 */
export const REGISTRY_VALID_MS = 7 * 24 * 3600_000;
/** The mirror's full reload: the bound on a change missed while the subscriber was reconnecting. */
const MIRROR_RELOAD_MS = 60_000;

const entry = z.object({
  email: z.string(),
  name: z.string(),
  roles: z.array(z.enum(ROLES)),
  issuer: z.string(),
  subject: z.string(),
  checkedAt: z.number(),
});
export type OidcPeopleEntry = z.infer<typeof entry>;

/** What a dashboard session's credential is for an OpenID Connect identity (never shown). */
export const oidcCredential = (issuer: string, subject: string) => `oidc:${sha256(`${issuer} ${subject}`)}`;

export class OidcPeople {
  constructor(
    private readonly redis: Redis,
    private readonly clock: Clock,
  ) {}

  /**
   * Binds `email` to (issuer, subject) if it is not bound yet. `ok: false` names the identity it is
   * bound to when that is another.
   */
  async bind(email: string, issuer: string, subject: string): Promise<{ ok: true; first: boolean } | { ok: false; boundTo: [string, string] }> {
    const mine = JSON.stringify([issuer, subject]);
    if ((await this.redis.hsetnx(keys.oidcBindings(), email, mine)) === 1) return { ok: true, first: true };
    const bound = await this.redis.hget(keys.oidcBindings(), email);
    if (bound === mine) return { ok: true, first: false };
    return { ok: false, boundTo: (bound ? JSON.parse(bound) : ["?", "?"]) as [string, string] };
  }

  async record(p: Omit<OidcPeopleEntry, "checkedAt">): Promise<void> {
    const e: OidcPeopleEntry = { ...p, checkedAt: this.clock.now() };
    await this.redis.multi().hset(keys.oidcPeople(), p.email, JSON.stringify(e)).publish(keys.oidcPeopleChanged(), p.email).exec();
  }

  async remove(email: string): Promise<void> {
    await this.redis.multi().hdel(keys.oidcPeople(), email).publish(keys.oidcPeopleChanged(), email).exec();
  }

  async all(): Promise<OidcPeopleEntry[]> {
    return parseAll(await this.redis.hgetall(keys.oidcPeople()));
  }

  async get(email: string): Promise<OidcPeopleEntry | null> {
    return parseOne(await this.redis.hget(keys.oidcPeople(), email));
  }
}

function parseOne(raw: string | null): OidcPeopleEntry | null {
  if (raw === null) return null;
  try {
    const p = entry.safeParse(JSON.parse(raw));
    return p.success ? p.data : null;
  } catch {
    return null;
  }
}

const parseAll = (h: Record<string, string>) => Object.values(h).map(parseOne).filter((e): e is OidcPeopleEntry => e !== null);

/** This process's copy of the registry, as the user directory reads it (synchronously). */
export class OidcPeopleMirror {
  private byEmail = new Map<string, OidcPeopleEntry>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly people: OidcPeople,
    private readonly subscriber: Redis,
    private readonly clock: Clock,
    private readonly log: { warn(m: string): void },
  ) {}

  async start(): Promise<void> {
    this.subscriber.on("message", (_channel: string, email: string) => void this.reloadOne(email));
    await this.subscriber.subscribe(keys.oidcPeopleChanged());
    await this.reloadAll();
    this.timer = setInterval(() => void this.reloadAll(), MIRROR_RELOAD_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private async reloadAll(): Promise<void> {
    try {
      const next = new Map<string, OidcPeopleEntry>();
      for (const e of await this.people.all()) next.set(e.email, e);
      this.byEmail = next;
    } catch (e) {
      this.log.warn(`OpenID Connect people not reloaded (kept as they were): ${(e as Error).message}`);
    }
  }

  private async reloadOne(email: string): Promise<void> {
    try {
      const e = await this.people.get(email);
      if (e) this.byEmail.set(email, e);
      else this.byEmail.delete(email);
    } catch (err) {
      this.log.warn(`OpenID Connect person ${email} not reloaded: ${(err as Error).message}`);
    }
  }

  private valid(e: OidcPeopleEntry | undefined): e is OidcPeopleEntry {
    return e !== undefined && e.roles.length > 0 && this.clock.now() - e.checkedAt <= REGISTRY_VALID_MS;
  }

  byAddress(email: string): User | null {
    const e = this.byEmail.get(email.toLowerCase());
    return this.valid(e) ? asUser(e) : null;
  }

  all(): User[] {
    return [...this.byEmail.values()].filter((e) => this.valid(e)).map(asUser);
  }
}

function asUser(e: OidcPeopleEntry): User {
  return { email: e.email, name: e.name, roles: [...e.roles], senders: [], credential: oidcCredential(e.issuer, e.subject) };
}
