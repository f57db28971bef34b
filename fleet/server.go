// Package fleet is the cloud side of otaport put together: the device
// registry and campaigns in one database file, the firmware store and its
// HTTP(S) server, the operator REST API, and the MQTT broker the devices
// sign in to (embedded, or an external Mosquitto/EMQX that otaserve joins as
// an operator). cmd/otaserve is a thin main over Server.
//
// The parts live in sub-packages (store, firmware, campaign, api, broker,
// dashboard); this package wires them, owns their lifetimes and serves what
// watches the whole process: health, readiness, version and metrics
// (ops.go).
package fleet

import (
	"cmp"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/otaport/otaport/fleet/api"
	"github.com/otaport/otaport/fleet/broker"
	"github.com/otaport/otaport/fleet/campaign"
	"github.com/otaport/otaport/fleet/dashboard"
	"github.com/otaport/otaport/fleet/firmware"
	"github.com/otaport/otaport/fleet/keysets"
	"github.com/otaport/otaport/fleet/natsauth"
	"github.com/otaport/otaport/fleet/pki"
	"github.com/otaport/otaport/fleet/secrets"
	"github.com/otaport/otaport/fleet/store"
)

// Config configures a Server. Zero values take the defaults noted.
type Config struct {
	// DataDir holds the database (fleet.db), the firmware blobs
	// (firmware/), the bootstrap admin token (token), the keys and the
	// fleet CA. Required, with DB too.
	DataDir string
	// DB, when set, is the URL of a PostgreSQL database (postgres://...)
	// that holds what fleet.db and firmware/ would: the records and the
	// firmware blobs, which several otaserve processes can share. The rest
	// of DataDir stays where it is; firmware/ then only holds uploads while
	// they are checked.
	DB string
	// FirmwareCache bounds, in bytes, the local copies of DB's firmware
	// blobs that this process serves downloads from (DataDir/firmware/cache);
	// default firmware.DefaultCacheSize, negative for none.
	FirmwareCache int64
	// HTTPAddr serves the API under /api/v1 and firmware under /firmware/;
	// default 127.0.0.1:8080. Port 0 picks a free port (see Addrs).
	HTTPAddr string
	// MQTTAddr is where the embedded broker listens; default 127.0.0.1:1883.
	// Unused when BrokerURL is set.
	MQTTAddr string
	// MQTTPlainAddr, with TLS, adds an embedded broker listener without TLS
	// for devices not yet moved to TLS (a migration period the operator
	// ends by removing it).
	MQTTPlainAddr string
	// FirmwarePlainAddr, with MQTTPlainAddr, serves firmware (and nothing
	// else) over plain HTTP at that address to the devices signed in on
	// the plain MQTT listener (migration.go).
	FirmwarePlainAddr string
	// BrokerURL selects an external broker instead of the embedded one,
	// "tcp://operator:password@host:1883" (mqtt://, ssl://, mqtts:// also
	// accepted); otaserve signs in with the user and password of the URL.
	// Several URLs separated by commas are the MQTT ports of a clustered
	// broker's nodes: otaserve connects to the first that answers and
	// moves to another when its node dies.
	BrokerURL string
	// ReplicaID names this process among the replicas of one PostgreSQL
	// database (with DB and BrokerURL set, any number of processes share
	// the work: docs/scaling.md); default host name and process id.
	ReplicaID string
	// AdvertiseURL is where the other replicas reach this one's HTTP
	// listener, https://HOST:PORT: recorded in the campaigns' lease while
	// this replica holds it, so that the others forward it the operator
	// actions only the holder runs. Default the scheme and address of
	// HTTPAddr when it names a host; with a wildcard address (":8443",
	// "0.0.0.0:8443") there is none, and the other replicas answer those
	// actions 503 while this one holds the lease.
	AdvertiseURL string
	// NATSCallout, with BrokerURL naming a NATS cluster's MQTT ports, makes
	// otaserve that cluster's auth callout (fleet/natsauth): the NATS URLs
	// of its nodes with the callout user, "nats://callout:pw@host:4222".
	// Devices then sign in by the rules of the embedded broker (SignIn),
	// and otaserve's own MQTT connection by BrokerURL's user and password.
	NATSCallout string
	// NATSIssuer is the file of the seed of the account key the cluster's
	// auth_callout names as issuer ("SA…", as nk -gen account writes it).
	NATSIssuer string
	// NATSAccount is the account the callout places devices and otaserve
	// in; default "FLEET". It needs JetStream, where MQTT keeps sessions.
	NATSAccount string
	// Keys verify uploaded images. Uploads are refused without one.
	Keys []crypto.PublicKey
	// OrderKey is the PEM file of the Ed25519 key that signs every order;
	// default DataDir/order-key.pem, generated at first start (mode 0600).
	// Devices trust its public half (otaserve order-key).
	OrderKey string
	// Boards are the boards devices and images may be for, by name, with
	// what each takes (cmd/otaserve passes the catalog's).
	Boards map[string]api.Board
	// Token, when set, is an admin API token the server takes as its
	// bootstrap token (replacing the one it made); empty means the one
	// in DataDir/token, made at the first start.
	Token string
	// PublicURL is the base of the firmware URLs sent to devices, for when
	// they reach this server by another name than HTTPAddr; default
	// http(s)://HTTPAddr.
	PublicURL string
	// StatementInterval is how often the signed release statement of each
	// product is published (cloud.Statement), each valid for three
	// intervals; default DefaultStatementInterval. Devices that hear none
	// for long report themselves as possibly frozen.
	StatementInterval time.Duration
	// SignIn is what the embedded broker asks of a device's sign-in beyond
	// its signature (transport, fresh timestamp, few failures).
	SignIn broker.SignInPolicy
	// TLS, when set, makes the HTTP server HTTPS (and the embedded
	// broker's listener TLS).
	TLS *tls.Config
	// AutoTLS, when TLS is nil, serves HTTPS and MQTT over TLS with a
	// certificate of the fleet CA (DataDir/ca.pem, what devices pin), made
	// at each start for the listen addresses, PublicURL's host, localhost
	// and TLSHosts.
	AutoTLS  bool
	TLSHosts []string
	Logger   *slog.Logger
	// Version is what /version reports; default the module version the Go
	// toolchain recorded in the binary.
	Version string
}

// Addrs are the addresses a Server listens on.
type Addrs struct {
	HTTP string // host:port
	MQTT string // host:port of the embedded broker, "" with an external one
	// MQTTPlain is the embedded broker's listener without TLS
	// (Config.MQTTPlainAddr), "" without one.
	MQTTPlain string
	// FirmwarePlain is the plain firmware listener
	// (Config.FirmwarePlainAddr), "" without one.
	FirmwarePlain string
}

// Server is a running fleet.
type Server struct {
	cfg       Config
	log       *slog.Logger
	store     *store.Store
	campaigns *campaign.Service
	// replica is set when this process is one of several on a PostgreSQL
	// database (DB and BrokerURL set).
	replica   *campaign.Replica
	broker    *broker.Broker
	callout   *natsauth.Service // with Config.NATSCallout
	httpLn    net.Listener
	http      *http.Server
	tokens    *api.Tokens
	token     string // the secret of DATA/token; "" when there is none
	generated bool
	devCA     *pki.CA
	secrets   *secrets.Sealer
	tlsHosts  []string // the names of the certificate AutoTLS made
	// advertised is the URL a replica records in the campaigns' lease
	// (Config.AdvertiseURL or derived), "" for none.
	advertised string
	opUser     string
	opPass     string
	brokerURL  string

	firmwareDir string
	firmware    *firmware.Store
	orderKey    ed25519.PrivateKey
	endorsement string // of the order key, by an image key; "" without
	plainLn     net.Listener
	plainHTTP   *http.Server
	keySets     *keysets.Service
	// keyPub publishes the key sets while Run runs (a keysets.Publisher).
	keyPub    atomic.Pointer[keysets.Publisher]
	metrics   *metrics
	dashboard *dashboard.Dashboard
	// serving is true while Run has the campaign service connected.
	serving atomic.Bool
	// patterns are what the HTTP listener's mux registered, in order.
	patterns []string
}

// routeMux is the HTTP listener's mux, remembering the patterns it
// registers: the test of docs/api.yaml reads them from the server itself
// rather than from a list that could drift from it.
type routeMux struct {
	*http.ServeMux
	patterns []string
}

func (m *routeMux) Handle(pattern string, h http.Handler) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.Handle(pattern, h)
}

func (m *routeMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(h))
}

// TokenSetting is the database setting where releases before scoped
// tokens kept their one operator token, in the clear; the first start of
// this release makes it the bootstrap admin token, hashed, and deletes it.
const TokenSetting = "api-token"

// New opens the data directory and binds the listeners, so Addrs is valid
// when it returns; Run serves until its context ends. A Server that is never
// Run must be closed with Close.
func New(cfg Config) (s *Server, err error) {
	if cfg.DataDir == "" {
		return nil, errors.New("fleet: DataDir is required")
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:8080"
	}
	if cfg.MQTTAddr == "" {
		cfg.MQTTAddr = "127.0.0.1:1883"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	// The clean-up closes what was opened so far; it holds its own pointer,
	// since every failed return sets s to nil before it runs.
	srv := &Server{cfg: cfg, log: cfg.Logger}
	s = srv
	defer func() {
		if err != nil {
			_ = srv.Close()
		}
	}()
	if st, err := os.Stat(cfg.DataDir); err == nil && !st.IsDir() {
		return nil, fmt.Errorf("data directory %s (--data) is a file: give a directory (it is created if missing)", cfg.DataDir)
	}
	if s.store, err = openStore(cfg); err != nil {
		return nil, err
	}
	if err := s.loadToken(); err != nil {
		return nil, err
	}
	if s.devCA, _, err = pki.Open(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("%w (--data %s)", err, cfg.DataDir)
	}
	if s.secrets, _, err = secrets.Open(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("%w (--data %s)", err, cfg.DataDir)
	}
	if err := s.sealStoredSecrets(); err != nil {
		return nil, err
	}
	if cfg.TLS == nil && cfg.AutoTLS {
		hosts, err := tlsHosts(cfg)
		if err != nil {
			return nil, err
		}
		cert, err := s.devCA.IssueServer(hosts)
		if err != nil {
			return nil, err
		}
		cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		s.cfg.TLS = cfg.TLS
		s.tlsHosts = hosts
	}
	if s.orderKey, err = s.loadOrderKey(); err != nil {
		return nil, err
	}
	if s.endorsement, err = s.loadEndorsement(); err != nil {
		return nil, err
	}
	s.firmwareDir = filepath.Join(cfg.DataDir, "firmware")
	var blobs *firmware.Store
	if shared := s.store.Blobs(); shared != nil {
		blobs, err = firmware.NewSharedStore(s.firmwareDir, shared, cmp.Or(cfg.FirmwareCache, firmware.DefaultCacheSize))
	} else {
		blobs, err = firmware.NewStore(s.firmwareDir)
	}
	if err != nil {
		return nil, err
	}
	s.firmware = blobs

	if s.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("listen for HTTP on %s (--http): %w%s", cfg.HTTPAddr, err, listenFix("--http", err))
	}
	base := strings.TrimSuffix(cfg.PublicURL, "/")
	if base == "" {
		scheme := "http"
		if cfg.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + s.httpLn.Addr().String()
	}

	if s.keySets, err = keysets.New(s.store, cfg.Keys); err != nil {
		return nil, err
	}
	// A deleted device is refused by the embedded broker's lookup and
	// disconnected at once; an external broker's sign-in is its own. The
	// broker is made below; embedded is set once, before HTTP serves.
	var embedded *broker.Broker
	revoke := func(pk, dn string) {
		if embedded != nil {
			embedded.Revoke(pk, dn)
		}
	}
	var campaignStore campaign.Store = s.store
	if cfg.AdvertiseURL != "" && !replicated(cfg) {
		return nil, errors.New("--advertise-url is where the other replicas reach this one: it goes with --db postgres://... and --broker, which make otaserve a replica")
	}
	if replicated(cfg) {
		id := cfg.ReplicaID
		if id == "" {
			host, _ := os.Hostname()
			// No '.': it names the broker client otaserve-ID, and NATS
			// refuses a client ID holding one.
			id = strings.ReplaceAll(fmt.Sprintf("%s-%d", host, os.Getpid()), ".", "-")
		}
		advertised, err := s.advertiseURL()
		if err != nil {
			return nil, err
		}
		if advertised == "" {
			s.log.Warn("this replica listens on every interface (--http "+cfg.HTTPAddr+") and has no --advertise-url: while it holds the campaigns' lease, the operator actions sent to another replica cannot be forwarded to it and are answered 503 saying why; give --advertise-url https://HOST:PORT, the address the other replicas reach it at",
				"replica", id)
		}
		s.advertised = advertised
		s.replica = campaign.NewReplica(campaign.ReplicaConfig{Store: s.store, ID: id, URL: advertised, Logger: cfg.Logger.With("part", "replica")})
		campaignStore = s.replica.Store()
	}
	s.campaigns, err = campaign.NewService(campaign.Config{
		Store:       campaignStore,
		Replica:     s.replica,
		FirmwareURL: func(img store.Image) string { return base + "/firmware/" + img.SHA256 },
		DeviceFirmwareURL: s.deviceFirmwareURL(base, func(pk, dn string) bool {
			return embedded != nil && embedded.SignedInPlain(pk, dn)
		}),
		OrderKey: s.orderKey, Endorsement: s.endorsement,
		Logger: cfg.Logger.With("part", "campaign"),
	})
	if err != nil {
		return nil, err
	}
	s.metrics = newMetrics(s)
	apiCfg := api.Config{
		Revoke: revoke, Certificates: s.devCA, Secrets: s.secrets,
		Store: s.store, Firmware: blobs, Campaigns: s.campaigns, Keys: cfg.Keys, Boards: cfg.Boards, Tokens: s.tokens,
		KeySets: s.keySets, PublishKeySets: s.publishKeySets,
		Logger: cfg.Logger.With("part", "api"),
	}
	if s.replica != nil {
		apiCfg.Replica, apiCfg.ForwardTLS, apiCfg.Forwarded = s.replica, s.forwardTLS(), s.metrics.countForwarded
	}
	apiHandler, err := api.New(apiCfg)
	if err != nil {
		return nil, err
	}
	mux := &routeMux{ServeMux: http.NewServeMux()}
	mux.Handle(api.Prefix+"/", s.metrics.timeAPI(apiHandler))
	fwHandler := s.metrics.countBytes(http.StripPrefix("/firmware", firmware.Handler(blobs)))
	mux.Handle("GET /firmware/{sha256}", fwHandler)
	if err := s.listenPlainFirmware(fwHandler); err != nil {
		return nil, err
	}
	s.handleOps(mux)
	dcfg := dashboard.Config{
		Store: s.store, Campaigns: s.campaigns, API: apiHandler, Tokens: s.tokens,
		Online: func() []string {
			if s.broker == nil {
				return nil
			}
			return s.broker.Connected()
		},
		Logger: cfg.Logger.With("part", "dashboard"),
	}
	if s.replica != nil {
		dcfg.Holder = api.NewForwarder(apiCfg)
	}
	s.dashboard, err = dashboard.New(dcfg)
	if err != nil {
		return nil, err
	}
	mux.Handle("/", s.dashboard)
	mux.Handle("POST "+dashboard.LinkPath, s.dashboard)
	s.patterns = mux.patterns
	s.http = &http.Server{Handler: mux, TLSConfig: cfg.TLS, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn)}

	if cfg.NATSCallout != "" && cfg.BrokerURL == "" {
		return nil, errors.New("--nats-callout without --broker: give the NATS cluster's MQTT ports as --broker tcp://otaserve:PASSWORD@host:1883,…")
	}
	if cfg.BrokerURL != "" {
		if s.brokerURL, s.opUser, s.opPass, err = splitBrokerURL(cfg.BrokerURL); err != nil {
			return nil, err
		}
		if cfg.NATSCallout != "" {
			if err := s.startCallout(); err != nil {
				return nil, err
			}
		}
	} else {
		// The service is the embedded broker's only operator, with a
		// password that lives as long as the process.
		s.opUser, s.opPass = "otaserve", randomHex(16)
		var deviceCAs *x509.CertPool
		if cfg.TLS != nil {
			deviceCAs = s.devCA.Pool()
		}
		s.broker, err = broker.New(broker.Config{
			Addr: cfg.MQTTAddr, TLS: cfg.TLS, DeviceCAs: deviceCAs, PlainAddr: cfg.MQTTPlainAddr,
			Lookup:         s.deviceSecret,
			Operators:      map[string]string{s.opUser: s.opPass},
			SignIn:         cfg.SignIn,
			OnDeviceSignIn: s.noteSignIn,
			Logger:         cfg.Logger.With("part", "broker"),
		})
		if err != nil {
			return nil, err
		}
		embedded = s.broker
		if err := s.broker.Start(context.Background()); err != nil {
			return nil, fmt.Errorf("start the embedded broker (--mqtt %s): %w%s", cfg.MQTTAddr, err, listenFix("--mqtt", err))
		}
		scheme := "tcp"
		if cfg.TLS != nil {
			scheme = "ssl"
		}
		s.brokerURL = scheme + "://" + s.broker.Addr().String()
	}
	return s, nil
}

// listenFix says how to fix a failed listen on the address of flag, for
// the one-line message a failed start prints.
func listenFix(flag string, err error) string {
	var addrErr *net.AddrError
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Sprintf(": another program (another otaserve?) listens there; stop it or pass another %s (port 0 picks a free one)", flag)
	case errors.Is(err, syscall.EACCES):
		return fmt.Sprintf(": ports below 1024 need privileges; pass another %s such as 127.0.0.1:8080", flag)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Sprintf(": no interface of this machine has that address; pass %s with one it has, or 0.0.0.0:PORT", flag)
	case errors.As(err, &addrErr):
		return fmt.Sprintf(": pass %s as HOST:PORT, such as 127.0.0.1:8080", flag)
	}
	return ""
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// loadToken settles the API tokens at start: it turns an earlier
// release's plain token into the bootstrap admin token, stored hashed, and
// settles the bootstrap token whose secret DATA/token holds (mode 0600),
// where the CLI on this machine finds it:
//   - --token: kept if it is a live token already, else it becomes the
//     bootstrap token, replacing the live one;
//   - DATA/token holding a live token: kept;
//   - otherwise, on a first start or when DATA/token was lost, a new
//     bootstrap token (the old one revoked). A bootstrap token an admin
//     revoked is not made again, and DATA/token goes: the named tokens are
//     the credentials then, and --token the way back in.
func (s *Server) loadToken() error {
	s.tokens = &api.Tokens{Store: s.store, Logger: s.log.With("part", "api")}
	if err := s.migrateToken(); err != nil {
		return err
	}
	path := filepath.Join(s.cfg.DataDir, "token")
	secret, flag := s.cfg.Token, "--token"
	if secret == "" {
		b, err := os.ReadFile(path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("read the bootstrap token: %w", err)
		}
		secret, flag = strings.TrimSpace(string(b)), ""
	}
	live := false
	if secret != "" {
		_, err := s.tokens.Authenticate(secret)
		var authErr *api.AuthError
		if err != nil && !errors.As(err, &authErr) {
			return err
		}
		live = err == nil
		if authErr != nil && flag != "" && !strings.HasPrefix(authErr.Reason, "unknown") {
			return fmt.Errorf("--token: %s; give another token", authErr.Reason)
		}
	}
	if !live {
		ts, err := s.store.Tokens()
		if err != nil {
			return err
		}
		var bootstrap *store.Token
		for i, t := range ts {
			if t.Name == api.BootstrapToken && (bootstrap == nil || t.Live(time.Now())) {
				bootstrap = &ts[i]
			}
		}
		switch {
		case flag == "" && bootstrap != nil && !bootstrap.Live(time.Now()):
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove the revoked bootstrap token: %w", err)
			}
			s.log.Info("the bootstrap token was revoked: no DATA/token; use a token of otaserve token create, or start with --token to make a new bootstrap token")
			return nil
		case bootstrap != nil && bootstrap.Live(time.Now()):
			if _, err := s.store.RevokeToken(api.BootstrapToken, time.Now().UTC()); err != nil {
				return err
			}
			if flag == "" {
				s.log.Warn("DATA/token was missing or held no live token: the bootstrap token is replaced", "file", path)
			}
		}
		if flag == "" {
			secret, s.generated = api.NewSecret(), true
		}
		if _, err := s.tokens.Put(api.BootstrapToken, api.ScopeAdmin, secret, time.Time{}); err != nil {
			return fmt.Errorf("store the bootstrap token: %w", err)
		}
	}
	s.token = secret
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("write the bootstrap token to %s: %w", path, err)
	}
	return nil
}

// openStore opens the database Config names: PostgreSQL at DB, or the
// bbolt file in DataDir.
func openStore(cfg Config) (*store.Store, error) {
	// The data directory holds more than the database (keys, the CA, the
	// token), so it is made here whichever database is used.
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory %s (--data): %w", cfg.DataDir, err)
	}
	if cfg.DB == "" {
		st, err := store.Open(filepath.Join(cfg.DataDir, "fleet.db"))
		if err != nil {
			return nil, fmt.Errorf("%w (--data %s)", err, cfg.DataDir)
		}
		return st, nil
	}
	if !store.IsPostgresURL(cfg.DB) {
		shown := cfg.DB
		if u, err := url.Parse(cfg.DB); err == nil {
			shown = u.Redacted() // a password stays out of the message
		}
		return nil, fmt.Errorf("--db %q: not a PostgreSQL URL: give postgres://user@host:5432/database, or leave --db out for the file in --data", shown)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := store.OpenPostgres(ctx, cfg.DB)
	if err != nil {
		return nil, fmt.Errorf("%w (--db)", err)
	}
	if replicated(cfg) {
		return st, nil // the campaigns have a lease instead
	}
	if err := st.Claim(ctx); err != nil {
		st.Close()
		return nil, fmt.Errorf("%w (--db)", err)
	}
	return st, nil
}

// replicated reports whether this process is one of several sharing a
// database: PostgreSQL and an external broker, which every replica reaches.
// With the embedded broker, devices sign in to one process, whose reports
// the others would not receive, so that one claims the database alone.
func replicated(cfg Config) bool {
	return store.IsPostgresURL(cfg.DB) && cfg.BrokerURL != ""
}

// migrateToken turns the plain operator token of an earlier release
// (setting TokenSetting) into the bootstrap admin token, hashed, in one
// transaction. Its secret stays in DATA/token, so the CLI keeps working.
func (s *Server) migrateToken() error {
	migrated := false
	err := s.store.Write(func(w *store.Writer) error {
		plain, ok := w.Setting(TokenSetting)
		if !ok {
			return nil
		}
		migrated = true
		err := w.AddToken(store.Token{Name: api.BootstrapToken, Scope: string(api.ScopeAdmin), Hash: api.HashSecret(plain), Created: time.Now().UTC()})
		if err != nil && !errors.Is(err, store.ErrExists) {
			return err
		}
		return w.DeleteSetting(TokenSetting)
	})
	if err != nil {
		return fmt.Errorf("store the earlier release's operator token hashed: %w", err)
	}
	if migrated {
		s.log.Info("the operator token of an earlier release is now the bootstrap admin token, stored hashed (pages bbolt freed may keep the old bytes until reused: bbolt compact drops them)")
	}
	return nil
}

// loadOrderKey reads the order key: Config.OrderKey's file, or the data
// directory's, made at the first start.
func (s *Server) loadOrderKey() (ed25519.PrivateKey, error) {
	path, flag := s.cfg.OrderKey, "--order-key"
	if path == "" {
		path, flag = OrderKeyPath(s.cfg.DataDir), "--data"
	}
	key, created, err := campaign.LoadOrderKey(path, s.cfg.OrderKey == "")
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, flag)
	}
	if created {
		s.log.Info("order key generated; give devices its public half (otaserve order-key)", "file", path)
	}
	return key, nil
}

// OrderKeyPath is where otaserve keeps its order key in data directory dir.
func OrderKeyPath(dir string) string { return filepath.Join(dir, campaign.OrderKeyFile) }

// OrderPublicKey is the PEM public key devices check orders with.
func (s *Server) OrderPublicKey() ([]byte, error) { return campaign.OrderPublicKeyPEM(s.orderKey) }

// splitBrokerURL turns "mqtt://user:pass@host:1883", or several such URLs
// separated by commas, into paho's URLs (separated by commas again) and the
// credentials: those of the URLs that have some, which must agree.
func splitBrokerURL(raw string) (brokerURL, user, pass string, err error) {
	var urls []string
	for _, one := range strings.Split(raw, ",") {
		u, us, pw, err := splitOneBrokerURL(strings.TrimSpace(one))
		if err != nil {
			return "", "", "", err
		}
		if us != "" || pw != "" {
			if (user != "" || pass != "") && (us != user || pw != pass) {
				return "", "", "", fmt.Errorf("broker URLs %q (--broker): two different users; give the user and password once, in the first URL", raw)
			}
			user, pass = us, pw
		}
		urls = append(urls, u)
	}
	return strings.Join(urls, ","), user, pass, nil
}

func splitOneBrokerURL(raw string) (brokerURL, user, pass string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", "", fmt.Errorf("broker URL %q (--broker): %w", raw, err)
	}
	switch u.Scheme {
	case "mqtt", "tcp":
		u.Scheme = "tcp"
	case "mqtts", "ssl", "tls":
		u.Scheme = "ssl"
	case "ws", "wss":
	default:
		return "", "", "", fmt.Errorf("broker URL %q (--broker): scheme %q; use tcp://, mqtt://, ssl://, mqtts://, ws:// or wss://", raw, u.Scheme)
	}
	if u.Host == "" || u.Port() == "" {
		return "", "", "", fmt.Errorf("broker URL %q (--broker): give host and port, as tcp://operator:password@127.0.0.1:1883", raw)
	}
	if u.User != nil {
		user = u.User.Username()
		pass, _ = u.User.Password()
	}
	u.User = nil
	return u.String(), user, pass, nil
}

// Addrs returns where the server listens.
func (s *Server) Addrs() Addrs {
	a := Addrs{HTTP: s.httpLn.Addr().String()}
	if s.broker != nil {
		if addr := s.broker.Addr(); addr != nil { // nil once the broker is closed
			a.MQTT = addr.String()
		}
		if addr := s.broker.PlainAddr(); addr != nil {
			a.MQTTPlain = addr.String()
		}
	}
	if s.plainLn != nil {
		a.FirmwarePlain = s.plainLn.Addr().String()
	}
	return a
}

// sealStoredSecrets seals the secrets an earlier version stored in the
// clear, in one transaction: after the first start of this version the
// database holds none.
func (s *Server) sealStoredSecrets() error {
	devs, err := s.store.Devices()
	if err != nil {
		return err
	}
	var clear []store.Device
	for _, d := range devs {
		if d.DeviceSecret != "" && !secrets.Sealed(d.DeviceSecret) {
			clear = append(clear, d)
		}
	}
	if len(clear) == 0 {
		return nil
	}
	err = s.store.Write(func(w *store.Writer) error {
		for _, d := range clear {
			sealed, err := s.secrets.Seal(d.Key(), d.DeviceSecret)
			if err != nil {
				return err
			}
			if err := w.UpdateDevice(d.ProductKey, d.DeviceName, func(dev *store.Device) error {
				dev.DeviceSecret = sealed
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("seal the device secrets stored in the clear: %w", err)
	}
	s.log.Info("device secrets sealed at rest", "devices", len(clear), "key", secrets.KeyFile)
	return nil
}

// tlsHosts lists the names a certificate made at start must carry: those
// the listeners and PublicURL are reached by, localhost, and the extra
// ones asked for. A listener on every interface adds the machine's name.
func tlsHosts(cfg Config) ([]string, error) {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	add := func(h string) {
		if h != "" && !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	for _, addr := range []string{cfg.HTTPAddr, cfg.MQTTAddr} {
		h, _, err := net.SplitHostPort(addr)
		if err != nil {
			continue // the listener reports it, naming its flag
		}
		if ip := net.ParseIP(h); h == "" || (ip != nil && ip.IsUnspecified()) {
			if name, err := os.Hostname(); err == nil {
				add(name)
			}
			continue
		}
		add(h)
	}
	if cfg.PublicURL != "" {
		u, err := url.Parse(cfg.PublicURL)
		if err != nil || u.Hostname() == "" {
			return nil, fmt.Errorf("public URL %q (--public-url): want a URL such as https://fleet.example:8080", cfg.PublicURL)
		}
		add(u.Hostname())
	}
	if cfg.AdvertiseURL != "" {
		// The other replicas verify this name when they forward to
		// this one.
		u, err := url.Parse(cfg.AdvertiseURL)
		if err != nil || u.Hostname() == "" {
			return nil, fmt.Errorf("advertise URL %q (--advertise-url): want a URL such as https://10.0.0.5:8443", cfg.AdvertiseURL)
		}
		add(u.Hostname())
	}
	for _, h := range cfg.TLSHosts {
		add(h)
	}
	return hosts, nil
}

// advertiseURL is the URL this replica records in the campaigns' lease:
// Config.AdvertiseURL, checked, or the scheme and address of the HTTP
// listener when it names a host; "" when it listens on a wildcard address,
// which the other replicas cannot dial.
func (s *Server) advertiseURL() (string, error) {
	scheme := "http"
	if s.cfg.TLS != nil {
		scheme = "https"
	}
	if raw := s.cfg.AdvertiseURL; raw != "" {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return "", fmt.Errorf("--advertise-url %q: want the URL the other replicas reach this one at, such as %s://10.0.0.5:8443", raw, scheme)
		}
		if u.Scheme != scheme {
			s.log.Warn("--advertise-url's scheme is not the one this server serves: forwarded requests may fail", "advertise_url", raw, "serves", scheme)
		}
		return strings.TrimSuffix(u.String(), "/"), nil
	}
	host, _, err := net.SplitHostPort(s.cfg.HTTPAddr)
	if err != nil {
		return "", nil // net.Listen took it, so this does not happen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return "", nil
	}
	// The port the listener has: --http HOST:0 picks one.
	_, port, err := net.SplitHostPort(s.httpLn.Addr().String())
	if err != nil {
		return "", err
	}
	return scheme + "://" + net.JoinHostPort(host, port), nil
}

// AdvertiseURL returns the URL this replica records in the campaigns'
// lease, "" when it is not a replica or advertises none.
func (s *Server) AdvertiseURL() string { return s.advertised }

// forwardTLS verifies the replica an operator action is forwarded to. The
// replicas share the data directory's fleet CA, which signs the
// certificate each makes at start; a certificate given with --tls-cert may
// be of a CA the system trusts.
func (s *Server) forwardTLS() *tls.Config {
	pool := s.devCA.Pool()
	if !s.cfg.AutoTLS || len(s.tlsHosts) == 0 {
		if sys, err := x509.SystemCertPool(); err == nil {
			sys.AppendCertsFromPEM(s.devCA.CertPEM())
			pool = sys
		}
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// TLSHosts returns the names of the certificate the server made for itself
// at start (Config.AutoTLS), none when it was given one or serves plain.
func (s *Server) TLSHosts() []string { return slices.Clone(s.tlsHosts) }

// Token returns the secret of the bootstrap token in DATA/token ("" when
// an admin revoked it) and whether this start made it.
func (s *Server) Token() (token string, generated bool) { return s.token, s.generated }

// LoginURL makes a new single-use sign-in link to the dashboard for the
// token of DATA/token, valid for a few minutes: "http://ADDR/?login=SECRET";
// "" without that token. It is a credential until it is used or expires;
// print it for the operator, never log it.
func (s *Server) LoginURL() string {
	if s.token == "" {
		return ""
	}
	caller, err := s.tokens.Authenticate(s.token)
	if err != nil {
		return ""
	}
	scheme := "http"
	if s.cfg.TLS != nil {
		scheme = "https"
	}
	link, err := s.dashboard.LoginLink(caller)
	if err != nil {
		s.log.Warn("no dashboard sign-in link", "err", err)
		return ""
	}
	return scheme + "://" + s.httpLn.Addr().String() + link
}

// Run connects the campaign service to the broker and serves HTTP until ctx
// ends, then stops everything in order and releases the data directory.
func (s *Server) Run(ctx context.Context) error {
	defer s.Close()
	dialCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	clientID, handle := "otaserve", s.campaigns.HandleMessages
	if s.replica != nil {
		// Each replica has its own session at the broker, and stores
		// the reports for the lease holder.
		clientID, handle = "otaserve-"+s.replica.ID(), s.replica.Handle
	}
	mq, err := campaign.Dial(dialCtx, campaign.MQTTConfig{
		URL: s.brokerURL, Username: s.opUser, Password: s.opPass, ClientID: clientID,
		TLS: s.operatorTLS(), Logger: s.log.With("part", "mqtt"), Retry: s.broker == nil,
		// A replica's handler only stores the reports, and fails only
		// when the database does: they are acknowledged once stored.
		AckStored: s.replica != nil,
	}, handle)
	cancel()
	if err != nil {
		if s.broker == nil {
			return fmt.Errorf("%w (--broker): is the broker running, and does it take otaserve's user and password?", err)
		}
		return err
	}
	defer mq.Close()
	// Orders to the embedded broker go in-process: no acknowledgement to
	// wait for, no round trip through our own connection.
	var pub campaign.Publisher = mq
	if s.broker != nil {
		pub = s.broker
	}
	s.campaigns.SetPublisher(pub)
	defer s.campaigns.SetPublisher(nil)
	if s.replica != nil {
		repCtx, stopReplica := context.WithCancel(ctx)
		replicaDone := make(chan struct{})
		go func() {
			defer close(replicaDone)
			_ = s.replica.Run(repCtx, pub)
		}()
		// Before the MQTT client closes: the lease is given up once its
		// last orders are marked.
		defer func() { stopReplica(); <-replicaDone }()
	}
	if kp, ok := pub.(keysets.Publisher); ok {
		s.keyPub.Store(&kp)
		defer s.keyPub.Store(nil)
	}
	stmtCtx, stopStatements := context.WithCancel(ctx)
	statementsDone := make(chan struct{})
	go func() {
		defer close(statementsDone)
		s.publishStatements(stmtCtx, pub)
	}()
	defer func() { stopStatements(); <-statementsDone }()
	s.serving.Store(true)
	defer s.serving.Store(false)

	errc := make(chan error, 2) // the HTTP listener's and the plain firmware one's
	go func() {
		var err error
		if s.cfg.TLS != nil {
			err = s.http.ServeTLS(s.httpLn, "", "")
		} else {
			err = s.http.Serve(s.httpLn)
		}
		errc <- err
	}()
	if s.plainHTTP != nil {
		go func() { errc <- s.plainHTTP.Serve(s.plainLn) }()
	}
	s.log.Info("otaserve running", "http", s.Addrs().HTTP, "mqtt", s.brokerURL)
	select {
	case err := <-errc:
		return fmt.Errorf("serve HTTP: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.http.Shutdown(shutCtx); err != nil {
		// A download still running after the grace period is cut: a device
		// resumes it with a Range request, so stopping is not an error.
		s.log.Warn("HTTP connections still open after the grace period; closing them", "err", err)
		_ = s.http.Close()
	}
	if s.plainHTTP != nil {
		if err := s.plainHTTP.Shutdown(shutCtx); err != nil {
			_ = s.plainHTTP.Close()
		}
	}
	return nil
}

// DefaultStatementInterval is how often release statements go out by
// default: a device's freeze watch (a day by default) hears of many before
// it worries.
const DefaultStatementInterval = 10 * time.Minute

// publishStatements publishes each product's signed release statement at
// once and then every StatementInterval, until ctx ends.
func (s *Server) publishStatements(ctx context.Context, pub campaign.Publisher) {
	every := cmp.Or(s.cfg.StatementInterval, DefaultStatementInterval)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := s.campaigns.PublishStatements(ctx, pub, time.Now(), 3*every); err != nil && ctx.Err() == nil {
			s.log.Warn("release statements", "err", err)
		}
		// The chain is retained; sending it again reaches the products
		// registered since, and a broker that lost it.
		if err := s.publishKeySets(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("key sets", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// publishKeySets sends the key set chain to every product of the fleet.
func (s *Server) publishKeySets(ctx context.Context) error {
	kp := s.keyPub.Load()
	if kp == nil {
		return nil // not serving: Run sends it when it starts
	}
	devs, err := s.store.Devices()
	if err != nil {
		return fmt.Errorf("key sets: %w", err)
	}
	var products []string
	for _, d := range devs {
		if !slices.Contains(products, d.ProductKey) {
			products = append(products, d.ProductKey)
		}
	}
	return s.keySets.Publish(ctx, *kp, products)
}

// operatorTLS is the TLS the service's own MQTT connection uses. To the
// embedded broker it pins the server's own certificates: the connection is
// to ourselves over loopback, where the certificate's host names need not
// match. To an external ssl:// broker it verifies as usual.
func (s *Server) operatorTLS() *tls.Config {
	if s.cfg.TLS == nil || s.broker == nil {
		if strings.HasPrefix(s.brokerURL, "ssl://") || strings.HasPrefix(s.brokerURL, "wss://") {
			return &tls.Config{MinVersion: tls.VersionTLS12}
		}
		return nil
	}
	own := map[string]bool{}
	for _, c := range s.cfg.TLS.Certificates {
		if len(c.Certificate) > 0 {
			own[string(c.Certificate[0])] = true
		}
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by the pinning below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) > 0 && own[string(raw[0])] {
				return nil
			}
			return errors.New("embedded broker presented a certificate that is not this server's")
		},
	}
}

// Close releases what New acquired. Run calls it on return.
func (s *Server) Close() error {
	var errs []error
	if s.http != nil {
		errs = append(errs, ignoreClosed(s.http.Close()))
	}
	if s.httpLn != nil {
		errs = append(errs, ignoreClosed(s.httpLn.Close()))
	}
	if s.plainHTTP != nil {
		errs = append(errs, ignoreClosed(s.plainHTTP.Close()))
	}
	if s.plainLn != nil {
		errs = append(errs, ignoreClosed(s.plainLn.Close()))
	}
	if s.broker != nil {
		errs = append(errs, s.broker.Close())
		s.broker = nil
	}
	if s.callout != nil {
		errs = append(errs, s.callout.Close())
		s.callout = nil
	}
	if s.store != nil {
		errs = append(errs, s.store.Close())
		s.store = nil
	}
	if s.firmware != nil {
		errs = append(errs, s.firmware.Close())
		s.firmware = nil
	}
	return errors.Join(errs...)
}

func ignoreClosed(err error) error {
	if errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// deviceSecret is the secret of a registered device, for the sign-in.
func (s *Server) deviceSecret(pk, dn string) (string, bool) {
	d, err := s.store.Device(pk, dn)
	if err != nil {
		return "", false
	}
	secret, err := s.secrets.Open(d.Key(), d.DeviceSecret)
	if err != nil {
		s.log.Error("device sign-in impossible", "err", err)
		return "", false
	}
	return secret, true
}

// startCallout makes otaserve the NATS cluster's auth callout, with the
// embedded broker's sign-in rule and otaserve's own operator.
func (s *Server) startCallout() error {
	if s.opUser == "" || s.opPass == "" {
		return errors.New("--broker without a user and password: with --nats-callout otaserve signs its own MQTT connection in, give tcp://otaserve:PASSWORD@host:1883")
	}
	if s.cfg.NATSIssuer == "" {
		return errors.New("--nats-callout without --nats-issuer: give the file of the seed of the account key the cluster's auth_callout names as issuer (nk -gen account)")
	}
	seed, err := os.ReadFile(s.cfg.NATSIssuer)
	if err != nil {
		return fmt.Errorf("--nats-issuer: %w", err)
	}
	// The seed's line ("SA…"), wherever it is: nk -gen account -pubout
	// writes the public key on the next.
	issuer, err := nkeys.ParseDecoratedNKey(seed)
	if err != nil {
		return fmt.Errorf("--nats-issuer %s: %w: the file holds one account seed, \"SA…\", as nk -gen account writes it", s.cfg.NATSIssuer, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s.callout, err = natsauth.Start(ctx, natsauth.Config{
		URL: s.cfg.NATSCallout, Issuer: issuer, Account: cmp.Or(s.cfg.NATSAccount, "FLEET"),
		Gate:           broker.NewGate(s.deviceSecret, map[string]string{s.opUser: s.opPass}, s.cfg.SignIn),
		DeviceCAs:      s.devCA.Pool(),
		OnDeviceSignIn: func(pk, dn string) { s.noteSignIn(pk, dn, false) },
		Logger:         s.log.With("part", "natsauth"),
	})
	if err != nil {
		return fmt.Errorf("%w (--nats-callout): is the cluster running, and does auth_callout's auth_users name this user?", err)
	}
	return nil
}
