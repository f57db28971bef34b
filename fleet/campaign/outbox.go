package campaign

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Senders is how many orders the outbox has in flight at once: a publish to
// an external broker waits for its acknowledgement, and a fleet's orders
// should not wait for each other's round trips.
const Senders = 32

// sendTimeout bounds one publish; a broker that does not acknowledge in that
// time is not going to, and the device gets its order again when it next
// reports its version.
const sendTimeout = 30 * time.Second

// outgoing is one order waiting to be published.
type outgoing struct {
	campaign uint64
	topic    string
	payload  []byte
}

// outbox holds the orders the service decided on, keyed by device, until
// its senders publish them. Queuing never blocks: the service queues under
// its lock, and a publish may wait on the broker, whose acknowledgement may
// in turn wait behind device reports that wait for that lock. The outbox
// holds at most one order per device (a newer order replaces an unsent
// older one, which carries the same campaign's image or a stale one), so it
// is bounded by the size of the fleet.
type outbox struct {
	log *slog.Logger

	mu       sync.Mutex
	keys     []string            // devices with an unsent order, oldest first
	msgs     map[string]outgoing // device -> its unsent order
	inflight map[string]bool     // devices whose order a sender is publishing
	wake     chan struct{}       // signalled when an order is queued
	waiters  []chan struct{}     // Flush callers, closed when the outbox is empty

	run    sync.Mutex // serialises start and stop
	cancel context.CancelFunc
	done   sync.WaitGroup
}

func newOutbox(log *slog.Logger) *outbox {
	return &outbox{log: log, msgs: map[string]outgoing{}, inflight: map[string]bool{}, wake: make(chan struct{}, 1)}
}

// put queues an order for a device, replacing its unsent one.
func (o *outbox) put(device string, m outgoing) {
	o.mu.Lock()
	if _, queued := o.msgs[device]; !queued {
		o.keys = append(o.keys, device)
	}
	o.msgs[device] = m
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// take removes the oldest order whose device has no publish in flight, so
// that one device's orders are never published concurrently (and so out of
// order).
func (o *outbox) take() (string, outgoing, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, k := range o.keys {
		if o.inflight[k] {
			continue
		}
		m := o.msgs[k]
		delete(o.msgs, k)
		if i == 0 {
			o.keys = o.keys[1:] // the usual case, without a copy
		} else {
			o.keys = append(o.keys[:i], o.keys[i+1:]...)
		}
		o.inflight[k] = true
		return k, m, true
	}
	return "", outgoing{}, false
}

// sent marks a device's publish as over, and wakes Flush callers when
// nothing is left.
func (o *outbox) sent(device string) {
	o.mu.Lock()
	delete(o.inflight, device)
	more := len(o.keys) > 0
	if !more && len(o.inflight) == 0 {
		for _, w := range o.waiters {
			close(w)
		}
		o.waiters = nil
	}
	o.mu.Unlock()
	if more {
		// Another sender may have skipped this device's newer order while
		// this one was in flight.
		select {
		case o.wake <- struct{}{}:
		default:
		}
	}
}

// flush waits until every queued order has been published or has failed.
func (o *outbox) flush(ctx context.Context) error {
	o.mu.Lock()
	if len(o.keys) == 0 && len(o.inflight) == 0 {
		o.mu.Unlock()
		return nil
	}
	w := make(chan struct{})
	o.waiters = append(o.waiters, w)
	o.mu.Unlock()
	select {
	case <-w:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// start stops the senders of a previous publisher, if any, and starts
// Senders goroutines publishing through pub; nil only stops them. Orders
// queued meanwhile stay queued.
func (o *outbox) start(pub Publisher) {
	o.run.Lock()
	defer o.run.Unlock()
	if o.cancel != nil {
		o.cancel()
		o.done.Wait()
		o.cancel = nil
	}
	if pub == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	o.cancel = cancel
	for range Senders {
		o.done.Add(1)
		go func() {
			defer o.done.Done()
			o.send(ctx, pub)
		}()
	}
	// Orders queued while no publisher was attached.
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// send publishes queued orders until ctx ends.
func (o *outbox) send(ctx context.Context, pub Publisher) {
	for {
		k, m, ok := o.take()
		if !ok {
			select {
			case <-o.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		// Pass the wake-up on: more orders may be waiting for a sender.
		select {
		case o.wake <- struct{}{}:
		default:
		}
		pctx, cancel := context.WithTimeout(ctx, sendTimeout)
		err := pub.Publish(pctx, m.topic, m.payload)
		cancel()
		if err != nil {
			// The device gets the order again when it next informs or
			// requests it; the campaign goes on.
			o.log.Warn("order not sent", "campaign", m.campaign, "device", k, "err", err)
		} else {
			o.log.Debug("order sent", "campaign", m.campaign, "device", k)
		}
		o.sent(k)
		if ctx.Err() != nil {
			return
		}
	}
}
