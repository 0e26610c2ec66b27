/**
 * The dashboard spoken as a browser speaks it, over plain HTTP: sign in for a cookie, read the
 * CSRF token from a page, post forms from our own origin. (Real Chromium: test/browser/.)
 */
import { expect } from "vitest";
import { tokenOf, type UserKey } from "./airlock.js";

export interface Browser {
  cookie: string;
  csrf: string;
  get(path: string): Promise<Page>;
  post(path: string, form: Record<string, string>, headers?: Record<string, string>): Promise<Page>;
}

export interface Page {
  status: number;
  html: string;
  location: string | null;
  headers: Headers;
}

export const sameOrigin = { "sec-fetch-site": "same-origin" };

/** Attribute values as a browser reads them (Handlebars escapes `=` and `&`). */
export const attr = (s: string) => s.replace(/&#x3D;/g, "=").replace(/&amp;/g, "&").replace(/&quot;/g, '"').replace(/&#x27;/g, "'");

export function dashboardClient(baseUrl: () => string) {
  async function raw(path: string, init: RequestInit = {}): Promise<Page> {
    const res = await fetch(baseUrl() + path, { redirect: "manual", ...init });
    return { status: res.status, html: await res.text(), location: res.headers.get("location"), headers: res.headers };
  }

  async function signIn(user: UserKey): Promise<Browser> {
    const res = await raw("/signin", { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded", ...sameOrigin }, body: new URLSearchParams({ token: tokenOf(user), next: "/" }) });
    expect(res.status).toBe(303);
    const setCookie = res.headers.get("set-cookie") ?? "";
    expect(setCookie).toMatch(/^airlock_session=[A-Za-z0-9_-]{43};/);
    expect(setCookie).toMatch(/HttpOnly/i);
    expect(setCookie).toMatch(/SameSite=Strict/i);
    const cookie = setCookie.split(";")[0]!;
    const front = await raw("/", { headers: { cookie } });
    expect(front.status).toBe(200);
    const csrf = /<meta name="csrf-token" content="([^"]+)">/.exec(front.html)?.[1];
    expect(csrf).toMatch(/^[A-Za-z0-9_-]{43}$/);
    return {
      cookie,
      csrf: csrf!,
      get: (path) => raw(path, { headers: { cookie } }),
      post: (path, form, headers = sameOrigin) =>
        raw(path, { method: "POST", headers: { cookie, "content-type": "application/x-www-form-urlencoded", ...headers }, body: new URLSearchParams(form) }),
    };
  }

  return { raw, signIn };
}
