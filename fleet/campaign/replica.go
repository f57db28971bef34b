package campaign

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/otaport/otaport/fleet/store"
)

// The mechanics of several otaserve processes on one PostgreSQL database
// (docs/scaling.md): which replica runs the campaigns (a lease), how device
// reports reach it (the inbox table) and how its orders leave (the outbox
// table). What an order says is decided as on one process (service.go).

// CampaignsLease is the name of the lease whose holder runs every active
// campaign.
const CampaignsLease = "campaigns"

// Default lease timing: renewed every second, held for five, so that a
// replica that dies is replaced within about five seconds, and one that
// pauses for a second or two keeps its lease.
const (
	DefaultLeaseTTL   = 5 * time.Second
	DefaultLeaseRenew = time.Second
)

// inboxBatch and outboxBatch are how many rows the lease holder takes at
// once; pollInterval is how often it looks when no notification came.
const (
	inboxBatch   = MaxBatch
	outboxBatch  = 256
	pollInterval = time.Second
	// pruneInterval is how often the holder forgets the digests of old
	// reports and the orders of ended campaigns (store.Prune).
	pruneInterval = time.Minute
)

// ReplicaConfig configures a Replica.
type ReplicaConfig struct {
	// Store is the shared PostgreSQL store.
	Store *store.Store
	// ID names this replica in the lease table and its logs; unique among
	// the replicas of a database.
	ID string
	// URL is where the other replicas reach this one's API (otaserve run
	// --advertise-url), recorded in the lease while this one holds it so
	// that they forward the operator actions only the holder runs; ""
	// advertises none, and they answer those actions 503.
	URL string
	// TTL and Renew are the lease's lifetime and how often the holder
	// renews it; zero means DefaultLeaseTTL and DefaultLeaseRenew.
	TTL, Renew time.Duration
	Logger     *slog.Logger
}

// Replica is one otaserve process among several on one database. Every
// replica stores the device reports it receives in the inbox (Handle); the
// one that holds the campaigns' lease loads the active campaigns, consumes
// the inbox, and publishes the outbox, each of its writes fenced by the
// lease's epoch; when it loses the lease it forgets the campaigns at once.
type Replica struct {
	cfg ReplicaConfig
	log *slog.Logger
	svc *Service

	lease      atomic.Pointer[store.Lease]
	pub        atomic.Pointer[Publisher]
	inboxWake  chan struct{}
	orderWake  chan struct{}
	imagesWake chan struct{}
}

// NewReplica returns a replica of cfg.Store; give it to the Service as
// Config.Replica, with Store() as Config.Store, then call Run.
func NewReplica(cfg ReplicaConfig) *Replica {
	if cfg.TTL == 0 {
		cfg.TTL = DefaultLeaseTTL
	}
	if cfg.Renew == 0 {
		cfg.Renew = DefaultLeaseRenew
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Replica{cfg: cfg, log: cfg.Logger.With("replica", cfg.ID),
		inboxWake: make(chan struct{}, 1), orderWake: make(chan struct{}, 1), imagesWake: make(chan struct{}, 1)}
}

// ErrNotHolder is returned by a change asked of a replica that does not
// hold the campaigns' lease.
var ErrNotHolder = errors.New("this otaserve does not hold the campaigns' lease")

// Store is the store for the Service: the shared one, with every write
// fenced by the lease (store.Writer.CheckLease).
func (r *Replica) Store() Store { return fenced{r.cfg.Store, r} }

type fenced struct {
	*store.Store
	r *Replica
}

func (f fenced) Write(fn func(*store.Writer) error) error {
	l := f.r.lease.Load()
	if l == nil {
		return fmt.Errorf("%w: another replica runs the campaigns; ask it, or retry after a takeover", ErrNotHolder)
	}
	return f.Store.Write(func(w *store.Writer) error {
		if err := w.CheckLease(*l); err != nil {
			return err
		}
		return fn(w)
	})
}

// Holds reports whether this replica holds the campaigns' lease now.
func (r *Replica) Holds() bool { return r.lease.Load() != nil }

// Holder reads who holds the campaigns' lease, at which URL and for how
// long, as the database says now; store.ErrNotFound when no replica ever
// took it.
func (r *Replica) Holder(ctx context.Context) (store.LeaseState, error) {
	return r.cfg.Store.LeaseHolder(ctx, CampaignsLease)
}

// attach is NewService's: the replica drives svc, whose orders go to the
// outbox table.
func (r *Replica) attach(svc *Service) orderQueue {
	r.svc = svc
	return tableQueue{r}
}

// Handle stores device reports in the inbox: the MQTT client's handler on
// every replica. Its Client acknowledges a report to the broker only once
// it is stored (MQTTConfig.AckStored), and every replica stores every
// report; the inbox takes one twice as the holder takes a repeated report.
func (r *Replica) Handle(msgs []Message) error {
	in := make([]store.InboxMessage, len(msgs))
	for i, m := range msgs {
		in[i] = store.InboxMessage{Topic: m.Topic, Payload: m.Payload}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return r.cfg.Store.PutInbox(ctx, in)
}

// Run takes the campaigns' lease whenever it is free, runs the campaigns
// while it holds it, publishing through pub, and gives it up when ctx
// ends.
func (r *Replica) Run(ctx context.Context, pub Publisher) error {
	r.pub.Store(&pub)
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			err := r.cfg.Store.Listen(ctx, map[string]func(){
				store.InboxNotify:  func() { wake(r.inboxWake) },
				store.ImagesNotify: func() { wake(r.imagesWake) },
			})
			if ctx.Err() == nil {
				r.log.Warn("inbox and image notifications lost, polling meanwhile", "err", err)
				// An image recorded meanwhile told no one.
				wake(r.imagesWake)
				sleep(ctx, pollInterval)
			}
		}
	}()
	for ctx.Err() == nil {
		l, ok, err := r.cfg.Store.AcquireLease(ctx, CampaignsLease, r.cfg.ID, r.cfg.URL, r.cfg.TTL)
		if err != nil && ctx.Err() == nil {
			r.log.Warn("lease", "err", err)
		}
		if ok {
			r.hold(ctx, l)
			continue
		}
		sleep(ctx, r.cfg.Renew)
	}
	return nil
}

// hold runs the campaigns while l lasts.
func (r *Replica) hold(ctx context.Context, l store.Lease) {
	r.lease.Store(&l)
	r.log.Info("campaigns' lease taken", "epoch", l.Epoch)
	hctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		stop()
		wg.Wait()
		r.svc.forget()
	}()
	// The lease is lost for this replica from the moment it is no longer
	// sure to hold it: the fence refuses its writes from then on anyway.
	defer r.lease.Store(nil)
	if err := r.svc.takeOver(hctx, r.cfg.Store); err != nil {
		r.log.Error("take over the campaigns", "err", err)
		_ = r.cfg.Store.ReleaseLease(context.Background(), l)
		return
	}
	if err := r.settleInherited(hctx, l); err != nil {
		r.log.Warn("orders of the previous holder", "err", err)
	}
	wg.Add(3)
	go func() { defer wg.Done(); r.consume(hctx) }()
	go func() { defer wg.Done(); r.publish(hctx) }()
	go func() { defer wg.Done(); r.images(hctx) }()
	renewed := time.Now()
	t := time.NewTicker(r.cfg.Renew)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			r.lease.Store(nil)
			stop()
			wg.Wait()
			// Let the next replica take over now rather than at expiry.
			rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := r.cfg.Store.ReleaseLease(rctx, l); err != nil {
				r.log.Warn("release the campaigns' lease", "err", err)
			}
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, r.cfg.Renew)
		err := r.cfg.Store.RenewLease(rctx, l, r.cfg.TTL)
		cancel()
		switch {
		case err == nil:
			renewed = time.Now()
		case errors.Is(err, store.ErrLeaseLost):
			r.log.Warn("campaigns' lease lost", "epoch", l.Epoch)
			return
		case time.Since(renewed) > r.cfg.TTL-r.cfg.Renew:
			// Not sure to hold it any more: stop before it expires.
			r.log.Warn("campaigns' lease not renewed in time; stepping down", "epoch", l.Epoch, "err", err)
			return
		default:
			r.log.Warn("renew the campaigns' lease", "err", err)
		}
	}
}

// consume feeds the inbox to the service, in batches, until ctx ends.
func (r *Replica) consume(ctx context.Context) {
	var pruned time.Time
	for ctx.Err() == nil {
		if time.Since(pruned) > pruneInterval {
			if err := r.cfg.Store.Prune(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn("prune", "err", err)
			}
			pruned = time.Now()
		}
		rows, err := r.cfg.Store.Inbox(ctx, inboxBatch)
		if err != nil {
			if ctx.Err() == nil {
				r.log.Warn("inbox", "err", err)
				sleep(ctx, pollInterval)
			}
			continue
		}
		if len(rows) == 0 {
			select {
			case <-r.inboxWake:
			case <-time.After(pollInterval):
			case <-ctx.Done():
			}
			continue
		}
		msgs := make([]Message, len(rows))
		ids := make([]int64, len(rows))
		for i, m := range rows {
			msgs[i], ids[i] = Message{Topic: m.Topic, Payload: m.Payload}, m.ID
		}
		stored, err := r.svc.handleMessages(msgs, func(w *store.Writer) error { return w.DeleteInbox(ids) })
		if err != nil {
			r.log.Warn("device messages", "count", len(msgs), "err", err)
		}
		if !stored {
			// Kept in the inbox: taken again, by this replica or the
			// next holder.
			sleep(ctx, 100*time.Millisecond)
		}
	}
}

// images gives the active campaigns the delta images recorded since they
// were loaded, until ctx ends. An upload is served by any replica, and one
// without the lease only stores the image: the holder reads the images
// again when the database tells it one was recorded, and every
// pruneInterval in case a notification was lost.
func (r *Replica) images(ctx context.Context) {
	for {
		select {
		case <-r.imagesWake:
		case <-time.After(pruneInterval):
		case <-ctx.Done():
			return
		}
		if err := r.svc.reloadDeltas(); err != nil && ctx.Err() == nil {
			r.log.Warn("read the images again for the campaigns' delta images", "err", err)
		}
	}
}

// publish sends the outbox's unsent orders and marks them sent, until ctx
// ends: the orders this replica decided, and at a takeover those its
// predecessor stored but did not mark.
func (r *Replica) publish(ctx context.Context) {
	for ctx.Err() == nil {
		l := r.lease.Load()
		if l == nil {
			return
		}
		orders, err := r.cfg.Store.Unsent(ctx, outboxBatch)
		if err != nil || len(orders) == 0 {
			if err != nil && ctx.Err() == nil {
				r.log.Warn("outbox", "err", err)
			}
			select {
			case <-r.orderWake:
			case <-time.After(pollInterval):
			case <-ctx.Done():
			}
			continue
		}
		done := r.send(ctx, orders)
		if len(done) > 0 {
			r.log.Debug("orders sent", "count", len(done), "epoch", l.Epoch)
			if err := r.cfg.Store.MarkSent(*l, done); err != nil {
				r.log.Warn("mark orders sent", "count", len(done), "err", err)
			}
		}
		if len(done) < len(orders) {
			sleep(ctx, pollInterval) // the broker refuses: do not spin
		}
	}
}

// settleInherited marks sent, without publishing them, the orders a
// previous holder stored and did not mark that evidently arrived (the
// device has reported on the campaign since) or no longer apply (the
// campaign ended, the device left it). The rest are published again by
// publish: the previous holder may or may not have published them.
func (r *Replica) settleInherited(ctx context.Context, l store.Lease) error {
	orders, err := r.cfg.Store.Unsent(ctx, 1<<20)
	if err != nil {
		return err
	}
	var settled []int64
	for _, o := range orders {
		if o.Epoch < l.Epoch && !r.svc.awaits(o.Campaign, o.Device) {
			settled = append(settled, o.ID)
		}
	}
	if len(settled) == 0 {
		return nil
	}
	r.log.Info("orders of the previous holder already answered", "orders", len(settled))
	return r.cfg.Store.MarkSent(l, settled)
}

// send publishes orders, Senders at a time, and returns the ids of those
// published or replaced: of a device's several orders only the newest is
// published, as the in-memory outbox keeps one per device.
func (r *Replica) send(ctx context.Context, orders []store.OutboxOrder) []int64 {
	pub := *r.pub.Load()
	newest := map[string]int{}
	for i, o := range orders {
		newest[o.Device] = i
	}
	var mu sync.Mutex
	var done []int64
	var wg sync.WaitGroup
	slots := make(chan struct{}, Senders)
	for i, o := range orders {
		if newest[o.Device] != i {
			done = append(done, o.ID)
			continue
		}
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			pctx, cancel := context.WithTimeout(ctx, sendTimeout)
			r.log.Debug("publish", "device", o.Device)
			err := pub.Publish(pctx, o.Topic, o.Payload)
			cancel()
			if err != nil {
				r.log.Warn("order not sent", "campaign", o.Campaign, "device", o.Device, "err", err)
				return
			}
			r.log.Debug("order sent", "campaign", o.Campaign, "device", o.Device, "outbox", o.ID)
			mu.Lock()
			done = append(done, o.ID)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return done
}

// tableQueue is a replica's orderQueue: the outbox table.
type tableQueue struct{ r *Replica }

func (q tableQueue) queue(batch []queued) {
	if len(batch) == 0 {
		return
	}
	l := q.r.lease.Load()
	if l == nil {
		q.r.log.Warn("orders not stored: the campaigns' lease is lost", "orders", len(batch))
		return
	}
	rows := make([]store.OutboxOrder, len(batch))
	for i, b := range batch {
		rows[i] = store.OutboxOrder{Campaign: b.m.campaign, Device: b.device, Topic: b.m.topic, Payload: b.m.payload}
	}
	if err := q.r.cfg.Store.PutOutbox(*l, rows); err != nil {
		// The devices stay ordered: the next takeover, or their next
		// version report, orders them again.
		q.r.log.Error("orders not stored", "orders", len(batch), "err", err)
		return
	}
	wake(q.r.orderWake)
}

// start is a no-op: Run takes the publisher.
func (q tableQueue) start(Publisher) {}

func (q tableQueue) flush(ctx context.Context) error {
	for {
		orders, err := q.r.cfg.Store.Unsent(ctx, 1)
		if err != nil {
			return err
		}
		if len(orders) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// takeOver loads the active campaigns as the new lease holder, and orders
// again the devices a campaign ordered whose order never reached the outbox
// (the previous holder stopped between the change and storing its orders).
func (s *Service) takeOver(ctx context.Context, st *store.Store) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clearLocked()
	if err := s.loadLocked(); err != nil {
		return err
	}
	var again []pending
	for _, id := range s.activeIDs() {
		m := s.active[id]
		if m.c.State != store.CampaignRunning {
			continue
		}
		ordered, err := st.Ordered(ctx, id)
		if err != nil {
			return err
		}
		for _, p := range m.Devices() {
			if p.State == store.ProgressOrdered && !ordered[p.Device] {
				again = append(again, pending{id, p.Device})
			}
		}
	}
	s.log.Info("campaigns taken over", "active", len(s.active), "orders_again", len(again))
	s.sendLocked(again)
	return nil
}

// reloadDeltas gives each active campaign the delta images of its images
// among those the store holds now.
func (s *Service) reloadDeltas() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.active) == 0 {
		return nil
	}
	all, err := s.cfg.Store.Images()
	if err != nil {
		return err
	}
	for id, m := range s.active {
		m.SetDeltas(deltasOf(s.images[id], all))
	}
	return nil
}

// awaits reports whether device is ordered in active campaign id and has not
// reported on it since.
func (s *Service) awaits(id uint64, device string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.active[id]
	if !ok {
		return false
	}
	p, ok := m.Device(device)
	return ok && p.State == store.ProgressOrdered
}

// forget drops the campaigns from memory when the lease is lost.
func (s *Service) forget() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clearLocked()
}

func (s *Service) clearLocked() {
	clear(s.active)
	clear(s.images)
	clear(s.sent)
}

// orderQueue is where the service puts the orders it decided: the
// in-memory outbox of one process, or a replica's outbox table.
type orderQueue interface {
	queue(batch []queued)
	start(Publisher)
	flush(ctx context.Context) error
}

// queued is one order for a device.
type queued struct {
	device string
	m      outgoing
}

func (o *outbox) queue(batch []queued) {
	for _, b := range batch {
		o.put(b.device, b.m)
	}
}

func wake(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// ID is the replica's name.
func (r *Replica) ID() string { return r.cfg.ID }
