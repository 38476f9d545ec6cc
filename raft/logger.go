package raft

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// LevelTrace is the slog level hashicorp/raft's trace messages are logged at:
// below debug, so that a debug log shows raft's decisions without its chatter.
const LevelTrace = slog.LevelDebug - 4

// hclogAdapter is an hclog.Logger that writes to a *slog.Logger, so that
// hashicorp/raft, its transports and its snapshot store log through the
// logger injected into the Node. The hclog name becomes the stable key
// "logger" ("raft", "raft.net", ...).
type hclogAdapter struct {
	base    *slog.Logger // without name nor implied args
	l       *slog.Logger // base with name and implied args
	name    string
	implied []any
	// level is hclog's own floor (SetLevel); it is shared by the loggers
	// derived with With and Named, as in hclog. Records that pass it are
	// still filtered by the slog handler.
	level *atomic.Int32
}

// newHCLogger returns an hclog.Logger named name that logs to l.
func newHCLogger(l *slog.Logger, name string) *hclogAdapter {
	lvl := new(atomic.Int32)
	lvl.Store(int32(hclog.Trace))
	return newAdapter(l, name, nil, lvl)
}

func newAdapter(base *slog.Logger, name string, implied []any, level *atomic.Int32) *hclogAdapter {
	l := base
	if name != "" {
		l = l.With("logger", name)
	}
	if len(implied) > 0 {
		l = l.With(implied...)
	}
	return &hclogAdapter{base: base, l: l, name: name, implied: implied, level: level}
}

// slogLevel maps an hclog level to the slog level it is logged at.
func slogLevel(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace:
		return LevelTrace
	case hclog.Debug, hclog.NoLevel:
		return slog.LevelDebug
	case hclog.Info:
		return slog.LevelInfo
	case hclog.Warn:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (a *hclogAdapter) enabled(level hclog.Level) bool {
	if level == hclog.Off {
		return false
	}
	floor := hclog.Level(a.level.Load())
	if level != hclog.NoLevel && floor != hclog.NoLevel && level < floor {
		return false
	}
	return a.l.Enabled(context.Background(), slogLevel(level))
}

// demoted lowers the level of hashicorp/raft (v1.7.3) messages that it logs
// as errors at every attempt while a peer is unreachable or restarting, and
// retries with backoff: with one director down for maintenance they would
// fill the error log although the cluster works. They stay visible as
// warnings; a peer that stays down is reported by the cluster status.
func demoted(msg string) (hclog.Level, bool) {
	switch msg {
	case "failed to make requestVote RPC",
		"failed to appendEntries to",
		"failed to heartbeat to",
		"failed to pipeline appendEntries",
		"failed to start pipeline replication to",
		"failed to decode incoming command":
		return hclog.Warn, true
	case "peer has newer term, stopping replication":
		return hclog.Info, true
	}
	return hclog.NoLevel, false
}

// Log implements hclog.Logger.
func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if to, ok := demoted(msg); ok && level > to {
		level = to
	}
	if !a.enabled(level) {
		return
	}
	a.l.Log(context.Background(), slogLevel(level), msg, args...)
}

// Trace implements hclog.Logger.
func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }

// Debug implements hclog.Logger.
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }

// Info implements hclog.Logger.
func (a *hclogAdapter) Info(msg string, args ...any) { a.Log(hclog.Info, msg, args...) }

// Warn implements hclog.Logger.
func (a *hclogAdapter) Warn(msg string, args ...any) { a.Log(hclog.Warn, msg, args...) }

// Error implements hclog.Logger.
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

// IsTrace implements hclog.Logger.
func (a *hclogAdapter) IsTrace() bool { return a.enabled(hclog.Trace) }

// IsDebug implements hclog.Logger.
func (a *hclogAdapter) IsDebug() bool { return a.enabled(hclog.Debug) }

// IsInfo implements hclog.Logger.
func (a *hclogAdapter) IsInfo() bool { return a.enabled(hclog.Info) }

// IsWarn implements hclog.Logger.
func (a *hclogAdapter) IsWarn() bool { return a.enabled(hclog.Warn) }

// IsError implements hclog.Logger.
func (a *hclogAdapter) IsError() bool { return a.enabled(hclog.Error) }

// ImpliedArgs implements hclog.Logger.
func (a *hclogAdapter) ImpliedArgs() []any { return append([]any(nil), a.implied...) }

// With implements hclog.Logger.
func (a *hclogAdapter) With(args ...any) hclog.Logger {
	implied := append(append([]any(nil), a.implied...), args...)
	return newAdapter(a.base, a.name, implied, a.level)
}

// Name implements hclog.Logger.
func (a *hclogAdapter) Name() string { return a.name }

// Named implements hclog.Logger.
func (a *hclogAdapter) Named(name string) hclog.Logger {
	if a.name != "" {
		name = a.name + "." + name
	}
	return newAdapter(a.base, name, a.implied, a.level)
}

// ResetNamed implements hclog.Logger.
func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	return newAdapter(a.base, name, a.implied, a.level)
}

// SetLevel implements hclog.Logger.
func (a *hclogAdapter) SetLevel(level hclog.Level) { a.level.Store(int32(level)) }

// GetLevel implements hclog.Logger.
func (a *hclogAdapter) GetLevel() hclog.Level { return hclog.Level(a.level.Load()) }

// StandardLogger implements hclog.Logger.
func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

// StandardWriter implements hclog.Logger: every line written is one record,
// at Info unless opts infer ("[WARN] ...") or force another level.
func (a *hclogAdapter) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	if opts == nil {
		opts = &hclog.StandardLoggerOptions{}
	}
	return &stdWriter{a: a, opts: *opts}
}

type stdWriter struct {
	a    *hclogAdapter
	opts hclog.StandardLoggerOptions
}

func (w *stdWriter) Write(p []byte) (int, error) {
	for line := range bytes.Lines(p) {
		msg := strings.TrimSpace(string(line))
		if msg == "" {
			continue
		}
		level := hclog.Info
		if w.opts.ForceLevel != hclog.NoLevel {
			level = w.opts.ForceLevel
		} else if w.opts.InferLevels || w.opts.InferLevelsWithTimestamp {
			level, msg = inferLevel(msg)
		}
		w.a.Log(level, msg)
	}
	return len(p), nil
}

// inferLevel reads a "[LEVEL] " marker the way hclog's standard writer does.
func inferLevel(msg string) (hclog.Level, string) {
	markers := []struct {
		tag   string
		level hclog.Level
	}{
		{"[TRACE]", hclog.Trace}, {"[DEBUG]", hclog.Debug}, {"[INFO]", hclog.Info},
		{"[WARN]", hclog.Warn}, {"[ERROR]", hclog.Error}, {"[ERR]", hclog.Error},
	}
	for _, m := range markers {
		if i := strings.Index(msg, m.tag); i >= 0 {
			return m.level, strings.TrimSpace(msg[i+len(m.tag):])
		}
	}
	return hclog.Info, msg
}

var _ hclog.Logger = (*hclogAdapter)(nil)
