package cloud

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxOrderSize is the largest upgrade order, in bytes, that ParseOrder
// accepts. A platform order is a few hundred bytes, a little over a thousand
// when its URL carries a signed storage token; 16 KiB leaves room for extData
// while keeping a device from parsing whatever a broker hands it.
const MaxOrderSize = 16 << 10

// The values a platform order must carry to be acted on (AliOS Things
// ota_transport_mqtt.c accepts an order only with message "success"; the
// platform sends code "1000" with it).
const (
	OrderCodeSuccess    = "1000"
	OrderMessageSuccess = "success"
)

// Digest methods as Order.Digest names them, lower case as Go's crypto
// packages are.
const (
	DigestMD5    = "md5"
	DigestSHA256 = "sha256"
)

// Limits on the free strings of an order, so that a device with fixed
// buffers (AliOS keeps the version in 64 bytes) can hold what we accept.
const (
	maxVersionLen  = 64
	maxURLLen      = 4096
	maxModuleLen   = 64
	maxDigestSign  = 1024 // decoded bytes; an RSA-4096 signature is 512
	maxShortField  = 128
	maxImageSize   = 1 << 32
	maxProgressLen = 4 << 10
)

// DefaultModule is the module of a device that names none: the Link SDK's
// name for it (aiot_ota_report_version_ext with module "default"). A
// message without a module field is about the default module, and otaport
// leaves the field out for it, as a device of a single module and the
// platform do; "default" spelt out is read the same.
const DefaultModule = "default"

// ModuleName returns the module a message's field names: DefaultModule for
// an empty field.
func ModuleName(field string) string {
	if field == "" {
		return DefaultModule
	}
	return field
}

// ModuleField returns what goes in a message's module field for module
// name: nothing for the default module, so that devices that predate
// modules read the message as they always did.
func ModuleField(name string) string {
	if name == DefaultModule {
		return ""
	}
	return name
}

// CheckModule checks a module name as devices and the fleet use it: 1 to 64
// letters, digits, '-', '_' or '.', as the platform's console accepts.
func CheckModule(name string) error {
	if name == "" || len(name) > maxModuleLen {
		return fmt.Errorf("module %q: want 1 to %d characters", clip(name), maxModuleLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("module %q: use letters, digits, '-', '_' and '.' only", clip(name))
		}
	}
	return nil
}

// ErrInvalidOrder is wrapped by every error ParseOrder and Order.Validate
// return for an order that is not acceptable; errors.Is tells it apart from
// transport errors.
var ErrInvalidOrder = errors.New("invalid upgrade order")

// ErrOrderTooLarge is wrapped (together with ErrInvalidOrder) when an order
// is larger than MaxOrderSize.
var ErrOrderTooLarge = errors.New("upgrade order too large")

// ErrInvalidMessage is wrapped by the errors of ParseInform and
// ParseProgress.
var ErrInvalidMessage = errors.New("invalid OTA message")

// Inform reports the version a device runs, on the inform topic:
// {"id":N,"params":{"version":"1.0.1"}} (iotkit-embedded ota_lib.c,
// otalib_GenInfoMsg), with "module" added by newer SDKs for a device made of
// several upgradable modules.
type Inform struct {
	ID     int64        `json:"id"`
	Params InformParams `json:"params"`
}

// InformParams is the params object of an Inform.
type InformParams struct {
	Version string `json:"version"`
	Module  string `json:"module,omitempty"`
	// Nonce is otaport's addition (an otaport device with signed orders
	// sends it; the platform ignores it): a fresh random value the next
	// order must echo in data.otaport.nonce, so that an order made before
	// this report is refused (see Extension).
	Nonce string `json:"nonce,omitempty"`
	// PossiblyFrozen is otaport's addition too: the device has heard no
	// release statement (Statement) for longer than it allows, so orders
	// may be withheld from it.
	PossiblyFrozen bool `json:"possiblyFrozen,omitempty"`
	// UnsignedOrders is otaport's addition too: the device still takes
	// unsigned orders (an agent in its migration mode that has not yet
	// learned the order key), so the operator sees who is left to move.
	UnsignedOrders bool `json:"unsignedOrders,omitempty"`
	// KeySet is otaport's addition too: the version of the module's key
	// set (core/keyset), 0 while it has none, so the operator sees a key
	// rotation reach the fleet.
	KeySet uint64 `json:"keySet,omitempty"`
	// ImageHash is otaport's addition too: the lower-case hex of the
	// running image's SHA-256 hash TLV, the value a delta image names as
	// its base (image.TLVDeltaBase), so the fleet sends a device the delta
	// made from what it runs and the full image to any other. Empty when
	// the device cannot tell it.
	ImageHash string `json:"imageHash,omitempty"`
}

// Step is the progress step of a Progress message. The platform wants it as a
// JSON string: "0".."100" is a percentage, a negative value a failure.
type Step string

// Failure steps, as the platform's console interprets them (AliOS Things
// ota_transport_mqtt.c, ota_transport_status).
const (
	StepUpgradeFailed  Step = "-1" // any other failure, including an order the device refuses
	StepDownloadFailed Step = "-2"
	StepVerifyFailed   Step = "-3"
	StepFlashFailed    Step = "-4" // the platform calls it "burn" failure
)

// StepPercent returns the step for a percentage, clamped to 0..100.
func StepPercent(percent int) Step {
	percent = max(0, min(100, percent))
	return Step(strconv.Itoa(percent))
}

// Percent returns the percentage of a progress step; ok is false for a
// failure step or a malformed one.
func (s Step) Percent() (percent int, ok bool) {
	n, err := strconv.Atoi(string(s))
	if err != nil || n < 0 || n > 100 {
		return 0, false
	}
	return n, true
}

// Label is the step for people: "42%" for progress, what failed for a
// failure step ("download-failed"), the raw value otherwise. It has no
// spaces, so a table of steps splits into columns.
func (s Step) Label() string {
	if p, ok := s.Percent(); ok {
		return strconv.Itoa(p) + "%"
	}
	switch s {
	case StepUpgradeFailed:
		return "upgrade-failed"
	case StepDownloadFailed:
		return "download-failed"
	case StepVerifyFailed:
		return "verify-failed"
	case StepFlashFailed:
		return "flash-failed"
	}
	return "step(" + string(s) + ")"
}

// Failed reports whether s is one of the failure steps.
func (s Step) Failed() bool {
	switch s {
	case StepUpgradeFailed, StepDownloadFailed, StepVerifyFailed, StepFlashFailed:
		return true
	}
	return false
}

// valid reports whether s is a step the platform understands.
func (s Step) valid() bool {
	_, ok := s.Percent()
	if ok {
		// "007" or "+5" would parse but are not what the C SDK prints.
		return string(s) == strconv.Itoa(mustAtoi(string(s)))
	}
	return s.Failed()
}

func mustAtoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// Progress reports how an upgrade goes, on the progress topic:
// {"id":N,"params":{"step":"45","desc":"..."}} (iotkit-embedded ota_lib.c,
// otalib_GenReportMsg), "module" added by newer SDKs. otaport's client puts
// the id of the order the progress belongs to in ID, so the cloud can tell
// the reports of two successive orders apart; the platform's SDKs send a
// constant there.
type Progress struct {
	ID     int64          `json:"id"`
	Params ProgressParams `json:"params"`
}

// ProgressParams is the params object of a Progress.
type ProgressParams struct {
	Step   Step   `json:"step"`
	Desc   string `json:"desc,omitempty"`
	Module string `json:"module,omitempty"`
}

// Module returns the module the report is about (DefaultModule when the
// field is absent).
func (p Progress) Module() string { return ModuleName(p.Params.Module) }

// Module returns the module the inform is about (DefaultModule when the
// field is absent).
func (in Inform) Module() string { return ModuleName(in.Params.Module) }

// Module returns the module the order is for (DefaultModule when the field
// is absent).
func (o *Order) Module() string { return ModuleName(o.Data.Module) }

// WithModule returns p about module name (ModuleField: the default module
// leaves the field out).
func (p Progress) WithModule(name string) Progress {
	p.Params.Module = ModuleField(name)
	return p
}

// NewProgress returns the report of percent done (clamped to 0..100) for the
// order id.
func NewProgress(id int64, percent int, desc string) Progress {
	return Progress{ID: id, Params: ProgressParams{Step: StepPercent(percent), Desc: desc}}
}

// NewFailure returns the report of a failed upgrade of the order id: step is
// one of the failure steps, desc the reason the operator reads.
func NewFailure(id int64, step Step, desc string) Progress {
	return Progress{ID: id, Params: ProgressParams{Step: step, Desc: desc}}
}

// Order is an upgrade order as the platform sends it on the upgrade topic
// (AliOS Things issue #932):
//
//	{"code":"1000","data":{"size":584064,"sign":"…","version":"app-1.1.0",
//	 "url":"https://…","signMethod":"Md5","md5":"…"},"id":1553688236684,"message":"success"}
//
// Fields are in the platform's order so that json.Marshal writes the same
// shape.
type Order struct {
	Code    string    `json:"code"`
	Data    OrderData `json:"data"`
	ID      int64     `json:"id"`
	Message string    `json:"message"`
}

// OrderData is the data object of an Order.
type OrderData struct {
	Size    int64  `json:"size"`           // bytes of the file at URL
	Sign    string `json:"sign,omitempty"` // hex digest of the file by SignMethod
	Version string `json:"version"`        // the version the file installs, a free string
	URL     string `json:"url"`            // http or https
	// SignMethod names the digest in Sign: "Md5" or "SHA256" (any case). When
	// absent the order is of the first protocol and MD5 holds the digest.
	SignMethod string `json:"signMethod,omitempty"`
	MD5        string `json:"md5,omitempty"`        // hex MD5 of the file (older devices read only this)
	IsDiff     int    `json:"isDiff,omitempty"`     // 1 for a delta image
	DigestSign string `json:"digestsign,omitempty"` // base64 signature over the digest (AliOS ota_sign.c)
	Module     string `json:"module,omitempty"`     // the module to upgrade; empty for the default one
	// ExtData is the operator's own data, passed through untouched.
	ExtData json.RawMessage `json:"extData,omitempty"`
	// Otaport holds otaport's additions; a platform device ignores the key.
	Otaport *Extension `json:"otaport,omitempty"`
}

// Extension is what otaport adds to an order, under data.otaport. A device
// of the platform never reads it; an otaport device uses it to refuse an
// order before it downloads anything.
type Extension struct {
	// Scheme is the signature scheme of the image's signature TLV
	// ("ecdsa-p256", "ed25519", "rsa-2048", "rsa-3072"): a device refuses an
	// order signed in a scheme it has no key for.
	Scheme string `json:"scheme,omitempty"`
	// KeyID is the hex SHA-256 of the signing public key, as in MCUboot's
	// KEYHASH TLV, so a device holding several keys knows which one applies.
	KeyID string `json:"keyId,omitempty"`
	// SecurityCounter is the image's anti-rollback counter: a device refuses
	// an order below its own counter without downloading the image.
	SecurityCounter uint32 `json:"securityCounter,omitempty"`
	// Campaign is the campaign that sent the order, for the operator's logs.
	Campaign string `json:"campaign,omitempty"`
	// Board is the board the image is built for: a device refuses an image
	// for another board (the "mix-and-match" threat).
	Board string `json:"board,omitempty"`

	// The fields below make an order authentic and fresh (SignOrder): the
	// one device it is for, when it stops being valid, otaserve's counter
	// of the device's orders, the nonce of the device's latest version
	// report, and the signature of otaserve's order key over them and the
	// fields of data the device acts on (OrderSigningBytes).
	ProductKey string `json:"productKey,omitempty"`
	DeviceName string `json:"deviceName,omitempty"`
	// Expires is when the order stops being valid, in Unix seconds.
	Expires int64 `json:"expires,omitempty"`
	// Counter increases with every order otaserve signs for the device.
	Counter uint64 `json:"counter,omitempty"`
	// Nonce is the nonce of the version report the order answers.
	Nonce string `json:"nonce,omitempty"`
	// Signer is OrderKeyID of the key that signed the order.
	Signer string `json:"signer,omitempty"`
	// Signature is the base64 Ed25519 signature over OrderSigningBytes.
	Signature string `json:"signature,omitempty"`

	// OrderKey and Endorsement are for devices provisioned before signed
	// orders: the order key's public half (base64 of its 32 bytes) and the
	// image signing key's signature over it (Endorse). Outside the signed
	// bytes: they vouch for themselves (EndorsedKey).
	OrderKey    string `json:"orderKey,omitempty"`
	Endorsement string `json:"endorsement,omitempty"`
}

// orderWire is Order as it may arrive: the platform's id is a number and its
// code a string, but devices read both leniently, and so do we.
type orderWire struct {
	Code    json.RawMessage `json:"code"`
	Data    *dataWire       `json:"data"`
	ID      json.RawMessage `json:"id"`
	Message *string         `json:"message"`
}

type dataWire struct {
	OrderData
	IsDiff json.RawMessage `json:"isDiff"` // shadows OrderData.IsDiff: 1, true or "1"
}

// Marshal encodes an OTA message (Order, Inform, Progress) as the devices'
// JSON readers expect it. Unlike json.Marshal it leaves '&', '<' and '>' as
// they are: the C SDK's reader (iotkit-embedded json_get_value_by_name) does
// not unescape, and would fetch a URL with "\u0026" in it. Send what Marshal
// returns, not what json.Marshal does.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// ParseOrder decodes and checks an upgrade order. It accepts only an order
// the device can act on: message "success" and code "1000", a positive size,
// a version, an http(s) URL, and a digest consistent with its method. A
// trailing NUL (AliOS Things publishes strlen+1 bytes) and white space are
// ignored. Every error wraps ErrInvalidOrder.
func ParseOrder(b []byte) (*Order, error) {
	if len(b) > MaxOrderSize {
		return nil, fmt.Errorf("%w: %w: %d bytes, more than the %d accepted", ErrInvalidOrder, ErrOrderTooLarge, len(b), MaxOrderSize)
	}
	b = bytes.TrimRight(b, "\x00 \t\r\n")
	var w orderWire
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&w); err != nil {
		return nil, fmt.Errorf("%w: not JSON: %w", ErrInvalidOrder, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: text after the JSON object", ErrInvalidOrder)
	}
	if w.Data == nil {
		return nil, fmt.Errorf("%w: no data object", ErrInvalidOrder)
	}
	o := &Order{Data: w.Data.OrderData}
	if w.Message != nil {
		o.Message = *w.Message
	}
	var err error
	if o.Code, err = scalarString(w.Code); err != nil {
		return nil, fmt.Errorf("%w: code: %w", ErrInvalidOrder, err)
	}
	if o.ID, err = parseID(w.ID); err != nil {
		return nil, fmt.Errorf("%w: id: %w", ErrInvalidOrder, err)
	}
	if o.Data.IsDiff, err = parseFlag(w.Data.IsDiff); err != nil {
		return nil, fmt.Errorf("%w: data.isDiff: %w", ErrInvalidOrder, err)
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return o, nil
}

// Validate checks an order as ParseOrder does; the cloud calls it before it
// sends one, so that an operator learns of a bad order at once rather than
// from a device's failure report.
func (o *Order) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidOrder}, args...)...)
	}
	if o.Message != OrderMessageSuccess {
		return bad("message is %q, want %q", clip(o.Message), OrderMessageSuccess)
	}
	if o.Code != OrderCodeSuccess {
		return bad("code is %q, want %q", clip(o.Code), OrderCodeSuccess)
	}
	if o.ID < 0 {
		return bad("id is %d, want a positive number", o.ID)
	}
	d := &o.Data
	if d.Size <= 0 || d.Size > maxImageSize {
		return bad("data.size is %d, want 1..%d bytes", d.Size, int64(maxImageSize))
	}
	if err := checkText("data.version", d.Version, maxVersionLen, true); err != nil {
		return bad("%w", err)
	}
	if err := checkURL(d.URL); err != nil {
		return bad("%w", err)
	}
	if _, _, err := d.digest(); err != nil {
		return bad("%w", err)
	}
	if d.IsDiff != 0 && d.IsDiff != 1 {
		return bad("data.isDiff is %d, want 0 or 1", d.IsDiff)
	}
	if d.DigestSign != "" {
		sig, err := base64.StdEncoding.DecodeString(d.DigestSign)
		if err != nil || len(sig) == 0 || len(sig) > maxDigestSign {
			return bad("data.digestsign is not base64 of 1..%d bytes", maxDigestSign)
		}
	}
	if err := checkText("data.module", d.Module, maxModuleLen, false); err != nil {
		return bad("%w", err)
	}
	if x := d.Otaport; x != nil {
		if err := x.validate(); err != nil {
			return bad("%w", err)
		}
	}
	return nil
}

func (x *Extension) validate() error {
	if x.Scheme != "" && !isToken(x.Scheme, 32) {
		return fmt.Errorf("data.otaport.scheme %q: want a lower-case name such as \"ecdsa-p256\"", clip(x.Scheme))
	}
	if x.KeyID != "" {
		if len(x.KeyID) > 64 || len(x.KeyID)%2 != 0 || !isHex(x.KeyID) {
			return fmt.Errorf("data.otaport.keyId %q: want the hex SHA-256 of the public key", clip(x.KeyID))
		}
	}
	if err := checkText("data.otaport.campaign", x.Campaign, maxShortField, false); err != nil {
		return err
	}
	if x.Board != "" && !isToken(x.Board, 64) {
		return fmt.Errorf("data.otaport.board %q: want a board name of lower-case letters, digits, '-' and '_'", clip(x.Board))
	}
	if x.ProductKey != "" || x.DeviceName != "" {
		if err := checkIdentity(x.ProductKey, x.DeviceName); err != nil {
			return fmt.Errorf("data.otaport.productKey/deviceName: %w", err)
		}
	}
	if x.Expires < 0 {
		return fmt.Errorf("data.otaport.expires is %d, want Unix seconds", x.Expires)
	}
	if err := checkNonce("data.otaport.nonce", x.Nonce); err != nil {
		return err
	}
	if x.Signer != "" && (len(x.Signer) != 64 || !isHex(x.Signer)) {
		return fmt.Errorf("data.otaport.signer %q: want the hex SHA-256 of the order key", clip(x.Signer))
	}
	if x.Signature != "" {
		sig, err := base64.StdEncoding.DecodeString(x.Signature)
		if err != nil || len(sig) != ed25519.SignatureSize {
			return fmt.Errorf("data.otaport.signature: want base64 of a %d-byte Ed25519 signature", ed25519.SignatureSize)
		}
	}
	return nil
}

// Digest returns the digest the image must have: method is DigestMD5 or
// DigestSHA256 and sum the raw bytes. For an order that did not pass
// Validate it returns "" and nil.
func (o *Order) Digest() (method string, sum []byte) {
	method, sum, err := o.Data.digest()
	if err != nil {
		return "", nil
	}
	return method, sum
}

// digest works out the digest the way AliOS Things does: with signMethod the
// digest is in sign; without it the order is of the first protocol and the
// digest is the MD5 in md5. Where both sign and md5 hold an MD5 they must
// agree, since devices of either generation read a different one.
func (d *OrderData) digest() (string, []byte, error) {
	var method, field, value string
	switch strings.ToLower(d.SignMethod) {
	case "":
		method, field, value = DigestMD5, "data.md5", d.MD5
		if value == "" {
			return "", nil, errors.New("no digest: want data.signMethod with data.sign, or data.md5")
		}
	case "md5":
		method, field, value = DigestMD5, "data.sign", d.Sign
		if value == "" {
			field, value = "data.md5", d.MD5
		} else if d.MD5 != "" && !strings.EqualFold(d.MD5, d.Sign) {
			return "", nil, fmt.Errorf("data.sign %q and data.md5 %q differ; both are the MD5 of the image", clip(d.Sign), clip(d.MD5))
		}
		if value == "" {
			return "", nil, errors.New("no digest: data.signMethod is Md5 but data.sign and data.md5 are empty")
		}
	case "sha256":
		method, field, value = DigestSHA256, "data.sign", d.Sign
		if value == "" {
			return "", nil, errors.New("no digest: data.signMethod is SHA256 but data.sign is empty")
		}
		if d.MD5 != "" && (len(d.MD5) != 32 || !isHex(d.MD5)) {
			return "", nil, fmt.Errorf("data.md5 %q: want 32 hex digits", clip(d.MD5))
		}
	default:
		return "", nil, fmt.Errorf("data.signMethod %q: want Md5 or SHA256", clip(d.SignMethod))
	}
	want := 32
	if method == DigestSHA256 {
		want = 64
	}
	if len(value) != want || !isHex(value) {
		return "", nil, fmt.Errorf("%s %q: want %d hex digits for %s", field, clip(value), want, method)
	}
	sum, err := hex.DecodeString(value)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", field, err)
	}
	return method, sum, nil
}

// ParseInform decodes an inform message (the cloud side reads it). Like
// ParseOrder it ignores a trailing NUL.
func ParseInform(b []byte) (*Inform, error) {
	if len(b) > maxProgressLen {
		return nil, fmt.Errorf("%w: inform of %d bytes, more than %d", ErrInvalidMessage, len(b), maxProgressLen)
	}
	var w struct {
		ID     json.RawMessage `json:"id"`
		Params *InformParams   `json:"params"`
	}
	if err := json.Unmarshal(bytes.TrimRight(b, "\x00 \t\r\n"), &w); err != nil {
		return nil, fmt.Errorf("%w: inform: %w", ErrInvalidMessage, err)
	}
	if w.Params == nil {
		return nil, fmt.Errorf("%w: inform: no params object", ErrInvalidMessage)
	}
	id, err := parseID(w.ID)
	if err != nil {
		return nil, fmt.Errorf("%w: inform: id: %w", ErrInvalidMessage, err)
	}
	if err := checkText("params.version", w.Params.Version, maxVersionLen, true); err != nil {
		return nil, fmt.Errorf("%w: inform: %w", ErrInvalidMessage, err)
	}
	if err := checkText("params.module", w.Params.Module, maxModuleLen, false); err != nil {
		return nil, fmt.Errorf("%w: inform: %w", ErrInvalidMessage, err)
	}
	if err := checkNonce("params.nonce", w.Params.Nonce); err != nil {
		return nil, fmt.Errorf("%w: inform: %w", ErrInvalidMessage, err)
	}
	if err := CheckImageHash("params.imageHash", w.Params.ImageHash); err != nil {
		return nil, fmt.Errorf("%w: inform: %w", ErrInvalidMessage, err)
	}
	return &Inform{ID: id, Params: *w.Params}, nil
}

// ParseProgress decodes a progress message (the cloud side reads it). The
// step may arrive as a JSON string, as the platform specifies, or as a
// number, as some devices send it; it must be "0".."100" or a failure step.
func ParseProgress(b []byte) (*Progress, error) {
	if len(b) > maxProgressLen {
		return nil, fmt.Errorf("%w: progress of %d bytes, more than %d", ErrInvalidMessage, len(b), maxProgressLen)
	}
	var w struct {
		ID     json.RawMessage `json:"id"`
		Params *struct {
			Step   json.RawMessage `json:"step"`
			Desc   string          `json:"desc"`
			Module string          `json:"module"`
		} `json:"params"`
	}
	if err := json.Unmarshal(bytes.TrimRight(b, "\x00 \t\r\n"), &w); err != nil {
		return nil, fmt.Errorf("%w: progress: %w", ErrInvalidMessage, err)
	}
	if w.Params == nil {
		return nil, fmt.Errorf("%w: progress: no params object", ErrInvalidMessage)
	}
	id, err := parseID(w.ID)
	if err != nil {
		return nil, fmt.Errorf("%w: progress: id: %w", ErrInvalidMessage, err)
	}
	s, err := scalarString(w.Params.Step)
	if err != nil {
		return nil, fmt.Errorf("%w: progress: params.step: %w", ErrInvalidMessage, err)
	}
	step := Step(strings.TrimSpace(s))
	if !step.valid() {
		return nil, fmt.Errorf("%w: progress: params.step %q: want \"0\"..\"100\", \"-1\", \"-2\", \"-3\" or \"-4\"", ErrInvalidMessage, clip(s))
	}
	if err := checkText("params.module", w.Params.Module, maxModuleLen, false); err != nil {
		return nil, fmt.Errorf("%w: progress: %w", ErrInvalidMessage, err)
	}
	return &Progress{ID: id, Params: ProgressParams{Step: step, Desc: w.Params.Desc, Module: w.Params.Module}}, nil
}

// scalarString reads a JSON string or number as a string; absent is "".
func scalarString(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", err
		}
		return s, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return "", fmt.Errorf("%s is neither a string nor a number", clip(string(raw)))
	}
	return n.String(), nil
}

// parseID reads a message id: a non-negative integer, as a number or a
// string of digits; absent is 0.
func parseID(raw json.RawMessage) (int64, error) {
	s, err := scalarString(raw)
	if err != nil {
		return 0, err
	}
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a non-negative integer", clip(s))
	}
	return n, nil
}

// parseFlag reads isDiff: 0/1, false/true or "0"/"1"; absent is 0.
func parseFlag(raw json.RawMessage) (int, error) {
	switch strings.TrimSpace(string(raw)) {
	case "", "null", "0", "false", `"0"`, `"false"`:
		return 0, nil
	case "1", "true", `"1"`, `"true"`:
		return 1, nil
	}
	return 0, fmt.Errorf("%s: want 0 or 1", clip(string(raw)))
}

// CheckImageHash checks an image hash as version reports carry it: empty,
// or the 64 lower-case hex digits of a SHA-256. Lower case only, so that
// the fleet can compare it with a delta's base as a string.
func CheckImageHash(field, s string) error {
	if s == "" {
		return nil
	}
	if len(s) != 64 || strings.ToLower(s) != s || !isHex(s) {
		return fmt.Errorf("%s %q: want the 64 lower-case hex digits of the image's SHA-256 hash TLV", field, clip(s))
	}
	return nil
}

func checkText(field, s string, maxLen int, required bool) error {
	switch {
	case s == "" && required:
		return fmt.Errorf("%s is empty", field)
	case len(s) > maxLen:
		return fmt.Errorf("%s is %d bytes, more than %d", field, len(s), maxLen)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s is not UTF-8", field)
	case strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("%s %q has control characters", field, clip(s))
	}
	return nil
}

func checkURL(s string) error {
	if s == "" {
		return errors.New("data.url is empty")
	}
	if len(s) > maxURLLen {
		return fmt.Errorf("data.url is %d bytes, more than %d", len(s), maxURLLen)
	}
	// The C SDK copies the URL out of the JSON text without unescaping it,
	// so a character JSON must escape would reach its HTTP client mangled.
	if strings.ContainsFunc(s, func(r rune) bool { return r <= 0x20 || r == 0x7f || r == '"' || r == '\\' }) {
		return fmt.Errorf("data.url %q: has spaces, quotes, backslashes or control characters; percent-encode them", clip(s))
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("data.url %q: %w", clip(s), err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("data.url %q: want an http or https URL", clip(s))
	}
	if u.Host == "" {
		return fmt.Errorf("data.url %q: no host", clip(s))
	}
	return nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func isToken(s string, maxLen int) bool {
	if s == "" || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// clip shortens a value quoted in an error so that a hostile message cannot
// flood the logs.
func clip(s string) string {
	const n = 80
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
