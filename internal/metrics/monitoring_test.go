package metrics

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// monitoringDir holds what the packages install under
// /usr/share/dsrd/monitoring.
var monitoringDir = filepath.Join("..", "..", "packaging", "monitoring")

// documentedMetrics returns the metric names of docs/metrics.md's tables.
func documentedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(dsrd_[a-z_]+)`").FindAllStringSubmatch(string(b), -1) {
		out[m[1]] = true
	}
	if len(out) < 20 {
		t.Fatalf("only %d metrics found in docs/metrics.md", len(out))
	}
	return out
}

// metricNames returns the dsrd metrics an expression names, a histogram's
// _bucket, _sum and _count series under the histogram's name.
func metricNames(expr string) []string {
	var out []string
	for _, n := range regexp.MustCompile(`\bdsrd_[a-z_]+`).FindAllString(expr, -1) {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(n, suffix); ok && strings.HasSuffix(base, "_seconds") {
				n = base
			}
		}
		out = append(out, n)
	}
	return out
}

// TestMonitoringFiles: the alerting rules and the Grafana dashboard the
// packages ship name only documented metrics, the dashboard has the
// structure Grafana imports, and promtool (Debian's prometheus package)
// accepts the rules and passes their unit tests.
func TestMonitoringFiles(t *testing.T) {
	documented := documentedMetrics(t)
	check := func(where, expr string) {
		t.Helper()
		names := metricNames(expr)
		if len(names) == 0 {
			t.Errorf("%s: %q names no dsrd metric", where, expr)
		}
		for _, n := range names {
			if !documented[n] {
				t.Errorf("%s: %s is not a metric of docs/metrics.md", where, n)
			}
		}
	}

	raw, err := os.ReadFile(filepath.Join(monitoringDir, "dsrd-alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string
			Rules []struct {
				Alert       string
				Expr        string
				Labels      map[string]string
				Annotations map[string]string
			}
		}
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatal(err)
	}
	alerts := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			alerts++
			check("alert "+r.Alert, r.Expr)
			if sev := r.Labels["severity"]; sev != "critical" && sev != "warning" {
				t.Errorf("alert %s: severity %q, want critical or warning", r.Alert, sev)
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("alert %s has no summary", r.Alert)
			}
		}
	}
	if alerts < 10 {
		t.Errorf("%d alerts", alerts)
	}

	raw, err = os.ReadFile(filepath.Join(monitoringDir, "dsrd-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title, UID    string
		SchemaVersion int
		Panels        []struct {
			ID      int
			Type    string
			Title   string
			GridPos struct{ X, Y, W, H int }
			Targets []struct {
				RefID string
				Expr  string
			}
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	if dash.Title == "" || dash.UID == "" || dash.SchemaVersion < 30 || len(dash.Panels) == 0 {
		t.Fatalf("dashboard %q (uid %q, schema %d) with %d panels", dash.Title, dash.UID, dash.SchemaVersion, len(dash.Panels))
	}
	var ids []int
	for _, p := range dash.Panels {
		where := "panel " + p.Title
		if slices.Contains(ids, p.ID) {
			t.Errorf("%s: id %d used twice", where, p.ID)
		}
		ids = append(ids, p.ID)
		if g := p.GridPos; g.X < 0 || g.W <= 0 || g.X+g.W > 24 || g.H <= 0 {
			t.Errorf("%s: grid position %+v outside Grafana's 24 columns", where, g)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s has no query", where)
		}
		for _, q := range p.Targets {
			if q.RefID == "" {
				t.Errorf("%s: a query without refId", where)
			}
			check(where, q.Expr)
		}
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("DSRD_TEST_PRIVILEGED") == "require" {
			t.Fatal("promtool not found: install Debian's prometheus package (apt-get install prometheus)")
		}
		t.Skip("promtool not found (Debian's prometheus package)")
	}
	for _, args := range [][]string{{"check", "rules", "dsrd-alerts.yml"}, {"test", "rules", "dsrd-alerts_test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = monitoringDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
