package fleet

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

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
