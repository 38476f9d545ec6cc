package director

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// submittedFileName holds, in the data dir, the content hash of the last
// configuration this director submitted to the cluster.
//
// A director's file is authoritative only when it changed: the cluster's
// configuration may since have moved on through another director's
// reload, and a director restarting with its old, unchanged file must not
// roll the cluster back. So at start a file whose hash equals the last one
// submitted is not submitted again (the director follows the cluster's);
// a file edited while the director was down, a first start, and every
// explicit reload (SIGHUP, dsrd reload) are submitted.
const submittedFileName = "submitted-config-hash"

// loadSubmitted returns the hash last submitted from this data dir, "" when
// none was.
func loadSubmitted(dataDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, submittedFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read last submitted configuration hash: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// saveSubmitted records hash as the last submitted.
func saveSubmitted(dataDir, hash string) error {
	if err := writeFileAtomic(dataDir, submittedFileName, []byte(hash+"\n")); err != nil {
		return fmt.Errorf("save last submitted configuration hash: %w", err)
	}
	return nil
}
