package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"
)

func load(t *testing.T, args []string) (Config, error) {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	def := defaultConfig()
	addFlags(fs, def)
	require.NoError(t, fs.Parse(args))
	cfg, err := loadConfig(fs, def)
	if err != nil {
		return cfg, err
	}
	return cfg, cfg.validate()
}

func TestConfigPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "smq.yaml")
	require.NoError(t, os.WriteFile(file, []byte("region: from-file\nhttp_addr: \":9000\"\nflush_interval: 250ms\nbuffer: memory\n"), 0o644))
	t.Setenv("SMQ_REGION", "from-env")
	t.Setenv("SMQ_HTTP_ADDR", ":9001")

	cfg, err := load(t, []string{"--config", file, "--region", "from-flag"})
	require.NoError(t, err)
	require.Equal(t, "from-flag", cfg.Region, "a flag beats the environment and the file")
	require.Equal(t, ":9001", cfg.HTTPAddr, "the environment beats the file")
	require.Equal(t, 250*time.Millisecond, cfg.FlushInterval, "the file beats the default")
	require.Equal(t, "memory", cfg.Buffer)
	require.Equal(t, defaultConfig().BufferMaxDepth, cfg.BufferMaxDepth, "defaults fill the rest")
}

func TestConfigInvalidNamesTheSetting(t *testing.T) {
	for _, c := range []struct {
		env, value, want string
	}{
		{"SMQ_BUFFER", "disk", "SMQ_BUFFER"},
		{"SMQ_FLUSH_INTERVAL", "-1s", "SMQ_FLUSH_INTERVAL"},
		{"SMQ_FLUSH_LINGER", "200ms", "SMQ_FLUSH_LINGER"},
		{"SMQ_API_KEYS", "ops=s3cret:root", "SMQ_API_KEYS"},
		{"SMQ_REGION", "eu west", "SMQ_REGION"},
		{"SMQ_LOG_FORMAT", "xml", "SMQ_LOG_FORMAT"},
		{"SMQ_STALE_AFTER", "1s", "SMQ_STALE_AFTER"},
		{"SMQ_BUFER", "wal", "SMQ_BUFER"}, // a typo is refused, not ignored
	} {
		t.Run(c.env, func(t *testing.T) {
			t.Setenv(c.env, c.value)
			_, err := load(t, nil)
			require.Error(t, err)
			require.Contains(t, err.Error(), c.want)
		})
	}
}

func TestConfigBadFile(t *testing.T) {
	_, err := load(t, []string{"--config", filepath.Join(t.TempDir(), "missing.yaml")})
	require.ErrorContains(t, err, "missing.yaml")
}
