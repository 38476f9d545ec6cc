package ipvs

import (
	"strings"
	"testing"
	"time"
)

func TestDiff(t *testing.T) {
	web := tcp("192.0.2.1:80")
	foreign := tcp("203.0.113.99:80")
	kernel := func(s Service) Service { // as the kernel returns it
		s.Flags |= FlagHashed
		if s.Netmask == 0 {
			s.Netmask = s.Key.Family.bits()
		}
		return s
	}
	persistent := func(s Service, timeout time.Duration, mask int) Service {
		s.SetPersistence(timeout, mask)
		return s
	}
	withFlags := func(s Service, f Flags) Service {
		s.Flags |= f
		return s
	}
	withThresholds := func(s Service, dest string, up, low uint32) Service {
		s = s.Clone()
		p := ap(dest)
		d := s.Dests[DestKey{p.Addr(), p.Port()}]
		d.UpperThreshold, d.LowerThreshold = up, low
		s.Put(d)
		return s
	}
	withConns := func(s Service) Service {
		s = s.Clone()
		for k, d := range s.Dests {
			d.ActiveConns, d.InactiveConns, d.Stats.Conns = 7, 9, 100
			s.Dests[k] = d
		}
		s.Stats.Conns = 1000
		return s
	}
	noTimeoutInKernel := kernel(svc(web, "wlc", "198.51.100.1:80"))
	noTimeoutInKernel.Timeout, noTimeoutInKernel.Netmask = 300*time.Second, 24

	tests := []struct {
		name    string
		actual  State
		desired State
		managed []ServiceKey
		want    []string
	}{
		{name: "empty"},
		{
			name:    "create",
			desired: state(svc(web, "", "198.51.100.2:80=2", "198.51.100.1:80=1")),
			want: []string{
				"-A -t 192.0.2.1:80 -s wlc",
				"-a -t 192.0.2.1:80 -r 198.51.100.1:80 -g -w 1",
				"-a -t 192.0.2.1:80 -r 198.51.100.2:80 -g -w 2",
			},
		},
		{
			name:    "unchanged, as the kernel returns it",
			actual:  state(kernel(svc(web, "wlc", "198.51.100.1:80"))),
			desired: state(svc(web, "WLC", "198.51.100.1:80")),
		},
		{
			name:    "counters do not count",
			actual:  state(withConns(kernel(svc(web, "wlc", "198.51.100.1:80")))),
			desired: state(svc(web, "wlc", "198.51.100.1:80")),
		},
		{
			name:    "timeout and netmask of a non-persistent service do not count",
			actual:  state(noTimeoutInKernel),
			desired: state(svc(web, "wlc", "198.51.100.1:80")),
		},
		{
			name:    "persistence with default netmask unchanged",
			actual:  state(kernel(persistent(svc(web, "rr"), 300*time.Second, 32))),
			desired: state(persistent(svc(web, "rr"), 300*time.Second, 0)),
		},
		{
			name:    "persistence timeout rounded up to the second",
			actual:  state(kernel(persistent(svc(web, "rr"), 2*time.Second, 32))),
			desired: state(persistent(svc(web, "rr"), 1500*time.Millisecond, 0)),
		},
		{
			name:    "weight change is one update",
			actual:  state(kernel(svc(web, "wlc", "198.51.100.1:80=1", "198.51.100.2:80=1"))),
			desired: state(svc(web, "wlc", "198.51.100.1:80=1", "198.51.100.2:80=0")),
			want:    []string{"-e -t 192.0.2.1:80 -r 198.51.100.2:80 -g -w 0"},
		},
		{
			name:    "threshold change is one update",
			actual:  state(kernel(svc(web, "wlc", "198.51.100.1:80"))),
			desired: state(withThresholds(svc(web, "wlc", "198.51.100.1:80"), "198.51.100.1:80", 100, 10)),
			want:    []string{"-e -t 192.0.2.1:80 -r 198.51.100.1:80 -g -w 1 -x 100 -y 10"},
		},
		{
			name:    "scheduler change is one update",
			actual:  state(kernel(svc(web, "wlc", "198.51.100.1:80"))),
			desired: state(svc(web, "mh", "198.51.100.1:80")),
			want:    []string{"-E -t 192.0.2.1:80 -s mh"},
		},
		{
			name:    "flags change is one update",
			actual:  state(kernel(svc(web, "mh"))),
			desired: state(withFlags(svc(web, "mh"), FlagMHFallback|FlagMHPort)),
			want:    []string{"-E -t 192.0.2.1:80 -s mh -b mh-fallback,mh-port"},
		},
		{
			name:    "persistence timeout change",
			actual:  state(kernel(persistent(svc(web, "rr"), 300*time.Second, 24))),
			desired: state(persistent(svc(web, "rr"), 600*time.Second, 24)),
			want:    []string{"-E -t 192.0.2.1:80 -s rr -p 600 -M 255.255.255.0"},
		},
		{
			name:    "persistence off",
			actual:  state(kernel(persistent(svc(web, "rr"), 300*time.Second, 24))),
			desired: state(svc(web, "rr")),
			want:    []string{"-E -t 192.0.2.1:80 -s rr"},
		},
		{
			name:    "foreign service untouched, managed one deleted",
			actual:  state(kernel(svc(foreign, "rr", "203.0.113.1:80")), kernel(svc(web, "rr", "198.51.100.1:80"))),
			desired: state(),
			managed: []ServiceKey{web},
			want:    []string{"-D -t 192.0.2.1:80"},
		},
		{
			name:    "a foreign service with a desired key is adopted",
			actual:  state(kernel(svc(web, "rr", "198.51.100.1:80", "198.51.100.9:80"))),
			desired: state(svc(web, "rr", "198.51.100.1:80")),
			want:    []string{"-d -t 192.0.2.1:80 -r 198.51.100.9:80"},
		},
		{
			name: "order: adds, updates, then deletes",
			actual: state(
				kernel(svc(web, "rr", "198.51.100.1:80", "198.51.100.2:80")),
				kernel(svc(tcp("192.0.2.9:80"), "rr", "198.51.100.1:80")),
			),
			desired: state(
				svc(web, "wrr", "198.51.100.1:80=3", "198.51.100.3:80"),
				svc(FWMarkKey(IPv6, 5), "rr", "[2001:db8::1]:0"),
			),
			managed: []ServiceKey{tcp("192.0.2.9:80")},
			want: []string{
				"-A -f 5 -6 -s rr",
				"-E -t 192.0.2.1:80 -s wrr",
				"-a -t 192.0.2.1:80 -r 198.51.100.3:80 -g -w 1",
				"-a -f 5 -6 -r [2001:db8::1]:0 -g -w 1",
				"-e -t 192.0.2.1:80 -r 198.51.100.1:80 -g -w 3",
				"-d -t 192.0.2.1:80 -r 198.51.100.2:80",
				"-D -t 192.0.2.9:80",
			},
		},
		{
			name: "forwarding method change",
			actual: state(kernel(func() Service {
				s := svc(web, "rr")
				d := NewDestination(addr("198.51.100.1"), 80, 1)
				d.Forward = ForwardMasq
				s.Put(d)
				return s
			}())),
			desired: state(svc(web, "rr", "198.51.100.1:80")),
			want:    []string{"-e -t 192.0.2.1:80 -r 198.51.100.1:80 -g -w 1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			managed := map[ServiceKey]bool{}
			for _, k := range tt.managed {
				managed[k] = true
			}
			ops := Diff(tt.actual, tt.desired, func(k ServiceKey) bool { return managed[k] })
			var got []string
			for _, op := range ops {
				got = append(got, op.String())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestDiffNilManaged(t *testing.T) {
	actual := state(svc(tcp("192.0.2.1:80"), "rr"))
	if ops := Diff(actual, nil, nil); len(ops) != 0 {
		t.Errorf("nil managed deleted: %v", ops)
	}
}

func TestOpKindString(t *testing.T) {
	for k := OpAddService; k <= OpDelService; k++ {
		if strings.HasPrefix(k.String(), "op(") {
			t.Errorf("kind %d has no name", k)
		}
	}
}
