package realserver

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// drainFile is the file in the data dir whose presence drains the host.
const drainFile = "drain"

// DrainPath is the drain file of dataDir.
func DrainPath(dataDir string) string { return filepath.Join(dataDir, drainFile) }

// SetDrain drains (on) or undrains the host: it creates or removes the
// drain file in dataDir. While the file exists the status endpoint answers
// 503 "draining", so the directors' agent checks set this real's weight to
// 0 before maintenance. It takes effect at the next status request, whether
// or not an agent is running; it is idempotent.
func SetDrain(dataDir string, on bool) error {
	path := DrainPath(dataDir)
	if on {
		stamp := fmt.Sprintf("drained at %s\n", time.Now().UTC().Format(time.RFC3339))
		if err := writeFileAtomic(path, []byte(stamp), 0o644); err != nil {
			return fmt.Errorf("drain: %w", err)
		}
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("undrain: %w", err)
	}
	if err := syncDir(dataDir); err != nil {
		return fmt.Errorf("undrain: %w", err)
	}
	return nil
}

// Draining reports whether the drain file exists in dataDir.
func Draining(dataDir string) (bool, error) {
	_, err := os.Stat(DrainPath(dataDir))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("drain file: %w", err)
	}
}
