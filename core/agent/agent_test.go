package agent_test

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otaport/otaport/core/agent"
	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/core/cloud/cloudtest"
	"github.com/otaport/otaport/core/engine"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/hal/haltest"
	"github.com/otaport/otaport/core/image"
)

const (
	pk, dn, secret = "pk", "dev", "s3cret"
	testBoard      = "nucleo-h743zi" // dual-bank, ecdsa-p256, 2 boot attempts
)

// rig is one simulated device and the cloud around it: an MQTT broker that
// signs devices in as the platform does (core/cloud/cloudtest), a firmware
// HTTP server and the board's port over emulated flash in memory, all real
// and in this process.
type rig struct {
	t       *testing.T
	dir     string
	board   string
	scheme  string // the board's signature algorithm, the rig's key type
	payload int    // bytes of payload in each image
	key     crypto.Signer
	keyFile string
	encrypt any                // the key images are encrypted for; nil: plain images
	deps    []image.Dependency // the DEPENDENCY TLVs of the images sign makes
	port    *boot.Platform
	flash   *flash.Emulator // the port's flash, to count its operations
	dev     agent.Port      // what agents run on: port, or a wrapper of it
	broker  *cloudtest.Broker
	images  map[string][]byte // path -> image
	hold    chan struct{}     // closed to let a held download go on
	holdAt  int               // serve this many bytes, then wait on hold
	fw      *httptest.Server
	mu      sync.Mutex
	msgs    []msg         // messages devices published
	events  []agent.Event // what the agents reported to their watcher
	changed chan struct{}
}

type msg struct {
	kind    string
	payload []byte
}

func newRig(t *testing.T) *rig {
	t.Helper()
	return newRigOn(t, testBoard)
}

// newRigOn is newRig on another board of core/hal/haltest, with a key of
// the board's signature algorithm and images that fit its slots.
func newRigOn(t *testing.T, board string) *rig {
	t.Helper()
	l, ok := haltest.Layout(board)
	if !ok {
		t.Fatalf("board %s is not among core/hal/haltest's boards", board)
	}
	r := &rig{t: t, dir: t.TempDir(), board: board, scheme: l.Signature, payload: 64 << 10,
		images: map[string][]byte{}, changed: make(chan struct{}, 1)}
	for _, p := range l.Partitions {
		if p.Name == hal.PartApp {
			r.payload = min(r.payload, int(p.Size/2))
		}
	}
	key, err := image.GenerateKey(l.Signature)
	if err != nil {
		t.Fatal(err)
	}
	r.key = key
	pub, err := image.MarshalPublicKeyPEM(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	r.keyFile = filepath.Join(r.dir, "pub.pem")
	if err := os.WriteFile(r.keyFile, pub, 0o644); err != nil {
		t.Fatal(err)
	}

	dev, err := flash.NewMemory(l.Flash)
	if err != nil {
		t.Fatal(err)
	}
	r.port, err = boot.NewPlatform(l, dev, boot.Options{Keys: []crypto.PublicKey{key.Public()}})
	if err != nil {
		t.Fatal(err)
	}
	r.dev, r.flash = r.port, dev

	r.broker = cloudtest.Start(t, cloudtest.Config{
		Lookup: func(p, d string) (string, bool) {
			return secret, p == pk && d == dn
		},
	})
	unsub, err := r.broker.Subscribe("/ota/device/+/"+pk+"/"+dn, func(topic string, payload []byte) {
		kind, _, _, _ := cloud.ParseTopic(topic)
		if kind == cloud.KindUpgrade {
			return
		}
		r.mu.Lock()
		r.msgs = append(r.msgs, msg{kind, append([]byte(nil), payload...)})
		r.mu.Unlock()
		select {
		case r.changed <- struct{}{}:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unsub)

	r.fw = httptest.NewServer(http.HandlerFunc(r.serveFirmware))
	t.Cleanup(r.fw.Close)

	// Factory provisioning: v1.0.0, permanent and confirmed.
	first := r.sign("1.0.0")
	path := filepath.Join(r.dir, "first.img")
	if err := os.WriteFile(path, first, 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := agent.Provision(context.Background(), r.port, []string{r.keyFile}, path, nil)
	if err != nil {
		t.Fatalf("provision: %v", err)
	}
	if st.RunningVersion != "1.0.0+0" {
		t.Fatalf("after provisioning %s runs, want 1.0.0+0", st.RunningVersion)
	}
	return r
}

// serveFirmware serves the images; with holdAt set it sends that many bytes
// of the body, then waits until hold is closed or the client goes.
func (r *rig) serveFirmware(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	img, ok := r.images[req.URL.Path]
	holdAt, hold := r.holdAt, r.hold
	r.mu.Unlock()
	if !ok {
		http.NotFound(w, req)
		return
	}
	if holdAt == 0 || req.Header.Get("Range") != "" {
		http.ServeContent(w, req, "", time.Time{}, strings.NewReader(string(img)))
		return
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(img)))
	w.Header().Set("Accept-Ranges", "bytes")
	w.Write(img[:holdAt])
	w.(http.Flusher).Flush()
	select {
	case <-hold:
		w.Write(img[holdAt:])
	case <-req.Context().Done():
	}
}

// sign makes a signed image of version v: r.payload bytes of payload.
func (r *rig) sign(v string) []byte {
	r.t.Helper()
	ver, err := image.ParseVersion(v)
	if err != nil {
		r.t.Fatal(err)
	}
	payload := make([]byte, r.payload)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	img, err := image.Sign(payload, r.key, image.SignOptions{Version: ver, Encrypt: r.encrypt, Dependencies: r.deps})
	if err != nil {
		r.t.Fatal(err)
	}
	return img
}

// order publishes an order for a new image of version v and returns it.
func (r *rig) order(id int64, v string, edit func(*cloud.Order)) *cloud.Order {
	r.t.Helper()
	o := r.newOrder(id, v, edit)
	r.publish(o)
	return o
}

// publish sends an order to the device through the rig's broker.
func (r *rig) publish(o *cloud.Order) {
	r.t.Helper()
	b, err := cloud.Marshal(o)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.broker.Publish(cloud.Topics(pk, dn).Upgrade, b); err != nil {
		r.t.Fatal(err)
	}
}

// newOrder makes an order for a new image of version v, served by the
// rig's firmware server, without sending it.
func (r *rig) newOrder(id int64, v string, edit func(*cloud.Order)) *cloud.Order {
	r.t.Helper()
	img := r.sign(v)
	path := "/firmware/" + v
	r.mu.Lock()
	r.images[path] = img
	r.mu.Unlock()
	o := &cloud.Order{
		Code: cloud.OrderCodeSuccess, Message: cloud.OrderMessageSuccess, ID: id,
		Data: cloud.OrderData{
			Size: int64(len(img)), Version: v, URL: r.fw.URL + path,
			SignMethod: "SHA256", Sign: sha256Hex(img),
			Otaport: &cloud.Extension{Scheme: r.scheme, Board: r.board},
		},
	}
	if edit != nil {
		edit(o)
	}
	return o
}

func (r *rig) config() agent.Config {
	return agent.Config{
		Broker:     "tcp://" + r.broker.Addr(),
		Identity:   agent.IdentityConfig{ProductKey: pk, DeviceName: dn, DeviceSecret: secret},
		PublicKeys: []string{r.keyFile},
		HealthCheck: agent.HealthCheck{
			Command: []string{"sh", "-c", `case "$OTARUN_VERSION" in 1.2.*) echo "self-test failed in $OTARUN_VERSION after $OTARUN_PREVIOUS_VERSION" >&2; exit 1;; esac`},
		},
		// Long enough that no heartbeat repeats a percentage in a test.
		ReportInterval: agent.Duration(time.Hour),
		// The rig's orders are unsigned; orders_test.go signs them.
		SignedOrders: new(bool),
	}
}

// start runs an agent on the rig until the returned stop is called.
func (r *rig) start(cfg agent.Config) (stop func()) {
	r.t.Helper()
	return r.startWith(agent.Options{Config: cfg, Port: r.dev})
}

// startWith is start with the options' config and ports; the rig sets the
// engine's options and the event watcher.
func (r *rig) startWith(opts agent.Options) (stop func()) {
	r.t.Helper()
	opts.Engine = engine.Options{ChunkSize: 4 << 10, CheckpointEvery: 8 << 10, RetryBackoff: 10 * time.Millisecond}
	opts.OnEvent = func(ev agent.Event) {
		r.mu.Lock()
		r.events = append(r.events, ev)
		r.mu.Unlock()
	}
	a, err := agent.New(opts)
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				r.t.Errorf("agent stopped with %v, want nil after a stop", err)
			}
		})
	}
	r.t.Cleanup(stop)
	return stop
}

// waitFor waits until cond holds for the messages so far, and returns the
// index just past the message that made it hold.
func (r *rig) waitFor(what string, from int, cond func(m msg) bool) int {
	r.t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		r.mu.Lock()
		for i := from; i < len(r.msgs); i++ {
			if cond(r.msgs[i]) {
				r.mu.Unlock()
				return i + 1
			}
		}
		r.mu.Unlock()
		select {
		case <-r.changed:
		case <-deadline:
			r.t.Fatalf("no %s in the device's messages:\n%s", what, r.dump(from))
		}
	}
}

func (r *rig) dump(from int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, m := range r.msgs[from:] {
		fmt.Fprintf(&b, "  %s %s\n", m.kind, m.payload)
	}
	return b.String()
}

func (r *rig) since(from int) []msg {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]msg(nil), r.msgs[from:]...)
}

func informOf(v string) func(m msg) bool {
	return func(m msg) bool {
		if m.kind != cloud.KindInform {
			return false
		}
		in, err := cloud.ParseInform(m.payload)
		return err == nil && in.Params.Version == v
	}
}

func progressOf(step cloud.Step, descPart string) func(m msg) bool {
	return func(m msg) bool {
		if m.kind != cloud.KindProgress {
			return false
		}
		p, err := cloud.ParseProgress(m.payload)
		return err == nil && p.Params.Step == step && strings.Contains(p.Params.Desc, descPart)
	}
}

func (r *rig) running() hal.SlotState {
	r.t.Helper()
	info, err := r.port.Describe(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	for _, s := range info.Boot.Slots {
		if s.Active {
			return s
		}
	}
	r.t.Fatalf("no active slot: %+v", info.Boot)
	return hal.SlotState{}
}

// checkProgress asserts the percentages between two indexes rise strictly:
// at most one report per percent.
func checkProgress(t *testing.T, ms []msg) {
	t.Helper()
	last := -1
	n := 0
	for _, m := range ms {
		if m.kind != cloud.KindProgress {
			continue
		}
		p, err := cloud.ParseProgress(m.payload)
		if err != nil {
			t.Fatalf("progress %s: %v", m.payload, err)
		}
		pct, ok := p.Params.Step.Percent()
		if !ok {
			continue
		}
		if pct <= last {
			t.Errorf("progress %d%% after %d%%: want each percent at most once, rising", pct, last)
		}
		last = pct
		n++
	}
	if n < 2 || last != 100 {
		t.Errorf("%d progress reports ending at %d%%, want 0 .. 100", n, last)
	}
}

func TestAgent_UpgradeConfirmRollbackAndRefusals(t *testing.T) {
	r := newRig(t)
	r.start(r.config())
	i := r.waitFor("inform 1.0.0+0 at start", 0, informOf("1.0.0+0"))

	// A good image: installed, booted on trial, healthy, confirmed.
	r.order(1001, "1.1.0", nil)
	j := r.waitFor("inform 1.1.0+0", i, informOf("1.1.0+0"))
	checkProgress(t, r.since(i)[:j-i])
	if s := r.running(); s.Version != "1.1.0+0" || !s.Confirmed {
		t.Fatalf("after the upgrade the running slot is %+v, want 1.1.0+0 confirmed", s)
	}
	for _, m := range r.since(i)[:j-i] {
		if m.kind == cloud.KindProgress && !json.Valid(m.payload) {
			t.Errorf("progress is not JSON: %s", m.payload)
		}
	}

	// An image that fails its health check: reported with the reason, and
	// the device returns to 1.1.0 on its own.
	r.order(1002, "1.2.0", nil)
	k := r.waitFor("failure of 1.2.0", j, progressOf(cloud.StepUpgradeFailed, "self-test failed in 1.2.0+0 after 1.1.0+0"))
	k = r.waitFor("inform 1.1.0+0 after the rollback", k, informOf("1.1.0+0"))
	if s := r.running(); s.Version != "1.1.0+0" || !s.Confirmed {
		t.Fatalf("after the rollback the running slot is %+v, want 1.1.0+0 confirmed", s)
	}
	for _, m := range r.since(j)[:k-j] {
		if informOf("1.2.0+0")(m) {
			t.Errorf("the device reported 1.2.0+0, which never passed its health check")
		}
	}

	// The same image again: answered with its failure, not installed.
	r.order(1003, "1.2.0", nil)
	k = r.waitFor("refusal of the failed image", k, progressOf(cloud.StepUpgradeFailed, "not retried: 1.2.0 failed on this device"))

	// Orders the device must refuse before downloading.
	cases := []struct {
		name string
		v    string
		edit func(*cloud.Order)
		want string
	}{
		{"other board", "1.3.0", func(o *cloud.Order) { o.Data.Otaport.Board = "rpi4-b" }, "built for board rpi4-b"},
		{"downgrade", "1.0.5", nil, "older than the running 1.1.0+0"},
		{"too large", "1.4.0", func(o *cloud.Order) { o.Data.Size = 64 << 20 }, "the update slot holds"},
		{"other scheme", "1.5.0", func(o *cloud.Order) { o.Data.Otaport.Scheme = "ed25519" }, "signed with ed25519"},
	}
	for n, c := range cases {
		r.order(int64(2000+n), c.v, c.edit)
		k = r.waitFor("refusal: "+c.name, k, progressOf(cloud.StepUpgradeFailed, c.want))
	}
	if s := r.running(); s.Version != "1.1.0+0" {
		t.Fatalf("after the refusals %s runs, want 1.1.0+0", s.Version)
	}

	// The running version again: reported, nothing installed.
	r.order(3000, "1.1.0", nil)
	r.waitFor("inform for an order of the running version", k, informOf("1.1.0+0"))
}

func TestAgent_StopMidDownloadResumesAndFinishes(t *testing.T) {
	r := newRig(t)
	r.mu.Lock()
	r.holdAt, r.hold = 40<<10, make(chan struct{})
	r.mu.Unlock()
	stop := r.start(r.config())
	i := r.waitFor("inform 1.0.0+0", 0, informOf("1.0.0+0"))
	r.order(1001, "1.1.0", nil)
	// Stopped once the download has reported some progress.
	i = r.waitFor("progress during the download", i, func(m msg) bool {
		p, err := cloud.ParseProgress(m.payload)
		if m.kind != cloud.KindProgress || err != nil {
			return false
		}
		pct, ok := p.Params.Step.Percent()
		return ok && pct > 0
	})
	stop()
	r.mu.Lock()
	r.holdAt = 0
	close(r.hold)
	r.mu.Unlock()

	// The next start finishes the order before it reports a version: an
	// inform of 1.0.0 now would read as a rollback to the cloud.
	r.start(r.config())
	j := r.waitFor("inform 1.1.0+0 after the restart", i, informOf("1.1.0+0"))
	for _, m := range r.since(i)[:j-i] {
		if informOf("1.0.0+0")(m) {
			t.Errorf("the agent reported 1.0.0+0 while it had an order in hand")
		}
		if m.kind == cloud.KindProgress {
			if p, _ := cloud.ParseProgress(m.payload); p.Params.Step.Failed() {
				t.Errorf("failure after the restart: %s", m.payload)
			}
		}
	}
	if s := r.running(); s.Version != "1.1.0+0" || !s.Confirmed {
		t.Fatalf("running %+v, want 1.1.0+0 confirmed", s)
	}
}

// TestAgent_StopBeforeTheFirstWriteInstallsOnRestart: an agent stopped
// (or killed) after it took an order but before the engine wrote a byte
// finds the engine as it was (an install records itself only when it is
// about to change the slot) and must carry the order out at the next
// start, not report it failed because the old image still runs.
func TestAgent_StopBeforeTheFirstWriteInstallsOnRestart(t *testing.T) {
	r := newRig(t)
	r.mu.Lock()
	r.holdAt, r.hold = 1, make(chan struct{})
	r.mu.Unlock()
	stop := r.start(r.config())
	i := r.waitFor("inform 1.0.0+0", 0, informOf("1.0.0+0"))
	r.order(1002, "1.1.0", nil)
	i = r.waitFor("the order accepted", i, progressOf(cloud.StepPercent(0), "accepted"))
	stop()
	r.mu.Lock()
	r.holdAt = 0
	close(r.hold)
	r.mu.Unlock()

	r.start(r.config())
	j := r.waitFor("inform 1.1.0+0 after the restart", i, informOf("1.1.0+0"))
	for _, m := range r.since(i)[:j-i] {
		if m.kind == cloud.KindProgress {
			if p, _ := cloud.ParseProgress(m.payload); p.Params.Step.Failed() {
				t.Errorf("failure after the restart: %s", m.payload)
			}
		}
	}
	if s := r.running(); s.Version != "1.1.0+0" || !s.Confirmed {
		t.Fatalf("running %+v, want 1.1.0+0 confirmed", s)
	}
}

func TestAgent_StateLoopGuardGivesUp(t *testing.T) {
	r := newRig(t)
	// A record as a device would leave it after many restarts in the
	// middle of one order.
	rec := fmt.Sprintf(`{"order":{"id":7,"version":"1.1.0","url":"%s/firmware/1.1.0","size":1},"phase":"checking","changes":%d}`, r.fw.URL, agent.MaxStateChanges)
	eng, err := engine.New(r.port, r.port, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.SetNote(context.Background(), []byte(rec)); err != nil {
		t.Fatal(err)
	}
	r.start(r.config())
	i := r.waitFor("the guard's failure report", 0, progressOf(cloud.StepUpgradeFailed, "state loop guard"))
	r.waitFor("inform after giving up", i, informOf("1.0.0+0"))
}

func TestNew_RefusesMissingPortAndKeys(t *testing.T) {
	if _, err := agent.New(agent.Options{}); err == nil {
		t.Error("New without a port: no error")
	}
	r := newRig(t)
	cfg := r.config()
	cfg.PublicKeys = []string{filepath.Join(r.dir, "missing.pem")}
	_, err := agent.New(agent.Options{Config: cfg, Port: r.port})
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "public_keys") {
		t.Errorf("New with a missing key file: %v, want a public_keys error wrapping ErrNotExist", err)
	}
}

func TestAgent_KeepsTryingTheCloud(t *testing.T) {
	r := newRig(t)
	var attempts atomic.Int32
	a, err := agent.New(agent.Options{
		Config: r.config(),
		Port:   r.port,
		Dial: func(ctx context.Context, cfg cloud.Config) (agent.Link, error) {
			if attempts.Add(1) == 1 {
				return nil, errors.New("connection refused (first attempt)")
			}
			return cloud.Dial(ctx, cfg)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	r.waitFor("inform after a failed first connection", 0, informOf("1.0.0+0"))
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if n := attempts.Load(); n != 2 {
		t.Errorf("%d connection attempts, want 2", n)
	}
}

// keys returns the public key images of this rig are signed with.
func (r *rig) keys() []crypto.PublicKey { return []crypto.PublicKey{r.key.Public()} }

// plainLink is a cloud link that cannot carry a version report's nonce, as
// a link to a platform of the protocol's first versions.
type plainLink struct{ informs chan string }

func (l plainLink) InformModule(_ context.Context, _, version string) error {
	l.informs <- version
	return nil
}
func (plainLink) Report(context.Context, cloud.Progress) error { return nil }
func (plainLink) Close() error                                 { return nil }

// TestAgent_MigrationModeInformsOverALinkWithoutNonce: a device.yaml from
// before signed orders (migration mode) reports its version over a link
// that cannot carry the nonce, without one, instead of never reporting.
func TestAgent_MigrationModeInformsOverALinkWithoutNonce(t *testing.T) {
	r := newRig(t)
	cfg := r.config()
	cfg.SignedOrders = nil // neither order_key nor signed_orders: migration mode
	if !cfg.Migration() {
		t.Fatal("the config is not in migration mode")
	}
	link := plainLink{informs: make(chan string, 4)}
	a, err := agent.New(agent.Options{Config: cfg, Port: r.port,
		Dial: func(context.Context, cloud.Config) (agent.Link, error) { return link, nil }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case v := <-link.informs:
		if v != "1.0.0+0" {
			t.Errorf("informed %s, want 1.0.0+0", v)
		}
	case <-time.After(30 * time.Second):
		t.Error("no version report over a link without nonce")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}
