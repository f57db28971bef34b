package api

import (
	"bytes"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/otaport/otaport/core/image"
	"github.com/otaport/otaport/fleet/campaign"
	"github.com/otaport/otaport/fleet/firmware"
	"github.com/otaport/otaport/fleet/store"
)

const token = "test-token"

type env struct {
	t   *testing.T
	srv *httptest.Server
	key crypto.Signer
	// edKey is a second trusted key, of another algorithm.
	edKey crypto.Signer
	st    *store.Store
	dir   string // the data directory: fleet.db and firmware/
	// tokens are the API's tokens, token an admin one; clk their clock.
	tokens *Tokens
	clk    *clock
	// cfg is the handler's configuration, for a test that serves another.
	cfg Config
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "fleet.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	blobs, err := firmware.NewStore(filepath.Join(dir, "firmware"))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := campaign.NewService(campaign.Config{Store: st, FirmwareURL: func(img store.Image) string { return "http://127.0.0.1/firmware/" + img.SHA256 }})
	if err != nil {
		t.Fatal(err)
	}
	key, err := image.GenerateKey(image.KeyECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	edKey, err := image.GenerateKey(image.KeyEd25519)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	toks := &Tokens{Store: st, Now: clk.Now}
	if _, err := toks.Put("test", ScopeAdmin, token, time.Time{}); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Store: st, Firmware: blobs, Campaigns: svc, Keys: []crypto.PublicKey{key.Public(), edKey.Public()}, Boards: testBoards, Tokens: toks}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, key: key, edKey: edKey, st: st, dir: dir, tokens: toks, clk: clk, cfg: cfg}
}

// testBoards are the boards of the tests: b1 and b2 as a catalog board,
// tiny with an update slot too small for the test images, ed checking
// ed25519 signatures.
var testBoards = map[string]Board{
	"b1":   {MaxImageSize: 64 << 10, Signature: image.KeyECDSAP256},
	"b2":   {MaxImageSize: 64 << 10, Signature: image.KeyECDSAP256},
	"tiny": {MaxImageSize: 4 << 10, Signature: image.KeyECDSAP256},
	"ed":   {MaxImageSize: 64 << 10, Signature: image.KeyEd25519},
}

func (e *env) signed(version string, key crypto.Signer) []byte {
	e.t.Helper()
	v, err := image.ParseVersion(version)
	if err != nil {
		e.t.Fatal(err)
	}
	img, err := image.Sign(bytes.Repeat([]byte("firmware "), 500), key, image.SignOptions{Version: v})
	if err != nil {
		e.t.Fatal(err)
	}
	return img
}

// do sends a request and decodes the JSON answer into out (when non-nil).
func (e *env) do(method, path, ctype string, body io.Reader, out any) int {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+Prefix+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			e.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, data, err)
		}
	}
	return resp.StatusCode
}

func (e *env) postJSON(path string, v any, out any) int {
	b, _ := json.Marshal(v)
	return e.do(http.MethodPost, path, "application/json", bytes.NewReader(b), out)
}

func TestAuth(t *testing.T) {
	e := newEnv(t)
	for _, hdr := range []string{"", "Bearer wrong", "Basic " + token, token} {
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+Prefix+"/devices", nil)
		if hdr != "" {
			req.Header.Set("Authorization", hdr)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("Authorization %q: status %d, want 401", hdr, resp.StatusCode)
		}
	}
	if st := e.do(http.MethodGet, "/devices", "", nil, nil); st != http.StatusOK {
		t.Errorf("with the token: status %d", st)
	}
}

func TestDevices(t *testing.T) {
	e := newEnv(t)
	var added Device
	if st := e.postJSON("/devices", AddDevice{ProductKey: "pk1", DeviceName: "dev-1", Board: "b1", Group: "lab"}, &added); st != http.StatusCreated {
		t.Fatalf("add: status %d", st)
	}
	if len(added.DeviceSecret) != 32 {
		t.Errorf("generated secret %q, want 32 hex digits", added.DeviceSecret)
	}
	var e1 Error
	if st := e.postJSON("/devices", AddDevice{ProductKey: "pk1", DeviceName: "dev-1", Board: "b1"}, &e1); st != http.StatusConflict {
		t.Errorf("duplicate add: status %d (%s)", st, e1.Error)
	}
	for _, bad := range []struct {
		req    AddDevice
		errHas string
	}{
		{AddDevice{ProductKey: "pk1", DeviceName: "a/b", Board: "b1"}, "device_name"},
		{AddDevice{ProductKey: "pk1", DeviceName: "x"}, "board: required"},
		// Before, any board name was taken, and the device refused its
		// first order only once the campaign had started.
		{AddDevice{ProductKey: "pk1", DeviceName: "x", Board: "no-such-board"}, `board "no-such-board" is not in otaserve's catalog; use one of: b1, b2, ed, tiny`},
	} {
		if st := e.postJSON("/devices", bad.req, &e1); st != http.StatusBadRequest || !strings.Contains(e1.Error, bad.errHas) {
			t.Errorf("add %+v: status %d %q, want 400 mentioning %q", bad.req, st, e1.Error, bad.errHas)
		}
	}
	if st := e.postJSON("/devices", AddDevice{ProductKey: "pk1", DeviceName: "dev-2", DeviceSecret: "given", Board: "b1"}, &added); st != http.StatusCreated || added.DeviceSecret != "given" {
		t.Errorf("add with a secret: status %d, secret %q", st, added.DeviceSecret)
	}
	var list []Device
	e.do(http.MethodGet, "/devices", "", nil, &list)
	if len(list) != 2 || list[0].DeviceName != "dev-1" || list[1].DeviceName != "dev-2" {
		t.Fatalf("list = %+v", list)
	}
	for _, d := range list {
		if d.DeviceSecret != "" {
			t.Errorf("list shows the secret of %s", d.Key())
		}
	}
	var one Device
	if st := e.do(http.MethodGet, "/devices/pk1/dev-1", "", nil, &one); st != 200 || one.Group != "lab" || one.State != string(store.DeviceRegistered) {
		t.Errorf("get: %d %+v", st, one)
	}
	if st := e.do(http.MethodGet, "/devices/pk1/nope", "", nil, &e1); st != http.StatusNotFound {
		t.Errorf("get unknown: %d", st)
	}
	// The secret is still there for the broker's sign-in check.
	if d, err := e.st.Device("pk1", "dev-2"); err != nil || d.DeviceSecret != "given" {
		t.Errorf("stored secret = %q, %v", d.DeviceSecret, err)
	}
}

// A fleet registers in batches: an array registers every device in one
// transaction, or none, and a refusal names the one at fault.
func TestDevices_Bulk(t *testing.T) {
	e := newEnv(t)
	batch := []AddDevice{
		{ProductKey: "pk1", DeviceName: "bulk-1", Board: "b1"},
		{ProductKey: "pk1", DeviceName: "bulk-2", Board: "b2", DeviceSecret: "given"},
	}
	var added []Device
	if st := e.postJSON("/devices", batch, &added); st != http.StatusCreated {
		t.Fatalf("add two: status %d", st)
	}
	if len(added) != 2 || added[0].DeviceName != "bulk-1" || len(added[0].DeviceSecret) != 32 || added[1].DeviceSecret != "given" {
		t.Fatalf("added = %+v; want both, the first with a generated secret", added)
	}
	var e1 Error
	for _, bad := range []struct {
		name   string
		body   any
		status int
		errHas string
	}{
		{"one exists", []AddDevice{{ProductKey: "pk1", DeviceName: "bulk-3", Board: "b1"}, {ProductKey: "pk1", DeviceName: "bulk-1", Board: "b1"}},
			http.StatusConflict, "pk1/bulk-1"},
		{"given twice", []AddDevice{{ProductKey: "pk1", DeviceName: "bulk-4", Board: "b1"}, {ProductKey: "pk1", DeviceName: "bulk-4", Board: "b1"}},
			http.StatusConflict, "pk1/bulk-4"},
		{"one invalid", []AddDevice{{ProductKey: "pk1", DeviceName: "bulk-5", Board: "b1"}, {ProductKey: "pk1", DeviceName: "bulk-6"}},
			http.StatusBadRequest, "[1] (pk1/bulk-6): board: required"},
		{"empty", []AddDevice{}, http.StatusBadRequest, "0 devices; give 1 to 1000"},
		{"too many", make([]AddDevice, 1001), http.StatusBadRequest, "1001 devices; give 1 to 1000"},
		{"unknown field", []map[string]string{{"product_key": "pk1", "device_name": "x", "board": "b1", "boards": "b2"}},
			http.StatusBadRequest, `unknown field "boards"`},
	} {
		if st := e.postJSON("/devices", bad.body, &e1); st != bad.status || !strings.Contains(e1.Error, bad.errHas) {
			t.Errorf("%s: status %d %q; want %d mentioning %q", bad.name, st, e1.Error, bad.status, bad.errHas)
		}
	}
	var list []Device
	e.do(http.MethodGet, "/devices", "", nil, &list)
	if len(list) != 2 {
		t.Errorf("%d devices after the refused batches; want the first batch's 2 (a refused batch adds none)", len(list))
	}
}

func TestUpload(t *testing.T) {
	e := newEnv(t)
	good := e.signed("1.2.0", e.key)
	tampered := append([]byte{}, good...)
	tampered[image.DefaultHeaderSize+10] ^= 1
	otherKey, _ := image.GenerateKey(image.KeyEd25519)

	multipartBody := func(data []byte) (string, io.Reader) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		mw.WriteField("board", "b1")
		fw, _ := mw.CreateFormFile("file", "app.bin")
		fw.Write(data)
		mw.Close()
		return mw.FormDataContentType(), &buf
	}

	tests := []struct {
		name   string
		query  string
		data   []byte
		multi  bool
		status int
		errHas string
	}{
		{"raw body", "?board=b1&version=1.2.0", good, false, 201, ""},
		{"multipart", "", good, true, 201, ""},
		{"tampered payload", "?board=b1", tampered, false, 422, "image refused"},
		{"signed by an unknown key", "?board=b1", e.signed("1.2.0", otherKey), false, 422, "image refused"},
		{"not an image", "?board=b1", []byte("hello"), false, 422, "image refused"},
		{"padded", "?board=b1", append(append([]byte{}, good...), 0xff, 0xff), false, 422, "unpadded"},
		{"version disagrees with the header", "?board=b1&version=1.3.0", good, false, 422, "header says 1.2.0+0"},
		{"no board", "?version=1.2.0", good, false, 400, "board"},
		// Before, these were accepted and refused by each device once the
		// campaign had started.
		{"unknown board", "?board=no-such-board", good, false, 400, `board "no-such-board" is not in otaserve's catalog`},
		{"larger than the board's update slot", "?board=tiny", good, false, 413, "board tiny takes images of at most 4096 bytes, the size of its update slot"},
		{"signed with another algorithm than the board's", "?board=ed", good, false, 422, "signed with ecdsa-p256, not ed25519: image signed with another algorithm: sign it with the board's ed25519 key"},
		{"signed with the board's algorithm", "?board=ed", e.signed("1.2.0", e.edKey), false, 201, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctype, body := "application/octet-stream", io.Reader(bytes.NewReader(tt.data))
			if tt.multi {
				ctype, body = multipartBody(tt.data)
			}
			var raw json.RawMessage
			st := e.do(http.MethodPost, "/images"+tt.query, ctype, body, &raw)
			if st != tt.status {
				t.Fatalf("status %d, want %d: %s", st, tt.status, raw)
			}
			if tt.status != 201 {
				var er Error
				json.Unmarshal(raw, &er)
				if !strings.Contains(er.Error, tt.errHas) {
					t.Errorf("error %q, want it to mention %q", er.Error, tt.errHas)
				}
				return
			}
			if strings.Contains(string(raw), `"path"`) {
				t.Errorf("the answer publishes the server's file path: %s", raw)
			}
			var img Image
			json.Unmarshal(raw, &img)
			if img.Board == "ed" {
				if img.SignatureType != image.KeyEd25519 {
					t.Errorf("image = %+v", img)
				}
				return
			}
			if img.Version != "1.2.0+0" || img.Board != "b1" || img.Size != int64(len(good)) || img.SignatureType != image.KeyECDSAP256 || len(img.SHA256) != 64 || img.KeyID == "" {
				t.Errorf("image = %+v", img)
			}
		})
	}
	var imgs []Image
	e.do(http.MethodGet, "/images", "", nil, &imgs)
	if len(imgs) != 3 {
		t.Errorf("%d images listed, want the 3 accepted", len(imgs))
	}
}

func TestCampaigns(t *testing.T) {
	e := newEnv(t)
	for i := range 4 {
		e.postJSON("/devices", AddDevice{ProductKey: "pk1", DeviceName: fmt.Sprintf("d%d", i), Board: "b1", Group: "lab"}, nil)
	}
	e.postJSON("/devices", AddDevice{ProductKey: "pk1", DeviceName: "other", Board: "b2"}, nil)
	var img Image
	e.do(http.MethodPost, "/images?board=b1", "application/octet-stream", bytes.NewReader(e.signed("2.0.0", e.key)), &img)

	var er Error
	bad := []struct {
		req    CreateCampaign
		status int
		errHas string
	}{
		{CreateCampaign{ImageID: 99, Target: Target{Group: "lab"}, Waves: "100%"}, 400, "image 99"},
		{CreateCampaign{ImageID: img.ID, Target: Target{Product: "pk1"}, Waves: "100%"}, 400, "pk1/other is a b2 board"},
		{CreateCampaign{ImageID: img.ID, Target: Target{Group: "none"}, Waves: "100%"}, 400, "selects no"},
		{CreateCampaign{ImageID: img.ID, Target: Target{Devices: []string{"pk1/zz"}}, Waves: "100%"}, 400, "not registered"},
		{CreateCampaign{ImageID: img.ID, Target: Target{Group: "lab"}, Waves: "1,10%"}, 400, "end with 100%"},
		{CreateCampaign{ImageID: img.ID, Target: Target{Group: "lab", Product: "pk1"}, Waves: "100%"}, 400, "exactly one"},
	}
	for _, b := range bad {
		if st := e.postJSON("/campaigns", b.req, &er); st != b.status || !strings.Contains(er.Error, b.errHas) {
			t.Errorf("create %+v: %d %q, want %d mentioning %q", b.req, st, er.Error, b.status, b.errHas)
		}
	}

	var c Campaign
	req := CreateCampaign{ImageID: img.ID, Target: Target{Group: "lab"}, Waves: "1,100%", SuccessPercent: 100, ErrorPercent: 0}
	if st := e.postJSON("/campaigns", req, &c); st != 201 {
		t.Fatalf("create: %d", st)
	}
	if st := e.postJSON("/campaigns", req, &er); st != 400 || !strings.Contains(er.Error, "still in campaign") {
		t.Errorf("overlapping campaign: %d %q", st, er.Error)
	}
	var status Status
	e.do(http.MethodGet, fmt.Sprintf("/campaigns/%d", c.ID), "", nil, &status)
	if status.Campaign.State != string(store.CampaignRunning) || len(status.Waves) != 2 || status.Waves[0].Running != 1 || status.Waves[1].Pending != 3 || len(status.Devices) != 4 {
		t.Errorf("status = %+v", status)
	}
	for _, step := range []struct {
		action string
		status int
		state  store.CampaignState
	}{
		{"resume", 409, ""}, {"pause", 200, store.CampaignPaused}, {"resume", 200, store.CampaignRunning},
		{"cancel", 200, store.CampaignCanceled}, {"pause", 409, ""}, {"explode", 404, ""},
	} {
		var got Campaign
		st := e.postJSON(fmt.Sprintf("/campaigns/%d/%s", c.ID, step.action), struct{}{}, &got)
		if st != step.status || (step.state != "" && got.State != string(step.state)) {
			t.Errorf("%s: %d %s, want %d %s", step.action, st, got.State, step.status, step.state)
		}
	}
	var list []Campaign
	e.do(http.MethodGet, "/campaigns", "", nil, &list)
	if len(list) != 1 || list[0].State != string(store.CampaignCanceled) {
		t.Errorf("list = %+v", list)
	}
	e.do(http.MethodGet, fmt.Sprintf("/campaigns/%d", c.ID), "", nil, &status)
	if status.Waves[1].Canceled != 3 {
		t.Errorf("after cancel: %+v", status.Waves)
	}
	if st := e.do(http.MethodGet, "/campaigns/77", "", nil, &er); st != 404 {
		t.Errorf("unknown campaign: %d", st)
	}
}

// TestDelete: devices, images and campaigns can be deleted, except what a
// running campaign still needs; the refusal names the campaign. Before,
// there was no delete at all.
func TestDelete(t *testing.T) {
	e := newEnv(t)
	for _, dn := range []string{"d0", "d1"} {
		e.postJSON("/devices", AddDevice{ProductKey: "pk1", DeviceName: dn, Board: "b1"}, nil)
	}
	data := e.signed("2.0.0", e.key)
	var img, twin Image
	e.do(http.MethodPost, "/images?board=b1", "application/octet-stream", bytes.NewReader(data), &img)
	// The same bytes for another board share the file.
	e.do(http.MethodPost, "/images?board=b2", "application/octet-stream", bytes.NewReader(data), &twin)
	var c Campaign
	if st := e.postJSON("/campaigns", CreateCampaign{ImageID: img.ID, Target: Target{Devices: []string{"pk1/d0"}}, Waves: "100%", SuccessPercent: 100}, &c); st != 201 {
		t.Fatalf("create: %d", st)
	}
	del := func(path string, want int, errHas string) {
		t.Helper()
		var er Error
		var out any
		if want != http.StatusNoContent {
			out = &er
		}
		if st := e.do(http.MethodDelete, path, "", nil, out); st != want || !strings.Contains(er.Error, errHas) {
			t.Errorf("DELETE %s: %d %q, want %d mentioning %q", path, st, er.Error, want, errHas)
		}
	}
	del("/devices/pk1/d0", http.StatusConflict, "delete device pk1/d0: it is ordered in campaign 1 (running): cancel that campaign first")
	del(fmt.Sprintf("/images/%d", img.ID), http.StatusConflict, fmt.Sprintf("delete image %d: campaign %d (running) uses it", img.ID, c.ID))
	del(fmt.Sprintf("/campaigns/%d", c.ID), http.StatusConflict, "it is running: cancel it first")
	del("/devices/pk1/d1", http.StatusNoContent, "")
	del("/devices/pk1/d1", http.StatusNotFound, "not found")
	del("/images/99", http.StatusNotFound, "not found")
	del("/campaigns/x", http.StatusBadRequest, "not a number")

	if st := e.postJSON(fmt.Sprintf("/campaigns/%d/cancel", c.ID), struct{}{}, nil); st != 200 {
		t.Fatalf("cancel: %d", st)
	}
	del(fmt.Sprintf("/images/%d", img.ID), http.StatusNoContent, "")
	if _, err := os.Stat(filepath.Join(e.dir, "firmware", img.SHA256)); err != nil {
		t.Errorf("the file image %d shares was removed with image %d: %v", twin.ID, img.ID, err)
	}
	del(fmt.Sprintf("/images/%d", twin.ID), http.StatusNoContent, "")
	if _, err := os.Stat(filepath.Join(e.dir, "firmware", twin.SHA256)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the file of the last image deleted is still there: %v", err)
	}
	// A campaign that has ended can go; it no longer needs its image.
	del(fmt.Sprintf("/campaigns/%d", c.ID), http.StatusNoContent, "")
	del(fmt.Sprintf("/campaigns/%d", c.ID), http.StatusNotFound, "not found")
	del("/devices/pk1/d0", http.StatusNoContent, "")
	var left []Device
	e.do(http.MethodGet, "/devices", "", nil, &left)
	if len(left) != 0 {
		t.Errorf("devices after deleting both: %+v", left)
	}
}

// TestDevices_Modules: a device registers its other modules with their
// boards, checked as the device's own; the device's answer lists every
// module, the default one first; a campaign names its module.
func TestDevices_Modules(t *testing.T) {
	e := newEnv(t)
	var e1 Error
	for _, bad := range []struct {
		mods   []ModuleSpec
		errHas string
	}{
		{[]ModuleSpec{{Name: "wi fi", Board: "b2"}}, `modules[0].name: module "wi fi": use letters`},
		{[]ModuleSpec{{Name: "default", Board: "b2"}}, `modules[0].name: "default" is listed twice`},
		{[]ModuleSpec{{Name: "wifi", Board: "b2"}, {Name: "wifi", Board: "b1"}}, `modules[1].name: "wifi" is listed twice`},
		{[]ModuleSpec{{Name: "wifi", Board: "no-such-board"}}, `modules[0].board: board "no-such-board" is not in otaserve's catalog`},
	} {
		req := AddDevice{ProductKey: "pk1", DeviceName: "combo", Board: "b1", Modules: bad.mods}
		if st := e.postJSON("/devices", req, &e1); st != http.StatusBadRequest || !strings.Contains(e1.Error, bad.errHas) {
			t.Errorf("add with modules %+v: status %d %q, want 400 mentioning %q", bad.mods, st, e1.Error, bad.errHas)
		}
	}
	var added Device
	req := AddDevice{ProductKey: "pk1", DeviceName: "combo", Board: "b1", Modules: []ModuleSpec{{Name: "wifi", Board: "b2"}}}
	if st := e.postJSON("/devices", req, &added); st != http.StatusCreated {
		t.Fatalf("add: status %d", st)
	}
	want := []Module{{Name: "default", Board: "b1", State: "registered"}, {Name: "wifi", Board: "b2", State: "registered"}}
	if !reflect.DeepEqual(added.Modules, want) {
		t.Errorf("modules = %+v, want %+v", added.Modules, want)
	}
}
