// Package tsclient proves that api/openapi.yaml serves languages other than
// Go: it generates a TypeScript client with openapi-typescript (types) and
// openapi-fetch (the runtime), pinned in package.json and package-lock.json,
// and compiles it with a small usage file under tsc --noEmit.
package tsclient

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// cacheDir holds npm installs between runs, one folder per lock file; it is
// ignored by git (.gitignore beside this file).
const cacheDir = ".cache"

// TestTypeScriptClientCompiles generates the TypeScript client from the
// committed spec and type-checks usage.ts against it. usage.ts also holds
// calls marked @ts-expect-error (a message without a channel, an unknown
// route), so a client whose types collapsed to any fails too.
func TestTypeScriptClientCompiles(t *testing.T) {
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Skip("npm is not on PATH: the TypeScript client was not generated nor compiled (apt-get install -y npm to run this test)")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not on PATH: the TypeScript client was not generated nor compiled")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	modules := installTools(ctx, t, npm)
	spec, err := filepath.Abs(filepath.Join("..", "..", "api", "openapi.yaml"))
	require.NoError(t, err)

	work := t.TempDir()
	require.NoError(t, os.Symlink(modules, filepath.Join(work, "node_modules")))
	for _, name := range []string{"usage.ts", "tsconfig.json"} {
		b, err := os.ReadFile(name)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(work, name), b, 0o644))
	}

	// --default-non-nullable false: openapi-typescript otherwise makes every
	// field with a default required in request bodies too (max_attempts),
	// though a client may leave it out.
	run(ctx, t, work, node, filepath.Join(modules, "openapi-typescript", "bin", "cli.js"),
		spec, "--output", "smq.ts", "--default-non-nullable", "false")
	run(ctx, t, work, node, filepath.Join(modules, "typescript", "bin", "tsc"), "--project", "tsconfig.json")
}

// installTools returns the absolute path of a node_modules folder installed
// by npm ci from package-lock.json, reusing the cached one for the same lock
// file. A new install goes to a temporary folder renamed into place, so
// concurrent runs never see half an install.
func installTools(ctx context.Context, t *testing.T, npm string) string {
	t.Helper()
	lock, err := os.ReadFile("package-lock.json")
	require.NoError(t, err)
	manifest, err := os.ReadFile("package.json")
	require.NoError(t, err)
	sum := sha256.Sum256(append(append([]byte{}, manifest...), lock...))
	root, err := filepath.Abs(cacheDir)
	require.NoError(t, err)
	final := filepath.Join(root, hex.EncodeToString(sum[:8]))
	modules := filepath.Join(final, "node_modules")
	if _, err := os.Stat(modules); err == nil {
		return modules
	}

	require.NoError(t, os.MkdirAll(root, 0o755))
	tmp, err := os.MkdirTemp(root, "install-")
	require.NoError(t, err)
	defer os.RemoveAll(tmp)
	require.NoError(t, os.WriteFile(filepath.Join(tmp, "package.json"), manifest, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(tmp, "package-lock.json"), lock, 0o644))
	run(ctx, t, tmp, npm, "ci", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error")
	if err := os.Rename(tmp, final); err != nil {
		// Another run may have renamed its install into place first.
		_, statErr := os.Stat(modules)
		require.NoError(t, statErr, "moving the npm install into place: %v", err)
	}
	return modules
}

// run runs a command in dir and fails the test with its output when it
// fails.
func run(ctx context.Context, t *testing.T, dir, name string, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s %v failed:\n%s", filepath.Base(name), args, out)
	t.Logf("%s %s: %s", filepath.Base(name), args[0], time.Since(start).Round(time.Millisecond))
}
