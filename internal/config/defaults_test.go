package config

import (
	"testing"

	"github.com/dsrd/dsrd/healthcheck"
	"github.com/dsrd/dsrd/realserver"
)

// TestAgentCheckMeetsTheAgent holds the agent check's defaults, which the
// file's are defined as, equal to the realserver agent's contract: the two
// packages do not import each other.
func TestAgentCheckMeetsTheAgent(t *testing.T) {
	if healthcheck.DefaultAgentPort != realserver.DefaultStatusPort {
		t.Errorf("healthcheck.DefaultAgentPort %d, realserver.DefaultStatusPort %d", healthcheck.DefaultAgentPort, realserver.DefaultStatusPort)
	}
	if healthcheck.DefaultAgentPath != realserver.StatusPath {
		t.Errorf("healthcheck.DefaultAgentPath %q, realserver.StatusPath %q", healthcheck.DefaultAgentPath, realserver.StatusPath)
	}
}
