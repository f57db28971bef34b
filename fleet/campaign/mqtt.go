package campaign

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Subscriptions are the device topics the service listens to as an
// operator: versions, progress, and requests for the pending order.
var Subscriptions = []string{"/ota/device/inform/+/+", "/ota/device/progress/+/+", "/ota/device/request/+/+"}

// MQTTConfig is how the service reaches the broker.
type MQTTConfig struct {
	// URL is the broker, "tcp://127.0.0.1:1883", "ssl://host:8883" or
	// "ws://...", as paho understands it, or several separated by commas:
	// the nodes of a clustered broker.
	URL      string
	Username string
	Password string
	ClientID string
	TLS      *tls.Config
	Logger   *slog.Logger
	// Retry makes Dial try again, every second, until ctx ends when the
	// broker refuses or cannot be reached: an external broker may come up
	// after otaserve, and a NATS cluster's auth callout needs a moment to
	// be known on every node after otaserve starts serving it.
	Retry bool
	// AckStored acknowledges each message to the broker only once the
	// handler has returned nil for its batch, and hands a batch that
	// failed to the handler again (see Deliver) until it succeeds or the
	// Client closes: a report is then never lost between the broker and
	// the store, whatever stops the process, as the broker sends the
	// messages it holds unacknowledged again at the next connection of
	// the session. It is for a handler whose only failures pass (a
	// database's); the messages may then come twice.
	AckStored bool
	// SubscribeTimeout bounds the wait for the broker's SUBACK; 0 means
	// DefaultSubscribeTimeout. After a reconnection a subscription not
	// answered in time, or refused, is made again while the connection
	// lasts.
	SubscribeTimeout time.Duration
}

// DefaultSubscribeTimeout is how long a subscription waits for the
// broker's answer by default, as long as a device's client waits for one.
const DefaultSubscribeTimeout = 30 * time.Second

// Client is the service's MQTT connection. Messages are handed to the
// handler in arrival order, in batches of what has queued up, on a goroutine
// the Client owns. The handler must not wait for a publish of this same
// client: while it runs, paho's incoming loop may be blocked on a full
// queue, and with it the acknowledgements (Service queues its orders and
// publishes them from other goroutines).
type Client struct {
	c     mqtt.Client
	log   *slog.Logger
	queue chan Message
	stop  chan struct{}
	done  sync.WaitGroup
	once  sync.Once
}

// QueueSize is how many device messages wait between the MQTT client and
// the handler; MaxBatch is the most the handler gets in one call.
const (
	QueueSize = 4096
	MaxBatch  = 512
)

// Dial connects to the broker, subscribes to Subscriptions (again after every
// reconnect) and delivers the messages to handle until Close.
func Dial(ctx context.Context, cfg MQTTConfig, handle func(msgs []Message) error) (*Client, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cl := &Client{log: cfg.Logger, queue: make(chan Message, QueueSize), stop: make(chan struct{})}
	opts := mqtt.NewClientOptions()
	// Several URLs are the nodes of a clustered broker: paho tries them in
	// order at every connection.
	for _, u := range strings.Split(cfg.URL, ",") {
		opts.AddBroker(strings.TrimSpace(u))
	}
	opts.SetClientID(cfg.ClientID).SetUsername(cfg.Username).SetPassword(cfg.Password).
		SetTLSConfig(cfg.TLS).SetAutoReconnect(true).
		SetConnectRetry(cfg.Retry).SetConnectRetryInterval(time.Second).
		// A persistent session keeps device reports queued at the broker
		// while the service restarts.
		SetCleanSession(false).
		SetOrderMatters(true).
		SetAutoAckDisabled(cfg.AckStored)
	if cfg.SubscribeTimeout <= 0 {
		cfg.SubscribeTimeout = DefaultSubscribeTimeout
	}
	subscribed := make(chan error, 1) // the first subscription's outcome
	var dialed atomic.Bool
	filters := map[string]byte{}
	for _, f := range Subscriptions {
		filters[f] = 1
	}
	receive := func(_ mqtt.Client, m mqtt.Message) {
		msg := Message{Topic: m.Topic(), Payload: m.Payload()}
		if cfg.AckStored {
			msg.ack = m.Ack
		}
		select {
		case cl.queue <- msg:
		case <-cl.stop:
		}
	}
	// What the broker sends again of the session as soon as it has taken
	// the connection comes before the subscription is renewed: it goes
	// to the same queue, not to a handler that would drop it unacknowledged.
	opts.SetDefaultPublishHandler(receive)
	opts.SetOnConnectHandler(func(c mqtt.Client) {
		tok := c.SubscribeMultiple(filters, receive)
		// Waiting inside the connect handler would stall paho.
		go func() {
			delay := time.Second
			for {
				var err error
				if tok.WaitTimeout(cfg.SubscribeTimeout) {
					err = subscribeError(tok)
				} else {
					err = fmt.Errorf("no answer to the subscription within %v", cfg.SubscribeTimeout)
				}
				if dialed.CompareAndSwap(false, true) {
					subscribed <- err // Dial decides on the first
					return
				}
				if err == nil {
					return
				}
				// A reconnection's: the session the broker kept may hold
				// the subscriptions still, but one it lost does not, and
				// otaserve would hear no device. The next connection
				// subscribes anew; this one tries again meanwhile.
				cl.log.Error("mqtt subscribe, trying again", "err", err, "in", delay)
				select {
				case <-cl.stop:
					return
				case <-time.After(delay):
				}
				if !c.IsConnectionOpen() {
					return
				}
				delay = min(2*delay, 30*time.Second)
				tok = c.SubscribeMultiple(filters, receive)
			}
		}()
	})
	opts.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		cl.log.Warn("mqtt connection lost, reconnecting", "err", err)
	})
	cl.c = mqtt.NewClient(opts)
	if err := wait(ctx, cl.c.Connect()); err != nil {
		cl.c.Disconnect(0) // ends the retries
		return nil, fmt.Errorf("connect to broker %s: %w", cfg.URL, err)
	}
	// Reports sent before the subscriptions are in place reach no one: a
	// clustered broker takes a while to make them (a JetStream consumer
	// each, on the NATS server), so Dial returns only once they are.
	select {
	case err := <-subscribed:
		if err != nil {
			cl.c.Disconnect(0)
			return nil, fmt.Errorf("subscribe at broker %s: %w", cfg.URL, err)
		}
	case <-ctx.Done():
		cl.c.Disconnect(0)
		return nil, fmt.Errorf("subscribe at broker %s: %w", cfg.URL, ctx.Err())
	}
	cl.done.Add(1)
	go func() {
		defer cl.done.Done()
		Deliver(cl.queue, cl.stop, handle, cl.log, cfg.AckStored)
	}()
	return cl, nil
}

// subscribeError is a finished subscription's error, a refusal of any of
// its filters included (SUBACK 0x80, which paho does not report as one).
func subscribeError(tok mqtt.Token) error {
	if err := tok.Error(); err != nil {
		return err
	}
	st, ok := tok.(*mqtt.SubscribeToken)
	if !ok {
		return nil
	}
	var refused []string
	for f, code := range st.Result() {
		if code == 0x80 {
			refused = append(refused, f)
		}
	}
	if len(refused) > 0 {
		slices.Sort(refused)
		return fmt.Errorf("the broker refused %s: let otaserve's user subscribe to /ota/device/# there", strings.Join(refused, ", "))
	}
	return nil
}

// Deliver hands the messages of queue to handle until stop is closed: the
// first message that arrives, with whatever else is already queued (up to
// MaxBatch), so that a busy fleet's reports share one database
// transaction and a quiet one's are handled at once. Once handle returns,
// the batch's messages are acknowledged, in order (MQTT 3.1.1 section
// 4.6). With retry, a batch that handle failed is handed to it again,
// after a pause that doubles from retryFirst to retryMost, and is
// acknowledged only once handle succeeds; a stop meanwhile leaves it
// unacknowledged, for the broker to send again.
func Deliver(queue <-chan Message, stop <-chan struct{}, handle func(msgs []Message) error, log *slog.Logger, retry bool) {
	batch := make([]Message, 0, MaxBatch)
	for {
		batch = batch[:0]
		select {
		case m := <-queue:
			batch = append(batch, m)
		case <-stop:
			return
		}
	more:
		for len(batch) < MaxBatch {
			select {
			case m := <-queue:
				batch = append(batch, m)
			default:
				break more
			}
		}
		log.Debug("device messages", "count", len(batch))
		pause := retryFirst
		for {
			err := handle(batch)
			if err == nil {
				break
			}
			if !retry {
				log.Warn("device messages", "count", len(batch), "err", err)
				break
			}
			log.Warn("device messages not stored; trying again", "count", len(batch), "in", pause, "err", err)
			select {
			case <-time.After(pause):
			case <-stop:
				return
			}
			pause = min(2*pause, retryMost)
		}
		for _, m := range batch {
			if m.ack != nil {
				m.ack()
			}
		}
	}
}

// The pauses between a failed batch and its next try (Deliver).
const (
	retryFirst = time.Second
	retryMost  = 30 * time.Second
)

// Publish sends payload on topic at QoS 1 and waits for the broker's ack.
func (c *Client) Publish(ctx context.Context, topic string, payload []byte) error {
	return wait(ctx, c.c.Publish(topic, 1, false, payload))
}

// PublishRetained is Publish with the retain flag.
func (c *Client) PublishRetained(ctx context.Context, topic string, payload []byte) error {
	return wait(ctx, c.c.Publish(topic, 1, true, payload))
}

// Close stops delivering messages and disconnects. It waits for a handler
// call in progress, which holds no network wait (see Client), so it returns
// in bounded time; it is safe to call more than once.
func (c *Client) Close() {
	c.once.Do(func() {
		close(c.stop)
		c.done.Wait()
		c.c.Disconnect(250)
	})
}

func wait(ctx context.Context, t mqtt.Token) error {
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return errors.Join(ctx.Err(), errors.New("mqtt: no answer from the broker"))
	}
}
