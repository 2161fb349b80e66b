package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/knadh/koanf/parsers/json"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/providers/structs"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"

	"github.com/smq/smq/api"
)

// Config is every setting of a node. Each field is a flag (--database-url),
// an environment variable (SMQ_DATABASE_URL) and a key of the optional YAML
// or JSON file (database_url), in that precedence; the help tag is the
// setting's documentation and defaultConfig holds its default.
type Config struct {
	DatabaseURL       string        `koanf:"database_url" help:"PostgreSQL or CockroachDB URL"`
	HTTPAddr          string        `koanf:"http_addr" help:"address the HTTP API listens on"`
	APIKeys           string        `koanf:"api_keys" help:"accepted API keys, comma-separated, each [name=]secret[:scope+scope] (scopes: produce, consume, admin; none = all), several at once for rotation; empty turns authentication off"`
	Region            string        `koanf:"region" help:"this node's region"`
	NodeID            string        `koanf:"node_id" help:"this node's id; empty: the id kept in the WAL directory, made on first start"`
	Buffer            string        `koanf:"buffer" help:"where creates wait for their flush: wal (durable) or memory (a crash loses unflushed messages)"`
	WALDir            string        `koanf:"wal_dir" help:"directory of the write-ahead log (buffer=wal)"`
	BufferMaxDepth    int           `koanf:"buffer_max_depth" help:"most messages the buffer holds before creates get 429"`
	BufferMaxBytes    int64         `koanf:"buffer_max_bytes" help:"most payload bytes the buffer holds before creates get 429"`
	FlushInterval     time.Duration `koanf:"flush_interval" help:"how often an idle flusher looks at the buffer"`
	FlushLinger       time.Duration `koanf:"flush_linger" help:"how long buffered messages due later than 250 ms wait for others to share their flush (0 to 100ms; 0: none)"`
	FlushMaxBatch     int           `koanf:"flush_max_batch" help:"largest flush batch"`
	TemporalAddress   string        `koanf:"temporal_address" help:"Temporal frontend host:port (smq dev: empty runs an embedded server)"`
	TemporalNamespace string        `koanf:"temporal_namespace" help:"Temporal namespace"`
	MaxPayload        int64         `koanf:"max_payload" help:"largest message payload in bytes (larger: 413)"`
	NackBackoffBase   time.Duration `koanf:"nack_backoff_base" help:"retry delay after the first failed delivery"`
	NackBackoffFactor float64       `koanf:"nack_backoff_factor" help:"growth of the retry delay per failed delivery"`
	NackBackoffCap    time.Duration `koanf:"nack_backoff_cap" help:"longest retry delay"`
	HeartbeatInterval time.Duration `koanf:"heartbeat_interval" help:"how often the node records that it is alive"`
	StaleAfter        time.Duration `koanf:"stale_after" help:"a node whose heartbeat is older than this is marked stale"`
	TakeoverGrace     time.Duration `koanf:"takeover_grace" help:"how long all of a region's nodes must be stale before another region takes over its messages"`
	ShutdownTimeout   time.Duration `koanf:"shutdown_timeout" help:"how long a graceful stop may take"`
	Migrate           bool          `koanf:"migrate" help:"apply the database migrations at start"`
	LogFormat         string        `koanf:"log_format" help:"log format: text or json"`
	LogLevel          string        `koanf:"log_level" help:"log level: debug, info, warn or error"`
}

func defaultConfig() Config {
	return Config{
		DatabaseURL:       "postgres://postgres@127.0.0.1:5432/smq?sslmode=disable",
		HTTPAddr:          ":8080",
		Region:            "local",
		Buffer:            "wal",
		WALDir:            ".smq/wal",
		BufferMaxDepth:    200_000,
		BufferMaxBytes:    256 << 20,
		FlushInterval:     100 * time.Millisecond,
		FlushLinger:       20 * time.Millisecond,
		FlushMaxBatch:     10_000,
		TemporalAddress:   "127.0.0.1:7233",
		TemporalNamespace: "default",
		MaxPayload:        1 << 20,
		NackBackoffBase:   time.Second,
		NackBackoffFactor: 2,
		NackBackoffCap:    time.Hour,
		HeartbeatInterval: 5 * time.Second,
		StaleAfter:        30 * time.Second,
		TakeoverGrace:     60 * time.Second,
		ShutdownTimeout:   30 * time.Second,
		LogFormat:         "text",
		LogLevel:          "info",
	}
}

// addFlags declares one flag per Config field, with its default and help.
func addFlags(fs *pflag.FlagSet, def Config) {
	fs.String("config", "", "optional YAML or JSON file of settings (keys as in SMQ_* without the prefix, lower case)")
	v := reflect.ValueOf(def)
	for i := range v.NumField() {
		f := v.Type().Field(i)
		name, help := strings.ReplaceAll(f.Tag.Get("koanf"), "_", "-"), f.Tag.Get("help")
		help += " (env SMQ_" + strings.ToUpper(f.Tag.Get("koanf")) + ")"
		switch x := v.Field(i).Interface().(type) {
		case string:
			fs.String(name, x, help)
		case int:
			fs.Int(name, x, help)
		case int64:
			fs.Int64(name, x, help)
		case float64:
			fs.Float64(name, x, help)
		case bool:
			fs.Bool(name, x, help)
		case time.Duration:
			fs.Duration(name, x, help)
		default:
			panic(fmt.Sprintf("config field %s: unsupported type %T", f.Name, x))
		}
	}
}

// loadConfig layers defaults, the file named by --config, SMQ_* variables
// and flags set on the command line. The caller validates the result.
func loadConfig(fs *pflag.FlagSet, def Config) (Config, error) {
	k := koanf.New(".")
	if err := k.Load(structs.Provider(def, "koanf"), nil); err != nil {
		return Config{}, err
	}
	if path, _ := fs.GetString("config"); path != "" {
		parser := koanf.Parser(yaml.Parser())
		if strings.EqualFold(filepath.Ext(path), ".json") {
			parser = json.Parser()
		}
		if err := k.Load(file.Provider(path), parser); err != nil {
			return Config{}, fmt.Errorf("config file %s: %w", path, err)
		}
	}
	known := map[string]bool{}
	for _, key := range k.Keys() {
		known[key] = true
	}
	var unknownEnv []string
	if err := k.Load(env.Provider(".", env.Opt{Prefix: "SMQ_", TransformFunc: func(key, value string) (string, any) {
		key = strings.ToLower(strings.TrimPrefix(key, "SMQ_"))
		if !known[key] {
			// SMQ_TEST_* belong to the tests, SMQ_URL and SMQ_API_KEY to
			// the client commands.
			if !strings.HasPrefix(key, "test_") && key != "url" && key != "api_key" {
				unknownEnv = append(unknownEnv, "SMQ_"+strings.ToUpper(key))
			}
			return "", nil
		}
		return key, value
	}}), nil); err != nil {
		return Config{}, err
	}
	if len(unknownEnv) > 0 {
		return Config{}, fmt.Errorf("unknown setting %s (see smq serve --help)", strings.Join(unknownEnv, ", "))
	}
	if err := k.Load(posflag.ProviderWithFlag(fs, ".", k, func(f *pflag.Flag) (string, any) {
		if f.Name == "config" || f.Name == "help" {
			return "", nil
		}
		return strings.ReplaceAll(f.Name, "-", "_"), posflag.FlagVal(fs, f)
	}), nil); err != nil {
		return Config{}, err
	}
	var cfg Config
	if err := k.UnmarshalWithConf("", &cfg, koanf.UnmarshalConf{Tag: "koanf"}); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

// validate names the first setting that cannot work.
func (c Config) validate() error {
	bad := func(name, why string) error {
		return fmt.Errorf("invalid setting %s (SMQ_%s): %s", name, strings.ToUpper(name), why)
	}
	switch {
	case c.DatabaseURL == "":
		return bad("database_url", "empty")
	case c.Buffer != "wal" && c.Buffer != "memory":
		return bad("buffer", fmt.Sprintf("%q is neither wal nor memory", c.Buffer))
	case c.Buffer == "wal" && c.WALDir == "":
		return bad("wal_dir", "empty, and buffer is wal")
	case c.BufferMaxDepth < 1:
		return bad("buffer_max_depth", "must be at least 1")
	case c.BufferMaxBytes < 1<<20:
		return bad("buffer_max_bytes", "must be at least 1 MiB")
	case c.FlushInterval <= 0:
		return bad("flush_interval", "must be positive")
	case c.FlushLinger < 0 || c.FlushLinger > 100*time.Millisecond:
		return bad("flush_linger", "must be 0 to 100ms")
	case c.FlushMaxBatch < 1 || c.FlushMaxBatch > 50_000:
		return bad("flush_max_batch", "must be 1 to 50000")
	case c.MaxPayload < 1 || c.MaxPayload > 64<<20:
		return bad("max_payload", "must be 1 byte to 64 MiB")
	case c.NackBackoffBase <= 0 || c.NackBackoffCap < c.NackBackoffBase:
		return bad("nack_backoff_cap", "base must be positive and cap at least base")
	case c.NackBackoffFactor < 1:
		return bad("nack_backoff_factor", "must be at least 1")
	case c.HeartbeatInterval <= 0 || c.StaleAfter <= c.HeartbeatInterval:
		return bad("stale_after", "must exceed heartbeat_interval, which must be positive")
	case c.TakeoverGrace < 0:
		return bad("takeover_grace", "must not be negative")
	case c.ShutdownTimeout <= 0:
		return bad("shutdown_timeout", "must be positive")
	case c.LogFormat != "text" && c.LogFormat != "json":
		return bad("log_format", fmt.Sprintf("%q is neither text nor json", c.LogFormat))
	case !validRegion(c.Region):
		return bad("region", fmt.Sprintf("%q must be 1 to 64 of A-Z a-z 0-9 - _", c.Region))
	}
	if _, err := api.ParseKeys(c.APIKeys); err != nil {
		return bad("api_keys", err.Error())
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return bad("log_level", err.Error())
	}
	return nil
}

func validRegion(r string) bool {
	if len(r) == 0 || len(r) > 64 {
		return false
	}
	for _, c := range r {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// logger returns the configured logger, writing to stderr through a
// logBuffer, and the function that writes what it holds and stops it;
// call it before the process exits.
func (c Config) logger() (*slog.Logger, func()) {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	buf := &logBuffer{w: os.Stderr}
	var h slog.Handler = slog.NewTextHandler(buf, opts)
	if c.LogFormat == "json" {
		h = slog.NewJSONHandler(buf, opts)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf.run(ctx)
	}()
	return slog.New(bufferedHandler{Handler: h, buf: buf}), func() {
		cancel()
		<-done
	}
}
