# CloudStack KMS server. Build: docker build -t cloudstack-kms .
# Run:   docker run -p 8080:8080 -v kms-data:/data -e KMS_MASTER_KEY=... cloudstack-kms
# Workers only: docker run ... cloudstack-kms node dist/worker-main.js   (compose.yaml shows both)
# Mount the PKCS#11 library of your HSM vendor (or use the SoftHSM2 shipped here for trials) and
# name it in the HSM profile's `library` detail.

# Build stage: all dependencies, compile TypeScript to dist/.
FROM node:20-bookworm-slim AS build
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

# Runtime stage: compiled JavaScript and production dependencies only (no typescript, jest or tsx
# is run); node is PID 2 under tini, so SIGTERM from `docker stop` reaches it and it drains.
FROM node:20-bookworm-slim
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends softhsm2 tini && rm -rf /var/lib/apt/lists/* \
  && useradd --system --uid 10001 --home /data kms && mkdir -p /data && chown kms /data
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
ENV NODE_ENV=production HOST=0.0.0.0 PORT=8080 KMS_DATA_DIR=/data KMS_SHUTDOWN_TIMEOUT_SEC=30
USER kms
VOLUME ["/data"]
EXPOSE 8080
# /healthz answers on the API port, or on KMS_OPS_PORT when that is set.
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["node", "-e", "const p=process.env.KMS_OPS_PORT||process.env.PORT||8080;require('http').get({host:'127.0.0.1',port:p,path:'/healthz',timeout:2000},r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1))"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "dist/main.js"]
