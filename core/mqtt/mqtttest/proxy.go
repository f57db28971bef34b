// Package mqtttest is test support: a proxy between MQTT clients and a
// real broker that relays packet by packet, so that a test can lose what
// a broker under trouble loses (a SUBSCRIBE it never answers, a link cut
// mid-session) without a broker of its own.
package mqtttest

import (
	"bufio"
	"net"
	"sync"
	"testing"

	"github.com/otaport/otaport/core/mqtt"
)

// Action is what the proxy does with one packet.
type Action int

const (
	// Pass relays the packet.
	Pass Action = iota
	// Drop loses it; the link stays up.
	Drop
	// Cut loses it and closes the link.
	Cut
)

// Filter decides each packet's fate: link counts the client's
// connections from 0, toBroker tells the direction.
type Filter func(link int, toBroker bool, p *mqtt.Packet) Action

// Proxy listens on loopback and relays every connection to its target.
type Proxy struct {
	ln     net.Listener
	target string
	filter Filter

	mu    sync.Mutex
	links []net.Conn             // the client's side of each link, in order
	sent  map[int][]*mqtt.Packet // by link, what the client sent
	hold  <-chan struct{}
}

// Start starts a proxy to the broker at target (host:port); it stops when
// the test ends. A nil filter passes everything.
func Start(t testing.TB, target string, filter Filter) *Proxy {
	t.Helper()
	if filter == nil {
		filter = func(int, bool, *mqtt.Packet) Action { return Pass }
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, filter: filter, sent: map[int][]*mqtt.Packet{}}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		p.CutAll()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			n := len(p.links)
			p.links = append(p.links, c)
			p.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.relay(n, c)
			}()
		}
	}()
	return p
}

// Addr is the proxy's host:port, for the clients.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Links is how many connections clients have made so far.
func (p *Proxy) Links() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

// CutAll closes every link made so far, as a broker's crash would.
func (p *Proxy) CutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.links {
		c.Close()
	}
}

// Hold makes every link after the first wait for ch to close before it
// reaches the broker: the client is connecting meanwhile, not connected.
func (p *Proxy) Hold(ch <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hold = ch
}

// Sent is the packets of type typ the client sent on link n, whatever
// the filter did with them.
func (p *Proxy) Sent(n int, typ mqtt.Type) []*mqtt.Packet {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*mqtt.Packet
	for _, pk := range p.sent[n] {
		if pk.Type == typ {
			out = append(out, pk)
		}
	}
	return out
}

func (p *Proxy) relay(n int, client net.Conn) {
	defer client.Close()
	p.mu.Lock()
	hold := p.hold
	p.mu.Unlock()
	if n > 0 && hold != nil {
		<-hold
	}
	broker, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer broker.Close()
	pipe := func(from, to net.Conn, toBroker bool) {
		defer client.Close()
		defer broker.Close()
		r := bufio.NewReader(from)
		for {
			pk, err := mqtt.ReadPacket(r, 1<<20)
			if err != nil {
				return
			}
			if toBroker {
				p.mu.Lock()
				p.sent[n] = append(p.sent[n], pk)
				p.mu.Unlock()
			}
			switch p.filter(n, toBroker, pk) {
			case Drop:
				continue
			case Cut:
				return
			}
			b, err := pk.Append(nil)
			if err != nil {
				return
			}
			if _, err := to.Write(b); err != nil {
				return
			}
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		pipe(broker, client, false)
	}()
	pipe(client, broker, true)
	<-done
}
