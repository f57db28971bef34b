package fleet

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/core/image"
	"github.com/otaport/otaport/fleet/api"
	"github.com/otaport/otaport/fleet/pki"
	"github.com/otaport/otaport/fleet/store"
	"github.com/otaport/otaport/fleet/store/pgtest"
)

type running struct {
	srv    *Server
	base   string
	token  string
	cancel context.CancelFunc
	done   chan error
	// brokers and clientID, when set, are what devices sign in to instead
	// of the embedded broker, and the client id they sign with.
	brokers  string
	clientID func(dn string) string
}

// pg is the package's PostgreSQL server, started by the first test that
// asks for a database.
var pg pgtest.Server

func TestMain(m *testing.M) {
	if os.Getenv(replicaEnv) != "" {
		os.Exit(runReplica())
	}
	code := m.Run()
	pg.Stop()
	os.Exit(code)
}

func start(t *testing.T, dir string, keys []crypto.PublicKey) *running {
	t.Helper()
	return startDB(t, dir, "", keys, "")
}

// startToken starts a server as otaserve run --token does.
func startToken(t *testing.T, dir string, keys []crypto.PublicKey, token string) *running {
	t.Helper()
	return startDB(t, dir, "", keys, token)
}

// startDB starts a server as otaserve run --db does ("": bbolt in dir).
func startDB(t *testing.T, dir, db string, keys []crypto.PublicKey, token string) *running {
	t.Helper()
	var log *slog.Logger
	if os.Getenv("FLEET_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := New(Config{DataDir: dir, DB: db, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", Keys: keys, Logger: log, Token: token,
		Boards: map[string]api.Board{"board-a": {MaxImageSize: 1 << 20, Signature: image.KeyEd25519}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{srv: srv, base: "http://" + srv.Addrs().HTTP + api.Prefix, cancel: cancel, done: make(chan error, 1)}
	r.token, _ = srv.Token()
	go func() { r.done <- srv.Run(ctx) }()
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	if err := <-r.done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func (r *running) call(t *testing.T, method, path string, body []byte, ctype string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, r.base+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+r.token)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && json.Unmarshal(data, out) != nil {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, data)
	}
	return resp.StatusCode
}

func (r *running) post(t *testing.T, path string, v, out any) int {
	b, _ := json.Marshal(v)
	return r.call(t, http.MethodPost, path, b, "application/json", out)
}

// device is a simulated device: the real device-side cloud client, which
// downloads what it is ordered, checks the digest and then behaves as told.
type device struct {
	cl      *cloud.Client
	version string
	mode    string // "ok", "fail" or "rollback"
	hold    chan struct{}
	mu      sync.Mutex
	errs    []error
}

func (d *device) fail(err error) {
	d.mu.Lock()
	d.errs = append(d.errs, err)
	d.mu.Unlock()
}

func (d *device) onOrder(o *cloud.Order) {
	go func() {
		ctx := context.Background()
		resp, err := http.Get(o.Data.URL)
		if err != nil {
			d.fail(err)
			return
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		sum := sha256.Sum256(data)
		if int64(len(data)) != o.Data.Size || !strings.EqualFold(hex.EncodeToString(sum[:]), o.Data.Sign) || o.Data.SignMethod != "SHA256" {
			d.fail(fmt.Errorf("download of %s: %d bytes, digest mismatch with the order", o.Data.URL, len(data)))
			d.cl.Progress(ctx, cloud.StepVerifyFailed, "digest mismatch")
			return
		}
		if o.Data.Otaport == nil || o.Data.Otaport.Board != "board-a" || o.Data.Otaport.Campaign == "" {
			d.fail(fmt.Errorf("order without otaport extension: %+v", o.Data.Otaport))
		}
		d.cl.Progress(ctx, cloud.StepPercent(50), "downloading")
		d.cl.Progress(ctx, cloud.StepPercent(100), "installed")
		if d.hold != nil {
			<-d.hold
		}
		switch d.mode {
		case "ok":
			d.cl.Inform(ctx, o.Data.Version)
		case "fail":
			d.cl.Progress(ctx, cloud.StepFlashFailed, "write at 0x8000")
		case "rollback":
			d.cl.Inform(ctx, d.version)
		}
	}()
}

// connectDevices registers a device per mode in group "lab" of product pkA,
// named dev-0, dev-1..., signs each in to the embedded broker and reports
// version 1.0.0+0. A non-nil hold delays every device's outcome (confirm,
// failure or rollback) until it is closed.
func connectDevices(t *testing.T, r *running, modes []string, hold chan struct{}) []*device {
	t.Helper()
	devs := make([]*device, len(modes))
	for i, mode := range modes {
		var added api.Device
		name := fmt.Sprintf("dev-%d", i)
		if st := r.post(t, "/devices", api.AddDevice{ProductKey: "pkA", DeviceName: name, Board: "board-a", Group: "lab"}, &added); st != 201 {
			t.Fatalf("add device: %d", st)
		}
		d := &device{version: "1.0.0+0", mode: mode, hold: hold}
		ready := make(chan struct{})
		brokers := r.brokers
		if brokers == "" {
			brokers = "tcp://" + r.srv.Addrs().MQTT
		}
		var sign cloud.SignOptions
		if r.clientID != nil {
			sign.ClientID = r.clientID(name)
		}
		cl, err := cloud.Dial(context.Background(), cloud.Config{
			Broker:   brokers,
			Identity: cloud.Identity{ProductKey: "pkA", DeviceName: name, DeviceSecret: added.DeviceSecret},
			Sign:     sign, MaxReconnectInterval: time.Second,
			OnOrder: func(o *cloud.Order, _ []byte) { d.onOrder(o) },
			OnConnect: func() {
				// After a reconnection.
				go func() {
					<-ready
					if err := d.cl.Inform(context.Background(), d.version); err != nil {
						d.fail(err)
					}
				}()
			},
		})
		if err != nil {
			t.Fatalf("device %s: %v", name, err)
		}
		d.cl = cl
		close(ready)
		// OnConnect is not called for the first connection (Dial reports
		// that one), so report the version here too.
		if err := cl.Inform(context.Background(), d.version); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		devs[i] = d
	}
	return devs
}

func signedImage(t *testing.T, key crypto.Signer, version string) []byte {
	t.Helper()
	v, _ := image.ParseVersion(version)
	img, err := image.Sign(bytes.Repeat([]byte{0xa5, 0x5a, 0x01}, 3000), key, image.SignOptions{Version: v})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitWithin(t, 10*time.Second, what, cond)
}

// waitWithin is waitFor with its own bound, for what waits on a crash's
// recovery.
func waitWithin(t *testing.T, bound time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting %v for %s", bound, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// TestServer_CampaignWithDevices runs a three-wave campaign over the real
// broker with simulated devices, one of which rolls back, then restarts the
// server on the same data directory and checks nothing was lost.
// TestServer_CampaignWithDevices: devices sign in, download the image
// from the firmware server and report; the campaign ends as their reports
// say, and a restart keeps it all. On bbolt in the data directory, and on
// PostgreSQL (otaserve run --db) with the firmware in the database.
func TestServer_CampaignWithDevices(t *testing.T) {
	t.Run("bbolt", func(t *testing.T) { testCampaignWithDevices(t, "") })
	t.Run("postgres", func(t *testing.T) { testCampaignWithDevices(t, pg.DB(t)) })
}

func testCampaignWithDevices(t *testing.T, db string) {
	dir := t.TempDir()
	key, _ := image.GenerateKey(image.KeyEd25519)
	r := startDB(t, dir, db, []crypto.PublicKey{key.Public()}, "")

	modes := []string{"ok", "ok", "ok", "rollback", "ok"}
	devs := connectDevices(t, r, modes, nil)
	waitFor(t, "every device to report its version", func() bool {
		for _, d := range devs {
			if len(d.errs) > 0 {
				t.Fatalf("device: %v", d.errs)
			}
		}
		var list []api.Device
		r.call(t, http.MethodGet, "/devices", nil, "", &list)
		for _, d := range list {
			if d.Version != "1.0.0+0" {
				return false
			}
		}
		return len(list) == len(modes)
	})

	var img api.Image
	if st := r.call(t, http.MethodPost, "/images?board=board-a&version=2.0.0", signedImage(t, key, "2.0.0"), "application/octet-stream", &img); st != 201 {
		t.Fatalf("upload: %d", st)
	}
	var c api.Campaign
	req := api.CreateCampaign{ImageID: img.ID, Target: api.Target{Group: "lab"}, Waves: "1,3,100%", SuccessPercent: 50, ErrorPercent: 50}
	if st := r.post(t, "/campaigns", req, &c); st != 201 {
		t.Fatalf("create campaign: %d", st)
	}
	var status api.Status
	waitFor(t, "the campaign to end", func() bool {
		r.call(t, http.MethodGet, fmt.Sprintf("/campaigns/%d", c.ID), nil, "", &status)
		return status.Campaign.State != string(store.CampaignRunning)
	})
	check := func(status api.Status) {
		t.Helper()
		if status.Campaign.State != string(store.CampaignFinished) {
			t.Errorf("campaign %s (%s), want finished", status.Campaign.State, status.Campaign.Reason)
		}
		want := [][2]int{{1, 0}, {2, 0}, {1, 1}} // finished, failed per wave
		for i, w := range status.Waves {
			if w.State != string(store.WaveSucceeded) || w.Finished != want[i][0] || w.Failed != want[i][1] {
				t.Errorf("wave %d: %+v, want succeeded with %v", i+1, w, want[i])
			}
		}
		for _, p := range status.Devices {
			wantState := store.ProgressFinished
			if p.Device == "pkA/dev-3" {
				wantState = store.ProgressFailed
				if !strings.Contains(p.Reason, "rolled back to 1.0.0+0") {
					t.Errorf("%s reason %q", p.Device, p.Reason)
				}
			}
			if p.State != string(wantState) {
				t.Errorf("%s: %s (%s), want %s", p.Device, p.State, p.Reason, wantState)
			}
		}
	}
	check(status)
	for i, d := range devs {
		if len(d.errs) > 0 {
			t.Errorf("device %d: %v", i, d.errs)
		}
	}
	// The dashboard's pages read the same store: signed in with the
	// printed link, the campaign's page lists its devices and outcomes.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	for _, u := range []string{r.srv.LoginURL(), "http://" + r.srv.Addrs().HTTP + fmt.Sprintf("/campaigns/%d", c.ID)} {
		resp, err := browser.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "pkA/dev-3") || !strings.Contains(string(page), "pkA/dev-0") {
			t.Errorf("dashboard %s: status %d, the page does not list the devices:\n%.2000s", u, resp.StatusCode, page)
		}
	}
	for _, d := range devs {
		d.cl.Close()
	}
	r.stop(t)

	// A restart on the same directory keeps the token, the registry, the
	// images and the campaign.
	tokenFile, _ := os.ReadFile(filepath.Join(dir, "token"))
	r2 := startDB(t, dir, db, []crypto.PublicKey{key.Public()}, "")
	defer r2.stop(t)
	if db != "" {
		// A second otaserve on the database is refused while one runs
		// with the embedded broker (replicas need an external one), as one
		// on the data directory is.
		_, err := New(Config{DataDir: t.TempDir(), DB: db, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0"})
		if !errors.Is(err, store.ErrClaimed) || !strings.Contains(err.Error(), "another otaserve serves this database") {
			t.Errorf("a second otaserve on the database: %v", err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "fleet.db")); (db == "") != (err == nil) {
		t.Errorf("fleet.db in the data directory: %v, with --db %q", err, db)
	}
	if tok, generated := r2.srv.Token(); tok != r.token || generated || strings.TrimSpace(string(tokenFile)) != tok {
		t.Errorf("token after restart: %q generated=%v, file %q; want %q", tok, generated, tokenFile, r.token)
	}
	var again api.Status
	r2.call(t, http.MethodGet, fmt.Sprintf("/campaigns/%d", c.ID), nil, "", &again)
	check(again)
	var d3 api.Device
	r2.call(t, http.MethodGet, "/devices/pkA/dev-3", nil, "", &d3)
	if d3.State != string(store.DeviceFailed) || !strings.Contains(d3.LastError, "rolled back") {
		t.Errorf("dev-3 after restart: %+v", d3)
	}
	var d0 api.Device
	r2.call(t, http.MethodGet, "/devices/pkA/dev-0", nil, "", &d0)
	if d0.Version != "2.0.0+0" || d0.State != string(store.DeviceIdle) || d0.LastSeen.IsZero() {
		t.Errorf("dev-0 after restart: %+v", d0)
	}
}

func TestSplitBrokerURL(t *testing.T) {
	tests := []struct{ in, url, user, pass, err string }{
		{"mqtt://op:pw@127.0.0.1:1883", "tcp://127.0.0.1:1883", "op", "pw", ""},
		{"mqtts://127.0.0.1:8883", "ssl://127.0.0.1:8883", "", "", ""},
		{"http://127.0.0.1:1883", "", "", "", "scheme"},
		{"tcp://127.0.0.1", "", "", "", "host and port"},
	}
	for _, tt := range tests {
		u, user, pass, err := splitBrokerURL(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: err %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || u != tt.url || user != tt.user || pass != tt.pass {
			t.Errorf("%s: %q %q %q %v", tt.in, u, user, pass, err)
		}
	}
}

// selfSigned returns a TLS certificate for 127.0.0.1 and its PEM.
func selfSigned(t *testing.T) (tls.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "otaserve test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestServer_TLS serves the API, firmware and the broker over TLS: a Range
// request over HTTPS, and a device signing in over TLS whose version report
// reaches the service (which talks to its own broker over TLS too).
func TestServer_TLS(t *testing.T) {
	dir := t.TempDir()
	cert, certPEM := selfSigned(t)
	key, _ := image.GenerateKey(image.KeyEd25519)
	srv, err := New(Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", Keys: []crypto.PublicKey{key.Public()},
		Boards: map[string]api.Board{"b": {MaxImageSize: 1 << 20, Signature: image.KeyEd25519}},
		TLS:    &tls.Config{Certificates: []tls.Certificate{cert}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	tok, _ := srv.Token()
	base := "https://" + srv.Addrs().HTTP

	do := func(method, url string, body []byte, hdr map[string]string) (*http.Response, []byte) {
		req, _ := http.NewRequest(method, url, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp, data
	}
	data := signedImage(t, key, "3.1.0")
	resp, body := do(http.MethodPost, base+api.Prefix+"/images?board=b", data, nil)
	var img api.Image
	if resp.StatusCode != 201 || json.Unmarshal(body, &img) != nil {
		t.Fatalf("upload over HTTPS: %d %s", resp.StatusCode, body)
	}
	resp, body = do(http.MethodGet, base+"/firmware/"+img.SHA256, nil, map[string]string{"Range": "bytes=100-", "If-Range": `"` + img.SHA256 + `"`})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, data[100:]) {
		t.Fatalf("range over HTTPS: %d, %d bytes", resp.StatusCode, len(body))
	}

	resp, body = do(http.MethodPost, base+api.Prefix+"/devices", []byte(`{"product_key":"pk","device_name":"tls-dev","board":"b"}`), nil)
	var d api.Device
	if resp.StatusCode != 201 || json.Unmarshal(body, &d) != nil {
		t.Fatalf("add device: %d %s", resp.StatusCode, body)
	}
	caFile := filepath.Join(dir, "ca.pem")
	os.WriteFile(caFile, certPEM, 0o600)
	cl, err := cloud.Dial(context.Background(), cloud.Config{
		Broker:   "ssl://" + srv.Addrs().MQTT,
		Identity: cloud.Identity{ProductKey: "pk", DeviceName: "tls-dev", DeviceSecret: d.DeviceSecret},
		CAFile:   caFile,
		OnOrder:  func(*cloud.Order, []byte) {},
	})
	if err != nil {
		t.Fatalf("device over TLS: %v", err)
	}
	defer cl.Close()
	if err := cl.Inform(context.Background(), "3.0.0"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the version report over TLS", func() bool {
		_, body := do(http.MethodGet, base+api.Prefix+"/devices/pk/tls-dev", nil, nil)
		var got api.Device
		return json.Unmarshal(body, &got) == nil && got.Version == "3.0.0"
	})

	// A device that signs in by the certificate the server's fleet CA
	// issued it, from a request made with its own key: no secret on it.
	if resp, body := do(http.MethodPost, base+api.Prefix+"/devices", []byte(`{"product_key":"pk","device_name":"cert-dev","board":"b"}`), nil); resp.StatusCode != 201 {
		t.Fatalf("add device: %d %s", resp.StatusCode, body)
	}
	devKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := pki.NewRequest(devKey, "pk", "cert-dev")
	if err != nil {
		t.Fatal(err)
	}
	reqBody, _ := json.Marshal(api.CertificateRequest{CSR: string(csr)})
	resp, body = do(http.MethodPost, base+api.Prefix+"/devices/pk/cert-dev/certificate", reqBody, nil)
	var issued api.Certificate
	if resp.StatusCode != 201 || json.Unmarshal(body, &issued) != nil {
		t.Fatalf("issue certificate: %d %s", resp.StatusCode, body)
	}
	if resp, _ := do(http.MethodPost, base+api.Prefix+"/devices/pk/nobody/certificate", reqBody, nil); resp.StatusCode != 404 {
		t.Errorf("certificate of an unregistered device: %d, want 404", resp.StatusCode)
	}
	certFile, keyFile := filepath.Join(dir, "cert-dev.crt"), filepath.Join(dir, "cert-dev.key")
	kder, _ := x509.MarshalPKCS8PrivateKey(devKey)
	os.WriteFile(certFile, []byte(issued.Certificate), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	certCfg := cloud.Config{
		Broker:   "ssl://" + srv.Addrs().MQTT,
		Identity: cloud.Identity{ProductKey: "pk", DeviceName: "cert-dev"},
		CAFile:   caFile, CertFile: certFile, KeyFile: keyFile,
		OnOrder: func(*cloud.Order, []byte) {},
	}
	cc, err := cloud.Dial(context.Background(), certCfg)
	if err != nil {
		t.Fatalf("device by certificate: %v", err)
	}
	if err := cc.Inform(context.Background(), "3.0.1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the version report of the device signed in by certificate", func() bool {
		_, body := do(http.MethodGet, base+api.Prefix+"/devices/pk/cert-dev", nil, nil)
		var got api.Device
		return json.Unmarshal(body, &got) == nil && got.Version == "3.0.1"
	})
	cc.Close()
	// Deleting the device revokes its certificate's sign-in too.
	if resp, _ := do(http.MethodDelete, base+api.Prefix+"/devices/pk/cert-dev", nil, nil); resp.StatusCode != 204 {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	if cc, err := cloud.Dial(context.Background(), certCfg); err == nil {
		cc.Close()
		t.Fatal("a deleted device signed in by its certificate")
	}
}

// TestServer_DeleteDeviceRevokesItsSignIn: a deleted device is disconnected
// at once and its next sign-in is refused. Before, there was no delete.
func TestServer_DeleteDeviceRevokesItsSignIn(t *testing.T) {
	r := start(t, t.TempDir(), nil)
	defer r.stop(t)
	var added api.Device
	if st := r.post(t, "/devices", api.AddDevice{ProductKey: "pkA", DeviceName: "gone", Board: "board-a"}, &added); st != 201 {
		t.Fatalf("add device: %d", st)
	}
	ident := cloud.Identity{ProductKey: "pkA", DeviceName: "gone", DeviceSecret: added.DeviceSecret}
	cl, err := cloud.Dial(context.Background(), cloud.Config{Broker: "tcp://" + r.srv.Addrs().MQTT, Identity: ident, OnOrder: func(*cloud.Order, []byte) {}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	waitFor(t, "the device to be signed in", func() bool { return len(r.srv.broker.Connected()) == 1 })

	if st := r.call(t, http.MethodDelete, "/devices/pkA/gone", nil, "", nil); st != http.StatusNoContent {
		t.Fatalf("delete: %d", st)
	}
	waitFor(t, "the deleted device to be disconnected", func() bool { return len(r.srv.broker.Connected()) == 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if again, err := cloud.Dial(ctx, cloud.Config{Broker: "tcp://" + r.srv.Addrs().MQTT, Identity: ident, OnOrder: func(*cloud.Order, []byte) {}}); err == nil {
		again.Close()
		t.Fatal("a deleted device signed in again")
	}
	var e api.Error
	if st := r.call(t, http.MethodGet, "/devices/pkA/gone", nil, "", &e); st != http.StatusNotFound {
		t.Errorf("get after delete: %d %s", st, e.Error)
	}
}

// TestServer_AutoTLS: without a certificate of its own, the server serves
// HTTPS and MQTT over TLS with a certificate of its fleet CA, which a client
// that pins DataDir/ca.pem trusts by every name the server listed.
func TestServer_AutoTLS(t *testing.T) {
	dir := t.TempDir()
	srv, err := New(Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", AutoTLS: true,
		TLSHosts: []string{"fleet.example"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	for _, host := range []string{"127.0.0.1", "localhost", "fleet.example"} {
		conn, err := tls.Dial("tcp", srv.Addrs().HTTP, &tls.Config{RootCAs: pool, ServerName: host})
		if err != nil {
			t.Errorf("HTTPS as %s: %v", host, err)
			continue
		}
		conn.Close()
	}
	if conn, err := tls.Dial("tcp", srv.Addrs().HTTP, &tls.Config{RootCAs: pool, ServerName: "elsewhere.example"}); err == nil {
		conn.Close()
		t.Error("the certificate made at start claims a name it was not given")
	}
	if conn, err := tls.Dial("tcp", srv.Addrs().MQTT, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}); err != nil {
		t.Errorf("MQTT over TLS: %v", err)
	} else {
		conn.Close()
	}
	if !slices.Contains(srv.TLSHosts(), "fleet.example") {
		t.Errorf("TLSHosts = %v, want fleet.example among them", srv.TLSHosts())
	}
}

func TestTLSHosts(t *testing.T) {
	name, _ := os.Hostname()
	cases := []struct {
		name string
		cfg  Config
		want []string
		err  string
	}{
		{"loopback", Config{HTTPAddr: "127.0.0.1:8080", MQTTAddr: "127.0.0.1:1883"}, []string{"localhost", "127.0.0.1", "::1"}, ""},
		{"every interface", Config{HTTPAddr: ":8080", MQTTAddr: "0.0.0.0:1883"}, []string{"localhost", "127.0.0.1", "::1", name}, ""},
		{"public URL and extra", Config{HTTPAddr: "10.0.0.5:8080", MQTTAddr: "10.0.0.5:1883", PublicURL: "https://fleet.example:8443", TLSHosts: []string{"fleet.lan"}},
			[]string{"localhost", "127.0.0.1", "::1", "10.0.0.5", "fleet.example", "fleet.lan"}, ""},
		{"bad public URL", Config{HTTPAddr: "127.0.0.1:8080", PublicURL: "fleet"}, nil, "--public-url"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := tlsHosts(c.cfg)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want one naming %s", err, c.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, c.want) {
				t.Errorf("tlsHosts = %v, %v; want %v", got, err, c.want)
			}
		})
	}
}
