package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// tail reads the complete lines appended to a file since the last call.
type tail struct {
	path    string
	off     int64
	partial string
}

func (t *tail) lines() ([]string, error) {
	f, err := os.Open(t.path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(t.off, io.SeekStart); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	t.off += int64(len(b))
	s := t.partial + string(b)
	i := strings.LastIndexByte(s, '\n')
	if i < 0 {
		t.partial = s
		return nil, nil
	}
	t.partial = s[i+1:]
	return strings.Split(s[:i], "\n"), nil
}

type probe struct {
	start, end int64
	ok         bool
}

type vipChange struct {
	t       int64
	holders []string
}

func (v vipChange) has(n string) bool {
	for _, h := range v.holders {
		if h == n {
			return true
		}
	}
	return false
}

// parseEpoch reads bash's $EPOCHREALTIME ("seconds.micros") or nanoseconds.
func parseEpoch(s string) (int64, error) {
	s = strings.TrimSpace(s)
	sec, frac, dot := strings.Cut(s, ".")
	if !dot {
		return strconv.ParseInt(s, 10, 64)
	}
	si, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad time %q", s)
	}
	frac = (frac + "000000000")[:9]
	fi, err := strconv.ParseInt(frac, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad time %q", s)
	}
	return si*1e9 + fi, nil
}

func ms(d int64) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) }

func eventCmd(args []string) error {
	fs := flag.NewFlagSet("event", flag.ExitOnError)
	out := fs.String("out", "", "the monitor's directory (required)")
	killS := fs.String("kill", "", "time of the kill: $EPOCHREALTIME or Unix nanoseconds (required)")
	old := fs.String("old", "", "the node that held the VIP and was killed (required)")
	crash := fs.Bool("crash", false, "the killed node keeps the VIP (no release): wait for another node to hold it too")
	wait := fs.Duration("wait", 30*time.Second, "give up after this long")
	settleFor := fs.Duration("after", time.Second, "crash mode: how long after the takeover to watch the client")
	_ = fs.Parse(args)
	if *out == "" || *killS == "" || *old == "" {
		return errors.New("-out, -kill and -old are required")
	}
	tKill, err := parseEpoch(*killS)
	if err != nil {
		return err
	}
	pt := &tail{path: filepath.Join(*out, "probes.log")}
	vt := &tail{path: filepath.Join(*out, "vip.log")}
	var (
		probes  []probe
		changes []vipChange
		lastEnd int64 // the latest end time in the probe log
	)
	from := tKill - 2e9
	deadline := time.Now().Add(*wait)
	for {
		pl, err := pt.lines()
		if err != nil {
			return err
		}
		for _, l := range pl {
			f := strings.Fields(l)
			if len(f) < 5 || f[0] != "P" {
				continue
			}
			s, _ := strconv.ParseInt(f[1], 10, 64)
			e, _ := strconv.ParseInt(f[2], 10, 64)
			lastEnd = max(lastEnd, e)
			if e < from {
				continue
			}
			probes = append(probes, probe{start: s, end: e, ok: f[3] == "1"})
		}
		vl, err := vt.lines()
		if err != nil {
			return err
		}
		for _, l := range vl {
			f := strings.Fields(l)
			if len(f) < 3 || f[0] != "V" {
				continue
			}
			t, _ := strconv.ParseInt(f[1], 10, 64)
			var h []string
			if f[2] != "-" {
				h = strings.Split(f[2], ",")
			}
			changes = append(changes, vipChange{t: t, holders: h})
		}

		var (
			tGone, tNew int64
			newOwner    string
			atKill      *vipChange
		)
		for i := range changes {
			if changes[i].t <= tKill {
				atKill = &changes[i]
			}
		}
		if atKill != nil && !atKill.has(*old) {
			// A spurious election moved the VIP between the look at
			// its owner and the kill: this kill measures nothing.
			return fmt.Errorf("%s did not hold the VIP at the kill (holders then: %s)", *old, strings.Join(atKill.holders, ","))
		}
		for _, c := range changes {
			if c.t < tKill {
				continue
			}
			if tGone == 0 && !c.has(*old) {
				tGone = c.t
			}
			if tNew == 0 {
				for _, h := range c.holders {
					if h != *old {
						tNew, newOwner = c.t, h
						break
					}
				}
			}
		}
		// The end of the event: release mode, the first success of a probe
		// started after the VIP left the old owner (any earlier one may
		// have been served by it); crash mode, a while after the takeover.
		var tEnd int64
		if !*crash && tGone != 0 {
			for _, p := range probes {
				if p.ok && p.start >= tGone && (tEnd == 0 || p.end < tEnd) {
					tEnd = p.end
				}
			}
			// Results are logged in about the order they end: wait a
			// little past the candidate for a slightly earlier one.
			if tEnd != 0 && lastEnd < tEnd+100e6 {
				tEnd = 0
			}
		}
		if *crash && tNew != 0 && lastEnd >= tNew+settleFor.Nanoseconds() {
			tEnd = tNew + settleFor.Nanoseconds()
		}
		if tEnd != 0 {
			failed := 0
			var oks []int64
			for _, p := range probes {
				if p.start >= tKill && p.start <= tEnd && !p.ok {
					failed++
				}
				if p.ok && p.end >= tKill-1e9 && p.end <= tEnd {
					oks = append(oks, p.end)
				}
			}
			sort.Slice(oks, func(i, j int) bool { return oks[i] < oks[j] })
			var gap int64
			for i := 1; i < len(oks); i++ {
				gap = max(gap, oks[i]-oks[i-1])
			}
			fields := []string{}
			if !*crash {
				fields = append(fields, "outage_ms="+ms(tEnd-tKill), "vip_gone_ms="+ms(tGone-tKill))
			}
			fields = append(fields, "gap_ms="+ms(gap), "failed="+strconv.Itoa(failed))
			if tNew != 0 {
				fields = append(fields, "new_owner="+newOwner, "new_owner_ms="+ms(tNew-tKill))
			} else {
				fields = append(fields, "new_owner=-")
			}
			fmt.Println(strings.Join(fields, " "))
			return nil
		}
		if time.Now().After(deadline) {
			switch {
			case !*crash && tGone == 0:
				return fmt.Errorf("the VIP did not leave %s within %s of the kill", *old, *wait)
			case tNew == 0:
				return fmt.Errorf("no other director took the VIP within %s of the kill", *wait)
			}
			return fmt.Errorf("the client was not served again within %s of the kill (VIP on %s after %s ms)", *wait, newOwner, ms(tNew-tKill))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
