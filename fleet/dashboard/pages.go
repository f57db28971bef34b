package dashboard

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/otaport/otaport/fleet/api"
	"github.com/otaport/otaport/fleet/campaign"
	"github.com/otaport/otaport/fleet/store"
)

// page is what every template gets; the fields a page does not use stay
// zero.
type page struct {
	Title    string
	Nav      string
	Self     string // this page's URL, which its live block polls
	CSRF     string
	Message  string // a notice at the top of the page
	Error    string // an error at the top of the page
	LinkPath string
	// Token and Scope are the session's; Can says which forms its scope
	// may send, so that the page offers no other.
	Token string
	Scope api.Scope
	Can   can

	Filter    filter
	Choices   choices
	Devices   []deviceRow
	Chart     template.HTML
	Device    deviceRow
	History   []historyRow
	Orders    []orderRow
	Images    []store.Image
	Campaigns []campaignRow
	Campaign  campaignRow
	Waves     []waveRow
	Progress  []store.Progress
}

type filter struct{ Board, Group, Version, State, Q string }

// can is what a session may change: upload images, create campaigns, and
// pause, resume or cancel them.
type can struct{ Upload, Create, Act bool }

type choices struct{ Boards, Groups, Versions, States []string }

type deviceRow struct {
	store.Device
	Key    string
	Online bool
}

var funcs = template.FuncMap{
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format("2006-01-02 15:04:05") + " UTC"
	},
	"size": humanSize,
	// A progress record counts waves from 0; the pages from 1, as the API's
	// wave status does.
	"wave": func(i int) int { return i + 1 },
	"pct": func(n, total int) int {
		if total == 0 {
			return 0
		}
		return n * 100 / total
	},
	"short": func(s string) string {
		if len(s) > 12 {
			return s[:12]
		}
		return s
	},
	"devpath": func(key string) string {
		pk, dn, _ := store.SplitDeviceKey(key)
		return "/devices/" + url.PathEscape(pk) + "/" + url.PathEscape(dn)
	},
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// render writes a page, or only its "live" block when htmx asks for it
// (its polling swaps that block in place).
func (d *Dashboard) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	if p.Nav == "" {
		p.Nav = name
	}
	p.Self = r.URL.Path
	if q := r.URL.Query(); len(q) > 0 {
		// Notices are shown once, not again at every poll.
		q.Del("msg")
		q.Del("err")
		if len(q) > 0 {
			p.Self += "?" + q.Encode()
		}
	}
	if s, ok := sessionOf(r); ok {
		p.CSRF, p.Token, p.Scope = s.csrf, s.caller.Token, s.caller.Scope
		p.Can = can{Upload: s.allows(uploadRoute), Create: s.allows(createRoute), Act: s.allows(campaignRoute)}
	}
	tmpl := "layout.html"
	if r.Header.Get("HX-Request") == "true" && r.Header.Get("HX-Target") == "live" {
		tmpl = "live"
	}
	var buf bytes.Buffer
	if err := d.pages[name].ExecuteTemplate(&buf, tmpl, p); err != nil {
		d.log.Error("dashboard: render", "page", name, "err", err)
		http.Error(w, "the page could not be rendered; the server log says why", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func (d *Dashboard) fail(w http.ResponseWriter, r *http.Request, err error) {
	d.log.Error("dashboard: read the fleet", "path", r.URL.Path, "err", err)
	http.Error(w, "reading the fleet failed: "+err.Error(), http.StatusInternalServerError)
}

func (d *Dashboard) online() map[string]bool {
	on := map[string]bool{}
	if d.cfg.Online != nil {
		for _, k := range d.cfg.Online() {
			on[k] = true
		}
	}
	return on
}

func (d *Dashboard) fleetPage(w http.ResponseWriter, r *http.Request, _ session) {
	q := r.URL.Query()
	f := filter{Board: q.Get("board"), Group: q.Get("group"), Version: q.Get("version"), State: q.Get("state"), Q: strings.TrimSpace(q.Get("q"))}
	devs, err := d.cfg.Store.Devices()
	if err != nil {
		d.fail(w, r, err)
		return
	}
	on := d.online()
	var c choices
	p := page{Title: "Fleet", Filter: f}
	for _, dev := range devs {
		c.Boards = append(c.Boards, dev.Board)
		c.Groups = append(c.Groups, dev.Group)
		c.Versions = append(c.Versions, dev.Version)
		row := deviceRow{Device: dev, Key: dev.Key(), Online: on[dev.Key()]}
		if (f.Board == "" || dev.Board == f.Board) && (f.Group == "" || dev.Group == f.Group) &&
			(f.Version == "" || dev.Version == f.Version) && matchState(row, f.State) &&
			(f.Q == "" || strings.Contains(strings.ToLower(row.Key+" "+dev.Board+" "+dev.Group+" "+dev.Version+" "+dev.LastError), strings.ToLower(f.Q))) {
			p.Devices = append(p.Devices, row)
		}
	}
	for _, l := range []*[]string{&c.Boards, &c.Groups, &c.Versions} {
		*l = uniq(*l)
	}
	c.States = []string{"online", "offline", string(store.DeviceRegistered), string(store.DeviceIdle), string(store.DeviceUpgrading), string(store.DeviceFailed)}
	p.Choices = c
	h, err := d.history(devs)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	p.Chart = versionChart(h, devs, d.cfg.Now())
	d.render(w, r, http.StatusOK, "fleet", p)
}

// matchState is the state filter: a device's own state, or whether it is
// online.
func matchState(r deviceRow, want string) bool {
	switch want {
	case "":
		return true
	case "online":
		return r.Online
	case "offline":
		return !r.Online
	}
	return string(r.State) == want
}

func uniq(l []string) []string {
	l = slices.DeleteFunc(l, func(s string) bool { return s == "" })
	slices.Sort(l)
	return slices.Compact(l)
}

type historyRow struct {
	At      time.Time
	Version string
	How     string
}

type orderRow struct {
	Campaign uint64
	Version  string
	store.Progress
}

func (d *Dashboard) device(w http.ResponseWriter, r *http.Request, _ session) {
	dev, err := d.cfg.Store.Device(r.PathValue("pk"), r.PathValue("dn"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	p := page{Title: dev.Key(), Nav: "fleet", Device: deviceRow{Device: dev, Key: dev.Key(), Online: d.online()[dev.Key()]}}
	h, err := d.history([]store.Device{dev})
	if err != nil {
		d.fail(w, r, err)
		return
	}
	for _, e := range h.events[dev.Key()] {
		p.History = append(p.History, historyRow{At: e.at, Version: e.version, How: e.how})
	}
	p.Orders = h.orders[dev.Key()]
	d.render(w, r, http.StatusOK, "device", p)
}

func (d *Dashboard) images(w http.ResponseWriter, r *http.Request, _ session) {
	imgs, err := d.cfg.Store.Images()
	if err != nil {
		d.fail(w, r, err)
		return
	}
	slices.Reverse(imgs) // newest first
	d.render(w, r, http.StatusOK, "images", page{Title: "Images", Images: imgs, Message: r.URL.Query().Get("msg"),
		Error: r.URL.Query().Get("err"), Choices: d.boards()})
}

func (d *Dashboard) boards() choices {
	var c choices
	if devs, err := d.cfg.Store.Devices(); err == nil {
		for _, dev := range devs {
			c.Boards = append(c.Boards, dev.Board)
			c.Groups = append(c.Groups, dev.Group)
		}
	}
	c.Boards, c.Groups = uniq(c.Boards), uniq(c.Groups)
	return c
}

// callAPI runs one request through the REST API's handler, as the
// session's caller: the API checks its scope as it checks a token's.
func (d *Dashboard) callAPI(r *http.Request, method, path, ctype string, body io.Reader, out any) error {
	s, ok := sessionOf(r)
	if !ok {
		return errors.New("no session") // signedIn puts one on every request that gets here
	}
	req, err := http.NewRequestWithContext(api.WithCaller(r.Context(), s.caller), method, path, body)
	if err != nil {
		return err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	rec := &answer{header: http.Header{}, code: http.StatusOK}
	d.cfg.API.ServeHTTP(rec, req)
	if rec.code >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(rec.body.Bytes(), &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("%s %s: %d %s", method, path, rec.code, strings.TrimSpace(rec.body.String()))
	}
	if out != nil {
		return json.Unmarshal(rec.body.Bytes(), out)
	}
	return nil
}

// answer keeps an in-process API answer (net/http/httptest's recorder
// would do, but that package registers a command-line flag in the server).
type answer struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (a *answer) Header() http.Header         { return a.header }
func (a *answer) WriteHeader(code int)        { a.code = code }
func (a *answer) Write(p []byte) (int, error) { return a.body.Write(p) }

// upload passes the page's multipart form to the API unchanged: the API
// reads board, version and file from it.
func (d *Dashboard) upload(w http.ResponseWriter, r *http.Request, _ session) {
	var img api.Image
	err := d.callAPI(r, http.MethodPost, api.Prefix+"/images", r.Header.Get("Content-Type"), r.Body, &img)
	if err != nil {
		http.Redirect(w, r, "/images?err="+url.QueryEscape("upload refused: "+err.Error()), http.StatusSeeOther)
		return
	}
	d.log.Info("dashboard: image uploaded", "image", img.ID, "version", img.Version, "board", img.Board)
	http.Redirect(w, r, "/images?msg="+url.QueryEscape(fmt.Sprintf("image %d: %s for %s, %s", img.ID, img.Version, img.Board, humanSize(img.Size))), http.StatusSeeOther)
}

type campaignRow struct {
	store.Campaign
	Total, Finished, Failed, Running int
	BytesSent                        int64
	// Bytes is what the orders carry against full images (delta images).
	Bytes campaign.Bytes
	// Images names the campaign's image per board, "2.0.0+0 for b-l475e-iot01a".
	Images string
	sizes  map[uint64]int64 // image ID -> bytes
}

// size is the size of the file a device of the campaign is sent: its
// delta image, or its board's image.
func (c campaignRow) size(p store.Progress) int64 {
	if p.Delta != 0 {
		return c.sizes[p.Delta]
	}
	img, _ := c.Campaign.Image(p)
	return c.sizes[img.ID]
}

func (d *Dashboard) campaignRows() ([]campaignRow, error) {
	cs, err := d.cfg.Store.Campaigns()
	if err != nil {
		return nil, err
	}
	var out []campaignRow
	for i := len(cs) - 1; i >= 0; i-- {
		st, err := d.cfg.Campaigns.Status(cs[i].ID)
		if err != nil {
			return nil, err
		}
		out = append(out, d.row(st))
	}
	return out, nil
}

// row sums a campaign's status. Bytes sent are estimated from the steps the
// devices reported (a device at 40% has fetched 40% of the image).
func (d *Dashboard) row(st campaign.Status) campaignRow {
	c := campaignRow{Campaign: st.Campaign, Bytes: st.Bytes, sizes: map[uint64]int64{}}
	var names []string
	for _, ci := range st.Campaign.Images {
		names = append(names, ci.Version+" for "+ci.Board)
		if img, err := d.cfg.Store.Image(ci.ID); err == nil {
			c.sizes[ci.ID] = img.Size
		}
	}
	c.Images = strings.Join(names, ", ")
	for _, w := range st.Waves {
		c.Total += w.Total
		c.Finished += w.Finished
		c.Failed += w.Failed
		c.Running += w.Running
	}
	for _, p := range st.Devices {
		if _, ok := c.sizes[p.Delta]; p.Delta != 0 && !ok {
			if img, err := d.cfg.Store.Image(p.Delta); err == nil {
				c.sizes[p.Delta] = img.Size
			}
		}
		c.BytesSent += sent(p, c.size(p))
	}
	return c
}

// sent estimates the bytes a device fetched from the step it reported.
func sent(p store.Progress, size int64) int64 {
	switch {
	case p.State == store.ProgressFinished:
		return size
	case p.Progressed && p.Step > 0:
		return size * int64(min(p.Step, 100)) / 100
	}
	return 0
}

func (d *Dashboard) campaigns(w http.ResponseWriter, r *http.Request, _ session) {
	rows, err := d.campaignRows()
	if err != nil {
		d.fail(w, r, err)
		return
	}
	imgs, err := d.cfg.Store.Images()
	if err != nil {
		d.fail(w, r, err)
		return
	}
	slices.Reverse(imgs)
	d.render(w, r, http.StatusOK, "campaigns", page{Title: "Campaigns", Campaigns: rows, Images: imgs, Choices: d.boards(),
		Message: r.URL.Query().Get("msg"), Error: r.URL.Query().Get("err")})
}

// createCampaign turns the form into the API's request: the target is a
// group, a product or a list of devices (one per line or comma).
func (d *Dashboard) createCampaign(w http.ResponseWriter, r *http.Request, _ session) {
	fail := func(err error) {
		http.Redirect(w, r, "/campaigns?err="+url.QueryEscape("campaign refused: "+err.Error()), http.StatusSeeOther)
	}
	req := api.CreateCampaign{Waves: strings.TrimSpace(r.PostFormValue("waves")), Module: strings.TrimSpace(r.PostFormValue("module"))}
	for _, v := range r.PostForm["image"] {
		id, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			fail(fmt.Errorf("image %q: not an image ID", v))
			return
		}
		req.ImageIDs = append(req.ImageIDs, id)
	}
	if len(req.ImageIDs) == 0 {
		fail(errors.New("images: choose one per board of the target"))
		return
	}
	var err error
	if req.SuccessPercent, err = percent(r.PostFormValue("success"), "success threshold"); err != nil {
		fail(err)
		return
	}
	if req.ErrorPercent, err = percent(r.PostFormValue("error"), "error threshold"); err != nil {
		fail(err)
		return
	}
	target := strings.TrimSpace(r.PostFormValue("target"))
	switch r.PostFormValue("target_kind") {
	case "group":
		req.Target.Group = target
	case "product":
		req.Target.Product = target
	case "devices":
		req.Target.Devices = strings.FieldsFunc(target, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' || r == ' ' })
	default:
		fail(fmt.Errorf("target: choose group, product or devices"))
		return
	}
	body, _ := json.Marshal(req)
	var c api.Campaign
	if err := d.callAPI(r, http.MethodPost, api.Prefix+"/campaigns", "application/json", bytes.NewReader(body), &c); err != nil {
		fail(err)
		return
	}
	d.log.Info("dashboard: campaign created", "campaign", c.ID, "images", req.ImageIDs)
	http.Redirect(w, r, fmt.Sprintf("/campaigns/%d", c.ID), http.StatusSeeOther)
}

func percent(s, what string) (int, error) {
	if strings.TrimSpace(s) == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(s), "%"))
	if err != nil || n < 0 || n > 100 {
		return 0, fmt.Errorf("%s %q: give a percentage from 0 to 100", what, s)
	}
	return n, nil
}

type waveRow struct {
	campaign.WaveStatus
	BytesSent int64
}

func (d *Dashboard) campaign(w http.ResponseWriter, r *http.Request, _ session) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		http.Error(w, "campaign id: not a number", http.StatusBadRequest)
		return
	}
	st, err := d.cfg.Campaigns.Status(id)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	p := page{Title: fmt.Sprintf("Campaign %d", id), Nav: "campaigns", Campaign: d.row(st), Progress: st.Devices,
		Error: r.URL.Query().Get("err")}
	for _, wv := range st.Waves {
		p.Waves = append(p.Waves, waveRow{WaveStatus: wv})
	}
	for _, pr := range st.Devices {
		if pr.Wave >= 0 && pr.Wave < len(p.Waves) {
			p.Waves[pr.Wave].BytesSent += sent(pr, p.Campaign.size(pr))
		}
	}
	d.render(w, r, http.StatusOK, "campaign", p)
}

func (d *Dashboard) campaignAction(w http.ResponseWriter, r *http.Request, _ session) {
	id, act := r.PathValue("id"), r.PathValue("action")
	back := "/campaigns/" + url.PathEscape(id)
	if err := d.callAPI(r, http.MethodPost, api.Prefix+"/campaigns/"+url.PathEscape(id)+"/"+url.PathEscape(act), "", nil, nil); err != nil {
		http.Redirect(w, r, back+"?err="+url.QueryEscape(act+": "+err.Error()), http.StatusSeeOther)
		return
	}
	d.log.Info("dashboard: campaign "+act, "campaign", id)
	http.Redirect(w, r, back, http.StatusSeeOther)
}
