// Package natstest is test support: a cluster of NATS servers on loopback,
// each node a nats-server process, with MQTT and JetStream enabled and the
// auth callout that fleet/natsauth answers configured, as docs/otaserve.md
// shows it for a real deployment. Tests start otaserve's callout service
// against it and connect devices to its MQTT ports.
//
// The server is built once per version from the module this one requires,
// without the race detector and into the user's cache directory, or taken
// from $NATS_SERVER when that names a binary. A node in the test's own
// process would run race-instrumented and share the test's two cores'
// scheduler: under a whole suite's load its JetStream missed its own
// timeouts, where a separate, uninstrumented process, as in production,
// does not. A process can also be killed as a crash kills one.
package natstest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/otaport/otaport/internal/loopbacktest"
)

// Names in the cluster's configuration.
const (
	// Account is where devices and otaserve's operator are placed; it has
	// JetStream, where the MQTT gateway keeps sessions.
	Account = "FLEET"
	// CalloutUser is the user of the AUTH account the callout service
	// signs in as (auth_callout's auth_users).
	CalloutUser = "callout"
)

// Options configure Start.
type Options struct {
	// Nodes is the cluster's size; 0 means 3. JetStream needs a majority
	// alive: three nodes survive one killed.
	Nodes int
	// Logf, when set, receives the servers' logs (t.Logf, say). Without
	// it, the last of each node's log is given to the test's log if the
	// test fails.
	Logf func(format string, args ...any)
	// ConsumerInactiveThreshold is the MQTT gateway's
	// consumer_inactive_threshold: how long the consumers of a session
	// without a connection are kept. 0 keeps them for ever, the server's
	// default.
	ConsumerInactiveThreshold time.Duration
	// TLS makes the MQTT ports TLS (ssl://), with a certificate for
	// 127.0.0.1 made for the cluster (Cluster.CAFile).
	TLS bool
	// ClientCAFile, with TLS, makes the MQTT ports ask every client for a
	// certificate that this PEM file's CAs issued (verify: true): the
	// NATS server takes certificates from all its MQTT clients or none.
	ClientCAFile string
}

// Cluster is a running cluster.
type Cluster struct {
	// Issuer is the account key pair auth_callout names as issuer: the
	// callout service signs with it.
	Issuer nkeys.KeyPair
	// CalloutPassword is CalloutUser's password.
	CalloutPassword string
	// CAFile is the PEM certificate of the MQTT ports with Options.TLS,
	// which clients trust as their CA.
	CAFile string
	nodes  []*node
	scheme string // of the MQTT ports: tcp, or ssl with TLS
	pool   *x509.CertPool
	t      testing.TB
}

type node struct {
	name                string
	natsPort, mqttPort  int
	clusterPort, window int // window: the monitoring port
	cmd                 *exec.Cmd
	exited              chan struct{}
	log                 *tail
	killed              bool
}

// config is one node's configuration file: what docs/otaserve.md asks of a
// deployment, on loopback.
const config = `server_name: %[1]s
listen: 127.0.0.1:%[2]d
# Monitoring, which the test reads: health, JetStream, connections.
http: 127.0.0.1:%[13]d
jetstream { store_dir: %[3]q, max_memory_store: 64MB, max_file_store: 1GB }
cluster {
  name: otaport
  listen: 127.0.0.1:%[4]d
  routes: [ %[5]s ]
}
mqtt {
  listen: 127.0.0.1:%[6]d
  # Sessions and retained messages on every node, so that one node's loss
  # loses neither.
  stream_replicas: %[7]d
  # Making a session or a subscription's consumer waits for the stream's
  # leader; under load the default 5 s fails sign-ins the device then
  # repeats. Below the devices' 30 s, so they hear the refusal.
  js_api_timeout: "20s"
  %[12]s
}
accounts {
  AUTH { users: [ { user: %[8]s, password: %[9]q } ] }
  %[10]s { jetstream: enabled }
  SYS {}
}
system_account: SYS
authorization {
  # How long a sign-in may wait for the callout (default 2 s): otaserve
  # checks the device in its store.
  timeout: 10
  auth_callout {
    issuer: %[11]s
    auth_users: [ %[8]s ]
    account: AUTH
  }
}
`

// Start starts the cluster and waits until JetStream has a leader and
// every node is current with it; the cluster stops when the test ends.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	bin, err := serverBinary()
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	n := o.Nodes
	if n == 0 {
		n = 3
	}
	issuer, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	ipub, _ := issuer.PublicKey()
	c := &Cluster{Issuer: issuer, CalloutPassword: randomHex(t), scheme: "tcp", t: t}
	ports := freePorts(t, 4*n)
	dir := t.TempDir()
	var routes []string
	for i := range n {
		c.nodes = append(c.nodes, &node{name: fmt.Sprintf("n%d", i+1),
			natsPort: ports[4*i], clusterPort: ports[4*i+1], mqttPort: ports[4*i+2], window: ports[4*i+3]})
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[4*i+1]))
	}
	replicas := min(n, 3)
	inactive := ""
	if o.ConsumerInactiveThreshold > 0 {
		inactive = fmt.Sprintf("consumer_inactive_threshold: %q", o.ConsumerInactiveThreshold.String())
	}
	if o.TLS {
		certFile, keyFile := c.makeCert(t, dir)
		verify := ""
		if o.ClientCAFile != "" {
			verify = fmt.Sprintf(", ca_file: %q, verify: true", o.ClientCAFile)
		}
		inactive += fmt.Sprintf("\n  tls { cert_file: %q, key_file: %q%s }", certFile, keyFile, verify)
		c.scheme = "ssl"
	}
	t.Cleanup(c.stop)
	for _, nd := range c.nodes {
		conf := fmt.Sprintf(config, nd.name, nd.natsPort, filepath.Join(dir, nd.name), nd.clusterPort,
			strings.Join(routes, ", "), nd.mqttPort, replicas, CalloutUser, c.CalloutPassword, Account, ipub,
			inactive, nd.window)
		path := filepath.Join(dir, nd.name+".conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		nd.log = &tail{max: 64 << 10}
		var out io.Writer = nd.log
		if o.Logf != nil {
			out = &lines{logf: o.Logf, prefix: nd.name + ": "}
		}
		// -c alone: the configuration names every port, and the server
		// answers SIGTERM and SIGKILL as in production.
		nd.cmd = exec.Command(bin, "-c", path)
		nd.cmd.Stdout, nd.cmd.Stderr = out, out
		// The node dies with the test process, even one killed.
		nd.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := nd.cmd.Start(); err != nil {
			t.Fatalf("natstest: node %s: %v", nd.name, err)
		}
		nd.exited = make(chan struct{})
		go func(nd *node) { _ = nd.cmd.Wait(); close(nd.exited) }(nd)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := c.ready()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("natstest: the cluster is not ready after 60s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return c
}

// ready reports why the cluster cannot yet take devices, or nil: every
// live node healthy (JetStream current with its meta leader) and one
// leader known. Until then the MQTT gateway of a node that is not cannot
// make its streams, and closes its clients.
func (c *Cluster) ready() error {
	for _, nd := range c.nodes {
		if nd.killed {
			continue
		}
		select {
		case <-nd.exited:
			return fmt.Errorf("node %s exited (%v)%s", nd.name, nd.cmd.ProcessState, nd.log.last())
		default:
		}
		var h struct {
			Status string `json:"status"`
			Error  string `json:"error"`
		}
		if err := nd.get("/healthz", &h); err != nil {
			return err
		}
		if h.Status != "ok" {
			return fmt.Errorf("node %s: %s %s", nd.name, h.Status, h.Error)
		}
		var jsz struct {
			Meta *struct {
				Leader string `json:"leader"`
			} `json:"meta_cluster"`
		}
		if err := nd.get("/jsz", &jsz); err != nil {
			return err
		}
		if jsz.Meta == nil || jsz.Meta.Leader == "" {
			return fmt.Errorf("node %s knows no JetStream leader", nd.name)
		}
	}
	return nil
}

// get reads one of the node's monitoring pages into v.
func (nd *node) get(page string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", nd.window, page), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("node %s: %w", nd.name, err)
	}
	defer resp.Body.Close()
	// /healthz answers 503 with a JSON body while JetStream is not current.
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("node %s: %s: %s: %w", nd.name, page, resp.Status, err)
	}
	return nil
}

// WaitCallout waits until every live node knows of a subscription to the
// auth callout's subject: a node that does not yet times its sign-ins out.
// Call it once the callout service has started.
func (c *Cluster) WaitCallout(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := c.calloutKnown()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("natstest: the callout's subscription is not known on every node after 30s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// calloutKnown reports a live node that knows no subscription to the
// callout's subject, from its own clients or from its routes, or nil.
func (c *Cluster) calloutKnown() error {
	for _, nd := range c.nodes {
		if nd.killed {
			continue
		}
		var subsz struct {
			Total int `json:"total"`
		}
		if err := nd.get("/subsz?subs=1&acc=AUTH&test="+calloutSubject, &subsz); err != nil {
			return err
		}
		if subsz.Total > 0 {
			continue
		}
		var routez struct {
			Routes []struct {
				Subs []string `json:"subscriptions_list"`
			} `json:"routes"`
		}
		if err := nd.get("/routez?subs=1", &routez); err != nil {
			return err
		}
		known := false
		for _, r := range routez.Routes {
			for _, s := range r.Subs {
				known = known || s == calloutSubject
			}
		}
		if !known {
			return fmt.Errorf("node %s", nd.name)
		}
	}
	return nil
}

// Consumers is the number of JetStream consumers a live node holds: the
// MQTT gateway makes one per QoS 1 subscription of every session, kept
// until the session ends.
func (c *Cluster) Consumers(t testing.TB) int {
	t.Helper()
	for _, nd := range c.nodes {
		if nd.killed {
			continue
		}
		var jsz struct {
			Consumers int `json:"consumers"`
		}
		if err := nd.get("/jsz", &jsz); err != nil {
			t.Fatalf("natstest: %v", err)
		}
		return jsz.Consumers
	}
	t.Fatal("natstest: no live node")
	return 0
}

// calloutSubject is where the server asks the callout: the server's
// AuthCalloutSubject, which fleet/natsauth subscribes to.
const calloutSubject = "$SYS.REQ.USER.AUTH"

// CalloutURL is the NATS URL list the callout service connects with, its
// user and password in the first.
func (c *Cluster) CalloutURL() string {
	var urls []string
	for i, nd := range c.nodes {
		if i == 0 {
			urls = append(urls, fmt.Sprintf("nats://%s:%s@127.0.0.1:%d", CalloutUser, c.CalloutPassword, nd.natsPort))
		} else {
			urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", nd.natsPort))
		}
	}
	return strings.Join(urls, ",")
}

// MQTT is node i's MQTT URL, tcp://127.0.0.1:port (ssl:// with TLS).
func (c *Cluster) MQTT(i int) string {
	return fmt.Sprintf("%s://127.0.0.1:%d", c.scheme, c.nodes[i].mqttPort)
}

// MQTTURLs are every node's MQTT URLs, in node order.
func (c *Cluster) MQTTURLs() []string {
	out := make([]string, len(c.nodes))
	for i := range c.nodes {
		out[i] = c.MQTT(i)
	}
	return out
}

// Kill kills node i with SIGKILL, as a crash would: its clients'
// connections close, and JetStream elects new leaders for what the node
// led and carries on on the others.
func (c *Cluster) Kill(i int) { c.end(i, syscall.SIGKILL) }

// Stop stops node i as an operator does for a rolling restart (SIGTERM):
// the server closes its clients and hands what it led to the others
// before it exits.
func (c *Cluster) Stop(i int) { c.end(i, syscall.SIGTERM) }

// end signals node i and waits for it to exit.
func (c *Cluster) end(i int, sig syscall.Signal) {
	nd := c.nodes[i]
	if nd.killed || nd.cmd == nil || nd.exited == nil {
		return
	}
	nd.killed = true
	_ = nd.cmd.Process.Signal(sig)
	<-nd.exited
}

// Clients is the number of client connections node i holds now (MQTT
// included), 0 for a killed node.
func (c *Cluster) Clients(i int) int {
	nd := c.nodes[i]
	if nd.killed {
		return 0
	}
	var varz struct {
		Connections int `json:"connections"`
	}
	if err := nd.get("/varz", &varz); err != nil {
		c.t.Fatalf("natstest: %v", err)
	}
	return varz.Connections
}

// stop kills every node and, when the test failed and Options.Logf was
// not set, gives the test the end of each node's log.
func (c *Cluster) stop() {
	for i, nd := range c.nodes {
		if !nd.killed && nd.exited != nil {
			select {
			case <-nd.exited:
				c.t.Logf("natstest: node %s exited during the test (%v)", nd.name, nd.cmd.ProcessState)
			default:
			}
		}
		c.Kill(i)
		if c.t.Failed() && nd.log != nil {
			c.t.Logf("natstest: node %s's log:%s", nd.name, nd.log.last())
		}
	}
}

// serverBinary is the nats-server to run: $NATS_SERVER, or one built once
// per version of the module required here.
func serverBinary() (string, error) {
	if p := os.Getenv("NATS_SERVER"); p != "" {
		return p, nil
	}
	build.Do(func() { build.path, build.err = buildServer() })
	return build.path, build.err
}

// build is the process's one build of the server; a binary already in
// the cache from an earlier run is taken as it is.
var build struct {
	sync.Once
	path string
	err  error
}

const serverModule = "github.com/nats-io/nats-server/v2"

func buildServer() (string, error) {
	version := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == serverModule {
				version = d.Version
				if d.Replace != nil {
					version = ""
				}
			}
		}
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "otaport-natstest")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("nats-server's cache directory: %w", err)
	}
	path := filepath.Join(dir, "nats-server-"+version)
	if version != "" {
		if _, err := os.Stat(path); err == nil {
			return path, nil
		}
	}
	// Built beside and renamed into place: test binaries of several
	// packages may build it at once.
	tmp, err := os.CreateTemp(dir, "build-*")
	if err != nil {
		return "", fmt.Errorf("nats-server's cache directory: %w", err)
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp.Name(), serverModule)
	// GOFLAGS might ask for -race: the server runs as it would in production.
	cmd.Env = append(os.Environ(), "GOFLAGS=", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", serverModule, err, out)
	}
	if version == "" {
		path = tmp.Name() + "-dev"
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("nats-server into the cache: %w", err)
	}
	return path, nil
}

// freePorts reserves n distinct free ports on loopback and releases them
// for the servers to take: their configuration names each other's ports
// before any of them listens.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports, err := loopbacktest.Ports(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

func randomHex(t testing.TB) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// lines passes a node's output, line by line, to Options.Logf.
type lines struct {
	logf   func(string, ...any)
	prefix string
	buf    []byte
}

func (l *lines) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.logf("%s%s", l.prefix, l.buf[:i])
		l.buf = l.buf[i+1:]
	}
}

// tail keeps the last max bytes a node wrote.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (l *tail) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	if over := len(l.buf) - l.max; over > 0 {
		l.buf = append(l.buf[:0], l.buf[over:]...)
	}
	return len(p), nil
}

// last is the kept log as lines to append to a message.
func (l *tail) last() string {
	if l == nil {
		return ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(l.buf))
	for sc.Scan() {
		b.WriteString("\n\t")
		b.Write(sc.Bytes())
	}
	return b.String()
}

// ClientTLS is the TLS configuration that trusts the MQTT ports of a
// cluster with Options.TLS; nil without.
func (c *Cluster) ClientTLS() *tls.Config {
	if c.pool == nil {
		return nil
	}
	return &tls.Config{RootCAs: c.pool, MinVersion: tls.VersionTLS12}
}

// makeCert writes a self-signed certificate for 127.0.0.1 and its key in
// dir and returns their files.
func (c *Cluster) makeCert(t testing.TB, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "natstest cluster"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "mqtt-cert.pem"), filepath.Join(dir, "mqtt-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	c.pool = x509.NewCertPool()
	c.pool.AddCert(cert)
	c.CAFile = certFile
	return certFile, keyFile
}
