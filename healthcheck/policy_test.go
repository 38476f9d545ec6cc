package healthcheck

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// policyService is a service of three reals (weights 10, default 1, 0)
// with a sorry server.
func policyService(onDown DownPolicy, quorum int) Service {
	w10, w0 := 10, 0
	check := &Spec{Probe: TCP{}}
	return Service{
		Name: "web", Port: 80,
		OnDown: onDown, Quorum: quorum,
		SorryServer: netip.MustParseAddr("198.51.100.9"),
		Reals: []Real{
			{Address: netip.MustParseAddr("192.0.2.1"), Weight: &w10, UpperThreshold: 100, Check: check},
			{Address: netip.MustParseAddr("192.0.2.2"), Check: check},
			{Address: netip.MustParseAddr("192.0.2.3"), Weight: &w0, Check: check},
		},
	}
}

// setCheck gives every real of svc the check spec (nil: none).
func setCheck(svc *Service, spec *Spec) {
	for i := range svc.Reals {
		svc.Reals[i].Check = spec
	}
}

// states builds the policy input from "U", "D", "?" (unknown) and "R"
// (up but the agent says draining) per real, and admin states "e", "d"
// (drained), "x" (disabled).
func states(svc Service, health, admin string) map[Key]RealState {
	m := make(map[Key]RealState)
	for i, r := range svc.Reals {
		var st RealState
		switch health[i] {
		case 'U':
			st.Health = StateUp
		case 'D':
			st.Health = StateDown
		case 'R':
			st.Health, st.Reason = StateUp, ReasonDraining
		case 'r':
			st.Health, st.Reason = StateDown, ReasonDraining
		}
		switch admin[i] {
		case 'd':
			st.Admin = AdminDrained
		case 'x':
			st.Admin = AdminDisabled
		}
		m[RealKey(svc, r)] = st
	}
	return m
}

// format writes destinations as "addr=weight" ("addr=weight*" for the sorry
// server), for compact comparison.
func format(reals []DesiredReal) string {
	parts := make([]string, len(reals))
	for i, r := range reals {
		parts[i] = fmt.Sprintf("%s=%d", r.Address, r.Weight)
		if r.Sorry {
			parts[i] += "*"
		}
	}
	return strings.Join(parts, " ")
}

func TestDesire(t *testing.T) {
	tests := []struct {
		name          string
		onDown        DownPolicy
		quorum        int
		health, admin string
		want          string
		up            bool
		reason        ServiceReason
		healthy       int
	}{
		{"all up", DownWeightZero, 0, "UUU", "eee", "192.0.2.1=10 192.0.2.2=1 192.0.2.3=0", true, ServiceOK, 3},
		{"down is weight 0 by default", 0, 0, "DUU", "eee", "192.0.2.1=0 192.0.2.2=1 192.0.2.3=0", true, ServiceOK, 2},
		{"down is weight 0 with weight0", DownWeightZero, 0, "DUU", "eee", "192.0.2.1=0 192.0.2.2=1 192.0.2.3=0", true, ServiceOK, 2},
		{"down is removed with remove", DownRemove, 0, "DUD", "eee", "192.0.2.2=1", true, ServiceOK, 1},
		{"unknown is the initial state (down)", DownWeightZero, 0, "?UU", "eee", "192.0.2.1=0 192.0.2.2=1 192.0.2.3=0", true, ServiceOK, 2},
		{"drained is weight 0", DownWeightZero, 0, "UUU", "dee", "192.0.2.1=0 192.0.2.2=1 192.0.2.3=0", true, ServiceOK, 2},
		{"drained and down with remove is removed", DownRemove, 0, "DUU", "dee", "192.0.2.2=1 192.0.2.3=0", true, ServiceOK, 2},
		{"disabled is absent", DownWeightZero, 0, "UUU", "xee", "192.0.2.2=1 192.0.2.3=0", true, ServiceOK, 2},
		{"disabled and down is absent", DownWeightZero, 0, "DUU", "xee", "192.0.2.2=1 192.0.2.3=0", true, ServiceOK, 2},
		{"agent draining while still up is weight 0", DownWeightZero, 0, "RUU", "eee", "192.0.2.1=0 192.0.2.2=1 192.0.2.3=0", true, ServiceOK, 2},
		{"agent draining is weight 0 even with remove", DownRemove, 0, "rUU", "eee", "192.0.2.1=0 192.0.2.2=1 192.0.2.3=0", true, ServiceOK, 2},
		{"all down: sorry server in", DownWeightZero, 0, "DDD", "eee", "192.0.2.1=0 192.0.2.2=0 192.0.2.3=0 198.51.100.9=1*", false, ServiceAllDown, 0},
		{"all down with remove: only the sorry server", DownRemove, 0, "DDD", "eee", "198.51.100.9=1*", false, ServiceAllDown, 0},
		{"all drained: sorry server in", DownWeightZero, 0, "UUU", "ddd", "192.0.2.1=0 192.0.2.2=0 192.0.2.3=0 198.51.100.9=1*", false, ServiceAllDown, 0},
		{"all disabled: sorry server only", DownWeightZero, 0, "UUU", "xxx", "198.51.100.9=1*", false, ServiceAllDown, 0},
		{"one up: sorry server out", DownWeightZero, 0, "DDU", "eee", "192.0.2.1=0 192.0.2.2=0 192.0.2.3=0", true, ServiceOK, 1},
		{"below quorum: down, reals kept", DownWeightZero, 2, "DUD", "eee", "192.0.2.1=0 192.0.2.2=1 192.0.2.3=0", false, ServiceBelowQuorum, 1},
		{"at quorum: up", DownWeightZero, 2, "UUD", "eee", "192.0.2.1=10 192.0.2.2=1 192.0.2.3=0", true, ServiceOK, 2},
		{"drained does not count for quorum", DownWeightZero, 2, "UUD", "dee", "192.0.2.1=0 192.0.2.2=1 192.0.2.3=0", false, ServiceBelowQuorum, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := policyService(tt.onDown, tt.quorum)
			in := states(svc, tt.health, tt.admin)
			got := Desire(svc, in)
			if s := format(got.Reals); s != tt.want {
				t.Errorf("destinations %s, want %s", s, tt.want)
			}
			st := got.Status
			if st.Up != tt.up || st.Reason != tt.reason || st.Healthy != tt.healthy || st.Sorry != strings.Contains(tt.want, "*") {
				t.Errorf("status %+v, want up=%v reason %s healthy %d", st, tt.up, tt.reason, tt.healthy)
			}
			if again := Desire(svc, in); !reflect.DeepEqual(again, got) {
				t.Errorf("not pure: %+v then %+v", got, again)
			}
		})
	}
}

func TestDesireDetails(t *testing.T) {
	t.Run("ports, thresholds and order", func(t *testing.T) {
		svc := policyService(DownWeightZero, 0)
		got := Desire(svc, states(svc, "UUU", "eee"))
		if r := got.Reals[0]; r.Port != 80 || r.UpperThreshold != 100 || r.Address != netip.MustParseAddr("192.0.2.1") {
			t.Errorf("first destination %+v", r)
		}
		if got.Status.Quorum != 1 {
			t.Errorf("quorum %d, want 1 when unset", got.Status.Quorum)
		}
	})
	t.Run("sorry server back out when a real comes up", func(t *testing.T) {
		svc := policyService(DownWeightZero, 0)
		down := Desire(svc, states(svc, "DDD", "eee"))
		up := Desire(svc, states(svc, "DUD", "eee"))
		if !down.Status.Sorry || up.Status.Sorry || strings.Contains(format(up.Reals), "198.51.100.9") {
			t.Errorf("sorry in %s, then %s", format(down.Reals), format(up.Reals))
		}
	})
	t.Run("no sorry server configured", func(t *testing.T) {
		svc := policyService(DownWeightZero, 0)
		svc.SorryServer = netip.Addr{}
		got := Desire(svc, states(svc, "DDD", "eee"))
		if format(got.Reals) != "192.0.2.1=0 192.0.2.2=0 192.0.2.3=0" || got.Status.Sorry {
			t.Errorf("got %s sorry=%v", format(got.Reals), got.Status.Sorry)
		}
	})
	t.Run("sorry server that is also a real", func(t *testing.T) {
		svc := policyService(DownWeightZero, 0)
		svc.SorryServer = netip.MustParseAddr("192.0.2.2")
		got := Desire(svc, states(svc, "DDD", "eee"))
		if format(got.Reals) != "192.0.2.1=0 192.0.2.2=1* 192.0.2.3=0" {
			t.Errorf("got %s", format(got.Reals))
		}
	})
	t.Run("no health check: always up", func(t *testing.T) {
		svc := policyService(DownWeightZero, 0)
		setCheck(&svc, nil)
		got := Desire(svc, states(svc, "DDD", "eee"))
		if format(got.Reals) != "192.0.2.1=10 192.0.2.2=1 192.0.2.3=0" || !got.Status.Up {
			t.Errorf("got %s %+v", format(got.Reals), got.Status)
		}
		if got := Desire(svc, nil); format(got.Reals) != "192.0.2.1=10 192.0.2.2=1 192.0.2.3=0" {
			t.Errorf("no states: got %s", format(got.Reals))
		}
	})
	t.Run("initial up", func(t *testing.T) {
		svc := policyService(DownWeightZero, 0)
		setCheck(&svc, &Spec{Params: Params{Initial: StateUp}, Probe: TCP{}})
		if got := Desire(svc, nil); format(got.Reals) != "192.0.2.1=10 192.0.2.2=1 192.0.2.3=0" {
			t.Errorf("got %s", format(got.Reals))
		}
	})
	t.Run("per-real check override", func(t *testing.T) {
		svc := policyService(DownWeightZero, 0)
		svc.Reals[1].Check = nil
		got := Desire(svc, states(svc, "DDD", "eee"))
		if format(got.Reals) != "192.0.2.1=0 192.0.2.2=1 192.0.2.3=0" {
			t.Errorf("got %s", format(got.Reals))
		}
	})
	t.Run("no reals", func(t *testing.T) {
		svc := policyService(DownWeightZero, 0)
		svc.Reals = nil
		got := Desire(svc, nil)
		if got.Status.Up || got.Status.Reason != ServiceNoReals || format(got.Reals) != "198.51.100.9=1*" {
			t.Errorf("got %s %+v", format(got.Reals), got.Status)
		}
	})
	t.Run("ipv4-mapped addresses", func(t *testing.T) {
		svc := policyService(DownWeightZero, 0)
		svc.Reals[0].Address = netip.MustParseAddr("::ffff:192.0.2.1")
		got := Desire(svc, states(svc, "UUU", "eee"))
		if got.Reals[0].Address != netip.MustParseAddr("192.0.2.1") || got.Reals[0].Weight != 10 {
			t.Errorf("got %+v", got.Reals[0])
		}
	})
}

// formatAbsent writes absent reals as "addr:reason".
func formatAbsent(reals []AbsentReal) string {
	parts := make([]string, len(reals))
	for i, r := range reals {
		parts[i] = fmt.Sprintf("%s:%s", r.Address, r.Reason)
	}
	return strings.Join(parts, " ")
}

// Every configured real missing from the destinations is named with its
// reason: the caller deletes those at once, and drains only reals that
// left the configuration.
func TestDesireAbsent(t *testing.T) {
	tests := []struct {
		name          string
		onDown        DownPolicy
		health, admin string
		sorry         string
		want          string
	}{
		{"all up and enabled", DownRemove, "UUU", "eee", "", ""},
		{"drained is present, disabled absent", DownRemove, "UUU", "edx", "", "192.0.2.3:disabled"},
		{"down with weight0 is present", DownWeightZero, "DDU", "eee", "", ""},
		{"down with remove", DownRemove, "DUD", "eee", "", "192.0.2.1:down 192.0.2.3:down"},
		{"disabled wins over down", DownRemove, "DUU", "xee", "", "192.0.2.1:disabled"},
		{"agent draining is present", DownRemove, "rUU", "eee", "", ""},
		{"absent real serving as the sorry server", DownRemove, "DDD", "eee", "192.0.2.2", "192.0.2.1:down 192.0.2.3:down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := policyService(tt.onDown, 0)
			if tt.sorry != "" {
				svc.SorryServer = netip.MustParseAddr(tt.sorry)
			}
			got := Desire(svc, states(svc, tt.health, tt.admin))
			if s := formatAbsent(got.Absent); s != tt.want {
				t.Errorf("absent %q, want %q (destinations %s)", s, tt.want, format(got.Reals))
			}
			for _, a := range got.Absent {
				for _, r := range got.Reals {
					if r.Address == a.Address && r.Port == a.Port {
						t.Errorf("%s both present and absent", a.Address)
					}
				}
			}
		})
	}
}
