#!/usr/bin/env bash
# The whole test suite, as CI runs it. Installs what the tests need
# (redis-server, Chromium) from Debian's packages when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v chromium >/dev/null || [ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "test.sh: gofmt, go vet, staticcheck"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi
go vet ./...
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

# A short fuzzing run of every parser of client input, of SSE framing and of
# the store's announcements; the seed corpora (testdata/fuzz in each package)
# also run below as plain tests. The budget is a
# count, not a duration: Go 1.26's fuzz coordinator can fail a run that found
# nothing with "context deadline exceeded" when a -fuzztime duration ends
# (golang/go#75804, fixed in Go 1.27).
echo "test.sh: fuzzing (20,000 inputs per target, about 5 s each)"
for pkg in ./handlers ./bus ./presence; do
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz'); do
    if ! out=$(go test -run '^$' -fuzz "^${target}\$" -fuzztime 20000x "$pkg" 2>&1); then
      echo "$out"
      exit 1
    fi
    echo "fuzz ${pkg#./} ${target}: ok"
  done
done

# Every benchmark once: they must work; their figures are in BENCHMARKS.md.
echo "test.sh: benchmarks (one iteration each)"
go test -run '^$' -bench . -benchtime 1x ./... >/dev/null

echo "test.sh: go test -race"
go test -race -count=1 -timeout 15m ./...
