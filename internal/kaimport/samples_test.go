package kaimport

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dsrd/dsrd/internal/config"
	"github.com/dsrd/dsrd/internal/testutil/privileged"
)

// debianSamples is where Debian's keepalived package puts its sample
// configurations.
const debianSamples = "/usr/share/doc/keepalived/samples"

// keepalivedNeed is the keepalived binary and its samples: CI installs the
// package (.ci/run), so there a missing one fails the test.
var keepalivedNeed = privileged.Need{
	What: "keepalived and its samples (Debian package keepalived), to check the corpus with keepalived -t",
	Missing: func() error {
		if _, err := exec.LookPath("keepalived"); err != nil {
			return err
		}
		if files, _ := filepath.Glob(debianSamples + "/keepalived.conf.*"); len(files) == 0 {
			return fmt.Errorf("no %s/keepalived.conf.*", debianSamples)
		}
		return nil
	},
}

// keepalivedTest runs keepalived -t -f FILE in a new network namespace
// holding interfaces eth0 to eth3 (veth), the ones the samples name, so
// that keepalived's verdict does not depend on this host's interfaces.
// It returns nil when keepalived accepts the file.
func keepalivedTest(file string) error {
	script := `set -e
ip link set lo up
for i in 0 1 2 3; do ip link add eth$i type veth peer name peth$i; ip link set eth$i up; done
exec keepalived -t -f "$1"`
	out, err := exec.Command("unshare", "--net", "sh", "-c", script, "sh", file).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// TestDebianSamples imports every sample configuration keepalived's
// Debian package ships that keepalived -t accepts. Each must import
// without error into a file dsrd validates. The samples all use lb_kind
// NAT, which dsrd refuses; so each sample is imported a second time with
// NAT turned into DR (that variant too checked by keepalived -t first),
// and every virtual_server must then yield services.
func TestDebianSamples(t *testing.T) {
	privileged.Require(t, keepalivedNeed, privileged.NetNS("to run keepalived -t against interfaces eth0-eth3"))
	files, _ := filepath.Glob(debianSamples + "/keepalived.conf.*")
	dir := t.TempDir()
	accepted, losses := 0, 0
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		dr := filepath.Join(dir, filepath.Base(file)+".dr")
		if err := os.WriteFile(dr, []byte(strings.ReplaceAll(string(data), "lb_kind NAT", "lb_kind DR")), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, in := range []string{file, dr} {
			if err := keepalivedTest(in); err != nil {
				t.Logf("%s: not in the corpus, keepalived -t refuses it: %v", in, err)
				continue
			}
			accepted++
			f, err := Parse(OSSource{}, in, nil, Limits{})
			if err != nil {
				t.Errorf("%s: parse: %v", in, err)
				continue
			}
			res, err := Translate(f, Options{})
			if err != nil {
				t.Errorf("%s: translate: %v", in, err)
				continue
			}
			if _, err := config.ParseDirector("out.yaml", res.YAML); err != nil {
				t.Errorf("%s: the translation does not validate: %v", in, err)
			}
			for _, i := range res.Issues {
				if i.Kind == Unsupported {
					t.Errorf("%s: the parser left out a line keepalived accepts: %s", in, i)
				}
			}
			if in == dr && strings.Contains(string(data), "virtual_server") && res.Services == 0 {
				t.Errorf("%s: has virtual servers in DR, none translated:\n%s", in, report(res))
			}
			losses += res.Losses()
			t.Logf("%s: %d VIPs, %d services, %d losses, %d replaced", filepath.Base(in), res.VIPs, res.Services, res.Losses(), len(res.Issues)-res.Losses())
		}
	}
	t.Logf("%d of %d configurations (the samples and their DR variants) accepted by keepalived -t and imported; %d losses reported", accepted, 2*len(files), losses)
	if accepted < len(files) {
		t.Errorf("only %d configurations accepted by keepalived -t: is the corpus broken?", accepted)
	}
}
