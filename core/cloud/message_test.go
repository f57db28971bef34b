package cloud

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// platformOrder is the order of AliOS Things issue #932, with the digests
// (elided there) filled in.
const platformOrder = `{"code":"1000","data":{"size":584064,"sign":"6080a1b6c0fe4ce3c8fc6b6c0d29ec8d","version":"app-1.1.0","url":"https://ota.example.com/ota/6080a1b6?Expires=1553774636&Signature=abc%3D","signMethod":"Md5","md5":"6080a1b6c0fe4ce3c8fc6b6c0d29ec8d"},"id":1553688236684,"message":"success"}`

func TestParseOrder_PlatformOrder(t *testing.T) {
	o, err := ParseOrder([]byte(platformOrder))
	if err != nil {
		t.Fatal(err)
	}
	if o.ID != 1553688236684 || o.Data.Size != 584064 || o.Data.Version != "app-1.1.0" || o.Code != "1000" {
		t.Errorf("parsed %+v", o)
	}
	method, sum := o.Digest()
	if method != DigestMD5 || hex.EncodeToString(sum) != "6080a1b6c0fe4ce3c8fc6b6c0d29ec8d" {
		t.Errorf("Digest = %s %x", method, sum)
	}
	// Marshal gives back the platform's shape, field for field, '&' and all.
	out, err := Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != platformOrder {
		t.Errorf("marshal:\n got %s\nwant %s", out, platformOrder)
	}
}

func TestParseOrder_Accepts(t *testing.T) {
	sha := strings.Repeat("aB", 32)
	md5 := strings.Repeat("0f", 16)
	cases := []struct {
		name       string
		data       string // the data object's fields after size/version/url
		wantMethod string
		wantSum    string
		check      func(*testing.T, *Order)
	}{
		{name: "first protocol, md5 only", data: `"md5":"` + md5 + `"`, wantMethod: DigestMD5, wantSum: md5},
		{name: "Md5 in sign only", data: `"signMethod":"Md5","sign":"` + md5 + `"`, wantMethod: DigestMD5, wantSum: md5},
		{name: "Md5 with md5 only", data: `"signMethod":"MD5","md5":"` + md5 + `"`, wantMethod: DigestMD5, wantSum: md5},
		{name: "sign and md5 differ in case only", data: `"signMethod":"md5","sign":"` + strings.ToUpper(md5) + `","md5":"` + md5 + `"`, wantMethod: DigestMD5, wantSum: md5},
		{name: "SHA256", data: `"signMethod":"SHA256","sign":"` + sha + `","md5":"` + md5 + `"`, wantMethod: DigestSHA256, wantSum: strings.ToLower(sha)},
		{name: "Sha256 any case", data: `"signMethod":"Sha256","sign":"` + sha + `"`, wantMethod: DigestSHA256, wantSum: strings.ToLower(sha)},
		{
			name: "newer fields and extensions", wantMethod: DigestSHA256, wantSum: strings.ToLower(sha),
			data: `"signMethod":"SHA256","sign":"` + sha + `","isDiff":1,"digestsign":"AAEC","module":"MCU","extData":{"k":"v"},` +
				`"otaport":{"scheme":"ecdsa-p256","keyId":"` + sha + `","securityCounter":7,"campaign":"spring wave 2","board":"stm32f407-disco"}`,
			check: func(t *testing.T, o *Order) {
				x := o.Data.Otaport
				if o.Data.IsDiff != 1 || o.Data.Module != "MCU" || string(o.Data.ExtData) != `{"k":"v"}` || x == nil ||
					x.Scheme != "ecdsa-p256" || x.SecurityCounter != 7 || x.Board != "stm32f407-disco" || x.Campaign != "spring wave 2" {
					t.Errorf("parsed %+v / %+v", o.Data, x)
				}
			},
		},
		{name: "isDiff as true", data: `"md5":"` + md5 + `","isDiff":true`, wantMethod: DigestMD5, wantSum: md5,
			check: func(t *testing.T, o *Order) {
				if o.Data.IsDiff != 1 {
					t.Errorf("isDiff = %d", o.Data.IsDiff)
				}
			}},
		{name: "unknown fields ignored", data: `"md5":"` + md5 + `","future":{"x":[1,2]}`, wantMethod: DigestMD5, wantSum: md5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msg := `{"code":"1000","data":{"size":10,"version":"2.0","url":"http://127.0.0.1:8080/fw.bin",` + c.data + `},"id":5,"message":"success"}`
			o, err := ParseOrder([]byte(msg))
			if err != nil {
				t.Fatal(err)
			}
			method, sum := o.Digest()
			if method != c.wantMethod || hex.EncodeToString(sum) != c.wantSum {
				t.Errorf("Digest = %s %x, want %s %s", method, sum, c.wantMethod, c.wantSum)
			}
			if c.check != nil {
				c.check(t, o)
			}
		})
	}
}

func TestParseOrder_LenientEnvelope(t *testing.T) {
	md5 := strings.Repeat("0f", 16)
	for _, msg := range []string{
		// AliOS Things publishes strlen+1 bytes: a trailing NUL.
		`{"code":"1000","data":{"size":1,"version":"v","url":"https://h/x","md5":"` + md5 + `"},"id":1,"message":"success"}` + "\x00",
		// code as a number, id as a string.
		`{"code":1000,"data":{"size":1,"version":"v","url":"https://h/x","md5":"` + md5 + `"},"id":"1","message":"success"}`,
		// no id at all.
		`{"code":"1000","data":{"size":1,"version":"v","url":"https://h/x","md5":"` + md5 + `"},"message":"success"}` + "\n",
	} {
		if _, err := ParseOrder([]byte(msg)); err != nil {
			t.Errorf("%q: %v", msg, err)
		}
	}
}

func TestParseOrder_Refusals(t *testing.T) {
	md5 := strings.Repeat("0f", 16)
	sha := strings.Repeat("ab", 32)
	base := map[string]any{
		"code": "1000", "id": 9, "message": "success",
		"data": map[string]any{"size": 100, "version": "1.2", "url": "https://h/fw", "signMethod": "Md5", "sign": md5},
	}
	cases := []struct {
		name   string
		mutate func(o, d map[string]any)
		raw    string // used instead of base when set
		want   string // in the error text
	}{
		{name: "message not success", mutate: func(o, d map[string]any) { o["message"] = "fail" }, want: `message is "fail"`},
		{name: "message missing", mutate: func(o, d map[string]any) { delete(o, "message") }, want: "message"},
		{name: "code not 1000", mutate: func(o, d map[string]any) { o["code"] = "1001" }, want: `code is "1001"`},
		{name: "code missing", mutate: func(o, d map[string]any) { delete(o, "code") }, want: "code"},
		{name: "id negative", mutate: func(o, d map[string]any) { o["id"] = -3 }, want: "id"},
		{name: "id fraction", mutate: func(o, d map[string]any) { o["id"] = 1.5 }, want: "id"},
		{name: "id object", mutate: func(o, d map[string]any) { o["id"] = map[string]any{} }, want: "id"},
		{name: "no data", mutate: func(o, d map[string]any) { delete(o, "data") }, want: "no data"},
		{name: "size zero", mutate: func(o, d map[string]any) { d["size"] = 0 }, want: "data.size is 0"},
		{name: "size negative", mutate: func(o, d map[string]any) { d["size"] = -1 }, want: "data.size is -1"},
		{name: "size huge", mutate: func(o, d map[string]any) { d["size"] = int64(1) << 40 }, want: "data.size"},
		{name: "size as string", mutate: func(o, d map[string]any) { d["size"] = "100" }, want: "not JSON"},
		{name: "no version", mutate: func(o, d map[string]any) { delete(d, "version") }, want: "data.version is empty"},
		{name: "version too long", mutate: func(o, d map[string]any) { d["version"] = strings.Repeat("9", 65) }, want: "data.version is 65 bytes"},
		{name: "version with newline", mutate: func(o, d map[string]any) { d["version"] = "1.0\n" }, want: "control characters"},
		{name: "no url", mutate: func(o, d map[string]any) { delete(d, "url") }, want: "data.url is empty"},
		{name: "ftp url", mutate: func(o, d map[string]any) { d["url"] = "ftp://h/fw" }, want: "want an http or https URL"},
		{name: "file url", mutate: func(o, d map[string]any) { d["url"] = "file:///etc/passwd" }, want: "want an http or https URL"},
		{name: "relative url", mutate: func(o, d map[string]any) { d["url"] = "/fw.bin" }, want: "want an http or https URL"},
		{name: "url with quote", mutate: func(o, d map[string]any) { d["url"] = `https://h/f"w` }, want: "percent-encode"},
		{name: "url with space", mutate: func(o, d map[string]any) { d["url"] = "https://h/f w" }, want: "percent-encode"},
		{name: "url without host", mutate: func(o, d map[string]any) { d["url"] = "https:///fw" }, want: "no host"},
		{name: "unknown sign method", mutate: func(o, d map[string]any) { d["signMethod"] = "CRC32" }, want: `data.signMethod "CRC32"`},
		{name: "md5 of sha256 length", mutate: func(o, d map[string]any) { d["sign"] = sha }, want: "want 32 hex digits for md5"},
		{name: "sha256 of md5 length", mutate: func(o, d map[string]any) { d["signMethod"] = "SHA256"; d["sign"] = md5 }, want: "want 64 hex digits for sha256"},
		{name: "not hex", mutate: func(o, d map[string]any) { d["sign"] = strings.Repeat("zz", 16) }, want: "hex digits"},
		{name: "sign and md5 disagree", mutate: func(o, d map[string]any) { d["md5"] = strings.Repeat("11", 16) }, want: "differ"},
		{name: "md5 method without digest", mutate: func(o, d map[string]any) { delete(d, "sign") }, want: "no digest"},
		{name: "no digest at all", mutate: func(o, d map[string]any) { delete(d, "sign"); delete(d, "signMethod") }, want: "no digest"},
		{name: "sha256 without sign", mutate: func(o, d map[string]any) { d["signMethod"] = "SHA256"; delete(d, "sign"); d["md5"] = md5 }, want: "no digest"},
		{name: "sha256 with bad md5", mutate: func(o, d map[string]any) { d["signMethod"] = "SHA256"; d["sign"] = sha; d["md5"] = "x" }, want: "data.md5"},
		{name: "isDiff 2", mutate: func(o, d map[string]any) { d["isDiff"] = 2 }, want: "data.isDiff"},
		{name: "digestsign not base64", mutate: func(o, d map[string]any) { d["digestsign"] = "***" }, want: "data.digestsign"},
		{name: "bad board", mutate: func(o, d map[string]any) { d["otaport"] = map[string]any{"board": "../x"} }, want: "data.otaport.board"},
		{name: "bad key id", mutate: func(o, d map[string]any) { d["otaport"] = map[string]any{"keyId": "xyz"} }, want: "data.otaport.keyId"},
		{name: "bad scheme", mutate: func(o, d map[string]any) { d["otaport"] = map[string]any{"scheme": "ECDSA P256"} }, want: "data.otaport.scheme"},
		{name: "not JSON", raw: `{"code":"1000",`, want: "not JSON"},
		{name: "two objects", raw: platformOrder + platformOrder, want: "text after"},
		{name: "array", raw: `[1,2]`, want: "not JSON"},
		{name: "oversized", raw: `{"code":"1000","pad":"` + strings.Repeat("x", MaxOrderSize) + `"}`, want: "more than the 16384 accepted"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw := []byte(c.raw)
			if c.raw == "" {
				o := clone(base)
				c.mutate(o, o["data"].(map[string]any))
				var err error
				if raw, err = json.Marshal(o); err != nil {
					t.Fatal(err)
				}
			}
			o, err := ParseOrder(raw)
			if err == nil {
				t.Fatalf("accepted %s as %+v", raw, o)
			}
			if !errors.Is(err, ErrInvalidOrder) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ErrInvalidOrder mentioning %q", err, c.want)
			}
		})
	}
	if _, err := ParseOrder(make([]byte, MaxOrderSize+1)); !errors.Is(err, ErrOrderTooLarge) {
		t.Errorf("oversized: err = %v, want ErrOrderTooLarge", err)
	}
}

func clone(m map[string]any) map[string]any {
	b, _ := json.Marshal(m)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

func TestMessages_WireShapes(t *testing.T) {
	cases := []struct {
		name string
		v    any
		want string
	}{
		{"inform", Inform{ID: 1, Params: InformParams{Version: "1.0.1"}}, `{"id":1,"params":{"version":"1.0.1"}}`},
		{"inform with module", Inform{ID: 0, Params: InformParams{Version: "app-2", Module: "MCU"}}, `{"id":0,"params":{"version":"app-2","module":"MCU"}}`},
		{"progress", NewProgress(1553688236684, 45, ""), `{"id":1553688236684,"params":{"step":"45"}}`},
		{"progress clamped", NewProgress(2, 140, "done"), `{"id":2,"params":{"step":"100","desc":"done"}}`},
		{"progress clamped low", NewProgress(2, -9, ""), `{"id":2,"params":{"step":"0"}}`},
		{"progress desc with &", NewProgress(2, 5, "a&b<c>"), `{"id":2,"params":{"step":"5","desc":"a&b<c>"}}`},
		{"failure", NewFailure(3, StepVerifyFailed, `hash "mismatch"`), `{"id":3,"params":{"step":"-3","desc":"hash \"mismatch\""}}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := Marshal(c.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != c.want {
				t.Errorf("got  %s\nwant %s", b, c.want)
			}
		})
	}
}

func TestParseProgress(t *testing.T) {
	cases := []struct {
		in      string
		step    Step
		percent int
		failed  bool
		err     bool
	}{
		// The C SDK's own output (ota_lib.c prints a space after the colon).
		{in: `{"id":0,"params":{"step": "45","desc":"x"}}`, step: "45", percent: 45},
		{in: `{"id":1,"params":{"step": "-2","desc":"OTA download connect failed","module":"MCU"}}` + "\x00", step: "-2", failed: true},
		{in: `{"id":1,"params":{"step":100}}`, step: "100", percent: 100},
		{in: `{"id":1,"params":{"step":"-4"}}`, step: "-4", failed: true},
		{in: `{"id":1,"params":{"step":"101"}}`, err: true},
		{in: `{"id":1,"params":{"step":"-5"}}`, err: true},
		{in: `{"id":1,"params":{"step":"007"}}`, err: true},
		{in: `{"id":1,"params":{"step":"-0"}}`, err: true},
		{in: `{"id":1,"params":{}}`, err: true},
		{in: `{"id":1}`, err: true},
		{in: `{"id":"x","params":{"step":"1"}}`, err: true},
	}
	for _, c := range cases {
		p, err := ParseProgress([]byte(c.in))
		if c.err {
			if err == nil || !errors.Is(err, ErrInvalidMessage) {
				t.Errorf("%s: err = %v, want ErrInvalidMessage", c.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		pct, ok := p.Params.Step.Percent()
		if p.Params.Step != c.step || p.Params.Step.Failed() != c.failed || ok == c.failed || (ok && pct != c.percent) {
			t.Errorf("%s: step %q percent %d/%v failed %v", c.in, p.Params.Step, pct, ok, p.Params.Step.Failed())
		}
	}
}

func TestParseInform(t *testing.T) {
	i, err := ParseInform([]byte(`{"id":0,"params":{"version":"app-1.0.0","module":"MCU"}}` + "\x00"))
	if err != nil {
		t.Fatal(err)
	}
	if i.Params.Version != "app-1.0.0" || i.Params.Module != "MCU" {
		t.Errorf("parsed %+v", i)
	}
	for _, bad := range []string{`{"id":0,"params":{}}`, `{"id":0}`, `[]`, `{"id":0,"params":{"version":"a\u0001"}}`} {
		if _, err := ParseInform([]byte(bad)); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("%s: err = %v", bad, err)
		}
	}
}

// TestParseInform_ImageHash: the running image's hash is read as 64
// lower-case hex digits, and anything else is refused naming the field.
func TestParseInform_ImageHash(t *testing.T) {
	hash := strings.Repeat("0f", 32)
	for _, c := range []struct {
		name, hash string
		ok         bool
	}{
		{"absent", "", true},
		{"sha-256", hash, true},
		{"upper case", strings.ToUpper(hash), false},
		{"short", hash[:62], false},
		{"long", hash + "00", false},
		{"not hex", strings.Repeat("zz", 32), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			in, err := ParseInform([]byte(`{"id":1,"params":{"version":"1.0.0","imageHash":"` + c.hash + `"}}`))
			if !c.ok {
				if !errors.Is(err, ErrInvalidMessage) || !strings.Contains(err.Error(), "params.imageHash") {
					t.Fatalf("ParseInform = %+v, %v; want ErrInvalidMessage naming params.imageHash", in, err)
				}
				return
			}
			if err != nil || in.Params.ImageHash != c.hash {
				t.Fatalf("ParseInform = %+v, %v; want image hash %q", in, err, c.hash)
			}
		})
	}
}

func TestTopics_RoundTrip(t *testing.T) {
	ts := Topics("a1B2c3", "dev-01")
	want := TopicSet{
		Inform:   "/ota/device/inform/a1B2c3/dev-01",
		Upgrade:  "/ota/device/upgrade/a1B2c3/dev-01",
		Progress: "/ota/device/progress/a1B2c3/dev-01",
		Request:  "/ota/device/request/a1B2c3/dev-01",
		Release:  "/otaport/release/a1B2c3",
		KeySet:   "/otaport/keyset/a1B2c3",
	}
	if ts != want {
		t.Fatalf("Topics = %+v", ts)
	}
	for kind, topic := range map[string]string{KindInform: ts.Inform, KindUpgrade: ts.Upgrade, KindProgress: ts.Progress, KindRequest: ts.Request} {
		k, pk, dn, ok := ParseTopic(topic)
		if !ok || k != kind || pk != "a1B2c3" || dn != "dev-01" {
			t.Errorf("ParseTopic(%q) = %q %q %q %v", topic, k, pk, dn, ok)
		}
	}
	for _, bad := range []string{
		"/ota/device/upgrade/+/dev", "/ota/device/upgrade/pk/#", "/ota/device/#", "/ota/device/upgrade/pk",
		"/ota/device/upgrade/pk/dn/extra", "/ota/device/reboot/pk/dn", "/ota/device/upgrade//dn", "ota/device/upgrade/pk/dn",
		"/sys/pk/dn/thing/event", "",
	} {
		if _, _, _, ok := ParseTopic(bad); ok {
			t.Errorf("ParseTopic(%q) accepted", bad)
		}
	}
}

// FuzzParseOrder: any input gives an order or an error, never a panic; an
// accepted order has a usable digest, survives a marshal round trip, and is
// accepted again.
func FuzzParseOrder(f *testing.F) {
	f.Add([]byte(platformOrder))
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := ParseOrder(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidOrder) {
				t.Fatalf("error not wrapping ErrInvalidOrder: %v", err)
			}
			return
		}
		method, sum := o.Digest()
		if (method == DigestMD5 && len(sum) != 16) || (method == DigestSHA256 && len(sum) != 32) || method == "" {
			t.Fatalf("accepted order with digest %q %x", method, sum)
		}
		if o.Data.Size <= 0 || o.Data.Version == "" {
			t.Fatalf("accepted order %+v", o)
		}
		out, err := Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		o2, err := ParseOrder(out)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", out, err)
		}
		m2, s2 := o2.Digest()
		if m2 != method || !bytes.Equal(s2, sum) || o2.ID != o.ID || o2.Data.URL != o.Data.URL || o2.Module() != o.Module() {
			t.Fatalf("round trip changed the order: %+v -> %+v", o, o2)
		}
	})
}

// TestFuzzCorpus_Present keeps the seed corpus from going missing: the fuzz
// target's seeds live in testdata/fuzz/FuzzParseOrder.
func TestFuzzCorpus_Present(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzParseOrder", "*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 5 {
		t.Fatalf("seed corpus has %d files, want at least 5", len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte("go test fuzz v1\n")) {
			t.Errorf("%s is not a Go fuzz corpus file", f)
		}
	}
}

func TestStep_Label(t *testing.T) {
	for step, want := range map[Step]string{
		"0": "0%", "42": "42%", "100": "100%",
		StepUpgradeFailed: "upgrade-failed", StepDownloadFailed: "download-failed",
		StepVerifyFailed: "verify-failed", StepFlashFailed: "flash-failed",
		"-9": "step(-9)", "101": "step(101)",
	} {
		if got := step.Label(); got != want {
			t.Errorf("Step(%q).Label() = %q, want %q", step, got, want)
		}
	}
}

// TestModules_OnTheWire is the module field of every message, both ways: the
// default module travels without the field (as a device of one module sends
// it), another module with it, and a reader takes an absent field and
// "default" alike.
func TestModules_OnTheWire(t *testing.T) {
	cases := []struct {
		name   string
		v      any
		want   string
		module string // what the reader's Module() returns
	}{
		{"inform default", Inform{ID: 1, Params: InformParams{Version: "1.0.0", Module: ModuleField(DefaultModule)}}, `{"id":1,"params":{"version":"1.0.0"}}`, DefaultModule},
		{"inform wifi", Inform{ID: 2, Params: InformParams{Version: "2.1.0", Module: ModuleField("wifi")}}, `{"id":2,"params":{"version":"2.1.0","module":"wifi"}}`, "wifi"},
		{"inform default spelt out", Inform{ID: 3, Params: InformParams{Version: "1.0.0", Module: "default"}}, `{"id":3,"params":{"version":"1.0.0","module":"default"}}`, DefaultModule},
		{"progress default", Progress{ID: 9, Params: ProgressParams{Step: "45", Module: ModuleField(DefaultModule)}}, `{"id":9,"params":{"step":"45"}}`, DefaultModule},
		{"progress wifi", Progress{ID: 9, Params: ProgressParams{Step: "-3", Desc: "bad", Module: "wifi"}}, `{"id":9,"params":{"step":"-3","desc":"bad","module":"wifi"}}`, "wifi"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := Marshal(c.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != c.want {
				t.Errorf("got  %s\nwant %s", b, c.want)
			}
			var got string
			switch c.v.(type) {
			case Inform:
				in, err := ParseInform(b)
				if err != nil {
					t.Fatal(err)
				}
				got = in.Module()
			case Progress:
				p, err := ParseProgress(b)
				if err != nil {
					t.Fatal(err)
				}
				got = p.Module()
			}
			if got != c.module {
				t.Errorf("read back as module %q, want %q", got, c.module)
			}
		})
	}
	for field, want := range map[string]string{"": DefaultModule, "default": DefaultModule, "wifi": "wifi"} {
		o, err := ParseOrder([]byte(`{"code":"1000","message":"success","id":1,"data":{"size":1,"version":"1","url":"http://h/f","md5":"0123456789abcdef0123456789abcdef","module":"` + field + `"}}`))
		if err != nil {
			t.Fatal(err)
		}
		if o.Module() != want {
			t.Errorf("order with data.module %q: Module() = %q, want %q", field, o.Module(), want)
		}
	}
}

func TestCheckModule(t *testing.T) {
	for name, ok := range map[string]bool{
		"default": true, "wifi": true, "MCU": true, "esp32-c3_v1.0": true, strings.Repeat("m", 64): true,
		"": false, strings.Repeat("m", 65): false, "wi fi": false, "wifi/2": false, "modül": false,
	} {
		if err := CheckModule(name); (err == nil) != ok {
			t.Errorf("CheckModule(%q) = %v, want ok %v", name, err, ok)
		}
	}
}

// FuzzParseReport: inform and progress messages parse or fail with
// ErrInvalidMessage, and what parses keeps its module through a round trip.
func FuzzParseReport(f *testing.F) {
	f.Add([]byte(`{"id":0,"params":{"version":"app-1.0.0","module":"MCU"}}`))
	f.Add([]byte(`{"id":1,"params":{"step":"-2","desc":"x","module":"wifi"}}`))
	f.Add([]byte(`{"id":1,"params":{"step":45,"module":""}}` + "\x00"))
	f.Add([]byte(`{"id":2,"params":{"version":"1.0.0","imageHash":"` + strings.Repeat("a5", 32) + `"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		roundTrip(t, "inform", b, ParseInform, func(a, b *Inform) bool {
			return a.Module() == b.Module() && a.Params.Version == b.Params.Version && a.Params.ImageHash == b.Params.ImageHash &&
				CheckImageHash("", b.Params.ImageHash) == nil
		})
		roundTrip(t, "progress", b, ParseProgress, func(a, b *Progress) bool {
			return a.Module() == b.Module() && a.Params.Step == b.Params.Step
		})
	})
}

// roundTrip parses b; what parses must marshal and parse again the same.
func roundTrip[T any](t *testing.T, what string, b []byte, parse func([]byte) (T, error), same func(a, b T) bool) {
	t.Helper()
	v, err := parse(b)
	if err != nil {
		if !errors.Is(err, ErrInvalidMessage) {
			t.Fatalf("%s error not wrapping ErrInvalidMessage: %v", what, err)
		}
		return
	}
	out, err := Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := parse(out)
	if err != nil || !same(v, v2) {
		t.Fatalf("%s round trip: %+v -> %s -> %+v, %v", what, v, out, v2, err)
	}
}
