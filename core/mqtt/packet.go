package mqtt

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// Type is a control packet's type, the high nibble of its first byte
// (MQTT 3.1.1 section 2.2.1).
type Type byte

// The control packets this package speaks. QoS 2 (PUBREC, PUBREL, PUBCOMP)
// and UNSUBSCRIBE are not among them: the client never asks for QoS 2 nor
// unsubscribes, so a broker that sends them breaks the protocol.
const (
	CONNECT    Type = 1
	CONNACK    Type = 2
	PUBLISH    Type = 3
	PUBACK     Type = 4
	SUBSCRIBE  Type = 8
	SUBACK     Type = 9
	PINGREQ    Type = 12
	PINGRESP   Type = 13
	DISCONNECT Type = 14
)

var typeNames = [...]string{CONNECT: "CONNECT", CONNACK: "CONNACK", PUBLISH: "PUBLISH", PUBACK: "PUBACK",
	SUBSCRIBE: "SUBSCRIBE", SUBACK: "SUBACK", PINGREQ: "PINGREQ", PINGRESP: "PINGRESP", DISCONNECT: "DISCONNECT"}

func (t Type) String() string {
	if int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	return fmt.Sprintf("packet type %d", byte(t))
}

// MaxRemainingLength is the largest remaining length the four-byte varint
// can carry (section 2.2.3).
const MaxRemainingLength = 268435455

// SubackFailure is the SUBACK return code of a refused subscription.
const SubackFailure = 0x80

// ErrMalformed is wrapped by every error about a packet that breaks the
// protocol; ErrTooLarge by one about a packet over the reader's limit.
var (
	ErrMalformed = errors.New("malformed packet")
	ErrTooLarge  = errors.New("packet too large")
)

// Subscription is one topic filter of a SUBSCRIBE with its maximum QoS.
type Subscription struct {
	Filter string
	QoS    byte
}

// Packet is one control packet; which fields count depends on Type.
type Packet struct {
	Type Type

	// PUBLISH: the fixed header's flags, topic and payload. ID is also
	// PUBACK's, SUBSCRIBE's and SUBACK's packet identifier.
	Dup, Retain bool
	QoS         byte
	ID          uint16
	Topic       string
	Payload     []byte

	// SUBSCRIBE's filters, SUBACK's return codes.
	Subscriptions []Subscription
	ReturnCodes   []byte

	// CONNACK.
	SessionPresent bool
	ReturnCode     byte

	// CONNECT. A nil Username or Password is absent; Will is absent when
	// WillTopic is "".
	ClientID           string
	CleanSession       bool
	KeepAlive          uint16
	Username, Password *string
	WillTopic          string
	WillMessage        []byte
	WillQoS            byte
	WillRetain         bool
}

// Append appends p's encoding to dst. It refuses what the protocol forbids:
// a QoS above 1, a string over 65535 bytes or not UTF-8, a packet whose
// remaining length is over MaxRemainingLength.
func (p *Packet) Append(dst []byte) ([]byte, error) {
	var e encoder
	first := byte(p.Type) << 4
	switch p.Type {
	case CONNECT:
		flags := byte(0)
		if p.CleanSession {
			flags |= 0x02
		}
		if p.WillTopic != "" {
			if p.WillQoS > 1 {
				return dst, fmt.Errorf("encode CONNECT: will QoS %d; want 0 or 1", p.WillQoS)
			}
			flags |= 0x04 | p.WillQoS<<3
			if p.WillRetain {
				flags |= 0x20
			}
		}
		if p.Password != nil {
			if p.Username == nil {
				return dst, errors.New("encode CONNECT: a password needs a user name (section 3.1.2.9)")
			}
			flags |= 0x40
		}
		if p.Username != nil {
			flags |= 0x80
		}
		e.string("MQTT")
		e.b = append(e.b, 4, flags, byte(p.KeepAlive>>8), byte(p.KeepAlive))
		e.string(p.ClientID)
		if p.WillTopic != "" {
			e.string(p.WillTopic)
			e.bytes(p.WillMessage)
		}
		if p.Username != nil {
			e.string(*p.Username)
		}
		if p.Password != nil {
			e.bytes([]byte(*p.Password))
		}
	case CONNACK:
		sp := byte(0)
		if p.SessionPresent {
			sp = 1
		}
		e.b = append(e.b, sp, p.ReturnCode)
	case PUBLISH:
		if p.QoS > 1 {
			return dst, fmt.Errorf("encode PUBLISH %s: QoS %d; want 0 or 1", p.Topic, p.QoS)
		}
		if p.Topic == "" {
			return dst, errors.New("encode PUBLISH: empty topic")
		}
		first |= p.QoS << 1
		if p.Dup {
			first |= 0x08
		}
		if p.Retain {
			first |= 0x01
		}
		e.string(p.Topic)
		if p.QoS > 0 {
			e.id(p.ID)
		}
		e.b = append(e.b, p.Payload...)
	case PUBACK:
		e.id(p.ID)
	case SUBSCRIBE:
		if len(p.Subscriptions) == 0 {
			return dst, errors.New("encode SUBSCRIBE: no topic filter (section 3.8.3)")
		}
		first |= 0x02
		e.id(p.ID)
		for _, s := range p.Subscriptions {
			if s.QoS > 1 {
				return dst, fmt.Errorf("encode SUBSCRIBE %s: QoS %d; want 0 or 1", s.Filter, s.QoS)
			}
			e.string(s.Filter)
			e.b = append(e.b, s.QoS)
		}
	case SUBACK:
		e.id(p.ID)
		e.b = append(e.b, p.ReturnCodes...)
	case PINGREQ, PINGRESP, DISCONNECT:
	default:
		return dst, fmt.Errorf("encode: %v is not supported", p.Type)
	}
	if e.err != nil {
		return dst, fmt.Errorf("encode %v: %w", p.Type, e.err)
	}
	if len(e.b) > MaxRemainingLength {
		return dst, fmt.Errorf("encode %v: %d bytes, more than MQTT's %d", p.Type, len(e.b), MaxRemainingLength)
	}
	dst = append(dst, first)
	for n := len(e.b); ; {
		d := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			d |= 0x80
		}
		dst = append(dst, d)
		if n == 0 {
			break
		}
	}
	return append(dst, e.b...), nil
}

type encoder struct {
	b   []byte
	err error
}

func (e *encoder) id(id uint16) { e.b = append(e.b, byte(id>>8), byte(id)) }

func (e *encoder) string(s string) {
	if e.err == nil {
		e.err = checkString(s)
	}
	e.bytes([]byte(s))
}

func (e *encoder) bytes(b []byte) {
	if len(b) > 0xffff {
		if e.err == nil {
			e.err = fmt.Errorf("field of %d bytes, more than 65535", len(b))
		}
		return
	}
	e.b = append(e.b, byte(len(b)>>8), byte(len(b)))
	e.b = append(e.b, b...)
}

// checkString applies section 1.5.3: UTF-8 without U+0000.
func checkString(s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("string %q is not UTF-8", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return fmt.Errorf("string %q holds U+0000", s)
		}
	}
	return nil
}

// ReadPacket reads one packet from r, refusing one whose remaining length
// is over limit before reading its body, so a broker cannot make the reader
// allocate more than limit bytes.
func ReadPacket(r *bufio.Reader, limit int) (*Packet, error) {
	first, err := r.ReadByte()
	if err != nil {
		return nil, err
	}
	n, mul := 0, 1
	for i := 0; ; i++ {
		if i == 4 {
			return nil, fmt.Errorf("%w: remaining length longer than 4 bytes", ErrMalformed)
		}
		d, err := r.ReadByte()
		if err != nil {
			return nil, fmt.Errorf("read remaining length: %w", noEOF(err))
		}
		n += int(d&0x7f) * mul
		mul <<= 7
		if d&0x80 == 0 {
			break
		}
	}
	t := Type(first >> 4)
	if n > limit {
		err := fmt.Errorf("%w: %v of %d bytes, more than the limit of %d", ErrTooLarge, t, n, limit)
		if t == PUBLISH {
			return skipPublish(r, first, n, err)
		}
		return nil, err
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, fmt.Errorf("read %v of %d bytes: %w", t, n, noEOF(err))
	}
	p, err := decode(first, body)
	if err != nil {
		return nil, fmt.Errorf("%w: %v: %w", ErrMalformed, t, err)
	}
	return p, nil
}

// skipPublish reads the topic and packet identifier of a PUBLISH of n
// bytes too large to take, and discards the rest: the caller can then
// acknowledge it and go on, where refusing it would drop the link and have
// the broker send it again at every reconnection. It returns the packet
// without its payload and tooLarge, or a read error.
func skipPublish(r *bufio.Reader, first byte, n int, tooLarge error) (*Packet, error) {
	p := &Packet{Type: PUBLISH, QoS: first >> 1 & 3, Dup: first&8 != 0, Retain: first&1 != 0}
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("read PUBLISH of %d bytes: %w", n, noEOF(err))
	}
	tl := int(hdr[0])<<8 | int(hdr[1])
	left := n - 2 - tl
	if p.QoS > 0 {
		left -= 2
	}
	if left < 0 || p.QoS > 1 {
		return nil, fmt.Errorf("%w: PUBLISH: topic or QoS does not fit the packet", ErrMalformed)
	}
	topic := make([]byte, tl)
	if _, err := io.ReadFull(r, topic); err != nil {
		return nil, fmt.Errorf("read PUBLISH of %d bytes: %w", n, noEOF(err))
	}
	p.Topic = string(topic)
	if p.QoS > 0 {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return nil, fmt.Errorf("read PUBLISH of %d bytes: %w", n, noEOF(err))
		}
		p.ID = uint16(hdr[0])<<8 | uint16(hdr[1])
	}
	if _, err := r.Discard(left); err != nil {
		return nil, fmt.Errorf("read PUBLISH of %d bytes: %w", n, noEOF(err))
	}
	return p, tooLarge
}

// noEOF turns an EOF inside a packet into ErrUnexpectedEOF: the peer cut a
// packet short.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// decode parses the body of a packet whose first byte is first.
func decode(first byte, body []byte) (*Packet, error) {
	p := &Packet{Type: Type(first >> 4)}
	flags := first & 0x0f
	d := decoder{b: body}
	// Section 2.2.2: the flags are fixed for every type but PUBLISH.
	want := byte(0)
	if p.Type == SUBSCRIBE {
		want = 0x02
	}
	if int(p.Type) >= len(typeNames) || typeNames[p.Type] == "" {
		return nil, errors.New("not supported")
	}
	if p.Type != PUBLISH && flags != want {
		return nil, fmt.Errorf("flags 0x%x; want 0x%x", flags, want)
	}
	switch p.Type {
	case CONNECT:
		if proto := d.string(); d.err == nil && proto != "MQTT" {
			return nil, fmt.Errorf("protocol name %q; want MQTT", proto)
		}
		level, cf := d.byte(), d.byte()
		if d.err == nil && level != 4 {
			return nil, fmt.Errorf("protocol level %d; want 4 (3.1.1)", level)
		}
		if cf&0x01 != 0 {
			return nil, errors.New("reserved connect flag set")
		}
		p.CleanSession = cf&0x02 != 0
		p.KeepAlive = d.id()
		p.ClientID = d.string()
		if cf&0x04 != 0 {
			p.WillQoS, p.WillRetain = cf>>3&0x03, cf&0x20 != 0
			if p.WillQoS > 1 {
				return nil, fmt.Errorf("will QoS %d; want 0 or 1", p.WillQoS)
			}
			p.WillTopic = d.string()
			p.WillMessage = d.bytes()
			if d.err == nil && p.WillTopic == "" {
				return nil, errors.New("empty will topic")
			}
		} else if cf&0x38 != 0 {
			return nil, errors.New("will QoS or retain without a will")
		}
		if cf&0x80 != 0 {
			u := d.string()
			p.Username = &u
		}
		if cf&0x40 != 0 {
			if cf&0x80 == 0 {
				return nil, errors.New("password without a user name")
			}
			pw := string(d.bytes())
			p.Password = &pw
		}
	case CONNACK:
		sp := d.byte()
		if sp > 1 {
			return nil, fmt.Errorf("acknowledge flags 0x%x; want 0 or 1", sp)
		}
		p.SessionPresent, p.ReturnCode = sp == 1, d.byte()
	case PUBLISH:
		p.Dup, p.QoS, p.Retain = flags&0x08 != 0, flags>>1&0x03, flags&0x01 != 0
		if p.QoS > 1 {
			// QoS 3 is malformed; QoS 2 is never asked for.
			return nil, fmt.Errorf("QoS %d; want 0 or 1", p.QoS)
		}
		if p.QoS == 0 && p.Dup {
			return nil, errors.New("DUP set on a QoS 0 message (section 3.3.1.1)")
		}
		p.Topic = d.string()
		if d.err == nil && p.Topic == "" {
			return nil, errors.New("empty topic")
		}
		if p.QoS > 0 {
			p.ID = d.nonzeroID()
		}
		if d.err == nil {
			p.Payload = d.b
			d.b = nil
		}
	case PUBACK:
		p.ID = d.nonzeroID()
	case SUBSCRIBE:
		p.ID = d.nonzeroID()
		for d.err == nil && len(d.b) > 0 {
			s := Subscription{Filter: d.string(), QoS: d.byte()}
			if d.err == nil && s.QoS > 1 {
				return nil, fmt.Errorf("filter %q: QoS %d; want 0 or 1", s.Filter, s.QoS)
			}
			p.Subscriptions = append(p.Subscriptions, s)
		}
		if d.err == nil && len(p.Subscriptions) == 0 {
			return nil, errors.New("no topic filter")
		}
	case SUBACK:
		p.ID = d.nonzeroID()
		if d.err == nil {
			if len(d.b) == 0 {
				return nil, errors.New("no return code")
			}
			for _, c := range d.b {
				if c > 2 && c != SubackFailure {
					return nil, fmt.Errorf("return code 0x%02x", c)
				}
			}
			p.ReturnCodes, d.b = d.b, nil
		}
	case PINGREQ, PINGRESP, DISCONNECT:
	default:
		return nil, errors.New("not supported")
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) > 0 {
		return nil, fmt.Errorf("%d bytes left over", len(d.b))
	}
	return p, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.err = fmt.Errorf("cut short: %d bytes wanted, %d left", n, len(d.b))
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if b := d.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (d *decoder) id() uint16 {
	if b := d.take(2); b != nil {
		return uint16(b[0])<<8 | uint16(b[1])
	}
	return 0
}

// nonzeroID reads a packet identifier, which is never 0 (section 2.3.1).
func (d *decoder) nonzeroID() uint16 {
	id := d.id()
	if d.err == nil && id == 0 {
		d.err = errors.New("packet identifier 0")
	}
	return id
}

func (d *decoder) bytes() []byte { return d.take(int(d.id())) }

func (d *decoder) string() string {
	s := string(d.bytes())
	if d.err == nil {
		d.err = checkString(s)
	}
	return s
}
