package campaign

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/fleet/store"
	"github.com/otaport/otaport/fleet/store/pgtest"
)

// pg is the package's PostgreSQL server, started by the first test that
// asks for a database.
var pg pgtest.Server

func TestMain(m *testing.M) {
	code := m.Run()
	pg.Stop()
	os.Exit(code)
}

// replicaOn starts a replica of the database db with its service, publishing
// to rec, until the test ends.
func replicaOn(t *testing.T, db, id string, rec *recorder) (*Replica, *Service, *store.Store) {
	t.Helper()
	st, err := store.OpenPostgres(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	r := NewReplica(ReplicaConfig{Store: st, ID: id})
	svc, err := NewService(Config{Store: r.Store(), Replica: r, FirmwareURL: func(img store.Image) string {
		return "http://127.0.0.1:8080/firmware/" + img.SHA256
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx, rec) }()
	t.Cleanup(func() {
		cancel()
		<-done
		st.Close()
	})
	return r, svc, st
}

// eventually waits up to a minute for ok.
func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited a minute for %s", what)
		}
	}
}

// TestReplica_DeltaRecordedByAnother: a delta image recorded by the replica
// that does not hold the campaigns' lease (an upload it served) reaches the
// holder's running campaign: the next order of a device that runs its base
// carries it, as on one process. Before, the holder learnt of it only at
// its next takeover, and sent the full image meanwhile.
func TestReplica_DeltaRecordedByAnother(t *testing.T) {
	db := pg.DB(t)
	recA, recB := &recorder{}, &recorder{}
	a, svcA, stA := replicaOn(t, db, "a", recA)
	eventually(t, "replica a to take the campaigns' lease", a.Holds)
	b, svcB, _ := replicaOn(t, db, "b", recB)
	img := seed(t, stA, 2)
	ctx := context.Background()
	base, err := stA.AddImage(store.Image{Version: "1.0.0+0", Board: "b", Size: 4000, SHA256: fmt.Sprintf("%064x", 3), MD5: fmt.Sprintf("%032x", 4), Hash: hashV1})
	if err != nil {
		t.Fatal(err)
	}
	c, err := svcA.Create(ctx, CreateRequest{ImageIDs: []uint64{img.ID}, Target: store.Target{Product: "pk"}, Waves: "100%", SuccessPercent: 100, ErrorPercent: 100})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the full image's orders", func() bool {
		return len(recA.orders(t, "pk", "d0")) == 1 && len(recA.orders(t, "pk", "d1")) == 1
	})

	d, err := svcB.AddImage(ctx, store.Image{Version: "2.0.0+0", Board: "b", Size: 512, SHA256: fmt.Sprintf("%064x", 5), MD5: fmt.Sprintf("%032x", 6),
		SecurityCounter: 5, SignatureType: "ed25519", KeyID: "ab", DeltaTarget: img.ID, DeltaBase: base.ID, DeltaBaseHash: hashV1})
	if err != nil {
		t.Fatal(err)
	}
	// The database tells the holder, which reads the images again.
	eventually(t, "the holder to know of the delta image", func() bool {
		svcA.mu.Lock()
		defer svcA.mu.Unlock()
		m := svcA.active[c.ID]
		if m == nil {
			t.Fatal("replica a lost the campaigns' lease")
		}
		_, ok := m.delta(img.ID, d.ID)
		return ok
	})
	// d0 says again what it runs, through b (every replica stores every
	// report; the holder takes it from the inbox), as after a restart.
	inform := func(id int) []Message {
		return []Message{{Topic: cloud.Topics("pk", "d0").Inform, Payload: fmt.Appendf(nil, `{"id":%d,"params":{"version":"1.0.0+0","imageHash":"%s"}}`, id, hashV1)}}
	}
	if err := b.Handle(inform(1)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "d0's second order", func() bool { return len(recA.orders(t, "pk", "d0")) == 2 })
	if o := recA.orders(t, "pk", "d0")[1]; o.Data.Sign != d.SHA256 || o.Data.IsDiff != 1 || o.Data.Size != d.Size {
		t.Errorf("d0's order after delta image %d was recorded on the other replica = %+v; want the delta's file", d.ID, o.Data)
	}
	if n := len(recB.orders(t, "pk", "d0")); n != 0 {
		t.Errorf("the replica without the lease published %d orders", n)
	}
}
