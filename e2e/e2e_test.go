// Package e2e holds otaport's end-to-end tests: they build the commands and
// two port plugins, and run otaserve, the agents (each with its plugin
// process and flash file) and, where installed, Mosquitto as real processes
// talking over loopback. Faults are real too: processes are killed and
// restarted in the middle of a campaign.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/fleet/store/pgtest"
	"github.com/otaport/otaport/internal/loopbacktest"
)

// boards the tests run devices on: dual-bank, both signed with ecdsa-p256.
var boards = []string{"nucleo-h743zi", "b-l475e-iot01a", "stm32f769i-disco"}

// singleBank is the demo's fourth board: single-bank, MCUboot built
// overwrite-only (the no-rollback path on a real bootloader), signed with
// ecdsa-p256.
const singleBank = "nrf5340-dk"

// bin is where TestMain builds the commands and plugins.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "otaport-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pkgs := []string{"../cmd/otarun", "../cmd/otaserve", "../cmd/otaimg", "../cmd/otafleet-sim"}
	for _, b := range append(slices.Clone(boards), singleBank) {
		pkgs = append(pkgs, "../ports/"+b+"/cmd/otaport-"+b)
	}
	cmd := exec.Command("go", append([]string{"build", "-o", dir + "/"}, pkgs...)...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	bin = dir
	code := m.Run()
	pg.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a process a test started; it is stopped at the end of the test.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// start runs name (a built command, or a program on PATH) with its output in
// dir/<tag>.log.
func start(t *testing.T, dir, tag string, env []string, name string, args ...string) *proc {
	t.Helper()
	path := name
	if !filepath.IsAbs(name) {
		if p := filepath.Join(bin, name); fileExists(p) {
			path = p
		}
	}
	logFile := filepath.Join(dir, tag+".log")
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	// A group of its own, so a power cut (SIGKILL) takes its port plugin
	// with it, as it would on a device.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", tag, err)
	}
	p := &proc{name: tag, cmd: cmd, log: logFile, done: make(chan struct{})}
	go func() { cmd.Wait(); f.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(syscall.SIGTERM)
		if t.Failed() {
			b, _ := os.ReadFile(logFile)
			t.Logf("--- %s log:\n%s", tag, tail(string(b), 30))
		}
	})
	return p
}

// stop sends sig and waits for the process to end (killing its group after
// 10 s). SIGKILL goes to the whole group: a power cut.
func (p *proc) stop(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	if sig == syscall.SIGKILL {
		syscall.Kill(-p.cmd.Process.Pid, sig)
	} else {
		p.cmd.Process.Signal(sig)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// run runs a built command to completion and returns its stdout.
func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, name), args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// freePort returns a TCP port free on 127.0.0.1 now.
func freePort(t *testing.T) int {
	t.Helper()
	p, err := loopbacktest.Port()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// eventually polls cond every 100 ms until it holds or 60 s pass.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		var ok bool
		if ok, last = cond(); ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not reached; last seen:\n%s", what, last)
}

// fleetRig is a working directory with keys, images and provisioned flash
// files, and an otaserve to drive.
type fleetRig struct {
	t   *testing.T
	dir string
}

func newFleetRig(t *testing.T) *fleetRig {
	r := &fleetRig{t: t, dir: t.TempDir()}
	run(t, r.dir, "otaimg", "keygen", "--type", "ecdsa-p256", "-o", "key.pem")
	run(t, r.dir, "otaimg", "getpub", "--key", "key.pem", "-o", "pub.pem")
	payload := bytes.Repeat([]byte("otaport end to end "), 16<<10) // ~300 KiB
	if err := os.WriteFile(filepath.Join(r.dir, "app.bin"), payload, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1.0.0", "1.1.0", "1.2.0"} {
		run(t, r.dir, "otaimg", "sign", "--key", "key.pem", "--version", v, "--pad-header", "app.bin", "app-"+v+".img")
	}
	return r
}

// provision writes v1.0.0 into a new flash file for device dn on board.
func (r *fleetRig) provision(board, dn string) {
	run(r.t, r.dir, "otarun", "--plugin", filepath.Join(bin, "otaport-"+board), "provision",
		"--key", "pub.pem", "--flash", dn+".flash", "app-1.0.0.img")
}

// serve runs an otaserve client command against the rig's server.
func (r *fleetRig) serve(args ...string) string {
	r.t.Helper()
	return run(r.t, r.dir, "otaserve", append([]string{args[0], args[1], "--data", "data"}, args[2:]...)...)
}

// deviceYAML writes dn.yaml for the agent, with the public half of the
// order key of otaserve's data directory (made here if otaserve has not
// made it yet).
func (r *fleetRig) deviceYAML(dn, broker, secret, extra string) string {
	run(r.t, r.dir, "otaserve", "order-key", "--data", "data", "-o", "order.pub")
	// ca: otaserve's own CA, made at its first start, pinned as devices
	// pin it; the Mosquitto rig's plain broker leaves it unused.
	y := fmt.Sprintf(`broker: %s
ca: data/ca.pem
identity: {product_key: demo, device_name: %s, device_secret: %s}
public_keys: [pub.pem]
order_key: order.pub
health_check:
  command: [sh, -c, 'case "$OTARUN_VERSION" in 1.2.*) echo "self-test failed" >&2; exit 1;; esac']
report_interval: 1s
%s`, broker, dn, secret, extra)
	path := filepath.Join(r.dir, dn+".yaml")
	if err := os.WriteFile(path, []byte(y), 0o644); err != nil {
		r.t.Fatal(err)
	}
	return path
}

// agent starts the agent of device dn.
func (r *fleetRig) agent(board, dn string) *proc {
	return start(r.t, r.dir, dn, nil, "otarun", "--plugin", filepath.Join(bin, "otaport-"+board), "agent",
		"--json", "--config", dn+".yaml", "--flash", dn+".flash")
}

// versionOf returns the version otaserve has for demo/dn.
func (r *fleetRig) versionOf(dn string) string {
	out := r.serve("device", "get", "demo/"+dn)
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 5 && f[1] == dn {
			return f[4]
		}
	}
	return ""
}

// campaign uploads image v for board and starts a campaign to dn; it
// returns the campaign id.
func (r *fleetRig) campaign(board, dn, v string) string {
	out := r.serve("image", "upload", "--board", board, "app-"+v+".img")
	id := regexp.MustCompile(`^image (\d+):`).FindStringSubmatch(out)
	if id == nil {
		r.t.Fatalf("image upload said %q", out)
	}
	out = r.serve("campaign", "create", "--image", id[1], "--target", "devices=demo/"+dn)
	c := regexp.MustCompile(`^campaign (\d+):`).FindStringSubmatch(out)
	if c == nil {
		r.t.Fatalf("campaign create said %q", out)
	}
	return c[1]
}

// campaignState returns the first line of campaign status.
func (r *fleetRig) campaignState(id string) string {
	out := r.serve("campaign", "status", id)
	first, _, _ := strings.Cut(out, "\n")
	return first
}

// otaserve starts the server on fixed ports (so a restart keeps them).
func (r *fleetRig) otaserve(httpPort, mqttPort int, extra ...string) *proc {
	r.t.Helper()
	os.Remove(filepath.Join(r.dir, "data", "url"))
	args := append([]string{"run", "--data", "data", "--http", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"--mqtt", fmt.Sprintf("127.0.0.1:%d", mqttPort), "--key", "pub.pem"}, extra...)
	p := start(r.t, r.dir, "otaserve", nil, "otaserve", args...)
	eventually(r.t, "otaserve up", func() (bool, string) {
		b, _ := os.ReadFile(p.log)
		return fileExists(filepath.Join(r.dir, "data", "url")) && bytes.Contains(b, []byte("otaserve running")), string(b)
	})
	return p
}

// holdProxy forwards firmware downloads to otaserve, and holds each body
// after the first holdAt bytes until released: a download that is
// "in the middle" for as long as a test needs.
type holdProxy struct {
	upstream string
	caFile   string // otaserve's CA, read when a request comes: otaserve makes it at its first start
	holdAt   int64
	mu       sync.Mutex
	release  chan struct{}
	started  chan struct{} // gets a value when a held download reaches holdAt
	srv      *http.Server
	ln       net.Listener
	// served counts the body bytes sent for each path; requests lists
	// each request as "path Range" ("path" without one).
	served   map[string]int64
	requests []string
}

func newHoldProxy(t *testing.T, upstream, caFile string, holdAt int64) *holdProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &holdProxy{upstream: upstream, caFile: caFile, holdAt: holdAt, release: make(chan struct{}), started: make(chan struct{}, 16), ln: ln, served: map[string]int64{}}
	h.srv = &http.Server{Handler: h}
	go h.srv.Serve(ln)
	t.Cleanup(func() { h.open(); h.srv.Close() })
	return h
}

func (h *holdProxy) URL() string { return "http://" + h.ln.Addr().String() }

// open lets every held and future download through.
func (h *holdProxy) open() {
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-h.release:
	default:
		close(h.release)
	}
}

func (h *holdProxy) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	h.mu.Lock()
	h.requests = append(h.requests, strings.TrimSpace(req.URL.Path+" "+req.Header.Get("Range")))
	h.mu.Unlock()
	up, err := http.NewRequestWithContext(req.Context(), req.Method, h.upstream+req.URL.Path, nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	for _, k := range []string{"Range", "If-Range"} {
		if v := req.Header.Get(k); v != "" {
			up.Header.Set(k, v)
		}
	}
	pem, err := os.ReadFile(h.caFile)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(up)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	w = countingWriter{ResponseWriter: w, h: h, path: req.URL.Path}
	h.mu.Lock()
	release := h.release
	h.mu.Unlock()
	select {
	case <-release:
	default:
		if _, err := io.CopyN(w, resp.Body, h.holdAt); err != nil {
			return
		}
		w.(http.Flusher).Flush()
		h.started <- struct{}{}
		select {
		case <-release:
		case <-req.Context().Done():
			return
		}
	}
	io.Copy(w, resp.Body)
}

// bytesServed returns the body bytes the proxy sent for path so far.
func (h *holdProxy) bytesServed(path string) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.served[path]
}

// countingWriter counts what a holdProxy response sends.
type countingWriter struct {
	http.ResponseWriter
	h    *holdProxy
	path string
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.h.mu.Lock()
	c.h.served[c.path] += int64(n)
	c.h.mu.Unlock()
	return n, err
}

func (c countingWriter) Flush() { c.ResponseWriter.(http.Flusher).Flush() }

func TestDemo(t *testing.T) {
	cmd := exec.Command("bash", "../scripts/demo.sh")
	cmd.Env = append(os.Environ(), "BIN="+bin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	s := string(out)
	for _, want := range []string{
		"campaign 1: image 1 (1.1.0+0) to devices=demo/dev-a, finished",
		"campaign 4: image 4 (1.1.0+0) to devices=demo/dev-d, finished",
		"campaign 7: image 7 (1.2.0+0) to devices=demo/dev-c, paused",
		"campaign 8: image 8 (1.2.0+0) to devices=demo/dev-d, paused",
		"every dual-bank device took v1.1.0 and confirmed it, then rolled back from v1.2.0 to v1.1.0 on its own.",
		// Issue 9, reproduction 2: a single-bank device cannot roll back;
		// it must say so once and not reset itself in a loop, even after
		// its agent restarts.
		"dev-d (nrf5340-dk, single bank, MCUboot overwrite-only) refuses to loop: v1.2.0 failed its health check, reported once, no old image to return to, so 1.2.0+0 stays; 1 reset for it, 0 after an agent restart",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	// A failed device shows that it failed, not the protocol's step code as
	// a percentage.
	if strings.Contains(s, "-1%") {
		t.Errorf("demo output shows a failure step as a percentage (-1%%):\n%s", s)
	}
	if n := strings.Count(s, "rolled back to 1.1.0+0"); n < 3 {
		t.Errorf("demo output reports %d rollbacks to 1.1.0+0, want one per dual-bank device (3)\n%s", n, s)
	}
	if t.Failed() {
		t.Logf("demo output:\n%s", s)
	}
}

// TestFleetBench runs the fleet benchmark (bench/fleet.sh) on a few devices,
// so that it keeps working as otaserve changes: it broke once unseen when
// otaserve began serving TLS and signing orders by default. The second case
// is the layout of the large runs on a small count: two otaserve replicas on
// a PostgreSQL the script starts, two edge Mosquitto nodes bridged to a hub,
// and two simulators whose figures the script combines.
func TestFleetBench(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"embedded", []string{"20"}, []string{"20 of 20 devices confirmed v2", "devices upgraded per second:", "peak RSS: simulator"}},
		{"mosquitto", []string{"--broker", "mosquitto", "--edges", "2", "--sims", "2", "--replicas", "2", "40"}, []string{
			"2 edges, 2 simulators, 2 otaserve replicas", "40 of 40 devices confirmed v2", "devices upgraded per second:",
			"order to confirm, per device: p50", "peak RSS: simulators", "PostgreSQL", "edges: ", "for 20 (", "CPU time over the whole run: simulators",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "mosquitto" {
				if _, err := os.Stat("/usr/sbin/mosquitto"); err != nil {
					if _, err := exec.LookPath("mosquitto"); err != nil {
						t.Skip("mosquitto is not installed (apt-get install mosquitto): skipping bench/fleet.sh --broker mosquitto")
					}
				}
				if _, err := pgtest.BinDir(); err != nil {
					t.Skipf("skipping bench/fleet.sh --broker mosquitto: %v", err)
				}
			}
			cmd := exec.Command("bash", append([]string{"../bench/fleet.sh"}, tc.args...)...)
			cmd.Env = append(os.Environ(), "BIN="+t.TempDir())
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("bench/fleet.sh %s: %v\n%s", strings.Join(tc.args, " "), err, out)
			}
			for _, want := range tc.want {
				if !strings.Contains(string(out), want) {
					t.Errorf("bench/fleet.sh output lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

// TestFaults_AgentKilledAndOtaserveRestarted: mid-download, the agent is
// killed (SIGKILL: no chance to save anything beyond its checkpoints) and
// otaserve with its embedded broker is restarted; the device still ends on
// the new version, confirmed, and the campaign finishes.
func TestFaults_AgentKilledAndOtaserveRestarted(t *testing.T) {
	r := newFleetRig(t)
	httpPort, mqttPort := freePort(t), freePort(t)
	proxy := newHoldProxy(t, fmt.Sprintf("https://127.0.0.1:%d", httpPort), filepath.Join(r.dir, "data", "ca.pem"), 100<<10)
	srv := r.otaserve(httpPort, mqttPort, "--public-url", proxy.URL())
	board, dn := boards[0], "dev-a"
	r.provision(board, dn)
	out := r.serve("device", "add", "--product", "demo", "--name", dn, "--board", board, "--secret", "s-a")
	if !strings.Contains(out, "added demo/dev-a") {
		t.Fatalf("device add: %s", out)
	}
	r.deviceYAML(dn, fmt.Sprintf("ssl://127.0.0.1:%d", mqttPort), "s-a", "")
	ag := r.agent(board, dn)
	eventually(t, "device reports 1.0.0+0", func() (bool, string) { v := r.versionOf(dn); return v == "1.0.0+0", v })

	id := r.campaign(board, dn, "1.1.0")
	select {
	case <-proxy.started:
	case <-time.After(60 * time.Second):
		t.Fatal("the download never started")
	}
	ag.stop(syscall.SIGKILL)
	srv.stop(syscall.SIGINT)
	srv = r.otaserve(httpPort, mqttPort, "--public-url", proxy.URL())
	proxy.open()
	ag = r.agent(board, dn)
	eventually(t, "campaign finished", func() (bool, string) {
		s := r.campaignState(id)
		return strings.HasSuffix(s, "finished: every wave succeeded"), s
	})
	if v := r.versionOf(dn); v != "1.1.0+0" {
		t.Errorf("otaserve has %s for the device, want 1.1.0+0", v)
	}
	srv.stop(syscall.SIGINT)
	// The agent's plugin holds the flash: one device, one process at a time.
	ag.stop(syscall.SIGINT)
	info := exec.Command(filepath.Join(bin, "otarun"), "--plugin", filepath.Join(bin, "otaport-"+board), "info", "--json")
	info.Dir, info.Env = r.dir, append(os.Environ(), "OTAPORT_FLASH="+dn+".flash")
	js, err := info.Output()
	if err != nil {
		t.Fatalf("otarun info: %v", err)
	}
	if out := js; !regexp.MustCompile(`"version": "1\.1\.0\+0",\s*"bootable": true,\s*"active": true,\s*"pending": false,\s*"confirmed": true`).Match(out) {
		t.Errorf("the flash does not run 1.1.0+0 confirmed:\n%s", out)
	}
}

// mosquittoRig runs Mosquitto on a free port with a password file made by
// mosquitto_passwd and a per-device ACL. Devices sign in with the C SDK's
// form (sign_form: sdk), whose fixed timestamp makes the password constant:
// Mosquitto cannot compute the platform's HMAC, but it can compare a
// password it was given once. allow_anonymous stays false, so the ACL test
// means something.
type mosquittoRig struct {
	t    *testing.T
	dir  string
	port int
	conf string
	proc *proc
}

func newMosquitto(t *testing.T, dir string, devices map[string]string) *mosquittoRig {
	mosq, err := exec.LookPath("mosquitto")
	if err != nil {
		t.Skip("mosquitto is not on PATH (install the mosquitto and mosquitto-clients packages): skipping the Mosquitto interop test")
	}
	for _, c := range []string{"mosquitto_passwd", "mosquitto_sub", "mosquitto_pub"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("%s is not on PATH (install mosquitto-clients): skipping", c)
		}
	}
	m := &mosquittoRig{t: t, dir: dir, port: freePort(t)}
	pw := filepath.Join(dir, "mosquitto.passwd")
	passwd := func(user, pass string) {
		args := []string{"-b", pw, user, pass}
		if !fileExists(pw) {
			args = append([]string{"-c"}, args...)
		}
		if out, err := exec.Command("mosquitto_passwd", args...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd: %v: %s", err, out)
		}
	}
	passwd("otaserve", "operator-pw")
	passwd("watcher", "watcher-pw")
	acl := "user otaserve\ntopic readwrite /ota/device/#\nuser watcher\ntopic read /ota/device/#\n"
	for dn, secret := range devices {
		creds := sdkCreds(t, dn, secret)
		passwd(creds.Username, creds.Password)
		acl += fmt.Sprintf("user %s\ntopic write /ota/device/inform/demo/%s\ntopic write /ota/device/progress/demo/%s\ntopic write /ota/device/request/demo/%s\ntopic read /ota/device/upgrade/demo/%s\n",
			creds.Username, dn, dn, dn, dn)
	}
	aclFile := filepath.Join(dir, "mosquitto.acl")
	os.WriteFile(aclFile, []byte(acl), 0o644)
	m.conf = filepath.Join(dir, "mosquitto.conf")
	// Started as root, Mosquitto switches to its own user, which cannot
	// read the test's directory: keep it the user that runs the test.
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(m.conf, []byte(fmt.Sprintf("user %s\nlistener %d 127.0.0.1\nallow_anonymous false\npassword_file %s\nacl_file %s\npersistence false\n",
		me.Username, m.port, pw, aclFile)), 0o644)
	m.proc = start(t, dir, "mosquitto", nil, mosq, "-c", m.conf)
	m.waitUp()
	return m
}

func (m *mosquittoRig) waitUp() {
	eventually(m.t, "mosquitto listening", func() (bool, string) {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", m.port))
		if err != nil {
			return false, err.Error()
		}
		c.Close()
		return true, ""
	})
}

func (m *mosquittoRig) restart() {
	m.proc.stop(syscall.SIGTERM)
	mosq, _ := exec.LookPath("mosquitto")
	m.proc = start(m.t, m.dir, "mosquitto", nil, mosq, "-c", m.conf)
	m.waitUp()
}

func sdkCreds(t *testing.T, dn, secret string) cloud.Credentials {
	c, err := cloud.SignIn(cloud.Identity{ProductKey: "demo", DeviceName: dn, DeviceSecret: secret}, cloud.SignOptions{Form: cloud.FormSDK})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// watcher records what crosses the broker, exactly as sent, with
// mosquitto_sub.
type watcher struct {
	mu    sync.Mutex
	lines []string
}

func (m *mosquittoRig) watch(ctx context.Context, id string) *watcher {
	t := m.t
	w := &watcher{}
	cmd := exec.CommandContext(ctx, "mosquitto_sub", "-h", "127.0.0.1", "-p", fmt.Sprint(m.port), "-u", "watcher", "-P", "watcher-pw",
		"-i", id, "-q", "1", "-v", "-t", "/ota/device/#")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			w.mu.Lock()
			w.lines = append(w.lines, sc.Text())
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Subscribed once the broker logs the connection (the subscription
	// follows on the same connection, before any message a test sends).
	eventually(t, "watcher "+id+" connected", func() (bool, string) {
		b, _ := os.ReadFile(m.proc.log)
		return bytes.Contains(b, []byte(" as "+id+" ")), tail(string(b), 5)
	})
	return w
}

// find returns the payloads seen on topic that match re.
func (w *watcher) find(topic string, re *regexp.Regexp) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, l := range w.lines {
		tp, payload, _ := strings.Cut(l, " ")
		if tp == topic && (re == nil || re.MatchString(payload)) {
			out = append(out, payload)
		}
	}
	return out
}

func (w *watcher) all() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.lines, "\n")
}

// TestMosquitto_CampaignOverExternalBroker runs the flow with Mosquitto as
// the broker: the exact JSON on the wire, a broker restart in the middle of
// a download, and the ACL keeping a device off another's topics.
func TestMosquitto_CampaignOverExternalBroker(t *testing.T) {
	r := newFleetRig(t)
	devs := map[string]string{"dev-a": "s-a", "dev-b": "s-b"}
	m := newMosquitto(t, r.dir, devs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first, stopFirst := context.WithCancel(ctx)
	defer stopFirst()
	w := m.watch(first, "watcher-1")
	_ = w

	httpPort := freePort(t)
	proxy := newHoldProxy(t, fmt.Sprintf("https://127.0.0.1:%d", httpPort), filepath.Join(r.dir, "data", "ca.pem"), 100<<10)
	r.otaserve(httpPort, freePort(t), "--public-url", proxy.URL(),
		"--broker", fmt.Sprintf("tcp://otaserve:operator-pw@127.0.0.1:%d", m.port))
	board, dn := boards[1], "dev-a"
	r.provision(board, dn)
	r.serve("device", "add", "--product", "demo", "--name", dn, "--board", board, "--secret", devs[dn])
	r.serve("device", "add", "--product", "demo", "--name", "dev-b", "--board", board, "--secret", devs["dev-b"])
	r.deviceYAML(dn, fmt.Sprintf("tcp://127.0.0.1:%d", m.port), devs[dn], "sign_form: sdk\n")
	r.agent(board, dn)
	eventually(t, "device reports 1.0.0+0", func() (bool, string) { v := r.versionOf(dn); return v == "1.0.0+0", v })

	id := r.campaign(board, dn, "1.1.0")
	select {
	case <-proxy.started:
	case <-time.After(60 * time.Second):
		t.Fatal("the download never started")
	}
	stopFirst() // its reconnections would race the new watcher's
	m.restart()
	w = m.watch(ctx, "watcher-2")
	proxy.open()
	eventually(t, "campaign finished", func() (bool, string) {
		s := r.campaignState(id)
		return strings.HasSuffix(s, "finished: every wave succeeded"), s + "\n" + w.all()
	})

	// The exact messages, as a platform device would send them: inform
	// {"id":N,"params":{"version":"..."}}, with otaport's additions the
	// nonce for signed orders and the running image's hash for deltas,
	// progress with the step as a string.
	inform := regexp.MustCompile(`^\{"id":\d+,"params":\{"version":"1\.1\.0\+0"(,"nonce":"[0-9a-f]{32}")?(,"imageHash":"[0-9a-f]{64}")?\}\}$`)
	eventually(t, "inform of 1.1.0+0 on the wire", func() (bool, string) {
		return len(w.find("/ota/device/inform/demo/dev-a", inform)) > 0, w.all()
	})
	progress := regexp.MustCompile(`^\{"id":\d+,"params":\{"step":"(\d+)","desc":"[^"]*"\}\}$`)
	if got := w.find("/ota/device/progress/demo/dev-a", progress); len(got) == 0 {
		t.Errorf("no progress in the platform's format on the wire after the restart:\n%s", w.all())
	}

	// ACL: dev-a may not publish on dev-b's topics. The refused message is
	// followed by one dev-a may send; the watcher sees the second only.
	creds := sdkCreds(t, dn, devs[dn])
	pub := func(topic, payload string) {
		out, err := exec.Command("mosquitto_pub", "-h", "127.0.0.1", "-p", fmt.Sprint(m.port), "-q", "1",
			"-u", creds.Username, "-P", creds.Password, "-i", creds.ClientID+"x", "-t", topic, "-m", payload).CombinedOutput()
		if err != nil {
			t.Fatalf("mosquitto_pub %s: %v: %s", topic, err, out)
		}
	}
	pub("/ota/device/progress/demo/dev-b", `{"id":1,"params":{"step":"-1","desc":"forged by dev-a"}}`)
	pub("/ota/device/inform/demo/dev-a", `{"id":99,"params":{"version":"1.1.0+0"}}`)
	eventually(t, "dev-a's own message delivered", func() (bool, string) {
		return len(w.find("/ota/device/inform/demo/dev-a", regexp.MustCompile(`"id":99`))) > 0, w.all()
	})
	if got := w.find("/ota/device/progress/demo/dev-b", nil); len(got) > 0 {
		t.Errorf("the broker let dev-a publish on dev-b's progress topic: %v", got)
	}
}

// TestMixedBoardCampaign: one campaign to a group of devices on two boards,
// with an image per board: each device takes its board's image and
// confirms it, and the campaign finishes. Before, a campaign took one image
// and its target had to be of one board: one campaign per board.
func TestMixedBoardCampaign(t *testing.T) {
	r := newFleetRig(t)
	httpPort, mqttPort := freePort(t), freePort(t)
	r.otaserve(httpPort, mqttPort)
	var images []string
	for i, board := range boards[:2] {
		dn := fmt.Sprintf("dev-%d", i)
		r.provision(board, dn)
		r.serve("device", "add", "--product", "demo", "--name", dn, "--board", board, "--group", "mix", "--secret", "s-"+dn)
		r.deviceYAML(dn, fmt.Sprintf("ssl://127.0.0.1:%d", mqttPort), "s-"+dn, "")
		r.agent(board, dn)
		out := r.serve("image", "upload", "--board", board, "app-1.1.0.img")
		id := regexp.MustCompile(`^image (\d+):`).FindStringSubmatch(out)
		if id == nil {
			t.Fatalf("image upload said %q", out)
		}
		images = append(images, "--image", id[1])
	}
	for _, dn := range []string{"dev-0", "dev-1"} {
		eventually(t, dn+" reports 1.0.0+0", func() (bool, string) { v := r.versionOf(dn); return v == "1.0.0+0", v })
	}
	out := r.serve(append(append([]string{"campaign", "create"}, images...), "--target", "group=mix", "--waves", "1,100%", "--success", "100")...)
	c := regexp.MustCompile(`^campaign (\d+): 1.1.0\+0 to 2 devices in 2 waves, running`).FindStringSubmatch(out)
	if c == nil {
		t.Fatalf("campaign create said %q", out)
	}
	eventually(t, "campaign finished", func() (bool, string) {
		s := r.campaignState(c[1])
		return strings.HasSuffix(s, "finished: every wave succeeded"), s
	})
	for _, dn := range []string{"dev-0", "dev-1"} {
		if v := r.versionOf(dn); v != "1.1.0+0" {
			t.Errorf("otaserve has %s for %s, want 1.1.0+0", v, dn)
		}
	}
}

// TestTwoModuleDevice: a device of two modules, its MCU (the default
// module, on nucleo-h743zi) and its Wi-Fi module (on b-l475e-iot01a), each
// its own port plugin process on its own flash, run by one otarun agent
// from device.yaml's modules list. A campaign for module wifi upgrades the
// Wi-Fi module while the MCU's version stays, and otaserve shows each
// module's version.
func TestTwoModuleDevice(t *testing.T) {
	r := newFleetRig(t)
	httpPort, mqttPort := freePort(t), freePort(t)
	r.otaserve(httpPort, mqttPort)
	mcuBoard, wifiBoard := boards[0], boards[1]
	run(t, r.dir, "otarun", "--plugin", filepath.Join(bin, "otaport-"+mcuBoard), "provision", "--key", "pub.pem", "--flash", "mcu.flash", "app-1.0.0.img")
	run(t, r.dir, "otarun", "--plugin", filepath.Join(bin, "otaport-"+wifiBoard), "provision", "--key", "pub.pem", "--flash", "wifi.flash", "app-1.0.0.img")
	r.serve("device", "add", "--product", "demo", "--name", "combo", "--board", mcuBoard, "--module", "wifi="+wifiBoard, "--secret", "s-combo")
	r.deviceYAML("combo", fmt.Sprintf("ssl://127.0.0.1:%d", mqttPort), "s-combo", fmt.Sprintf(`modules:
  - {name: default, plugin: %s, flash: mcu.flash}
  - {name: wifi, plugin: %s, flash: wifi.flash}
`, filepath.Join(bin, "otaport-"+mcuBoard), filepath.Join(bin, "otaport-"+wifiBoard)))
	agent := start(t, r.dir, "combo", nil, "otarun", "agent", "--json", "--config", "combo.yaml")

	modules := func() (map[string]string, string) {
		out := r.serve("device", "get", "demo/combo", "--json")
		var d struct {
			Modules []struct{ Name, Board, Version, State string }
		}
		if err := json.Unmarshal([]byte(out), &d); err != nil {
			t.Fatalf("device get --json: %v\n%s", err, out)
		}
		got := map[string]string{}
		for _, m := range d.Modules {
			got[m.Name] = m.Board + " " + m.Version + " " + m.State
		}
		return got, out
	}
	eventually(t, "both modules report 1.0.0+0", func() (bool, string) {
		m, out := modules()
		return m["default"] == mcuBoard+" 1.0.0+0 idle" && m["wifi"] == wifiBoard+" 1.0.0+0 idle", out
	})

	out := r.serve("image", "upload", "--board", wifiBoard, "app-1.1.0.img")
	id := regexp.MustCompile(`^image (\d+):`).FindStringSubmatch(out)
	if id == nil {
		t.Fatalf("image upload said %q", out)
	}
	out = r.serve("campaign", "create", "--module", "wifi", "--image", id[1], "--target", "devices=demo/combo")
	c := regexp.MustCompile(`^campaign (\d+): 1.1.0\+0 to module wifi of 1 devices in 1 waves, running`).FindStringSubmatch(out)
	if c == nil {
		t.Fatalf("campaign create said %q", out)
	}
	eventually(t, "the wifi campaign finished", func() (bool, string) {
		s := r.campaignState(c[1])
		return strings.HasSuffix(s, "finished: every wave succeeded"), s
	})
	m, out := modules()
	if m["wifi"] != wifiBoard+" 1.1.0+0 idle" || m["default"] != mcuBoard+" 1.0.0+0 idle" {
		t.Errorf("after the wifi campaign otaserve has %v, want wifi at 1.1.0+0 and the MCU still at 1.0.0+0:\n%s", m, out)
	}
	list := r.serve("device", "list")
	if !regexp.MustCompile(`(?m)^demo +combo +` + mcuBoard + ` +- +1\.0\.0\+0 +idle +wifi=1\.1\.0\+0\(idle\)`).MatchString(list) {
		t.Errorf("device list does not show both modules' versions:\n%s", list)
	}
	// The agent confirmed the Wi-Fi module's image, and only that one.
	b, _ := os.ReadFile(agent.log)
	log := string(b)
	if !regexp.MustCompile(`"event":"confirmed","module":"wifi"[^\n]*"version":"1\.1\.0`).MatchString(log) {
		t.Errorf("the agent's events have no confirmation of wifi 1.1.0:\n%s", tail(log, 3000))
	}
	if regexp.MustCompile(`"event":"confirmed","module":"default"`).MatchString(log) {
		t.Errorf("the MCU confirmed an image it was never ordered:\n%s", tail(log, 3000))
	}
}
