// Command otaserve is otaport's cloud side: `otaserve run` serves the device
// registry, firmware, campaigns and the MQTT broker (package fleet); the
// other subcommands are a CLI over its REST API for operators and scripts.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/otaport/otaport/core/image"
	"github.com/otaport/otaport/fleet"
)

const usage = `usage: otaserve COMMAND [flags]

server:
  otaserve run [--data DIR] [--http ADDR] [--mqtt ADDR] [--broker URL] [--key PUB.pem]... [--tls-cert C --tls-key K]

devices:
  otaserve device add --product PK --name DN --board B [--group G] [--secret S]
  otaserve device list
  otaserve device get|delete PK/DN

images:
  otaserve image upload --board B [--version V] FILE
  otaserve image list
  otaserve image delete ID

campaigns:
  otaserve campaign create --image ID [--image ID]... --target product=PK|group=G|devices=pk/a,pk/b [--waves 1,10%,100%] [--success 80] [--error 20]
  otaserve campaign list
  otaserve campaign status|pause|resume|cancel|delete ID

Client commands take --server URL (env OTASERVE_URL), --token T (env
OTASERVE_TOKEN) and --json; by default they read the URL and token that
'otaserve run' wrote to its data directory (--data, default otaserve-data).
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit status (0 ok, 1
// failure, 2 usage).
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "run":
		err = serve(args[1:], stderr)
	case "device", "image", "campaign":
		err = client(args[0], args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "otaserve: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "otaserve: %v\n\n%s", err, usage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "otaserve: %v\n", err)
		return 1
	}
	return 0
}

// usageError is a mistake in the command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

const defaultData = "otaserve-data"

func serve(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("otaserve run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", defaultData, "data directory: database, firmware, token")
	httpAddr := fs.String("http", "127.0.0.1:8080", "address of the API and firmware server")
	mqttAddr := fs.String("mqtt", "127.0.0.1:1883", "address of the embedded MQTT broker")
	brokerURL := fs.String("broker", "", "external broker instead of the embedded one, tcp://operator:password@host:1883")
	publicURL := fs.String("public-url", "", "base URL devices download firmware from (default http://HTTP-ADDR)")
	token := fs.String("token", "", "operator API token (default: the stored one, generated at first start)")
	var keyFiles stringList
	fs.Var(&keyFiles, "key", "public key PEM that signs images (repeatable)")
	certFile := fs.String("tls-cert", "", "certificate PEM: serve HTTPS and MQTT over TLS (with --tls-key)")
	keyFile := fs.String("tls-key", "", "private key PEM of --tls-cert")
	verbose := fs.Bool("v", false, "debug logs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("run: unexpected argument %q", fs.Arg(0))
	}
	keys, err := image.ReadPublicKeys(keyFiles)
	if err != nil {
		return fmt.Errorf("--key: %w", err)
	}
	var tlsConfig *tls.Config
	if *certFile != "" || *keyFile != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			return fmt.Errorf("--tls-cert %q / --tls-key %q: %w: give both, the certificate and its private key as PEM files", *certFile, *keyFile, err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if len(keys) == 0 {
		log.Warn("no --key given: image uploads will be refused until otaserve runs with the public key that signs them")
	}
	boards, err := catalogBoards()
	if err != nil {
		return err
	}
	srv, err := fleet.New(fleet.Config{
		DataDir: *data, HTTPAddr: *httpAddr, MQTTAddr: *mqttAddr, BrokerURL: *brokerURL,
		Keys: keys, Boards: boards, Token: *token, PublicURL: *publicURL, TLS: tlsConfig, Logger: log,
	})
	if err != nil {
		return err
	}
	// The token is a lasting credential: it stays in its file (mode 0600)
	// and out of the log, which is often kept, shipped and shared.
	if _, generated := srv.Token(); generated {
		fmt.Fprintf(stderr, "otaserve: operator token generated, in %s (readable by this user only)\n", filepath.Join(*data, "token"))
	}
	// The CLI on this machine finds the server through this file, which
	// matters when --http asked for port 0.
	scheme := "http"
	if tlsConfig != nil {
		scheme = "https"
	}
	url, urlFile := scheme+"://"+srv.Addrs().HTTP, filepath.Join(*data, "url")
	if err := os.WriteFile(urlFile, []byte(url+"\n"), 0o644); err != nil {
		srv.Close()
		return fmt.Errorf("write %s: %w", urlFile, err)
	}
	// A stale URL would send the CLI to a server that is gone.
	defer os.Remove(urlFile)
	a := srv.Addrs()
	fmt.Fprintf(stderr, "otaserve: API and firmware on %s, MQTT on %s\n", url, orExternal(a.MQTT, *brokerURL))
	// Single use and valid for minutes, unlike the operator token; a new
	// one: POST /api/v1/dashboard/login-link with the token.
	fmt.Fprintf(stderr, "otaserve: dashboard sign-in link (single use, expires in 5 minutes): %s\n", srv.LoginURL())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
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

func orExternal(addr, external string) string {
	if addr != "" {
		return addr
	}
	return "the external broker"
}
