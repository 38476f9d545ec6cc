package main

import (
	"fmt"
	"strings"
	"time"
)

// RouterConf rewrites the lab router's BIRD configuration
// (tests/vm/bgp/bird-router.conf) for bfd, the directors' BFD as in
// tests/vm/cluster's DSRD_LAB_BGP_BFD: "INTERVAL,MULT" sets the router's
// BFD to the same interval (rx and tx) and multiplier, "off" turns BFD
// off on the BGP sessions (the hold time, negotiated down to the
// directors' 9 s, decides). It fails when base no longer has the lines
// it rewrites.
func RouterConf(base, bfd string) (string, error) {
	if bfd == "off" {
		if strings.Count(base, "\tbfd on;\n") != 1 {
			return "", fmt.Errorf("router configuration: want one %q line", "bfd on;")
		}
		return strings.Replace(base, "\tbfd on;\n", "\tbfd off;\n", 1), nil
	}
	iv, mult, ok := strings.Cut(bfd, ",")
	d, err := time.ParseDuration(iv)
	if !ok || err != nil || d < time.Millisecond || d%time.Millisecond != 0 {
		return "", fmt.Errorf("BFD %q: want INTERVAL,MULT (whole milliseconds) or off", bfd)
	}
	var m int
	if _, err := fmt.Sscanf(mult, "%d", &m); err != nil || m < 1 || m > 255 {
		return "", fmt.Errorf("BFD %q: multiplier 1 to 255", bfd)
	}
	ms := d.Milliseconds()
	out := base
	for _, r := range []struct{ prefix, line string }{
		{"min rx interval ", fmt.Sprintf("min rx interval %d ms;", ms)},
		{"min tx interval ", fmt.Sprintf("min tx interval %d ms;", ms)},
		{"multiplier ", fmt.Sprintf("multiplier %d;", m)},
	} {
		lines := strings.Split(out, "\n")
		n := 0
		for i, l := range lines {
			trimmed := strings.TrimLeft(l, "\t ")
			if strings.HasPrefix(trimmed, r.prefix) {
				lines[i] = l[:len(l)-len(trimmed)] + r.line
				n++
			}
		}
		if n != 1 {
			return "", fmt.Errorf("router configuration: want one %q line, found %d", r.prefix, n)
		}
		out = strings.Join(lines, "\n")
	}
	return out, nil
}
