// Package docker holds SMQ's container image (Dockerfile) and compose
// stacks: compose.yaml (three regions on CockroachDB) and
// compose.postgres.yaml (one region on PostgreSQL). Its tests check them
// where no Docker engine runs: against the compose specification, and for
// the invariants the multi-region demo depends on.
package docker

import (
	"context"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

var composeFiles = []string{"compose.yaml", "compose.postgres.yaml"}

// regions are the CockroachDB localities of compose.yaml, the first being
// the database's primary region.
var regions = []string{"us-east1", "us-west1", "europe-west1"}

// composeTool returns the command that runs compose (docker compose, or the
// standalone docker-compose), or nil when there is none.
func composeTool() []string {
	if docker, err := exec.LookPath("docker"); err == nil {
		if exec.Command(docker, "compose", "version").Run() == nil {
			return []string{docker, "compose"}
		}
	}
	if dc, err := exec.LookPath("docker-compose"); err == nil {
		return []string{dc}
	}
	return nil
}

// TestComposeConfigWithComposeTool has the compose tool itself validate
// each file. `config` needs no engine, so this runs wherever the tool is
// installed, engine or not.
func TestComposeConfigWithComposeTool(t *testing.T) {
	tool := composeTool()
	if tool == nil {
		t.Skip("no Docker engine here: compose file not validated by docker compose " +
			"(no `docker compose` plugin nor docker-compose on PATH); TestComposeFilesFollowTheSpec still checked it")
	}
	for _, f := range composeFiles {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		args := append(tool[1:], "-f", f, "config", "-q")
		out, err := exec.CommandContext(ctx, tool[0], args...).CombinedOutput()
		cancel()
		require.NoError(t, err, "%s %s:\n%s", strings.Join(tool, " "), strings.Join(args, " "), out)
	}
}

// TestComposeFilesFollowTheSpec loads each file with compose-go, the loader
// docker compose is built on: schema, interpolation, anchors and merges,
// depends_on targets, so a broken file fails here without Docker.
func TestComposeFilesFollowTheSpec(t *testing.T) {
	for _, f := range composeFiles {
		t.Run(f, func(t *testing.T) {
			opts, err := cli.NewProjectOptions([]string{f}, cli.WithWorkingDirectory("."), cli.WithOsEnv)
			require.NoError(t, err)
			p, err := opts.LoadProject(t.Context())
			require.NoError(t, err, "%s does not load as compose does", f)
			require.NotEmpty(t, p.Services)
		})
	}
}

// composeFile is the part of a compose file the invariants read.
type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Build       any               `yaml:"build"`
		Command     any               `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Volumes     []string          `yaml:"volumes"`
	} `yaml:"services"`
}

func loadCompose(t *testing.T, name string) composeFile {
	t.Helper()
	b, err := os.ReadFile(name)
	require.NoError(t, err)
	var c composeFile
	require.NoError(t, yaml.Unmarshal(b, &c), name)
	return c
}

func commandString(c any) string {
	switch c := c.(type) {
	case string:
		return c
	case []any:
		var parts []string
		for _, p := range c {
			parts = append(parts, strings.TrimSpace(p.(string)))
		}
		return strings.Join(parts, " ")
	}
	return ""
}

var pinned = regexp.MustCompile(`^[a-z0-9./_-]+:v?[0-9]+(\.[0-9]+)*([-.][A-Za-z0-9.-]+)?$`)

// requirePinned fails for an image without a version tag; images SMQ
// builds itself (smq:…) are tagged by the build, not pulled.
func requirePinned(t *testing.T, file, service, image string) {
	t.Helper()
	if strings.HasPrefix(image, "smq:") {
		return
	}
	require.Regexp(t, pinned, image, "%s: service %s: image %q is not pinned to a version", file, service, image)
}

func TestMultiRegionComposeInvariants(t *testing.T) {
	c := loadCompose(t, "compose.yaml")
	locality := regexp.MustCompile(`--locality=region=([a-z0-9-]+)`)
	joinFlag := regexp.MustCompile(`--join=(\S+)`)

	crdbByRegion := map[string]string{} // region → cockroach service
	joins := map[string][]string{}      // cockroach service → its --join list
	for name, s := range c.Services {
		requirePinned(t, "compose.yaml", name, s.Image)
		cmd := commandString(s.Command)
		if !strings.HasPrefix(s.Image, "cockroachdb/cockroach:") || !strings.HasPrefix(strings.TrimSpace(cmd), "start ") {
			continue
		}
		require.Contains(t, cmd, "--insecure", name)
		j := joinFlag.FindStringSubmatch(cmd)
		require.NotNil(t, j, "%s: start without --join", name)
		joins[name] = strings.Split(j[1], ",")
		m := locality.FindStringSubmatch(cmd)
		require.NotNil(t, m, "%s: cockroach node without --locality=region=…", name)
		require.NotContains(t, crdbByRegion, m[1], "two cockroach nodes in %s", m[1])
		crdbByRegion[m[1]] = name
	}
	require.ElementsMatch(t, regions, slices.Collect(maps.Keys(crdbByRegion)), "one cockroach node per region")
	for name, list := range joins {
		require.ElementsMatch(t, slices.Collect(maps.Values(crdbByRegion)), list, "%s must --join every node", name)
	}

	var smqRegions, migrators []string
	for name, s := range c.Services {
		if s.Image != "smq:dev" && s.Build == nil {
			continue
		}
		env := s.Environment
		region := env["SMQ_REGION"]
		require.NotEmpty(t, region, "%s: no SMQ_REGION", name)
		smqRegions = append(smqRegions, region)
		require.NotEmpty(t, env["SMQ_TEMPORAL_ADDRESS"], "%s: no SMQ_TEMPORAL_ADDRESS", name)
		temporalHost, _, _ := strings.Cut(env["SMQ_TEMPORAL_ADDRESS"], ":")
		require.Contains(t, c.Services, temporalHost, "%s: SMQ_TEMPORAL_ADDRESS names no service", name)
		require.NotEmpty(t, env["SMQ_DATABASE_URL"], "%s: no SMQ_DATABASE_URL", name)
		u, err := url.Parse(env["SMQ_DATABASE_URL"])
		require.NoError(t, err, name)
		require.Equal(t, "/smq", u.Path, "%s: SMQ_DATABASE_URL is not the smq database", name)
		require.Equal(t, crdbByRegion[region], u.Hostname(),
			"%s (region %s) must talk to the cockroach node of its own locality", name, region)
		if env["SMQ_MIGRATE"] == "true" {
			migrators = append(migrators, name)
		}
	}
	require.ElementsMatch(t, regions, smqRegions, "one SMQ node per region, SMQ_REGION matching a locality")
	require.Len(t, migrators, 1, "exactly one SMQ node applies the migrations (SMQ_MIGRATE=true)")

	ui := c.Services["temporal-ui"]
	require.True(t, strings.HasPrefix(ui.Image, "temporalio/ui:"), "a Temporal UI")
	require.Equal(t, "temporal:7233", ui.Environment["TEMPORAL_ADDRESS"])

	init := c.Services["crdb-init"]
	require.Contains(t, init.Volumes, "./cockroach-init.sql:/cockroach-init.sql:ro")
	require.Contains(t, commandString(init.Command), "cockroach init --insecure")
	require.Contains(t, commandString(init.Command), "--file=/cockroach-init.sql")
	sql, err := os.ReadFile("cockroach-init.sql")
	require.NoError(t, err)
	require.Contains(t, string(sql), `CREATE DATABASE IF NOT EXISTS smq;`)
	require.Contains(t, string(sql), `ALTER DATABASE smq SET PRIMARY REGION "`+regions[0]+`";`)
	for _, r := range regions[1:] {
		require.Contains(t, string(sql), `ALTER DATABASE smq ADD REGION IF NOT EXISTS "`+r+`";`)
	}
}

func TestPostgresComposeInvariants(t *testing.T) {
	c := loadCompose(t, "compose.postgres.yaml")
	var nodes int
	for name, s := range c.Services {
		requirePinned(t, "compose.postgres.yaml", name, s.Image)
		if s.Build == nil {
			continue
		}
		nodes++
		for _, k := range []string{"SMQ_REGION", "SMQ_DATABASE_URL", "SMQ_TEMPORAL_ADDRESS"} {
			require.NotEmpty(t, s.Environment[k], "%s: no %s", name, k)
		}
		require.Equal(t, "true", s.Environment["SMQ_MIGRATE"], "the only node applies the migrations")
		u, err := url.Parse(s.Environment["SMQ_DATABASE_URL"])
		require.NoError(t, err)
		require.Contains(t, c.Services, u.Hostname(), "SMQ_DATABASE_URL names no service")
	}
	require.Equal(t, 1, nodes, "one SMQ node")
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	require.NoError(t, err)
	d := string(b)
	from := regexp.MustCompile(`(?m)^FROM (\S+)`).FindAllStringSubmatch(d, -1)
	require.Len(t, from, 2, "a build stage and a runtime stage")
	require.Regexp(t, `^golang:1\.26`, from[0][1], "built with Go 1.26")
	require.Regexp(t, pinned, from[0][1], "the build image is pinned")
	// distroless publishes no version tags: its nonroot tag follows Debian 12.
	require.Equal(t, "gcr.io/distroless/static-debian12:nonroot", from[1][1], "a static, non-root runtime image")
	require.Contains(t, d, "CGO_ENABLED=0", "a static binary")
	user := regexp.MustCompile(`(?m)^USER (\S+)`).FindStringSubmatch(d)
	require.NotNil(t, user, "a USER line")
	require.NotRegexp(t, `^(0|root)(:|$)`, user[1], "not root")
	require.Contains(t, d, `VOLUME ["/var/lib/smq"]`)
	require.Contains(t, d, "SMQ_WAL_DIR=/var/lib/smq/wal")
	require.Contains(t, d, `ENTRYPOINT ["smq"]`)
	require.Contains(t, d, `CMD ["serve"]`)
}
