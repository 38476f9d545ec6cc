package ipvs

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name.golden, rewriting it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join(testdataDir(), name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s:\n--- got\n%s--- want\n%s", name, path, got, want)
	}
}

// testdataDir is testdata/ of this package: in the working directory under
// go test, beside this source file when the test binary runs elsewhere (the
// VM lab runs it from the repository's root, mounted at the same path).
func testdataDir() string {
	if _, err := os.Stat("testdata"); err == nil {
		return "testdata"
	}
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "testdata"
	}
	return filepath.Join(filepath.Dir(file), "testdata")
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// tcp returns the key of a TCP service.
func tcp(s string) ServiceKey { return NewServiceKey(TCP, ap(s)) }

// udp returns the key of a UDP service.
func udp(s string) ServiceKey { return NewServiceKey(UDP, ap(s)) }

// svc builds a service with DR destinations "addr:port=weight".
func svc(k ServiceKey, sched string, dests ...string) Service {
	s := NewService(k, sched)
	for _, d := range dests {
		a, w, _ := strings.Cut(d, "=")
		p := ap(a)
		weight := 1
		if w != "" {
			weight = atoi(w)
		}
		s.Put(NewDestination(p.Addr(), p.Port(), weight))
	}
	return s
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// state builds a State of services.
func state(svcs ...Service) State {
	st := State{}
	for _, s := range svcs {
		st.Put(s)
	}
	return st
}

// foreignService is an operator's service that dsrd must never touch.
func foreignService() Service {
	s := svc(tcp("203.0.113.99:8080"), "rr", "203.0.113.100:8080=3")
	return s
}

// foreignIpvsadm creates foreignService with ipvsadm.
var foreignIpvsadm = []string{
	"-A -t 203.0.113.99:8080 -s rr",
	"-a -t 203.0.113.99:8080 -r 203.0.113.100:8080 -g -w 3",
}

// goldenSteps are desired states applied one after the other, each
// compared with testdata/<name>.golden (with foreignService present), by
// the fake kernel's unit test and by the real kernel's VM test alike.
func goldenSteps() []struct {
	name string
	st   State
} {
	web := svc(tcp("192.0.2.1:80"), "wlc", "198.51.100.1:80=5", "198.51.100.2:80=0", "198.51.100.3:80=2")
	d := web.Dests[DestKey{addr("198.51.100.3"), 80}]
	d.UpperThreshold, d.LowerThreshold = 100, 10
	web.Put(d)

	dns := svc(udp("192.0.2.1:53"), "mh", "198.51.100.1:53=1", "198.51.100.2:53=1")
	dns.Flags |= FlagMHFallback | FlagMHPort | FlagOnePacket

	sctp := svc(NewServiceKey(SCTP, ap("192.0.2.3:9")), "rr", "198.51.100.1:9=1")

	v6 := svc(tcp("[2001:db8::1]:443"), "sh", "[2001:db8::10]:443=3", "[2001:db8::11]:443=1")
	v6.Flags |= FlagSHPort
	v6.SetPersistence(300*time.Second, 64)

	sticky := svc(tcp("192.0.2.2:443"), "rr", "198.51.100.4:443=1")
	sticky.SetPersistence(600*time.Second, 24)

	allPorts := svc(tcp("192.0.2.5:0"), "wrr", "198.51.100.5:0=1")
	allPorts.SetPersistence(90*time.Second, 0)

	fw4 := svc(FWMarkKey(IPv4, 7), "wrr", "198.51.100.6:0=1", "198.51.100.7:0=2")
	fw6 := svc(FWMarkKey(IPv6, 8), "lc", "[2001:db8::20]:0=1")
	fw6.SetPersistence(360*time.Second, 0)

	full := state(web, dns, sctp, v6, sticky, allPorts, fw4, fw6)

	// changed: weights, scheduler, flags, persistence, a real removed and
	// one added, a service removed.
	ch := full.Clone()
	w := ch[web.Key]
	w.Scheduler = "wrr"
	w.Put(NewDestination(addr("198.51.100.1"), 80, 7))
	w.Put(NewDestination(addr("198.51.100.2"), 80, 4))
	delete(w.Dests, DestKey{addr("198.51.100.3"), 80})
	w.Put(NewDestination(addr("198.51.100.9"), 80, 1))
	ch.Put(w)
	u := ch[dns.Key]
	u.Flags &^= FlagOnePacket | FlagMHPort
	ch.Put(u)
	s := ch[sticky.Key]
	s.SetPersistence(1200*time.Second, 32)
	ch.Put(s)
	delete(ch, sctp.Key)
	f := ch[fw4.Key]
	f.SetPersistence(60*time.Second, 16)
	ch.Put(f)

	return []struct {
		name string
		st   State
	}{
		{"step1-full", full},
		{"step2-changed", ch},
		{"step3-empty", State{}},
	}
}
