# Multi-stage: dependencies and type-check in a build stage, a slim non-root runtime.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json vitest.config.ts ./
COPY src ./src
COPY workers ./workers
COPY templates ./templates
COPY test ./test
RUN npx tsc --noEmit && npm prune --omit=dev && npm install --no-save --no-audit --no-fund tsx

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY package.json ./
COPY src ./src
COPY workers ./workers
COPY templates ./templates
USER node
EXPOSE 3000
HEALTHCHECK --interval=15s --timeout=3s CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# `api`, `worker`, or nothing for both in one process. The V8 heap is capped at 512 MB (as in
# package.json's start scripts): below that, V8 grows the heap cautiously, so a long import or
# fan-out peaks at ~180 MB RSS instead of ~260 MB of garbage not yet collected (docs/performance.md).
ENTRYPOINT ["node", "--max-old-space-size=512", "--import", "tsx", "src/main.ts"]
