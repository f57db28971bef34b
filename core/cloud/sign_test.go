package cloud

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// Known sign-ins with where each expected value comes from.
var signVectors = []struct {
	name   string
	id     Identity
	opts   SignOptions
	client string
	user   string
	pass   string
}{
	{
		// The worked example of the platform's documentation ("MQTT-TCP
		// connection": clientId 12345, deviceName device, productKey pk,
		// timestamp 789, hmacsha1, deviceSecret secret).
		name:   "doc worked example",
		id:     Identity{"pk", "device", "secret"},
		opts:   SignOptions{ClientID: "12345", Method: MethodHMACSHA1, Timestamp: "789"},
		client: "12345|securemode=3,signmethod=hmacsha1,timestamp=789|",
		user:   "device&pk",
		pass:   "FAFD82A3D602B37FB0FA8B7892F24A477F851A14",
	},
	{
		// Expected values from the unit tests of a public C# implementation
		// (Artizan.IoT, AliIoTMqttPasswordGeneratorTests, "computed by the
		// original JS code"), hmacsha1 with TLS.
		name:   "third-party hmacsha1",
		id:     Identity{"a1BcDeFgHiJ", "testDevice123", "testSecret456"},
		opts:   SignOptions{ClientID: "client123", Method: MethodHMACSHA1, Timestamp: "1764636041723", TLS: true},
		client: "client123|securemode=2,signmethod=hmacsha1,timestamp=1764636041723|",
		user:   "testDevice123&a1BcDeFgHiJ",
		pass:   "9E6CE2A4E0740598CBB5C5BE276A7167AF8B2C53",
	},
	{
		// Same source, hmacmd5.
		name:   "third-party hmacmd5",
		id:     Identity{"a1BcDeFgHiJ", "testDevice123", "testSecret456"},
		opts:   SignOptions{ClientID: "client123", Method: MethodHMACMD5, Timestamp: "1764636041723", TLS: true},
		client: "client123|securemode=2,signmethod=hmacmd5,timestamp=1764636041723|",
		user:   "testDevice123&a1BcDeFgHiJ",
		pass:   "76D326582AC69BCCE400F19E85FED1AB",
	},
	{
		// The C SDK v3 layout (iotkit-embedded dev_sign_mqtt.c: client id
		// "{pk}.{dn}", fixed timestamp 2524608000000, hmacsha256, then gw and
		// ext). Password computed independently with
		// `printf 'clientIda1B2c3D4e5F.dev-01deviceNamedev-01productKeya1B2c3D4e5Ftimestamp2524608000000' | openssl dgst -sha256 -hmac Zx9Yw8Vu7Ts6Rq5Po4`.
		name:   "sdk form hmacsha256",
		id:     Identity{"a1B2c3D4e5F", "dev-01", "Zx9Yw8Vu7Ts6Rq5Po4"},
		opts:   SignOptions{Form: FormSDK},
		client: "a1B2c3D4e5F.dev-01|timestamp=2524608000000,securemode=3,signmethod=hmacsha256,gw=0,ext=0|",
		user:   "dev-01&a1B2c3D4e5F",
		pass:   "3B35B3634DCF73FEC672588750928EC475434C2E94BEDB45678BB64A22D6ABFD",
	},
}

func TestSignIn_KnownVectors(t *testing.T) {
	for _, v := range signVectors {
		t.Run(v.name, func(t *testing.T) {
			c, err := SignIn(v.id, v.opts)
			if err != nil {
				t.Fatal(err)
			}
			if c.ClientID != v.client || c.Username != v.user || c.Password != v.pass {
				t.Errorf("SignIn = %+v\nwant client %q user %q pass %q", c, v.client, v.user, v.pass)
			}
		})
	}
}

func TestVerifyCredentials_AcceptsKnownVectors(t *testing.T) {
	for _, v := range signVectors {
		t.Run(v.name, func(t *testing.T) {
			lookup := func(pk, dn string) (string, bool) {
				if pk == v.id.ProductKey && dn == v.id.DeviceName {
					return v.id.DeviceSecret, true
				}
				return "", false
			}
			id, err := VerifyCredentials(v.client, v.user, []byte(v.pass), lookup)
			if err != nil {
				t.Fatal(err)
			}
			if id.Identity != v.id {
				t.Errorf("identity = %+v, want %+v", id, v.id)
			}
			// Lower-case hex, as some clients send, is the same signature.
			if _, err := VerifyCredentials(v.client, v.user, []byte(strings.ToLower(v.pass)), lookup); err != nil {
				t.Errorf("lower-case password refused: %v", err)
			}
		})
	}
}

func TestVerifyCredentials_SDKExtrasAndOrder(t *testing.T) {
	// A real SDK build appends "a=sdk-c-…" or "v=…" and "_ss=1"; unknown
	// parameters are ignored, and the order of parameters does not matter.
	id := Identity{"a1B2c3D4e5F", "dev-01", "Zx9Yw8Vu7Ts6Rq5Po4"}
	c, err := SignIn(id, SignOptions{Form: FormSDK})
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(pk, dn string) (string, bool) { return id.DeviceSecret, true }
	for _, cid := range []string{
		"a1B2c3D4e5F.dev-01|timestamp=2524608000000,securemode=3,signmethod=hmacsha256,gw=0,ext=0,a=sdk-c-3.0.1|",
		"a1B2c3D4e5F.dev-01|signmethod=hmacsha256,securemode=2,timestamp=2524608000000,v=20,_ss=1|",
		"a1B2c3D4e5F.dev-01|signmethod=HMACSHA256,securemode=3,timestamp=2524608000000|",
	} {
		if _, err := VerifyCredentials(cid, c.Username, []byte(c.Password), lookup); err != nil {
			t.Errorf("%s: %v", cid, err)
		}
	}
}

func TestVerifyCredentials_Refusals(t *testing.T) {
	id := Identity{"pk", "device", "secret"}
	good, err := SignIn(id, SignOptions{ClientID: "12345", Method: MethodHMACSHA1, Timestamp: "789"})
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(pk, dn string) (string, bool) {
		if pk == "pk" && dn == "device" {
			return "secret", true
		}
		if pk == "pk" && dn == "other" {
			return "other-secret", true
		}
		return "", false
	}
	cases := []struct {
		name             string
		client, user, pw string
		want             error
	}{
		{"wrong password", good.ClientID, good.Username, strings.Replace(good.Password, "F", "E", 1), ErrBadSignature},
		{"password not hex", good.ClientID, good.Username, "not-hex", ErrBadSignature},
		{"empty password", good.ClientID, good.Username, "", ErrBadSignature},
		{"unknown device", good.ClientID, "ghost&pk", good.Password, ErrUnknownDevice},
		{"another device's name", good.ClientID, "other&pk", good.Password, ErrBadSignature},
		{"timestamp changed", "12345|securemode=3,signmethod=hmacsha1,timestamp=790|", good.Username, good.Password, ErrBadSignature},
		{"method changed", "12345|securemode=3,signmethod=hmacmd5,timestamp=789|", good.Username, good.Password, ErrBadSignature},
		{"client id changed", "12346|securemode=3,signmethod=hmacsha1,timestamp=789|", good.Username, good.Password, ErrBadSignature},
		{"timestamp not digits", "12345|securemode=3,signmethod=hmacsha1,timestamp=2024-01-01|", good.Username, good.Password, ErrMalformedCredentials},
		{"timestamp too long", "12345|securemode=3,signmethod=hmacsha1,timestamp=123456789012345678901|", good.Username, good.Password, ErrMalformedCredentials},
		{"unknown method", "12345|securemode=3,signmethod=hmacsha512,timestamp=789|", good.Username, good.Password, ErrMalformedCredentials},
		{"no method", "12345|securemode=3,timestamp=789|", good.Username, good.Password, ErrMalformedCredentials},
		{"unknown securemode", "12345|securemode=-1,signmethod=hmacsha1,timestamp=789|", good.Username, good.Password, ErrMalformedCredentials},
		{"no parameters", "12345", good.Username, good.Password, ErrMalformedCredentials},
		{"unterminated", "12345|securemode=3,signmethod=hmacsha1,timestamp=789", good.Username, good.Password, ErrMalformedCredentials},
		{"two bars inside", "12345|securemode=3|signmethod=hmacsha1,timestamp=789|", good.Username, good.Password, ErrMalformedCredentials},
		{"duplicate parameter", "12345|securemode=3,signmethod=hmacsha1,signmethod=hmacmd5,timestamp=789|", good.Username, good.Password, ErrMalformedCredentials},
		{"empty client id", "|securemode=3,signmethod=hmacsha1,timestamp=789|", good.Username, good.Password, ErrMalformedCredentials},
		{"user without &", good.ClientID, "devicepk", good.Password, ErrMalformedCredentials},
		{"user with two &", good.ClientID, "device&pk&x", good.Password, ErrMalformedCredentials},
		{"wildcard in name", good.ClientID, "dev+ice&pk", good.Password, ErrMalformedCredentials},
		{"slash in key", good.ClientID, "device&p/k", good.Password, ErrMalformedCredentials},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := VerifyCredentials(c.client, c.user, []byte(c.pw), lookup)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
}

func TestSignIn_Options(t *testing.T) {
	id := Identity{"pk", "dev", "s"}
	cases := []struct {
		name    string
		opts    SignOptions
		id      Identity
		wantCID string
		wantErr string
	}{
		{name: "defaults", id: id, wantCID: "pk.dev|securemode=3,signmethod=hmacsha256|"},
		{name: "tls", id: id, opts: SignOptions{TLS: true, Timestamp: "1"}, wantCID: "pk.dev|securemode=2,signmethod=hmacsha256,timestamp=1|"},
		{name: "sdk timestamp given", id: id, opts: SignOptions{Form: FormSDK, Timestamp: "42", TLS: true}, wantCID: "pk.dev|timestamp=42,securemode=2,signmethod=hmacsha256,gw=0,ext=0|"},
		{name: "bad method", id: id, opts: SignOptions{Method: "sha256"}, wantErr: `method "sha256"`},
		{name: "bad timestamp", id: id, opts: SignOptions{Timestamp: "now"}, wantErr: `timestamp "now"`},
		{name: "bar in client id", id: id, opts: SignOptions{ClientID: "a|b"}, wantErr: `client id "a|b"`},
		{name: "sdk with other client id", id: id, opts: SignOptions{Form: FormSDK, ClientID: "x"}, wantErr: "SDK form"},
		{name: "no secret", id: Identity{"pk", "dev", ""}, wantErr: "device secret is empty"},
		{name: "no device name", id: Identity{"pk", "", "s"}, wantErr: "must both be set"},
		{name: "unknown form", id: id, opts: SignOptions{Form: 7}, wantErr: "unknown form"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := SignIn(c.id, c.opts)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.ClientID != c.wantCID {
				t.Errorf("client id = %q, want %q", got.ClientID, c.wantCID)
			}
			// Whatever the options, the broker's side agrees.
			if _, err := VerifyCredentials(got.ClientID, got.Username, []byte(got.Password), func(string, string) (string, bool) { return c.id.DeviceSecret, true }); err != nil {
				t.Errorf("VerifyCredentials: %v", err)
			}
		})
	}
}

func FuzzVerifyCredentials(f *testing.F) {
	for _, v := range signVectors {
		f.Add(v.client, v.user, v.pass)
	}
	f.Add("|||", "&", "")
	f.Add("x|a=b=c,,|", "a&b", "zz")
	f.Fuzz(func(t *testing.T, client, user, pass string) {
		id, err := VerifyCredentials(client, user, []byte(pass), func(pk, dn string) (string, bool) { return "secret", true })
		if err == nil && (id.ProductKey == "" || id.DeviceName == "") {
			t.Fatalf("accepted %q %q with an empty identity", client, user)
		}
	})
}

// TestVerifyCredentials_ReportsWhatWasSigned: the broker judges the
// transport and the timestamp a device signed, so both must come back as
// signed, in either form.
func TestVerifyCredentials_ReportsWhatWasSigned(t *testing.T) {
	id := Identity{ProductKey: "pk1", DeviceName: "dev", DeviceSecret: "s"}
	lookup := func(string, string) (string, bool) { return "s", true }
	cases := []struct {
		name    string
		o       SignOptions
		tls     bool
		ts      string
		when    time.Time
		hasTime bool
	}{
		{"doc, TLS, timestamp", SignOptions{TLS: true, Timestamp: "1700000000123"}, true, "1700000000123", time.UnixMilli(1700000000123), true},
		{"doc, TCP, no timestamp", SignOptions{}, false, "", time.Time{}, false},
		{"sdk, fixed timestamp", SignOptions{Form: FormSDK}, false, SDKTimestamp, time.Time{}, false},
		{"sdk, TLS, own timestamp", SignOptions{Form: FormSDK, TLS: true, Timestamp: "1700000000000"}, true, "1700000000000", time.UnixMilli(1700000000000), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cr, err := SignIn(id, c.o)
			if err != nil {
				t.Fatal(err)
			}
			s, err := VerifyCredentials(cr.ClientID, cr.Username, []byte(cr.Password), lookup)
			if err != nil {
				t.Fatal(err)
			}
			if s.TLS != c.tls || s.Timestamp != c.ts {
				t.Errorf("TLS %v, timestamp %q; want %v, %q", s.TLS, s.Timestamp, c.tls, c.ts)
			}
			when, ok := s.Time()
			if ok != c.hasTime || !when.Equal(c.when) {
				t.Errorf("Time() = %v, %v; want %v, %v", when, ok, c.when, c.hasTime)
			}
		})
	}
}
