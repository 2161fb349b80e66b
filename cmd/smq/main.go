// Command smq is the SMQ node and its tools: serve, dev, migrate, openapi,
// version.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/smq/smq/api"
	"github.com/smq/smq/store/postgres"
)

func main() {
	if err := rootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "smq:", err)
		os.Exit(1)
	}
}

func rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "smq",
		Short:         "SMQ, a scheduled message queue: send a message now, have it delivered later",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serveCmd(), devCmd(), migrateCmd(), openapiCmd(), versionCmd(), sendCmd(), pollCmd(), ackCmd(), statsCmd())
	return root
}

// signalContext is done on SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// configured gives cmd every setting as a flag and runs fn with the
// loaded, validated configuration.
func configured(cmd *cobra.Command, fn func(*cobra.Command, Config) error) func(*cobra.Command, []string) error {
	def := defaultConfig()
	addFlags(cmd.Flags(), def)
	return func(cmd *cobra.Command, _ []string) error {
		cfg, err := loadConfig(cmd.Flags(), def)
		if err == nil {
			err = cfg.validate()
		}
		if err != nil {
			return err
		}
		return fn(cmd, cfg)
	}
}

func serveCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a node: the API, the buffer and its flush, and the Temporal worker of the scheduler and janitor",
		Args:  cobra.NoArgs,
	}
	cmd.RunE = configured(cmd, func(cmd *cobra.Command, cfg Config) error {
		ctx, stop := signalContext()
		defer stop()
		log, flush := cfg.logger()
		defer flush()
		return runNode(ctx, cfg, log, nil)
	})
	return cmd
}

func migrateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply the embedded database migrations (idempotent)",
		Args:  cobra.NoArgs,
	}
	cmd.RunE = configured(cmd, func(cmd *cobra.Command, cfg Config) error {
		v, err := postgres.Migrate(cmd.Context(), cfg.DatabaseURL, "")
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "schema at version %d\n", v)
		return nil
	})
	return cmd
}

func openapiCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "openapi",
		Short: "Print the OpenAPI document (3.0, YAML)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := api.OpenAPIYAML()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "smq", version)
		},
	}
}
