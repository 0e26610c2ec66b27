/** What an author submits, validated: the one schema for create and edit. No HTTP here. */
import { z } from "zod";
import { hasControlChars, normalizeAddress } from "./addresses.js";

/** Explicit addresses in one message; larger audiences are uploaded as an audience. */
export const MAX_EXPLICIT_ADDRESSES = 10_000;

const address = z.string().transform((raw, ctx) => {
  const r = normalizeAddress(raw);
  if (!r.ok) {
    ctx.addIssue({ code: "custom", message: `invalid address: ${r.reason}` });
    return z.NEVER;
  }
  return r.address;
});

const singleLine = (max: number) =>
  z
    .string()
    .trim()
    .min(1)
    .max(max)
    .refine((s) => !hasControlChars(s), { error: "must not contain control characters (CR, LF, tab…)" });

export const messageInput = z.strictObject({
  subject: singleLine(250),
  text: z.string().min(1).max(200_000),
  html: z.string().max(500_000).optional(),
  from: singleLine(320).optional(),
  audience: z
    .strictObject({
      lists: z.array(z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, { error: "not an audience name" })).max(50).optional(),
      addresses: z.array(address).max(MAX_EXPLICIT_ADDRESSES).optional(),
    })
    .refine((a) => (a.lists?.length ?? 0) + (a.addresses?.length ?? 0) > 0, { error: "name at least one list or address" }),
  holdMinutes: z.number().positive().max(30 * 24 * 60).optional(),
  sendAt: z.iso.datetime({ offset: true }).optional(),
});

export type MessageInput = z.infer<typeof messageInput>;

export const approveInput = z.strictObject({ comment: z.string().max(2000).optional(), revision: z.number().int().positive().optional() });
export const rejectInput = z.strictObject({ reason: z.string().trim().min(1).max(2000), revision: z.number().int().positive().optional() });
/** Why ops hold a fan-out: shown on the dashboard and kept in the audit. */
export const pauseInput = z.strictObject({ reason: z.string().trim().min(1).max(2000) });
export const recallInput = z.strictObject({ reason: z.string().trim().min(1).max(2000), correctionText: z.string().max(50_000).optional() });
