package campaign

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/fleet/store"
)

// stuck is a broker that does not acknowledge: Publish waits until release
// is closed or its context ends, as a publish did when the broker's
// acknowledgement queued behind device reports waiting for the service.
type stuck struct {
	release chan struct{}
	entered chan struct{} // one value per Publish call
	rec     recorder
}

func (p *stuck) Publish(ctx context.Context, topic string, payload []byte) error {
	select {
	case p.entered <- struct{}{}:
	default:
	}
	select {
	case <-p.release:
		return p.rec.Publish(ctx, topic, payload)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// within fails the test if f does not return in a minute: the symptom of a
// deadlock, not a measure of speed.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatalf("%s blocked", what)
	}
}

func TestService_BrokerThatDoesNotAckBlocksNothing(t *testing.T) {
	svc, st := newService(t, filepath.Join(t.TempDir(), "fleet.db"))
	defer st.Close()
	img := seed(t, st, 40)
	pub := &stuck{release: make(chan struct{}), entered: make(chan struct{}, 1)}
	svc.SetPublisher(pub)

	var c store.Campaign
	within(t, "Create while the broker does not acknowledge", func() {
		var err error
		c, err = svc.Create(context.Background(), CreateRequest{ImageIDs: []uint64{img.ID}, Target: store.Target{Product: "pk"}, Waves: "100%", SuccessPercent: 100})
		if err != nil {
			t.Error(err)
		}
	})
	<-pub.entered // a publish is now waiting for its acknowledgement
	within(t, "device reports while an order waits for its acknowledgement", func() {
		for i := range 40 {
			msg := func(kind, payload string) {
				topic := map[string]string{"inform": cloud.Topics("pk", fmt.Sprintf("d%d", i)).Inform, "progress": cloud.Topics("pk", fmt.Sprintf("d%d", i)).Progress}[kind]
				if err := svc.HandleMessage(topic, []byte(payload)); err != nil {
					t.Error(err)
				}
			}
			msg("progress", `{"id":1,"params":{"step":"50","desc":""}}`)
			msg("inform", `{"id":2,"params":{"version":"2.0.0"}}`)
		}
	})
	st2, err := svc.Status(c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st2.Campaign.State != store.CampaignFinished || st2.Waves[0].Finished != 40 {
		t.Errorf("campaign after every device confirmed = %s, wave %+v", st2.Campaign.State, st2.Waves[0])
	}
	close(pub.release)
	flush(t, svc)
	for i := range 40 {
		if n := len(pub.rec.orders(t, "pk", fmt.Sprintf("d%d", i))); n != 1 {
			t.Errorf("d%d got %d orders, want 1", i, n)
		}
	}
	svc.SetPublisher(nil)
}

func TestOutbox_StopDoesNotWaitForABrokerThatNeverAnswers(t *testing.T) {
	o := newOutbox(slog.New(slog.DiscardHandler))
	pub := &stuck{release: make(chan struct{}), entered: make(chan struct{}, 1)}
	o.start(pub)
	o.put("pk/a", outgoing{topic: "a", payload: []byte("x")})
	<-pub.entered
	within(t, "stopping the senders with a publish in flight", func() { o.start(nil) })
	if len(pub.rec.msgs) != 0 {
		t.Errorf("published %v through a broker that never answered", pub.rec.msgs)
	}
}

func TestService_OrderKeepsAmpersandUnescaped(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "fleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const url = "https://cdn.example.com/fw/v2.bin?Expires=1700000000&Signature=abc&Key=k1"
	svc, err := NewService(Config{Store: st, FirmwareURL: func(store.Image) string { return url }})
	if err != nil {
		t.Fatal(err)
	}
	img := seed(t, st, 1)
	rec := &recorder{}
	svc.SetPublisher(rec)
	defer svc.SetPublisher(nil)
	if _, err := svc.Create(context.Background(), CreateRequest{ImageIDs: []uint64{img.ID}, Target: store.Target{Product: "pk"}, Waves: "100%", SuccessPercent: 100}); err != nil {
		t.Fatal(err)
	}
	flush(t, svc)
	rec.mu.Lock()
	raw := rec.msgs[cloud.Topics("pk", "d0").Upgrade]
	rec.mu.Unlock()
	if len(raw) != 1 {
		t.Fatalf("got %d orders, want 1", len(raw))
	}
	// A C device's JSON parser looks for the URL as sent; "\u0026" is
	// valid JSON that some of them do not decode.
	if !bytes.Contains(raw[0], []byte(`"url":"`+url+`"`)) || bytes.Contains(raw[0], []byte(`\u0026`)) {
		t.Errorf("order = %s; want the URL with '&' as is", raw[0])
	}
	if o := rec.orders(t, "pk", "d0"); o[0].Data.URL != url {
		t.Errorf("order URL = %q, want %q", o[0].Data.URL, url)
	}
}

func TestService_HandleMessagesStoresABatchTogether(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fleet.db")
	svc, st := newService(t, path)
	const n = 30
	img := seed(t, st, n)
	rec := &recorder{}
	svc.SetPublisher(rec)
	c, err := svc.Create(context.Background(), CreateRequest{ImageIDs: []uint64{img.ID}, Target: store.Target{Product: "pk"}, Waves: "1,100%", SuccessPercent: 100, ErrorPercent: 50})
	if err != nil {
		t.Fatal(err)
	}
	// One batch: d0 confirms (which starts wave 2), garbage in the middle,
	// then every device of wave 2 reports progress and confirms.
	batch := []Message{
		{Topic: cloud.Topics("pk", "d0").Progress, Payload: []byte(`{"id":1,"params":{"step":"100","desc":""}}`)},
		{Topic: cloud.Topics("pk", "d0").Inform, Payload: []byte(`{"id":2,"params":{"version":"2.0.0"}}`)},
		{Topic: cloud.Topics("pk", "d1").Progress, Payload: []byte(`not json`)},
		{Topic: "/sys/other/topic", Payload: []byte(`{}`)},
	}
	for i := 1; i < n; i++ {
		dn := fmt.Sprintf("d%d", i)
		batch = append(batch,
			Message{Topic: cloud.Topics("pk", dn).Progress, Payload: []byte(`{"id":3,"params":{"step":"10","desc":""}}`)},
			Message{Topic: cloud.Topics("pk", dn).Inform, Payload: []byte(`{"id":4,"params":{"version":"2.0.0"}}`)})
	}
	if err := svc.HandleMessages(batch); err == nil {
		t.Error("HandleMessages with a malformed progress: no error")
	}
	flush(t, svc)
	svc.SetPublisher(nil)
	for i := range n {
		if k := len(rec.orders(t, "pk", fmt.Sprintf("d%d", i))); k != 1 {
			t.Errorf("d%d got %d orders, want 1", i, k)
		}
	}

	// What the batch did is on disk: a new service over the same file
	// sees the campaign finished and every device idle on 2.0.0.
	st.Close()
	svc, st = newService(t, path)
	defer st.Close()
	stat, err := svc.Status(c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stat.Campaign.State != store.CampaignFinished || stat.Waves[0].Finished != 1 || stat.Waves[1].Finished != n-1 {
		t.Errorf("after restart: %s, waves %+v", stat.Campaign.State, stat.Waves)
	}
	for i := range n {
		d, err := st.Device("pk", fmt.Sprintf("d%d", i))
		if err != nil || d.Version != "2.0.0" || d.State != store.DeviceIdle || d.LastSeen.IsZero() {
			t.Errorf("registry d%d = %+v, %v", i, d, err)
		}
	}
}

func TestOutbox_NewerOrderReplacesUnsentOne(t *testing.T) {
	o := newOutbox(slog.New(slog.DiscardHandler))
	o.put("pk/a", outgoing{topic: "a", payload: []byte("old")})
	o.put("pk/b", outgoing{topic: "b", payload: []byte("b")})
	o.put("pk/a", outgoing{topic: "a", payload: []byte("new")})
	rec := &recorder{}
	o.start(rec)
	defer o.start(nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := o.flush(ctx); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if got := rec.msgs["a"]; len(got) != 1 || string(got[0]) != "new" {
		t.Errorf("a got %q, want only the newer order", got)
	}
	if got := rec.msgs["b"]; len(got) != 1 {
		t.Errorf("b got %q, want one order", got)
	}
}

func TestDeliver_HandsOverWhatHasQueuedInOneBatch(t *testing.T) {
	queue := make(chan Message, 10)
	for i := range 3 {
		queue <- Message{Topic: fmt.Sprint(i)}
	}
	stop := make(chan struct{})
	var mu sync.Mutex
	var sizes []int
	got := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		Deliver(queue, stop, func(msgs []Message) error {
			mu.Lock()
			sizes = append(sizes, len(msgs))
			mu.Unlock()
			got <- struct{}{}
			return nil
		}, slog.New(slog.DiscardHandler), false)
	}()
	<-got
	queue <- Message{Topic: "late"}
	<-got
	close(stop)
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(sizes) != 2 || sizes[0] != 3 || sizes[1] != 1 {
		t.Errorf("batch sizes = %v, want [3 1]", sizes)
	}
}
