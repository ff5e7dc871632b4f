package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

const (
	// modulePath is the app's module; BuildApp looks for its go.mod.
	modulePath = "globalpresence"
	// buildTimeout bounds a cold build with an empty cache on a slow machine.
	buildTimeout = 5 * time.Minute
)

// BuildApp builds the app into dir/global-presence and returns that path.
// It finds the module by walking up from the working directory to the
// go.mod of module globalpresence, so it works from tests in any package
// and from `go run ./cmd/cluster` anywhere in the checkout.
func BuildApp(dir string) (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	root, err := findModuleRoot(wd)
	if err != nil {
		return "", err
	}
	out, err := filepath.Abs(filepath.Join(dir, "global-presence"))
	if err != nil {
		return "", err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("cluster: building the app needs the go command: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", out, ".")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("cluster: go build in %s: %v\n%s", root, err, b)
	}
	return out, nil
}

// findModuleRoot returns the nearest directory at or above dir whose go.mod
// declares modulePath.
func findModuleRoot(dir string) (string, error) {
	for d := dir; ; {
		if data, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && goModModule(string(data)) == modulePath {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", errors.New("cluster: no go.mod of module " + modulePath + " at or above " + dir)
		}
		d = parent
	}
}

// goModModule is the module path a go.mod declares, or "".
func goModModule(gomod string) string {
	for _, line := range strings.Split(gomod, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "module" {
			return strings.Trim(f[1], "\"`")
		}
	}
	return ""
}
