# syntax=docker/dockerfile:1
#
# conntrack-race-observer: build the TypeScript in one stage, run it beside Debian's bpftrace in
# another. Both stages share one base so that node_modules built in the first runs in the second.
#
# The base is pinned by exact version tag and by the digest of its multi-arch index; bump both
# together (`docker buildx imagetools inspect node:20.20.2-bookworm-slim`).
ARG NODE_IMAGE=node:20.20.2-bookworm-slim@sha256:2cf067cfed83d5ea958367df9f966191a942351a2df77d6f0193e162b5febfc0

FROM ${NODE_IMAGE} AS build
WORKDIR /app
# Only dev dependencies (esbuild, @parcel/watcher) have install scripts, and the TypeScript
# compiler needs neither: skipping scripts keeps a compiler toolchain out of this stage.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build
RUN npm prune --omit=dev

FROM ${NODE_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="conntrack-race-observer" \
      org.opencontainers.image.description="Sees the kernel drop packets when flows race through conntrack NAT, explains it per pod, exports it to Prometheus." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/node:20.20.2-bookworm-slim"

# bpftrace, iproute2 and conntrack are pinned to the versions of Debian 12 (bookworm) main, which
# do not move within a release. ca-certificates is left to follow security updates, and
# util-linux (nsenter, setpriv) is part of the base system already: pinning either would break
# the build at the next point release without making it more reproducible.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        bpftrace=0.17.0-1 \
        iproute2=6.1.0-3 \
        conntrack=1:1.4.7-1+b2 \
        util-linux \
        ca-certificates \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY probes ./probes

# The agent runs as root on purpose. Loading eBPF programs needs CAP_BPF and CAP_PERFMON (or
# CAP_SYS_ADMIN before 5.8), and Kubernetes grants added capabilities only to uid 0: it has no
# ambient capabilities, so a non-root process would start with none of them. Debian's bpftrace
# 0.17 also refuses outright to run as any user but root. The DaemonSet confines it instead
# (read-only root filesystem, read-only host mounts, least-privilege RBAC).
USER 0:0
EXPOSE 9474
ENTRYPOINT ["node", "/app/dist/main.js"]
