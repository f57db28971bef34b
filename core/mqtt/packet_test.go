package mqtt

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func ptr(s string) *string { return &s }

func read(b []byte, limit int) (*Packet, error) {
	return ReadPacket(bufio.NewReader(bytes.NewReader(b)), limit)
}

// TestPacket_Wire checks each packet against its bytes in the
// specification's layout, both ways.
func TestPacket_Wire(t *testing.T) {
	cases := []struct {
		name string
		p    Packet
		wire string
	}{
		{"connect", Packet{Type: CONNECT, ClientID: "c", KeepAlive: 60, Username: ptr("u"), Password: ptr("p")},
			"\x10\x13\x00\x04MQTT\x04\xc0\x00\x3c\x00\x01c\x00\x01u\x00\x01p"},
		{"connect clean with will", Packet{Type: CONNECT, ClientID: "c", CleanSession: true, WillTopic: "w", WillMessage: []byte("x"), WillQoS: 1, WillRetain: true},
			"\x10\x13\x00\x04MQTT\x04\x2e\x00\x00\x00\x01c\x00\x01w\x00\x01x"},
		{"connack", Packet{Type: CONNACK, SessionPresent: true}, "\x20\x02\x01\x00"},
		{"connack refused", Packet{Type: CONNACK, ReturnCode: 5}, "\x20\x02\x00\x05"},
		{"publish qos0", Packet{Type: PUBLISH, Topic: "a/b", Payload: []byte("hi")}, "\x30\x07\x00\x03a/bhi"},
		{"publish qos1 dup retain", Packet{Type: PUBLISH, Topic: "a", QoS: 1, Dup: true, Retain: true, ID: 0x0102, Payload: []byte{}},
			"\x3b\x05\x00\x01a\x01\x02"},
		{"puback", Packet{Type: PUBACK, ID: 7}, "\x40\x02\x00\x07"},
		{"subscribe", Packet{Type: SUBSCRIBE, ID: 1, Subscriptions: []Subscription{{"a/+", 1}, {"#", 0}}},
			"\x82\x0c\x00\x01\x00\x03a/+\x01\x00\x01#\x00"},
		{"suback", Packet{Type: SUBACK, ID: 1, ReturnCodes: []byte{1, 0x80}}, "\x90\x04\x00\x01\x01\x80"},
		{"pingreq", Packet{Type: PINGREQ}, "\xc0\x00"},
		{"pingresp", Packet{Type: PINGRESP}, "\xd0\x00"},
		{"disconnect", Packet{Type: DISCONNECT}, "\xe0\x00"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := c.p.Append(nil)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != c.wire {
				t.Errorf("encoded %q, want %q", b, c.wire)
			}
			got, err := read([]byte(c.wire), 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, c.p) {
				t.Errorf("decoded %+v, want %+v", *got, c.p)
			}
		})
	}
}

// TestRemainingLength_Boundaries encodes payloads whose remaining length
// sits at each boundary of the varint's byte count.
func TestRemainingLength_Boundaries(t *testing.T) {
	for _, c := range []struct{ n, header int }{{127, 2}, {128, 3}, {16383, 3}, {16384, 4}, {2097151, 4}, {2097152, 5}} {
		// PUBLISH "t" at QoS 0: 3 bytes of topic, the rest payload.
		p := Packet{Type: PUBLISH, Topic: "t", Payload: make([]byte, c.n-3)}
		b, err := p.Append(nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != c.n+c.header {
			t.Errorf("remaining length %d: %d bytes, want %d", c.n, len(b), c.n+c.header)
		}
		got, err := read(b, c.n)
		if err != nil || len(got.Payload) != c.n-3 {
			t.Errorf("remaining length %d: read back %v", c.n, err)
		}
		if _, err := read(b, c.n-1); !errors.Is(err, ErrTooLarge) {
			t.Errorf("remaining length %d over a limit of %d: err = %v, want ErrTooLarge", c.n, c.n-1, err)
		}
	}
}

func TestReadPacket_RefusesMalformed(t *testing.T) {
	cases := []struct {
		name, wire string
		want       error
		text       string
	}{
		{"varint of five bytes", "\x30\xff\xff\xff\xff\x01", ErrMalformed, "longer than 4 bytes"},
		{"cut in the varint", "\x30\x80", io.ErrUnexpectedEOF, ""},
		{"cut in the body", "\x30\x05\x00\x01", io.ErrUnexpectedEOF, ""},
		{"qos 2 publish", "\x34\x05\x00\x01a\x00\x01", ErrMalformed, "QoS 2"},
		{"qos 3 publish", "\x36\x05\x00\x01a\x00\x01", ErrMalformed, "QoS 3"},
		{"dup at qos 0", "\x38\x03\x00\x01a", ErrMalformed, "DUP"},
		{"empty topic", "\x30\x02\x00\x00", ErrMalformed, "empty topic"},
		{"topic not utf-8", "\x30\x03\x00\x01\xff", ErrMalformed, "UTF-8"},
		{"topic with nul", "\x30\x03\x00\x01\x00", ErrMalformed, "U+0000"},
		{"packet id 0", "\x32\x05\x00\x01a\x00\x00", ErrMalformed, "identifier 0"},
		{"topic longer than the body", "\x30\x03\x00\x09a", ErrMalformed, "cut short"},
		{"puback bad flags", "\x42\x02\x00\x01", ErrMalformed, "flags"},
		{"puback too long", "\x40\x03\x00\x01\x00", ErrMalformed, "left over"},
		{"subscribe bad flags", "\x80\x06\x00\x01\x00\x01a\x00", ErrMalformed, "flags"},
		{"subscribe no filter", "\x82\x02\x00\x01", ErrMalformed, "no topic filter"},
		{"suback no code", "\x90\x02\x00\x01", ErrMalformed, "no return code"},
		{"suback bad code", "\x90\x03\x00\x01\x03", ErrMalformed, "return code 0x03"},
		{"connack bad flags", "\x20\x02\x02\x00", ErrMalformed, "acknowledge flags"},
		{"pingresp with a body", "\xd0\x01\x00", ErrMalformed, "left over"},
		{"pubrec", "\x50\x02\x00\x01", ErrMalformed, "not supported"},
		{"reserved type 0", "\x00\x00", ErrMalformed, "not supported"},
		{"connect wrong protocol", "\x10\x0c\x00\x04MQIs\x04\x00\x00\x00\x00\x00", ErrMalformed, "protocol name"},
		{"connect wrong level", "\x10\x0c\x00\x04MQTT\x03\x00\x00\x00\x00\x00", ErrMalformed, "protocol level"},
		{"connect reserved flag", "\x10\x0c\x00\x04MQTT\x04\x01\x00\x00\x00\x00", ErrMalformed, "reserved"},
		{"connect password alone", "\x10\x0f\x00\x04MQTT\x04\x40\x00\x00\x00\x00\x00\x01p", ErrMalformed, "password without"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := read([]byte(c.wire), 1<<20)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) {
				t.Fatalf("ReadPacket = %+v, %v; want %v with %q", p, err, c.want, c.text)
			}
		})
	}
}

func TestAppend_RefusesWhatTheProtocolForbids(t *testing.T) {
	long := strings.Repeat("a", 0x10000)
	for name, p := range map[string]Packet{
		"qos 2":              {Type: PUBLISH, Topic: "a", QoS: 2},
		"empty topic":        {Type: PUBLISH},
		"topic too long":     {Type: PUBLISH, Topic: long},
		"topic not utf-8":    {Type: PUBLISH, Topic: "\xff"},
		"client id with nul": {Type: CONNECT, ClientID: "a\x00"},
		"password alone":     {Type: CONNECT, Password: ptr("p")},
		"no filter":          {Type: SUBSCRIBE, ID: 1},
		"subscribe qos 2":    {Type: SUBSCRIBE, ID: 1, Subscriptions: []Subscription{{"a", 2}}},
		"pubrel":             {Type: 6},
	} {
		if b, err := p.Append(nil); err == nil {
			t.Errorf("%s: encoded as %q", name, b[:min(len(b), 16)])
		}
	}
}

func TestMatch(t *testing.T) {
	for _, c := range []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/b", "a/b/c", false},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/+/c", "a/b/c", true},
		{"a/#", "a", true},
		{"a/#", "a/b/c", true},
		{"#", "a/b", true},
		{"+", "", true},
		{"+/+", "/a", true},
		{"#", "$SYS/x", false},
		{"+/x", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true},
		{"/ota/device/upgrade/pk/dn", "/ota/device/upgrade/pk/dn", true},
	} {
		if got := Match(c.filter, c.topic); got != c.want {
			t.Errorf("Match(%q, %q) = %v", c.filter, c.topic, got)
		}
	}
}

// FuzzReadPacket feeds the decoder arbitrary bytes: it must not panic, must
// not read past its limit, and what it accepts must encode to bytes that
// decode to the same packet.
// An oversized PUBLISH is read past, its topic and identifier kept for the
// acknowledgement, and the next packet reads as usual.
func TestReadPacket_SkipsAnOversizedPublish(t *testing.T) {
	big, err := (&Packet{Type: PUBLISH, QoS: 1, ID: 7, Topic: "a/b", Payload: make([]byte, 300)}).Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(bytes.NewReader(append(big, 0xd0, 0x00)))
	p, err := ReadPacket(r, 100)
	if !errors.Is(err, ErrTooLarge) || p == nil || p.Topic != "a/b" || p.ID != 7 || p.QoS != 1 || p.Payload != nil {
		t.Fatalf("ReadPacket = %+v, %v; want the PUBLISH's topic and id, no payload, and ErrTooLarge", p, err)
	}
	if p, err := ReadPacket(r, 100); err != nil || p.Type != PINGRESP {
		t.Fatalf("the packet after it: %+v, %v; want PINGRESP", p, err)
	}
	// Any other packet that large is refused outright.
	if p, err := read([]byte("\x90\x65\x00\x01"+strings.Repeat("\x00", 99)), 50); !errors.Is(err, ErrTooLarge) || p != nil {
		t.Fatalf("an oversized SUBACK: %+v, %v; want ErrTooLarge and no packet", p, err)
	}
}

func FuzzReadPacket(f *testing.F) {
	for _, s := range []string{
		"\x10\x13\x00\x04MQTT\x04\xc0\x00\x3c\x00\x01c\x00\x01u\x00\x01p",
		"\x20\x02\x01\x00", "\x3b\x05\x00\x01a\x01\x02", "\x32\x07\x00\x01a\x00\x01hi", "\x40\x02\x00\x07",
		"\x82\x0c\x00\x01\x00\x03a/+\x01\x00\x01#\x00", "\x90\x04\x00\x01\x01\x80", "\xd0\x00", "\x30\xff\xff\xff\x7f",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		const limit = 4096
		p, err := read(b, limit)
		if err != nil {
			return
		}
		enc, err := p.Append(nil)
		if err != nil {
			t.Fatalf("decoded %+v but cannot encode it: %v", p, err)
		}
		again, err := read(enc, limit)
		if err != nil {
			t.Fatalf("re-encoded %q does not decode: %v", enc, err)
		}
		if !reflect.DeepEqual(p, again) {
			t.Fatalf("round trip changed %+v into %+v", p, again)
		}
	})
}
