package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/otaport/otaport/cmd/internal/cli"
	"github.com/otaport/otaport/core/image"
	"github.com/otaport/otaport/fleet"
	"github.com/otaport/otaport/fleet/broker"
	"github.com/otaport/otaport/fleet/campaign"
	"github.com/otaport/otaport/fleet/firmware"
	"github.com/otaport/otaport/fleet/pki"
)

const long = `otaserve is otaport's cloud side. "otaserve run" serves the device registry, the
firmware, the campaigns, the REST API and an embedded MQTT broker; the device, image,
campaign and token commands drive a running otaserve over its REST API.

Client commands take --server URL (env OTASERVE_URL), --token T (env OTASERVE_TOKEN) and
--json; by default they read the URL and the bootstrap admin token that "otaserve run"
wrote to its data directory (--data, default otaserve-data). A token has a scope (read,
operator, admin) and an expiry: "otaserve token create" makes one.`

// newRoot returns otaserve's command tree.
func newRoot() *cobra.Command {
	root := cli.NewRoot("otaserve", "otaport's fleet server and its command line", long)
	root.AddCommand(runCommand(), deviceCommand(), imageCommand(), campaignCommand(), keysetCommand(), tokenCommand(), orderKeyCommand())
	return root
}

const defaultData = "otaserve-data"

func runCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run [--data DIR] [--db postgres://...] [--http ADDR] [--mqtt ADDR] [--broker URL[,URL...] [--nats-callout URL --nats-issuer FILE]] [--replica NAME [--advertise-url URL]] [--key PUB.pem]... [--order-key KEY.pem] [--tls-cert C --tls-key K]",
		Short: "serve the registry, firmware, campaigns, the REST API and the MQTT broker",
		Args:  cli.NoArgs,
	}
	fs := cmd.Flags()
	data := fs.String("data", defaultData, "data directory: database, firmware, token, keys, the fleet CA")
	db := fs.String("db", "", "`URL` of a PostgreSQL database to keep the registry, campaigns, tokens and firmware in, postgres://user@host:5432/otaport (env OTASERVE_DB; password in PGPASSWORD or ~/.pgpass); default the bbolt file DATA/fleet.db")
	firmwareCache := cli.Size{Bytes: firmware.DefaultCacheSize}
	fs.Var(&firmwareCache, "firmware-cache", "with --db: bytes of the local copies of firmware this process serves downloads from (DATA/firmware/cache), so that each image is read from the database once; 0 for none")
	httpAddr := fs.String("http", "127.0.0.1:8080", "address of the API and firmware server")
	mqttAddr := fs.String("mqtt", "127.0.0.1:1883", "address of the embedded MQTT broker")
	brokerURL := fs.String("broker", "", "external broker instead of the embedded one, tcp://operator:password@host:1883; a cluster's nodes separated by commas")
	natsCallout := fs.String("nats-callout", "", "with --broker on a NATS cluster's MQTT ports: answer its auth callout, nats://callout:password@host:4222,… (docs/otaserve.md)")
	natsIssuer := fs.String("nats-issuer", "", "`file` of the seed of the account key the cluster's auth_callout names as issuer (nk -gen account)")
	natsAccount := fs.String("nats-account", "FLEET", "the NATS `account` devices and otaserve are placed in (it needs JetStream)")
	replica := fs.String("replica", "", "`name` of this process among the otaserve processes of one PostgreSQL database (with --db postgres://... and --broker, any number share the work; default HOST-PID)")
	advertiseURL := fs.String("advertise-url", "", "with --replica: the https `URL` the other replicas reach this one at, to which they forward the operator actions only the campaigns' lease holder runs (default https://HTTP-ADDR when --http names a host; none on a wildcard address, and those actions are then answered 503 by the others)")
	publicURL := fs.String("public-url", "", "base URL devices download firmware from (default http://HTTP-ADDR)")
	token := fs.String("token", "", "an admin API token to serve with, kept hashed as the bootstrap token and written to DATA/token (default: the one in DATA/token, made at first start)")
	keyFiles := fs.StringArray("key", nil, "PEM `file` of a public key that signs images (repeatable)")
	orderKey := fs.String("order-key", "", "PEM `file` of the Ed25519 key that signs orders (default DATA/"+campaign.OrderKeyFile+", made at first start)")
	certFile := fs.String("tls-cert", "", "certificate PEM to serve HTTPS and MQTT over TLS with (with --tls-key); default: one of the fleet CA, made at start")
	keyFile := fs.String("tls-key", "", "private key PEM of --tls-cert")
	tlsHosts := fs.StringArray("tls-host", nil, "a `name` devices reach this server by, for the certificate made at start (repeatable; the listen addresses, --public-url's host and localhost are in it)")
	plain := fs.Bool("insecure-plain", false, "serve HTTP and MQTT without TLS: sign-ins, orders and reports can be read and changed on the way")
	plainMQTT := fs.String("insecure-plain-mqtt", "", "`addr`ess of a second MQTT listener, without TLS, for devices not yet moved to TLS (a migration period: remove it when they have)")
	plainFirmware := fs.String("insecure-plain-http", "", "`addr`ess of a firmware-only HTTP listener without TLS, for the devices of --insecure-plain-mqtt (images stay signed)")
	signinWindow := fs.Duration("signin-window", broker.DefaultSignInWindow, "how far a device's signed timestamp may be from this server's clock")
	timeless := fs.StringArray("allow-timeless", nil, "`product` key whose devices may sign in with the C SDK's fixed timestamp or none, which can be replayed (repeatable)")
	verbose := fs.BoolP("verbose", "v", false, "debug logs")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		level := slog.LevelInfo
		if *verbose {
			level = slog.LevelDebug
		}
		return serve(cmd.Context(), serveFlags{
			data: *data, db: cmp.Or(*db, os.Getenv("OTASERVE_DB")), httpAddr: *httpAddr, mqttAddr: *mqttAddr, brokerURL: *brokerURL, publicURL: *publicURL, replica: *replica, advertiseURL: *advertiseURL,
			natsCallout: *natsCallout, natsIssuer: *natsIssuer, natsAccount: *natsAccount,
			token: *token, keyFiles: *keyFiles, orderKey: *orderKey, certFile: *certFile, keyFile: *keyFile, tlsHosts: *tlsHosts, plain: *plain, plainMQTT: *plainMQTT, plainFirmware: *plainFirmware,
			signIn: broker.SignInPolicy{Window: *signinWindow, Timeless: *timeless}, firmwareCache: int64(firmwareCache.Bytes),
		}, cli.Logger(cmd, cmd.ErrOrStderr(), level), cmd.ErrOrStderr())
	}
	return cmd
}

// serveFlags are the settings of otaserve run.
type serveFlags struct {
	data, db, httpAddr, mqttAddr, brokerURL, publicURL, token, replica string
	advertiseURL                                                       string
	natsCallout, natsIssuer, natsAccount                               string
	keyFiles                                                           []string
	orderKey                                                           string
	certFile, keyFile                                                  string
	tlsHosts                                                           []string
	plain                                                              bool
	plainMQTT, plainFirmware                                           string
	signIn                                                             broker.SignInPolicy
	firmwareCache                                                      int64 // bytes; 0 for none
}

func serve(ctx context.Context, f serveFlags, log *slog.Logger, stderr io.Writer) error {
	if f.signIn.Window <= 0 {
		return fmt.Errorf("--signin-window %s: give a positive duration such as 15m; a sign-in whose timestamp is further from this server's clock is refused", f.signIn.Window)
	}
	keys, err := image.ReadPublicKeys(f.keyFiles)
	if err != nil {
		return fmt.Errorf("--key: %w", err)
	}
	var tlsConfig *tls.Config
	if f.plain && (f.certFile != "" || f.keyFile != "" || len(f.tlsHosts) > 0) {
		return cli.Usagef("--insecure-plain with --tls-cert, --tls-key or --tls-host: choose TLS or plain")
	}
	if f.plainMQTT != "" && (f.plain || f.brokerURL != "") {
		return cli.Usagef("--insecure-plain-mqtt is a plain listener beside the embedded broker's TLS one: it goes with neither --insecure-plain nor --broker")
	}
	if f.natsCallout != "" && f.brokerURL == "" {
		return cli.Usagef("--nats-callout without --broker: give the NATS cluster's MQTT ports as --broker tcp://otaserve:PASSWORD@host:1883,…")
	}
	if f.natsCallout == "" && f.natsIssuer != "" {
		return cli.Usagef("--nats-issuer without --nats-callout: the key signs the callout's answers")
	}
	if f.certFile != "" || f.keyFile != "" {
		cert, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
		if err != nil {
			return fmt.Errorf("--tls-cert %q / --tls-key %q: %w: give both, the certificate and its private key as PEM files", f.certFile, f.keyFile, err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if len(keys) == 0 {
		log.Warn("no --key given: image uploads will be refused until otaserve runs with the public key that signs them")
	}
	boards, err := catalogBoards()
	if err != nil {
		return err
	}
	srv, err := fleet.New(fleet.Config{
		DataDir: f.data, DB: f.db, FirmwareCache: cmp.Or(f.firmwareCache, -1), HTTPAddr: f.httpAddr, MQTTAddr: f.mqttAddr, BrokerURL: f.brokerURL, ReplicaID: f.replica, AdvertiseURL: f.advertiseURL,
		NATSCallout: f.natsCallout, NATSIssuer: f.natsIssuer, NATSAccount: f.natsAccount,
		Keys: keys, OrderKey: f.orderKey, Boards: boards, Token: f.token, PublicURL: f.publicURL, TLS: tlsConfig, SignIn: f.signIn, Logger: log,
		AutoTLS: !f.plain, TLSHosts: f.tlsHosts, MQTTPlainAddr: f.plainMQTT, FirmwarePlainAddr: f.plainFirmware,
	})
	if err != nil {
		return err
	}
	// The token is a lasting credential: it stays in its file (mode 0600)
	// and out of the log, which is often kept, shipped and shared.
	if _, generated := srv.Token(); generated {
		fmt.Fprintf(stderr, "otaserve: bootstrap admin token generated, in %s (readable by this user only); make narrower ones with otaserve token create\n", filepath.Join(f.data, "token"))
	}
	// The CLI on this machine finds the server through this file, which
	// matters when --http asked for port 0.
	scheme := "https"
	if f.plain {
		scheme = "http"
	}
	url, urlFile := scheme+"://"+srv.Addrs().HTTP, filepath.Join(f.data, "url")
	if err := os.WriteFile(urlFile, []byte(url+"\n"), 0o644); err != nil {
		srv.Close()
		return fmt.Errorf("write %s: %w", urlFile, err)
	}
	// A stale URL would send the CLI to a server that is gone.
	defer os.Remove(urlFile)
	a := srv.Addrs()
	fmt.Fprintf(stderr, "otaserve: API and firmware on %s, MQTT on %s\n", url, orExternal(a.MQTT, f.brokerURL))
	if a.MQTTPlain != "" {
		fmt.Fprintf(stderr, "otaserve: --insecure-plain-mqtt: MQTT without TLS on %s for devices not yet moved to TLS; remove it when they have\n", a.MQTTPlain)
	}
	if a.FirmwarePlain != "" {
		fmt.Fprintf(stderr, "otaserve: --insecure-plain-http: firmware without TLS on %s for the devices signed in without TLS\n", a.FirmwarePlain)
	}
	if err := sayLeftBehind(srv, f.data, stderr); err != nil {
		srv.Close()
		return err
	}
	switch {
	case f.plain:
		fmt.Fprintf(stderr, "otaserve: --insecure-plain: HTTP and MQTT in the clear; anyone on the way reads and changes sign-ins, orders and reports (images stay signed)\n")
	case len(srv.TLSHosts()) > 0:
		fmt.Fprintf(stderr, "otaserve: TLS with a certificate of the fleet CA for %s; devices pin %s (ca in device.yaml); another name: --tls-host\n",
			strings.Join(srv.TLSHosts(), ", "), filepath.Join(f.data, pki.CertFile))
	}
	// Single use and valid for minutes, unlike the token; a new one: POST
	// /api/v1/dashboard/login-link with a token, whose scope the session
	// gets.
	if link := srv.LoginURL(); link != "" {
		fmt.Fprintf(stderr, "otaserve: dashboard sign-in link (single use, expires in 5 minutes): %s\n", link)
	} else {
		fmt.Fprintf(stderr, "otaserve: no bootstrap token (an admin revoked it): sign in to the dashboard with a link from POST %s and a token\n", "/api/v1/dashboard/login-link")
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Run(ctx) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Stopping is bounded: a second signal ends the process at once (the
	// default action, restored by stop), and so does a shutdown that takes
	// too long. Either is safe for the data: every database commit is
	// atomic, and a device whose order or report was in flight is served
	// again when it reconnects.
	stop()
	select {
	case err := <-errc:
		return err
	case <-time.After(shutdownLimit):
		return fmt.Errorf("shutdown did not finish within %v; exiting without waiting for it", shutdownLimit)
	}
}

// shutdownLimit bounds the wait for Run to return after a signal: the HTTP
// grace period (5 s) plus closing the broker's and the devices' connections.
const shutdownLimit = 30 * time.Second

// sayLeftBehind names the devices the migration from before signed orders
// and TLS has not moved (fleet.Server.LeftBehind).
func sayLeftBehind(srv *fleet.Server, data string, stderr io.Writer) error {
	plain, unsigned, err := srv.LeftBehind()
	if err != nil {
		return err
	}
	if len(plain) > 0 {
		fmt.Fprintf(stderr, "otaserve: left behind: %d device(s) last signed in without TLS and cannot sign in to this server, which has no --insecure-plain-mqtt: %s; give them a device.yaml with broker ssl://, ca and order_key, or run with --insecure-plain-mqtt until they have\n",
			len(plain), strings.Join(plain, ", "))
	}
	if len(unsigned) > 0 {
		how := "they learn the order key from the endorsement every signed order carries"
		if _, err := os.Stat(fleet.EndorsementPath(data)); err != nil {
			how = "no order key endorsement: make one with otaserve order-key --endorse IMAGE-KEY.pem, or they never learn the order key"
		}
		fmt.Fprintf(stderr, "otaserve: %d device(s) still take unsigned orders (device.yaml without order_key): %s; %s\n", len(unsigned), strings.Join(unsigned, ", "), how)
	}
	return nil
}

func orExternal(addr, external string) string {
	if addr != "" {
		return addr
	}
	return "the external broker"
}
