# syntax=docker/dockerfile:1
#
# conntrack-race-observer: build the TypeScript in one stage, the doctor's C race generators in
# another, bundle Debian 13's bpftrace with its own libraries in a third, install the system
# tools on the same base in a fourth and trim it to what runs, then flatten that file system into
# the runtime image. The stages share one base so that node_modules built in the first, and the
# generators built in the second, run beside the node binary and the glibc of the fourth.
#
# The base is pinned by exact version tag and by the digest of its multi-arch index; bump both
# together (`docker buildx imagetools inspect node:20.20.2-bookworm-slim`).
ARG NODE_IMAGE=node:20.20.2-bookworm-slim@sha256:2cf067cfed83d5ea958367df9f966191a942351a2df77d6f0193e162b5febfc0

FROM ${NODE_IMAGE} AS build
WORKDIR /app
# Only dev dependencies (esbuild, @parcel/watcher) have install scripts, and the TypeScript
# compiler needs neither: skipping scripts keeps a compiler toolchain out of this stage.
# Where outbound TLS is re-signed by a local CA, pass its bundle for this step only
# (`--secret id=build-ca,src=/etc/ssl/certs/ca-certificates.crt`): a secret mount is in no layer,
# and this stage is not part of the runtime image anyway.
COPY package.json package-lock.json ./
RUN --mount=type=secret,id=build-ca \
    if [ -s /run/secrets/build-ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/build-ca; fi \
    && npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build
# Production dependencies only; source maps and type declarations of the dependencies are never
# read at run time (the agent runs without --enable-source-maps and without a compiler).
RUN npm prune --omit=dev \
    && find node_modules -type f \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' \) -delete

# The race generators of `doctor --reproduce` are C (a busy-wait on a shared start time, one
# thread per CPU), and so is page-out, which pages bpftrace's compiler out once it has attached
# (process_madvise, for which Node has no binding): compiled on the same base as the runtime, so
# that they link the glibc it ships, and copied to where the agent looks for them. The compiler
# stays in this stage.
FROM ${NODE_IMAGE} AS generators
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc=4:12.2.0-3 libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY generators ./generators
COPY native ./native
RUN mkdir -p /out \
    && for generator in snat-race dnat-clash; do \
        gcc -O2 -Wall -Wextra -Werror -pthread -o "/out/$generator" "generators/$generator.c"; \
    done \
    && gcc -O2 -Wall -Wextra -Werror -o /out/page-out native/page-out.c

# bpftrace is Debian 13's (trixie), bundled under /opt/bpftrace with the libraries it links and
# their dynamic loader, so that it runs on this Debian 12 base without upgrading its glibc
# (scripts/bundle-bpftrace.sh, which the tests use too). Why not bookworm's 0.17: 0.23 increments
# a count() map in place, where 0.17 looks the value up and writes it back; in a DNS drop storm
# that is most of what the probes cost per packet (docs/benchmarks.md, section 4). The version is
# pinned here and in test/kernels/newer-bpftrace.ts (a unit test keeps them equal).
FROM ${NODE_IMAGE} AS bpftrace
ARG BPFTRACE_VERSION=0.23.2-1
COPY scripts/bundle-bpftrace.sh /usr/local/bin/
RUN bundle-bpftrace.sh /opt/bpftrace "$BPFTRACE_VERSION"

FROM ${NODE_IMAGE} AS system
# Documentation, manual pages and translations of the packages installed below are never read
# in a container: dpkg does not unpack them (the licence texts under /usr/share/doc stay).
RUN printf '%s\n' \
        'path-exclude /usr/share/doc/*' \
        'path-include /usr/share/doc/*/copyright' \
        'path-exclude /usr/share/man/*' \
        'path-exclude /usr/share/info/*' \
        'path-exclude /usr/share/locale/*' \
        'path-exclude /usr/share/lintian/*' \
        'path-exclude /usr/share/bug/*' \
        >/etc/dpkg/dpkg.cfg.d/01-container-excludes
# iproute2, conntrack and iptables are pinned to the versions of Debian 12 (bookworm) main,
# which do not move within a release. iptables and nftables (the latter follows point
# releases, like ca-certificates) let the diagnosis read the node's NAT rules: whether
# MASQUERADE/SNAT uses --random-fully / fully-random. ca-certificates is left to follow security updates, and
# util-linux (nsenter, setpriv) is part of the base system already: pinning either would break
# the build at the next point release without making it more reproducible.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        iproute2=6.1.0-3 \
        conntrack=1:1.4.7-1+b2 \
        iptables=1.8.9-2 \
        nftables \
        util-linux \
        ca-certificates \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/apt /var/log/dpkg.log
# The agent needs the node binary only: npm, npx, corepack and yarn, and the C headers for
# native addons, are build tools (the build stage has them).
# `doctor --reproduce`, run in the agent's pod (read-only root), mounts a private tmpfs here for
# `ip netns`, whose directory is compiled in: the image provides the empty mount point.
RUN rm -rf /usr/local/lib/node_modules /usr/local/include/node /opt/yarn-* \
        /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack \
        /usr/local/bin/yarn /usr/local/bin/yarnpkg \
    && mkdir -p /run/netns
# `scripts/image.sh build` checks that it resolves every library and runs a probe.
COPY --from=bpftrace /opt/bpftrace /opt/bpftrace
RUN ln -s /opt/bpftrace/bin/bpftrace /usr/local/bin/bpftrace

# One file system, without the files the layers above deleted (a deletion in a later layer does
# not make an image smaller).
FROM scratch AS runtime
COPY --from=system / /
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
# FROM scratch inherits no configuration: the base image's PATH, restated.
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY probes ./probes
# `doctor --reproduce` finds its race generators here (src/diagnose/reproduce/generators.ts), the
# agent its page-out program (src/system-dependencies.ts).
COPY --from=generators /out/ /usr/local/lib/conntrack-race-observer/

# The agent runs as root on purpose. Loading eBPF programs needs CAP_BPF and CAP_PERFMON (or
# CAP_SYS_ADMIN before 5.8), and Kubernetes grants added capabilities only to uid 0: it has no
# ambient capabilities, so a non-root process would start with none of them. The DaemonSet
# confines it instead (read-only root filesystem, read-only host mounts, least-privilege RBAC).
USER 0:0
EXPOSE 9474
ENTRYPOINT ["node", "/app/dist/main.js"]
