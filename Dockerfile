# CloudStack KMS server. Build: docker build -t cloudstack-kms .
# Run:   docker run -p 8080:8080 -v kms-data:/data -e KMS_MASTER_KEY=... cloudstack-kms
# Mount the PKCS#11 library of your HSM vendor (or use the SoftHSM2 shipped here for trials) and
# name it in the HSM profile's `library` detail.
FROM node:20-bookworm-slim AS build
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json knexfile.ts ./
COPY src ./src
COPY scripts ./scripts

FROM node:20-bookworm-slim
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends softhsm2 tini && rm -rf /var/lib/apt/lists/* \
  && useradd --system --uid 10001 --home /data kms && mkdir -p /data && chown kms /data
COPY --from=build /app /app
ENV NODE_ENV=production HOST=0.0.0.0 PORT=8080 KMS_DATA_DIR=/data
USER kms
VOLUME ["/data"]
EXPOSE 8080
ENTRYPOINT ["/usr/bin/tini", "--"]
# KMS_ROLE=worker (or `npm run worker`) runs job workers only; KMS_ROLE=api the API only.
CMD ["npm", "start"]
