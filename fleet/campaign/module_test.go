package campaign

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/fleet/store"
)

// TestService_ModuleCampaign: a campaign for module "wifi" of devices that
// also have the default module orders the image of each device's Wi-Fi
// board with module "wifi", counts only the Wi-Fi module's reports, updates
// the Wi-Fi module's version in the registry, leaves the default module's
// as it is, and runs beside a campaign of the default module.
func TestService_ModuleCampaign(t *testing.T) {
	svc, st := newService(t, filepath.Join(t.TempDir(), "fleet.db"))
	defer st.Close()
	mcuImg := seed(t, st, 2) // pk/d0, pk/d1: board b, 1.0.0+0
	for _, dn := range []string{"d0", "d1"} {
		if err := st.UpdateDevice("pk", dn, func(d *store.Device) error {
			d.Modules = []store.Module{{Name: "wifi", Board: "w", Version: "1.0.0", State: store.DeviceIdle}}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.AddDevice(store.Device{ProductKey: "pk", DeviceName: "solo", Board: "b", Version: "1.0.0+0"}); err != nil {
		t.Fatal(err)
	}
	wifiImg, err := st.AddImage(store.Image{Version: "2.1.0", Board: "w", Size: 100, SHA256: fmt.Sprintf("%064x", 7), MD5: fmt.Sprintf("%032x", 8), SignatureType: "ed25519"})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	svc.SetPublisher(rec)
	defer svc.SetPublisher(nil)
	ctx := context.Background()

	// A device without the module, and the module's board, are checked.
	for _, bad := range []struct {
		req    CreateRequest
		errHas string
	}{
		{CreateRequest{Module: "wifi", ImageIDs: []uint64{wifiImg.ID}, Target: store.Target{Product: "pk"}}, "device pk/solo has no module wifi (it has default): register it (otaserve device add --module wifi=BOARD)"},
		{CreateRequest{Module: "wifi", ImageIDs: []uint64{mcuImg.ID}, Target: store.Target{Devices: []string{"pk/d0"}}}, "device pk/d0's module wifi is a w board and the campaign has no image for w"},
		{CreateRequest{Module: "wi fi", ImageIDs: []uint64{wifiImg.ID}, Target: store.Target{Devices: []string{"pk/d0"}}}, `module "wi fi": use letters`},
	} {
		bad.req.Waves, bad.req.SuccessPercent = "100%", 100
		if _, err := svc.Create(ctx, bad.req); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), bad.errHas) {
			t.Errorf("create %+v: %v, want ErrInvalid mentioning %q", bad.req, err, bad.errHas)
		}
	}

	target := store.Target{Devices: []string{"pk/d0", "pk/d1"}}
	wc, err := svc.Create(ctx, CreateRequest{Module: "wifi", ImageIDs: []uint64{wifiImg.ID}, Target: target, Waves: "100%", SuccessPercent: 100})
	if err != nil {
		t.Fatal(err)
	}
	if wc.Module != "wifi" {
		t.Errorf("campaign module %q, want wifi", wc.Module)
	}
	// The default module's campaign runs beside it on the same devices.
	mc, err := svc.Create(ctx, CreateRequest{ImageIDs: []uint64{mcuImg.ID}, Target: target, Waves: "100%", SuccessPercent: 100})
	if err != nil {
		t.Fatalf("a default module campaign beside the wifi one: %v", err)
	}
	flush(t, svc)
	for _, dn := range []string{"d0", "d1"} {
		got := map[string]string{}
		for _, o := range rec.orders(t, "pk", dn) {
			got[o.Module()] = o.Data.Version + " for " + o.Data.Otaport.Board
		}
		want := map[string]string{"wifi": "2.1.0 for w", cloud.DefaultModule: "2.0.0+0 for b"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s's orders by module: %v, want %v", dn, got, want)
		}
	}

	// The default module's version report does not finish the wifi
	// campaign, and a wifi failure fails only the wifi campaign's device.
	msg(t, svc, "inform", "d0", `{"id":1,"params":{"version":"2.1.0"}}`)
	msg(t, svc, "progress", "d1", `{"id":2,"params":{"step":"-2","desc":"no route","module":"wifi"}}`)
	msg(t, svc, "inform", "d0", `{"id":3,"params":{"version":"2.1.0","module":"wifi"}}`)
	ws, _ := svc.Status(wc.ID)
	ms, _ := svc.Status(mc.ID)
	states := func(st Status) string {
		var out []string
		for _, p := range st.Devices {
			out = append(out, p.Device+"="+string(p.State))
		}
		return strings.Join(out, " ")
	}
	if got := states(ws); got != "pk/d0=finished pk/d1=failed" {
		t.Errorf("wifi campaign devices: %s", got)
	}
	if got := states(ms); strings.Contains(got, "finished") || strings.Contains(got, "failed") {
		t.Errorf("default module campaign devices: %s, want both still upgrading", got)
	}
	d0, err := st.Device("pk", "d0")
	if err != nil {
		t.Fatal(err)
	}
	w, _ := d0.Module("wifi")
	if w.Version != "2.1.0" || w.State != store.DeviceIdle || d0.Version != "2.1.0" {
		t.Errorf("d0 in the registry: default %s, wifi %+v", d0.Version, w)
	}
	d1, _ := st.Device("pk", "d1")
	if w, _ := d1.Module("wifi"); w.State != store.DeviceFailed || d1.State == store.DeviceFailed {
		t.Errorf("d1: wifi %+v, default state %s; want the wifi module failed and the default one not", w, d1.State)
	}
}
