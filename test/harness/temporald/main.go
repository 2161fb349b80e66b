// Command temporald runs SMQ's embedded Temporal server (worker/devserver)
// as a process of its own, for the tests: the harness starts it, stops it,
// kills it and starts it again on the same SQLite file and gRPC port, apart
// from the SMQ nodes that use it. It keeps the Temporal server out of the
// test binaries, which then build quickly (also with -race).
//
// It prints "temporald ready <grpc address>" once the frontend accepts
// connections, and stops gracefully on SIGINT or SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/smq/smq/worker/devserver"
)

func main() {
	dbFile := flag.String("db-file", "", "SQLite file of the server's state (empty: in memory)")
	grpcAddr := flag.String("grpc-addr", "127.0.0.1:0", "frontend address")
	uiAddr := flag.String("ui-addr", devserver.UIOff, "Web UI address, or off")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := devserver.Start(ctx, devserver.Config{DBFile: *dbFile, GRPCAddr: *grpcAddr, UIAddr: *uiAddr, Logger: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, "temporald:", err)
		os.Exit(1)
	}
	fmt.Printf("temporald ready %s\n", srv.GRPCAddr())
	<-ctx.Done()
	srv.Stop()
	fmt.Println("temporald stopped")
}
