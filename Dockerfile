# Multi-stage: install, compile and type-check in a build stage; a slim non-root runtime that runs
# the compiled JavaScript with plain node and the locked production dependencies (no tsx, no tsc).
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json vitest.config.ts ./
COPY scripts/build.mjs ./scripts/
COPY src ./src
COPY workers ./workers
COPY templates ./templates
COPY test ./test
# The tests import the bench's helpers (bench-smoke): the type-check needs them.
COPY bench ./bench
RUN npm run build && npx tsc --noEmit && npm prune --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY templates ./templates
USER node
EXPOSE 3000
# The inbound SMTP listener of staged sends (worker processes, with RETURN_PATH_DOMAIN; INBOUND_SMTP_PORT).
EXPOSE 2525
HEALTHCHECK --interval=15s --timeout=3s CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# `api`, `worker`, or nothing for both in one process. The V8 heap is capped at 512 MB (as in
# package.json's start scripts): below that, V8 grows the heap cautiously, so a long import or
# fan-out peaks at ~180 MB RSS instead of ~260 MB of garbage not yet collected (docs/performance.md).
# dist/src/mail/render.js finds templates/ at /app/templates; the Lua scripts are in dist/src/store/lua/.
ENTRYPOINT ["node", "--max-old-space-size=512", "dist/src/main.js"]
