// Package mqtt is a small MQTT 3.1.1 client (QoS 0 and 1) made to be cheap
// per connection, so that one process can hold a hundred thousand of them:
// a connected Client has one goroutine, the reader; writes are synchronous
// under a mutex, the keep-alive is a single timer, and the buffers are a
// few hundred bytes.
//
// It is not a general client: no QoS 2, no UNSUBSCRIBE, no will, no
// WebSocket, no MQTT 5, and no store that outlives the process.
package mqtt

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Config's zero fields.
const (
	// DefaultConnectTimeout is generous, as Paho's clients are (30 s): a
	// broker that keeps sessions in a replicated store (the NATS server's
	// MQTT gateway, in JetStream) can take seconds to make one when many
	// devices sign in at once, and a client that gives up sooner comes
	// back and makes it start that work again.
	DefaultConnectTimeout       = 30 * time.Second
	DefaultPingTimeout          = 10 * time.Second
	DefaultMaxReconnectInterval = time.Minute
	DefaultMaxPacketSize        = 1 << 20
	// readBuffer is the reader's buffer: big enough for the fixed header
	// and a small packet in one read, small enough to keep for every
	// connection.
	readBuffer = 512
)

// Errors a caller may branch on.
var (
	// ErrClosed is returned by calls on a closed Client.
	ErrClosed = errors.New("mqtt: client closed")
	// ErrNotConnected is returned by Subscribe and QoS 0 Publish while the
	// link is down.
	ErrNotConnected = errors.New("mqtt: not connected")
	// ErrConnectionLost ends a Subscribe whose link dropped before SUBACK.
	ErrConnectionLost = errors.New("mqtt: connection lost")
	// ErrSubscriptionRefused is a SUBACK's 0x80.
	ErrSubscriptionRefused = errors.New("the broker refused the subscription (SUBACK 0x80)")
	// ErrNoPingResponse is why a link is dropped when PINGRESP is late.
	ErrNoPingResponse = errors.New("no PINGRESP from the broker")
)

// RefusedError is a CONNACK's refusal, its return code (section 3.2.2.3);
// compare with errors.Is against the constants below.
type RefusedError byte

// The CONNACK return codes that refuse a connection.
const (
	RefusedProtocolVersion   RefusedError = 1
	RefusedIdentifier        RefusedError = 2
	RefusedServerUnavailable RefusedError = 3
	RefusedBadCredentials    RefusedError = 4
	RefusedNotAuthorized     RefusedError = 5
)

func (e RefusedError) Error() string {
	var s string
	switch e {
	case RefusedProtocolVersion:
		s = "unacceptable protocol version"
	case RefusedIdentifier:
		s = "identifier rejected"
	case RefusedServerUnavailable:
		s = "server unavailable"
	case RefusedBadCredentials:
		s = "bad user name or password"
	case RefusedNotAuthorized:
		s = "not authorized"
	default:
		s = "reserved return code"
	}
	return fmt.Sprintf("connection refused: %s (CONNACK 0x%02x)", s, byte(e))
}

// Credentials sign a client in.
type Credentials struct {
	ClientID, Username, Password string
}

// Message is a PUBLISH the broker sent.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
	Dup     bool
	Retain  bool
}

// Handler takes the messages of a subscription. Handlers run one at a time,
// in arrival order, on the connection's only goroutine, and a QoS 1
// message is acknowledged when its handler returns: a handler must not
// block, and must not wait for the Client's Publish or Subscribe, whose
// acknowledgements that goroutine reads.
type Handler func(Message)

// Config configures a Client.
type Config struct {
	// Brokers are the brokers' host:port addresses, tried in order at every
	// connection: the nodes of one cluster.
	Brokers []string
	// TLS, when set, makes every connection TLS with it; its ServerName
	// defaults to the broker's host.
	TLS *tls.Config
	// Credentials is called before every connection attempt: a sign-in
	// that carries a timestamp stays fresh after a long outage.
	Credentials func() (Credentials, error)
	// CleanSession asks for a new session at each connection; false keeps
	// the broker's session (and its queued QoS 1 messages) across them.
	CleanSession bool
	// KeepAlive is the longest silence before a PINGREQ; 0 turns the
	// keep-alive off.
	KeepAlive time.Duration
	// PingTimeout is how long a PINGRESP may take before the link is
	// dropped and made again; 0 means DefaultPingTimeout.
	PingTimeout time.Duration
	// ConnectTimeout bounds one attempt: TCP, TLS and CONNACK; it also
	// bounds each write. 0 means DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// MaxReconnectInterval caps the back-off between reconnection rounds
	// (1 s, doubling); 0 means DefaultMaxReconnectInterval.
	MaxReconnectInterval time.Duration
	// MaxPacketSize is the largest packet read. A bigger PUBLISH is
	// acknowledged and dropped (OnDropped), so that a broker holding it in
	// a persistent session does not send it again at every connection;
	// any other bigger packet drops the link. 0 means DefaultMaxPacketSize.
	MaxPacketSize int
	// OnDropped, if set, hears of each PUBLISH dropped for its size, on
	// the connection's goroutine.
	OnDropped func(topic string, err error)
	// OnConnect, if set, runs after each connection, the first included,
	// on a goroutine of its own that ends with it: the place to subscribe.
	OnConnect func()
	// OnConnectionLost, if set, hears why a link dropped, on the
	// connection's goroutine, before the client reconnects.
	OnConnectionLost func(error)
}

// Client is a connection to a broker that makes itself again when it
// drops. Its methods are safe for concurrent use.
type Client struct {
	cfg    Config
	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the reader and the OnConnect calls

	// wmu serialises writes and the swap of links; it is taken before mu.
	wmu sync.Mutex

	mu        sync.Mutex
	link      *link // nil while down
	started   bool
	closed    bool
	subs      []subscription
	inflight  map[uint16]*pending
	lastID    uint16
	seq       uint64
	closeOnce sync.Once
}

type subscription struct {
	filter string
	h      Handler
}

// pending is a PUBLISH waiting for PUBACK or a SUBSCRIBE waiting for SUBACK.
type pending struct {
	seq     uint64 // the order of the first send, kept on resending
	packet  []byte // the encoded PUBLISH, its DUP bit set once sent
	publish bool
	sent    bool // written once at least; guarded by wmu
	done    chan struct{}
	code    byte // SUBACK's
	err     error
}

// link is one network connection.
type link struct {
	conn     net.Conn
	r        *bufio.Reader
	failOnce sync.Once
	err      error        // why it ended, set once by fail
	ended    atomic.Bool  // set by fail; stops the timer's re-arming
	lastSent atomic.Int64 // unix nanoseconds of the last write
	pingOut  atomic.Bool  // a PINGREQ waits for its PINGRESP
	timer    *time.Timer  // keep-alive; nil without one
}

// fail closes the link for err, the first reason only.
func (l *link) fail(err error) {
	l.failOnce.Do(func() {
		l.err = err
		l.ended.Store(true)
		if l.timer != nil {
			l.timer.Stop()
		}
		l.conn.Close()
	})
}

// New checks cfg and returns a Client that has not connected yet.
func New(cfg Config) (*Client, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("mqtt: Config.Brokers is empty; give at least one host:port")
	}
	for _, b := range cfg.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			return nil, fmt.Errorf("mqtt: Config.Brokers %q: want host:port: %w", b, err)
		}
	}
	if cfg.Credentials == nil {
		return nil, errors.New("mqtt: Config.Credentials is nil; give the function that returns the client id, user and password")
	}
	if cfg.KeepAlive < 0 || cfg.KeepAlive > 0xffff*time.Second {
		return nil, fmt.Errorf("mqtt: Config.KeepAlive %v: want 0 to 65535 s", cfg.KeepAlive)
	}
	if cfg.PingTimeout <= 0 {
		cfg.PingTimeout = DefaultPingTimeout
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.MaxReconnectInterval <= 0 {
		cfg.MaxReconnectInterval = DefaultMaxReconnectInterval
	}
	if cfg.MaxPacketSize <= 0 {
		cfg.MaxPacketSize = DefaultMaxPacketSize
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Client{cfg: cfg, ctx: ctx, cancel: cancel}, nil
}

// Connect makes the first connection, trying each broker in order, and
// returns once one has accepted it, or with every broker's error. From
// then on the Client reconnects by itself until Close.
func (c *Client) Connect(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	if c.started {
		c.mu.Unlock()
		return errors.New("mqtt: Connect called twice")
	}
	c.started = true
	c.mu.Unlock()
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	defer context.AfterFunc(c.ctx, stop)()
	l, err := c.dialAny(ctx)
	if err != nil {
		c.mu.Lock()
		c.started = false
		c.mu.Unlock()
		return err
	}
	if !c.install(l, true) {
		return ErrClosed
	}
	go c.run(l)
	return nil
}

// run is the Client's goroutine: it reads the link until it fails, then
// reconnects, until Close. install counted it in wg.
func (c *Client) run(l *link) {
	defer c.wg.Done()
	for l != nil {
		c.read(l)
		c.lose(l)
		l = c.reconnect()
	}
}

// dialAny tries the brokers in order and returns the first link made.
func (c *Client) dialAny(ctx context.Context) (*link, error) {
	var errs []error
	for _, b := range c.cfg.Brokers {
		l, err := c.dial(ctx, b)
		if err == nil {
			return l, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 1 {
		return nil, errs[0]
	}
	return nil, errors.Join(errs...)
}

// dial connects to one broker and signs in.
func (c *Client) dial(ctx context.Context, addr string) (l *link, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("mqtt: connect to %s: %w", addr, err)
		}
	}()
	creds, err := c.cfg.Credentials()
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	connect := Packet{Type: CONNECT, ClientID: creds.ClientID, CleanSession: c.cfg.CleanSession,
		KeepAlive: uint16(c.cfg.KeepAlive / time.Second)}
	if creds.Username != "" || creds.Password != "" {
		connect.Username = &creds.Username
	}
	if creds.Password != "" {
		connect.Password = &creds.Password
	}
	pkt, err := connect.Append(nil)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	conn := raw
	// The context's end interrupts the handshake and the wait for CONNACK
	// through the deadline; the goroutine is the runtime's, only when it
	// fires.
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error) (*link, error) {
		stop()
		conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	if c.cfg.TLS != nil {
		tc := c.cfg.TLS
		if tc.ServerName == "" {
			host, _, _ := net.SplitHostPort(addr)
			tc = tc.Clone()
			tc.ServerName = host
		}
		tconn := tls.Client(conn, tc)
		if err := tconn.HandshakeContext(ctx); err != nil {
			return fail(fmt.Errorf("TLS handshake: %w", err))
		}
		conn = tconn
	}
	if _, err := conn.Write(pkt); err != nil {
		return fail(fmt.Errorf("send CONNECT: %w", err))
	}
	r := bufio.NewReaderSize(conn, readBuffer)
	p, err := ReadPacket(r, c.cfg.MaxPacketSize)
	if err != nil {
		return fail(fmt.Errorf("read CONNACK: %w", err))
	}
	if p.Type != CONNACK {
		return fail(fmt.Errorf("%w: %v before CONNACK", ErrMalformed, p.Type))
	}
	if p.ReturnCode != 0 {
		return fail(RefusedError(p.ReturnCode))
	}
	if !stop() {
		return fail(ctx.Err())
	}
	conn.SetDeadline(time.Time{})
	l = &link{conn: conn, r: r}
	l.lastSent.Store(time.Now().UnixNano())
	return l, nil
}

// install makes l the live link: it sends again the QoS 1 messages still
// unacknowledged, with DUP (section 4.4), starts the keep-alive and calls
// OnConnect. It reports false if the Client closed meanwhile. With
// starting, it counts the reader about to start in wg. Every wg.Add is
// made under mu while the Client is open, so none follows Close's Wait.
func (c *Client) install(l *link, starting bool) bool {
	c.wmu.Lock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.wmu.Unlock()
		l.fail(ErrClosed)
		return false
	}
	c.link = l
	if starting {
		c.wg.Add(1)
	}
	if c.cfg.OnConnect != nil {
		c.wg.Add(1)
	}
	var again []*pending
	for _, p := range c.inflight {
		if p.publish {
			again = append(again, p)
		}
	}
	c.mu.Unlock()
	slices.SortFunc(again, func(a, b *pending) int { return int(a.seq - b.seq) })
	for _, p := range again {
		if p.sent {
			p.packet[0] |= 0x08
		}
		p.sent = true
		if c.writeLocked(l, p.packet) != nil {
			break
		}
	}
	if c.cfg.KeepAlive > 0 {
		// Armed once l.timer is set: the callback reads it.
		l.timer = time.AfterFunc(time.Hour, func() { c.keepAlive(l) })
		l.timer.Reset(c.cfg.KeepAlive)
	}
	c.wmu.Unlock()
	if c.cfg.OnConnect != nil {
		go func() {
			defer c.wg.Done()
			c.cfg.OnConnect()
		}()
	}
	return true
}

// keepAlive runs on l's timer: it sends PINGREQ after KeepAlive of silence
// and drops l when the PINGRESP is late (section 3.1.2.10).
func (c *Client) keepAlive(l *link) {
	if l.ended.Load() {
		return
	}
	if l.pingOut.Load() {
		l.fail(fmt.Errorf("%w within %v", ErrNoPingResponse, c.cfg.PingTimeout))
		return
	}
	idle := time.Since(time.Unix(0, l.lastSent.Load()))
	if idle < c.cfg.KeepAlive {
		l.timer.Reset(c.cfg.KeepAlive - idle)
		return
	}
	l.pingOut.Store(true)
	c.wmu.Lock()
	err := c.writeLocked(l, []byte{byte(PINGREQ) << 4, 0})
	c.wmu.Unlock()
	if err == nil && !l.ended.Load() {
		l.timer.Reset(c.cfg.PingTimeout)
	}
}

// writeLocked writes b to l; the caller holds wmu. A failed write fails
// the link, which the reader sees.
func (c *Client) writeLocked(l *link, b []byte) error {
	l.conn.SetWriteDeadline(time.Now().Add(c.cfg.ConnectTimeout))
	if _, err := l.conn.Write(b); err != nil {
		err = fmt.Errorf("write: %w", err)
		l.fail(err)
		return err
	}
	l.lastSent.Store(time.Now().UnixNano())
	return nil
}

// read reads l's packets until it fails.
func (c *Client) read(l *link) {
	for {
		p, err := ReadPacket(l.r, c.cfg.MaxPacketSize)
		dropped := p != nil && errors.Is(err, ErrTooLarge)
		if dropped {
			if c.cfg.OnDropped != nil {
				c.cfg.OnDropped(p.Topic, err)
			}
			err = nil
		}
		if err != nil {
			l.fail(fmt.Errorf("read: %w", err))
			return
		}
		switch p.Type {
		case PUBLISH:
			if !dropped {
				c.deliver(p)
			}
			if p.QoS == 1 {
				ack, _ := (&Packet{Type: PUBACK, ID: p.ID}).Append(make([]byte, 0, 4))
				c.wmu.Lock()
				err = c.writeLocked(l, ack)
				c.wmu.Unlock()
			}
		case PUBACK, SUBACK:
			c.acknowledge(p)
		case PINGRESP:
			l.pingOut.Store(false)
		default:
			err = fmt.Errorf("%w: %v from the broker", ErrMalformed, p.Type)
			l.fail(err)
		}
		if err != nil {
			return
		}
	}
}

// deliver passes a message to the handlers of the filters it matches.
func (c *Client) deliver(p *Packet) {
	m := Message{Topic: p.Topic, Payload: p.Payload, QoS: p.QoS, Dup: p.Dup, Retain: p.Retain}
	c.mu.Lock()
	var hs []Handler
	for _, s := range c.subs {
		if Match(s.filter, p.Topic) {
			hs = append(hs, s.h)
		}
	}
	c.mu.Unlock()
	for _, h := range hs {
		h(m)
	}
}

// acknowledge ends the wait of the PUBLISH or SUBSCRIBE p answers; an
// answer to nothing (a PUBACK of a message already acknowledged before a
// reconnection) is ignored.
func (c *Client) acknowledge(p *Packet) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.inflight[p.ID]
	if w == nil || w.publish != (p.Type == PUBACK) {
		return
	}
	delete(c.inflight, p.ID)
	if p.Type == SUBACK {
		w.code = p.ReturnCodes[0]
	}
	close(w.done)
}

// lose takes l down: subscriptions waiting for SUBACK fail (OnConnect
// subscribes again), QoS 1 messages stay to be sent again.
func (c *Client) lose(l *link) {
	c.wmu.Lock()
	c.mu.Lock()
	c.link = nil
	for id, w := range c.inflight {
		if !w.publish {
			delete(c.inflight, id)
			w.err = ErrConnectionLost
			close(w.done)
		}
	}
	closed := c.closed
	c.mu.Unlock()
	c.wmu.Unlock()
	if !closed && c.cfg.OnConnectionLost != nil {
		c.cfg.OnConnectionLost(l.err)
	}
}

// reconnect makes a new link, trying every broker, then waiting 1 s,
// doubling up to MaxReconnectInterval, between rounds; nil once closed.
func (c *Client) reconnect() *link {
	delay := min(time.Second, c.cfg.MaxReconnectInterval)
	for {
		if c.ctx.Err() != nil {
			return nil
		}
		if l, err := c.dialAny(c.ctx); err == nil {
			if c.install(l, false) {
				return l
			}
			return nil
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
			return nil
		}
		delay = min(delay*2, c.cfg.MaxReconnectInterval)
	}
}

// nextID returns a packet identifier not in use; the caller holds mu.
func (c *Client) nextID() (uint16, error) {
	for range 0xffff {
		c.lastID++
		if c.lastID == 0 {
			c.lastID = 1
		}
		if _, used := c.inflight[c.lastID]; !used {
			return c.lastID, nil
		}
	}
	return 0, errors.New("all 65535 packet identifiers in use")
}

// Publish sends a message. At QoS 0 it returns once written, and needs a
// live link. At QoS 1 it returns once the broker acknowledged it, or when
// ctx ends; the message stays queued either way until acknowledged,
// written as soon as a link is up and again with DUP after each
// reconnection, until Close.
func (c *Client) Publish(ctx context.Context, topic string, qos byte, payload []byte) error {
	p := Packet{Type: PUBLISH, Topic: topic, QoS: qos, Payload: payload}
	if err := checkString(topic); err != nil || strings.ContainsAny(topic, "+#") {
		return fmt.Errorf("mqtt: publish %q: a topic name is UTF-8 without wildcards", topic)
	}
	c.wmu.Lock()
	c.mu.Lock()
	l, closed := c.link, c.closed
	var w *pending
	var err error
	switch {
	case closed:
		err = ErrClosed
	case qos == 0 && l == nil:
		err = ErrNotConnected
	case qos > 0:
		if p.ID, err = c.nextID(); err == nil {
			c.seq++
			w = &pending{seq: c.seq, publish: true, done: make(chan struct{})}
		}
	}
	if err == nil {
		var b []byte
		if b, err = p.Append(nil); err == nil && w != nil {
			w.packet = b
			if c.inflight == nil {
				c.inflight = map[uint16]*pending{}
			}
			c.inflight[p.ID] = w
		} else if err == nil {
			w = &pending{packet: b}
		}
	}
	c.mu.Unlock()
	if err != nil {
		c.wmu.Unlock()
		return fmt.Errorf("mqtt: publish %s: %w", topic, err)
	}
	if l != nil {
		w.sent = true
		err = c.writeLocked(l, w.packet)
	}
	c.wmu.Unlock()
	if qos == 0 {
		if err != nil {
			return fmt.Errorf("mqtt: publish %s: %w", topic, err)
		}
		return nil
	}
	// A failed write leaves the message queued for the next link.
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("mqtt: publish %s: no PUBACK: %w", topic, ctx.Err())
	case <-c.ctx.Done():
		return fmt.Errorf("mqtt: publish %s: %w", topic, ErrClosed)
	}
}

// Subscribe subscribes to filter at QoS qos (0 or 1) and returns once the
// broker granted it; a refusal is ErrSubscriptionRefused. h takes the
// messages from now on, including those that come before the SUBACK; a
// second Subscribe to the same filter replaces its handler. Subscriptions
// are not made again after a reconnection: OnConnect is the place for
// that, since a broker that restarted has no session to resume.
func (c *Client) Subscribe(ctx context.Context, filter string, qos byte, h Handler) error {
	p := Packet{Type: SUBSCRIBE, Subscriptions: []Subscription{{Filter: filter, QoS: qos}}}
	c.wmu.Lock()
	c.mu.Lock()
	l := c.link
	var err error
	switch {
	case c.closed:
		err = ErrClosed
	case l == nil:
		err = ErrNotConnected
	default:
		p.ID, err = c.nextID()
	}
	var b []byte
	if err == nil {
		b, err = p.Append(nil)
	}
	var w *pending
	if err == nil {
		w = &pending{done: make(chan struct{})}
		if c.inflight == nil {
			c.inflight = map[uint16]*pending{}
		}
		c.inflight[p.ID] = w
		i := slices.IndexFunc(c.subs, func(s subscription) bool { return s.filter == filter })
		if i < 0 {
			c.subs = append(c.subs, subscription{filter: filter, h: h})
		} else {
			c.subs[i].h = h
		}
	}
	c.mu.Unlock()
	if err == nil {
		err = c.writeLocked(l, b)
		if err != nil {
			err = nil // the link's loss ends the wait with ErrConnectionLost
		}
	}
	c.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("mqtt: subscribe %s: %w", filter, err)
	}
	select {
	case <-w.done:
	case <-ctx.Done():
		c.mu.Lock()
		if c.inflight[p.ID] == w {
			delete(c.inflight, p.ID)
		}
		c.mu.Unlock()
		return fmt.Errorf("mqtt: subscribe %s: no SUBACK: %w", filter, ctx.Err())
	case <-c.ctx.Done():
		return fmt.Errorf("mqtt: subscribe %s: %w", filter, ErrClosed)
	}
	if w.err == nil && w.code == SubackFailure {
		w.err = ErrSubscriptionRefused
		c.mu.Lock()
		c.subs = slices.DeleteFunc(c.subs, func(s subscription) bool { return s.filter == filter })
		c.mu.Unlock()
	}
	if w.err != nil {
		return fmt.Errorf("mqtt: subscribe %s: %w", filter, w.err)
	}
	return nil
}

// Drop ends the link up now, if any, for cause, as a broken one ends:
// the Client reconnects, and OnConnect runs again. It is for a link that
// is up but of no use, such as one whose broker never answered a
// subscription OnConnect makes.
func (c *Client) Drop(cause error) {
	c.mu.Lock()
	l := c.link
	c.mu.Unlock()
	if l != nil {
		l.fail(cause)
	}
}

// IsConnected reports whether a link is up now.
func (c *Client) IsConnected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.link != nil
}

// Close sends DISCONNECT if a link is up, closes it, and returns once the
// Client's goroutines and the OnConnect calls have ended. It is safe to
// call more than once.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.wmu.Lock()
		c.mu.Lock()
		c.closed = true
		l := c.link
		c.mu.Unlock()
		c.cancel()
		if l != nil {
			// A farewell, not a duty: a failed write only closes sooner.
			_ = c.writeLocked(l, []byte{byte(DISCONNECT) << 4, 0})
			l.fail(ErrClosed)
		}
		c.wmu.Unlock()
		c.wg.Wait()
	})
	return nil
}

// Match reports whether topic matches filter, with + for one level and #
// for all the levels below (section 4.7); a topic starting with $ matches
// no filter starting with a wildcard.
func Match(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	for {
		f, frest, fmore := strings.Cut(filter, "/")
		if f == "#" {
			return true
		}
		t, trest, tmore := strings.Cut(topic, "/")
		if f != "+" && f != t {
			return false
		}
		if !fmore || !tmore {
			// "a/#" matches "a" as well.
			return fmore == tmore || (fmore && frest == "#")
		}
		filter, topic = frest, trest
	}
}
