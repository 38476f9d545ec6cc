//go:build vmtest && vmcluster

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/tests/e2e/lab"
)

// TestClusterAdmission runs admission control through the director
// daemons: a reload adds a deny list to web, both directors put the dsrd
// table in place (the standby too), the VIP owner drops the denied client
// and serves the other, dsrd status counts the drops; the rules follow a
// failover; a stopped director leaves its table, dsrd director
// release-admission removes it; a foreign nftables table and iptables rule
// on each director survive the start, the reload, the failover and the
// stop.
func TestClusterAdmission(t *testing.T) {
	lab.Require(t)
	c, owner := clusterStart(t)
	follower := lab.ClusterOtherDirector(owner)
	survive := map[lab.Host]func(string){}
	for _, d := range lab.ClusterDirectors() {
		survive[d] = foreignRulesOn(t, d)
	}
	lab.MustIPBatch(t, lab.Client, "addr add "+badClient4.String()+"/24 dev eth0")
	web := netip.AddrPortFrom(clusterVIP, 80)
	if _, ok := dialOutcome(t, badClient4, web, clusterRequestTimeout); !ok {
		t.Fatalf("before admission control, %s is not served", badClient4)
	}

	// The reload: both files, so that neither is stale.
	clusterEditServices(t, c, func(svc map[string]any) {
		svc["admission"] = map[string]any{"deny": []any{badClient4.String()}}
	}, "web")
	if err := c.Signal(follower, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, clusterConverge, 200*time.Millisecond, func() error {
		for _, d := range lab.ClusterDirectors() {
			st, err := c.Status(clusterCtx(t), d)
			if err != nil {
				return err
			}
			var found bool
			for _, s := range st.Services {
				if s.Name == "web" && s.Admission != nil && s.Admission.InPlace && s.Admission.Deny == 1 {
					found = true
				}
			}
			if !found || st.RunningGeneration != st.Generation {
				return fmt.Errorf("%s: web's admission control not in place yet (generation %d running %d)", d, st.Generation, st.RunningGeneration)
			}
		}
		return nil
	})
	for _, d := range lab.ClusterDirectors() {
		out := lab.MustInNS(t, d, "nft", "list", "table", "inet", "dsrd")
		if !strings.Contains(out, "192.0.2.50") || !strings.Contains(out, `counter name "deny_web"`) {
			t.Errorf("%s's dsrd table:\n%s", d, out)
		}
		survive[d]("after the reload")
	}

	check := func(when string, via lab.Host) {
		t.Helper()
		if _, ok := dialOutcome(t, lab.Client.IPv4(), web, clusterRequestTimeout); !ok {
			t.Errorf("%s: the client is not served", when)
		}
		if _, ok := dialOutcome(t, badClient4, web, time.Second); ok {
			t.Errorf("%s: the denied %s is served", when, badClient4)
		}
		st := clusterStatus(t, c, via)
		for _, s := range st.Services {
			if s.Name == "web" && (s.Admission == nil || s.Admission.Dropped["deny"] == 0) {
				t.Errorf("%s: %s's status counts no deny for web: %+v", when, via, s.Admission)
			}
		}
		// dsrd status --top names the denied source, and only it.
		out, _, err := c.CLI(clusterCtx(t), via, "status", "--top", "3", "--json")
		if err != nil {
			t.Fatal(err)
		}
		var top api.Status
		if err := json.Unmarshal([]byte(out), &top); err != nil {
			t.Fatalf("dsrd status --top 3 --json on %s: %v", via, err)
		}
		for _, s := range top.Services {
			if s.Name != "web" {
				continue
			}
			if a := s.Admission; a == nil || len(a.Top) != 1 || a.Top[0].Source != badClient4 || a.Top[0].Packets == 0 || a.Top[0].Packets > a.Dropped["deny"] {
				t.Errorf("%s: %s's top dropped sources of web: %+v", when, via, a)
			}
		}
		text, _, err := c.CLI(clusterCtx(t), via, "status", "--top", "3")
		if err != nil || !strings.Contains(text, "TOP DROPPED SOURCE") || !strings.Contains(text, badClient4.String()) {
			t.Errorf("%s: dsrd status --top 3 on %s: %v\n%s", when, via, err, text)
		}
	}
	check("after the reload", owner)

	// Failover: the new owner enforces the rules at once.
	c.Stop(t, owner)
	newOwner := c.WaitOwner(t, owner, clusterTakeover)
	check("after the failover", newOwner)
	out, err := lab.InNS(context.Background(), owner, "nft", "list", "table", "inet", "dsrd")
	if err != nil || !strings.Contains(out, "deny_web") {
		t.Errorf("the stopped %s's table is gone: %v\n%s", owner, err, out)
	}
	survive[owner]("after the stop")

	// release-admission removes the table, and nothing else.
	ctx, cancel := context.WithTimeout(context.Background(), lab.CommandTimeout)
	defer cancel()
	if out, err := lab.InNS(ctx, owner, c.Bin(), "director", "release-admission"); err != nil {
		t.Fatalf("release-admission: %v\n%s", err, out)
	}
	if out, err := lab.InNS(ctx, owner, "nft", "list", "table", "inet", "dsrd"); err == nil {
		t.Errorf("release-admission left the table:\n%s", out)
	}
	survive[owner]("after release-admission")
	survive[newOwner]("at the end")
}
