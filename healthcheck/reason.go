package healthcheck

// ParseReason returns the reason whose String is s: reasons travel by name
// (the cluster's health verdicts carry them), and a name this binary does
// not know is ReasonError, false.
func ParseReason(s string) (Reason, bool) {
	for r := ReasonOK; r <= ReasonError; r++ {
		if r.String() == s {
			return r, true
		}
	}
	return ReasonError, false
}
