package healthcheck

import "testing"

// TestParseReason: every reason's name parses back to it; another name is
// ReasonError, refused.
func TestParseReason(t *testing.T) {
	for r := ReasonOK; r <= ReasonError; r++ {
		if got, ok := ParseReason(r.String()); !ok || got != r {
			t.Errorf("ParseReason(%q) = %v, %v", r.String(), got, ok)
		}
	}
	for _, s := range []string{"", "reason(200)", "Draining"} {
		if got, ok := ParseReason(s); ok || got != ReasonError {
			t.Errorf("ParseReason(%q) = %v, %v: want ReasonError, false", s, got, ok)
		}
	}
	// ReasonError is the last reason: one added after it would not parse.
	if s := (ReasonError + 1).String(); s != "reason(17)" {
		t.Errorf("a reason was added after ReasonError (%s): keep ReasonError last or extend ParseReason", s)
	}
}
