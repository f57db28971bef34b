package fleet

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	omqtt "github.com/otaport/otaport/core/mqtt"
	"github.com/otaport/otaport/core/mqtt/mqtttest"
	"github.com/otaport/otaport/fleet/campaign"
)

// reportSink is a campaign client's handler: it fails while failing is set
// and records the payloads of the batches it took.
type reportSink struct {
	mu      sync.Mutex
	failing bool
	calls   int
	got     []string
}

func (s *reportSink) handle(msgs []campaign.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.failing {
		return errors.New("the store is down")
	}
	for _, m := range msgs {
		s.got = append(s.got, string(m.Payload))
	}
	return nil
}

func (s *reportSink) state() (calls int, got []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls, slices.Clone(s.got)
}

// TestDial_AckStored: a replica's reports are acknowledged to the broker
// only once stored. While its store fails, a batch is handed again until
// it is stored; and a replica that stops before it stored them (a crash,
// a restart) gets them again from the broker at its next connection.
// With paho's acknowledgement on receipt, the second case loses them all.
func TestDial_AckStored(t *testing.T) {
	broker := startMosquitto(t)
	const n = 20
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf(`{"id":%d,"params":{"step":"10","desc":""}}`, i)
	}
	for _, tc := range []struct {
		name string
		// restart: the first client stops while its store fails, and a
		// second one, on the same session, must get every report.
		restart bool
	}{
		{"store fails then recovers", false},
		{"stopped before storing", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clientID := fmt.Sprintf("otaserve-ack-%t", tc.restart)
			dial := func(sink *reportSink) *campaign.Client {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				c, err := campaign.Dial(ctx, campaign.MQTTConfig{URL: broker, ClientID: clientID, AckStored: true}, sink.handle)
				if err != nil {
					t.Fatal(err)
				}
				return c
			}
			first := &reportSink{failing: true}
			c := dial(first)
			defer c.Close()

			dev := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID(clientID + "-device"))
			if tok := dev.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatalf("device connect: %v", tok.Error())
			}
			defer dev.Disconnect(0)
			for i, p := range want {
				tok := dev.Publish(fmt.Sprintf("/ota/device/progress/pk/d%d", i), 1, false, p)
				if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					t.Fatalf("publish %d: %v", i, tok.Error())
				}
			}
			waitFor(t, "the handler to be called", func() bool { calls, _ := first.state(); return calls > 0 })

			sink := first
			if tc.restart {
				c.Close()
				sink = &reportSink{}
				c = dial(sink)
				defer c.Close()
			} else {
				first.mu.Lock()
				first.failing = false
				first.mu.Unlock()
			}
			deadline := time.Now().Add(45 * time.Second) // past a retry's pause
			for {
				_, got := sink.state()
				slices.Sort(got)
				got = slices.Compact(got) // at least once: a report may come twice
				if len(got) == n {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d of %d reports stored: %q", len(got), n, got)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// TestDial_SubscribesAgainAfterAnUnansweredResubscription: the broker
// loses otaserve's session (a restart without persistence, or another
// client that took the session over with a clean one), and at the next
// connection the subscription to the devices' topics goes unanswered.
// The client must make it again: otherwise it stays connected and hears
// no device, and every campaign waits for reports that never come.
func TestDial_SubscribesAgainAfterAnUnansweredResubscription(t *testing.T) {
	broker := startMosquitto(t)
	lost := false // the first SUBSCRIBE of link 1 is lost
	var mu sync.Mutex
	p := mqtttest.Start(t, strings.TrimPrefix(broker, "tcp://"), func(link int, toBroker bool, pk *omqtt.Packet) mqtttest.Action {
		mu.Lock()
		defer mu.Unlock()
		if link == 1 && pk.Type == omqtt.SUBSCRIBE && !lost {
			lost = true
			return mqtttest.Drop
		}
		return mqtttest.Pass
	})
	sink := &reportSink{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const id = "otaserve-resubscribe"
	c, err := campaign.Dial(ctx, campaign.MQTTConfig{URL: "tcp://" + p.Addr(), ClientID: id, SubscribeTimeout: time.Second}, sink.handle)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// A clean session under the same client id takes the session over
	// and, leaving, ends it: the broker forgets the subscriptions.
	thief := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID(id).SetCleanSession(true))
	if tok := thief.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("clean session: %v", tok.Error())
	}
	thief.Disconnect(0)

	dev := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID("dev-1"))
	if tok := dev.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("device: %v", tok.Error())
	}
	defer dev.Disconnect(0)
	// A report each 200 ms until one arrives: until the client is
	// subscribed again, they reach no one.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, got := sink.state(); len(got) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no report reached otaserve's client within 60s (%d links; first SUBSCRIBE of link 1 lost: %v)", p.Links(), lost)
		}
		dev.Publish("/ota/device/progress/a1Prod/dev-1", 1, false, `{"id":1,"params":{"step":"10","desc":""}}`).WaitTimeout(time.Second)
		time.Sleep(200 * time.Millisecond)
	}
	if p.Links() < 2 {
		t.Fatalf("a report arrived on link %d, before the session was lost", p.Links()-1)
	}
}
