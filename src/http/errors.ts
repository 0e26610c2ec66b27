/**
 * The one place where errors become HTTP answers: `{"error": {"code", "message", "details"?}}`.
 * Anything unexpected is logged and answered 500 without detail; tests assert it never happens.
 */
import type { ErrorRequestHandler, RequestHandler } from "express";
import type { Logger } from "pino";
import { z } from "zod";
import { AudienceError } from "../audiences/errors.js";
import { DomainError, ReplicationLagError, type ErrorCode } from "../domain/errors.js";

export const STATUS: Record<ErrorCode, number> = {
  invalid_input: 400,
  unauthenticated: 401,
  forbidden: 403,
  self_approval: 403,
  not_found: 404,
  conflict: 409,
  stale_revision: 409,
  already_approved: 409,
  too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  // The SMTP server, not the request, failed: a gateway error, never a 500.
  mail_refused: 502,
  // A setting of this service, not the request, is missing; a group that is not there; a resolution
  // that needs an admin's confirmation: the request cannot be carried out as it is.
  directory_not_configured: 422,
  directory_group_not_found: 422,
  directory_empty: 422,
  directory_change_refused: 409,
  // The directory, not the request, failed: retry later (503) or fix the directory (502); never a 500.
  directory_unavailable: 503,
  directory_failed: 502,
};

/** zod issues as the field paths that failed. */
export function zodDetails(err: z.ZodError): Array<{ path: Array<string | number>; message: string }> {
  return err.issues.map((i) => ({ path: i.path.map((p) => (typeof p === "symbol" ? String(p) : p)), message: i.message }));
}

/** Parses with a schema or throws the 400 naming the fields. `where` prefixes the paths (body, query). */
export function validate<T extends z.ZodType>(schema: T, input: unknown, where: "body" | "query" | "params"): z.infer<T> {
  const r = schema.safeParse(input);
  if (!r.success) {
    const details = zodDetails(r.error).map((d) => ({ ...d, path: [where, ...d.path] }));
    throw new DomainError("invalid_input", `invalid ${where}: ${details.map((d) => `${d.path.join(".")}: ${d.message}`).join("; ")}`, details);
  }
  return r.data;
}

const BODY_PARSER_ERRORS: Record<string, [number, ErrorCode, string]> = {
  "entity.too.large": [413, "too_large", "the request body is too large"],
  "entity.parse.failed": [400, "invalid_input", "the request body is not valid JSON"],
  "encoding.unsupported": [415, "unsupported_media_type", "unsupported content encoding"],
  "charset.unsupported": [415, "unsupported_media_type", "unsupported charset"],
  "request.aborted": [400, "invalid_input", "the request was aborted"],
  "request.size.invalid": [400, "invalid_input", "the request body does not match its Content-Length"],
  "stream.encoding.set": [400, "invalid_input", "bad request stream"],
};

const AUDIENCE_STATUS: Record<AudienceError["code"], [number, ErrorCode]> = {
  invalid_name: [400, "invalid_input"],
  invalid_recipient: [400, "invalid_input"],
  empty_audience: [400, "invalid_input"],
  invalid_csv: [400, "invalid_input"],
  invalid_json: [400, "invalid_input"],
  too_many_recipients: [413, "too_large"],
};

export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (err: unknown, req, res, _next) => {
    void _next;
    let status = 500;
    let body: { code: string; message: string; details?: unknown } = { code: "internal", message: "internal error" };
    if (err instanceof DomainError) {
      status = STATUS[err.code];
      body = { code: err.code, message: err.message, ...(err.details === undefined ? {} : { details: err.details }) };
    } else if (err instanceof ReplicationLagError) {
      // Recorded on the primary, not yet on REDIS_MIN_REPLICAS_ACK replicas: not a success, and retryable.
      status = 503;
      body = { code: err.code, message: err.message, details: { replicas: { acknowledged: err.acknowledged, required: err.required } } };
      logger.warn({ method: req.method, url: req.path, acknowledged: err.acknowledged, required: err.required, cause: (err.cause as Error | undefined)?.message }, "answered 503: not yet on enough Redis replicas");
      if (!res.headersSent) res.setHeader("Retry-After", "1");
    } else if (err instanceof AudienceError) {
      const [s, code] = AUDIENCE_STATUS[err.code];
      status = s;
      body = { code, message: err.message, ...(err.details ? { details: err.details } : {}) };
    } else if (err instanceof z.ZodError) {
      status = 400;
      body = { code: "invalid_input", message: "invalid input", details: zodDetails(err) };
    } else if (typeof err === "object" && err !== null && "type" in err && typeof err.type === "string" && BODY_PARSER_ERRORS[err.type]) {
      const [s, code, message] = BODY_PARSER_ERRORS[err.type]!;
      status = s;
      body = { code, message };
    } else if (typeof err === "object" && err !== null && "status" in err && typeof err.status === "number" && err.status >= 400 && err.status < 500) {
      status = err.status;
      body = { code: status === 413 ? "too_large" : "invalid_input", message: err instanceof Error ? err.message : "bad request" };
    } else if (req.readableAborted) {
      // The client went away in the middle of a streamed body (an "aborted" ECONNRESET): no fault of
      // ours, and nobody is left to read the answer.
      status = 400;
      body = { code: "invalid_input", message: "the request was aborted" };
      logger.info({ method: req.method, url: req.path }, "request aborted by the client before its body ended");
    } else {
      // A link token in a log line would be a working link: keep its id, drop its MAC.
      const url = req.originalUrl.replace(/(\/links\/[A-Za-z0-9_-]{1,64})\.[A-Za-z0-9_-]+/, "$1.…");
      logger.error({ err, method: req.method, url }, "unexpected error answering a request");
    }
    if (res.headersSent) return void res.end();
    res.status(status).json({ error: body });
  };
}

export const notFound: RequestHandler = (req, _res, next) => next(new DomainError("not_found", `no route ${req.method} ${req.path}`));

/** Requires a JSON body (415 otherwise); a missing body is `{}` when `optional`. */
export function requireJson(optional = false): RequestHandler {
  return (req, _res, next) => {
    const hasBody = req.headers["content-length"] !== undefined && req.headers["content-length"] !== "0" || req.headers["transfer-encoding"] !== undefined;
    if (!hasBody && optional) {
      req.body = {};
      return next();
    }
    if (!req.is("application/json")) return next(new DomainError("unsupported_media_type", "send the body as application/json"));
    next();
  };
}

/**
 * A request Node's HTTP parser refuses (a control character or a lone LF in a header, headers too
 * large, too slow) never reaches express: without this, Node answers a bare 400 with no body. It
 * gets the API's error shape like every other refusal, and the connection is closed.
 */
export function answerMalformedRequests(server: import("node:http").Server): void {
  server.on("clientError", (err: NodeJS.ErrnoException, socket: import("node:stream").Duplex) => {
    if (!socket.writable || err.code === "ECONNRESET") return void socket.destroy();
    const [status, reason, code] =
      err.code === "HPE_HEADER_OVERFLOW"
        ? [431, "Request Header Fields Too Large", "too_large"]
        : err.code === "ERR_HTTP_REQUEST_TIMEOUT"
          ? [408, "Request Timeout", "invalid_input"]
          : [400, "Bad Request", "invalid_input"];
    const body = JSON.stringify({ error: { code, message: `malformed HTTP request (${err.code ?? "unknown"})` } });
    socket.end(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  });
}
