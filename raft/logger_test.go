package raft

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestHCLogAdapter(t *testing.T) {
	var buf bytes.Buffer
	base := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: LevelTrace}))
	l := newHCLogger(base, "raft")

	l.Trace("t1", "k", 1)
	l.Debug("d1")
	l.Info("i1")
	l.Warn("w1")
	l.Error("e1", "error", "boom")
	net := l.Named("net").With("peer", "d2")
	net.Info("n1")
	out := buf.String()
	for _, want := range []string{
		`level=DEBUG-4 msg=t1 logger=raft k=1`,
		`level=DEBUG msg=d1 logger=raft`,
		`level=INFO msg=i1 logger=raft`,
		`level=WARN msg=w1 logger=raft`,
		`level=ERROR msg=e1 logger=raft error=boom`,
		`level=INFO msg=n1 logger=raft.net peer=d2`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	// Retried per-attempt failures are warnings, not errors.
	l.Error("failed to heartbeat to", "peer", "d3")
	if !strings.Contains(buf.String(), `level=WARN msg="failed to heartbeat to" logger=raft peer=d3`) {
		t.Errorf("demoted message:\n%s", buf.String())
	}
	if net.Name() != "raft.net" || len(net.ImpliedArgs()) != 2 {
		t.Errorf("Name %q ImpliedArgs %v", net.Name(), net.ImpliedArgs())
	}

	// hclog's own floor applies to derived loggers too.
	buf.Reset()
	l.SetLevel(hclog.Warn)
	net.Info("hidden")
	l.Warn("shown")
	if strings.Contains(buf.String(), "hidden") || !strings.Contains(buf.String(), "shown") {
		t.Errorf("SetLevel(Warn):\n%s", buf.String())
	}
	if l.IsInfo() || !l.IsWarn() || l.GetLevel() != hclog.Warn {
		t.Error("level predicates do not follow SetLevel")
	}

	// The slog handler's level applies as well.
	buf.Reset()
	quiet := newHCLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})), "raft")
	quiet.Debug("hidden")
	if buf.Len() != 0 || quiet.IsDebug() || !quiet.IsInfo() {
		t.Errorf("debug passed an info handler: %q", buf.String())
	}

	// The standard-library bridge infers levels.
	buf.Reset()
	std := l.ResetNamed("std").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})
	l.SetLevel(hclog.Trace)
	std.Print("[WARN] careful")
	if !strings.Contains(buf.String(), `level=WARN msg=careful logger=std`) {
		t.Errorf("standard logger:\n%s", buf.String())
	}
}
