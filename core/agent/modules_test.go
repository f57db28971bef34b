package agent_test

import (
	"strings"
	"testing"

	"github.com/otaport/otaport/core/agent"
	"github.com/otaport/otaport/core/cloud"
	"github.com/otaport/otaport/core/image"
)

// TestAgent_TwoModulesUpgradeIndependently runs a device of two modules,
// its MCU (the default module, nucleo-h743zi, ECDSA) and its Wi-Fi module
// (esp32-devkitc, Ed25519, its own key), each on its own port over its own
// emulated flash: the agent informs once per module, carries out an order
// for each module at the same time on that module's port, reports each
// order's progress with its module, and refuses an order for a module the
// device does not have.
func TestAgent_TwoModulesUpgradeIndependently(t *testing.T) {
	mcu, wifi := startTwoModules(t)
	mcu.waitFor("inform of the MCU", 0, informOfModule(cloud.DefaultModule, "1.0.0+0"))
	i := mcu.waitFor("inform of the Wi-Fi module", 0, informOfModule("wifi", "1.0.0+0"))

	// One order per module, at once: each goes to its module's engine.
	wo := wifi.newOrder(2001, "2.1.0", func(o *cloud.Order) { o.Data.Module = "wifi" })
	mcu.publish(wo)
	mcu.order(2002, "1.1.0", nil)
	mcu.waitFor("inform of Wi-Fi 2.1.0", i, informOfModule("wifi", "2.1.0+0"))
	mcu.waitFor("inform of the MCU 1.1.0", i, informOfModule(cloud.DefaultModule, "1.1.0+0"))
	if s := wifi.running(); s.Version != "2.1.0+0" || !s.Confirmed {
		t.Errorf("the Wi-Fi module runs %+v, want 2.1.0+0 confirmed", s)
	}
	if s := mcu.running(); s.Version != "1.1.0+0" || !s.Confirmed {
		t.Errorf("the MCU runs %+v, want 1.1.0+0 confirmed", s)
	}
	// Every progress report names its order and that order's module.
	want := map[int64]string{2001: "wifi", 2002: cloud.DefaultModule}
	n := 0
	for _, m := range mcu.since(i) {
		if m.kind != cloud.KindProgress {
			continue
		}
		p, err := cloud.ParseProgress(m.payload)
		if err != nil {
			t.Fatal(err)
		}
		if mod, ok := want[p.ID]; !ok || p.Module() != mod {
			t.Errorf("progress %s: want the module of its order (%v)", m.payload, want)
		}
		n++
	}
	if n < 4 {
		t.Errorf("%d progress reports for two orders", n)
	}

	// A module the device does not have: refused, reported for that module,
	// and neither port touched.
	j := len(mcu.since(0))
	bo := wifi.newOrder(2003, "9.0.0", func(o *cloud.Order) { o.Data.Module = "bluetooth" })
	mcu.publish(bo)
	k := mcu.waitFor("refusal of the bluetooth order", j, func(m msg) bool {
		p, err := cloud.ParseProgress(m.payload)
		return m.kind == cloud.KindProgress && err == nil && p.ID == 2003 && p.Params.Step == cloud.StepUpgradeFailed &&
			p.Module() == "bluetooth" && strings.Contains(p.Params.Desc, `no module "bluetooth"`) && strings.Contains(p.Params.Desc, "default, wifi")
	})
	if wifi.running().Version != "2.1.0+0" || mcu.running().Version != "1.1.0+0" {
		t.Errorf("an order for an unknown module changed a module: wifi %s, mcu %s", wifi.running().Version, mcu.running().Version)
	}
	for _, m := range mcu.since(j)[:k-j] {
		if m.kind == cloud.KindProgress && !strings.Contains(string(m.payload), `"id":2003`) {
			t.Errorf("report for another order after the refused one: %s", m.payload)
		}
	}
}

// TestAgent_DependencyKeepsTheModulesOfAReleaseTogether: an MCU image that
// needs the Wi-Fi module at 2.0.0 (a DEPENDENCY TLV, imgtool sign -d) is
// refused before its boot request while the Wi-Fi module runs 1.0.0, and
// the refusal says what is missing: an order withheld for one module
// (Uptane's partial bundle) cannot leave the other running an image that
// needs it. Once the Wi-Fi module runs 2.1.0, the MCU image installs.
func TestAgent_DependencyKeepsTheModulesOfAReleaseTogether(t *testing.T) {
	mcu, wifi := startTwoModules(t)
	i := mcu.waitFor("inform of the Wi-Fi module", 0, informOfModule("wifi", "1.0.0+0"))

	mcu.deps = []image.Dependency{{ImageID: 1, MinVersion: image.Version{Major: 2}}}
	mcu.order(3001, "1.1.0", nil)
	mcu.waitFor("refusal of the MCU image", i, func(m msg) bool {
		p, err := cloud.ParseProgress(m.payload)
		return m.kind == cloud.KindProgress && err == nil && p.ID == 3001 && p.Params.Step.Failed() &&
			strings.Contains(p.Params.Desc, "needs module wifi (image 1) at 2.0.0+0 or later, which runs 1.0.0+0")
	})
	if s := mcu.running(); s.Version != "1.0.0+0" || !s.Confirmed {
		t.Fatalf("the MCU runs %+v after a refused image, want 1.0.0+0 confirmed", s)
	}

	j := len(mcu.since(0))
	mcu.publish(wifi.newOrder(3002, "2.1.0", func(o *cloud.Order) { o.Data.Module = "wifi" }))
	mcu.waitFor("inform of Wi-Fi 2.1.0", j, informOfModule("wifi", "2.1.0+0"))
	mcu.order(3003, "1.3.0", nil)
	mcu.waitFor("inform of the MCU 1.3.0", j, informOfModule(cloud.DefaultModule, "1.3.0+0"))
	if s := mcu.running(); s.Version != "1.3.0+0" || !s.Confirmed {
		t.Fatalf("the MCU runs %+v, want 1.3.0+0 confirmed once its dependency is met", s)
	}
}

// startTwoModules starts an agent of two modules: the MCU (default, image
// 0) on the rig's board and the Wi-Fi module (image 1) on esp32-devkitc,
// with its own key. The MCU's rig watches the device's messages.
func startTwoModules(t *testing.T) (mcu, wifi *rig) {
	mcu = newRig(t)
	wifi = newRigOn(t, "esp32-devkitc")
	cfg := mcu.config()
	cfg.Modules = []agent.ModuleConfig{
		{Name: cloud.DefaultModule, Plugin: "otaport-" + mcu.board, Flash: "mcu.flash"},
		{Name: "wifi", Plugin: "otaport-" + wifi.board, Flash: "wifi.flash", PublicKeys: []string{wifi.keyFile}},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	mcu.startWith(agent.Options{Config: cfg, Ports: map[string]agent.Port{cloud.DefaultModule: mcu.port, "wifi": wifi.port}})
	return mcu, wifi
}

func informOfModule(module, v string) func(m msg) bool {
	return func(m msg) bool {
		if m.kind != cloud.KindInform {
			return false
		}
		in, err := cloud.ParseInform(m.payload)
		return err == nil && in.Params.Version == v && in.Module() == module
	}
}

// TestNew_ModuleWithoutPort: a module listed in the config with no port is
// an error that names it.
func TestNew_ModuleWithoutPort(t *testing.T) {
	r := newRig(t)
	cfg := r.config()
	cfg.Modules = []agent.ModuleConfig{{Name: "default"}, {Name: "wifi"}}
	_, err := agent.New(agent.Options{Config: cfg, Ports: map[string]agent.Port{"default": r.port}})
	if err == nil || !strings.Contains(err.Error(), "modules[1]") || !strings.Contains(err.Error(), "no port for module wifi") {
		t.Errorf("New: %v, want an error naming modules[1] and wifi", err)
	}
}
