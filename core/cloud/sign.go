package cloud

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"time"
)

// Identity is a device's triple as the platform issues it.
type Identity struct {
	ProductKey   string
	DeviceName   string
	DeviceSecret string
}

// Form chooses how SignIn lays out the MQTT client id.
type Form int

const (
	// FormDoc is the layout of the platform's documentation:
	// "{clientId}|securemode=3,signmethod=hmacsha1,timestamp={ts}|".
	FormDoc Form = iota
	// FormSDK is the layout of the C SDK v3 (iotkit-embedded
	// src/dev_sign/dev_sign_mqtt.c): the client id is "{pk}.{dn}" and the
	// parameters come as "timestamp=…,securemode=…,signmethod=…,gw=0,ext=0".
	FormSDK
)

// Sign methods of the platform's sign-in.
const (
	MethodHMACSHA256 = "hmacsha256"
	MethodHMACSHA1   = "hmacsha1"
	MethodHMACMD5    = "hmacmd5"
)

// SDKTimestamp is the fixed timestamp the C SDK v3 signs with
// (dev_sign_mqtt.c, TIMESTAMP_VALUE): the platform does not check freshness.
const SDKTimestamp = "2524608000000"

// SignOptions chooses the client id, method and layout of a sign-in.
type SignOptions struct {
	// ClientID is the device's own client id (FormDoc only; often its serial
	// number or MAC). Empty means "{pk}.{dn}". It may not hold '|' or ','.
	ClientID string
	// Method is MethodHMACSHA256 (the default when empty), MethodHMACSHA1 or
	// MethodHMACMD5.
	Method string
	// Timestamp is signed and sent as given, in milliseconds since 1970 as
	// the platform writes it. Empty leaves it out with FormDoc (the platform
	// documents it as optional) and means SDKTimestamp with FormSDK.
	Timestamp string
	// TLS selects securemode 2 (TLS) instead of 3 (plain TCP).
	TLS bool
	// Form is the client id layout.
	Form Form
}

// Credentials are what a device puts in its MQTT CONNECT packet.
type Credentials struct {
	ClientID string
	Username string
	Password string
}

// Sign-in errors. VerifyCredentials wraps one of them, so a broker can log
// the reason while it answers every failure the same way.
var (
	ErrMalformedCredentials = errors.New("malformed sign-in")
	ErrUnknownDevice        = errors.New("unknown device")
	ErrBadSignature         = errors.New("bad signature")
)

// maxTimestampLen bounds the timestamp: milliseconds since 1970 need 13
// digits until the year 2286.
const maxTimestampLen = 20

// SignIn computes the MQTT credentials of a device with the platform's
// scheme: user name "{dn}&{pk}", password the upper-case hex
// HMAC(deviceSecret, "clientId{cid}deviceName{dn}productKey{pk}timestamp{ts}")
// (the parameters sorted by name and concatenated without separators), and
// the client id "{cid}|{parameters}|".
func SignIn(id Identity, o SignOptions) (Credentials, error) {
	if err := checkIdentity(id.ProductKey, id.DeviceName); err != nil {
		return Credentials{}, fmt.Errorf("sign in: %w", err)
	}
	if id.DeviceSecret == "" {
		return Credentials{}, fmt.Errorf("sign in %s/%s: the device secret is empty; set it to the secret issued with the device", id.ProductKey, id.DeviceName)
	}
	method := o.Method
	if method == "" {
		method = MethodHMACSHA256
	}
	if newHash(method) == nil {
		return Credentials{}, fmt.Errorf("sign in: method %q: want %s, %s or %s", o.Method, MethodHMACSHA256, MethodHMACSHA1, MethodHMACMD5)
	}
	mode := "3"
	if o.TLS {
		mode = "2"
	}
	cid, ts := o.ClientID, o.Timestamp
	var params string
	switch o.Form {
	case FormDoc:
		if cid == "" {
			cid = id.ProductKey + "." + id.DeviceName
		}
		params = "securemode=" + mode + ",signmethod=" + method
		if ts != "" {
			params += ",timestamp=" + ts
		}
	case FormSDK:
		if cid != "" && cid != id.ProductKey+"."+id.DeviceName {
			return Credentials{}, fmt.Errorf("sign in: client id %q: the SDK form always uses \"{pk}.{dn}\"; leave ClientID empty or use FormDoc", cid)
		}
		cid = id.ProductKey + "." + id.DeviceName
		if ts == "" {
			ts = SDKTimestamp
		}
		params = "timestamp=" + ts + ",securemode=" + mode + ",signmethod=" + method + ",gw=0,ext=0"
	default:
		return Credentials{}, fmt.Errorf("sign in: unknown form %d", o.Form)
	}
	if cid == "" || strings.ContainsAny(cid, "|,") {
		return Credentials{}, fmt.Errorf("sign in: client id %q: want a non-empty id without '|' or ','", cid)
	}
	if !validTimestamp(ts) {
		return Credentials{}, fmt.Errorf("sign in: timestamp %q: want milliseconds since 1970 in decimal digits", ts)
	}
	sum := signature(method, id.DeviceSecret, cid, id.DeviceName, id.ProductKey, ts)
	return Credentials{
		ClientID: cid + "|" + params + "|",
		Username: id.DeviceName + "&" + id.ProductKey,
		Password: strings.ToUpper(hex.EncodeToString(sum)),
	}, nil
}

// VerifyCredentials is the broker's side of SignIn: it parses the client id
// in either form (parameters in any order; parameters it does not know, such
// as the SDK's gw, ext, a or v, are ignored), looks the device up, recomputes
// the signature and compares it in constant time. The password's hex may be
// of either case. It refuses unknown devices, bad signatures, unknown
// methods and secure modes, and timestamps that are not decimal digits.
//
// What the signature proves is the broker's to judge: the transport the
// device claims (SignedIn.TLS) against the one it came over, and the signed
// timestamp against its clock (the C SDK signs a fixed one, the documented
// form may leave it out).
func VerifyCredentials(clientID, username string, password []byte, lookup func(pk, dn string) (secret string, ok bool)) (SignedIn, error) {
	bad := func(format string, args ...any) (SignedIn, error) {
		return SignedIn{}, fmt.Errorf("%w: "+format, append([]any{ErrMalformedCredentials}, args...)...)
	}
	dn, pk, found := strings.Cut(username, "&")
	if !found || strings.Contains(pk, "&") {
		return bad("user name %q: want \"{deviceName}&{productKey}\"", clip(username))
	}
	if err := checkIdentity(pk, dn); err != nil {
		return bad("user name %q: %v", clip(username), err)
	}
	cid, rest, found := strings.Cut(clientID, "|")
	if !found || cid == "" || !strings.HasSuffix(rest, "|") || strings.Count(rest, "|") != 1 {
		return bad("client id %q: want \"{clientId}|securemode=…,signmethod=…,timestamp=…|\"", clip(clientID))
	}
	params := map[string]string{}
	for kv := range strings.SplitSeq(strings.TrimSuffix(rest, "|"), ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return bad("client id %q: parameter %q is not key=value", clip(clientID), clip(kv))
		}
		if _, dup := params[k]; dup {
			return bad("client id %q: parameter %q given twice", clip(clientID), clip(k))
		}
		params[k] = v
	}
	method := strings.ToLower(params["signmethod"])
	if newHash(method) == nil {
		return bad("client id: signmethod %q: want %s, %s or %s", clip(params["signmethod"]), MethodHMACSHA256, MethodHMACSHA1, MethodHMACMD5)
	}
	switch params["securemode"] {
	case "2", "3":
	default:
		return bad("client id: securemode %q: want 2 (TLS) or 3 (TCP)", clip(params["securemode"]))
	}
	ts := params["timestamp"]
	if !validTimestamp(ts) {
		return bad("client id: timestamp %q: want milliseconds since 1970 in decimal digits", clip(ts))
	}
	got, err := hex.DecodeString(string(password))
	if err != nil {
		return SignedIn{}, fmt.Errorf("%w: device %s/%s: the password is not hex", ErrBadSignature, pk, dn)
	}
	secret, ok := lookup(pk, dn)
	if !ok {
		return SignedIn{}, fmt.Errorf("%w: %s/%s", ErrUnknownDevice, pk, dn)
	}
	want := signature(method, secret, cid, dn, pk, ts)
	if !hmac.Equal(got, want) {
		return SignedIn{}, fmt.Errorf("%w: device %s/%s", ErrBadSignature, pk, dn)
	}
	return SignedIn{
		Identity:  Identity{ProductKey: pk, DeviceName: dn, DeviceSecret: secret},
		TLS:       params["securemode"] == "2",
		Timestamp: ts,
	}, nil
}

// SignedIn is a verified sign-in: the device, and what it signed besides.
type SignedIn struct {
	Identity
	// TLS is the transport the device claims: securemode 2 (TLS) rather
	// than 3 (plain TCP).
	TLS bool
	// Timestamp is the signed timestamp as sent, empty when there was none.
	Timestamp string
}

// Time returns the signed timestamp as a time, and false when there is none
// or it is the C SDK's fixed one (SDKTimestamp), which says nothing of when
// the device signed.
func (s SignedIn) Time() (time.Time, bool) {
	if s.Timestamp == "" || s.Timestamp == SDKTimestamp {
		return time.Time{}, false
	}
	ms, err := strconv.ParseInt(s.Timestamp, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(ms), true
}

// signature is the HMAC of the sorted, concatenated sign-in parameters.
func signature(method, secret, cid, dn, pk, ts string) []byte {
	content := "clientId" + cid + "deviceName" + dn + "productKey" + pk
	if ts != "" {
		content += "timestamp" + ts
	}
	mac := hmac.New(newHash(method), []byte(secret))
	mac.Write([]byte(content))
	return mac.Sum(nil)
}

func newHash(method string) func() hash.Hash {
	switch method {
	case MethodHMACSHA256:
		return sha256.New
	case MethodHMACSHA1:
		return sha1.New
	case MethodHMACMD5:
		return md5.New
	}
	return nil
}

func validTimestamp(ts string) bool {
	if len(ts) > maxTimestampLen {
		return false
	}
	for i := 0; i < len(ts); i++ {
		if ts[i] < '0' || ts[i] > '9' {
			return false
		}
	}
	return true
}

// checkIdentity refuses a product key or device name that would make a topic
// ambiguous or a wildcard: the platform allows letters, digits and "-_@.:"
// in device names and letters and digits in product keys.
func checkIdentity(pk, dn string) error {
	if pk == "" || dn == "" {
		return fmt.Errorf("product key %q and device name %q must both be set", pk, dn)
	}
	if len(pk) > 64 || len(dn) > 64 {
		return fmt.Errorf("product key %q or device name %q is longer than 64 bytes", clip(pk), clip(dn))
	}
	for _, s := range []string{pk, dn} {
		for i := 0; i < len(s); i++ {
			c := s[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_@.:", c) >= 0) {
				return fmt.Errorf("%q has %q: use letters, digits and -_@.: only", clip(s), c)
			}
		}
	}
	return nil
}

// CheckIdentity reports whether pk and dn are a product key and device name
// otaport can put in a topic (letters, digits and -_@.: only, at most 64
// bytes each). The fleet registry calls it when a device is added.
func CheckIdentity(pk, dn string) error {
	return checkIdentity(pk, dn)
}
