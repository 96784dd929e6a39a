# syntax=docker/dockerfile:1
#
# The cairn server in a minimal image: a static binary (CGO_ENABLED=0) on
# distroless/static, which holds CA certificates, time zone data and a
# non-root user, and no shell or package manager. The image needs nothing
# at run time: no downloads, no network but its peers and clients.
#
# Building needs the two base images below, from Docker Hub and gcr.io or
# from a mirror holding them (pass --build-arg GO_IMAGE=... / BASE_IMAGE=...):
#
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg COMMIT=$(git rev-parse HEAD) -t cairn .
#
# The container runs `cairn serve` as uid 65532 with its data in the volume
# /var/lib/cairn; see docker-compose.yml for a three-node cluster.

ARG GO_IMAGE=golang:1.26.8-bookworm
ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=
# -buildvcs=false: the build context has no .git (see .dockerignore);
# VERSION and COMMIT name the build instead (cairn version prints them).
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" -o /out/cairn ./cmd/cairn \
 && mkdir -p /out/data

FROM ${BASE_IMAGE}
COPY --from=build /out/cairn /usr/local/bin/cairn
# The data directory, owned by the image's non-root user so that a fresh
# named volume mounted on it is writable.
COPY --from=build --chown=65532:65532 /out/data /var/lib/cairn
USER 65532:65532
VOLUME /var/lib/cairn
# REST (/healthz, /readyz, /metrics, /openapi.json), gRPC, Raft.
EXPOSE 7300 7400 7500
ENTRYPOINT ["/usr/local/bin/cairn"]
CMD ["serve", "--help"]
