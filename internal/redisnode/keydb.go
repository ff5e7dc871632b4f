package redisnode

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
)

// keydbEnv names a keydb-server binary to use instead of searching.
const keydbEnv = "KEYDB_SERVER"

// KeyDBServerPath finds the keydb-server binary: $KEYDB_SERVER, else
// keydb-server in PATH, else ../shared/keydb/keydb-server next to the
// module root (the checked binary these machines share; KeyDB is not
// packaged by Debian).
func KeyDBServerPath() (string, error) {
	if p := os.Getenv(keydbEnv); p != "" {
		if isFile(p) {
			return filepath.Abs(p)
		}
		return "", errors.New("redisnode: " + keydbEnv + "=" + p + " is not a file")
	}
	if p, err := exec.LookPath("keydb-server"); err == nil {
		return p, nil
	}
	if wd, err := os.Getwd(); err == nil {
		if root := moduleRoot(wd); root != "" {
			p := filepath.Join(filepath.Dir(root), "shared", "keydb", "keydb-server")
			if isFile(p) {
				return p, nil
			}
		}
	}
	return "", errors.New("redisnode: keydb-server not found: set " + keydbEnv +
		" to a KeyDB 6.3 keydb-server binary (or put it in PATH, or at ../shared/keydb/keydb-server " +
		"beside the checkout; build it from Snapchat/KeyDB tag v6.3.4)")
}

// moduleRoot is the nearest directory at or above dir with a go.mod, or "".
func moduleRoot(dir string) string {
	for d := dir; ; {
		if isFile(filepath.Join(d, "go.mod")) {
			return d
		}
		parent := filepath.Dir(d)
		if parent == d {
			return ""
		}
		d = parent
	}
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}
