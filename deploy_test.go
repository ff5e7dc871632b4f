package main

import (
	"os/exec"
	"testing"
)

// The KeyDB peer discovery parses `info replication` and decides which
// peers to add; its offline test runs that logic on canned outputs.
func TestKeyDBPeerDiscoveryScript(t *testing.T) {
	out, err := exec.Command("bash", "keydb/test-discover.sh").CombinedOutput()
	if err != nil {
		t.Fatalf("keydb/test-discover.sh: %v\n%s", err, out)
	}
}
