// Package statuspage serves a read-only status page for operators on the
// metrics listener: the cluster, its VIPs, each service with its reals
// (health with its reason, weight, admin state, connections and their last
// minutes), and recent events. The page is rendered on the server and is
// complete without JavaScript; a small script polls view.json and updates
// it in place. Everything is embedded in the binary: no fonts, scripts or
// styles from elsewhere. Nothing on the page changes anything.
package statuspage

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/internal/metrics"
)

// SampleInterval is how often the page samples the node's state for the
// history and the events, and how often the script refreshes.
const SampleInterval = 5 * time.Second

// readTimeout bounds one read of the node's state.
const readTimeout = 5 * time.Second

//go:embed assets
var assets embed.FS

var page = template.Must(template.ParseFS(assets, "assets/page.html"))

// Source reads the node's state, as the metrics do.
type Source func(ctx context.Context) (metrics.Snapshot, error)

// Page is the status page of one node.
type Page struct {
	src Source
	log *slog.Logger
	rec *recorder
	now func() time.Time
	// poll is how often the script refreshes (SampleInterval; tests
	// shorten it).
	poll time.Duration
}

// New returns the page of the node src reads. Run records its history.
func New(src Source, log *slog.Logger) *Page {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Page{src: src, log: log, rec: newRecorder(), now: time.Now, poll: SampleInterval}
}

// Run samples the node every SampleInterval until ctx ends, for the
// history of connections and the events.
func (p *Page) Run(ctx context.Context) {
	t := time.NewTicker(SampleInterval)
	defer t.Stop()
	for {
		p.sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sample reads the node once and records it.
func (p *Page) sample(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	snap, err := p.src(rctx)
	if err != nil && snap.Status.Node == "" {
		p.log.Debug("status page: state not read", "error", err)
		return
	}
	p.rec.record(p.now(), snap)
}

// Handler serves the page at "/", its view model at "/view.json", the
// node's status with the history and events at "/status.json", and the
// assets under "/static/". Only GET and HEAD are allowed.
func (p *Page) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets")
	files := http.FileServer(http.FS(static))
	mux.Handle("GET /static/", noWrite(http.StripPrefix("/static/", files)))
	mux.HandleFunc("GET /{$}", p.serveHTML)
	mux.HandleFunc("GET /view.json", p.serveView)
	mux.HandleFunc("GET /status.json", p.serveStatus)
	return securityHeaders(mux)
}

// noWrite keeps the file server to the page's own files.
func noWrite(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") || strings.HasSuffix(r.URL.Path, ".html") {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// securityHeaders: the page loads only its own assets, is never framed,
// and its types are not sniffed.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

// read reads the node now, for one request.
func (p *Page) read(r *http.Request) (metrics.Snapshot, error) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	return p.src(ctx)
}

func (p *Page) serveHTML(w http.ResponseWriter, r *http.Request) {
	snap, err := p.read(r)
	v := p.view(snap, err)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := page.Execute(w, v); err != nil {
		p.log.Warn("status page", "error", err)
	}
}

func (p *Page) serveView(w http.ResponseWriter, r *http.Request) {
	snap, err := p.read(r)
	writeJSON(w, p.log, p.view(snap, err))
}

// statusDoc is /status.json: the node's status, the history of each real
// (by "service-key/address:port") and the events, newest first.
type statusDoc struct {
	Status  api.Status          `json:"status"`
	Error   string              `json:"error,omitempty"`
	History map[string][]Sample `json:"history"`
	Events  []Event             `json:"events"`
}

func (p *Page) serveStatus(w http.ResponseWriter, r *http.Request) {
	snap, err := p.read(r)
	h, ev := p.rec.view()
	doc := statusDoc{Status: snap.Status, History: h, Events: ev}
	if err != nil {
		doc.Error = err.Error()
	}
	writeJSON(w, p.log, doc)
}

func writeJSON(w http.ResponseWriter, log *slog.Logger, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	if err := enc.Encode(v); err != nil {
		log.Warn("status page", "error", err)
	}
}

// view is what the template renders and view.json carries: the state
// formatted once, on the server, for the page and its script alike.
type view struct {
	Node, Role, Version string
	At                  time.Time `json:"-"`
	AtText              string    `json:"at_text"`
	PollMillis          int       `json:"-"`
	PollSeconds         int       `json:"-"`
	Error               string    `json:"error,omitempty"`
	Raft                struct {
		State         string `json:"state"`
		Term          uint64 `json:"term"`
		LeaderID      string `json:"leader_id"`
		LeaderAddress string `json:"-"`
	} `json:"raft"`
	Generation, RunningGeneration uint64    `json:"-"`
	Director                      bool      `json:"-"`
	Members                       []member  `json:"-"`
	VIPs                          []vipView `json:"-"`
	BGP                           []bgpView `json:"-"`
	Services                      []svcView `json:"services"`
	Events                        []evView  `json:"events"`
}

type member struct {
	ID, Address, Suffrage, Running string
	Leader                         bool
}

type vipView struct{ Address, Mode, Interface, State, Class string }

type bgpView struct {
	Address, State, BFD, Class string
	ASN                        uint32
	Announced                  int
}

type svcView struct {
	Name      string     `json:"name"`
	Key       string     `json:"key"`
	Scheduler string     `json:"-"`
	State     string     `json:"state"`
	Class     string     `json:"class"`
	Healthy   int        `json:"healthy"`
	Quorum    int        `json:"-"`
	Reals     []realView `json:"reals"`
}

type realView struct {
	Key         string   `json:"key"`
	Addr        string   `json:"-"`
	Admin       string   `json:"admin"`
	Health      string   `json:"health"`
	HealthClass string   `json:"health_class"`
	Weight      string   `json:"weight"`
	Active      uint32   `json:"active"`
	Inactive    uint32   `json:"inactive"`
	Rate        string   `json:"rate"`
	Spark       string   `json:"-"`
	SparkLabel  string   `json:"-"`
	Samples     []Sample `json:"samples"`
}

type evView struct {
	Event
	AtText string `json:"at_text"`
}

// view builds the page's view of a snapshot.
func (p *Page) view(snap metrics.Snapshot, readErr error) view {
	st := snap.Status
	now := p.now()
	v := view{Node: st.Node, Role: st.Role, Version: st.Version, At: now, AtText: now.Format("15:04:05 MST"),
		PollMillis: int(p.poll / time.Millisecond), PollSeconds: max(1, int(p.poll/time.Second)),
		Generation: st.Generation, RunningGeneration: st.RunningGeneration, Director: st.Role == "director"}
	if readErr != nil {
		v.Error = readErr.Error()
	}
	v.Raft.State, v.Raft.Term, v.Raft.LeaderID, v.Raft.LeaderAddress = st.Raft.State, st.Raft.Term, st.Raft.LeaderID, st.Raft.LeaderAddress
	running := map[string]string{st.Node: fmt.Sprint(st.RunningGeneration) + " (this node)"}
	for _, pr := range st.Peers {
		switch {
		case pr.Error != "":
			running[pr.ID] = "unknown: " + pr.Error
		case pr.Role == "witness":
			running[pr.ID] = "witness"
		default:
			running[pr.ID] = fmt.Sprint(pr.RunningGeneration)
		}
	}
	if st.Role != "director" {
		running[st.Node] = "this node"
	}
	for _, m := range st.Members {
		v.Members = append(v.Members, member{ID: m.ID, Address: m.Address, Suffrage: m.Suffrage, Leader: m.Leader, Running: running[m.ID]})
	}
	for _, x := range st.VIPs {
		vv := vipView{Address: x.Address.String(), Mode: "arp", Interface: x.Interface}
		switch {
		case x.Mode != "" && x.Announced:
			vv.Mode, vv.State, vv.Class = x.Mode, "announced", "ok"
		case x.Mode != "":
			vv.Mode, vv.State = x.Mode, "not announced: "+orDash(x.Withdrawn)
		case x.Held:
			vv.State, vv.Class = "held", "ok"
		default:
			vv.State = "not held"
		}
		v.VIPs = append(v.VIPs, vv)
	}
	if st.BGP != nil {
		for _, b := range st.BGP.Peers {
			bv := bgpView{Address: b.Address.String(), ASN: b.ASN, State: b.State, BFD: orDash(b.BFD), Announced: b.Announced, Class: "bad"}
			if b.State == "established" {
				bv.Class = "ok"
			}
			v.BGP = append(v.BGP, bv)
		}
	}
	history, events := p.rec.view()
	for _, s := range st.Services {
		sv := svcView{Name: s.Name, Key: s.Key, Scheduler: s.Scheduler, Healthy: s.Healthy, Quorum: s.Quorum, State: "up", Class: "ok"}
		if !s.Up {
			sv.State, sv.Class = "below quorum", "bad"
			if s.Reason != "" {
				sv.State += ": " + s.Reason
			}
		}
		for _, r := range s.Reals {
			ap := netip.AddrPortFrom(r.Address, r.Port)
			key := realKey{Service: s.Key, Real: ap}.String()
			rv := realView{Key: key, Addr: ap.String(), Admin: r.Admin, Health: r.Health, Active: r.ActiveConns, Inactive: r.InactiveConns, Rate: "-"}
			switch r.Health {
			case "up":
				rv.HealthClass = "ok"
			case "down":
				rv.HealthClass = "bad"
			}
			if r.CheckThroughVIP {
				rv.Health += " via VIP"
			}
			if r.Health == "down" && r.HealthReason != "" {
				rv.Health += " (" + r.HealthReason + ")"
			}
			if r.Sorry && r.Health != "sorry" {
				rv.Health += ", sorry server"
			}
			rv.Weight = strconv.Itoa(r.Weight) + "/"
			if r.IPVSWeight < 0 {
				rv.Weight += "-"
			} else {
				rv.Weight += strconv.Itoa(r.IPVSWeight)
			}
			rv.Samples = history[key]
			if n := len(rv.Samples); n > 0 && n > 1 {
				rv.Rate = strconv.FormatFloat(rv.Samples[n-1].Rate, 'f', 1, 64)
			}
			rv.Spark, rv.SparkLabel = sparkline(rv.Samples)
			if rv.Samples == nil {
				rv.Samples = []Sample{}
			}
			sv.Reals = append(sv.Reals, rv)
		}
		v.Services = append(v.Services, sv)
	}
	for _, e := range events {
		v.Events = append(v.Events, evView{Event: e, AtText: e.At.Format("15:04:05")})
	}
	if v.Services == nil {
		v.Services = []svcView{}
	}
	if v.Events == nil {
		v.Events = []evView{}
	}
	return v
}

// sparkline returns the polyline points of the active connections in a
// 120x24 box, as the script computes them, and a text for screen readers.
func sparkline(samples []Sample) (points, label string) {
	if len(samples) == 0 {
		return "", "no samples yet"
	}
	hi, lo := samples[0].Active, samples[0].Active
	for _, s := range samples {
		hi, lo = max(hi, s.Active), min(lo, s.Active)
	}
	scale := max(hi, 1)
	step := 0.0
	if len(samples) > 1 {
		step = 120 / float64(len(samples)-1)
	}
	var b strings.Builder
	for i, s := range samples {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%.1f,%.1f", float64(i)*step, 23-float64(s.Active)/float64(scale)*22)
	}
	return b.String(), fmt.Sprintf("active connections over the last %d samples: %d to %d, now %d",
		len(samples), lo, hi, samples[len(samples)-1].Active)
}
