package campaign

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Subscriptions are the device topics the service listens to as an
// operator: versions, progress, and requests for the pending order.
var Subscriptions = []string{"/ota/device/inform/+/+", "/ota/device/progress/+/+", "/ota/device/request/+/+"}

// MQTTConfig is how the service reaches the broker.
type MQTTConfig struct {
	// URL is the broker, "tcp://127.0.0.1:1883", "ssl://host:8883" or
	// "ws://...", as paho understands it.
	URL      string
	Username string
	Password string
	ClientID string
	TLS      *tls.Config
	Logger   *slog.Logger
}

// Client is the service's MQTT connection. Messages are handed to the
// handler one at a time, in arrival order, on a goroutine the Client owns, so
// the handler may publish without stalling the MQTT client's own loop.
type Client struct {
	c      mqtt.Client
	log    *slog.Logger
	queue  chan message
	stop   chan struct{}
	cancel context.CancelFunc
	done   sync.WaitGroup
}

type message struct {
	topic   string
	payload []byte
}

// Dial connects to the broker, subscribes to Subscriptions (again after every
// reconnect) and delivers each message to handle until Close.
func Dial(ctx context.Context, cfg MQTTConfig, handle func(ctx context.Context, topic string, payload []byte) error) (*Client, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cl := &Client{log: cfg.Logger, queue: make(chan message, 1024), stop: make(chan struct{})}
	opts := mqtt.NewClientOptions().AddBroker(cfg.URL).
		SetClientID(cfg.ClientID).SetUsername(cfg.Username).SetPassword(cfg.Password).
		SetTLSConfig(cfg.TLS).SetAutoReconnect(true).SetConnectRetry(false).
		// A persistent session keeps device reports queued at the broker
		// while the service restarts.
		SetCleanSession(false).
		SetOrderMatters(true)
	opts.SetDefaultPublishHandler(func(mqtt.Client, mqtt.Message) {})
	opts.SetOnConnectHandler(func(c mqtt.Client) {
		filters := map[string]byte{}
		for _, f := range Subscriptions {
			filters[f] = 1
		}
		tok := c.SubscribeMultiple(filters, func(_ mqtt.Client, m mqtt.Message) {
			select {
			case cl.queue <- message{m.Topic(), m.Payload()}:
			case <-cl.stop:
			}
		})
		go func() {
			// Waiting inside the connect handler would stall paho.
			if tok.Wait() && tok.Error() != nil {
				cl.log.Error("mqtt subscribe", "err", tok.Error())
			}
		}()
	})
	opts.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		cl.log.Warn("mqtt connection lost, reconnecting", "err", err)
	})
	cl.c = mqtt.NewClient(opts)
	if err := wait(ctx, cl.c.Connect()); err != nil {
		return nil, fmt.Errorf("connect to broker %s: %w", cfg.URL, err)
	}
	hctx, cancel := context.WithCancel(context.Background())
	cl.cancel = cancel
	cl.done.Add(1)
	go func() {
		defer cl.done.Done()
		for {
			select {
			case m := <-cl.queue:
				cl.log.Debug("device message", "topic", m.topic, "bytes", len(m.payload))
				if err := handle(hctx, m.topic, m.payload); err != nil {
					cl.log.Warn("device message", "topic", m.topic, "err", err)
				}
			case <-cl.stop:
				return
			}
		}
	}()
	return cl, nil
}

// Publish sends payload on topic at QoS 1 and waits for the broker's ack.
func (c *Client) Publish(ctx context.Context, topic string, payload []byte) error {
	return wait(ctx, c.c.Publish(topic, 1, false, payload))
}

// Close stops delivering messages and disconnects.
func (c *Client) Close() {
	close(c.stop)
	c.cancel() // unblocks a handler waiting on a publish
	c.done.Wait()
	c.c.Disconnect(250)
}

func wait(ctx context.Context, t mqtt.Token) error {
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return errors.Join(ctx.Err(), errors.New("mqtt: no answer from the broker"))
	}
}
