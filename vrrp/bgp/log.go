package bgp

import (
	"context"
	"log/slog"
)

// gobgpHandler passes gobgp's log records to dsrd's handler with their
// levels mapped: gobgp is chatty at info (timer updates, every policy
// call), so its debug and info records become debug, except the sessions
// going up and down, which an operator wants at info; warnings and errors
// stay what they are.
type gobgpHandler struct{ h slog.Handler }

// infoMessages are gobgp's info records kept at info.
var infoMessages = map[string]bool{
	"Peer Up":               true,
	"Peer Down":             true,
	"sent notification":     true,
	"received notification": true,
}

func mapLevel(l slog.Level, msg string) slog.Level {
	switch {
	case l >= slog.LevelWarn:
		return l
	case l >= slog.LevelInfo && infoMessages[msg]:
		return slog.LevelInfo
	default:
		return slog.LevelDebug
	}
}

// Enabled reports whether a record of level l could be handled: records
// at info may be kept at info, so ask for the lower of the two.
func (g gobgpHandler) Enabled(ctx context.Context, l slog.Level) bool {
	if l >= slog.LevelWarn {
		return g.h.Enabled(ctx, l)
	}
	return g.h.Enabled(ctx, min(l, slog.LevelInfo)) || g.h.Enabled(ctx, slog.LevelDebug)
}

// Handle re-levels the record and passes it on.
func (g gobgpHandler) Handle(ctx context.Context, r slog.Record) error {
	lvl := mapLevel(r.Level, r.Message)
	if !g.h.Enabled(ctx, lvl) {
		return nil
	}
	n := slog.NewRecord(r.Time, lvl, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		n.AddAttrs(a)
		return true
	})
	return g.h.Handle(ctx, n)
}

// WithAttrs wraps the handler with attributes.
func (g gobgpHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return gobgpHandler{g.h.WithAttrs(as)}
}

// WithGroup wraps the handler with a group.
func (g gobgpHandler) WithGroup(name string) slog.Handler {
	return gobgpHandler{g.h.WithGroup(name)}
}

// gobgpLogger returns the logger handed to gobgp, and the level gobgp
// filters at (debug: the handler decides).
func gobgpLogger(log *slog.Logger) (*slog.Logger, *slog.LevelVar) {
	lv := &slog.LevelVar{}
	lv.Set(slog.LevelDebug)
	return slog.New(gobgpHandler{log.Handler()}).With("component", "gobgp"), lv
}
