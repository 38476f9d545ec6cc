package execenv

import (
	"slices"
	"testing"
)

func TestMinimal(t *testing.T) {
	t.Setenv("PATH", "/opt/bin:/usr/bin")
	t.Setenv("SECRET", "leak")
	if got, want := Minimal("DSRD_A=1", "DSRD_B="), []string{"PATH=/opt/bin:/usr/bin", "DSRD_A=1", "DSRD_B="}; !slices.Equal(got, want) {
		t.Errorf("Minimal = %q, want %q", got, want)
	}
	t.Setenv("PATH", "")
	if got, want := Minimal(), []string{"PATH=" + DefaultPath}; !slices.Equal(got, want) {
		t.Errorf("Minimal without PATH = %q, want %q", got, want)
	}
}
