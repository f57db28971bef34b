package campaign

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/fleet/store"
)

// recorder stands in for the broker connection: it keeps what would be
// published.
type recorder struct {
	mu   sync.Mutex
	msgs map[string][][]byte
}

func (r *recorder) Publish(_ context.Context, topic string, payload []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.msgs == nil {
		r.msgs = map[string][][]byte{}
	}
	r.msgs[topic] = append(r.msgs[topic], payload)
	return nil
}

func (r *recorder) orders(t *testing.T, pk, dn string) []*cloud.Order {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*cloud.Order
	for _, b := range r.msgs[cloud.Topics(pk, dn).Upgrade] {
		o, err := cloud.ParseOrder(b)
		if err != nil {
			t.Fatalf("order to %s/%s does not parse as a device would: %v", pk, dn, err)
		}
		out = append(out, o)
	}
	return out
}

func newService(t testing.TB, path string) (*Service, *store.Store) {
	st, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := NewService(Config{Store: st, FirmwareURL: func(img store.Image) string {
		return "http://127.0.0.1:8080/firmware/" + img.SHA256
	}})
	if err != nil {
		t.Fatal(err)
	}
	return svc, st
}

func seed(t testing.TB, st *store.Store, n int) store.Image {
	for i := range n {
		if err := st.AddDevice(store.Device{ProductKey: "pk", DeviceName: fmt.Sprintf("d%d", i), Board: "b", Version: "1.0.0+0"}); err != nil {
			t.Fatal(err)
		}
	}
	img, err := st.AddImage(store.Image{Version: "2.0.0+0", Board: "b", Size: 4096, SHA256: fmt.Sprintf("%064x", 1), MD5: fmt.Sprintf("%032x", 2),
		SecurityCounter: 5, SignatureType: "ed25519", KeyID: "ab"})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func msg(t *testing.T, svc *Service, kind, dn, payload string) {
	t.Helper()
	topic := map[string]string{"inform": cloud.Topics("pk", dn).Inform, "progress": cloud.Topics("pk", dn).Progress, "request": cloud.Topics("pk", dn).Request}[kind]
	if err := svc.HandleMessage(topic, []byte(payload)); err != nil {
		t.Fatal(err)
	}
	flush(t, svc)
}

// flush waits for the orders the service has queued to be published.
func flush(t testing.TB, svc *Service) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := svc.Flush(ctx); err != nil {
		t.Fatalf("orders not published: %v", err)
	}
}

func TestService_OrdersAndRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fleet.db")
	svc, st := newService(t, path)
	img := seed(t, st, 3)
	rec := &recorder{}
	svc.SetPublisher(rec)
	c, err := svc.Create(context.Background(), CreateRequest{ImageIDs: []uint64{img.ID}, Target: store.Target{Product: "pk"}, Waves: "1,100%", SuccessPercent: 100, ErrorPercent: 50})
	if err != nil {
		t.Fatal(err)
	}
	flush(t, svc)
	ords := rec.orders(t, "pk", "d0")
	if len(ords) != 1 {
		t.Fatalf("d0 got %d orders, want 1", len(ords))
	}
	o := ords[0]
	if o.Data.Size != 4096 || o.Data.Version != "2.0.0+0" || o.Data.Sign != img.SHA256 || o.Data.MD5 != img.MD5 ||
		o.Data.URL != "http://127.0.0.1:8080/firmware/"+img.SHA256 || o.Data.Otaport == nil ||
		o.Data.Otaport.Campaign != fmt.Sprint(c.ID) || o.Data.Otaport.SecurityCounter != 5 || o.Data.Otaport.Board != "b" || o.Data.Otaport.Scheme != "ed25519" {
		t.Errorf("order = %+v %+v", o.Data, o.Data.Otaport)
	}
	if len(rec.orders(t, "pk", "d1")) != 0 {
		t.Error("wave 2 ordered before wave 1 succeeded")
	}
	// A request for the pending order gets it again.
	msg(t, svc, "request", "d0", `{"id":1,"params":{"version":"1.0.0"}}`)
	if len(rec.orders(t, "pk", "d0")) != 2 {
		t.Error("request did not resend the order")
	}
	msg(t, svc, "progress", "d0", `{"id":1,"params":{"step":"40","desc":"downloading"}}`)
	if d, _ := st.Device("pk", "d0"); d.State != store.DeviceUpgrading || d.LastSeen.IsZero() {
		t.Errorf("registry d0 = %+v", d)
	}

	// Restart: the service reloads the running campaign from the file.
	svc.SetPublisher(nil)
	st.Close()
	svc, st = newService(t, path)
	defer st.Close()
	rec = &recorder{}
	svc.SetPublisher(rec)
	defer svc.SetPublisher(nil)
	msg(t, svc, "inform", "d0", `{"id":2,"params":{"version":"2.0.0"}}`)
	if len(rec.orders(t, "pk", "d1")) != 1 || len(rec.orders(t, "pk", "d2")) != 1 {
		t.Fatal("wave 2 not ordered after wave 1 succeeded across a restart")
	}
	msg(t, svc, "progress", "d1", `{"id":3,"params":{"step":"-3","desc":"bad signature"}}`)
	msg(t, svc, "progress", "d2", `{"id":3,"params":{"step":"-2","desc":"timeout"}}`)
	stat, err := svc.Status(c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stat.Campaign.State != store.CampaignPaused || stat.Waves[1].Failed != 2 {
		t.Errorf("status = %+v", stat)
	}
	if d, _ := st.Device("pk", "d1"); d.State != store.DeviceFailed || d.LastError != "verification failed: bad signature" {
		t.Errorf("registry d1 = %+v", d)
	}
	if d, _ := st.Device("pk", "d0"); d.Version != "2.0.0" || d.State != store.DeviceIdle {
		t.Errorf("registry d0 = %+v", d)
	}
}

// An operator's request that has given up (its context is done) by the time
// the service can act on it changes nothing: no campaign the operator never
// heard of, no pause nobody saw.
func TestService_AbandonedOperatorRequestChangesNothing(t *testing.T) {
	svc, st := newService(t, filepath.Join(t.TempDir(), "fleet.db"))
	defer st.Close()
	img := seed(t, st, 2)
	rec := &recorder{}
	svc.SetPublisher(rec)
	defer svc.SetPublisher(nil)
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	req := CreateRequest{ImageIDs: []uint64{img.ID}, Target: store.Target{Product: "pk"}, Waves: "100%", SuccessPercent: 100, ErrorPercent: 100}

	if _, err := svc.Create(gone, req); !errors.Is(err, context.Canceled) {
		t.Fatalf("Create with a canceled context: err = %v, want context.Canceled", err)
	}
	if cs, err := st.Campaigns(); err != nil || len(cs) != 0 {
		t.Fatalf("stored campaigns after an abandoned create: %v, %v; want none", cs, err)
	}
	flush(t, svc)
	if n := len(rec.orders(t, "pk", "d0")); n != 0 {
		t.Fatalf("an abandoned create sent %d orders", n)
	}

	c, err := svc.Create(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	for name, act := range map[string]func(context.Context, uint64) (store.Campaign, error){
		"pause": svc.Pause, "cancel": svc.Cancel,
	} {
		if _, err := act(gone, c.ID); !errors.Is(err, context.Canceled) {
			t.Fatalf("%s with a canceled context: err = %v, want context.Canceled", name, err)
		}
	}
	stored, err := st.Campaign(c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.State != store.CampaignRunning {
		t.Fatalf("campaign after abandoned pause and cancel is %s, want running", stored.State)
	}
	if _, err := svc.Pause(context.Background(), c.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Resume(gone, c.ID); !errors.Is(err, context.Canceled) {
		t.Fatalf("resume with a canceled context: err = %v, want context.Canceled", err)
	}
	if stat, err := svc.Status(c.ID); err != nil || stat.Campaign.State != store.CampaignPaused {
		t.Fatalf("campaign after an abandoned resume: %+v, %v; want paused", stat.Campaign, err)
	}
}

func FuzzHandleMessage(f *testing.F) {
	f.Add("/ota/device/inform/pk/d0", []byte(`{"id":1,"params":{"version":"2.0.0"}}`))
	f.Add("/ota/device/progress/pk/d0", []byte(`{"id":1,"params":{"step":"-1","desc":"x"}}`))
	f.Add("/ota/device/progress/pk/d0", []byte(`{"id":1,"params":{"step":55}}`))
	f.Add("/ota/device/request/pk/d0", []byte(`{"id":1,"params":{"version":"1"}}`))
	f.Add("/ota/device/inform/pk/unknown", []byte(`{}`))
	f.Add("/sys/other", []byte("\x00"))
	// The delta path: a device on the delta's base, and a failure of it.
	f.Add("/ota/device/inform/pk/d1", []byte(`{"id":1,"params":{"version":"1.0.0+0","imageHash":"`+hashV1+`"}}`))
	f.Add("/ota/device/inform/pk/d0", []byte(`{"id":1,"params":{"version":"1.0.0+0","imageHash":"`+hashV1+`"}}`))
	svc, st := newService(f, filepath.Join(f.TempDir(), "fleet.db"))
	defer st.Close()
	img := seed(f, st, 2)
	if _, err := svc.AddImage(context.Background(), store.Image{Version: img.Version, Board: "b", Size: 100, SHA256: fmt.Sprintf("%064x", 9), MD5: fmt.Sprintf("%032x", 9),
		DeltaTarget: img.ID, DeltaBaseHash: hashV1}); err != nil {
		f.Fatal(err)
	}
	svc.SetPublisher(&recorder{})
	defer svc.SetPublisher(nil)
	if _, err := svc.Create(context.Background(), CreateRequest{ImageIDs: []uint64{img.ID}, Target: store.Target{Product: "pk"}, Waves: "1,100%", SuccessPercent: 100}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		// Errors are expected for garbage; the service must not panic
		// and must keep a consistent status.
		svc.HandleMessage(topic, payload)
		if _, err := svc.Status(1); err != nil {
			t.Fatal(err)
		}
	})
}

// failingStore is the real store whose writes fail after their changes
// are made, as a full disk or an I/O error at commit does: the transaction
// is rolled back.
type failingStore struct {
	*store.Store
	fail bool
}

var errDiskFull = errors.New("disk full")

func (f *failingStore) Write(fn func(*store.Writer) error) error {
	return f.Store.Write(func(w *store.Writer) error {
		if err := fn(w); err != nil {
			return err
		}
		if f.fail {
			return errDiskFull
		}
		return nil
	})
}

// TestService_FailedWriteLeavesMemoryAsStored: a device report or an
// operator action whose write fails changes nothing, neither in the
// database nor in what the service shows and acts on. Before, the event
// was applied to the campaign in memory inside the write, and memory ran
// ahead of the database until a restart.
func TestService_FailedWriteLeavesMemoryAsStored(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "fleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	img := seed(t, st, 2)
	fs := &failingStore{Store: st}
	svc, err := NewService(Config{Store: fs, FirmwareURL: func(store.Image) string { return "http://127.0.0.1/fw" }})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	svc.SetPublisher(rec)
	defer svc.SetPublisher(nil)
	c, err := svc.Create(context.Background(), CreateRequest{ImageIDs: []uint64{img.ID}, Target: store.Target{Product: "pk"}, Waves: "1,100%", SuccessPercent: 100, ErrorPercent: 0})
	if err != nil {
		t.Fatal(err)
	}
	flush(t, svc)
	before, err := svc.Status(c.ID)
	if err != nil {
		t.Fatal(err)
	}

	fs.fail = true
	for _, m := range []struct{ kind, payload string }{
		{"progress", `{"id":1,"params":{"step":"40","desc":"downloading"}}`},
		{"inform", `{"id":2,"params":{"version":"2.0.0"}}`}, // would finish d0 and order d1
		{"progress", `{"id":3,"params":{"step":"-2","desc":"timeout"}}`},
	} {
		topic := map[string]string{"inform": cloud.Topics("pk", "d0").Inform, "progress": cloud.Topics("pk", "d0").Progress}[m.kind]
		if err := svc.HandleMessage(topic, []byte(m.payload)); !errors.Is(err, errDiskFull) {
			t.Fatalf("%s with a failing store: err = %v, want the write's error", m.kind, err)
		}
	}
	for name, act := range map[string]func(context.Context, uint64) (store.Campaign, error){
		"pause": svc.Pause, "cancel": svc.Cancel,
	} {
		got, err := act(context.Background(), c.ID)
		if !errors.Is(err, errDiskFull) {
			t.Fatalf("%s with a failing store: err = %v, want the write's error", name, err)
		}
		if got.State != store.CampaignRunning {
			t.Errorf("%s with a failing store answered %s, want the campaign as stored (running)", name, got.State)
		}
	}
	flush(t, svc)
	after, err := svc.Status(c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(after, before) {
		t.Errorf("status after failed writes:\n%+v\nwant it unchanged:\n%+v", after, before)
	}
	if n := len(rec.orders(t, "pk", "d1")); n != 0 {
		t.Errorf("d1 got %d orders from a change that was never stored", n)
	}

	// Once the store works again the same report counts, once.
	fs.fail = false
	msg(t, svc, "inform", "d0", `{"id":4,"params":{"version":"2.0.0"}}`)
	if n := len(rec.orders(t, "pk", "d1")); n != 1 {
		t.Errorf("d1 got %d orders once d0 confirmed, want 1", n)
	}
	stored, err := st.Progress(c.ID)
	if err != nil {
		t.Fatal(err)
	}
	mem, _ := svc.Status(c.ID)
	if !reflect.DeepEqual(stored, mem.Devices) {
		t.Errorf("stored progress %+v\n!= the service's %+v", stored, mem.Devices)
	}
}

// TestService_MixedBoardCampaign: a campaign takes an image per board and
// orders each device its board's image, and finishes when each runs its
// image's version. Before, a target had to be of one board: one campaign
// per board.
func TestService_MixedBoardCampaign(t *testing.T) {
	svc, st := newService(t, filepath.Join(t.TempDir(), "fleet.db"))
	defer st.Close()
	imgB := seed(t, st, 2) // pk/d0 and pk/d1 on board b, image 2.0.0+0
	if err := st.AddDevice(store.Device{ProductKey: "pk", DeviceName: "c0", Board: "c", Version: "1.0.0"}); err != nil {
		t.Fatal(err)
	}
	imgC, err := st.AddImage(store.Image{Version: "2.1.0", Board: "c", Size: 100, SHA256: fmt.Sprintf("%064x", 3), MD5: fmt.Sprintf("%032x", 4), SignatureType: "ecdsa-p256"})
	if err != nil {
		t.Fatal(err)
	}
	imgB2, err := st.AddImage(store.Image{Version: "2.0.1", Board: "b", Size: 100, SHA256: fmt.Sprintf("%064x", 5), MD5: fmt.Sprintf("%032x", 6), SignatureType: "ed25519"})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	svc.SetPublisher(rec)
	defer svc.SetPublisher(nil)
	ctx := context.Background()
	for _, bad := range []struct {
		ids    []uint64
		errHas string
	}{
		{[]uint64{imgB.ID}, "device pk/c0 is a c board and the campaign has no image for c (it has image 1 for b): add a c image"},
		{[]uint64{imgB.ID, imgB2.ID, imgC.ID}, "images 1 and 3 are both for board b: give one image per board"},
		{nil, "no image"},
	} {
		_, err := svc.Create(ctx, CreateRequest{ImageIDs: bad.ids, Target: store.Target{Product: "pk"}, Waves: "100%", SuccessPercent: 100})
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), bad.errHas) {
			t.Errorf("create with images %v: %v, want ErrInvalid mentioning %q", bad.ids, err, bad.errHas)
		}
	}
	_, err = svc.Create(ctx, CreateRequest{ImageIDs: []uint64{imgB.ID, imgC.ID}, Target: store.Target{Devices: []string{"pk/d0"}}, Waves: "100%", SuccessPercent: 100})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "image 2 is for c and target devices=pk/d0 selects no c device: leave it out") {
		t.Errorf("create with an image no device takes: %v", err)
	}

	c, err := svc.Create(ctx, CreateRequest{ImageIDs: []uint64{imgC.ID, imgB.ID}, Target: store.Target{Product: "pk"}, Waves: "100%", SuccessPercent: 100})
	if err != nil {
		t.Fatal(err)
	}
	want := []store.CampaignImage{{ID: imgB.ID, Board: "b", Version: "2.0.0+0"}, {ID: imgC.ID, Board: "c", Version: "2.1.0"}}
	if !reflect.DeepEqual(c.Images, want) {
		t.Errorf("campaign images = %+v, want %+v", c.Images, want)
	}
	flush(t, svc)
	for dn, img := range map[string]store.Image{"d0": imgB, "d1": imgB, "c0": imgC} {
		ords := rec.orders(t, "pk", dn)
		if len(ords) != 1 || ords[0].Data.Sign != img.SHA256 || ords[0].Data.Version != img.Version || ords[0].Data.Otaport.Board != img.Board {
			t.Errorf("%s got %+v, want one order of image %d (%s for %s)", dn, ords, img.ID, img.Version, img.Board)
		}
	}
	// c0 confirming the b image's version would be a wrong image; its
	// own version finishes it.
	msg(t, svc, "progress", "c0", `{"id":1,"params":{"step":"100","desc":""}}`)
	msg(t, svc, "inform", "c0", `{"id":2,"params":{"version":"2.1.0"}}`)
	msg(t, svc, "inform", "d0", `{"id":3,"params":{"version":"2.0.0"}}`)
	msg(t, svc, "inform", "d1", `{"id":4,"params":{"version":"2.0.0"}}`)
	stat, err := svc.Status(c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stat.Campaign.State != store.CampaignFinished {
		t.Errorf("campaign %s (%s), want finished; devices %+v", stat.Campaign.State, stat.Campaign.Reason, stat.Devices)
	}
	if _, _, err := svc.DeleteImage(ctx, imgB2.ID); err != nil {
		t.Errorf("delete an image no campaign uses: %v", err)
	}
}
