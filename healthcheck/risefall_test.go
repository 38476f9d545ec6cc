package healthcheck

import (
	"strings"
	"testing"
)

func TestRiseFall(t *testing.T) {
	// Results are written as a string: '+' success, '-' failure. want is
	// the state after each result, 'U' up, 'D' down; changes marks where an
	// event is due.
	tests := []struct {
		name       string
		rise, fall int
		initial    State
		results    string
		want       string
		changes    string
	}{
		{"initial down needs rise successes", 2, 3, StateDown, "++++", "DUUU", ".x.."},
		{"initial up needs fall failures", 2, 3, StateUp, "---", "UUD", "..x"},
		{"initial down stays down on failures", 2, 3, StateDown, "-----", "DDDDD", "....."},
		{"initial up stays up on successes", 2, 3, StateUp, "+++++", "UUUUU", "....."},
		{"flapping below rise never goes up", 3, 3, StateDown, "++-++-++-+", "DDDDDDDDDD", ".........."},
		{"flapping below fall never goes down", 2, 3, StateUp, "--+--+--+-", "UUUUUUUUUU", ".........."},
		{"a failure resets the rise count", 2, 2, StateDown, "+-++", "DDDU", "...x"},
		{"a success resets the fall count", 2, 2, StateUp, "-+--", "UUUD", "...x"},
		{"down, up, down, up", 2, 2, StateDown, "++--++--", "DUUDDUUD", ".x.x.x.x"},
		{"rise and fall of one flap every result", 1, 1, StateDown, "+-+-", "UDUD", "xxxx"},
		{"zero rise and fall count as one", 0, 0, StateDown, "+-", "UD", "xx"},
		{"unknown initial is down", 1, 1, StateUnknown, "-+", "DU", ".x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rf := NewRiseFall(tt.rise, tt.fall, tt.initial)
			var got, changes strings.Builder
			for _, c := range tt.results {
				if rf.Observe(c == '+') {
					changes.WriteByte('x')
				} else {
					changes.WriteByte('.')
				}
				got.WriteString(strings.ToUpper(rf.State().String()[:1]))
			}
			if got.String() != tt.want || changes.String() != tt.changes {
				t.Errorf("results %s: states %s changes %s, want %s %s", tt.results, got.String(), changes.String(), tt.want, tt.changes)
			}
		})
	}
}

func TestRiseFallCounts(t *testing.T) {
	rf := NewRiseFall(3, 3, StateDown)
	rf.Observe(true)
	rf.Observe(true)
	if s, f := rf.Counts(); s != 2 || f != 0 {
		t.Errorf("counts %d/%d, want 2/0", s, f)
	}
	rf.Observe(false)
	if s, f := rf.Counts(); s != 0 || f != 1 {
		t.Errorf("counts %d/%d, want 0/1", s, f)
	}
}
