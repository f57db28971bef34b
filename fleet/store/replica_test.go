package store

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestLease_FencesTheFormerHolder: once a lease expires and another replica
// takes it, a write of the former holder checked against its epoch is
// refused and leaves nothing behind, and the former holder cannot renew.
func TestLease_FencesTheFormerHolder(t *testing.T) {
	db := pg.DB(t)
	a, b := open(t, db), open(t, db)
	defer a.Close()
	defer b.Close()
	ctx := context.Background()
	const ttl = 300 * time.Millisecond

	la, ok, err := a.AcquireLease(ctx, "campaigns", "a", "https://a.example:8443", ttl)
	if err != nil || !ok {
		t.Fatalf("a takes the free lease: %v %v", ok, err)
	}
	if _, ok, err := b.AcquireLease(ctx, "campaigns", "b", "https://b.example:8443", ttl); err != nil || ok {
		t.Fatalf("b takes a held lease: %v %v", ok, err)
	}
	write := func(s *Store, l Lease, setting string) error {
		return s.Write(func(w *Writer) error {
			if err := w.CheckLease(l); err != nil {
				return err
			}
			return w.tx.put(tableSettings, nameOf(setting), []byte("written"))
		})
	}
	if err := write(a, la, "held"); err != nil {
		t.Fatalf("the holder's write: %v", err)
	}
	// a pauses past its lease; b takes it over.
	var lb Lease
	ok = false
	deadline := time.Now().Add(10 * time.Second)
	for !ok && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		lb, ok, err = b.AcquireLease(ctx, "campaigns", "b", "https://b.example:8443", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
	}
	if !ok || lb.Epoch != la.Epoch+1 {
		t.Fatalf("b takes the expired lease: %v, epoch %d after %d", ok, lb.Epoch, la.Epoch)
	}
	if err := write(a, la, "stale"); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("the former holder's write: %v, want ErrLeaseLost", err)
	}
	if _, found, err := b.Setting("stale"); found || err != nil {
		t.Errorf("the refused write left a record: %v %v", found, err)
	}
	if err := a.RenewLease(ctx, la, ttl); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("the former holder renews: %v, want ErrLeaseLost", err)
	}
	if err := write(b, lb, "new"); err != nil {
		t.Errorf("the new holder's write: %v", err)
	}
	if err := b.ReleaseLease(ctx, lb); err != nil {
		t.Fatal(err)
	}
	if l, ok, err := a.AcquireLease(ctx, "campaigns", "a", "https://a.example:8443", ttl); err != nil || !ok || l.Epoch != lb.Epoch+1 {
		t.Errorf("a takes the released lease at once: %v %v epoch %d", ok, err, l.Epoch)
	}
}

// TestLease_RenewedDuringAWriteTakenOverAfterIt: a write of the holder in
// flight (its fence checked, not yet committed) does not hold up the
// holder's renewals, which once cost the holder its lease under a long
// batch of reports; a takeover of the lease, expired meanwhile, waits for
// that write to end, and then takes it with the next epoch.
func TestLease_RenewedDuringAWriteTakenOverAfterIt(t *testing.T) {
	db := pg.DB(t)
	a, b := open(t, db), open(t, db)
	defer a.Close()
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const ttl = 300 * time.Millisecond
	la, ok, err := a.AcquireLease(ctx, "campaigns", "a", "https://a.example:8443", ttl)
	if err != nil || !ok {
		t.Fatalf("a takes the free lease: %v %v", ok, err)
	}
	checked, finish := make(chan struct{}), make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(finish) }) }
	defer release() // a failed test does not leave the write open
	written := make(chan error, 1)
	go func() {
		first := true
		written <- a.Write(func(w *Writer) error {
			if err := w.CheckLease(la); err != nil {
				return err
			}
			if first {
				first = false
				close(checked)
				<-finish
			}
			return w.tx.put(tableSettings, nameOf("long"), []byte("written"))
		})
	}()
	<-checked
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	err = a.RenewLease(rctx, la, ttl)
	rcancel()
	if err != nil {
		t.Fatalf("the holder renews during its own write: %v", err)
	}
	// The lease now expires while the write is still in flight.
	taken := make(chan Lease, 1)
	go func() {
		for ctx.Err() == nil {
			lb, ok, err := b.AcquireLease(ctx, "campaigns", "b", "https://b.example:8443", time.Minute)
			if err != nil {
				t.Error(err)
				return
			}
			if ok {
				taken <- lb
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	select {
	case lb := <-taken:
		t.Fatalf("b took the lease (epoch %d) while a's fenced write was in flight", lb.Epoch)
	case <-time.After(2 * time.Second):
	}
	release()
	if err := <-written; err != nil {
		t.Errorf("a's write, fenced while it held the lease: %v", err)
	}
	select {
	case lb := <-taken:
		if lb.Epoch != la.Epoch+1 {
			t.Errorf("b's epoch %d, want %d", lb.Epoch, la.Epoch+1)
		}
	case <-ctx.Done():
		t.Fatal("b never took the expired lease once a's write ended")
	}
	if _, found, err := b.Setting("long"); !found || err != nil {
		t.Errorf("a's write is not there: %v %v", found, err)
	}
}

// TestInbox_OneRowPerReportWhateverTheReplicas: every replica receives
// each report and stores it; the inbox holds it once. A report deleted in
// a fenced write is gone; one whose write failed stays for the next try.
func TestInbox_OneRowPerReportWhateverTheReplicas(t *testing.T) {
	db := pg.DB(t)
	a, b := open(t, db), open(t, db)
	defer a.Close()
	defer b.Close()
	ctx := context.Background()
	reports := []InboxMessage{
		{Topic: "/ota/device/progress/pk/d1", Payload: []byte(`{"id":1,"params":{"step":"50"}}`)},
		{Topic: "/ota/device/progress/pk/d1", Payload: []byte(`{"id":1,"params":{"step":"100"}}`)},
		{Topic: "/ota/device/inform/pk/d2", Payload: []byte(`{"id":2,"params":{"version":"2.0.0"}}`)},
	}
	for _, s := range []*Store{a, b, a} {
		if err := s.PutInbox(ctx, reports); err != nil {
			t.Fatal(err)
		}
	}
	got, err := b.Inbox(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(reports) {
		t.Fatalf("%d rows in the inbox, want %d: %+v", len(got), len(reports), got)
	}
	for i, m := range got {
		if m.Topic != reports[i].Topic || string(m.Payload) != string(reports[i].Payload) {
			t.Errorf("row %d: %s %s, want %s %s (arrival order)", i, m.Topic, m.Payload, reports[i].Topic, reports[i].Payload)
		}
	}
	l, _, err := a.AcquireLease(ctx, "campaigns", "a", "https://a.example:8443", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	failing := errors.New("the change failed")
	err = a.Write(func(w *Writer) error {
		if err := w.CheckLease(l); err != nil {
			return err
		}
		w.DeleteInbox([]int64{got[0].ID, got[1].ID})
		return failing
	})
	if !errors.Is(err, failing) {
		t.Fatal(err)
	}
	if rest, _ := a.Inbox(ctx, 100); len(rest) != 3 {
		t.Errorf("after a failed change, %d rows, want 3", len(rest))
	}
	err = a.Write(func(w *Writer) error {
		if err := w.CheckLease(l); err != nil {
			return err
		}
		return w.DeleteInbox([]int64{got[0].ID, got[1].ID})
	})
	if err != nil {
		t.Fatal(err)
	}
	if rest, _ := a.Inbox(ctx, 100); len(rest) != 1 || rest[0].ID != got[2].ID {
		t.Errorf("after the change, %+v, want the third report only", rest)
	}
	// A copy arriving late from a slow replica, within the window, is
	// not taken a second time.
	if err := b.PutInbox(ctx, reports[:1]); err != nil {
		t.Fatal(err)
	}
	if rest, _ := a.Inbox(ctx, 100); len(rest) != 1 {
		t.Errorf("a late copy entered the inbox again: %+v", rest)
	}
}

// TestReplicaMethods_RefusedOnBbolt: bbolt is one process's file.
func TestReplicaMethods_RefusedOnBbolt(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "fleet.db"))
	defer s.Close()
	if _, _, err := s.AcquireLease(context.Background(), "campaigns", "a", "https://a.example:8443", time.Second); !errors.Is(err, ErrNeedsPostgres) {
		t.Errorf("AcquireLease on bbolt: %v", err)
	}
	if _, err := s.LeaseHolder(context.Background(), "campaigns"); !errors.Is(err, ErrNeedsPostgres) {
		t.Errorf("LeaseHolder on bbolt: %v", err)
	}
}

// TestLeaseHolder_NamesTheHolderAndItsURL: the lease row says who holds
// it, where the other replicas reach it and how long it still runs, by the
// database's clock; a takeover records the new holder's URL, and an expired
// lease reads as such.
func TestLeaseHolder_NamesTheHolderAndItsURL(t *testing.T) {
	db := pg.DB(t)
	a, b := open(t, db), open(t, db)
	defer a.Close()
	defer b.Close()
	ctx := context.Background()
	if _, err := b.LeaseHolder(ctx, "campaigns"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a lease nobody took: %v, want ErrNotFound", err)
	}
	la, ok, err := a.AcquireLease(ctx, "campaigns", "a", "https://10.0.0.1:8443", time.Minute)
	if err != nil || !ok || la.URL != "https://10.0.0.1:8443" {
		t.Fatalf("a takes the lease: %+v %v %v", la, ok, err)
	}
	st, err := b.LeaseHolder(ctx, "campaigns")
	if err != nil {
		t.Fatal(err)
	}
	if st.Holder != "a" || st.URL != "https://10.0.0.1:8443" || st.Epoch != la.Epoch || st.Left <= 50*time.Second || st.Left > time.Minute || st.Expires.IsZero() {
		t.Errorf("read by b: %+v, want a at https://10.0.0.1:8443, epoch %d, about a minute left", st, la.Epoch)
	}
	if err := a.ReleaseLease(ctx, la); err != nil {
		t.Fatal(err)
	}
	if st, err := b.LeaseHolder(ctx, "campaigns"); err != nil || st.Holder != "a" || st.Left > 0 {
		t.Errorf("a released lease: %+v %v, want a, expired", st, err)
	}
	if _, ok, err := b.AcquireLease(ctx, "campaigns", "b", "", time.Minute); err != nil || !ok {
		t.Fatalf("b takes the released lease: %v %v", ok, err)
	}
	if st, err := a.LeaseHolder(ctx, "campaigns"); err != nil || st.Holder != "b" || st.URL != "" || st.Epoch != la.Epoch+1 {
		t.Errorf("after the takeover: %+v %v, want b with no URL, epoch %d", st, err, la.Epoch+1)
	}
}

// TestPrune_KeepsTheOrdersOfActiveCampaigns: the orders sent for a
// campaign that ended go; those of a running campaign, and every unsent
// one, stay, as a takeover needs them.
func TestPrune_KeepsTheOrdersOfActiveCampaigns(t *testing.T) {
	db := pg.DB(t)
	s := open(t, db)
	defer s.Close()
	ctx := context.Background()
	l, _, err := s.AcquireLease(ctx, "campaigns", "a", "https://a.example:8443", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var running, ended Campaign
	err = s.Write(func(w *Writer) (err error) {
		if running, err = w.AddCampaign(Campaign{State: CampaignRunning}, nil); err != nil {
			return err
		}
		ended, err = w.AddCampaign(Campaign{State: CampaignFinished}, nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	order := func(c uint64, dev string) OutboxOrder {
		return OutboxOrder{Campaign: c, Device: dev, Topic: "/ota/device/upgrade/pk/" + dev, Payload: []byte("{}")}
	}
	if err := s.PutOutbox(l, []OutboxOrder{order(running.ID, "a"), order(ended.ID, "b"), order(ended.ID, "c")}); err != nil {
		t.Fatal(err)
	}
	all, err := s.Unsent(ctx, 10)
	if err != nil || len(all) != 3 {
		t.Fatalf("%d unsent, %v", len(all), err)
	}
	if err := s.MarkSent(l, []int64{all[0].ID, all[1].ID}); err != nil {
		t.Fatal(err)
	}
	if err := s.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Ordered(ctx, running.ID); !got["a"] {
		t.Errorf("the running campaign's sent order was pruned")
	}
	if got, _ := s.Ordered(ctx, ended.ID); got["b"] || !got["c"] {
		t.Errorf("the ended campaign's orders after pruning: %v, want only the unsent c", got)
	}
}
