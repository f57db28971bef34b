package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"time"
)

// runCore measures the design docs/scaling.md recommends instead of MQTT
// sessions in JetStream: one replica's connection subscribes, in core NATS,
// to the order subject of every device it holds, and orders are published
// to those subjects. It speaks the NATS text protocol itself (CONNECT, SUB,
// PUB, PING) to keep the spike free of a client library.
func runCore(ctx context.Context, c config) (err error) {
	c.kind = "nats"
	b, cleanup, err := newBroker(c)
	if err != nil {
		return err
	}
	defer cleanup()
	if err := b.start(ctx); err != nil {
		return err
	}
	defer func() {
		if serr := b.stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	if _, err := ready(ctx, fmt.Sprintf("127.0.0.1:%d", c.mqttPort), b.exited); err != nil {
		return err
	}
	report := func(what string) {
		u, err := b.usage()
		if err != nil {
			fmt.Printf("%s: %v\n", what, err)
			return
		}
		fmt.Printf("%-28s rss %7.1f MiB  fds %5d  threads %4d\n", what, float64(u.rssKiB)/1024, u.fds, u.threads)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", c.natsPort)
	replica, rr, err := natsConn(ctx, addr)
	if err != nil {
		return err
	}
	defer replica.Close()
	publisher, _, err := natsConn(ctx, addr)
	if err != nil {
		return err
	}
	defer publisher.Close()
	report("idle")

	ds := devices(c.devices)
	subject := func(d device) string {
		return "ota.upgrade." + strings.ReplaceAll(d.topic[len("/ota/device/upgrade/"):], "/", ".")
	}
	start := time.Now()
	w := bufio.NewWriter(replica)
	for i, d := range ds {
		fmt.Fprintf(w, "SUB %s %d\r\n", subject(d), i+1)
	}
	if err := flush(w, replica); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	if err := waitPong(rr); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	report(fmt.Sprintf("%d subscriptions (%v)", len(ds), time.Since(start).Round(time.Millisecond)))

	got := make(chan int, 1)
	go func() { got <- countMsgs(replica, rr, len(ds)) }()
	start = time.Now()
	pw := bufio.NewWriter(publisher)
	for _, d := range ds {
		p := payload("m1", d)
		fmt.Fprintf(pw, "PUB %s %d\r\n%s\r\n", subject(d), len(p), p)
	}
	if err := flush(pw, publisher); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	select {
	case n := <-got:
		fmt.Printf("orders delivered: %d of %d in %v\n", n, len(ds), time.Since(start).Round(time.Millisecond))
	case <-time.After(60 * time.Second):
		fmt.Printf("orders delivered: not all within 60 s\n")
	case <-ctx.Done():
		return ctx.Err()
	}
	report("after the orders")
	return nil
}

// natsConn opens a NATS connection and sends CONNECT; the server's INFO
// line is read first, as the protocol asks.
func natsConn(ctx context.Context, addr string) (net.Conn, *bufio.Reader, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dial nats %s: %w", addr, err)
	}
	r := bufio.NewReaderSize(conn, 1<<16)
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "INFO ") {
		conn.Close()
		return nil, nil, fmt.Errorf("nats %s: want INFO, got %q: %v", addr, line, err)
	}
	if _, err := fmt.Fprintf(conn, "CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1}\r\n"); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("nats %s: connect: %w", addr, err)
	}
	return conn, r, nil
}

// waitPong reads until the PONG that answers flush's PING.
func waitPong(r *bufio.Reader) error {
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("wait for PONG: %w", err)
		}
		if strings.HasPrefix(line, "-ERR") {
			return fmt.Errorf("nats: %s", strings.TrimSpace(line))
		}
		if strings.HasPrefix(line, "PONG") {
			return nil
		}
	}
}

// flush writes what is buffered and a PING: the server has processed
// everything before it once the PONG arrives (see waitPong).
func flush(w *bufio.Writer, conn net.Conn) error {
	if _, err := w.WriteString("PING\r\n"); err != nil {
		return err
	}
	return w.Flush()
}

// countMsgs reads the connection until want MSG frames have arrived or
// it closes, answering the server's PINGs.
func countMsgs(conn net.Conn, r *bufio.Reader, want int) int {
	n := 0
	for n < want {
		line, err := r.ReadString('\n')
		if err != nil {
			return n
		}
		switch {
		case strings.HasPrefix(line, "MSG "):
			if _, err := r.ReadString('\n'); err != nil { // the payload
				return n
			}
			n++
		case strings.HasPrefix(line, "PING"):
			fmt.Fprintf(conn, "PONG\r\n")
		}
	}
	return n
}
