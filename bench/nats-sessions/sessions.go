package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/otaport/otaport/core/cloud"
)

// device is one simulated device: its client ID and its upgrade topic in
// the otaport shape /ota/device/upgrade/{pk}/{dn}.
type device struct {
	id    string
	topic string
}

func devices(n int) []device {
	const pk = "a1spike"
	ds := make([]device, n)
	for i := range ds {
		dn := fmt.Sprintf("dev%05d", i)
		// The platform's documented client ID layout, "{cid}|{params}|",
		// with a cid NATS accepts: no '.', see probeClientIDs.
		ds[i] = device{id: pk + "_" + dn + "|securemode=3,signmethod=hmacsha256|", topic: "/ota/device/upgrade/" + pk + "/" + dn}
	}
	return ds
}

// client opens one MQTT connection. A persistent session (clean false)
// keeps the device's subscription and its queued QoS 1 messages while it
// is offline; onMsg receives what the broker delivers on connect.
func client(ctx context.Context, addr, id string, clean bool, onMsg mqtt.MessageHandler) (mqtt.Client, error) {
	o := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).
		SetCleanSession(clean).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(60 * time.Second).SetKeepAlive(120 * time.Second).
		SetWriteTimeout(60 * time.Second).SetOrderMatters(false)
	if onMsg != nil {
		o.SetDefaultPublishHandler(onMsg)
	}
	c := mqtt.NewClient(o)
	if err := wait(ctx, c.Connect()); err != nil {
		return nil, fmt.Errorf("connect %s: %w", id, err)
	}
	return c, nil
}

// wait waits for an MQTT token, bounded by ctx.
func wait(ctx context.Context, t mqtt.Token) error {
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// batchResult is what one batch of connections did.
type batchResult struct {
	ok, failed int
	firstErr   error
	took       time.Duration
}

// parallel runs fn over ds with at most conc connections open at once, so
// the driver and the broker stay under the machine's open-file limit.
func parallel(ctx context.Context, ds []device, conc int, fn func(context.Context, device) error) batchResult {
	start := time.Now()
	var (
		mu  sync.Mutex
		res batchResult
		wg  sync.WaitGroup
	)
	sem := make(chan struct{}, conc)
	for _, d := range ds {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(d device) {
			defer func() { <-sem; wg.Done() }()
			err := fn(ctx, d)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.failed++
				if res.firstErr == nil {
					res.firstErr = err
				}
				return
			}
			res.ok++
		}(d)
	}
	wg.Wait()
	res.took = time.Since(start)
	return res
}

// subscribe creates d's persistent session: connect with clean session
// false, subscribe at QoS 1 to its topic, disconnect.
func subscribe(ctx context.Context, addr string, d device) error {
	c, err := client(ctx, addr, d.id, false, nil)
	if err != nil {
		return err
	}
	defer c.Disconnect(50)
	t := c.Subscribe(d.topic, 1, nil)
	if err := wait(ctx, t); err != nil {
		return fmt.Errorf("subscribe %s: %w", d.topic, err)
	}
	// A refusal is a SUBACK with return code 0x80, not a token error: NATS
	// answers so when it cannot create the session's consumer.
	if st, ok := t.(*mqtt.SubscribeToken); ok && st.Result()[d.topic] > 2 {
		return fmt.Errorf("subscribe %s: broker refused, SUBACK return code 0x%02x", d.topic, st.Result()[d.topic])
	}
	return nil
}

// publish sends one QoS 1 message to every device's topic from one
// connection, with at most window messages unacknowledged. It returns the
// devices whose message the broker did not acknowledge.
func publish(ctx context.Context, addr string, ds []device, tag string, window int) ([]device, error) {
	c, err := client(ctx, addr, "spike-publisher", true, nil)
	if err != nil {
		return ds, err
	}
	defer c.Disconnect(250)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed []device
		first  error
	)
	sem := make(chan struct{}, window)
	for _, d := range ds {
		sem <- struct{}{}
		wg.Add(1)
		t := c.Publish(d.topic, 1, false, payload(tag, d))
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := wait(ctx, t); err != nil {
				mu.Lock()
				defer mu.Unlock()
				failed = append(failed, d)
				if first == nil {
					first = err
				}
			}
		}()
	}
	wg.Wait()
	if len(failed) > 0 {
		return failed, fmt.Errorf("publish: %d of %d not acknowledged, first: %w", len(failed), len(ds), first)
	}
	return nil, nil
}

// publishAll publishes to every device, sending again what the broker did
// not acknowledge, as a QoS 1 publisher does after a lost connection. A
// message sent twice may be delivered twice: the ledger counts that.
// It returns the devices whose message was never acknowledged: they must
// not expect it.
func publishAll(ctx context.Context, addr string, ds []device, tag string, window, attempts int) (sent int, unacked []device, err error) {
	todo := ds
	for i := 0; i < attempts && len(todo) > 0 && ctx.Err() == nil; i++ {
		sent += len(todo)
		todo, err = publish(ctx, addr, todo, tag, window)
		if err != nil {
			fmt.Printf("  %s attempt %d: %v\n", tag, i+1, err)
		}
	}
	if len(todo) > 0 {
		return sent, todo, fmt.Errorf("publish %s: %d devices not acknowledged after %d attempts", tag, len(todo), attempts)
	}
	return sent, nil, nil
}

func payload(tag string, d device) string { return tag + ":" + d.id }

// ledger counts, per device, each payload the broker delivered, across
// every reconnection of the run.
type ledger struct {
	mu   sync.Mutex
	seen map[string]map[string]int // client ID -> payload -> deliveries
}

func (l *ledger) add(id, p string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil {
		l.seen = map[string]map[string]int{}
	}
	if l.seen[id] == nil {
		l.seen[id] = map[string]int{}
	}
	l.seen[id][p]++
}

func (l *ledger) count(id string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.seen[id] {
		n += c
	}
	return n
}

// tally compares the ledger with what each device should have received
// exactly once.
type tally struct {
	delivered, lost, repeats, unexpected int
}

func (l *ledger) tally(ds []device, want func(device) []string) tally {
	l.mu.Lock()
	defer l.mu.Unlock()
	var t tally
	for _, d := range ds {
		got := l.seen[d.id]
		wanted := map[string]bool{}
		for _, p := range want(d) {
			wanted[p] = true
			switch n := got[p]; {
			case n == 0:
				t.lost++
			default:
				t.delivered++
				t.repeats += n - 1
			}
		}
		for p, n := range got {
			if !wanted[p] {
				t.unexpected += n
			}
		}
	}
	return t
}

// receive reconnects d's session and records what the broker delivers:
// it waits until the device has everything it expects in total, then
// lingers so that a second delivery would arrive before it disconnects.
func receive(ctx context.Context, addr string, d device, l *ledger, expect int, timeout, linger time.Duration) error {
	c, err := client(ctx, addr, d.id, false, func(_ mqtt.Client, m mqtt.Message) {
		l.add(d.id, string(m.Payload()))
	})
	if err != nil {
		return err
	}
	defer c.Disconnect(250)
	deadline := time.Now().Add(timeout)
	for l.count(d.id) < expect && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(linger):
	}
	return nil
}

// ready waits until the broker accepts an MQTT connection: after a restart
// NATS first recovers its streams and every session's consumer.
func ready(ctx context.Context, addr string, exited <-chan struct{}) (time.Duration, error) {
	start := time.Now()
	for {
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			c, err := client(ctx, addr, "spike-probe-"+strconv.FormatInt(time.Now().UnixNano(), 36), true, nil)
			if err == nil {
				c.Disconnect(0)
				return time.Since(start), nil
			}
		}
		select {
		case <-ctx.Done():
			return time.Since(start), errors.Join(errors.New("broker not ready"), ctx.Err())
		case <-exited:
			return time.Since(start), errors.New("broker exited before it was ready: see its log")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// probeClientIDs connects once with each client ID layout real devices
// send and reports whether the broker takes it as a persistent session.
// NATS refuses a client ID that is not a valid subject token ('.', '*',
// '>' or white space), and the C SDK's is "{pk}.{dn}|...|".
func probeClientIDs(ctx context.Context, addr string) error {
	id := cloud.Identity{ProductKey: "a1probe", DeviceName: "dev00000", DeviceSecret: "secret"}
	forms := []struct {
		name string
		o    cloud.SignOptions
	}{
		{"C SDK v3, {pk}.{dn}", cloud.SignOptions{Form: cloud.FormSDK}},
		{"documented, default cid {pk}.{dn}", cloud.SignOptions{Form: cloud.FormDoc}},
		{"documented, own cid without '.'", cloud.SignOptions{Form: cloud.FormDoc, ClientID: "a1probe_dev00000", Timestamp: "1764662400000"}},
	}
	for _, f := range forms {
		cr, err := cloud.SignIn(id, f.o)
		if err != nil {
			return fmt.Errorf("sign in as %s: %w", f.name, err)
		}
		verdict := "accepted"
		c, err := client(ctx, addr, cr.ClientID, false, nil)
		if err != nil {
			verdict = "refused: " + err.Error()
		} else {
			c.Disconnect(50)
		}
		fmt.Printf("client ID %-36s %q %s\n", f.name+":", cr.ClientID, verdict)
	}
	return nil
}
