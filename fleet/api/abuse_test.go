package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestAbuse_BodiesTooLargeOrMalformed: a JSON body over the limit is 413
// with what the limit is, not a syntax error about a body cut short; JSON
// that does not parse, or does not fit the request, is 400 naming the
// request body; an image over its board's limit is 413 and leaves nothing
// behind in the firmware store.
func TestAbuse_BodiesTooLargeOrMalformed(t *testing.T) {
	e := newEnv(t)
	huge := `{"product_key":"pk1","device_name":"` + strings.Repeat("a", 2<<20) + `","board":"b1"}`
	for _, c := range []struct {
		name, path, ctype, body string
		status                  int
		errHas                  string
	}{
		{"device over the limit", "/devices", "application/json", huge, 413, "request body: too large: more than 1048576 bytes of JSON"},
		{"campaign over the limit", "/campaigns", "application/json", `{"target":{"devices":["` + strings.Repeat(`pk1/d","`, 300<<10) + `"]}}`, 413, "more than 1048576 bytes"},
		{"not JSON", "/devices", "application/json", `product_key=pk1`, 400, "request body: invalid character"},
		{"cut short", "/devices", "application/json", `{"product_key":"pk1",`, 400, "request body: unexpected EOF"},
		{"wrong type", "/devices", "application/json", `{"product_key":5}`, 400, "request body: json: cannot unmarshal number"},
		{"unknown field", "/campaigns", "application/json", `{"image":1}`, 400, `request body: json: unknown field "image"`},
		{"empty", "/campaigns", "application/json", ``, 400, "request body: EOF"},
		{"image over its board's limit", "/images?board=b1", "application/octet-stream", string(bytes.Repeat([]byte{0xff}, 1<<20)), 413, "board b1 takes images of at most 65536 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var er Error
			if got := e.do(http.MethodPost, c.path, c.ctype, strings.NewReader(c.body), &er); got != c.status || !strings.Contains(er.Error, c.errHas) {
				t.Errorf("%d %q, want %d with %q", got, er.Error, c.status, c.errHas)
			}
		})
	}
	var devs []Device
	e.do(http.MethodGet, "/devices", "", nil, &devs)
	var imgs []Image
	e.do(http.MethodGet, "/images", "", nil, &imgs)
	left, _ := os.ReadDir(filepath.Join(e.dir, "firmware"))
	if len(devs) != 0 || len(imgs) != 0 || len(left) != 0 {
		t.Errorf("after refused requests: %d devices, %d images, %d firmware files; want none", len(devs), len(imgs), len(left))
	}
}

// post sends a JSON request from any goroutine: the status and the body.
func (e *env) post(path string, v any) (int, []byte, error) {
	b, _ := json.Marshal(v)
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+Prefix+path, bytes.NewReader(b))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// TestAbuse_ConcurrentRegistrationsAndCampaigns: many registrations at once,
// each name sent several times, register each device once (201 once, 409
// for the others) with nothing lost; many campaigns created at once, each
// for its own device, all get their own id and are all listed. Run with
// -race.
func TestAbuse_ConcurrentRegistrationsAndCampaigns(t *testing.T) {
	e := newEnv(t)
	const devices, tries = 40, 3
	var mu sync.Mutex
	created := map[string]int{}
	var errs []string
	var wg sync.WaitGroup
	for i := range devices * tries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dn := fmt.Sprintf("d%d", i%devices)
			status, body, err := e.post("/devices", AddDevice{ProductKey: "pk1", DeviceName: dn, Board: "b1"})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				errs = append(errs, err.Error())
			case status == http.StatusCreated:
				created[dn]++
			case status != http.StatusConflict:
				errs = append(errs, fmt.Sprintf("%s: %d %s", dn, status, body))
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("concurrent registrations: %s", strings.Join(errs, "; "))
	}
	for i := range devices {
		if dn := fmt.Sprintf("d%d", i); created[dn] != 1 {
			t.Errorf("%s registered %d times, want once", dn, created[dn])
		}
	}
	var devs []Device
	e.do(http.MethodGet, "/devices", "", nil, &devs)
	if len(devs) != devices {
		t.Fatalf("%d devices listed, want %d", len(devs), devices)
	}

	var img Image
	if got := e.do(http.MethodPost, "/images?board=b1", "application/octet-stream", bytes.NewReader(e.signed("2.0.0", e.key)), &img); got != http.StatusCreated {
		t.Fatalf("upload: %d", got)
	}
	ids := map[uint64]string{}
	for i := range devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dn := fmt.Sprintf("pk1/d%d", i)
			status, body, err := e.post("/campaigns", CreateCampaign{ImageID: img.ID, Target: Target{Devices: []string{dn}}, Waves: "100%"})
			var c Campaign
			if err == nil && status == http.StatusCreated {
				err = json.Unmarshal(body, &c)
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				errs = append(errs, err.Error())
			case status != http.StatusCreated:
				errs = append(errs, fmt.Sprintf("%s: %d %s", dn, status, body))
			case ids[c.ID] != "":
				errs = append(errs, fmt.Sprintf("campaign id %d given to %s and %s", c.ID, ids[c.ID], dn))
			default:
				ids[c.ID] = dn
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("concurrent campaigns: %s", strings.Join(errs, "; "))
	}
	var list []Campaign
	e.do(http.MethodGet, "/campaigns", "", nil, &list)
	if len(list) != devices || len(ids) != devices {
		t.Errorf("%d campaigns listed, %d ids given, want %d of each", len(list), len(ids), devices)
	}
	for _, c := range list {
		if ids[c.ID] == "" {
			t.Errorf("campaign %d listed, but no creation answered with it", c.ID)
		}
	}
}
