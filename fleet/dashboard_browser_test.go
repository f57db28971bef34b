package fleet

import (
	"context"
	"crypto"
	"flag"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/otaport/otaport/core/image"
	"github.com/otaport/otaport/fleet/api"
)

var screenshots = flag.String("screenshots", "", "write the dashboard browser test's screenshots (PNG) to this directory (docs/ for the documentation)")

// chromium finds a headless-capable Chromium. Without one the browser test
// skips on a developer's machine and fails in CI (CI=true), which installs
// it (.ci/run).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("the dashboard browser test needs Chromium and CI=true: install it (apt-get install chromium; .ci/run does)")
	}
	t.Skip("the dashboard browser test needs Chromium, which is not installed: apt-get install chromium (in CI, where CI=true, the test fails instead)")
	return ""
}

// TestDashboard_Browser drives the dashboard in headless Chromium against a
// real server with three devices signed in to its broker: it signs in with
// the printed link, uploads an image and creates a campaign from the pages,
// and watches the campaign page until every device has confirmed.
func TestDashboard_Browser(t *testing.T) {
	exe := chromium(t)
	t.Run("bbolt", func(t *testing.T) { testDashboardBrowser(t, exe, "") })
	// The dashboard on the replicas' store: every page and action it
	// takes, as an operator of otaserve run --db postgres://… sees them.
	t.Run("postgres", func(t *testing.T) { testDashboardBrowser(t, exe, pg.DB(t)) })
}

func testDashboardBrowser(t *testing.T, exe, db string) {
	dir := t.TempDir()
	key, _ := image.GenerateKey(image.KeyEd25519)
	r := startDB(t, dir, db, []crypto.PublicKey{key.Public()}, "")
	// A cleanup, not a defer: it runs after the devices' (registered
	// later), so no device reconnects to a broker shutting down.
	t.Cleanup(func() { r.stop(t) })
	devs := connectDevices(t, r, []string{"ok", "ok", "ok"}, nil)
	imgFile := filepath.Join(dir, "app-2.0.0.img")
	if err := os.WriteFile(imgFile, signedImage(t, key, "2.0.0"), 0o600); err != nil {
		t.Fatal(err)
	}

	// /dev/shm is small in containers and CI machines: Chromium's shared
	// memory goes to /tmp instead, or it may crash at start.
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.WindowSize(1280, 900), chromedp.Flag("disable-dev-shm-usage", true))
	// Start the browser on the tab's own context: the first Run's context
	// owns it, and the steps below run with timeouts of their own. A
	// browser that fails to start is started again, twice at most: what
	// is tested is the page, not the start of a browser on a busy machine.
	var tab context.Context
	for attempt := 1; ; attempt++ {
		actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
		t.Cleanup(cancelAlloc)
		var cancelTab context.CancelFunc
		tab, cancelTab = chromedp.NewContext(actx)
		t.Cleanup(cancelTab)
		err := chromedp.Run(tab)
		if err == nil {
			break
		}
		if attempt == 3 {
			t.Fatalf("start %s (%d attempts): %v", exe, attempt, err)
		}
		t.Logf("start %s: %v; starting it again", exe, err)
		cancelTab()
		cancelAlloc()
	}

	shot := func(name string) chromedp.Action {
		return chromedp.ActionFunc(func(ctx context.Context) error {
			if *screenshots == "" {
				return nil
			}
			var png []byte
			// Quality 100 makes a PNG; below, a JPEG.
			if err := chromedp.FullScreenshot(&png, 100).Do(ctx); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(*screenshots, "dashboard-"+name+".png"), png, 0o644)
		})
	}
	run := func(what string, actions ...chromedp.Action) {
		t.Helper()
		ctx, cancel := context.WithTimeout(tab, 30*time.Second)
		defer cancel()
		if err := chromedp.Run(ctx, actions...); err != nil {
			// What the page showed says more than a timeout.
			var page, at string
			dctx, cancel := context.WithTimeout(tab, 5*time.Second)
			defer cancel()
			_ = chromedp.Run(dctx, chromedp.Location(&at), chromedp.Evaluate(`document.body.innerText`, &page))
			t.Fatalf("%s: %v\nthe page at %s:\n%s", what, err, at, page)
		}
	}

	// The fleet page lists the devices once they reported their version
	// (the page polls).
	run("sign in", chromedp.Navigate(r.srv.LoginURL()),
		chromedp.WaitVisible(`#devices`, chromedp.ByQuery),
		chromedp.WaitVisible(`tr[data-device="pkA/dev-2"] td.state-idle`, chromedp.ByQuery))
	var url string
	run("read the URL", chromedp.Location(&url))
	if strings.Contains(url, "login=") {
		t.Errorf("after sign-in the URL still holds the secret: %s", url)
	}
	run("screenshot the fleet", shot("fleet"))

	var notice string
	run("upload an image",
		chromedp.Navigate(strings.TrimSuffix(url, "/")+"/images"),
		chromedp.SendKeys(`input[name=board]`, "board-a", chromedp.ByQuery),
		chromedp.SendKeys(`input[name=version]`, "2.0.0", chromedp.ByQuery),
		chromedp.SetUploadFiles(`input[name=file]`, []string{imgFile}, chromedp.ByQuery),
		chromedp.Click(`form.card button`, chromedp.ByQuery),
		chromedp.WaitVisible(`.notice`, chromedp.ByQuery),
		chromedp.Text(`.notice`, &notice, chromedp.ByQuery),
		shot("images"))
	if !strings.Contains(notice, "image 1: 2.0.0+0 for board-a") {
		t.Fatalf("upload notice %q", notice)
	}

	run("create a campaign",
		chromedp.Navigate(strings.TrimSuffix(url, "/")+"/campaigns"),
		chromedp.SetValue(`select[name=image]`, "1", chromedp.ByQuery),
		chromedp.SetValue(`select[name=target_kind]`, "group", chromedp.ByQuery),
		chromedp.SendKeys(`input[name=target]`, "lab", chromedp.ByQuery),
		chromedp.SetValue(`input[name=waves]`, "1,100%", chromedp.ByQuery),
		chromedp.Click(`#create button`, chromedp.ByQuery),
		chromedp.WaitVisible(`#waves`, chromedp.ByQuery))
	// The campaign page polls itself: wait for what the devices do.
	run("watch the devices confirm",
		chromedp.WaitVisible(`#campaign-state.state-finished`, chromedp.ByQuery),
		shot("campaign"))
	var states []string
	run("read the devices' states", chromedp.Evaluate(
		`[...document.querySelectorAll('#progress td.state')].map(e => e.textContent)`, &states))
	if strings.Join(states, " ") != "finished finished finished" {
		t.Errorf("devices on the campaign page: %v, want three finished", states)
	}
	run("the fleet shows the new version",
		chromedp.Navigate(strings.TrimSuffix(url, "/")+"/?version=2.0.0%2B0"),
		chromedp.WaitVisible(`tr[data-device="pkA/dev-0"] td.state-idle`, chromedp.ByQuery),
		shot("fleet-after"),
		chromedp.Navigate(strings.TrimSuffix(url, "/")+"/campaigns"),
		chromedp.WaitVisible(`#campaigns`, chromedp.ByQuery),
		shot("campaigns"),
		chromedp.Navigate(strings.TrimSuffix(url, "/")+"/devices/pkA/dev-1"),
		chromedp.WaitVisible(`#live`, chromedp.ByQuery),
		shot("device"))
	var versions []string
	run("read the fleet's versions", chromedp.Navigate(strings.TrimSuffix(url, "/")+"/"),
		chromedp.WaitVisible(`#devices`, chromedp.ByQuery),
		chromedp.Evaluate(`[...document.querySelectorAll('#devices td.version')].map(e => e.textContent)`, &versions))
	if strings.Join(versions, " ") != "2.0.0+0 2.0.0+0 2.0.0+0" {
		t.Errorf("versions on the fleet page: %v", versions)
	}

	// A link made with a read token opens a read session: the header says
	// so, and the images page offers no upload.
	var wall api.NewToken
	if code := r.post(t, "/tokens", api.CreateToken{Name: "wall", Scope: "read"}, &wall); code != http.StatusCreated {
		t.Fatalf("create a read token: %d", code)
	}
	req, _ := http.NewRequest(http.MethodPost, r.base+"/dashboard/login-link", nil)
	req.Header.Set("Authorization", "Bearer "+wall.Secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	link, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var who string
	var forms int
	run("a read session", chromedp.Navigate(strings.TrimSpace(string(link))),
		chromedp.WaitVisible(`#devices`, chromedp.ByQuery),
		chromedp.Navigate(strings.TrimSuffix(url, "/")+"/images"),
		chromedp.WaitVisible(`#images`, chromedp.ByQuery),
		chromedp.Text(`#who`, &who, chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelectorAll('form.card').length`, &forms))
	if !strings.Contains(who, "wall (read: read only)") || forms != 0 {
		t.Errorf("a read session: header %q, %d upload forms; want read only and none", who, forms)
	}
	for _, d := range devs {
		if len(d.errs) > 0 {
			t.Errorf("device: %v", d.errs)
		}
	}
}
