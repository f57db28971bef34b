// Package natstest is test support: a cluster of NATS servers on loopback,
// in the test's process, with MQTT and JetStream enabled and the auth
// callout that fleet/natsauth answers configured, as docs/otaserve.md shows
// it for a real deployment. Tests start otaserve's callout service against
// it and connect devices to its MQTT ports.
package natstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
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
	// Logf, when set, receives the servers' logs (t.Logf, say).
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
}

type node struct {
	name               string
	srv                *server.Server
	natsPort, mqttPort int
	clusterPort        int
	killed             bool
}

// config is one node's configuration file: what docs/otaserve.md asks of a
// deployment, on loopback.
const config = `server_name: %[1]s
listen: 127.0.0.1:%[2]d
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

// Start starts the cluster and waits until JetStream has a leader; the
// cluster stops when the test ends.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	n := o.Nodes
	if n == 0 {
		n = 3
	}
	issuer, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	ipub, _ := issuer.PublicKey()
	c := &Cluster{Issuer: issuer, CalloutPassword: randomHex(t), scheme: "tcp"}
	ports := freePorts(t, 3*n)
	dir := t.TempDir()
	var routes []string
	for i := range n {
		c.nodes = append(c.nodes, &node{name: fmt.Sprintf("n%d", i+1),
			natsPort: ports[3*i], clusterPort: ports[3*i+1], mqttPort: ports[3*i+2]})
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[3*i+1]))
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
	for _, nd := range c.nodes {
		conf := fmt.Sprintf(config, nd.name, nd.natsPort, filepath.Join(dir, nd.name), nd.clusterPort,
			strings.Join(routes, ", "), nd.mqttPort, replicas, CalloutUser, c.CalloutPassword, Account, ipub, inactive)
		path := filepath.Join(dir, nd.name+".conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		opts, err := server.ProcessConfigFile(path)
		if err != nil {
			t.Fatalf("natstest: %s: %v", path, err)
		}
		opts.NoSigs = true
		srv, err := server.NewServer(opts)
		if err != nil {
			t.Fatalf("natstest: node %s: %v", nd.name, err)
		}
		if o.Logf != nil {
			srv.SetLogger(logger{o.Logf, nd.name}, false, false)
		}
		nd.srv = srv
		go srv.Start()
	}
	t.Cleanup(c.stop)
	for _, nd := range c.nodes {
		if !nd.srv.ReadyForConnections(30 * time.Second) {
			t.Fatalf("natstest: node %s not ready for connections after 30s", nd.name)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for !c.hasLeader() {
		if time.Now().After(deadline) {
			t.Fatal("natstest: JetStream elected no leader within 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return c
}

// hasLeader reports whether JetStream has a leader and every live node
// is current with it: until then the MQTT gateway of a node that is not
// cannot make its streams, and closes its clients.
func (c *Cluster) hasLeader() bool {
	leader := false
	for _, nd := range c.nodes {
		if nd.killed {
			continue
		}
		if !nd.srv.JetStreamIsCurrent() {
			return false
		}
		leader = leader || nd.srv.JetStreamIsLeader()
	}
	return leader
}

// WaitCallout waits until every live node knows of a subscription to the
// auth callout's subject: a node that does not yet times its sign-ins out.
// Call it once the callout service has started.
func (c *Cluster) WaitCallout(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ready := true
		for _, nd := range c.nodes {
			if nd.killed {
				continue
			}
			acc, err := nd.srv.LookupAccount("AUTH")
			if err != nil {
				t.Fatalf("natstest: node %s: %v", nd.name, err)
			}
			ready = ready && acc.SubscriptionInterest(calloutSubject)
		}
		if ready {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("natstest: the callout's subscription is not known on every node after 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
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
		jsz, err := nd.srv.Jsz(&server.JSzOptions{})
		if err != nil {
			t.Fatalf("natstest: node %s: %v", nd.name, err)
		}
		return jsz.Consumers
	}
	t.Fatal("natstest: no live node")
	return 0
}

// calloutSubject is where the server asks the callout (server.AuthCalloutSubject).
const calloutSubject = server.AuthCalloutSubject

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

// Kill stops node i at once, as a crash would for its clients: their
// connections close, and JetStream carries on on the others.
func (c *Cluster) Kill(i int) {
	nd := c.nodes[i]
	if nd.killed {
		return
	}
	nd.killed = true
	nd.srv.Shutdown()
	nd.srv.WaitForShutdown()
}

// Clients is the number of client connections node i holds now (MQTT
// included), 0 for a killed node.
func (c *Cluster) Clients(i int) int {
	if c.nodes[i].killed {
		return 0
	}
	return c.nodes[i].srv.NumClients()
}

func (c *Cluster) stop() {
	for i := range c.nodes {
		c.Kill(i)
	}
}

// freePorts reserves n distinct free ports on loopback and releases them
// for the servers to take: their configuration names each other's ports
// before any of them listens.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var lns []net.Listener
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
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

// logger passes a node's logs to Options.Logf.
type logger struct {
	logf func(string, ...any)
	name string
}

func (l logger) Noticef(f string, v ...any) { l.logf(l.name+": "+f, v...) }
func (l logger) Warnf(f string, v ...any)   { l.logf(l.name+" WARN: "+f, v...) }
func (l logger) Fatalf(f string, v ...any)  { l.logf(l.name+" FATAL: "+f, v...) }
func (l logger) Errorf(f string, v ...any)  { l.logf(l.name+" ERROR: "+f, v...) }
func (l logger) Debugf(f string, v ...any)  { l.logf(l.name+" DEBUG: "+f, v...) }
func (l logger) Tracef(f string, v ...any)  { l.logf(l.name+" TRACE: "+f, v...) }

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
