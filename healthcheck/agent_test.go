package healthcheck

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestAgent(t *testing.T) {
	mux := http.NewServeMux()
	answer := func(code int, contentType, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || r.Header.Get("User-Agent") != userAgent {
				http.Error(w, "unexpected request", http.StatusBadRequest)
				return
			}
			if contentType != "" {
				w.Header().Set("Content-Type", contentType)
			}
			w.WriteHeader(code)
			_, _ = io.WriteString(w, body)
		}
	}
	// The realserver agent's answers: text "ok", "draining", failures.
	mux.HandleFunc("/status", answer(200, "text/plain", "ok"))
	mux.HandleFunc("/draining", answer(503, "text/plain", "draining"))
	mux.HandleFunc("/failing", answer(503, "text/plain", "vip 192.0.2.10 missing on lo; arp_ignore is 0 on eth0"))
	mux.HandleFunc("/down", answer(503, "text/plain", "down: nginx is not running\nmore details"))
	mux.HandleFunc("/json-draining", answer(503, "application/json", `{"status":"draining","reason":"maintenance until 14:00","report":{}}`))
	mux.HandleFunc("/json-fail", answer(503, "application/json", `{"status":"fail","reason":"vip 192.0.2.10 missing on lo"}`))
	mux.HandleFunc("/empty", answer(503, "", ""))
	mux.HandleFunc("/broken", answer(500, "text/plain", "check failed: permission denied"))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	agentAddr := netip.MustParseAddrPort(srv.Listener.Addr().String())

	tests := []struct {
		path   string
		up     bool
		reason Reason
		msg    string
	}{
		{"", true, ReasonOK, "agent up"},
		{"/draining", false, ReasonDraining, "agent: draining"},
		{"/failing", false, ReasonAgentDown, "agent: down: vip 192.0.2.10 missing on lo; arp_ignore is 0 on eth0"},
		{"/down", false, ReasonAgentDown, "agent: down: nginx is not running"},
		{"/json-draining", false, ReasonDraining, "maintenance until 14:00"},
		{"/json-fail", false, ReasonAgentDown, "vip 192.0.2.10 missing"},
		{"/empty", false, ReasonAgentDown, "agent: down"},
		{"/broken", false, ReasonBadStatus, "agent status 500"},
		{"/nowhere", false, ReasonBadStatus, "agent status 404"},
	}
	for _, tt := range tests {
		t.Run("path "+tt.path, func(t *testing.T) {
			// The agent listens on the real's address, at its own port.
			spec := Spec{Port: agentAddr.Port(), Probe: Agent{Path: tt.path}}
			svc := Service{Name: "web", Port: 80}
			real := Real{Address: agentAddr.Addr(), Check: &spec}
			target := TargetFor(svc, real)
			if target.Addr != agentAddr || target.Real.Port() != 80 {
				t.Fatalf("target %+v, want the agent at %s", target, agentAddr)
			}
			want(t, runCheck(t, mustChecker(t, spec), target), tt.up, tt.reason, tt.msg)
		})
	}
	t.Run("default port", func(t *testing.T) {
		spec := Spec{Probe: Agent{}}
		target := TargetFor(Service{Name: "web", Port: 80}, Real{Address: netip.MustParseAddr("192.0.2.1"), Check: &spec})
		if target.Addr.String() != "192.0.2.1:9797" {
			t.Errorf("agent target %s, want 192.0.2.1:9797", target.Addr)
		}
	})
}

func TestParseAgentStatus(t *testing.T) {
	tests := []struct {
		body string
		want AgentStatus
	}{
		{"draining", AgentStatus{Status: AgentDraining}},
		{"Draining: maintenance\n", AgentStatus{Status: AgentDraining, Reason: "maintenance"}},
		{"down: disk full", AgentStatus{Status: AgentDown, Reason: "disk full"}},
		{"vip missing", AgentStatus{Status: AgentDown, Reason: "vip missing"}},
		{"", AgentStatus{Status: AgentDown}},
		{`{"status":"draining"}`, AgentStatus{Status: AgentDraining}},
		{`{"status":"draining","reason":"draining"}`, AgentStatus{Status: AgentDraining}},
		{`{"status":"fail","reason":"x"}`, AgentStatus{Status: AgentDown, Reason: "x"}},
		{`{"status":"ok"}`, AgentStatus{Status: AgentDown}},
		{`{"status":`, AgentStatus{Status: AgentDown, Reason: `{"status":`}},
		{"bad\x00\x1bbytes\xff", AgentStatus{Status: AgentDown, Reason: "bad??bytes?"}},
	}
	for _, tt := range tests {
		if got := ParseAgentStatus([]byte(tt.body)); got != tt.want {
			t.Errorf("ParseAgentStatus(%q) = %+v, want %+v", tt.body, got, tt.want)
		}
	}
}

func FuzzParseAgentStatus(f *testing.F) {
	for _, s := range []string{"draining", "down: x", `{"status":"draining","reason":"r"}`, "{", "\xff\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		st := ParseAgentStatus(body)
		if st.Status != AgentDraining && st.Status != AgentDown {
			t.Errorf("status %q", st.Status)
		}
		if len(st.Reason) > maxMessage || !utf8.ValidString(st.Reason) || strings.ContainsAny(st.Reason, "\r\n\x00") {
			t.Errorf("reason %q is not a short printable line", st.Reason)
		}
	})
}
