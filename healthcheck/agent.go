package healthcheck

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
)

// agentChecker asks the realserver agent's status endpoint.
//
// # Contract
//
// Request: for every check dsrd opens a new connection and sends
//
//	GET /status HTTP/1.1
//	Host: <address>:9797
//	User-Agent: dsrd-healthcheck/1
//	Connection: close
//
// in plain HTTP to the real server's address on port 9797
// (DefaultAgentPort). The health check's address, port, path and host
// override those; method, expect_status and body_regexp do not apply. The
// agent must answer within the check's timeout (1 s by default), so it
// answers from state it keeps, not from slow probes run inline.
//
// Response: the status code decides.
//
//   - 200: the real server is up. The body is ignored (the agent sends "ok").
//   - 503: the real server is down or asks to be drained. The body, of
//     which dsrd reads at most 64 KiB, says which: text whose first line is
//     "draining" (optionally "draining: why") asks for a drain; any other
//     first line is the reason it is down ("down: why", or just the
//     failures, as "vip 192.0.2.10 missing on lo"). A JSON body (starting
//     with "{") {"status": "draining"|"down"|"fail", "reason": "why"} is
//     read the same way: status "draining" is a drain, any other status a
//     failure; other fields are ignored.
//     A drain is ReasonDraining: the director gives the real weight 0 (no
//     new connections, established ones continue) at the first such answer
//     and whatever the service's on_down says. A failure is ReasonAgentDown
//     and counts against fall like any failed check.
//   - Any other status, or no answer in time: a failure (ReasonBadStatus,
//     ReasonTimeout, ReasonRefused...).
//
// Redirects are not followed.
type agentChecker struct {
	timeout time.Duration
	path    string
	host    string
	client  *http.Client
}

// agentBodyLimit bounds how much of an agent's 503 body is read.
const agentBodyLimit = maxBody

// AgentStatus is the JSON body of a realserver agent's 503 answer.
type AgentStatus struct {
	// Status is "draining", or any other word for down ("down", "fail");
	// ParseAgentStatus returns AgentDraining or AgentDown.
	Status string `json:"status"`
	// Reason is a short human-readable explanation.
	Reason string `json:"reason,omitempty"`
}

// The values of AgentStatus.Status.
const (
	AgentDraining = "draining"
	AgentDown     = "down"
)

func newAgentChecker(p Agent, from origin, timeout time.Duration) (*agentChecker, error) {
	path := normalizePath(p.Path, DefaultAgentPath)
	if _, err := url.ParseRequestURI(path); err != nil {
		return nil, fmt.Errorf("path %q: %w", p.Path, err)
	}
	return &agentChecker{
		timeout: timeout,
		path:    path,
		host:    p.Host,
		client:  newHTTPClient(from, nil, ProxyNone),
	}, nil
}

// Check implements Checker.
func (c *agentChecker) Check(ctx context.Context, t Target) Result {
	start := time.Now()
	ctx, cancel := withTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := get(ctx, c.client, http.MethodGet, "http", t.Addr, c.path, c.host)
	if err != nil {
		return errResult(ctx, start, "agent", err)
	}
	defer func() { _ = resp.Body.Close() }()
	switch resp.StatusCode {
	case http.StatusOK:
		return upResult(start, "agent up")
	case http.StatusServiceUnavailable:
		body, err := io.ReadAll(io.LimitReader(resp.Body, agentBodyLimit))
		if err != nil && len(body) == 0 {
			return errResult(ctx, start, "reading agent status", err)
		}
		st := ParseAgentStatus(body)
		reason := ReasonAgentDown
		if st.Status == AgentDraining {
			reason = ReasonDraining
		}
		msg := "agent: " + st.Status
		if st.Reason != "" {
			msg += ": " + st.Reason
		}
		return downResult(start, reason, msg)
	}
	return downResult(start, ReasonBadStatus,
		fmt.Sprintf("agent status %d, want 200 or 503", resp.StatusCode))
}

// ParseAgentStatus decodes the body of an agent's 503 answer, JSON or text,
// as described on agentChecker: Status is AgentDraining for a drain,
// AgentDown otherwise, with the reason the agent gave (the first line of a
// text body other than "draining" or "down" is the reason itself).
func ParseAgentStatus(body []byte) AgentStatus {
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] == '{' {
		var st AgentStatus
		if err := json.Unmarshal(body, &st); err == nil {
			st.Status = strings.ToLower(strings.TrimSpace(st.Status))
			if st.Status != AgentDraining {
				st.Status = AgentDown
			}
			st.Reason = clip(printable([]byte(st.Reason)))
			if strings.EqualFold(st.Reason, st.Status) {
				st.Reason = ""
			}
			return st
		}
	}
	line, _, _ := strings.Cut(printable(body), "\n")
	line = strings.TrimSpace(line)
	word, rest, _ := strings.Cut(line, ":")
	switch strings.ToLower(strings.TrimSpace(word)) {
	case AgentDraining:
		return AgentStatus{Status: AgentDraining, Reason: clip(rest)}
	case AgentDown:
		return AgentStatus{Status: AgentDown, Reason: clip(rest)}
	}
	return AgentStatus{Status: AgentDown, Reason: clip(line)}
}

// printable returns b as a string with invalid UTF-8 and control characters
// other than newline replaced, for use in logs.
func printable(b []byte) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || (r != unicode.ReplacementChar && unicode.IsPrint(r)) {
			return r
		}
		return '?'
	}, strings.ToValidUTF8(string(b), "?"))
}
