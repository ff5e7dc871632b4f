# Global Presence: a static Go binary in a distroless, non-root image.
# Build from the repository root: docker build -t global-presence .
# (fly deploy does the same with fly.toml's [build] section.)

# --- build ------------------------------------------------------------------
# go.mod says `go 1.26`; the 1.26 toolchain builds it without downloading
# another one (the image sets GOTOOLCHAIN=local). Raise this tag together
# with go.mod's go line.
FROM golang:1.26-bookworm AS build

WORKDIR /src

# Modules first, in their own layer: it is rebuilt only when go.mod or go.sum
# change, not on every source edit.
COPY go.mod go.sum ./
RUN go mod download && go mod verify

# The templates and static assets are embedded with go:embed, so copying the
# source tree is all the binary needs. CGO off: a static binary that runs on
# the distroless "static" base, which has no libc.
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /global-presence .

# --- runtime ----------------------------------------------------------------
# No shell, no package manager, runs as uid 65532 ("nonroot"). It carries CA
# certificates (for rediss:// URLs) and time zone data.
FROM gcr.io/distroless/static-debian12:nonroot

COPY --from=build /global-presence /global-presence

USER nonroot:nonroot

# The server listens on :$PORT (default 8080); fly.toml sets the same.
ENV PORT=8080
EXPOSE 8080

# No HEALTHCHECK: the image has no shell or curl to run one, and the binary
# has no probe mode. On Fly the platform does the probing from outside, as
# configured in fly.toml: GET /readyz (store connected and subscribed) gates
# traffic, GET /healthz (process alive) is the liveness check.

# Exec form: no shell in between, so the server itself receives SIGTERM (it
# ends every SSE stream and exits within about 5 s).
ENTRYPOINT ["/global-presence"]
