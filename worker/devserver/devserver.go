// Package devserver embeds a Temporal server, and its Web UI, in the SMQ
// process: what `smq dev` runs and what the end-to-end tests start. Its
// state lives in SQLite, in memory or in a file that survives a restart.
//
// It links the whole Temporal server (a large, slow build): import it only
// where it is needed.
package devserver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uioptions "github.com/temporalio/ui-server/v2/server/server_options"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/membership/static"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/common/primitives"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"

	"github.com/smq/smq/store/postgres/localpg"
)

// Default addresses: those of `temporal server start-dev`, so that
// Temporal's own tools and other SMQ nodes find the server where they expect.
const (
	DefaultGRPCAddr = "127.0.0.1:7233"
	DefaultUIAddr   = "127.0.0.1:8233"
)

// UIOff, as Config.UIAddr, starts no UI.
const UIOff = "off"

// Config configures the server.
type Config struct {
	// DBFile is the SQLite file that holds the server's state; it is
	// created with its schema when missing. Defaults to "" (in memory: the
	// state ends with the process).
	DBFile string
	// GRPCAddr is the frontend's address, an IP and a port. Port 0 takes a
	// free port. Defaults to DefaultGRPCAddr.
	GRPCAddr string
	// UIAddr is the Web UI's address, an IP and a port; UIOff turns the UI
	// off. Port 0 takes a free port. Defaults to DefaultUIAddr.
	UIAddr string
	// Namespace is created at start, if missing. Defaults to "default".
	Namespace string
	// Logger receives the server's log. Defaults to discarding it.
	Logger *slog.Logger
	// LogLevel is the least level of the server's own lines that reach
	// Logger; the server is chatty below it. Defaults to slog.LevelWarn.
	LogLevel slog.Level
}

// Server is a running embedded Temporal server.
type Server struct {
	server    temporal.Server
	ui        *uiserver.Server
	uiDone    chan struct{} // closed when the UI server returned
	grpcAddr  string
	uiAddr    string
	namespace string
	stopOnce  sync.Once
	// stopping is shared with the server's logger: set, its lines go to
	// DEBUG, for while it stops its services one by one they log each
	// other's absence.
	stopping *atomic.Bool
}

// Start starts the server and, unless it is off, the UI, and returns once
// the frontend accepts connections. Stop it with Stop.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	cfg.GRPCAddr = cmp.Or(cfg.GRPCAddr, DefaultGRPCAddr)
	cfg.UIAddr = cmp.Or(cfg.UIAddr, DefaultUIAddr)
	cfg.Namespace = cmp.Or(cfg.Namespace, "default")
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.LogLevel == 0 {
		cfg.LogLevel = slog.LevelWarn
	}

	ip, grpcPort, err := checkPort("grpc", cfg.GRPCAddr)
	if err != nil {
		return nil, err
	}
	var uiIP string
	var uiPort int
	if cfg.UIAddr != UIOff {
		// The UI server exits the whole process when its port is taken, so
		// the port is checked here, where an error can still be returned.
		if uiIP, uiPort, err = checkPort("ui", cfg.UIAddr); err != nil {
			return nil, err
		}
	}
	sqlCfg, err := sqlConfig(cfg.DBFile)
	if err != nil {
		return nil, err
	}
	const clusterName = "active"
	ns, err := sqliteschema.NewNamespaceConfig(clusterName, cfg.Namespace, false, nil)
	if err != nil {
		return nil, fmt.Errorf("namespace %q: %w", cfg.Namespace, err)
	}
	if err := sqliteschema.CreateNamespaces(sqlCfg, ns); err != nil {
		return nil, fmt.Errorf("create namespace %q: %w", cfg.Namespace, err)
	}

	// The server's other services (history, matching, worker) and the
	// frontend's HTTP API listen on free ports of the same IP; port 0 of
	// the frontend or the UI asks for one too. A port found free can be
	// taken by another process before the server listens on it, so a
	// build that fails on a taken port is tried again on other ports.
	var srv temporal.Server
	var grpcAddr string
	stopping := new(atomic.Bool)
	uiWant := uiPort
	for attempt := 1; ; attempt++ {
		ports, err := freePorts(ip, 6)
		if err != nil {
			return nil, err
		}
		port := cmp.Or(grpcPort, ports[4])
		if uiIP != "" {
			uiPort = cmp.Or(uiWant, ports[5])
		}
		grpcAddr = net.JoinHostPort(ip, strconv.Itoa(port))
		srv, err = newServer(cfg, stopping, serverConfig(ip, port, ports, sqlCfg, clusterName), map[primitives.ServiceName]static.Hosts{
			primitives.FrontendService: static.SingleLocalHost(grpcAddr),
			primitives.HistoryService:  static.SingleLocalHost(net.JoinHostPort(ip, strconv.Itoa(ports[0]))),
			primitives.MatchingService: static.SingleLocalHost(net.JoinHostPort(ip, strconv.Itoa(ports[1]))),
			primitives.WorkerService:   static.SingleLocalHost(net.JoinHostPort(ip, strconv.Itoa(ports[2]))),
		})
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EADDRINUSE) || attempt == startAttempts {
			return nil, fmt.Errorf("temporal server: %w", err)
		}
		cfg.Logger.Warn("temporal server: a port was taken; trying other ports", "error", err)
	}
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("start temporal server: %w", err)
	}
	s := &Server{server: srv, grpcAddr: grpcAddr, namespace: cfg.Namespace, stopping: stopping}

	if uiPort != 0 {
		s.uiAddr = net.JoinHostPort(uiIP, strconv.Itoa(uiPort))
		s.ui = uiserver.NewServer(uioptions.WithConfigProvider(&uiconfig.Config{
			Host:                uiIP,
			Port:                uiPort,
			TemporalGRPCAddress: grpcAddr,
			EnableUI:            true,
			DefaultNamespace:    cfg.Namespace,
			CORS:                uiconfig.CORS{CookieInsecure: true},
			HideLogs:            true,
			// Offline, the news fetch only fails.
			DisableNewsFetch: true,
		}))
		s.uiDone = make(chan struct{})
		go func() {
			defer close(s.uiDone)
			_ = s.ui.Start()
		}()
		if err := waitListening(ctx, s.uiAddr); err != nil {
			s.Stop()
			return nil, fmt.Errorf("temporal ui on %s: %w", s.uiAddr, err)
		}
	}
	if err := waitListening(ctx, grpcAddr); err != nil {
		s.Stop()
		return nil, fmt.Errorf("temporal frontend on %s: %w", grpcAddr, err)
	}
	return s, nil
}

// startAttempts bounds the builds of a server whose ports were taken.
const startAttempts = 3

// freePorts finds the ports a build listens on; a test replaces it.
var freePorts = localpg.FreePorts

// newServer builds the server. The server logs Fatal where it cannot go on
// (a listener it cannot open is one) and then goes on, expecting the
// process to have exited; while it is built, serverLogger turns Fatal into
// a panic of a *fatalError, returned here as the error.
func newServer(cfg Config, stopping *atomic.Bool, conf *config.Config, hosts map[primitives.ServiceName]static.Hosts) (srv temporal.Server, err error) {
	log := serverLogger{log: cfg.Logger, level: cfg.LogLevel, building: new(atomic.Bool), stopping: stopping}
	log.building.Store(true)
	defer log.building.Store(false)
	defer func() {
		switch r := recover().(type) {
		case nil:
		case *fatalError:
			srv, err = nil, r
		default:
			panic(r)
		}
	}()
	return temporal.NewServer(
		temporal.WithConfig(conf),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithStaticHosts(hosts),
		temporal.WithLogger(log),
		temporal.WithDynamicConfigClient(dynamicconfig.StaticClient{
			dynamicconfig.HistoryCacheHostLevelMaxSize.Key():                 8096,
			dynamicconfig.FrontendMaxNamespaceVisibilityRPSPerInstance.Key(): 100,
		}),
	)
}

// GRPCAddr returns the frontend's address, host:port, for clients.
func (s *Server) GRPCAddr() string { return s.grpcAddr }

// UIAddr returns the Web UI's address, host:port, or "" when it is off.
func (s *Server) UIAddr() string { return s.uiAddr }

// Namespace returns the namespace the server was started with.
func (s *Server) Namespace() string { return s.namespace }

// Stop stops the UI and the server. It may be called more than once.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		s.stopping.Store(true)
		if s.ui != nil {
			s.ui.Stop()
			<-s.uiDone
		}
		s.server.Stop()
	})
}

func sqlConfig(file string) (*config.SQL, error) {
	c := &config.SQL{PluginName: sqliteplugin.PluginName}
	if file == "" {
		// A shared in-memory database needs a name unique to this server.
		c.ConnectAttributes = map[string]string{"mode": "memory", "cache": "shared"}
		c.DatabaseName = "smq-" + uuid.NewString()
		return c, nil
	}
	c.ConnectAttributes = map[string]string{"mode": "rwc"}
	c.DatabaseName = file
	_, err := os.Stat(file)
	switch {
	case err == nil:
		return c, nil
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("temporal database: %w", err)
	}
	if _, err := os.Stat(filepath.Dir(file)); err != nil {
		return nil, fmt.Errorf("temporal database directory: %w", err)
	}
	if err := sqliteschema.SetupSchema(c); err != nil {
		return nil, fmt.Errorf("temporal database schema in %s: %w", file, err)
	}
	return c, nil
}

// serverConfig is a single-host server: every service on ip, one SQLite
// store for both persistence and visibility, one history shard.
func serverConfig(ip string, grpcPort int, ports []int, sqlCfg *config.SQL, clusterName string) *config.Config {
	frontend := net.JoinHostPort(ip, strconv.Itoa(grpcPort))
	var c config.Config
	c.Global.Membership.MaxJoinDuration = 30 * time.Second
	c.Global.Membership.BroadcastAddress = ip
	c.Persistence.DefaultStore = "sqlite"
	c.Persistence.VisibilityStore = "sqlite"
	c.Persistence.NumHistoryShards = 1
	c.Persistence.DataStores = map[string]config.DataStore{"sqlite": {SQL: sqlCfg}}
	c.ClusterMetadata = &cluster.Config{
		FailoverVersionIncrement: 10,
		MasterClusterName:        clusterName,
		CurrentClusterName:       clusterName,
		ClusterInformation: map[string]cluster.ClusterInformation{
			clusterName: {
				Enabled:                true,
				InitialFailoverVersion: 1,
				RPCAddress:             frontend,
				HTTPAddress:            net.JoinHostPort(ip, strconv.Itoa(ports[3])),
				// Empty or a UUID; the one stored at the first start wins.
				ClusterID: uuid.NewString(),
			},
		},
	}
	c.DCRedirectionPolicy.Policy = "noop"
	service := func(port int) config.Service {
		var s config.Service
		s.RPC.GRPCPort = port
		s.RPC.BindOnIP = ip
		return s
	}
	fe := service(grpcPort)
	fe.RPC.HTTPPort = ports[3]
	c.Services = map[string]config.Service{
		"frontend": fe,
		"history":  service(ports[0]),
		"matching": service(ports[1]),
		"worker":   service(ports[2]),
	}
	c.Archival.History.State = "disabled"
	c.Archival.Visibility.State = "disabled"
	c.NamespaceDefaults.Archival.History.State = "disabled"
	c.NamespaceDefaults.Archival.Visibility.State = "disabled"
	c.PublicClient.HostPort = frontend
	return &c
}

// checkPort parses addr (an IP and a port) and checks that the port is
// free; port 0 is left for the caller to pick.
func checkPort(what, addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("temporal %s address %q: %w", what, addr, err)
	}
	if host == "localhost" || host == "" {
		host = "127.0.0.1"
	}
	if net.ParseIP(host) == nil {
		return "", 0, fmt.Errorf("temporal %s address %q: want an IP address, not a name", what, addr)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("temporal %s address %q: bad port", what, addr)
	}
	if port == 0 {
		return host, 0, nil
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return "", 0, fmt.Errorf("temporal %s port %d is taken (is another `smq dev` or `temporal server start-dev` running?): %w", what, port, err)
	}
	return host, port, l.Close()
}

// waitListening waits until addr accepts TCP connections.
func waitListening(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			return c.Close()
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}
